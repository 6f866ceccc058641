/* proxy/imap/session.c — the IMAP gateway (SPEC sections 2-5): cpmgate greets, polices
 * STARTTLS, logs in to the backend for the client (master user or pass-
 * through), then judges every command that names or acts on a mailbox
 * against the current policy snapshot before it reaches Dovecot, filters
 * LIST/LSUB/STATUS answers and capability lists, and audits each command.
 * Commands are handled one at a time: pipelined input waits in a bounded
 * buffer, so each decision sees the state (selected mailbox) left by the
 * command before it. Nothing the client sends reaches the backend unparsed:
 * commands are re-serialised from their tokens. */
#include "proxy/core/conn.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/acl.h"
#include "store/audit.h"
#include "common/cg_base64.h"
#include "common/cg_addrtab.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/admin/metrics.h"
#include "common/cg_buf.h"
#include "common/cg_util.h"
#include "proxy/imap/mutf7.h"
#include "proxy/imap/parser.h"
#include "proxy/imap/scan.h"
#include "policy/snapshot.h"

#define IN_MAX (256 * 1024)     /* pipelined client bytes held at most */
#define HOLD_MAX (64 * 1024)    /* a held (filtered) response */
#define HOLD_KEEP 4096          /* hold buffer kept between responses */
#define IN_KEEP 2048            /* client input buffer kept while idle */
#define NAME_MAX_ 1024          /* a decoded mailbox name */
#define FAIL_DELAY_MS 2000      /* failed logins answer after this, whether
                                 * the user exists or not */

enum state { S_CONNECTING, S_PREAUTH, S_LOGIN, S_AUTH, S_CLOSED };
/* What the tagged answer of the command in flight means. */
enum kind { K_PLAIN, K_SELECT, K_DESELECT, K_LOGOUT, K_IDLE };
/* Internal commands of the login sequence. */
enum istage { I_NONE, I_ID, I_LOGIN, I_LIST };
enum auth_wait { AW_NONE, AW_PLAIN, AW_EXTERNAL };

typedef struct imap_sess {
    cg_imapp *parser;
    cg_imapp *rparser;          /* server mode: held LIST/STATUS lines */
    cg_imaps *scan;
    int state;
    uint8_t *in;
    size_t inlen, inoff, incap;
    uint8_t *hold;
    size_t holdlen, holdcap;
    bool holding, hold_overflow;
    /* the command being handled */
    cg_audit_resv resv;         /* the place of its audit record (SPEC 5) */
    bool busy;
    uint64_t n;                 /* command counter: txid SID.n */
    char tag[64];
    char op[32];
    char resource[NAME_MAX_];
    char decision[8];
    int64_t rule_id;
    int64_t bytes_in, bytes_out;
    int kind;
    char pending_select[NAME_MAX_];
    bool pending_readonly;
    bool streaming, discarding;
    bool answered;              /* the backend answered the APPEND being
                                 * streamed before all of it was sent */
    size_t fwd_tok;
    bool idle;
    /* Two deadlines (cg_mono_ms; 0 = none) share the connection's one
     * protocol timer, armed for the earlier: each is set and cleared
     * only by its own owner, so ending a command line never cancels a
     * pending login-failure answer. */
    uint64_t cmd_deadline;      /* client_timeout: the command line (or a
                                 * stalled APPEND literal) must be done */
    /* login */
    int istage;
    int auth_wait;
    char login_user[CG_NAME_MAX + 1];
    uint64_t fail_at;           /* a delayed AUTHENTICATIONFAILED is due */
    char fail_tag[64];
    /* the session */
    int64_t principal_id;  /* what each command looks up; 0 before login */
    char principal[CG_NAME_MAX + 1]; /* for logs and audit */
    char mailbox_login[CG_NAME_MAX + 1];
    unsigned method;
    char selected[NAME_MAX_];
    bool has_selected;
    char delim;
    bool utf8;
    bool literal_plus;
    char caps_backend[2048];    /* filtered, without our own */
    bool logout;
} imap_sess;

/* ---- small output helpers ------------------------------------------------ */

typedef struct obuf {
    char *p;
    size_t len, cap;
    bool oom;
} obuf;

static void ob_put(obuf *o, const void *d, size_t n)
{
    if (o->oom)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        while (nc < o->len + n + 1)
            nc *= 2;
        char *np = realloc(o->p, nc);
        if (!np) {
            o->oom = true;
            return;
        }
        o->p = np;
        o->cap = nc;
    }
    memcpy(o->p + o->len, d, n);
    o->len += n;
    o->p[o->len] = '\0';
}
static void ob_str(obuf *o, const char *s) { ob_put(o, s, strlen(s)); }
static void ob_fmt(obuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ob_fmt(obuf *o, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        ob_put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* An IMAP string: quoted when it can be, else a non-synchronising literal
 * (the backend advertises LITERAL+; RFC 7888). */
static void ob_astring(obuf *o, const char *s, size_t n)
{
    bool quotable = n < 1024;
    for (size_t i = 0; i < n && quotable; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == 0 || ch >= 0x80)
            quotable = false;
    }
    if (!quotable) {
        ob_fmt(o, "{%zu+}\r\n", n);
        ob_put(o, s, n);
        return;
    }
    ob_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            ob_put(o, "\\", 1);
        ob_put(o, s + i, 1);
    }
    ob_put(o, "\"", 1);
}

static void send_client(cg_conn *c, imap_sess *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_client(cg_conn *c, imap_sess *s, const char *fmt, ...)
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
    s->bytes_out += n + 2;
    cg_conn_write_client(c, line, (size_t)n + 2);
}

static void txid(cg_conn *c, const imap_sess *s, char out[40])
{
    snprintf(out, 40, "%s.%llu", cg_conn_info_of(c)->session_id,
             (unsigned long long)s->n);
}

/* Safe for a resp-text: quotes and backslashes escaped, controls dropped. */
static void text_name(const char *in, char *out, size_t cap)
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

/* Arms the connection's timer for the earlier of the session's
 * deadlines (or cancels it when there is none). */
static void arm_timer(cg_conn *c, const imap_sess *s)
{
    uint64_t due = 0;
    if (s->fail_at)
        due = s->fail_at;
    if (s->cmd_deadline && (!due || s->cmd_deadline < due))
        due = s->cmd_deadline;
    if (!due) {
        cg_conn_set_timer(c, 0);
        return;
    }
    uint64_t now = cg_mono_ms();
    /* at least 1 ms: 0 would cancel a deadline that is already due */
    cg_conn_set_timer(c, due > now ? due - now : 1);
}

/* ---- audit --------------------------------------------------------------- */

static const char *method_name(unsigned m)
{
    return m ? cg_auth_method_name(m) : NULL;
}

static void audit(cg_conn *c, imap_sess *s, const char *operation,
                  const char *resource, const char *decision, int64_t rule_id,
                  const char *result, const char *reason)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    char id[40];
    txid(c, s, id);
    cg_audit_rec r;
    cg_conn_info_audit(ci, &r);
    r.txid = s->n ? id : NULL;
    r.principal = s->principal[0] ? s->principal : NULL;
    r.method = method_name(s->method);
    r.service = "imap";
    r.operation = operation;
    r.resource = resource && resource[0] ? resource : NULL;
    r.decision = decision;
    r.rule_id = rule_id > 0 ? rule_id : -1;
    r.result = result;
    r.bytes_in = s->bytes_in;
    r.bytes_out = s->bytes_out;
    r.reason = reason;
    if (decision)
        cg_metrics_operation("imap", decision);
    if (cg_audit_commit(&s->resv, &r) < 0)
        cg_warn("conn=%llu imap: audit record for %s not stored",
                (unsigned long long)ci->id, id);
}

/* The one refusal path: the wire answer, the log line, the audit record.
 * result is NO or BAD; code may be NULL. */
