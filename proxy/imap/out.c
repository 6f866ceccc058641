/* proxy/imap/out.c — wire output: lines to the client, commands to the
 * backend re-serialised from their tokens with mailbox names in their
 * normalised form, the audit record of a command, the one refusal (wire
 * answer, log line, audit record) and the session's end (* BYE). */
#include "proxy/imap/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_log.h"
#include "common/cg_util.h"
#include "proxy/core/counters.h"

/* ---- output helpers ------------------------------------------------------ */

/* An IMAP string: quoted when it can be, else a non-synchronising literal
 * (the backend advertises LITERAL+; RFC 7888). */
void cg_imap_astring(cg_buf *o, const char *s, size_t n)
{
    bool quotable = n < 1024;
    for (size_t i = 0; i < n && quotable; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == 0 || ch >= 0x80)
            quotable = false;
    }
    if (!quotable) {
        cg_buf_fmt(o, "{%zu+}\r\n", n);
        cg_buf_add(o, s, n);
        return;
    }
    cg_buf_add(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            cg_buf_add(o, "\\", 1);
        cg_buf_add(o, s + i, 1);
    }
    cg_buf_add(o, "\"", 1);
}

void cg_imap_send(cg_conn *c, imap_sess *s, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    memcpy(line + n, "\r\n", 2);
    cg_imap_to_client(c, s, line, (size_t)n + 2);
}

static void txid_of(cg_conn *c, uint64_t n, imap_txid *id)
{
    snprintf(id->s, sizeof id->s, "%s.%llu", cg_conn_info_of(c)->session_id,
             (unsigned long long)n);
}

void cg_imap_txid(cg_conn *c, const imap_sess *s, imap_txid *id)
{
    txid_of(c, s->n, id);
}

/* Safe for a resp-text: quotes and backslashes escaped, controls dropped. */
void cg_imap_text_name(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 3 < cap; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch < 0x20 || ch == 0x7f)
            continue;
        if (ch == '"' || ch == '\\')
            out[o++] = '\\';
        out[o++] = (char)ch;
    }
    out[o] = '\0';
}
/* ---- audit --------------------------------------------------------------- */

const char *cg_imap_method_name(unsigned m)
{
    return m ? cg_auth_method_name(m) : NULL;
}

/* What a record says of its command beyond the decision: its number,
 * its audit place and its bytes (the command at hand's, or a flight's). */
typedef struct imap_act {
    uint64_t n;
    cg_audit_resv *resv;
    int64_t bytes_in, bytes_out;
} imap_act;

static void audit_as(cg_conn *c, const imap_sess *s, const imap_act *a,
                     const char *operation, const char *resource, const char *decision,
                     int64_t rule_id, const char *result, const char *reason)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    imap_txid id;
    txid_of(c, a->n, &id);
    cg_audit_rec r;
    cg_conn_info_audit(ci, &r);
    r.txid = a->n ? id.s : NULL;
    r.principal = s->principal[0] ? s->principal : NULL;
    r.originator = s->originator[0] ? s->originator : NULL;
    /* before login the ID's transaction id is not yet anyone's */
    r.origin_txid = s->originator[0] && s->origin_txid[0] ? s->origin_txid : NULL;
    r.method = cg_imap_method_name(s->method);
    r.service = "imap";
    r.operation = operation;
    r.resource = resource && resource[0] ? resource : NULL;
    r.decision = decision;
    r.rule_id = rule_id > 0 ? rule_id : -1;
    r.result = result;
    r.bytes_in = a->bytes_in;
    r.bytes_out = a->bytes_out;
    r.reason = reason;
    if (decision)
        cg_metrics_operation("imap", decision);
    if (cg_audit_commit(a->resv, &r) < 0)
        cg_warn("conn=%llu imap: audit record for %s not stored",
                (unsigned long long)ci->id, id.s);
}

void cg_imap_audit(cg_conn *c, imap_sess *s, const char *operation,
                   const char *resource, const char *decision, int64_t rule_id,
                   const char *result, const char *reason)
{
    imap_act a = { .n = s->n, .resv = &s->resv, .bytes_in = s->bytes_in,
                   .bytes_out = s->bytes_out };
    audit_as(c, s, &a, operation, resource, decision, rule_id, result, reason);
}

void cg_imap_audit_flight(cg_conn *c, imap_sess *s, imap_flight *f, const char *result)
{
    imap_act a = { .n = f->n, .resv = &f->resv, .bytes_in = f->bytes_in,
                   .bytes_out = f->bytes_out };
    audit_as(c, s, &a, f->op, f->on_selected ? s->selected : NULL, "allow", f->rule_id,
             result, NULL);
}

/* No command in flight any more. */
static void command_over(imap_sess *s)
{
    s->busy = false;
    s->streaming = false;
    s->op[0] = '\0';
    s->resource[0] = '\0';
    s->decision[0] = '\0';
    s->rule_id = 0;
    s->kind = K_PLAIN;
}

/* The one refusal path: the wire answer, the log line, the audit record.
 * result is NO or BAD; code may be NULL. */
