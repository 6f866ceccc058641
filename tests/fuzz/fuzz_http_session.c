/* fuzz_http_session — libFuzzer target for whole HTTP connections: the
 * real gateway (proxy/http/request.c with the strict parser, path normalisation,
 * WebDAV header rewriting, request authentication of proxy/http/auth.c, the
 * content gate of content.c, the ACL on a policy snapshot built from a
 * policy database, the audit writer) driven through cg_proto_ops by a
 * script of client bytes in any split (keep-alive, pipelining), backend
 * answers, connect results, deadlines, pooled reuse and closes
 * (session_driver.h), on several listener variants (certificate identities
 * including a disabled one, Digest, SAML without configuration, plaintext
 * listeners that reject or redirect).
 *
 * Invariants on what reaches the backend, parsed back as HTTP requests:
 *  - every request carries the principal header exactly once, naming an
 *    enabled principal (never what the client sent);
 *  - its method is one the gateway knows, and the principal has every
 *    right that method needs on the (normalised) path and, for COPY and
 *    MOVE, on the Destination (a model of the policy session_driver.c
 *    writes), and for subtree operations no deny rule lies below.
 * Any violation is __builtin_trap(). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/acl.h"
#include "proxy/http/parse.h"
#include "proxy/http/path.h"
#include "proxy/http/http.h"
#include "tests/support/session_driver.h"

#define PRINCIPAL_HEADER "X-Remote-User"

static cg_upstream_cfg up_nginx = {
    .name = "nginx", .address = "127.0.0.1:8080", .connect_timeout = 5,
    .response_timeout = 30, .pool_size = 4, .principal_header = PRINCIPAL_HEADER,
};

#define LISTENER(nm, mode, auths)                                                            \
    {                                                                                        \
        .name = nm, .protocol = CG_PROTO_HTTP, .listen = "127.0.0.1:443", .tls = mode,       \
        .auth = auths, .digest_realm = (char *)"cpm", .digest_nonce_lifetime = 300,          \
        .upstream_name = (char *)"nginx", .upstream = &up_nginx,                             \
        .insecure = CG_INSECURE_REJECT, .tls12 = true, .tls13 = true,                        \
        .handshake_timeout = 10, .idle_timeout = 60, .client_timeout = 30,                   \
        .max_line = 8192, .max_headers = 100, .max_header_bytes = 16384,                     \
        .max_body = 1 << 20,                                                                 \
    }

static cg_listener_cfg l_cert = LISTENER("https-cert", CG_TLS_IMPLICIT, CG_AUTH_CERT);
static cg_listener_cfg l_digest = LISTENER("https-digest", CG_TLS_IMPLICIT, CG_AUTH_DIGEST);
static cg_listener_cfg l_both = LISTENER("https-both", CG_TLS_IMPLICIT,
                                         CG_AUTH_CERT | CG_AUTH_DIGEST | CG_AUTH_SAML);
static cg_listener_cfg l_saml = LISTENER("https-saml", CG_TLS_IMPLICIT, CG_AUTH_SAML);
static cg_listener_cfg l_reject = LISTENER("http-reject", CG_TLS_NONE, CG_AUTH_CERT);
static cg_listener_cfg l_redirect = {
    .name = "http-redirect", .protocol = CG_PROTO_HTTP, .listen = "127.0.0.1:80",
    .tls = CG_TLS_NONE, .auth = CG_AUTH_CERT, .upstream_name = (char *)"nginx",
    .upstream = &up_nginx, .insecure = CG_INSECURE_REDIRECT,
    .redirect_to = (char *)"https://gw.example.org/", .idle_timeout = 60,
    .client_timeout = 30, .max_line = 8192, .max_headers = 100, .max_header_bytes = 16384,
};

static const sd_variant variants[] = {
    { &l_cert, "alice", CG_AUTH_CERT, true, NULL },
    { &l_cert, "bob", CG_AUTH_CERT, true, NULL },
    { &l_digest, NULL, 0, true, NULL },
    { &l_both, "bob", CG_AUTH_CERT, true, NULL },
    { &l_both, NULL, 0, true, NULL },
    { &l_cert, "carol", CG_AUTH_CERT, true, NULL },
    { &l_saml, NULL, 0, true, NULL },
    { &l_reject, NULL, 0, false, NULL },
    { &l_redirect, NULL, 0, false, NULL },
};

/* ---- the checker ---------------------------------------------------------- */