static void refuse(cg_conn *c, imap_sess *s, const char *result,
                   const char *code, const char *resource, int64_t rule_id,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void refuse(cg_conn *c, imap_sess *s, const char *result,
                   const char *code, const char *resource, int64_t rule_id,
                   const char *fmt, ...)
{
    char text[1200], id[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    txid(c, s, id);
    const char *tag = s->tag[0] ? s->tag : "*";
    if (code)
        send_client(c, s, "%s %s [%s] %s (txid %s)", tag, result, code, text,
                    s->n ? id : cg_conn_info_of(c)->session_id);
    else
        send_client(c, s, "%s %s %s (txid %s)", tag, result, text,
                    s->n ? id : cg_conn_info_of(c)->session_id);
    cg_info("conn=%llu imap txid=%s principal=%s %s %s: %s",
            (unsigned long long)cg_conn_info_of(c)->id, id,
            s->principal[0] ? s->principal : "-", s->op[0] ? s->op : "-",
            result, text);
    /* NOPERM is the ACL's refusal (RFC 5530), the only one that is a
     * "deny"; every other refusal (syntax, login, audit store) is an
     * error with its reason */
    audit(c, s, s->op[0] ? s->op : "command", resource,
          code && strcmp(code, "NOPERM") == 0 ? "deny" : "error", rule_id, result, text);
    /* the command is over */
    s->busy = false;
    s->streaming = false;
    s->op[0] = '\0';
    s->resource[0] = '\0';
    s->kind = 0;
}

/* ---- capabilities (SPEC section 4 allowlist) ------------------------------ */

/* Everything not in cap_allow is removed: the gateway cannot judge what
 * those extensions name. Some of Dovecot's imaptest scripted tests need
 * such a capability; through the gateway imaptest skips them, and
 * tests/integration/test_imaptest.py reads this list (one per line):
 *   imaptest catenate needs CATENATE: an APPEND part by IMAP URL reads a mailbox no command names
 *   imaptest catenate-multiappend needs CATENATE: as catenate
 *   imaptest notify needs NOTIFY: events from mailboxes no command names, never judged per event
 *   imaptest urlauth needs URLAUTH: GENURLAUTH/URLFETCH read mailboxes by URL, outside the ACL
 *   imaptest urlauth2 needs URLAUTH: as urlauth
 *   imaptest urlauth-binary needs URLAUTH: as urlauth
 */

static const char *const cap_allow[] = {
    "IMAP4rev1", "LITERAL+", "LITERAL-", "SASL-IR", "ID", "ENABLE", "IDLE",
    "NAMESPACE", "UNSELECT", "UIDPLUS", "CHILDREN", "LIST-EXTENDED",
    "LIST-STATUS", "SPECIAL-USE", "MOVE", "MULTIAPPEND", "CONDSTORE",
    "QRESYNC", "ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT",
    "CONTEXT=SEARCH", "CONTEXT=SORT", "WITHIN", "BINARY", "I18NLEVEL=1",
};

static bool cap_allowed(const char *w, size_t n)
{
    if (n > 7 && strncasecmp(w, "THREAD=", 7) == 0)
        return true;
    for (size_t i = 0; i < CG_ARRAY_LEN(cap_allow); i++)
        if (strlen(cap_allow[i]) == n && strncasecmp(w, cap_allow[i], n) == 0)
            return true;
    return false;
}

/* Filters a space-separated capability list (without IMAP4rev1 handling:
 * it is in the allowlist). */
static void filter_caps(const char *in, size_t len, char *out, size_t cap,
                        bool *literal_plus)
{
    size_t o = 0, i = 0;
    out[0] = '\0';
    while (i < len) {
        while (i < len && in[i] == ' ')
            i++;
        size_t st = i;
        while (i < len && in[i] != ' ')
            i++;
        size_t n = i - st;
        if (n == 0 || !cap_allowed(in + st, n))
            continue;
        if (literal_plus && n == 8 && strncasecmp(in + st, "LITERAL+", 8) == 0)
            *literal_plus = true;
        if (o + n + 2 >= cap)
            break;
        if (o)
            out[o++] = ' ';
        memcpy(out + o, in + st, n);
        o += n;
        out[o] = '\0';
    }
}

/* Our capability list for the client now. */
static void our_caps(cg_conn *c, imap_sess *s, char *out, size_t cap)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    snprintf(out, cap, "%s", s->caps_backend[0] ? s->caps_backend : "IMAP4rev1");
    if (s->state >= S_AUTH)
        return;
    size_t o = strlen(out);
    if (ci->listener->tls == CG_TLS_STARTTLS && !ci->tls) {
        snprintf(out + o, cap - o, " STARTTLS LOGINDISABLED");
        return;
    }
    if (ci->principal_id)
        o += (size_t)snprintf(out + o, cap - o, " AUTH=EXTERNAL");
    if (o < cap)
        snprintf(out + o, cap - o, " AUTH=PLAIN");
}

/* Rewrites "[CAPABILITY ...]" inside a response line; false when absent. */
static bool rewrite_cap_code(cg_conn *c, imap_sess *s, const char *line,
                             size_t len, obuf *o)
{
    const char *p = NULL;
    for (size_t i = 0; i + 12 <= len; i++)
        if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
            p = line + i;
            break;
        }
    if (!p)
        return false;
    const char *e = memchr(p, ']', len - (size_t)(p - line));
    if (!e)
        return false;
    char filtered[2048], ours[2300];
    filter_caps(p + 12, (size_t)(e - p - 12), filtered, sizeof filtered,
                NULL);
    snprintf(ours, sizeof ours, "%s", filtered);
    ob_put(o, line, (size_t)(p - line));
    ob_str(o, "[CAPABILITY ");
    ob_str(o, ours);
    ob_put(o, e, len - (size_t)(e - line));
    return true;
}

/* ---- login failure rate limit (per client address, all workers) ---------- */

/* Failed logins per address prefix and minute, across all workers
 * (cg_addrtab.h: every address its own counter; a full table refuses new
 * addresses rather than reset anyone's count). */
#define FAIL_KEYS_MAX 65536

static cg_addrtab *g_fails;
static pthread_once_t g_fails_once = PTHREAD_ONCE_INIT;

static void fails_init(void)
{
    g_fails = cg_addrtab_new(FAIL_KEYS_MAX);
}

static bool fail_limited(const cg_conn_info *ci, unsigned limit, bool add)
{
    cg_addrkey k;
    unsigned count = 0;
    pthread_once(&g_fails_once, fails_init);
    if (!g_fails || cg_addrkey_of((const struct sockaddr *)&ci->peer, &k) < 0)
        return true; /* no place to count: refuse, never fail open */
    if (cg_addrtab_count(g_fails, &k, cg_mono_ms() / 60000, add ? 1 : 0, &count) < 0)
        return true;
    return limit && count >= limit;
}

/* ---- mailbox names (SPEC section 4) -------------------------------------- */

/* Decodes a mailbox argument to the UTF-8 name the ACL judges (INBOX in
 * any case, also before the delimiter, is INBOX) and the wire form that
 * is forwarded (canonical modified UTF-7, or UTF-8 once UTF8=ACCEPT is
 * enabled). False when the name is not valid. */
static bool mailbox_decode(const imap_sess *s, const char *raw, size_t len,
                           char *name, size_t namecap, char *wire,
                           size_t wirecap)
{
    if (strlen(raw) != len || len >= namecap)
        return false;
    if (s->utf8) {
        if (!cg_utf8_valid(raw, len))
            return false;
        memcpy(name, raw, len + 1);
    } else if (cg_mutf7_decode(raw, len, name, namecap) < 0) {
        return false;
    }
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20)
            return false;
    size_t nl = strlen(name);
    if (nl >= 5 && strncasecmp(name, "INBOX", 5) == 0 &&
        (nl == 5 || name[5] == s->delim))
        memcpy(name, "INBOX", 5);
    if (s->utf8) {
        if (nl >= wirecap)
            return false;
        memcpy(wire, name, nl + 1);
        return true;
    }
    return cg_mutf7_encode(name, nl, wire, wirecap) >= 0;
}

/* ---- policy -------------------------------------------------------------- */

typedef struct judge {
    cg_snapshot *snap;
    const cg_principal *p;
} judge;

static cg_decision decide(const judge *j, const imap_sess *s, unsigned right,
                          const char *name)
{
    return cg_acl_decide(cg_snapshot_acl(j->snap), j->p, CG_SVC_IMAP, right,
                         name, strlen(name), s->delim);
}

/* Judges one right on one name; refuses on the wire when denied. */
static bool need(cg_conn *c, imap_sess *s, const judge *j, unsigned right,
                 const char *name, bool subtree)
{
    cg_decision d = decide(j, s, right, name);
    int64_t rule = d.rule_id;
    bool ok = d.allow;
    if (ok && subtree)
        ok = cg_acl_subtree_clear(cg_snapshot_acl(j->snap), j->p, CG_SVC_IMAP,
                                  right, name, strlen(name), s->delim, &rule);
    if (!ok) {
        char shown[NAME_MAX_ + 64];
        text_name(name, shown, sizeof shown);
        refuse(c, s, "NO", "NOPERM", name, rule, "%s denied on \"%s\"",
               cg_right_name(right), shown);
        return false;
    }
    s->rule_id = rule;
    return true;
}

/* ---- forwarding ---------------------------------------------------------- */

