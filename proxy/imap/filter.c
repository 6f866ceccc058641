/* proxy/imap/filter.c — what the client may see of the backend's
 * answers (SPEC section 4): the capability allow-list, the gateway's own
 * capabilities, and LIST/LSUB/STATUS lines kept only for mailboxes the
 * principal may see. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_log.h"
#include "common/cg_util.h"

/* ---- capabilities (SPEC section 4 allowlist) ------------------------------ */

/* The capability allow-list: a capability of the backend is offered only
 * when it is a row here and every command it brings or extends is a row
 * of the command table (proxy/imap/commands.c); the rest is removed: the
 * gateway cannot judge what those extensions name (COMPRESS, NOTIFY,
 * URLAUTH, METADATA, ACL, QUOTA, CATENATE, ...). A row with no commands
 * is syntax the parser reads (LITERAL+). A name ending in '=' is a family
 * (THREAD=REFERENCES, THREAD=ORDEREDSUBJECT, ...).
 *
 * Some of Dovecot's imaptest scripted tests need a removed capability;
 * through the gateway imaptest skips them, and
 * tests/integration/test_imaptest.py reads this list (one per line):
 *   imaptest catenate needs CATENATE: an APPEND part by IMAP URL reads a mailbox no command names
 *   imaptest catenate-multiappend needs CATENATE: as catenate
 *   imaptest notify needs NOTIFY: events from mailboxes no command names, never judged per event
 *   imaptest urlauth needs URLAUTH: GENURLAUTH/URLFETCH read mailboxes by URL, outside the ACL
 *   imaptest urlauth2 needs URLAUTH: as urlauth
 *   imaptest urlauth-binary needs URLAUTH: as urlauth
 */
#define CMDS(...) (const char *const[]){ __VA_ARGS__, NULL }
#define NO_CMDS (const char *const[]){ NULL }

const cg_imap_cap cg_imap_caps[] = {
    { "IMAP4rev1", CMDS("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE",
                        "LOGIN", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME",
                        "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND",
                        "CHECK", "CLOSE", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY",
                        "UID FETCH", "UID SEARCH", "UID STORE", "UID COPY") },
    { "LITERAL+", NO_CMDS },
    { "LITERAL-", NO_CMDS },
    { "SASL-IR", CMDS("AUTHENTICATE") },
    { "ID", CMDS("ID") },
    { "ENABLE", CMDS("ENABLE") },
    { "IDLE", CMDS("IDLE") },
    { "NAMESPACE", CMDS("NAMESPACE") },
    { "UNSELECT", CMDS("UNSELECT") },
    { "UIDPLUS", CMDS("UID EXPUNGE", "APPEND", "COPY") },
    { "CHILDREN", CMDS("LIST") },
    { "LIST-EXTENDED", CMDS("LIST") },
    { "LIST-STATUS", CMDS("LIST", "STATUS") },
    { "SPECIAL-USE", CMDS("LIST", "CREATE") },
    { "MOVE", CMDS("MOVE", "UID MOVE") },
    { "MULTIAPPEND", CMDS("APPEND") },
    { "CONDSTORE", CMDS("ENABLE", "SELECT", "EXAMINE", "FETCH", "STORE", "SEARCH") },
    { "QRESYNC", CMDS("ENABLE", "SELECT", "EXAMINE", "UID FETCH") },
    { "ESEARCH", CMDS("SEARCH", "UID SEARCH") },
    { "SEARCHRES", CMDS("SEARCH") },
    { "SORT", CMDS("SORT", "UID SORT") },
    { "SORT=DISPLAY", CMDS("SORT") },
    { "ESORT", CMDS("SORT") },
    { "CONTEXT=SEARCH", CMDS("SEARCH", "CANCELUPDATE") },
    { "CONTEXT=SORT", CMDS("SORT", "CANCELUPDATE") },
    { "WITHIN", CMDS("SEARCH") },
    { "BINARY", CMDS("FETCH", "APPEND") },
    { "I18NLEVEL=1", CMDS("SEARCH", "SORT") },
    { "THREAD=", CMDS("THREAD", "UID THREAD") },
};
const size_t cg_imap_ncaps = CG_ARRAY_LEN(cg_imap_caps);

bool cg_imap_cap_offered(const char *w, size_t n)
{
    for (size_t i = 0; i < CG_ARRAY_LEN(cg_imap_caps); i++) {
        const cg_imap_cap *cap = &cg_imap_caps[i];
        size_t cl = strlen(cap->name);
        bool family = cl && cap->name[cl - 1] == '=';
        if (family ? n <= cl || strncasecmp(w, cap->name, cl) != 0
                   : n != cl || strncasecmp(w, cap->name, n) != 0)
            continue;
        for (const char *const *cmd = cap->commands; *cmd; cmd++)
            if (!cg_imap_cmd_find(*cmd))
                return false;
        return true;
    }
    return false;
}

