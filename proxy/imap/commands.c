/* proxy/imap/commands.c — the commands (SPEC section 4): what each command
 * the gateway accepts needs before it reaches Dovecot, before and after
 * login, and the APPEND whose message streams through. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_log.h"
#include "common/cg_util.h"

/* ---- commands ------------------------------------------------------------ */

const char *cg_imap_tok_str(const imap_sess *s, size_t i, size_t *len)
{
    const cg_imapp_tok *t = cg_imapp_tok_at(s->parser, i);
    if (!t || !cg_imapp_is_string(t))
        return NULL;
    if (len)
        *len = t->len;
    return cg_imapp_data(s->parser, t);
}

/* Starts the command: its number, tag and name (with a UID prefix). */
void cg_imap_begin_command(imap_sess *s)
{
    const char *tag = cg_imapp_tag(s->parser);
    s->n++;
    snprintf(s->tag, sizeof s->tag, "%s", tag ? tag : "*");
    s->op[0] = '\0';
    const cg_imapp_tok *t = cg_imapp_tok_at(s->parser, 1);
    if (t && t->type == CG_IMAPP_ATOM) {
        const char *d = cg_imapp_data(s->parser, t);
        size_t k = 0;
        for (; d[k] && k < 15; k++)
            s->op[k] = (char)((d[k] >= 'a' && d[k] <= 'z') ? d[k] - 32 : d[k]);
        s->op[k] = '\0';
        const cg_imapp_tok *u = cg_imapp_tok_at(s->parser, 2);
        if (!strcmp(s->op, "UID") && u && u->type == CG_IMAPP_ATOM) {
            const char *e = cg_imapp_data(s->parser, u);
            size_t m = 4;
            memcpy(s->op, "UID ", 4);
            for (size_t j = 0; e[j] && m < sizeof s->op - 1; j++)
                s->op[m++] = (char)((e[j] >= 'a' && e[j] <= 'z') ? e[j] - 32 : e[j]);
            s->op[m] = '\0';
        }
    }
    s->resource[0] = '\0';
    s->decision[0] = '\0';
    s->rule_id = 0;
    s->bytes_in = 0;
    s->bytes_out = 0;
    s->fwd_tok = 0;
}

static bool op_is(const imap_sess *s, const char *name)
{
    return strcmp(s->op, name) == 0;
}

/* May this command be given before login on this connection? Refuses it
 * on the wire when not. */
bool cg_imap_preauth_allowed(cg_conn *c, imap_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    bool basic = op_is(s, "CAPABILITY") || op_is(s, "NOOP") ||
                 op_is(s, "LOGOUT") || op_is(s, "STARTTLS");
    if (ci->listener->tls == CG_TLS_STARTTLS && !ci->tls && !basic) {
        /* RFC 3501 6.2.1 / SPEC 3: nothing but these before STARTTLS */
        cg_imap_refuse(c, s, "NO", "PRIVACYREQUIRED", NULL, 0,
                       "STARTTLS first");
        return false;
    }
    if (basic || op_is(s, "LOGIN") || op_is(s, "AUTHENTICATE") || op_is(s, "ID"))
        return true;
    cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
    return false;
}