/* The mailbox tokens of a command that go out in their normalised wire
 * form: (token index, wire name) pairs with their own count. A command
 * names at most two mailboxes (RENAME, COPY's one, APPEND's one), so the
 * set is small and fixed; it is looked up by token index and never indexed
 * by one, whatever the number of tokens the client sent. */
typedef struct tok_repl {
    struct {
        size_t tok;
        const char *wire;
    } at[2];
    size_t n;
} tok_repl;

/* Replaces token tok by wire. The callers name at most CG_ARRAY_LEN(at)
 * mailboxes: a third is a bug here, and forwarding the raw token instead
 * of the judged name is not an option, so it stops the process. */
static void repl_set(tok_repl *r, size_t tok, const char *wire)
{
    if (r->n >= CG_ARRAY_LEN(r->at)) {
        cg_error("imap: more mailbox replacements than a command has");
        abort();
    }
    r->at[r->n].tok = tok;
    r->at[r->n].wire = wire;
    r->n++;
}

static const char *repl_for(const tok_repl *r, size_t tok)
{
    for (size_t k = 0; r && k < r->n; k++)
        if (r->at[k].tok == tok)
            return r->at[k].wire;
    return NULL;
}

/* Re-serialises tokens [from, to) of the current command, with mailbox
 * tokens replaced by their normalised wire form (repl may be NULL). */
static void serialise(const imap_sess *s, size_t from, size_t to,
                      const tok_repl *repl, obuf *o)
{
    const cg_imapp *p = s->parser;
    for (size_t i = from; i < to; i++) {
        const cg_imapp_tok *t = cg_imapp_tok_at(p, i);
        const char *d = cg_imapp_data(p, t);
        const char *w = repl_for(repl, i);
        if (i > 0 && t->sp_before)
            ob_put(o, " ", 1);
        if (w) {
            ob_astring(o, w, strlen(w));
            continue;
        }
        switch (t->type) {
        case CG_IMAPP_ATOM:
            ob_put(o, d, t->len);
            break;
        case CG_IMAPP_QUOTED: /* the same string, quoted or as a literal */
            ob_astring(o, d, t->len);
            break;
        case CG_IMAPP_LITERAL:
            if (t->streamed)
                break;
            ob_fmt(o, "{%u+}\r\n", t->len);
            ob_put(o, d, t->len);
            break;
        case CG_IMAPP_LIST_OPEN:
            ob_put(o, "(", 1);
            break;
        case CG_IMAPP_LIST_CLOSE:
            ob_put(o, ")", 1);
            break;
        }
    }
}

static void forward(cg_conn *c, imap_sess *s, const tok_repl *repl, int kind)
{
    obuf o = { 0 };
    serialise(s, s->fwd_tok, cg_imapp_ntok(s->parser), repl, &o);
    ob_put(&o, "\r\n", 2);
    if (o.oom || cg_conn_write_upstream(c, o.p, o.len) < 0) {
        free(o.p);
        cg_conn_close(c, "upstream write failed");
        return;
    }
    free(o.p);
    s->kind = kind;
    s->busy = true;
    s->fwd_tok = 0;
    cg_conn_upstream_expect(c, true);
}

static void send_upstream_line(cg_conn *c, obuf *o)
{
    ob_put(o, "\r\n", 2);
    if (o->oom || cg_conn_write_upstream(c, o->p, o->len) < 0)
        cg_conn_close(c, "upstream write failed");
    free(o->p);
    o->p = NULL;
    cg_conn_upstream_expect(c, true);
}

/* The command is over (answered by us or by the backend). */
static void command_done(cg_conn *c, imap_sess *s, const char *result)
{
    if (s->op[0])
        audit(c, s, s->op, s->resource, s->decision[0] ? s->decision : "allow",
              s->rule_id, result, NULL);
    s->busy = false;
    s->streaming = false;
    s->op[0] = '\0';
    s->resource[0] = '\0';
    s->decision[0] = '\0';
    s->rule_id = 0;
    s->kind = K_PLAIN;
}

/* ---- login (SPEC sections 2 and 10) -------------------------------------- */

static void client_port(const cg_conn_info *ci, char out[8])
{
    const char *colon = strrchr(ci->client, ':');
    snprintf(out, 8, "%s", colon ? colon + 1 : "0");
}

/* A failed login: answered after a fixed delay whatever the reason, so
 * the answer does not tell whether the user exists. */
static void login_fail(cg_conn *c, imap_sess *s, const char *why, bool delay)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    fail_limited(ci, ci->listener->login_failures_per_minute, true);
    cg_info("conn=%llu imap login failed for \"%s\": %s",
            (unsigned long long)ci->id, s->login_user, why);
    if (delay) {
        s->fail_at = cg_mono_ms() + FAIL_DELAY_MS;
        s->busy = true;
        arm_timer(c, s);
        snprintf(s->resource, sizeof s->resource, "%s", why);
        return;
    }
    refuse(c, s, "NO", "AUTHENTICATIONFAILED", s->login_user, 0,
           "Authentication failed");
}

/* Sends ID (the real client address, RFC 2971 / Dovecot's
 * x-originating-ip from login_trusted_networks) and LOGIN. Never the
 * client's own ID: Dovecot would believe its x-originating-ip. */
static void backend_login(cg_conn *c, imap_sess *s, const char *user,
                          const char *pass, size_t passlen)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_upstream_cfg *u = ci->listener->upstream;
    obuf o = { 0 };
    if (!u->proxy_protocol) {
        char port[8];
        client_port(ci, port);
        ob_str(&o, "cgi1 ID (\"x-originating-ip\" ");
        ob_astring(&o, ci->client_addr, strlen(ci->client_addr));
        ob_str(&o, " \"x-originating-port\" ");
        ob_astring(&o, port, strlen(port));
        ob_str(&o, " \"x-session-id\" ");
        ob_astring(&o, ci->session_id, strlen(ci->session_id));
        ob_str(&o, ")\r\n");
    }
    ob_str(&o, "cgi2 LOGIN ");
    ob_astring(&o, user, strlen(user));
    ob_put(&o, " ", 1);
    ob_astring(&o, pass, passlen);
    send_upstream_line(c, &o);
    s->istage = u->proxy_protocol ? I_LOGIN : I_ID;
    s->state = S_LOGIN;
    s->busy = true;
}

/* The login decision (SPEC section 10): a client the gateway identified
 * (cert, psk, address) logs in as itself only, by master user unless the
 * upstream says passthrough; otherwise the name must be a known, enabled
 * principal's mailbox and the password goes to the backend. */
static void do_login(cg_conn *c, imap_sess *s, const char *authz,
                     const char *user, const char *pass, size_t passlen,
                     bool external)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_upstream_cfg *u = ci->listener->upstream;
    cg_snapshot *snap = cg_snapshot_acquire();
    const cg_principal *p = NULL;
    snprintf(s->login_user, sizeof s->login_user, "%s", user ? user : "");
    snprintf(s->resource, sizeof s->resource, "%s", s->login_user);
    if (!snap) {
        refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "policy not loaded");
        return;
    }
    if (fail_limited(ci, ci->listener->login_failures_per_minute,
                     false)) {
        cg_snapshot_release(snap);
        login_fail(c, s, "too many failed logins from this address", true);
        return;
    }
    /* Dovecot reads "victim*gw" or an authzid as a master login: refuse
     * both, so no client can guess the master password. */
    if ((user && strchr(user, '*')) || (authz && authz[0] && user &&
                                        strcmp(authz, user) != 0)) {
        cg_snapshot_release(snap);
        login_fail(c, s, "master login syntax refused", true);
        return;
    }
    if (ci->principal_id) {
        p = cg_snapshot_principal_by_id(snap, ci->principal_id);
        if (!p || !p->enabled) {
            cg_snapshot_release(snap);
            login_fail(c, s, "principal unknown or disabled", true);
            return;
        }
        if (external && authz && authz[0] && strcmp(authz, p->mailbox) != 0) {
            cg_snapshot_release(snap);
            login_fail(c, s, "authzid is not the principal's mailbox", true);
            return;
        }
        if (!external && strcmp(user, p->mailbox) != 0) {
            cg_snapshot_release(snap);
            login_fail(c, s, "login names another mailbox", true);
            return;
        }
        snprintf(s->login_user, sizeof s->login_user, "%s", p->mailbox);
        snprintf(s->principal, sizeof s->principal, "%s", p->name);
        s->principal_id = p->id;
        snprintf(s->mailbox_login, sizeof s->mailbox_login, "%s", p->mailbox);
        s->method = ci->auth_method;
        cg_snapshot_release(snap);
        if (u->imap_login == CG_IMAP_LOGIN_MASTER && u->master_user &&
            u->master_password) {
            char mu[sizeof s->mailbox_login + 1 + 256];
            if (snprintf(mu, sizeof mu, "%s*%s", s->mailbox_login, u->master_user) >=
                (int)sizeof mu) {
                /* never a cut name: it would log in as someone else */
                login_fail(c, s, "master login name too long", false);
                return;
            }
            backend_login(c, s, mu, u->master_password,
                          strlen(u->master_password));
            return;
        }
        if (external) {
            login_fail(c, s, "passthrough upstream needs a password", true);
            return;
        }
        backend_login(c, s, s->mailbox_login, pass, passlen);
        return;
    }
    if (!(ci->listener->auth & CG_AUTH_LOGIN) || external) {
        cg_snapshot_release(snap);
        login_fail(c, s, external ? "no TLS identity for EXTERNAL"
                                  : "login not enabled on this listener", true);
        return;
    }
    p = cg_snapshot_principal_by_mailbox(snap, user);
    if (!p || !p->enabled) {
        cg_snapshot_release(snap);
        login_fail(c, s, p ? "principal disabled" : "unknown user", true);
        return;
    }
    snprintf(s->principal, sizeof s->principal, "%s", p->name);
    s->principal_id = p->id;
    snprintf(s->mailbox_login, sizeof s->mailbox_login, "%s", p->mailbox);
    s->method = CG_AUTH_LOGIN;
    cg_snapshot_release(snap);
    backend_login(c, s, user, pass, passlen);
}