void cg_imap_refuse(cg_conn *c, imap_sess *s, const char *result,
                    const char *code, const char *resource, int64_t rule_id,
                    const char *fmt, ...)
{
    char text[1200];
    imap_txid id;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cg_imap_txid(c, s, &id);
    const char *tag = s->tag[0] ? s->tag : "*";
    if (code)
        cg_imap_send(c, s, "%s %s [%s] %s (txid %s)", tag, result, code, text,
                     s->n ? id.s : cg_conn_info_of(c)->session_id);
    else
        cg_imap_send(c, s, "%s %s %s (txid %s)", tag, result, text,
                     s->n ? id.s : cg_conn_info_of(c)->session_id);
    cg_info("conn=%llu imap txid=%s principal=%s %s %s: %s",
            (unsigned long long)cg_conn_info_of(c)->id, id.s,
            s->principal[0] ? s->principal : "-", s->op[0] ? s->op : "-",
            result, text);
    /* NOPERM is the ACL's refusal (RFC 5530), the only one that is a
     * "deny"; every other refusal (syntax, login, audit store) is an
     * error with its reason */
    cg_imap_audit(c, s, s->op[0] ? s->op : "command", resource,
                  code && strcmp(code, "NOPERM") == 0 ? "deny" : "error", rule_id, result, text);
    command_over(s);
}

void cg_imap_bye(cg_conn *c, imap_sess *s, const char *why, const char *fmt, ...)
{
    char text[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cg_imap_send(c, s, "* BYE %s", text);
    s->state = S_CLOSED;
    cg_conn_close(c, why);
}
/* ---- forwarding ---------------------------------------------------------- */

/* Replaces token tok by wire. The callers name at most CG_ARRAY_LEN(at)
 * mailboxes: a third is a bug here, and forwarding the raw token instead
 * of the judged name is not an option, so it stops the process. */
void cg_imap_repl_set(imap_repl *r, size_t tok, const char *wire)
{
    if (r->n >= CG_ARRAY_LEN(r->at)) {
        cg_error("imap: more mailbox replacements than a command has");
        abort();
    }
    r->at[r->n].tok = tok;
    r->at[r->n].wire = wire;
    r->n++;
}

static const char *repl_for(const imap_repl *r, size_t tok)
{
    for (size_t k = 0; r && k < r->n; k++)
        if (r->at[k].tok == tok)
            return r->at[k].wire;
    return NULL;
}

/* Re-serialises tokens [from, to) of the current command, with mailbox
 * tokens replaced by their normalised wire form (repl may be NULL). */
void cg_imap_serialise(const imap_sess *s, size_t from, size_t to,
                       const imap_repl *repl, cg_buf *o)
{
    const cg_imapp *p = s->parser;
    for (size_t i = from; i < to; i++) {
        const cg_imapp_tok *t = cg_imapp_tok_at(p, i);
        const char *d = cg_imapp_data(p, t);
        const char *w = repl_for(repl, i);
        if (i > 0 && t->sp_before)
            cg_buf_add(o, " ", 1);
        if (w) {
            cg_imap_astring(o, w, strlen(w));
            continue;
        }
        switch (t->type) {
        case CG_IMAPP_ATOM:
            cg_buf_add(o, d, t->len);
            break;
        case CG_IMAPP_QUOTED: /* the same string, quoted or as a literal */
            cg_imap_astring(o, d, t->len);
            break;
        case CG_IMAPP_LITERAL:
            if (t->streamed)
                break;
            cg_buf_fmt(o, "{%u+}\r\n", t->len);
            cg_buf_add(o, d, t->len);
            break;
        case CG_IMAPP_LIST_OPEN:
            cg_buf_add(o, "(", 1);
            break;
        case CG_IMAPP_LIST_CLOSE:
            cg_buf_add(o, ")", 1);
            break;
        }
    }
}

bool cg_imap_write_backend(cg_conn *c, cg_buf *o)
{
    if (!cg_imap_pipe_flush(c, cg_conn_session(c))) {
        cg_buf_free(o);
        return false;
    }
    bool ok = !o->failed && cg_conn_write_upstream(c, o->p, o->len) == 0;
    cg_buf_free(o);
    if (!ok)
        cg_conn_close(c, "upstream write failed");
    return ok;
}

void cg_imap_forward(cg_conn *c, imap_sess *s, const imap_repl *repl, int kind)
{
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    cg_imap_serialise(s, s->fwd_tok, cg_imapp_ntok(s->parser), repl, &o);
    cg_buf_add(&o, "\r\n", 2);
    if (!cg_imap_write_backend(c, &o))
        return;
    s->kind = kind;
    s->busy = true;
    s->fwd_tok = 0;
    cg_conn_upstream_expect(c, true);
}

void cg_imap_send_backend(cg_conn *c, const char *fmt, ...)
{
    cg_buf o;
    va_list ap;
    cg_buf_init(&o, OUT_MAX);
    va_start(ap, fmt);
    cg_buf_vfmt(&o, fmt, ap);
    va_end(ap);
    cg_imap_send_upstream(c, &o);
}

void cg_imap_send_upstream(cg_conn *c, cg_buf *o)
{
    cg_buf_add(o, "\r\n", 2);
    if (cg_imap_write_backend(c, o))
        cg_conn_upstream_expect(c, true);
}

/* The command is over (answered by us or by the backend). */
void cg_imap_command_done(cg_conn *c, imap_sess *s, const char *result)
{
    if (s->op[0])
        cg_imap_audit(c, s, s->op, s->resource, s->decision[0] ? s->decision : "allow",
                      s->rule_id, result, NULL);
    command_over(s);
}
void cg_imap_to_client(cg_conn *c, imap_sess *s, const void *d, size_t n)
{
    if (s->nflight)
        s->flights[s->flight_rx].bytes_out += (int64_t)n;
    else
        s->bytes_out += (int64_t)n;
    if (cg_conn_write_client(c, d, n) < 0)
        cg_conn_abort(c, "client write failed");
}
