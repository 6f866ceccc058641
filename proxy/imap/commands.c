/* proxy/imap/commands.c — THE command table (SPEC section 4), as Dovecot's
 * src/imap/imap-commands.c registers its commands: one row per command the
 * gateway accepts, with the states it is valid in, the rights it needs on
 * the selected mailbox and on each mailbox argument, the arguments that
 * are mailbox patterns, what its tagged answer means and how its untagged
 * answer is filtered. A command not in the table never reaches the
 * backend, and a capability is offered only when the commands it brings
 * are here (proxy/imap/filter.c). Adding a command is one row. This file
 * also runs a command through its row: refused, answered here before
 * login, or judged and forwarded; and judges the APPEND whose message
 * streams. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_log.h"
#include "common/cg_util.h"

/* ---- the answers the gateway gives before login -------------------------- */

static void pre_capability(cg_conn *c, imap_sess *s, const imap_judge *j,
                           const cg_imap_cmd *cmd)
{
    char caps[2300];
    cg_imap_our_caps(c, s, caps, sizeof caps);
    cg_imap_send(c, s, "* CAPABILITY %s", caps);
    cg_imap_send(c, s, "%s OK Capability completed", s->tag);
    cg_imap_command_done(c, s, "OK");
}

static void pre_noop(cg_conn *c, imap_sess *s, const imap_judge *j,
                     const cg_imap_cmd *cmd)
{
    cg_imap_send(c, s, "%s OK NOOP completed", s->tag);
    cg_imap_command_done(c, s, "OK");
}

/* Answered here: a client's ID never reaches the backend before login (it
 * could claim another x-originating-ip); a peer's gateway's transaction
 * id is kept from it (remote.c). */
static void pre_id(cg_conn *c, imap_sess *s, const imap_judge *j,
                   const cg_imap_cmd *cmd)
{
    cg_imap_id_origin(s);
    cg_imap_send(c, s, "* ID NIL");
    cg_imap_send(c, s, "%s OK ID completed", s->tag);
    cg_imap_command_done(c, s, "OK");
}

static void pre_logout(cg_conn *c, imap_sess *s, const imap_judge *j,
                       const cg_imap_cmd *cmd)
{
    cg_imap_send(c, s, "* BYE Logging out");
    cg_imap_send(c, s, "%s OK Logout completed", s->tag);
    cg_imap_command_done(c, s, "OK");
    s->state = S_CLOSED;
    cg_conn_close(c, "logout");
}

/* ---- commands with their own handling after login ------------------------ */

/* CLOSE expunges silently: without its right on the selected mailbox it
 * goes out as UNSELECT (RFC 3691), so \Deleted messages stay. */
static void run_close(cg_conn *c, imap_sess *s, const imap_judge *j,
                      const cg_imap_cmd *cmd)
{
    if (s->has_selected) {
        snprintf(s->resource, sizeof s->resource, "%s", s->selected);
        cg_decision d = cg_imap_decide(j, s, cmd->selected, s->selected);
        s->rule_id = d.rule_id;
        if (!d.allow) {
            cg_imap_send_backend(c, "%s UNSELECT", s->tag);
            s->kind = K_DESELECT;
            s->busy = true;
            return;
        }
    }
    cg_imap_forward(c, s, NULL, cmd->kind);
}

/* Only extensions the gateway understands go out (RFC 5161: servers
 * ignore unknown ones anyway). */
static void run_enable(cg_conn *c, imap_sess *s, const imap_judge *j,
                       const cg_imap_cmd *cmd)
{
    size_t nt = cg_imapp_ntok(s->parser);
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    int kept = 0;
    cg_buf_str(&o, s->tag);
    cg_buf_str(&o, " ENABLE");
    for (size_t i = 2; i < nt; i++) {
        size_t l;
        const char *e = cg_imap_tok_str(s, i, &l);
        if (e && (!strcasecmp(e, "CONDSTORE") || !strcasecmp(e, "QRESYNC") ||
                  !strcasecmp(e, "UTF8=ACCEPT"))) {
            cg_buf_add(&o, " ", 1);
            cg_buf_str(&o, e);
            kept++;
        }
    }
    if (!kept) {
        cg_buf_free(&o);
        cg_imap_send(c, s, "* ENABLED");
        cg_imap_send(c, s, "%s OK Enabled", s->tag);
        cg_imap_command_done(c, s, "OK");
        return;
    }
    cg_imap_send_upstream(c, &o);
    s->kind = cmd->kind;
    s->busy = true;
}