/* SASL PLAIN (RFC 4616) or EXTERNAL (RFC 4422 appendix A) response. */
static void sasl_response(cg_conn *c, imap_sess *s, bool external,
                          const char *b64, size_t len)
{
    uint8_t raw[1024];
    int n = 0;
    if (len == 1 && b64[0] == '=')
        len = 0; /* an empty initial response (RFC 4959) */
    if (len) {
        n = cg_b64_decode(b64, len, raw, sizeof raw - 1);
        if (n < 0) {
            refuse(c, s, "BAD", NULL, NULL, 0, "invalid base64");
            return;
        }
    }
    raw[n] = '\0';
    if (external) {
        if (memchr(raw, 0, (size_t)n)) {
            refuse(c, s, "BAD", NULL, NULL, 0, "invalid authorization identity");
            return;
        }
        do_login(c, s, (const char *)raw, NULL, NULL, 0, true);
        return;
    }
    const uint8_t *z1 = memchr(raw, 0, (size_t)n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(raw + n - z1 - 1)) : NULL;
    if (!z1 || !z2) {
        refuse(c, s, "BAD", NULL, NULL, 0, "malformed PLAIN response");
        return;
    }
    const char *authz = (const char *)raw;
    const char *user = (const char *)z1 + 1;
    const char *pass = (const char *)z2 + 1;
    do_login(c, s, authz, user, pass, (size_t)(raw + n - (const uint8_t *)pass),
             false);
}

/* ---- commands ------------------------------------------------------------ */

static const char *tok_str(const imap_sess *s, size_t i, size_t *len)
{
    const cg_imapp_tok *t = cg_imapp_tok_at(s->parser, i);
    if (!t || !cg_imapp_is_string(t))
        return NULL;
    if (len)
        *len = t->len;
    return cg_imapp_data(s->parser, t);
}

/* Starts the command: its number, tag and name (with a UID prefix). */
static void begin_command(imap_sess *s)
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
static bool preauth_allowed(cg_conn *c, imap_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    bool basic = op_is(s, "CAPABILITY") || op_is(s, "NOOP") ||
                 op_is(s, "LOGOUT") || op_is(s, "STARTTLS");
    if (ci->listener->tls == CG_TLS_STARTTLS && !ci->tls && !basic) {
        /* RFC 3501 6.2.1 / SPEC 3: nothing but these before STARTTLS */
        refuse(c, s, "NO", "PRIVACYREQUIRED", NULL, 0,
               "STARTTLS first");
        return false;
    }
    if (basic || op_is(s, "LOGIN") || op_is(s, "AUTHENTICATE") || op_is(s, "ID"))
        return true;
    refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
    return false;
}

static void preauth_command(cg_conn *c, imap_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    char caps[2300];
    if (!preauth_allowed(c, s))
        return;
    if (op_is(s, "CAPABILITY")) {
        our_caps(c, s, caps, sizeof caps);
        send_client(c, s, "* CAPABILITY %s", caps);
        send_client(c, s, "%s OK Capability completed", s->tag);
        command_done(c, s, "OK");
    } else if (op_is(s, "NOOP")) {
        send_client(c, s, "%s OK NOOP completed", s->tag);
        command_done(c, s, "OK");
    } else if (op_is(s, "ID")) {
        /* answered here: a client's ID never reaches the backend before
         * login (it could claim another x-originating-ip) */
        send_client(c, s, "* ID NIL");
        send_client(c, s, "%s OK ID completed", s->tag);
        command_done(c, s, "OK");
    } else if (op_is(s, "LOGOUT")) {
        send_client(c, s, "* BYE Logging out");
        send_client(c, s, "%s OK Logout completed", s->tag);
        command_done(c, s, "OK");
        s->state = S_CLOSED;
        cg_conn_close(c, "logout");
    } else if (op_is(s, "STARTTLS")) {
        if (ci->listener->tls != CG_TLS_STARTTLS || ci->tls) {
            refuse(c, s, "BAD", NULL, NULL, 0, "STARTTLS not available");
            return;
        }
        send_client(c, s, "%s OK Begin TLS negotiation now", s->tag);
        command_done(c, s, "OK");
        /* CVE-2011-0411: plaintext pipelined after STARTTLS is dropped,
         * never executed after the handshake */
        s->inlen = s->inoff = 0;
        cg_imapp_reset(s->parser);
        s->busy = true; /* until on_tls_ready */
        if (cg_conn_start_tls(c) < 0)
            cg_conn_close(c, "starttls failed");
    } else if (op_is(s, "LOGIN")) {
        size_t ul = 0, pl = 0;
        const char *u = tok_str(s, 2, &ul), *pw = tok_str(s, 3, &pl);
        if (!u || !pw || cg_imapp_ntok(s->parser) != 4) {
            refuse(c, s, "BAD", NULL, NULL, 0, "LOGIN needs a user and a password");
            return;
        }
        if (strlen(u) != ul) {
            refuse(c, s, "BAD", NULL, NULL, 0, "invalid user name");
            return;
        }
        do_login(c, s, NULL, u, pw, pl, false);
    } else if (op_is(s, "AUTHENTICATE")) {
        size_t ml;
        const char *mech = tok_str(s, 2, &ml);
        size_t nt = cg_imapp_ntok(s->parser);
        bool ext = mech && strcasecmp(mech, "EXTERNAL") == 0;
        bool plain = mech && strcasecmp(mech, "PLAIN") == 0;
        if (!ext && !plain) {
            refuse(c, s, "NO", NULL, NULL, 0, "Unsupported authentication mechanism");
            return;
        }
        if (nt > 4) {
            refuse(c, s, "BAD", NULL, NULL, 0, "too many arguments");
            return;
        }
        if (nt == 4) { /* SASL-IR (RFC 4959) */
            size_t il;
            const char *ir = tok_str(s, 3, &il);
            if (!ir) {
                refuse(c, s, "BAD", NULL, NULL, 0, "invalid initial response");
                return;
            }
            sasl_response(c, s, ext, ir, il);
            return;
        }
        s->auth_wait = ext ? AW_EXTERNAL : AW_PLAIN;
        s->busy = true;
        send_client(c, s, "+ ");
    }
}

/* The mailbox argument i, decoded; refuses with BAD when absent/invalid. */
static bool arg_mailbox(cg_conn *c, imap_sess *s, size_t i, char *name,
                        char *wire)
{
    size_t len;
    const char *raw = tok_str(s, i, &len);
    if (!raw) {
        refuse(c, s, "BAD", NULL, NULL, 0, "missing mailbox name");
        return false;
    }
    if (!mailbox_decode(s, raw, len, name, NAME_MAX_, wire, NAME_MAX_)) {
        /* well-formed syntax naming no possible mailbox (invalid modified
         * UTF-7, a control character): NO, as Dovecot answers it; BAD
         * would tell the client its command was malformed */
        refuse(c, s, "NO", NULL, NULL, 0, "invalid mailbox name");
        return false;
    }
    return true;
}