/* Filters a space-separated capability list by the allow-list. */
void cg_imap_filter_caps(const char *in, size_t len, char *out, size_t cap,
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
        if (n == 0 || !cg_imap_cap_offered(in + st, n))
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

const char *cg_imap_backend_caps(const imap_sess *s)
{
    return s->caps_backend && s->caps_backend[0] ? s->caps_backend : "IMAP4rev1";
}

/* Our capability list for the client now. */
void cg_imap_our_caps(cg_conn *c, imap_sess *s, char *out, size_t cap)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    snprintf(out, cap, "%s", cg_imap_backend_caps(s));
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

/* The list of a "[CAPABILITY ...]" code in a response line (its start,
 * *n its length); NULL when there is none. */
static const char *cap_code(const char *line, size_t len, size_t *n)
{
    for (size_t i = 0; i + 12 <= len; i++)
        if (strncasecmp(line + i, "[CAPABILITY ", 12) == 0) {
            const char *e = memchr(line + i, ']', len - i);
            if (!e)
                return NULL;
            *n = (size_t)(e - (line + i + 12));
            return line + i + 12;
        }
    return NULL;
}

void cg_imap_learn_caps(imap_sess *s, const uint8_t *d, size_t n)
{
    size_t cl;
    const char *caps = cap_code((const char *)d, n, &cl);
    if (!caps)
        return;
    char kept[2048];
    cg_imap_filter_caps(caps, cl, kept, sizeof kept, &s->literal_plus);
    char *copy = strdup(kept);
    if (!copy)
        return; /* out of memory: the last list learnt stands */
    free(s->caps_backend);
    s->caps_backend = copy;
}

void cg_imap_pass_answer(cg_conn *c, imap_sess *s, const uint8_t *d, size_t n)
{
    const char *line = (const char *)d;
    size_t cl;
    const char *caps = cap_code(line, n, &cl);
    if (!caps) {
        cg_imap_to_client(c, s, d, n);
        return;
    }
    char filtered[2048];
    cg_imap_filter_caps(caps, cl, filtered, sizeof filtered, NULL);
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    cg_buf_add(&o, line, (size_t)(caps - 12 - line));
    cg_buf_str(&o, "[CAPABILITY ");
    cg_buf_str(&o, filtered);
    cg_buf_add(&o, caps + cl, n - (size_t)(caps + cl - line));
    if (o.failed)
        cg_conn_abort(c, "out of memory");
    else
        cg_imap_to_client(c, s, o.p, o.len);
    cg_buf_free(&o);
}

/* The mailbox of a LIST/LSUB line (status false) or a STATUS line, parsed
 * with the response parser; a LIST's delimiter, when it is one quoted
 * character, goes to *delim. NULL when the line does not parse. */
static const cg_imapp_tok *line_mailbox(imap_sess *s, const uint8_t *d, size_t n,
                                        bool status, char *delim)
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
        return NULL;
    size_t nt = cg_imapp_ntok(s->rparser), ni = 2;
    if (!status) {
        /* "(" flags ")" delimiter name */
        const cg_imapp_tok *t = cg_imapp_tok_at(s->rparser, 2);
        if (!t || t->type != CG_IMAPP_LIST_OPEN)
            return NULL;
        size_t i = 3;
        while (i < nt && cg_imapp_tok_at(s->rparser, i)->type != CG_IMAPP_LIST_CLOSE)
            i++;
        const cg_imapp_tok *dt = cg_imapp_tok_at(s->rparser, i + 1);
        if (!dt)
            return NULL;
        if (dt->type == CG_IMAPP_QUOTED && dt->len == 1)
            *delim = cg_imapp_data(s->rparser, dt)[0];
        ni = i + 2;
    }
    const cg_imapp_tok *t = cg_imapp_tok_at(s->rparser, ni);
    return t && cg_imapp_is_string(t) ? t : NULL;
}

void cg_imap_learn_delim(imap_sess *s, const uint8_t *d, size_t n)
{
    /* the delimiter is all it needs of the line */
    if (!line_mailbox(s, d, n, false, &s->delim))
        cg_debug("imap: an internal LIST answer without a mailbox");
}

/* LIST / LSUB / STATUS answer: kept only when the principal has the right
 * on the name it carries (list for LIST/LSUB, read for STATUS). */
bool cg_imap_keep_mailbox_line(cg_conn *c, imap_sess *s, const uint8_t *d,
                               size_t n, bool status)
{
    char delim = s->delim;
    const cg_imapp_tok *nt_ = line_mailbox(s, d, n, status, &delim);
    if (!nt_)
        return false; /* unparseable: fail closed */
    char name[NAME_MAX_], wire[NAME_MAX_];
    if (!cg_imap_mailbox_decode(s, cg_imapp_data(s->rparser, nt_), nt_->len, name,
                                sizeof name, wire, sizeof wire))
        return false;
    cg_snapshot *snap = cg_snapshot_acquire();
    const cg_principal *p = snap ? cg_snapshot_principal_by_id(snap, s->principal_id) : NULL;
    bool ok = false;
    if (p && p->enabled) {
        imap_judge j = { snap, p };
        ok = cg_imap_decide(&j, s, status ? CG_RIGHT_READ : CG_RIGHT_LIST, name).allow;
    }
    if (snap)
        cg_snapshot_release(snap);
    if (!ok)
        cg_debug("conn=%llu imap: %s answer for \"%s\" removed",
                 (unsigned long long)cg_conn_info_of(c)->id,
                 status ? "STATUS" : "LIST", name);
    return ok;
}

/* An untagged answer the command table filters (cmd->answer). */
void cg_imap_filter_answer(cg_conn *c, imap_sess *s, int answer, const uint8_t *d,
                           size_t n)
{
    if (answer == ANS_LIST || answer == ANS_STATUS) {
        if (cg_imap_keep_mailbox_line(c, s, d, n, answer == ANS_STATUS))
            cg_imap_to_client(c, s, d, n);
        return;
    }
    /* ANS_CAPS */
    char caps[2048];
    size_t skip = 13; /* "* CAPABILITY " */
    size_t e = n;
    while (e > 0 && (d[e - 1] == '\r' || d[e - 1] == '\n'))
        e--;
    cg_imap_filter_caps((const char *)d + (skip < e ? skip : e),
                        skip < e ? e - skip : 0, caps, sizeof caps, NULL);
    cg_imap_send(c, s, "* CAPABILITY %s", caps);
}
