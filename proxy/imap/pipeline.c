/* proxy/imap/pipeline.c — commands in flight together (RFC 3501 5.5). A
 * client may send its next commands before the answer to the first; the
 * gateway forwards them at once, each judged and given its audit place
 * first, when its rule allows it:
 *
 * - the command leaves the session's state as it was: no mailbox
 *   selected, closed or named (SELECT, CLOSE, STATUS, COPY, APPEND... run
 *   alone), no extension enabled, no IDLE, no LOGOUT, no login;
 * - it is allowed: the ACL grants its rights on the selected mailbox in
 *   the current snapshot, and its audit place is free;
 * - its tag is not one in flight (its answer could not be told apart).
 *
 * Anything else the client sends (such a command, a refusal to come, a
 * literal to invite, a syntax error) waits until every flight is answered,
 * then runs as it does alone. So every decision sees the selected mailbox
 * left by the commands before it, and the gateway writes nothing of its
 * own between the backend's answers. The commands taken in one read go to
 * the backend in one write; their answers come back in whatever order the
 * backend gives them and are matched by tag. */
#include "proxy/imap/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cg_buf.h"
#include "common/cg_log.h"

/* The rows that leave the session's state as it was (see above). */
static bool pipelinable(const cg_imap_cmd *cmd)
{
    return cmd && (cmd->states & CG_IMAP_AUTH) && !cmd->run && cmd->kind == K_PLAIN &&
           !cmd->mbox[0].right;
}

bool cg_imap_pipe_take(cg_conn *c, imap_sess *s)
{
    if (s->state != S_AUTH || s->busy || s->nflight >= PIPE_MAX)
        return false;
    char op[CG_IMAP_OP_MAX];
    cg_imap_peek_op(s->parser, op);
    const cg_imap_cmd *cmd = cg_imap_cmd_find(op);
    if (!pipelinable(cmd))
        return false;
    /* a tag already in flight (RFC 3501 2.2.1: each command has its own)
     * would make its answer ambiguous: that command waits */
    const char *tag = cg_imapp_tag(s->parser);
    for (unsigned i = 0; tag && i < s->nflight; i++)
        if (!strncmp(s->flights[i].tag, tag, sizeof s->flights[i].tag - 1))
            return false;
    if (s->up.len > UP_FLUSH && !cg_imap_pipe_flush(c, s))
        return true; /* closing: nothing more is forwarded */
    if (!s->flights && !(s->flights = calloc(PIPE_MAX, sizeof *s->flights)))
        return false; /* it runs alone */
    imap_flight *f = &s->flights[s->nflight];
    if (cg_audit_reserve(&f->resv) < 0)
        return false; /* alone, it is refused */
    imap_judge j;
    int64_t rule;
    if (!cg_imap_judge_try(s, &j)) {
        cg_audit_release(&f->resv);
        return false; /* alone, the session ends */
    }
    /* denied: alone, it is refused there */
    bool ok = !cg_imap_selected_denied(&j, s, cmd->selected, &rule);
    cg_snapshot_release(j.snap);
    if (!ok) {
        cg_audit_release(&f->resv);
        return false;
    }
    cg_imap_begin_command(s);
    f->n = s->n;
    f->rule_id = rule;
    f->bytes_in = s->bytes_in;
    f->bytes_out = 0;
    f->on_selected = cmd->selected && s->has_selected;
    memcpy(f->tag, s->tag, sizeof f->tag);
    memcpy(f->op, s->op, sizeof f->op);
    cg_imap_serialise(s, 0, cg_imapp_ntok(s->parser), NULL, &s->up);
    cg_buf_add(&s->up, "\r\n", 2);
    s->nflight++;
    s->op[0] = '\0'; /* the command at hand is a flight now */
    if (s->up.failed)
        cg_imap_bye(c, s, "pipelined commands too long", "too much pipelined input");
    return true;
}

bool cg_imap_pipe_flush(cg_conn *c, imap_sess *s)
{
    if (!s->up.len)
        return true;
    bool ok = cg_conn_write_upstream(c, s->up.p, s->up.len) == 0;
    if (s->up.cap > HOLD_KEEP)
        cg_buf_free(&s->up); /* a burst's buffer is not kept */
    else
        cg_buf_reset(&s->up);
    if (!ok) {
        s->state = S_CLOSED;
        cg_conn_close(c, "upstream write failed");
        return false;
    }
    cg_conn_upstream_expect(c, true);
    return true;
}

/* Flight i is over: its record, then it leaves the queue (order kept). */
static void land(cg_conn *c, imap_sess *s, unsigned i, const char *result)
{
    cg_imap_audit_flight(c, s, &s->flights[i], result);
    s->nflight--;
    memmove(&s->flights[i], &s->flights[i + 1], (s->nflight - i) * sizeof s->flights[0]);
    memset(&s->flights[s->nflight], 0, sizeof s->flights[0]);
}

bool cg_imap_pipe_answer(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    unsigned i = 0;
    while (i < s->nflight && strcmp(s->flights[i].tag, h->tag) != 0)
        i++;
    if (i == s->nflight)
        return false;
    bool was_full = s->nflight == PIPE_MAX;
    s->flight_rx = i;
    cg_imap_pass_answer(c, s, d, n);
    s->flight_rx = 0;
    land(c, s, i, h->word[0] ? h->word : "BAD");
    cg_conn_upstream_expect(c, s->nflight != 0); /* another answer is due */
    if (!s->nflight || was_full)
        cg_imap_pipe_drained(c, s);
    return true;
}

void cg_imap_pipe_end(cg_conn *c, imap_sess *s, const char *result)
{
    while (s->nflight)
        land(c, s, 0, result);
}

void cg_imap_pipe_free(imap_sess *s)
{
    for (unsigned i = 0; s->flights && i < s->nflight; i++)
        cg_audit_release(&s->flights[i].resv);
    free(s->flights);
    s->flights = NULL;
    s->nflight = 0;
    cg_buf_free(&s->up);
}