static bool need_selected(cg_conn *c, imap_sess *s, const judge *j,
                          unsigned rights)
{
    if (!s->has_selected)
        return true; /* the backend answers "No mailbox selected" */
    snprintf(s->resource, sizeof s->resource, "%s", s->selected);
    for (unsigned r = 1; r <= CG_RIGHT_DELETE; r <<= 1)
        if ((rights & r) && !need(c, s, j, r, s->selected, false))
            return false;
    return true;
}

static void auth_command(cg_conn *c, imap_sess *s, const judge *j)
{
    size_t nt = cg_imapp_ntok(s->parser);
    tok_repl repl = { 0 };
    char name[NAME_MAX_], wire[NAME_MAX_], name2[NAME_MAX_], wire2[NAME_MAX_];
    bool uid = strncmp(s->op, "UID ", 4) == 0;
    const char *op = uid ? s->op + 4 : s->op;
    size_t a = uid ? 3 : 2; /* first argument */
    if (op_is(s, "CAPABILITY") || op_is(s, "NOOP") || op_is(s, "CHECK") ||
        op_is(s, "NAMESPACE") || op_is(s, "ID") || op_is(s, "LIST") ||
        op_is(s, "LSUB") || op_is(s, "CANCELUPDATE")) {
        /* LIST/LSUB: the answers are filtered (list right); CANCELUPDATE
         * (RFC 5267) only stops updates of a search already judged */
        forward(c, s, NULL, K_PLAIN);
    } else if (op_is(s, "UNSELECT")) {
        forward(c, s, NULL, K_DESELECT);
    } else if (op_is(s, "LOGOUT")) {
        s->logout = true;
        forward(c, s, NULL, K_LOGOUT);
    } else if (op_is(s, "IDLE")) {
        if (!need_selected(c, s, j, CG_RIGHT_READ))
            return;
        s->idle = true;
        forward(c, s, NULL, K_IDLE);
    } else if (op_is(s, "SELECT") || op_is(s, "EXAMINE") || op_is(s, "STATUS") ||
               op_is(s, "CREATE") || op_is(s, "DELETE") ||
               op_is(s, "SUBSCRIBE") || op_is(s, "UNSUBSCRIBE") ||
               op_is(s, "APPEND")) {
        unsigned right = op_is(s, "CREATE") ? CG_RIGHT_CREATE
                       : op_is(s, "DELETE") ? CG_RIGHT_DELETE
                       : op_is(s, "APPEND") ? CG_RIGHT_WRITE
                       : (op_is(s, "SUBSCRIBE") || op_is(s, "UNSUBSCRIBE"))
                           ? CG_RIGHT_LIST : CG_RIGHT_READ;
        if (!arg_mailbox(c, s, 2, name, wire))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        if (!need(c, s, j, right, name, op_is(s, "DELETE")))
            return;
        repl_set(&repl, 2, wire);
        if (op_is(s, "SELECT") || op_is(s, "EXAMINE")) {
            snprintf(s->pending_select, sizeof s->pending_select, "%s", name);
            forward(c, s, &repl, K_SELECT);
        } else {
            forward(c, s, &repl, K_PLAIN);
        }
    } else if (op_is(s, "RENAME")) {
        if (!arg_mailbox(c, s, 2, name, wire) || !arg_mailbox(c, s, 3, name2, wire2))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        /* the subtree moves with it (SPEC 4): judged below both names */
        if (!need(c, s, j, CG_RIGHT_DELETE, name, true) ||
            !need(c, s, j, CG_RIGHT_CREATE, name2, true))
            return;
        repl_set(&repl, 2, wire);
        repl_set(&repl, 3, wire2);
        forward(c, s, &repl, K_PLAIN);
    } else if (!strcmp(op, "FETCH") || !strcmp(op, "SEARCH") ||
               !strcmp(op, "SORT") || !strcmp(op, "THREAD")) {
        if (need_selected(c, s, j, CG_RIGHT_READ))
            forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "STORE")) {
        if (need_selected(c, s, j, CG_RIGHT_WRITE))
            forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "EXPUNGE")) {
        if (need_selected(c, s, j, CG_RIGHT_DELETE))
            forward(c, s, NULL, K_PLAIN);
    } else if (!strcmp(op, "COPY") || !strcmp(op, "MOVE")) {
        bool move = !strcmp(op, "MOVE");
        if (!arg_mailbox(c, s, a + 1, name, wire))
            return;
        if (!need_selected(c, s, j, move ? CG_RIGHT_READ | CG_RIGHT_DELETE
                                         : CG_RIGHT_READ))
            return;
        snprintf(s->resource, sizeof s->resource, "%s", name);
        if (!need(c, s, j, CG_RIGHT_WRITE, name, false))
            return;
        repl_set(&repl, a + 1, wire);
        forward(c, s, &repl, K_PLAIN);
    } else if (op_is(s, "CLOSE")) {
        if (s->has_selected) {
            snprintf(s->resource, sizeof s->resource, "%s", s->selected);
            cg_decision d = decide(j, s, CG_RIGHT_DELETE, s->selected);
            s->rule_id = d.rule_id;
            if (!d.allow) {
                /* CLOSE expunges silently: without delete it is UNSELECT
                 * (RFC 3691), so \Deleted messages stay */
                obuf o = { 0 };
                ob_str(&o, s->tag);
                ob_str(&o, " UNSELECT");
                send_upstream_line(c, &o);
                s->kind = K_DESELECT;
                s->busy = true;
                return;
            }
        }
        forward(c, s, NULL, K_DESELECT);
    } else if (op_is(s, "ENABLE")) {
        /* only extensions the gateway understands (RFC 5161: unknown ones
         * are ignored by servers anyway) */
        obuf o = { 0 };
        int kept = 0;
        ob_str(&o, s->tag);
        ob_str(&o, " ENABLE");
        for (size_t i = 2; i < nt; i++) {
            size_t l;
            const char *e = tok_str(s, i, &l);
            if (e && (!strcasecmp(e, "CONDSTORE") || !strcasecmp(e, "QRESYNC") ||
                      !strcasecmp(e, "UTF8=ACCEPT"))) {
                ob_put(&o, " ", 1);
                ob_str(&o, e);
                kept++;
            }
        }
        if (!kept) {
            free(o.p);
            send_client(c, s, "* ENABLED");
            send_client(c, s, "%s OK Enabled", s->tag);
            command_done(c, s, "OK");
            return;
        }
        send_upstream_line(c, &o);
        s->kind = K_PLAIN;
        s->busy = true;
    } else if (op_is(s, "LOGIN") || op_is(s, "AUTHENTICATE") ||
               op_is(s, "STARTTLS")) {
        refuse(c, s, "BAD", NULL, NULL, 0, "Already authenticated");
    } else {
        /* an extension the gateway cannot police never reaches the
         * backend (COMPRESS, NOTIFY, URLAUTH, METADATA, ACL, ...) */
        refuse(c, s, "BAD", NULL, NULL, 0, "Unknown or unsupported command");
    }
}

/* The principal as the current snapshot sees it, at every command (SPEC
 * 4: policy changes reach running sessions). */
static bool judge_acquire(cg_conn *c, imap_sess *s, judge *j)
{
    j->snap = cg_snapshot_acquire();
    j->p = j->snap ? cg_snapshot_principal_by_id(j->snap, s->principal_id) : NULL;
    if (j->p && j->p->enabled)
        return true;
    char id[40];
    txid(c, s, id);
    send_client(c, s, "* BYE [AUTHORIZATIONFAILED] principal disabled or removed (txid %s)", id);
    audit(c, s, s->op[0] ? s->op : "command", NULL, "deny", 0, "BYE",
          "principal disabled or removed");
    if (j->snap)
        cg_snapshot_release(j->snap);
    j->snap = NULL;
    s->state = S_CLOSED;
    cg_conn_close(c, "principal disabled");
    return false;
}

static void run_command(cg_conn *c, imap_sess *s)
{
    if (cg_audit_reserve(&s->resv) < 0) {
        /* SPEC 5: audit_fail = closed refuses new operations */
        refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        return;
    }
    if (s->state == S_PREAUTH) {
        preauth_command(c, s);
        return;
    }
    judge j;
    if (!judge_acquire(c, s, &j))
        return;
    auth_command(c, s, &j);
    cg_snapshot_release(j.snap);
}

/* ---- APPEND streaming ---------------------------------------------------- */

/* A message literal starts (RFC 3501 6.3.11, RFC 3502 MULTIAPPEND): the
 * first one is judged (write on the mailbox); the tokens so far go out
 * with the literal as non-synchronising, and the client gets "+" from us. */