/* ---- the table ----------------------------------------------------------- */

#define PRE CG_IMAP_NOTAUTH
#define AUTH CG_IMAP_AUTH
#define R_LIST CG_RIGHT_LIST
#define R_READ CG_RIGHT_READ
#define R_WRITE CG_RIGHT_WRITE
#define R_CREATE CG_RIGHT_CREATE
#define R_DELETE CG_RIGHT_DELETE
/* One row: the name and the states it is valid in, then any of: */
#define CMD(name_, states_, ...) { .name = name_, .states = states_, __VA_ARGS__ }
#define BEFORE_TLS .flags = CG_IMAP_BEFORE_TLS
#define ALSO_UID .flags = CG_IMAP_UID
/* the rights it needs on the selected mailbox */
#define SELECTED(rights) .selected = (rights)
/* mailbox arguments: argument (0 = the first after the name) and right;
 * SUBTREE: judged on everything below it too */
#define MBOX(...) .mbox = { __VA_ARGS__ }
#define ARG(i, right_) { .arg = (i), .right = (right_) }
#define SUBTREE(i, right_) { .arg = (i), .right = (right_), .subtree = true }
/* LIST's reference and pattern: not judged, the answers are */
#define PATTERNS_0_1 .patterns = 0x3
#define KIND(k) .kind = (k)
#define ANSWER(a) .answer = (a)
#define PRE_LOGIN(fn) .pre = (fn)
#define RUN(fn) .run = (fn)

const cg_imap_cmd cg_imap_commands[] = {
    /* before login (answered by the gateway) and after (forwarded) */
    CMD("CAPABILITY", PRE | AUTH, BEFORE_TLS, ANSWER(ANS_CAPS), PRE_LOGIN(pre_capability)),
    CMD("NOOP", PRE | AUTH, BEFORE_TLS, PRE_LOGIN(pre_noop)),
    CMD("LOGOUT", PRE | AUTH, BEFORE_TLS, KIND(K_LOGOUT), PRE_LOGIN(pre_logout)),
    CMD("ID", PRE | AUTH, PRE_LOGIN(pre_id)),
    /* before login only */
    CMD("STARTTLS", PRE, BEFORE_TLS, PRE_LOGIN(cg_imap_cmd_starttls)),
    CMD("LOGIN", PRE, PRE_LOGIN(cg_imap_cmd_login)),
    CMD("AUTHENTICATE", PRE, PRE_LOGIN(cg_imap_cmd_authenticate)),
    /* no mailbox, or only mailbox patterns (the answers are filtered) */
    CMD("CHECK", AUTH),
    CMD("NAMESPACE", AUTH),
    CMD("LIST", AUTH, PATTERNS_0_1, ANSWER(ANS_LIST)),
    CMD("LSUB", AUTH, PATTERNS_0_1, ANSWER(ANS_LIST)),
    /* RFC 5267: only stops updates of a search already judged */
    CMD("CANCELUPDATE", AUTH),
    CMD("ENABLE", AUTH, RUN(run_enable)),
    /* one mailbox argument */
    CMD("SELECT", AUTH, MBOX(ARG(0, R_READ)), KIND(K_SELECT)),
    CMD("EXAMINE", AUTH, MBOX(ARG(0, R_READ)), KIND(K_SELECT)),
    CMD("STATUS", AUTH, MBOX(ARG(0, R_READ)), ANSWER(ANS_STATUS)),
    CMD("CREATE", AUTH, MBOX(ARG(0, R_CREATE))),
    CMD("DELETE", AUTH, MBOX(SUBTREE(0, R_DELETE))),
    CMD("SUBSCRIBE", AUTH, MBOX(ARG(0, R_LIST))),
    CMD("UNSUBSCRIBE", AUTH, MBOX(ARG(0, R_LIST))),
    CMD("APPEND", AUTH, MBOX(ARG(0, R_WRITE))),
    /* the subtree moves with it (SPEC 4): judged below both names */
    CMD("RENAME", AUTH, MBOX(SUBTREE(0, R_DELETE), SUBTREE(1, R_CREATE))),
    /* the selected mailbox (none selected: the backend answers) */
    CMD("IDLE", AUTH, SELECTED(R_READ), KIND(K_IDLE)),
    CMD("UNSELECT", AUTH, KIND(K_DESELECT)),
    CMD("CLOSE", AUTH, SELECTED(R_DELETE), KIND(K_DESELECT), RUN(run_close)),
    CMD("FETCH", AUTH, ALSO_UID, SELECTED(R_READ)),
    CMD("SEARCH", AUTH, ALSO_UID, SELECTED(R_READ)),
    CMD("SORT", AUTH, ALSO_UID, SELECTED(R_READ)),
    CMD("THREAD", AUTH, ALSO_UID, SELECTED(R_READ)),
    CMD("STORE", AUTH, ALSO_UID, SELECTED(R_WRITE)),
    CMD("EXPUNGE", AUTH, ALSO_UID, SELECTED(R_DELETE)),
    CMD("COPY", AUTH, ALSO_UID, SELECTED(R_READ), MBOX(ARG(1, R_WRITE))),
    CMD("MOVE", AUTH, ALSO_UID, SELECTED(R_READ | R_DELETE), MBOX(ARG(1, R_WRITE))),
};
const size_t cg_imap_ncommands = CG_ARRAY_LEN(cg_imap_commands);