static void preauth_command(cg_conn *c, imap_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    char caps[2300];
    if (!cg_imap_preauth_allowed(c, s))
        return;
    if (op_is(s, "CAPABILITY")) {
        cg_imap_our_caps(c, s, caps, sizeof caps);
        cg_imap_send(c, s, "* CAPABILITY %s", caps);
        cg_imap_send(c, s, "%s OK Capability completed", s->tag);
        cg_imap_command_done(c, s, "OK");
    } else if (op_is(s, "NOOP")) {
        cg_imap_send(c, s, "%s OK NOOP completed", s->tag);
        cg_imap_command_done(c, s, "OK");
    } else if (op_is(s, "ID")) {
        /* answered here: a client's ID never reaches the backend before
         * login (it could claim another x-originating-ip) */
        cg_imap_send(c, s, "* ID NIL");
        cg_imap_send(c, s, "%s OK ID completed", s->tag);
        cg_imap_command_done(c, s, "OK");
    } else if (op_is(s, "LOGOUT")) {
        cg_imap_send(c, s, "* BYE Logging out");
        cg_imap_send(c, s, "%s OK Logout completed", s->tag);
        cg_imap_command_done(c, s, "OK");
        s->state = S_CLOSED;
        cg_conn_close(c, "logout");
    } else if (op_is(s, "STARTTLS")) {
        if (ci->listener->tls != CG_TLS_STARTTLS || ci->tls) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "STARTTLS not available");
            return;
        }
        cg_imap_send(c, s, "%s OK Begin TLS negotiation now", s->tag);
        cg_imap_command_done(c, s, "OK");
        /* CVE-2011-0411: plaintext pipelined after STARTTLS is dropped,
         * never executed after the handshake */
        s->inlen = s->inoff = 0;
        cg_imapp_reset(s->parser);
        s->busy = true; /* until on_tls_ready */
        if (cg_conn_start_tls(c) < 0)
            cg_conn_close(c, "starttls failed");
    } else if (op_is(s, "LOGIN")) {
        size_t ul = 0, pl = 0;
        const char *u = cg_imap_tok_str(s, 2, &ul), *pw = cg_imap_tok_str(s, 3, &pl);
        if (!u || !pw || cg_imapp_ntok(s->parser) != 4) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "LOGIN needs a user and a password");
            return;
        }
        if (strlen(u) != ul) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "invalid user name");
            return;
        }
        cg_imap_login(c, s, NULL, u, pw, pl, false);
    } else if (op_is(s, "AUTHENTICATE")) {
        size_t ml;
        const char *mech = cg_imap_tok_str(s, 2, &ml);
        size_t nt = cg_imapp_ntok(s->parser);
        bool ext = mech && strcasecmp(mech, "EXTERNAL") == 0;
        bool plain = mech && strcasecmp(mech, "PLAIN") == 0;
        if (!ext && !plain) {
            cg_imap_refuse(c, s, "NO", NULL, NULL, 0, "Unsupported authentication mechanism");
            return;
        }
        if (nt > 4) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "too many arguments");
            return;
        }
        if (nt == 4) { /* SASL-IR (RFC 4959) */
            size_t il;
            const char *ir = cg_imap_tok_str(s, 3, &il);
            if (!ir) {
                cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "invalid initial response");
                return;
            }
            cg_imap_sasl_response(c, s, ext, ir, il);
            return;
        }
        s->auth_wait = ext ? AW_EXTERNAL : AW_PLAIN;
        s->busy = true;
        cg_imap_send(c, s, "+ ");
    }
}