static void stream_start(cg_conn *c, imap_sess *s, const cg_imapp_event *ev)
{
    size_t nt = cg_imapp_ntok(s->parser);
    char name[NAME_MAX_], wire[NAME_MAX_];
    tok_repl repl = { 0 };
    if (s->discarding) {
        if (ev->lit_sync) { /* the client stops after our NO */
            cg_imapp_reset(s->parser);
            s->discarding = false;
        }
        return;
    }
    if (!s->streaming) {
        begin_command(s);
        bool ok = false;
        if (s->state != S_AUTH) {
            if (s->state == S_PREAUTH)
                (void)preauth_allowed(c, s); /* APPEND: refused there */
            if (s->op[0])
                refuse(c, s, "BAD", NULL, NULL, 0, "Log in first");
        } else if (cg_audit_reserve(&s->resv) < 0) {
            refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "audit log unavailable");
        } else {
            judge j;
            if (!judge_acquire(c, s, &j))
                return;
            if (arg_mailbox(c, s, 2, name, wire)) {
                snprintf(s->resource, sizeof s->resource, "%s", name);
                ok = need(c, s, &j, CG_RIGHT_WRITE, name, false);
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
        repl_set(&repl, 2, wire);
        s->streaming = true;
        s->fwd_tok = 0;
    }
    obuf o = { 0 };
    serialise(s, s->fwd_tok, nt - 1, s->fwd_tok == 0 ? &repl : NULL, &o);
    const cg_imapp_tok *lt = cg_imapp_tok_at(s->parser, nt - 1);
    ob_fmt(&o, "%s%s{%llu+}\r\n", lt->sp_before ? " " : "",
           ev->lit8 ? "~" : "", (unsigned long long)ev->lit_size);
    s->fwd_tok = nt;
    if (o.oom || cg_conn_write_upstream(c, o.p, o.len) < 0)
        cg_conn_close(c, "upstream write failed");
    free(o.p);
    if (ev->lit_sync)
        send_client(c, s, "+ OK");
}

/* ---- client input -------------------------------------------------------- */

static void handle_event(cg_conn *c, imap_sess *s, const cg_imapp_event *ev)
{
    switch (ev->type) {
    case CG_IMAPP_EV_COMMAND:
        if (s->discarding) {
            s->discarding = false;
            return;
        }
        if (s->streaming && s->answered) {
            /* the rest of a command already answered: sent, not awaited */
            obuf o = { 0 };
            serialise(s, s->fwd_tok, cg_imapp_ntok(s->parser), NULL, &o);
            ob_put(&o, "\r\n", 2);
            if (o.oom || cg_conn_write_upstream(c, o.p, o.len) < 0)
                cg_conn_close(c, "upstream write failed");
            free(o.p);
            s->streaming = false;
            s->answered = false;
            s->fwd_tok = 0;
            return;
        }
        if (s->streaming) {
            /* all of the APPEND is sent: an answer now is the answer */
            s->streaming = false;
            forward(c, s, NULL, K_PLAIN);
            return;
        }
        begin_command(s);
        run_command(c, s);
        return;
    case CG_IMAPP_EV_LITERAL:
        if (s->discarding) {
            cg_imapp_reset(s->parser);
            s->discarding = false;
            return;
        }
        if (s->state == S_PREAUTH) {
            /* judge early: never invite a password literal in plaintext */
            begin_command(s);
            if (!preauth_allowed(c, s)) {
                cg_imapp_reset(s->parser);
                return;
            }
            s->n--; /* counted once, when the command completes */
            s->op[0] = '\0';
        }
        send_client(c, s, "+ OK");
        return;
    case CG_IMAPP_EV_STREAM_START:
        stream_start(c, s, ev);
        return;
    case CG_IMAPP_EV_STREAM_DATA:
        if (s->streaming && !s->discarding) {
            s->bytes_in += (int64_t)ev->len;
            if (cg_conn_write_upstream(c, ev->data, ev->len) < 0)
                cg_conn_close(c, "upstream write failed");
        }
        if (s->cmd_deadline) { /* the longest the literal may stall */
            s->cmd_deadline = cg_mono_ms() +
                (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000;
            arm_timer(c, s);
        }
        return;
    case CG_IMAPP_EV_STREAM_END:
        return;
    case CG_IMAPP_EV_ERROR:
        if (s->streaming) {
            /* mid-APPEND: the backend holds half a command; end the session */
            send_client(c, s, "* BYE %s", ev->error);
            cg_conn_close(c, "append aborted");
            s->state = S_CLOSED;
            return;
        }
        if (s->discarding) {
            s->discarding = false;
            if (!ev->fatal)
                return;
        }
        begin_command(s);
        if (!cg_imapp_tag(s->parser))
            s->n--; /* untagged: not a command */
        refuse(c, s, "BAD", NULL, NULL, 0, "%s", ev->error);
        if (ev->fatal) {
            send_client(c, s, "* BYE %s", ev->error);
            s->state = S_CLOSED;
            cg_conn_close(c, ev->error);
        }
        return;
    default:
        return;
    }
}

/* One line from the input buffer (IDLE's DONE, a SASL response). */
static bool take_line(imap_sess *s, const char **line, size_t *len)
{
    uint8_t *st = s->in + s->inoff;
    uint8_t *lf = memchr(st, '\n', s->inlen - s->inoff);
    if (!lf)
        return false;
    *line = (const char *)st;
    *len = (size_t)(lf - st);
    if (*len && st[*len - 1] == '\r')
        (*len)--;
    s->inoff += (size_t)(lf - st) + 1;
    return true;
}

static void process_input(cg_conn *c, imap_sess *s)
{
    const cg_listener_cfg *l = cg_conn_info_of(c)->listener;
    while (s->state != S_CLOSED && s->inoff < s->inlen) {
        if (s->idle || s->auth_wait) {
            const char *line;
            size_t len;
            if (!take_line(s, &line, &len)) {
                if (s->inlen - s->inoff > l->max_line) {
                    send_client(c, s, "* BYE line too long");
                    s->state = S_CLOSED;
                    cg_conn_close(c, "line too long");
                }
                break;
            }
            if (s->idle) {
                /* RFC 2177: DONE ends IDLE; anything else ends it too */
                s->idle = false;
                obuf o = { 0 };
                ob_str(&o, "DONE");
                send_upstream_line(c, &o);
                continue;
            }
            bool ext = s->auth_wait == AW_EXTERNAL;
            s->auth_wait = AW_NONE;
            s->busy = false;
            if (len == 1 && line[0] == '*') {
                refuse(c, s, "BAD", NULL, NULL, 0, "Authentication cancelled");
                continue;
            }
            char tmp[2048];
            if (len >= sizeof tmp) {
                refuse(c, s, "BAD", NULL, NULL, 0, "response too long");
                continue;
            }
            memcpy(tmp, line, len);
            tmp[len] = '\0';
            sasl_response(c, s, ext, tmp, len);
            continue;
        }
        if (s->busy)
            break;
        cg_imapp_event ev;
        size_t used = cg_imapp_feed(s->parser, s->in + s->inoff,
                                    s->inlen - s->inoff, &ev);
        s->inoff += used;
        if (ev.type != CG_IMAPP_EV_STREAM_DATA)
            s->bytes_in += (int64_t)used;
        if (ev.type != CG_IMAPP_EV_NONE)
            handle_event(c, s, &ev);
    }
    if (s->inoff == s->inlen) {
        s->inoff = s->inlen = 0;
        if (s->incap > IN_KEEP) {
            /* a big literal passed: an idle session keeps little */
            free(s->in);
            s->in = NULL;
            s->incap = 0;
        }
    } else if (s->inoff > 0 && s->inoff > s->incap / 2) {
        memmove(s->in, s->in + s->inoff, s->inlen - s->inoff);
        s->inlen -= s->inoff;
        s->inoff = 0;
    }
    /* client_timeout: a deadline for a whole command line, not reset by
     * each byte (a client dripping bytes is cut) */
    bool partial = s->state != S_CLOSED && !s->busy &&
                   (!cg_imapp_idle(s->parser) || s->inoff < s->inlen);
    if (partial && !s->cmd_deadline)
        s->cmd_deadline = cg_mono_ms() + (uint64_t)l->client_timeout * 1000;
    else if (!partial)
        s->cmd_deadline = 0;
    if (s->state != S_CLOSED)
        arm_timer(c, s);
    cg_conn_read_client(c, s->inlen < IN_MAX);
}

static void imap_client_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state == S_CLOSED)
        return;
    if (s->inlen + len > s->incap) {
        size_t nc = s->incap ? s->incap : IN_KEEP;
        while (nc < s->inlen + len)
            nc *= 2;
        if (nc > IN_MAX + 65536 + cg_conn_info_of(c)->listener->max_line) {
            send_client(c, s, "* BYE too much pipelined input");
            s->state = S_CLOSED;
            cg_conn_close(c, "input buffer full");
            return;
        }
        uint8_t *n = realloc(s->in, nc);
        if (!n) {
            cg_conn_abort(c, "out of memory");
            return;
        }
        s->in = n;
        s->incap = nc;
    }
    memcpy(s->in + s->inlen, buf, len);
    s->inlen += len;
    if (s->state == S_CONNECTING)
        return; /* the greeting comes first */
    process_input(c, s);
}

