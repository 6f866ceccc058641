/* proxy/imap/login.c — login (SPEC sections 2 and 10): LOGIN and
 * AUTHENTICATE (PLAIN, EXTERNAL), the gateway's own login to the backend
 * (ID, LOGIN as master user or passed through, LIST for the delimiter),
 * and failed-login limiting per client address (common/cg_addrtab.h). */
#include "proxy/imap/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_addrtab.h"
#include "common/cg_base64.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"

#define FAIL_DELAY_MS 2000      /* failed logins answer after this, whether
                                 * the user exists or not */

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

/* The failed logins of the client's address in this minute, after adding
 * add. 0, or CG_E_NOMEM / CG_E_INVAL / CG_E_LIMIT when there is no place to
 * count them (no table, no address, a full table). */
static int fail_count(const cg_conn_info *ci, unsigned add, unsigned *count)
    __attribute__((warn_unused_result));
static int fail_count(const cg_conn_info *ci, unsigned add, unsigned *count)
{
    cg_addrkey k;
    pthread_once(&g_fails_once, fails_init);
    if (!g_fails)
        return CG_E_NOMEM;
    int r = cg_addrkey_of((const struct sockaddr *)&ci->peer, &k);
    if (r < 0)
        return r;
    return cg_addrtab_count(g_fails, &k, cg_mono_ms() / 60000, add, count);
}

/* Has the client's address reached the listener's limit? */
static bool fail_limited(const cg_conn_info *ci, unsigned limit)
{
    unsigned count = 0;
    if (fail_count(ci, 0, &count) < 0)
        return true; /* no place to count: refuse, never fail open */
    return limit && count >= limit;
}

/* ---- login (SPEC sections 2 and 10) -------------------------------------- */

static void client_port(const cg_conn_info *ci, char *out, size_t cap)
{
    const char *colon = strrchr(ci->client, ':');
    snprintf(out, cap, "%s", colon ? colon + 1 : "0");
}

/* A failed login: answered after a fixed delay whatever the reason, so
 * the answer does not tell whether the user exists. */
void cg_imap_login_count_failure(cg_conn *c)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    unsigned count;
    if (fail_count(ci, 1, &count) < 0) /* the next login is refused for it */
        cg_debug("conn=%llu imap: a failed login not counted",
                 (unsigned long long)ci->id);
}

void cg_imap_login_fail(cg_conn *c, imap_sess *s, const char *why, bool delay)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    cg_imap_login_count_failure(c);
    cg_info("conn=%llu imap login failed for \"%s\": %s",
            (unsigned long long)ci->id, s->login_user, why);
    if (delay) {
        s->fail_at = cg_mono_ms() + FAIL_DELAY_MS;
        s->busy = true;
        cg_imap_arm_timer(c, s);
        snprintf(s->resource, sizeof s->resource, "%s", why);
        return;
    }
    cg_imap_refuse(c, s, "NO", "AUTHENTICATIONFAILED", s->login_user, 0,
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
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    if (!u->proxy_protocol) {
        char port[8];
        client_port(ci, port, sizeof port);
        cg_buf_str(&o, "cgi1 ID (\"x-originating-ip\" ");
        cg_imap_astring(&o, ci->client_addr, strlen(ci->client_addr));
        cg_buf_str(&o, " \"x-originating-port\" ");
        cg_imap_astring(&o, port, strlen(port));
        cg_buf_str(&o, " \"x-session-id\" ");
        cg_imap_astring(&o, ci->session_id, strlen(ci->session_id));
        cg_buf_str(&o, ")\r\n");
    }
    cg_buf_str(&o, "cgi2 LOGIN ");
    cg_imap_astring(&o, user, strlen(user));
    cg_buf_add(&o, " ", 1);
    cg_imap_astring(&o, pass, passlen);
    cg_imap_send_upstream(c, &o);
    s->istage = u->proxy_protocol ? I_LOGIN : I_ID;
    s->state = S_LOGIN;
    s->busy = true;
}

/* A routed session (SPEC section 7): the remote gateway learns the
 * transaction id of this login (RFC 2971 ID, before authenticating) and
 * takes the session as NAME@local_domain with SASL EXTERNAL over the TLS
 * client certificate of this gateway. */