enum who { W_NONE, W_ALICE, W_BOB };

#define QMAX 256

static struct {
    cg_http_parser p;     /* what the backend gets */
    bool lost;
    cg_http_parser req;   /* what the client sent */
    cg_http_parser resp;  /* what the client gets */
    bool req_lost, resp_lost;
    bool head_q[QMAX];    /* requests sent and not answered: HEAD? */
    size_t q_first, q_n;
} ck;

static void ck_body(void *ctx, const uint8_t *buf, size_t len)
{
    (void)ctx, (void)buf, (void)len;
}

static void ck_begin(void)
{
    /* the client's requests are read with the listeners' limits, so the
     * checker and the gateway agree on where each one ends */
    if (cg_http_parser_init(&ck.req, true, 16384, 100, 8192) < 0 ||
        cg_http_parser_init(&ck.resp, false, 1 << 17, 1000, 1 << 16) < 0)
        abort();
    ck.req.on_body = ck.resp.on_body = ck_body;
}

static void ck_reset(cg_http_parser *p)
{
    cg_http_parser_reset(p);
    p->on_body = ck_body;
    /* the answer to HEAD has no body whatever its head says; answers
     * come in the order of the requests */
    if (p == &ck.resp)
        p->no_body = ck.q_n && ck.head_q[ck.q_first];
}

/* Feeds one stream to a parser message by message; on_head after each
 * head, on_done after each message. false when the stream is not HTTP. */
static bool feed(cg_http_parser *p, const uint8_t *buf, size_t len, void (*on_head)(void))
{
    while (len) {
        size_t used = 0;
        const char *why = NULL;
        if (!p->head_done) {
            cg_http_feed r = cg_http_feed_head(p, buf, len, &used, &why);
            buf += used;
            len -= used;
            if (r == CG_HTTP_MORE)
                return true;
            if (r != CG_HTTP_DONE)
                return false;
            on_head();
            if (!p->head_done) /* an interim answer, already reset */
                continue;
            if (p->complete)
                ck_reset(p);
            continue;
        }
        cg_http_feed r = cg_http_feed_body(p, buf, len, &used, &why);
        buf += used;
        len -= used;
        if (r == CG_HTTP_REFUSED)
            return false;
        if (r == CG_HTTP_DONE)
            ck_reset(p);
        else if (used == 0)
            return true;
    }
    return true;
}

static void client_head(void)
{
    if (ck.q_n == QMAX) {
        ck.resp_lost = true; /* too many in flight to pair */
        return;
    }
    ck.head_q[(ck.q_first + ck.q_n++) % QMAX] = ck.req.head.method == HTTP_HEAD;
}

static void ck_from_client(const uint8_t *buf, size_t len)
{
    if (!ck.req_lost && !feed(&ck.req, buf, len, client_head))
        ck.req_lost = true; /* the gateway answers 4xx and closes */
}

static void response_head(void)
{
    int st = ck.resp.head.status;
    if (st >= 100 && st < 200) {
        ck_reset(&ck.resp); /* 100 Continue: the final answer follows */
        return;
    }
    if (ck.q_n) {
        ck.q_first = (ck.q_first + 1) % QMAX;
        ck.q_n--;
    }
}

/* Every answer the client gets is HTTP/1.1 framed so that the next one
 * starts where the client looks for it: a backend answer the gateway
 * passes on cannot smuggle a second one in. */
static void ck_to_client(const uint8_t *buf, size_t len)
{
    if (!ck.resp.head_done && ck.resp.len == 0) /* requests came since */
        ck.resp.no_body = ck.q_n && ck.head_q[ck.q_first];
    if (!ck.resp_lost && !feed(&ck.resp, buf, len, response_head))
        __builtin_trap();
}