/* ---- server responses ---------------------------------------------------- */

static void to_client(cg_conn *c, imap_sess *s, const void *d, size_t n)
{
    s->bytes_out += (int64_t)n;
    if (cg_conn_write_client(c, d, n) < 0)
        cg_conn_abort(c, "client write failed");
}

/* LIST / LSUB / STATUS answer: kept only when the principal has the right
 * on the name it carries (list for LIST/LSUB, read for STATUS). The
 * internal LIST "" "" teaches the delimiter. */
static bool keep_mailbox_line(cg_conn *c, imap_sess *s, const uint8_t *d,
                              size_t n, bool status)
{
    cg_imapp_reset(s->rparser);
    cg_imapp_event ev;
    size_t off = 0;
    int type = CG_IMAPP_EV_NONE;
    while (off < n) {
        off += cg_imapp_feed(s->rparser, d + off, n - off, &ev);
        type = ev.type;
        if (type == CG_IMAPP_EV_COMMAND || type == CG_IMAPP_EV_ERROR)
            break;
    }
    if (type != CG_IMAPP_EV_COMMAND)
        return false; /* unparseable: fail closed */
    size_t nt = cg_imapp_ntok(s->rparser), ni = 2;
    if (!status) {
        /* "(" flags ")" delimiter name */
        const cg_imapp_tok *t = cg_imapp_tok_at(s->rparser, 2);
        if (!t || t->type != CG_IMAPP_LIST_OPEN)
            return false;
        size_t i = 3;
        while (i < nt && cg_imapp_tok_at(s->rparser, i)->type != CG_IMAPP_LIST_CLOSE)
            i++;
        const cg_imapp_tok *dt = cg_imapp_tok_at(s->rparser, i + 1);
        if (!dt)
            return false;
        if (s->istage == I_LIST && dt->type == CG_IMAPP_QUOTED && dt->len == 1)
            s->delim = cg_imapp_data(s->rparser, dt)[0];
        ni = i + 2;
    }
    const cg_imapp_tok *nt_ = cg_imapp_tok_at(s->rparser, ni);
    if (!nt_ || !cg_imapp_is_string(nt_))
        return false;
    if (s->istage == I_LIST)
        return false; /* the internal LIST is not shown */
    char name[NAME_MAX_], wire[NAME_MAX_];
    if (!mailbox_decode(s, cg_imapp_data(s->rparser, nt_), nt_->len, name,
                        sizeof name, wire, sizeof wire))
        return false;
    cg_snapshot *snap = cg_snapshot_acquire();
    const cg_principal *p = snap ? cg_snapshot_principal_by_id(snap, s->principal_id) : NULL;
    bool ok = false;
    if (p && p->enabled) {
        judge j = { snap, p };
        ok = decide(&j, s, status ? CG_RIGHT_READ : CG_RIGHT_LIST, name).allow;
    }
    if (snap)
        cg_snapshot_release(snap);
    if (!ok)
        cg_debug("conn=%llu imap: %s answer for \"%s\" removed",
                 (unsigned long long)cg_conn_info_of(c)->id,
                 status ? "STATUS" : "LIST", name);
    return ok;
}

static void greeting(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (h->kind != CG_IMAPS_UNTAGGED || strcmp(h->word, "OK") != 0) {
        send_client(c, s, "* BYE [UNAVAILABLE] backend refused the connection");
        s->state = S_CLOSED;
        cg_conn_close(c, "backend greeting not OK");
        return;
    }
    const char *line = (const char *)d;
    for (size_t i = 0; i + 12 <= n; i++)
        if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
            const char *e = memchr(line + i, ']', n - i);
            if (e)
                filter_caps(line + i + 12, (size_t)(e - line - i - 12),
                            s->caps_backend, sizeof s->caps_backend,
                            &s->literal_plus);
            break;
        }
    char caps[2300];
    s->state = S_PREAUTH;
    our_caps(c, s, caps, sizeof caps);
    send_client(c, s, "* OK [CAPABILITY %s] cpmgate ready (session %s)", caps,
                cg_conn_info_of(c)->session_id);
    s->bytes_out = 0;
    process_input(c, s);
}

/* The internal login sequence: ID, LOGIN, LIST "" "". */
static void internal_response(cg_conn *c, imap_sess *s, const uint8_t *d,
                              size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (h->kind == CG_IMAPS_UNTAGGED) {
        if (!strcmp(h->word, "LIST"))
            keep_mailbox_line(c, s, d, n, false);
        return;
    }
    if (h->kind != CG_IMAPS_TAGGED)
        return;
    bool ok = !strcmp(h->word, "OK");
    /* each internal command's answer only in its own stage: a tagged
     * answer to a command not (yet) sent is a backend out of step */
    bool expected = (!strcmp(h->tag, "cgi1") && s->istage == I_ID) ||
                    (!strcmp(h->tag, "cgi2") && s->istage == I_LOGIN) ||
                    (!strcmp(h->tag, "cgi3") && s->istage == I_LIST);
    if (!expected) {
        send_client(c, s, "* BYE [UNAVAILABLE] backend protocol error");
        s->state = S_CLOSED;
        cg_conn_close(c, "backend answered a command not sent");
        return;
    }
    if (!strcmp(h->tag, "cgi1")) {
        s->istage = I_LOGIN;
        return;
    }
    if (!strcmp(h->tag, "cgi2")) {
        if (!ok) {
            s->istage = I_NONE;
            s->state = S_PREAUTH;
            s->principal[0] = '\0';
            s->principal_id = 0;
            s->method = 0;
            login_fail(c, s, "backend refused the login", false);
            process_input(c, s);
            return;
        }
        const char *line = (const char *)d;
        for (size_t i = 0; i + 12 <= n; i++)
            if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
                const char *e = memchr(line + i, ']', n - i);
                if (e)
                    filter_caps(line + i + 12, (size_t)(e - line - i - 12),
                                s->caps_backend, sizeof s->caps_backend,
                                &s->literal_plus);
                break;
            }
        s->istage = I_LIST;
        obuf o = { 0 };
        ob_str(&o, "cgi3 LIST \"\" \"\"");
        send_upstream_line(c, &o);
        return;
    }
    if (!strcmp(h->tag, "cgi3")) {
        s->istage = I_NONE;
        s->state = S_AUTH;
        send_client(c, s, "%s OK [CAPABILITY %s] Logged in", s->tag,
                    s->caps_backend);
        cg_info("conn=%llu imap login principal=%s mailbox=%s method=%s",
                (unsigned long long)cg_conn_info_of(c)->id, s->principal,
                s->mailbox_login, method_name(s->method));
        command_done(c, s, "OK");
        process_input(c, s);
    }
}

static void tagged_response(cg_conn *c, imap_sess *s, const uint8_t *d,
                            size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    obuf o = { 0 };
    if (rewrite_cap_code(c, s, (const char *)d, n, &o)) {
        to_client(c, s, o.p, o.len);
        free(o.p);
    } else {
        to_client(c, s, d, n);
    }
    if (s->streaming && strcmp(h->tag, s->tag) == 0) {
        /* An answer to the APPEND still streaming: Dovecot refuses a
         * missing mailbox at once, then skips the literals and the rest
         * of the line it was promised. They still go to it; their end is
         * not a command of its own (no second answer will come). */
        cg_conn_upstream_expect(c, false);
        command_done(c, s, h->word[0] ? h->word : "BAD");
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
            snprintf(s->selected, sizeof s->selected, "%s", s->pending_select);
    } else if (s->kind == K_DESELECT && ok) {
        s->has_selected = false;
    } else if (s->kind == K_IDLE) {
        s->idle = false;
    }
    bool logout = s->kind == K_LOGOUT;
    command_done(c, s, h->word[0] ? h->word : "BAD");
    if (logout) {
        s->state = S_CLOSED;
        cg_conn_close(c, "logout");
        return;
    }
    process_input(c, s);
}

