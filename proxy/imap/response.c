/* proxy/imap/response.c — what the backend says: its responses scanned
 * and those the gateway must read held whole (greeting, tagged answers,
 * capability and mailbox lines), each then passed, rewritten or dropped;
 * the tagged answer ends the command in flight. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_buf.h"
#include "common/cg_log.h"
#include "common/cg_util.h"

/* ---- server responses ---------------------------------------------------- */

static void greeting(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (h->kind != CG_IMAPS_UNTAGGED || strcmp(h->word, "OK") != 0) {
        cg_imap_bye(c, s, "backend greeting not OK",
                    "[UNAVAILABLE] backend refused the connection");
        return;
    }
    cg_imap_learn_caps(s, d, n);
    char caps[2300];
    s->state = S_PREAUTH;
    cg_imap_our_caps(c, s, caps, sizeof caps);
    cg_imap_send(c, s, "* OK [CAPABILITY %s] cpmgate ready (session %s)", caps,
                 cg_conn_info_of(c)->session_id);
    s->bytes_out = 0;
    cg_imap_process_input(c, s);
}
static void tagged_response(cg_conn *c, imap_sess *s, const uint8_t *d,
                            size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (s->nflight && cg_imap_pipe_answer(c, s, d, n))
        return;
    cg_imap_pass_answer(c, s, d, n);
    if (s->streaming && strcmp(h->tag, s->tag) == 0) {
        /* An answer to the APPEND still streaming: Dovecot refuses a
         * missing mailbox at once, then skips the literals and the rest
         * of the line it was promised. They still go to it; their end is
         * not a command of its own (no second answer will come). */
        cg_conn_upstream_expect(c, false);
        cg_imap_command_done(c, s, h->word[0] ? h->word : "BAD");
        s->streaming = true;
        s->answered = true;
        return;
    }
    if (!s->busy || strcmp(h->tag, s->tag) != 0)
        return; /* not ours: passed through */
    bool ok = !strcmp(h->word, "OK");
    cg_conn_upstream_expect(c, false);
    if (s->kind == K_SELECT) {
        /* RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected */
        s->has_selected = ok;
        if (ok)
            snprintf(s->selected, sizeof s->selected, "%s", s->resource);
    } else if (s->kind == K_DESELECT && ok) {
        s->has_selected = false;
    } else if (s->kind == K_IDLE) {
        s->idle = false;
    }
    bool logout = s->kind == K_LOGOUT;
    cg_imap_command_done(c, s, h->word[0] ? h->word : "BAD");
    if (logout) {
        s->state = S_CLOSED;
        cg_conn_close(c, "logout");
        return;
    }
    cg_imap_process_input(c, s);
}

static void held_response(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (s->state == S_CONNECTING) {
        greeting(c, s, d, n);
        return;
    }
    if (s->istage != I_NONE) {
        cg_imap_login_response(c, s, d, n);
        return;
    }
    if (h->kind == CG_IMAPS_TAGGED) {
        tagged_response(c, s, d, n);
        return;
    }
    /* an answer the command table says is filtered (LIST, LSUB, STATUS,
     * CAPABILITY), whichever command it came with */
    const cg_imap_cmd *cmd = cg_imap_cmd_find(h->word);
    if (cmd && cmd->answer != ANS_PASS) {
        cg_imap_filter_answer(c, s, cmd->answer, d, n);
        return;
    }
    if (!strcmp(h->word, "BYE") && !s->logout) {
        /* the backend is going away: the client gets our BYE
         * [UNAVAILABLE] when the connection drops */
        return;
    }
    if (!strcmp(h->word, "ENABLED")) {
        /* RFC 6855: names are UTF-8 from now on */
        for (size_t i = 0; i + 11 <= n; i++)
            if (strncasecmp((const char *)d + i, "UTF8=ACCEPT", 11) == 0)
                s->utf8 = true;
    }
    cg_imap_pass_answer(c, s, d, n);
}

static bool must_hold(const imap_sess *s, const cg_imaps_head *h)
{
    if (s->state == S_CONNECTING || s->istage != I_NONE)
        return true;
    if (h->kind == CG_IMAPS_TAGGED)
        return true;
    if (h->kind != CG_IMAPS_UNTAGGED || h->has_number)
        return false;
    const cg_imap_cmd *cmd = cg_imap_cmd_find(h->word);
    if (cmd && cmd->answer != ANS_PASS)
        return true; /* filtered */
    /* answers the gateway reads: ENABLED, OK, NO, BAD, BYE, PREAUTH */
    const char *w = h->word;
    switch (w[0]) {
    case 'E': return !strcmp(w, "ENABLED");
    case 'O': return !strcmp(w, "OK");
    case 'N': return !strcmp(w, "NO");
    case 'B': return !strcmp(w, "BAD") || !strcmp(w, "BYE");
    case 'P': return !strcmp(w, "PREAUTH");
    default: return false;
    }
}

void cg_imap_upstream_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    imap_sess *s = cg_conn_session(c);
    for (;;) {
        if (s->state == S_CLOSED)
            return;
        cg_imaps_event ev;
        size_t used = cg_imaps_feed(s->scan, buf, len, &ev);
        buf += used;
        len -= used;
        switch (ev.type) {
        case CG_IMAPS_EV_NONE:
            return;
        case CG_IMAPS_EV_ERROR:
            cg_imap_bye(c, s, "backend protocol error", "[UNAVAILABLE] backend protocol error");
            return;
        case CG_IMAPS_EV_HEAD:
            s->holding = must_hold(s, cg_imaps_head_of(s->scan));
            cg_buf_reset(&s->hold);
            s->hold_overflow = false;
            /* fall through */
        case CG_IMAPS_EV_DATA:
            if (!s->holding) {
                cg_imap_to_client(c, s, ev.data, ev.len);
            } else if (s->hold.len + ev.len <= HOLD_MAX) {
                cg_buf_add(&s->hold, ev.data, ev.len);
                if (s->hold.failed) { /* within its bound: out of memory */
                    cg_conn_abort(c, "out of memory");
                    return;
                }
            } else {
                s->hold_overflow = true;
            }
            break;
        case CG_IMAPS_EV_END:
            if (s->holding) {
                s->holding = false;
                if (s->hold_overflow) {
                    cg_warn("conn=%llu imap: oversized backend response dropped",
                            (unsigned long long)cg_conn_info_of(c)->id);
                    break;
                }
                held_response(c, s, (const uint8_t *)s->hold.p, s->hold.len);
                if (s->hold.cap > HOLD_KEEP)
                    cg_buf_free(&s->hold); /* a large one is not kept */
            }
            break;
        }
    }
}