/* The table by name: an open-addressing index made once at load, so a
 * command (and every untagged answer the backend sends) is found with one
 * hash and, nearly always, one comparison, not a walk of the table. */
#define CMD_INDEX 128 /* a power of two, at least twice the table */
_Static_assert(CG_ARRAY_LEN(cg_imap_commands) * 2 <= CMD_INDEX, "CMD_INDEX too small");
static uint8_t cmd_index[CMD_INDEX]; /* 1 + the row; 0: empty */

static unsigned name_slot(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h & (CMD_INDEX - 1);
}

__attribute__((constructor)) static void cmd_index_build(void)
{
    for (size_t i = 0; i < CG_ARRAY_LEN(cg_imap_commands); i++) {
        unsigned k = name_slot(cg_imap_commands[i].name);
        while (cmd_index[k])
            k = (k + 1) & (CMD_INDEX - 1);
        cmd_index[k] = (uint8_t)(i + 1);
    }
}

const cg_imap_cmd *cg_imap_cmd_find(const char *op)
{
    bool uid = strncmp(op, "UID ", 4) == 0;
    const char *name = uid ? op + 4 : op;
    for (unsigned k = name_slot(name); cmd_index[k]; k = (k + 1) & (CMD_INDEX - 1)) {
        const cg_imap_cmd *cmd = &cg_imap_commands[cmd_index[k] - 1];
        if (strcmp(cmd->name, name) == 0)
            return !uid || (cmd->flags & CG_IMAP_UID) ? cmd : NULL;
    }
    return NULL;
}

/* ---- running a command through its row ----------------------------------- */

const char *cg_imap_tok_str(const imap_sess *s, size_t i, size_t *len)
{
    const cg_imapp_tok *t = cg_imapp_tok_at(s->parser, i);
    if (!t || !cg_imapp_is_string(t))
        return NULL;
    if (len)
        *len = t->len;
    return cg_imapp_data(s->parser, t);
}

/* The name of the parser's command, upper case, with a UID prefix
 * ("UID FETCH"); "" when it has none. */