static void route_login(cg_conn *c, imap_sess *s, const cg_principal *p)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
    char authz[CG_NAME_MAX + 1 + 256];
    char b64[CG_B64_ENCLEN(sizeof authz)];
    int n = snprintf(authz, sizeof authz, "%s@%s", p->name, ci->config->local_domain);
    size_t bl = n > 0 && (size_t)n < sizeof authz
                    ? cg_b64_encode((const uint8_t *)authz, (size_t)n, b64, sizeof b64) : 0;
    if (!bl) {
        cg_imap_login_fail(c, s, "routed user name too long", false);
        return;
    }
    imap_txid id;
    cg_imap_txid(c, s, &id);
    cg_buf o;
    cg_buf_init(&o, OUT_MAX);
    cg_buf_str(&o, "cgi1 ID (\"cpm-transaction-id\" ");
    cg_imap_astring(&o, id.s, strlen(id.s));
    cg_buf_str(&o, ")\r\ncgi2 AUTHENTICATE EXTERNAL ");
    cg_buf_add(&o, b64, bl);
    cg_imap_send_upstream(c, &o);
    cg_info("conn=%llu imap routed to %s as %s txid=%s", (unsigned long long)ci->id,
            ci->listener->route->domain, authz, id.s);
    s->istage = I_ID;
    s->state = S_LOGIN;
    s->busy = true;
}

/* The login decision (SPEC section 10): a client the gateway identified
 * (cert, psk, address) logs in as itself only, by master user unless the
 * upstream says passthrough; otherwise the name must be a known, enabled
 * principal's mailbox and the password goes to the backend. */