static void held_response(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (s->state == S_CONNECTING) {
        greeting(c, s, d, n);
        return;
    }
    if (s->istage != I_NONE) {
        internal_response(c, s, d, n);
        return;
    }
    if (h->kind == CG_IMAPS_TAGGED) {
        tagged_response(c, s, d, n);
        return;
    }
    if (!strcmp(h->word, "LIST") || !strcmp(h->word, "LSUB") ||
        !strcmp(h->word, "STATUS")) {
        if (keep_mailbox_line(c, s, d, n, !strcmp(h->word, "STATUS")))
            to_client(c, s, d, n);
        return;
    }
    if (!strcmp(h->word, "CAPABILITY")) {
        char caps[2048];
        size_t skip = 13; /* "* CAPABILITY " */
        size_t e = n;
        while (e > 0 && (d[e - 1] == '\r' || d[e - 1] == '\n'))
            e--;
        filter_caps((const char *)d + (skip < e ? skip : e),
                    skip < e ? e - skip : 0, caps, sizeof caps, NULL);
        send_client(c, s, "* CAPABILITY %s", caps);
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
    obuf o = { 0 };
    if (rewrite_cap_code(c, s, (const char *)d, n, &o))
        to_client(c, s, o.p, o.len);
    else
        to_client(c, s, d, n);
    free(o.p);
}

static bool must_hold(const imap_sess *s, const cg_imaps_head *h)
{
    if (s->state == S_CONNECTING || s->istage != I_NONE)
        return true;
    if (h->kind == CG_IMAPS_TAGGED)
        return true;
    if (h->kind != CG_IMAPS_UNTAGGED || h->has_number)
        return false;
    static const char *const words[] = { "CAPABILITY", "LIST", "LSUB", "STATUS",
                                         "ENABLED", "OK", "NO", "BAD", "BYE",
                                         "PREAUTH" };
    for (size_t i = 0; i < CG_ARRAY_LEN(words); i++)
        if (!strcmp(h->word, words[i]))
            return true;
    return false;
}

static void imap_upstream_data(cg_conn *c, const uint8_t *buf, size_t len)
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
            send_client(c, s, "* BYE [UNAVAILABLE] backend protocol error");
            s->state = S_CLOSED;
            cg_conn_close(c, "backend protocol error");
            return;
        case CG_IMAPS_EV_HEAD:
            s->holding = must_hold(s, cg_imaps_head_of(s->scan));
            s->holdlen = 0;
            s->hold_overflow = false;
            /* fall through */
        case CG_IMAPS_EV_DATA:
            if (!s->holding) {
                to_client(c, s, ev.data, ev.len);
            } else if (s->holdlen + ev.len <= HOLD_MAX) {
                if (!cg_buf_grow((void **)&s->hold, &s->holdcap, s->holdlen + ev.len, HOLD_KEEP,
                                 HOLD_MAX)) {
                    cg_conn_abort(c, "out of memory");
                    return;
                }
                memcpy(s->hold + s->holdlen, ev.data, ev.len);
                s->holdlen += ev.len;
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
                held_response(c, s, s->hold, s->holdlen);
                if (s->holdcap > HOLD_KEEP) {
                    free(s->hold);
                    s->hold = NULL;
                    s->holdcap = 0;
                }
            }
            break;
        }
    }
}

/* ---- connection callbacks ------------------------------------------------ */

static void imap_open(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_listener_cfg *l = ci->listener;
    s->delim = '/';
    s->state = S_CONNECTING;
    if (l->tls == CG_TLS_NONE &&
        !(l->allow_plaintext && ci->auth_method == CG_AUTH_ADDRESS)) {
        /* SPEC 3: plaintext only for trusted, address-authenticated hosts */
        send_client(c, s, "* BYE [PRIVACYREQUIRED] TLS required (session %s)",
                    ci->session_id);
        audit(c, s, "connect", NULL, "deny", 0, "BYE", "plaintext refused");
        s->state = S_CLOSED;
        cg_conn_close(c, "plaintext refused");
        return;
    }
    if (ci->principal_id)
        s->method = ci->auth_method;
    cg_imapp_limits lim = {
        .max_line = l->max_line ? l->max_line : 8192,
        .max_literal = l->max_literal ? l->max_literal : 67108864,
        .max_depth = 32,
        .max_tokens = 4096,
    };
    cg_imapp_limits rlim = { .max_line = HOLD_MAX, .max_literal = HOLD_MAX,
                             .max_depth = 32, .max_tokens = 4096, .server = true };
    s->parser = cg_imapp_new(&lim);
    s->rparser = cg_imapp_new(&rlim);
    s->scan = cg_imaps_new();
    if (!s->parser || !s->rparser || !s->scan) {
        cg_conn_abort(c, "out of memory");
        return;
    }
    if (cg_conn_upstream_connect(c) < 0) {
        send_client(c, s, "* BYE [UNAVAILABLE] backend unavailable");
        s->state = S_CLOSED;
        cg_conn_close(c, "no upstream");
        return;
    }
    cg_conn_upstream_expect(c, true);
}

static void imap_upstream_connected(cg_conn *c, int status)
{
    imap_sess *s = cg_conn_session(c);
    if (status < 0 && s->state != S_CLOSED) {
        cg_warn("conn=%llu imap: backend unavailable: %s",
                (unsigned long long)cg_conn_info_of(c)->id, cg_strerror(status));
        send_client(c, s, "* BYE [UNAVAILABLE] backend unavailable");
        s->state = S_CLOSED;
        cg_conn_close(c, "backend unavailable");
    }
}

static void imap_upstream_eof(cg_conn *c, int status)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state != S_CLOSED) {
        if (!s->logout)
            send_client(c, s, "* BYE [UNAVAILABLE] %s",
                        status == CG_E_TIMEOUT ? "backend timed out"
                                               : "backend connection lost");
        if (s->op[0])
            command_done(c, s, "BYE");
        s->state = S_CLOSED;
    }
    cg_conn_close(c, "backend closed");
}

static void imap_client_eof(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    s->state = S_CLOSED;
    /* an IMAP client never half-closes: nothing queued can still be read */
    cg_conn_abort(c, "client closed");
}

static void imap_tls_ready(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    const cg_conn_info *ci = cg_conn_info_of(c);
    s->busy = false;
    if (ci->principal_id)
        s->method = ci->auth_method;
    process_input(c, s);
}

static void imap_timer(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    uint64_t now = cg_mono_ms();
    if (s->state == S_CLOSED)
        return;
    if (s->fail_at && now >= s->fail_at) {
        s->fail_at = 0;
        refuse(c, s, "NO", "AUTHENTICATIONFAILED", s->login_user, 0,
               "Authentication failed");
        process_input(c, s); /* re-arms for what is left */
        return;
    }
    if (s->cmd_deadline && now >= s->cmd_deadline) {
        s->cmd_deadline = 0;
        send_client(c, s, "* BYE command timed out");
        s->state = S_CLOSED;
        cg_conn_close(c, "client timeout");
        return;
    }
    arm_timer(c, s); /* woken a little early: wait for the rest */
}

static void imap_refuse(cg_conn *c, int err, const char *reason)
{
    imap_sess *s = cg_conn_session(c);
    if (s->state == S_CLOSED)
        return;
    if (err == CG_E_UNAVAIL && cg_conn_info_of(c)->shutting_down)
        send_client(c, s, "* BYE [UNAVAILABLE] shutting down");
    else if (err == CG_E_TIMEOUT)
        send_client(c, s, "* BYE Autologout; idle for too long");
    else
        send_client(c, s, "* BYE [UNAVAILABLE] %s", reason ? reason : "refused");
    s->state = S_CLOSED;
}

static void imap_close(cg_conn *c)
{
    imap_sess *s = cg_conn_session(c);
    cg_audit_release(&s->resv);
    cg_imapp_free(s->parser);
    cg_imapp_free(s->rparser);
    cg_imaps_free(s->scan);
    free(s->in);
    free(s->hold);
    s->parser = s->rparser = NULL;
    s->scan = NULL;
    s->in = s->hold = NULL;
}

const cg_proto_ops cg_imap_proto = {
    .name = "imap",
    .session_size = sizeof(imap_sess),
    .on_open = imap_open,
    .on_client_data = imap_client_data,
    .on_client_eof = imap_client_eof,
    .on_tls_ready = imap_tls_ready,
    .on_upstream_connected = imap_upstream_connected,
    .on_upstream_data = imap_upstream_data,
    .on_upstream_eof = imap_upstream_eof,
    .on_timer = imap_timer,
    .on_refuse = imap_refuse,
    .on_close = imap_close,
};