void cg_imap_peek_op(const cg_imapp *p, char op[CG_IMAP_OP_MAX])
{
    op[0] = '\0';
    const cg_imapp_tok *t = cg_imapp_tok_at(p, 1);
    if (!t || t->type != CG_IMAPP_ATOM)
        return;
    const char *d = cg_imapp_data(p, t);
    size_t k = 0;
    for (; d[k] && k < 15; k++)
        op[k] = (char)((d[k] >= 'a' && d[k] <= 'z') ? d[k] - 32 : d[k]);
    op[k] = '\0';
    const cg_imapp_tok *u = cg_imapp_tok_at(p, 2);
    if (!strcmp(op, "UID") && u && u->type == CG_IMAPP_ATOM) {
        const char *e = cg_imapp_data(p, u);
        size_t m = 4;
        memcpy(op, "UID ", 4);
        for (size_t j = 0; e[j] && m < CG_IMAP_OP_MAX - 1; j++)
            op[m++] = (char)((e[j] >= 'a' && e[j] <= 'z') ? e[j] - 32 : e[j]);
        op[m] = '\0';
    }
}

/* Starts the command: its number, tag and name (with a UID prefix). */
void cg_imap_begin_command(imap_sess *s)
{
    const char *tag = cg_imapp_tag(s->parser);
    s->n++;
    snprintf(s->tag, sizeof s->tag, "%s", tag ? tag : "*");
    cg_imap_peek_op(s->parser, s->op);
    s->resource[0] = '\0';
    s->decision[0] = '\0';
    s->rule_id = 0;
    s->bytes_in = s->line_bytes; /* its line and literals so far */
    s->line_bytes = 0;
    s->bytes_out = 0;
    s->fwd_tok = 0;
}

/* May this command be given before login on this connection? Refuses it
 * on the wire when not. */
bool cg_imap_preauth_allowed(cg_conn *c, imap_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_imap_cmd *cmd = cg_imap_cmd_find(s->op);
    if (ci->listener->tls == CG_TLS_STARTTLS && !ci->tls &&
        !(cmd && (cmd->flags & CG_IMAP_BEFORE_TLS))) {
        /* RFC 3501 6.2.1 / SPEC 3: nothing but these before STARTTLS */
        cg_imap_refuse(c, s, "NO", "PRIVACYREQUIRED", NULL, 0,
                       "STARTTLS first");
        return false;
    }
    if (cmd && (cmd->states & CG_IMAP_NOTAUTH))
        return true;
    cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
    return false;
}

/* The mailboxes of a command, decoded and judged as its row says: every
 * mailbox argument decoded first, then the rights on the selected
 * mailbox, then each mailbox's right; the names go out in their wire
 * form. False when refused (the refusal is sent). */
typedef struct judged {
    char name[2][NAME_MAX_], wire[2][NAME_MAX_];
    imap_repl repl;
} judged;

static bool judge_row(cg_conn *c, imap_sess *s, const imap_judge *j,
                      const cg_imap_cmd *cmd, judged *m)
{
    size_t a = strncmp(s->op, "UID ", 4) == 0 ? 3 : 2; /* the first argument */
    size_t n = 0;
    m->repl.n = 0;
    for (; n < CG_ARRAY_LEN(cmd->mbox) && cmd->mbox[n].right; n++)
        if (!cg_imap_arg_mailbox(c, s, a + cmd->mbox[n].arg, m->name[n], m->wire[n]))
            return false;
    if (cmd->selected && !cg_imap_need_selected(c, s, j, cmd->selected))
        return false;
    if (n)
        snprintf(s->resource, sizeof s->resource, "%s", m->name[0]);
    for (size_t i = 0; i < n; i++)
        if (!cg_imap_need(c, s, j, cmd->mbox[i].right, m->name[i], cmd->mbox[i].subtree))
            return false;
    for (size_t i = 0; i < n; i++)
        cg_imap_repl_set(&m->repl, a + cmd->mbox[i].arg, m->wire[i]);
    return true;
}

