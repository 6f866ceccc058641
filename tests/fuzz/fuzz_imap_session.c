/* fuzz_imap_session — libFuzzer target for whole IMAP sessions: the real
 * gateway (proxy/imap/ with its command table and parsers, the ACL on a policy snapshot
 * built from a policy database, the audit writer) driven through
 * cg_proto_ops by a script of client bytes in any split, backend answers,
 * connect results, deadlines and closes (session_driver.h), on several
 * listener variants (certificate, login, STARTTLS, plaintext by address,
 * a disabled principal; master-user, passthrough and PROXY-protocol
 * upstreams).
 *
 * Invariants on what reaches the backend, parsed back as IMAP commands:
 *  - nothing from the client before the gateway's own login sequence
 *    (cgi1 ID, cgi2 LOGIN, cgi3 LIST) is done;
 *  - the backend LOGIN names an enabled principal's mailbox, with the
 *    master user only as the "mailbox*master" form;
 *  - no command names a mailbox the logged-in principal lacks the right
 *    for (a model of the policy session_driver.c writes);
 *  - no synchronising literal (the backend would wait for "+");
 *  - no command goes out while a SELECT, EXAMINE, CLOSE or UNSELECT
 *    is unanswered (nothing is pipelined past a change of the selected
 *    mailbox), and a command on the selected mailbox (FETCH, STORE,
 *    EXPUNGE, COPY, ...) goes out only with the principal's rights on the
 *    mailbox the client was told is selected (the tagged answers it got,
 *    scanned with the gateway's scanner).
 * Any violation is __builtin_trap(). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/acl.h"
#include "proxy/imap/mutf7.h"
#include "proxy/imap/parser.h"
#include "proxy/imap/scan.h"
#include "proxy/imap/imap.h"
#include "tests/support/session_driver.h"

#define MASTER "gwmaster"

static cg_upstream_cfg up_master = {
    .name = "dovecot", .address = "127.0.0.1:143", .imap_login = CG_IMAP_LOGIN_MASTER,
    .master_user = MASTER, .master_password = "master-secret", .connect_timeout = 5,
    .response_timeout = 30,
};
static cg_upstream_cfg up_pass = {
    .name = "dovecot-pass", .address = "127.0.0.1:143",
    .imap_login = CG_IMAP_LOGIN_PASSTHROUGH, .connect_timeout = 5, .response_timeout = 30,
};
static cg_upstream_cfg up_proxy = {
    .name = "dovecot-proxy", .address = "127.0.0.1:143", .imap_login = CG_IMAP_LOGIN_MASTER,
    .master_user = MASTER, .master_password = "master-secret", .connect_timeout = 5,
    .response_timeout = 30, .proxy_protocol = true,
};

#define LISTENER(nm, mode, auths, up, plain)                                                 \
    {                                                                                        \
        .name = nm, .protocol = CG_PROTO_IMAP, .listen = "127.0.0.1:993", .tls = mode,       \
        .auth = auths, .upstream_name = (char *)"dovecot", .upstream = up,                   \
        .allow_plaintext = plain, .tls12 = true, .tls13 = true, .handshake_timeout = 10,     \
        .idle_timeout = 1800, .client_timeout = 60, .max_line = 65536,                       \
        .max_literal = 1 << 20, .login_failures_per_minute = 0,                              \
    }

static cg_listener_cfg l_cert = LISTENER("imaps-cert", CG_TLS_IMPLICIT, CG_AUTH_CERT, &up_master, false);
static cg_listener_cfg l_both = LISTENER("imaps-both", CG_TLS_IMPLICIT, CG_AUTH_CERT | CG_AUTH_LOGIN, &up_pass, false);
static cg_listener_cfg l_login = LISTENER("imaps-login", CG_TLS_IMPLICIT, CG_AUTH_LOGIN, &up_pass, false);
static cg_listener_cfg l_starttls = LISTENER("imap-starttls", CG_TLS_STARTTLS, CG_AUTH_CERT | CG_AUTH_LOGIN, &up_master, false);
static cg_listener_cfg l_addr = LISTENER("imap-addr", CG_TLS_NONE, CG_AUTH_ADDRESS, &up_master, true);
static cg_listener_cfg l_plain = LISTENER("imap-plain", CG_TLS_NONE, CG_AUTH_LOGIN, &up_master, false);
static cg_listener_cfg l_proxy = LISTENER("imaps-proxy", CG_TLS_IMPLICIT, CG_AUTH_LOGIN | CG_AUTH_CERT, &up_proxy, false);

static const sd_variant variants[] = {
    { &l_cert, "alice", CG_AUTH_CERT, true, NULL },
    { &l_both, "bob", CG_AUTH_CERT, true, NULL },
    { &l_login, NULL, 0, true, NULL },
    { &l_starttls, NULL, 0, false, "alice" },
    { &l_addr, "bob", CG_AUTH_ADDRESS, false, NULL },
    { &l_plain, NULL, 0, false, NULL },
    { &l_proxy, NULL, 0, true, NULL },
    { &l_cert, "carol", CG_AUTH_CERT, true, NULL },
    { &l_cert, "bob", CG_AUTH_CERT, true, NULL },
};

/* ---- the checker ---------------------------------------------------------- */