static void auth_command(cg_conn *c, imap_sess *s, const imap_judge *j)
{
    size_t nt = cg_imapp_ntok(s->parser);
    imap_repl repl = { 0 };
    char name[NAME_MAX_], wire[NAME_MAX_], name2[NAME_MAX_], wire2[NAME_MAX_];
    bool uid = strncmp(s->op, "UID ", 4) == 0;
    const char *op = uid ? s->op + 4 : s->op;
    size_t a = uid ? 3 : 2; /* first argument */
    if (op_is(s, "CAPABILITY") || op_is(s, "NOOP") || op_is(s, "CHECK") ||
        op_is(s, "NAMESPACE") || op_is(s, "ID") || op_is(s, "LIST") ||
        op_is(s, "LSUB") || op_is(s, "CANCELUPDATE")) {
        /* LIST/LSUB: the answers are filtered (list right); CANCELUPDATE
         * (RFC 5267) only stops updates of a search already judged */
        cg_imap_forward(c, s, NULL, K_PLAIN);
    } else if (op_is(s, "UNSELECT")) {
        cg_imap_forward(c, s, NULL, K_DESELECT);
    } else if (op_is(s, "LOGOUT")) {
        s->logout = true;
        cg_imap_forward(c, s, NULL, K_LOGOUT);
    } else if (op_is(s, "IDLE")) {
        if (!cg_imap_need_selected(c, s, j, CG_RIGHT_READ))
            return;
        s->idle = true;
        cg_imap_forward(c, s, NULL, K_IDLE);
    } else if (op_is(s, "SELECT") || op_is(s, "EXAMINE") || op_is(s, "STATUS") ||
               op_is(s, "CREATE") || op_is(s, "DELETE") ||
               op_is(s, "SUBSCRIBE") || op_is(s, "UNSUBSCRIBE") ||
               op_is(s, "APPEND")) {
        unsigned right = op_is(s, "CREATE") ? CG_RIGHT_CREATE
                       : op_is(s, "DELETE") ? CG_RIGHT_DELETE
                       : op_is(s, "APPEND") ? CG_RIGHT_WRITE
                       : (op_is(s, "SUBSCRIBE") || op_is(s, "UNSUBSCRIBE"))
                           ? CG_RIGHT_LIST : CG_RIGHT_READ;
        if (!cg_imap_arg_mailbox(c, s, 2, name, wire))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        if (!cg_imap_need(c, s, j, right, name, op_is(s, "DELETE")))
            return;
        cg_imap_repl_set(&repl, 2, wire);
        if (op_is(s, "SELECT") || op_is(s, "EXAMINE")) {
            snprintf(s->pending_select, sizeof s->pending_select, "%s", name);
            cg_imap_forward(c, s, &repl, K_SELECT);
        } else {
            cg_imap_forward(c, s, &repl, K_PLAIN);
        }
    } else if (op_is(s, "RENAME")) {
        if (!cg_imap_arg_mailbox(c, s, 2, name, wire) || !cg_imap_arg_mailbox(c, s, 3, name2, wire2))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        /* the subtree moves with it (SPEC 4): judged below both names */
        if (!cg_imap_need(c, s, j, CG_RIGHT_DELETE, name, true) ||
            !cg_imap_need(c, s, j, CG_RIGHT_CREATE, name2, true))
            return;
        cg_imap_repl_set(&repl, 2, wire);
        cg_imap_repl_set(&repl, 3, wire2);
        cg_imap_forward(c, s, &repl, K_PLAIN);
    } else if (!strcmp(op, "FETCH") || !strcmp(op, "SEARCH") ||
               !strcmp(op, "SORT") || !strcmp(op, "THREAD")) {
        if (cg_imap_need_selected(c, s, j, CG_RIGHT_READ))
            cg_imap_forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "STORE")) {
        if (cg_imap_need_selected(c, s, j, CG_RIGHT_WRITE))
            cg_imap_forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "EXPUNGE")) {
        if (cg_imap_need_selected(c, s, j, CG_RIGHT_DELETE))
            cg_imap_forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "COPY") || !strcmp(op, "MOVE")) {
        bool move = !strcmp(op, "MOVE");
        if (!cg_imap_arg_mailbox(c, s, a + 1, name, wire))
            return;
        if (!cg_imap_need_selected(c, s, j, move ? CG_RIGHT_READ | CG_RIGHT_DELETE
                                                 : CG_RIGHT_READ))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        if (!cg_imap_need(c, s, j, CG_RIGHT_WRITE, name, false))
            return;
        cg_imap_repl_set(&repl, a + 1, wire);
        cg_imap_forward(c, s, &repl, K_PLAIN);
    } else if (op_is(s, "CLOSE")) {
        if (s->has_selected) {
            snprintf(s->resource, sizeof s->resource, "%s", s->selected);
            cg_decision d = cg_imap_decide(j, s, CG_RIGHT_DELETE, s->selected);
            s->rule_id = d.rule_id;
            if (!d.allow) {
                /* CLOSE expunges silently: without delete it is UNSELECT
                 * (RFC 3691), so \Deleted messages stay */
                cg_imap_obuf o = { 0 };
                cg_imap_ob_str(&o, s->tag);
                cg_imap_ob_str(&o, " UNSELECT");
                cg_imap_send_upstream(c, &o);
                s->kind = K_DESELECT;
                s->busy = true;
                return;
            }
        }
        cg_imap_forward(c, s, NULL, K_DESELECT);
    } else if (op_is(s, "ENABLE")) {
        /* only extensions the gateway understands (RFC 5161: unknown ones
         * are ignored by servers anyway) */
        cg_imap_obuf o = { 0 };
        int kept = 0;
        cg_imap_ob_str(&o, s->tag);
        cg_imap_ob_str(&o, " ENABLE");
        for (size_t i = 2; i < nt; i++) {
            size_t l;
            const char *e = cg_imap_tok_str(s, i, &l);
            if (e && (!strcasecmp(e, "CONDSTORE") || !strcasecmp(e, "QRESYNC") ||
                      !strcasecmp(e, "UTF8=ACCEPT"))) {
                cg_imap_ob_put(&o, " ", 1);
                cg_imap_ob_str(&o, e);
                kept++;
            }
        }
        if (!kept) {
            free(o.p);
            cg_imap_send(c, s, "* ENABLED");
            cg_imap_send(c, s, "%s OK Enabled", s->tag);
            cg_imap_command_done(c, s, "OK");
            return;
        }
        cg_imap_send_upstream(c, &o);
        s->kind = K_PLAIN;
        s->busy = true;
    } else if (op_is(s, "LOGIN") || op_is(s, "AUTHENTICATE") ||
               op_is(s, "STARTTLS")) {
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Already authenticated");
    } else {
        /* an extension the gateway cannot police never reaches the
         * backend (COMPRESS, NOTIFY, URLAUTH, METADATA, ACL, ...) */
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Unknown or unsupported command");
    }
}
void cg_imap_run_command(cg_conn *c, imap_sess *s)
{
    if (cg_audit_reserve(&s->resv) < 0) {
        /* SPEC 5: audit_fail = closed refuses new operations */
        cg_imap_refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        return;
    }
    if (s->state == S_PREAUTH) {
        preauth_command(c, s);
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
 * first one is judged (write on the mailbox); the tokens so far go out
 * with the literal as non-synchronising, and the client gets "+" from us. */
void cg_imap_stream_start(cg_conn *c, imap_sess *s, const cg_imapp_event *ev)
{
    size_t nt = cg_imapp_ntok(s->parser);
    char name[NAME_MAX_], wire[NAME_MAX_];
    imap_repl repl = { 0 };
    if (s->discarding) {
        if (ev->lit_sync) { /* the client stops after our NO */
            cg_imapp_reset(s->parser);
            s->discarding = false;
        }
        return;
    }
    if (!s->streaming) {
        cg_imap_begin_command(s);
        bool ok = false;
        if (s->state != S_AUTH) {
            if (s->state == S_PREAUTH)
                (void)cg_imap_preauth_allowed(c, s); /* APPEND: refused there */
            if (s->op[0])
                cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
        } else if (cg_audit_reserve(&s->resv) < 0) {
            cg_imap_refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        } else {
            imap_judge j;
            if (!cg_imap_judge_acquire(c, s, &j))
                return;
            if (cg_imap_arg_mailbox(c, s, 2, name, wire)) {
                snprintf(s->resource, sizeof s->resource, "%s", name);
                ok = cg_imap_need(c, s, &j, CG_RIGHT_WRITE, name, false);
            }
            cg_snapshot_release(j.snap);
        }
        if (!ok) {
            if (ev->lit_sync)
                cg_imapp_reset(s->parser);
            else
                s->discarding = true;
            return;
        }
        cg_imap_repl_set(&repl, 2, wire);
        s->streaming = true;
        s->fwd_tok = 0;
    }
    cg_imap_obuf o = { 0 };
    cg_imap_serialise(s, s->fwd_tok, nt - 1, s->fwd_tok == 0 ? &repl : NULL, &o);
    const cg_imapp_tok *lt = cg_imapp_tok_at(s->parser, nt - 1);
    cg_imap_ob_fmt(&o, "%s%s{%llu+}\r\n", lt->sp_before ? " " : "",
                   ev->lit8 ? "~" : "", (unsigned long long)ev->lit_size);
    s->fwd_tok = nt;
    if (o.oom || cg_conn_write_upstream(c, o.p, o.len) < 0)
        cg_conn_close(c, "upstream write failed");
    free(o.p);
    if (ev->lit_sync)
        cg_imap_send(c, s, "+ OK");
}