static void auth_command(cg_conn *c, imap_sess *s, const imap_judge *j)
{
    const cg_imap_cmd *cmd = cg_imap_cmd_find(s->op);
    if (!cmd) {
        /* an extension the gateway cannot police never reaches the
         * backend (COMPRESS, NOTIFY, URLAUTH, METADATA, ACL, ...) */
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Unknown or unsupported command");
        return;
    }
    if (!(cmd->states & CG_IMAP_AUTH)) {
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Already authenticated");
        return;
    }
    if (cmd->run) {
        cmd->run(c, s, j, cmd);
        return;
    }
    judged m;
    if (!judge_row(c, s, j, cmd, &m))
        return;
    /* a SELECT's mailbox stays in s->resource until its answer */
    if (cmd->kind == K_LOGOUT)
        s->logout = true;
    else if (cmd->kind == K_IDLE)
        s->idle = true;
    cg_imap_forward(c, s, &m.repl, cmd->kind);
}

void cg_imap_run_command(cg_conn *c, imap_sess *s)
{
    if (cg_audit_reserve(&s->resv) < 0) {
        /* SPEC 5: audit_fail = closed refuses new operations */
        cg_imap_refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        return;
    }
    if (s->state == S_PREAUTH) {
        if (cg_imap_preauth_allowed(c, s)) {
            const cg_imap_cmd *cmd = cg_imap_cmd_find(s->op);
            cmd->pre(c, s, NULL, cmd);
        }
        return;
    }
    imap_judge j;
    if (!cg_imap_judge_acquire(c, s, &j))
        return;
    auth_command(c, s, &j);
    cg_snapshot_release(j.snap);
}

/* ---- APPEND streaming ---------------------------------------------------- */

/* A message literal starts (RFC 3501 6.3.11, RFC 3502 MULTIAPPEND): the
 * first one is judged as APPEND's row says; the tokens so far go out with
 * the literal as non-synchronising, and the client gets "+" from us. */
void cg_imap_stream_start(cg_conn *c, imap_sess *s, const cg_imapp_event *ev)
{
    size_t nt = cg_imapp_ntok(s->parser);
    judged m;
    m.repl.n = 0;
    if (s->discarding) {
        if (ev->lit_sync) { /* the client stops after our NO */
            cg_imapp_reset(s->parser);
            s->discarding = false;
        }
        return;
    }
    if (!s->streaming) {
        cg_imap_begin_command(s);
        /* the parser streams only APPEND's literals */
        const cg_imap_cmd *cmd = cg_imap_cmd_find(s->op);
        bool ok = false;
        if (s->state != S_AUTH) {
            /* not valid before login (before STARTTLS: PRIVACYREQUIRED) */
            if (s->state != S_PREAUTH || cg_imap_preauth_allowed(c, s))
                cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
        } else if (cg_audit_reserve(&s->resv) < 0) {
            cg_imap_refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        } else if (!cmd) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Unknown or unsupported command");
        } else {
            imap_judge j;
            if (!cg_imap_judge_acquire(c, s, &j))
                return;
            ok = judge_row(c, s, &j, cmd, &m);
            cg_snapshot_release(j.snap);
        }
        if (!ok) {
            if (ev->lit_sync)
                cg_imapp_reset(s->parser);
            else
                s->discarding = true;
            return;
        }
        s->streaming = true;
        s->fwd_tok = 0;
    }
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    cg_imap_serialise(s, s->fwd_tok, nt - 1, s->fwd_tok == 0 ? &m.repl : NULL, &o);
    const cg_imapp_tok *lt = cg_imapp_tok_at(s->parser, nt - 1);
    cg_buf_fmt(&o, "%s%s{%llu+}\r\n", lt->sp_before ? " " : "",
                   ev->lit8 ? "~" : "", (unsigned long long)ev->lit_size);
    s->fwd_tok = nt;
    if (cg_imap_write_backend(c, &o) && ev->lit_sync)
        cg_imap_send(c, s, "+ OK");
}