enum who { W_NONE, W_ALICE, W_BOB };

static struct {
    cg_imapp *p;
    bool lost;        /* the checker's parser lost the command framing */
    bool login_done;  /* cgi3 went out */
    bool utf8;        /* UTF8=ACCEPT was asked for: names may be UTF-8 */
    enum who who;
    /* the selected mailbox as the client was told it */
    cg_imaps *cs;     /* what the client gets, scanned */
    bool cs_lost;     /* the scan failed: selection unknown from here */
    bool has_sel, sel_known;
    char sel[4096];
    /* a SELECT/EXAMINE (pend_select) or CLOSE/UNSELECT sent, unanswered */
    bool pend, pend_select, pend_known;
    char pend_tag[64];
    char pend_name[4096];
} ck;

static void ck_begin(void)
{
    cg_imaps_free(ck.cs);
    memset(&ck, 0, sizeof ck);
    ck.cs = cg_imaps_new();
    if (!ck.cs)
        abort();
}

static void ck_backend_conn(unsigned conn)
{
    (void)conn;
    cg_imapp_free(ck.p);
    cg_imapp_limits lim = { .max_line = 1 << 22, .max_literal = 1ull << 40,
                            .max_nonsync = 1ull << 40, .max_depth = 64,
                            .max_tokens = 1 << 16 };
    ck.p = cg_imapp_new(&lim);
    if (!ck.p)
        abort();
    ck.lost = false;
}

static bool in_zone(const char *name, const char *zone)
{
    size_t n = strlen(zone);
    return strncmp(name, zone, n) == 0 && (name[n] == '\0' || name[n] == '/');
}

/* The policy of session_driver.c for IMAP. */
static bool allowed(enum who w, unsigned right, const char *name)
{
    if (in_zone(name, "Private"))
        return false;
    if (w == W_ALICE)
        return !in_zone(name, "Secret") &&
               !(in_zone(name, "Archive") &&
                 (right & (CG_RIGHT_WRITE | CG_RIGHT_CREATE | CG_RIGHT_DELETE)));
    if (w == W_BOB)
        return in_zone(name, "INBOX") || !(right & ~(unsigned)(CG_RIGHT_LIST | CG_RIGHT_READ));
    return false;
}

static const char *tok(size_t i, size_t *len)
{
    const cg_imapp_tok *t = cg_imapp_tok_at(ck.p, i);
    if (!t || !cg_imapp_is_string(t))
        return NULL;
    *len = t->len;
    return cg_imapp_data(ck.p, t);
}

/* Token i as the mailbox name the gateway judged; false when the model
 * cannot tell. */
static bool mailbox_name(size_t i, char *name, size_t cap)
{
    size_t len;
    const char *raw = tok(i, &len);
    if (!raw || strlen(raw) != len)
        return false;
    if (ck.utf8) {
        if (memchr(raw, '&', len) || len >= cap)
            return false; /* the two readings could differ */
        memcpy(name, raw, len + 1);
        return true;
    }
    return cg_mutf7_decode(raw, len, name, cap) >= 0;
}