static void ck_backend_conn(unsigned conn)
{
    (void)conn;
    if (ck.p.initialized)
        cg_http_parser_free(&ck.p);
    memset(&ck.p, 0, sizeof ck.p);
    if (cg_http_parser_init(&ck.p, true, 1 << 17, 1000, 1 << 16) < 0)
        abort();
    ck.p.on_body = ck_body;
    ck.lost = false;
}

static bool under(const char *path, const char *dir)
{
    return strncmp(path, dir, strlen(dir)) == 0; /* dir ends with '/' */
}

static bool zone(const char *path, const char *z)
{
    size_t n = strlen(z);
    return strncmp(path, z, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

#define RW_MASK (CG_RIGHT_WRITE | CG_RIGHT_CREATE | CG_RIGHT_DELETE)

/* The policy of session_driver.c for HTTP. */
static bool allowed(enum who w, unsigned right, const char *path)
{
    bool ro = !(right & RW_MASK);
    if (zone(path, "/content/secret"))
        return false;
    if (w == W_ALICE) {
        if (zone(path, "/content/alice/private"))
            return false;
        return under(path, "/content/alice/") || under(path, "/content/team/") ||
               (ro && under(path, "/content/pub/"));
    }
    if (w == W_BOB) {
        if (!ro && under(path, "/content/team/ro/"))
            return false;
        return under(path, "/content/bob/") || under(path, "/content/team/") ||
               (ro && (under(path, "/content/pub/") || under(path, "/content/alice/shared/")));
    }
    return false;
}

/* A subtree operation on path: no deny rule for the right below it. */
static bool subtree_clear(enum who w, unsigned right, const char *path)
{
    char p[CG_HTTP_PATH_MAX + 2];
    size_t n = strlen(path);
    if (n > CG_HTTP_PATH_MAX)
        return true;
    memcpy(p, path, n + 1);
    if (n == 0 || p[n - 1] != '/')
        p[n++] = '/', p[n] = '\0';
    const char *denied[3] = { "/content/secret", NULL, NULL };
    if (w == W_ALICE)
        denied[1] = "/content/alice/private";
    if (w == W_BOB && (right & RW_MASK))
        denied[1] = "/content/team/ro/";
    for (size_t i = 0; i < 3; i++)
        if (denied[i] && strlen(denied[i]) > n && strncmp(denied[i], p, n) == 0)
            return false;
    return true;
}

static void check_rights(enum who w, unsigned rights, const char *path, bool subtree)
{
    for (unsigned bit = 1; bit <= CG_RIGHT_DELETE; bit <<= 1) {
        if (!(rights & bit))
            continue;
        if (!allowed(w, bit, path))
            __builtin_trap(); /* a denied request reached the backend */
        if (subtree && !subtree_clear(w, bit, path))
            __builtin_trap(); /* a subtree operation over a denied name */
    }
}

/* The normalised path of a target or Destination; false when it has none
 * the checker can read. */
static bool norm(const char *t, size_t n, char *dec, size_t cap)
{
    if (n >= 8 && !strncasecmp(t, "https://", 8)) {
        const char *sl = memchr(t + 8, '/', n - 8);
        if (!sl)
            return false;
        n -= (size_t)(sl - t);
        t = sl;
    } else if (n >= 7 && !strncasecmp(t, "http://", 7)) {
        const char *sl = memchr(t + 7, '/', n - 7);
        if (!sl)
            return false;
        n -= (size_t)(sl - t);
        t = sl;
    }
    size_t pl, ql, dl, cl;
    const char *q, *why;
    static char can[3 * CG_HTTP_PATH_MAX + 1];
    if (cg_http_target_split(t, n, &pl, &q, &ql) < 0 || pl > CG_HTTP_PATH_MAX)
        return false;
    return cg_http_path_normalize(t, pl, dec, cap, &dl, can, sizeof can, &cl, &why) == 0;
}

static void check_head(void)
{
    const cg_http_head *h = &ck.p.head;
    size_t count = 0;
    const cg_http_header *ph = cg_http_header_get(&ck.p, PRINCIPAL_HEADER, &count);
    if (!ph || count != 1)
        __builtin_trap(); /* the principal header: once, set by the gateway */
    enum who w = W_NONE;
    if (cg_http_span_eq(&ck.p, ph->value, "alice"))
        w = W_ALICE;
    else if (cg_http_span_eq(&ck.p, ph->value, "bob"))
        w = W_BOB;
    else
        __builtin_trap(); /* not an enabled principal */

    char m[24];
    size_t ml = h->method_name.len < sizeof m - 1 ? h->method_name.len : sizeof m - 1;
    memcpy(m, cg_http_str(&ck.p, h->method_name), ml);
    m[ml] = '\0';
    static const struct {
        const char *name;
        unsigned src, dst;
        bool subtree;
    } t[] = {
        { "GET", CG_RIGHT_READ, 0, false },      { "HEAD", CG_RIGHT_READ, 0, false },
        { "PUT", CG_RIGHT_WRITE, 0, false },     { "POST", CG_RIGHT_WRITE, 0, false },
        { "PATCH", CG_RIGHT_WRITE, 0, false },   { "PROPPATCH", CG_RIGHT_WRITE, 0, false },
        { "LOCK", CG_RIGHT_WRITE, 0, false },    { "UNLOCK", CG_RIGHT_WRITE, 0, false },
        { "MKCOL", CG_RIGHT_CREATE, 0, false },  { "DELETE", CG_RIGHT_DELETE, 0, true },
        { "PROPFIND", CG_RIGHT_LIST, 0, false },
        { "COPY", CG_RIGHT_READ, CG_RIGHT_WRITE, true },
        { "MOVE", CG_RIGHT_READ | CG_RIGHT_DELETE, CG_RIGHT_WRITE, true },
        { "OPTIONS", 0, 0, false },
    };
    size_t i = 0;
    while (i < sizeof t / sizeof t[0] && strcmp(t[i].name, m) != 0)
        i++;
    if (i == sizeof t / sizeof t[0])
        __builtin_trap(); /* a method the gateway does not police */
    static char dec[CG_HTTP_PATH_MAX + 1];
    if (h->form == CG_HTTP_ASTERISK) {
        if (t[i].src)
            __builtin_trap();
        return;
    }
    if (!norm(cg_http_str(&ck.p, h->target), h->target.len, dec, sizeof dec))
        __builtin_trap(); /* the gateway forwards the canonical path */
    check_rights(w, t[i].src, dec, t[i].subtree);
    if (t[i].dst) {
        const cg_http_header *dh = cg_http_header_get(&ck.p, "destination", &count);
        if (!dh || count != 1)
            __builtin_trap();
        if (!norm(cg_http_str(&ck.p, dh->value), dh->value.len, dec, sizeof dec))
            __builtin_trap();
        check_rights(w, t[i].dst, dec, true);
    }
}

static void ck_to_backend(unsigned conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    while (len && !ck.lost) {
        size_t used = 0;
        const char *why = NULL;
        if (!ck.p.head_done) {
            cg_http_feed r = cg_http_feed_head(&ck.p, buf, len, &used, &why);
            buf += used;
            len -= used;
            if (r == CG_HTTP_MORE)
                return;
            if (r != CG_HTTP_DONE) {
                ck.lost = true; /* not a request our parser takes: stop */
                return;
            }
            check_head();
            if (ck.p.complete)
                ck_reset(&ck.p);
            continue;
        }
        cg_http_feed r = cg_http_feed_body(&ck.p, buf, len, &used, &why);
        buf += used;
        len -= used;
        if (r == CG_HTTP_REFUSED) {
            ck.lost = true;
            return;
        }
        if (r == CG_HTTP_DONE)
            ck_reset(&ck.p);
        else if (used == 0)
            return;
    }
}

static void ck_end(void)
{
    if (ck.p.initialized)
        cg_http_parser_free(&ck.p);
    cg_http_parser_free(&ck.req);
    cg_http_parser_free(&ck.resp);
    memset(&ck, 0, sizeof ck);
}

static const sd_checker checker = {
    .begin = ck_begin,
    .backend_conn = ck_backend_conn,
    .to_backend = ck_to_backend,
    .to_client = ck_to_client,
    .from_client = ck_from_client,
    .end = ck_end,
};

SD_FUZZ_TARGET(cg_http_proto, variants, checker)