void cg_imap_login(cg_conn *c, imap_sess *s, const char *authz,
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
        cg_imap_refuse(c, s, "NO", "UNAVAILABLE", NULL, 0, "policy not loaded");
        return;
    }
    if (fail_limited(ci, ci->listener->login_failures_per_minute)) {
        cg_snapshot_release(snap);
        cg_imap_login_fail(c, s, "too many failed logins from this address", true);
        return;
    }
    /* Dovecot reads "victim*gw" or an authzid as a master login: refuse
     * both, so no client can guess the master password. */
    if ((user && strchr(user, '*')) || (authz && authz[0] && user &&
                                        strcmp(authz, user) != 0)) {
        cg_snapshot_release(snap);
        cg_imap_login_fail(c, s, "master login syntax refused", true);
        return;
    }
    if (ci->principal_id) {
        p = cg_snapshot_principal_by_id(snap, ci->principal_id);
        if (!p || !p->enabled) {
            cg_snapshot_release(snap);
            cg_imap_login_fail(c, s, "principal unknown or disabled", true);
            return;
        }
        /* SPEC 7: a peer's server principal as its peer's auth says, and
         * acting for a user of its own domain only */
        if (!cg_imap_remote_login(c, s, snap, p, authz, external)) {
            cg_snapshot_release(snap);
            return;
        }
        if (!external && strcmp(user, p->mailbox) != 0) {
            cg_snapshot_release(snap);
            cg_imap_login_fail(c, s, "login names another mailbox", true);
            return;
        }
        snprintf(s->login_user, sizeof s->login_user, "%s", p->mailbox);
        snprintf(s->principal, sizeof s->principal, "%s", p->name);
        s->principal_id = p->id;
        snprintf(s->mailbox_login, sizeof s->mailbox_login, "%s", p->mailbox);
        s->method = ci->auth_method;
        if (ci->listener->route) {
            /* no chains: a peer's server principal is never routed onward */
            bool server = p->is_server;
            if (!server)
                route_login(c, s, p);
            cg_snapshot_release(snap);
            if (server)
                cg_imap_login_fail(c, s, "a server principal is not routed onward", true);
            return;
        }
        cg_snapshot_release(snap);
        if (u->imap_login == CG_IMAP_LOGIN_MASTER && u->master_user &&
            u->master_password) {
            char mu[sizeof s->mailbox_login + 1 + 256];
            if (snprintf(mu, sizeof mu, "%s*%s", s->mailbox_login, u->master_user) >=
                (int)sizeof mu) {
                /* never a cut name: it would log in as someone else */
                cg_imap_login_fail(c, s, "master login name too long", false);
                return;
            }
            backend_login(c, s, mu, u->master_password,
                          strlen(u->master_password));
            return;
        }
        if (external) {
            cg_imap_login_fail(c, s, "passthrough upstream needs a password", true);
            return;
        }
        backend_login(c, s, s->mailbox_login, pass, passlen);
        return;
    }
    if (!(ci->listener->auth & CG_AUTH_LOGIN) || external) {
        cg_snapshot_release(snap);
        cg_imap_login_fail(c, s, external ? "no TLS identity for EXTERNAL"
                                          : "login not enabled on this listener", true);
        return;
    }
    p = cg_snapshot_principal_by_mailbox(snap, user);
    if (!p || !p->enabled) {
        cg_snapshot_release(snap);
        cg_imap_login_fail(c, s, p ? "principal disabled" : "unknown user", true);
        return;
    }
    if (!cg_imap_remote_login(c, s, snap, p, NULL, false)) {
        cg_snapshot_release(snap);
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
void cg_imap_sasl_response(cg_conn *c, imap_sess *s, bool external,
                           const char *b64, size_t len)
{
    uint8_t raw[1024];
    int n = 0;
    if (len == 1 && b64[0] == '=')
        len = 0; /* an empty initial response (RFC 4959) */
    if (len) {
        n = cg_b64_decode(b64, len, raw, sizeof raw - 1);
        if (n < 0) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "invalid base64");
            return;
        }
    }
    raw[n] = '\0';
    if (external) {
        if (memchr(raw, 0, (size_t)n)) {
            cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "invalid authorization identity");
            return;
        }
        cg_imap_login(c, s, (const char *)raw, NULL, NULL, 0, true);
        return;
    }
    const uint8_t *z1 = memchr(raw, 0, (size_t)n);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, (size_t)(raw + n - z1 - 1)) : NULL;
    if (!z1 || !z2) {
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "malformed PLAIN response");
        return;
    }
    const char *authz = (const char *)raw;
    const char *user = (const char *)z1 + 1;
    const char *pass = (const char *)z2 + 1;
    cg_imap_login(c, s, authz, user, pass, (size_t)(raw + n - (const uint8_t *)pass),
                  false);
}
/* The internal login sequence: ID, LOGIN, LIST "" "". */
void cg_imap_login_response(cg_conn *c, imap_sess *s, const uint8_t *d,
                            size_t n)
{
    const cg_imaps_head *h = cg_imaps_head_of(s->scan);
    if (h->kind == CG_IMAPS_UNTAGGED) {
        if (!strcmp(h->word, "LIST"))
            cg_imap_learn_delim(s, d, n);
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
        cg_imap_bye(c, s, "backend answered a command not sent",
                    "[UNAVAILABLE] backend protocol error");
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
            s->originator[0] = s->origin_txid[0] = '\0';
            s->principal_id = 0;
            s->method = 0;
            cg_imap_login_fail(c, s, "backend refused the login", false);
            cg_imap_process_input(c, s);
            return;
        }
        cg_imap_learn_caps(s, d, n);
        s->istage = I_LIST;
        cg_imap_send_backend(c, "cgi3 LIST \"\" \"\"");
        /* The client is answered now; its next command waits for the
         * delimiter (busy until cgi3), which every mailbox name it
         * names is judged with: one round trip less before it. */
        cg_imap_send(c, s, "%s OK [CAPABILITY %s] Logged in", s->tag,
                     cg_imap_backend_caps(s));
        cg_info("conn=%llu imap login principal=%s%s%s mailbox=%s method=%s",
                (unsigned long long)cg_conn_info_of(c)->id, s->principal,
                s->originator[0] ? " originator=" : "", s->originator,
                s->mailbox_login, cg_imap_method_name(s->method));
        cg_imap_command_done(c, s, "OK");
        s->busy = true;
        return;
    }
    if (!strcmp(h->tag, "cgi3")) {
        s->istage = I_NONE;
        s->state = S_AUTH;
        s->busy = false;
        cg_imap_process_input(c, s);
    }
}

/* ---- the login commands (table rows in proxy/imap/commands.c) ------------ */

void cg_imap_cmd_starttls(cg_conn *c, imap_sess *s, const imap_judge *j,
                          const cg_imap_cmd *cmd)
{
    const cg_conn_info *ci = cg_conn_info_of(c);
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
}

void cg_imap_cmd_login(cg_conn *c, imap_sess *s, const imap_judge *j,
                       const cg_imap_cmd *cmd)
{
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
}

void cg_imap_cmd_authenticate(cg_conn *c, imap_sess *s, const imap_judge *j,
                              const cg_imap_cmd *cmd)
{
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