static void check_mailbox(size_t i, unsigned right)
{
    char name[4096];
    if (!mailbox_name(i, name, sizeof name))
        return;
    if (!allowed(ck.who, right, name))
        __builtin_trap(); /* a denied mailbox reached the backend */
}

static void check_login(void)
{
    size_t len;
    const char *user = tok(2, &len);
    if (!user)
        __builtin_trap();
    const char *star = strchr(user, '*');
    size_t ul = star ? (size_t)(star - user) : len;
    if (star && strcmp(star + 1, MASTER) != 0)
        __builtin_trap(); /* a client-chosen master login */
    if (ul == 5 && !strncmp(user, "alice", 5))
        ck.who = W_ALICE;
    else if (ul == 15 && !strncmp(user, "bob@example.org", 15))
        ck.who = W_BOB;
    else
        __builtin_trap(); /* not an enabled principal's mailbox */
}

/* The rights a command needs on the selected mailbox (the command table's
 * "selected" column, written out again here). */
static unsigned selected_rights(const char *cmd)
{
    static const struct {
        const char *name;
        unsigned rights;
    } rows[] = {
        { "FETCH", CG_RIGHT_READ },   { "SEARCH", CG_RIGHT_READ },
        { "SORT", CG_RIGHT_READ },    { "THREAD", CG_RIGHT_READ },
        { "COPY", CG_RIGHT_READ },    { "IDLE", CG_RIGHT_READ },
        { "STORE", CG_RIGHT_WRITE },  { "EXPUNGE", CG_RIGHT_DELETE },
        { "CLOSE", CG_RIGHT_DELETE }, { "MOVE", CG_RIGHT_READ | CG_RIGHT_DELETE },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (!strcasecmp(cmd, rows[i].name))
            return rows[i].rights;
    return 0;
}

static void check_selected(const char *tag, const char *cmd, bool streaming)
{
    if (ck.cs_lost)
        return;
    if (ck.pend)
        __builtin_trap(); /* pipelined past a change of the selected mailbox */
    size_t len;
    const char *name = cmd;
    if (!strcasecmp(cmd, "UID") && !(name = tok(2, &len)))
        return;
    unsigned rights = selected_rights(name);
    if (rights && ck.has_sel && ck.sel_known)
        for (unsigned r = 1; r <= CG_RIGHT_DELETE; r <<= 1)
            if ((rights & r) && !allowed(ck.who, r, ck.sel))
                __builtin_trap(); /* a command the selected mailbox denies */
    if (streaming || name != cmd || strlen(tag) >= sizeof ck.pend_tag)
        return;
    bool select = !strcasecmp(cmd, "SELECT") || !strcasecmp(cmd, "EXAMINE");
    if (!select && strcasecmp(cmd, "CLOSE") && strcasecmp(cmd, "UNSELECT"))
        return;
    ck.pend = true;
    ck.pend_select = select;
    ck.pend_known = select && mailbox_name(2, ck.pend_name, sizeof ck.pend_name);
    strcpy(ck.pend_tag, tag);
}

/* What the client is told: the tagged answer of a pending change of the
 * selected mailbox applies it (RFC 3501 6.3.1: a failed SELECT leaves
 * none selected). */
static void ck_to_client(const uint8_t *buf, size_t len)
{
    while (len && !ck.cs_lost) {
        cg_imaps_event ev;
        size_t used = cg_imaps_feed(ck.cs, buf, len, &ev);
        buf += used;
        len -= used;
        if (ev.type == CG_IMAPS_EV_ERROR) {
            ck.cs_lost = true;
            return;
        }
        if (ev.type == CG_IMAPS_EV_NONE)
            return;
        const cg_imaps_head *h = cg_imaps_head_of(ck.cs);
        if (ev.type != CG_IMAPS_EV_HEAD || h->kind != CG_IMAPS_TAGGED || !ck.pend ||
            strcmp(h->tag, ck.pend_tag) != 0)
            continue;
        bool ok = !strcmp(h->word, "OK");
        if (ck.pend_select) {
            ck.has_sel = ok;
            ck.sel_known = ck.pend_known;
            memcpy(ck.sel, ck.pend_name, sizeof ck.sel);
        } else if (ok) {
            ck.has_sel = false;
        }
        ck.pend = false;
    }
}

static void check_command(bool streaming)
{
    const char *tag = cg_imapp_tag(ck.p);
    size_t len;
    const char *cmd = tok(1, &len);
    if (!tag || !cmd)
        return;
    /* the gateway's own tags, until its login is done; after that a
     * client may use them as well */
    if (!ck.login_done && !strcmp(tag, "cgi1"))
        return;
    if (!ck.login_done && !strcmp(tag, "cgi2")) {
        if (!streaming)
            check_login();
        return;
    }
    if (!ck.login_done && !strcmp(tag, "cgi3")) {
        ck.login_done = true;
        return;
    }
    if (!ck.login_done)
        __builtin_trap(); /* a client command before the login finished */
    check_selected(tag, cmd, streaming);
    bool uid = !strcasecmp(cmd, "UID");
    size_t a = 2;
    if (uid) {
        cmd = tok(2, &len);
        a = 3;
        if (!cmd)
            return;
    }
    if (!strcasecmp(cmd, "ENABLE")) {
        for (size_t i = 2; i < cg_imapp_ntok(ck.p); i++) {
            const char *e = tok(i, &len);
            if (e && !strcasecmp(e, "UTF8=ACCEPT"))
                ck.utf8 = true;
        }
        return;
    }
    if (uid) {
        if (!strcasecmp(cmd, "COPY") || !strcasecmp(cmd, "MOVE"))
            check_mailbox(a + 1, CG_RIGHT_WRITE);
        return;
    }
    if (!strcasecmp(cmd, "SELECT") || !strcasecmp(cmd, "EXAMINE") ||
        !strcasecmp(cmd, "STATUS"))
        check_mailbox(2, CG_RIGHT_READ);
    else if (!strcasecmp(cmd, "CREATE"))
        check_mailbox(2, CG_RIGHT_CREATE);
    else if (!strcasecmp(cmd, "DELETE"))
        check_mailbox(2, CG_RIGHT_DELETE);
    else if (!strcasecmp(cmd, "SUBSCRIBE") || !strcasecmp(cmd, "UNSUBSCRIBE"))
        check_mailbox(2, CG_RIGHT_LIST);
    else if (!strcasecmp(cmd, "APPEND"))
        check_mailbox(2, CG_RIGHT_WRITE);
    else if (!strcasecmp(cmd, "RENAME")) {
        check_mailbox(2, CG_RIGHT_DELETE);
        check_mailbox(3, CG_RIGHT_CREATE);
    } else if (!strcasecmp(cmd, "COPY") || !strcasecmp(cmd, "MOVE"))
        check_mailbox(3, CG_RIGHT_WRITE);
}

static void ck_to_backend(unsigned conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    if (!ck.p || ck.lost)
        return;
    while (len) {
        cg_imapp_event ev;
        size_t used = cg_imapp_feed(ck.p, buf, len, &ev);
        buf += used;
        len -= used;
        switch (ev.type) {
        case CG_IMAPP_EV_COMMAND:
            check_command(false);
            break;
        case CG_IMAPP_EV_STREAM_START:
            check_command(true);
            break;
        case CG_IMAPP_EV_LITERAL:
            /* a synchronising literal: the backend waits for "+" that
             * the gateway never reads (it sends {n+} only) */
            __builtin_trap();
        case CG_IMAPP_EV_ERROR:
            /* IDLE's DONE is not a command; anything fatal ends checking */
            if (ev.fatal)
                ck.lost = true;
            break;
        default:
            break;
        }
        if (ck.lost || (used == 0 && ev.type == CG_IMAPP_EV_NONE))
            break;
    }
}

static void ck_end(void)
{
    cg_imapp_free(ck.p);
    cg_imaps_free(ck.cs);
    ck.p = NULL;
    ck.cs = NULL;
}

static const sd_checker checker = {
    .begin = ck_begin,
    .backend_conn = ck_backend_conn,
    .to_backend = ck_to_backend,
    .to_client = ck_to_client,
    .end = ck_end,
};

SD_FUZZ_TARGET(cg_imap_proto, variants, checker)
