/* proxy/core/tls.c — OpenSSL contexts (listener and upstream) and the socket-free TLS
 * endpoint of tls.h. PSK identities are looked up in the current policy
 * snapshot; an unknown identity gets a dummy key so that it fails exactly
 * like a wrong key (SPEC section 2: not distinguishable). */
#include "proxy/core/tls.h"
#include "proxy/core/tls_tickets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/x509v3.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/identity.h"
#include "policy/snapshot.h"

#define PSK_ID_MAX 128
#define DUMMY_KEY_LEN 32
#define OUT_FIRST 4096 /* first ciphertext buffer: a few records */

struct cg_tls {
    SSL *ssl;
    const cg_tls_cbs *cbs;
    void *cbctx;
    uint8_t *plain;
    size_t plaincap;
    /* input: the caller's buffer during a feed, a stash for leftovers */
    const uint8_t *in;
    size_t inlen;
    uint8_t *stash;
    size_t stashlen, stashcap;
    /* output ciphertext; freed when drained */
    uint8_t *out;
    size_t outoff, outlen, outcap;
    bool established;
    bool failed;
    bool has_pin;
    uint8_t pin[32];
    char *psk_id; /* the identity found, while the handshake may use it */
};

static uint8_t g_secret[32];
static int g_exidx = -1;
static BIO_METHOD *g_bio;
static __thread char t_err[256];

static void set_err(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *detail = e ? ERR_reason_error_string(e) : NULL;
    if (!detail)
        detail = "";
    snprintf(t_err, sizeof t_err, "%s%s%s", what, detail[0] ? ": " : "", detail);
    ERR_clear_error();
}

const char *cg_tls_error(const cg_tls *t)
{
    (void)t;
    return t_err[0] ? t_err : "TLS error";
}

/* ---- the BIO over our own buffers ------------------------------------ */

static int bio_write(BIO *b, const char *data, int len)
{
    cg_tls *t = BIO_get_data(b);
    if (len <= 0)
        return 0;
    if (t->outoff && t->outoff == t->outlen)
        t->outoff = t->outlen = 0;
    if (!cg_buf_grow((void **)&t->out, &t->outcap, t->outlen + (size_t)len, OUT_FIRST, SIZE_MAX))
        return -1;
    memcpy(t->out + t->outlen, data, (size_t)len);
    t->outlen += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    cg_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->inlen == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = t->inlen < (size_t)len ? t->inlen : (size_t)len;
    memcpy(buf, t->in, n);
    t->in += n;
    t->inlen -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    cg_tls *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_WPENDING:
        return t ? (long)(t->outlen - t->outoff) : 0;
    case BIO_CTRL_PENDING:
        return t ? (long)t->inlen : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

int cg_tls_global_init(const char **error_r)
{
    if (g_bio)
        return 0;
    if (cg_random(g_secret, sizeof g_secret) < 0) {
        *error_r = "cannot get random bytes for the PSK secret";
        return CG_E_CRYPTO;
    }
    g_exidx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    g_bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cg-buf");
    if (g_exidx < 0 || !g_bio) {
        *error_r = "cannot initialise OpenSSL";
        return CG_E_TLS;
    }
    BIO_meth_set_write(g_bio, bio_write);
    BIO_meth_set_read(g_bio, bio_read);
    BIO_meth_set_ctrl(g_bio, bio_ctrl);
    BIO_meth_set_create(g_bio, bio_create);
    return 0;
}

/* ---- PSK --------------------------------------------------------------- */

/* Looks the identity up; on success copies the key into key (cap bytes)
 * and remembers the identity. An unknown identity (or a key that does not
 * fit) yields HMAC-SHA256(secret, identity): the handshake then fails at
 * the Finished/binder check exactly as with a wrong key. */
static size_t psk_key_for(cg_tls *t, const uint8_t *id, size_t idlen,
                          uint8_t *key, size_t cap)
{
    size_t out = 0;
    free(t->psk_id);
    t->psk_id = NULL;
    cg_snapshot *s = cg_snapshot_acquire();
    if (s && idlen <= PSK_ID_MAX && !memchr(id, 0, idlen)) {
        const uint8_t *k;
        size_t klen;
        if (cg_identity_by_psk(s, (const char *)id, idlen, &k, &klen) &&
            klen > 0 && klen <= cap) {
            memcpy(key, k, klen);
            t->psk_id = strndup((const char *)id, idlen);
            out = t->psk_id ? klen : 0;
        }
    }
    if (s)
        cg_snapshot_release(s);
    if (out == 0 && cap >= DUMMY_KEY_LEN) {
        unsigned int mlen = 0;
        HMAC(EVP_sha256(), g_secret, sizeof g_secret, id, idlen, key, &mlen);
        out = mlen;
    }
    return out;
}

static unsigned int psk12_cb(SSL *ssl, const char *identity, unsigned char *psk,
                             unsigned int max_psk_len)
{
    cg_tls *t = SSL_get_ex_data(ssl, g_exidx);
    if (!t || !identity)
        return 0;
    return (unsigned int)psk_key_for(t, (const uint8_t *)identity, strlen(identity), psk,
                                     max_psk_len);
}

static int psk13_cb(SSL *ssl, const unsigned char *identity, size_t idlen, SSL_SESSION **sess)
{
    static const unsigned char aes128gcm[2] = { 0x13, 0x01 };
    cg_tls *t = SSL_get_ex_data(ssl, g_exidx);
    uint8_t key[64];
    *sess = NULL;
    if (!t)
        return 0;
    size_t klen = psk_key_for(t, identity, idlen, key, sizeof key);
    const SSL_CIPHER *c = SSL_CIPHER_find(ssl, aes128gcm);
    SSL_SESSION *s = SSL_SESSION_new();
    if (!c || !s || !SSL_SESSION_set1_master_key(s, key, klen) || !SSL_SESSION_set_cipher(s, c) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        OPENSSL_cleanse(key, sizeof key);
        SSL_SESSION_free(s);
        return 0;
    }
    OPENSSL_cleanse(key, sizeof key);
    *sess = s;
    return 1;
}

const char *cg_tls_psk_identity(const cg_tls *t)
{
    /* TLS 1.3: an external PSK makes the handshake a "hit" (tickets are
     * off); TLS 1.2: the suite's key exchange is a PSK one. A PSK looked up
     * but not selected (e.g. a hash mismatch, certificate handshake
     * instead) does not count. */
    if (!t->established || !t->psk_id)
        return "";
    if (SSL_version(t->ssl) == TLS1_3_VERSION)
        return SSL_session_reused(t->ssl) ? t->psk_id : "";
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    int kx = c ? SSL_CIPHER_get_kx_nid(c) : NID_undef;
    return (kx == NID_kx_psk || kx == NID_kx_ecdhe_psk || kx == NID_kx_dhe_psk ||
            kx == NID_kx_rsa_psk)
               ? t->psk_id
               : "";
}

/* ---- ALPN (SPEC section 3: a connection for one protocol cannot be
 * replayed on another) ---------------------------------------------------- */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const char *want = arg;
    size_t wlen = strlen(want);
    (void)ssl;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == wlen && memcmp(in + i + 1, want, wlen) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
}

/* ---- contexts ---------------------------------------------------------- */

/* With a crl, every certificate of the client's chain is checked against
 * the CRL of its issuer (X509_V_FLAG_CRL_CHECK_ALL), so a revoked
 * intermediate CA takes its whole subtree with it. The leaf must have a CRL
 * (as with X509_V_FLAG_CRL_CHECK alone); a CA certificate whose issuer
 * publishes no CRL in the file is not refused for that: a file that holds
 * only the issuing CA's CRL keeps working, and any CRL added for a higher CA
 * is enforced. */
static int crl_chain_verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok && X509_STORE_CTX_get_error(x) == X509_V_ERR_UNABLE_TO_GET_CRL &&
        X509_STORE_CTX_get_error_depth(x) > 0) {
        X509_STORE_CTX_set_error(x, X509_V_OK);
        return 1;
    }
    return ok;
}

static const char DEFAULT_CIPHERS[] = "ECDHE+AESGCM:ECDHE+CHACHA20";
/* RFC 4279 / RFC 5489 / RFC 7905 AEAD suites only; kECDHEPSK would also
 * pull in the NULL suites, so they are named one by one. */
static const char PSK_CIPHERS[] =
    ":PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305"
    ":ECDHE-PSK-CHACHA20-POLY1305";

static int set_versions(SSL_CTX *ctx, bool v12, bool v13)
{
    int min = v12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    int max = v13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    return SSL_CTX_set_min_proto_version(ctx, min) && SSL_CTX_set_max_proto_version(ctx, max);
}

int cg_tls_server_ctx_new(const cg_listener_cfg *l, SSL_CTX **out, const char **error_r)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    static __thread char msg[2048];
    *out = NULL;
    if (!ctx) {
        *error_r = "cannot create an SSL context";
        return CG_E_TLS;
    }
#define FAIL(...)                                                              \
    do {                                                                       \
        unsigned long e_ = ERR_peek_last_error();                              \
        char d_[200] = "";                                                     \
        if (e_)                                                                \
            ERR_error_string_n(e_, d_, sizeof d_);                             \
        int n_ = snprintf(msg, sizeof msg, __VA_ARGS__);                       \
        if (e_ && n_ > 0 && (size_t)n_ < sizeof msg)                           \
            snprintf(msg + n_, sizeof msg - (size_t)n_, " (%s)", d_);          \
        ERR_clear_error();                                                     \
        *error_r = msg;                                                        \
        SSL_CTX_free(ctx);                                                     \
        return CG_E_TLS;                                                       \
    } while (0)

    if (!set_versions(ctx, l->tls12, l->tls13))
        FAIL("[listener %s]: tls_versions not supported", l->name);
    /* no renegotiation (CVE-2009-3555 family), no compression (CRIME), no
     * server-side session cache. Tickets (tls_tickets.c) resume only under
     * the context that issued them: a new certificate, CA or CRL is a new
     * context, and the principal is looked up in the current policy on
     * every connection, resumed or not. A PSK listener has none: its
     * identity lookup answers every PSK offered, tickets included. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    const char *terr = NULL;
    if (!(l->auth & CG_AUTH_PSK) && cg_tickets_enable(ctx, &terr) < 0)
        FAIL("[listener %s]: %s", l->name, terr);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"cpmgate", 7);

    char ciphers[1536];
    if (l->ciphers)
        snprintf(ciphers, sizeof ciphers, "%s", l->ciphers);
    else
        snprintf(ciphers, sizeof ciphers, "%s%s", DEFAULT_CIPHERS,
                 (l->auth & CG_AUTH_PSK) ? PSK_CIPHERS : "");
    if (!SSL_CTX_set_cipher_list(ctx, ciphers))
        FAIL("[listener %s]: ciphers: no usable cipher in \"%s\"", l->name, ciphers);
    /* An external PSK without a provisioned hash is bound to SHA-256 (RFC
     * 8446 section 4.2.11): with server preference, a SHA-384 suite first
     * would skip every PSK and fall back to a certificate handshake. */
    const char *suites = l->ciphersuites;
    if (!suites && (l->auth & CG_AUTH_PSK))
        suites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";
    if (suites && !SSL_CTX_set_ciphersuites(ctx, suites))
        FAIL("[listener %s]: ciphersuites: not usable: \"%s\"", l->name, suites);

    if (SSL_CTX_use_certificate_chain_file(ctx, l->certificate) != 1)
        FAIL("[listener %s]: cannot load certificate %s", l->name, l->certificate);
    if (SSL_CTX_use_PrivateKey_file(ctx, l->private_key, SSL_FILETYPE_PEM) != 1)
        FAIL("[listener %s]: cannot load private_key %s", l->name, l->private_key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        FAIL("[listener %s]: private_key does not match certificate", l->name);
    /* the chain sent is built once here as OpenSSL would at every
     * handshake (verify store, errors ignored: as far as issuers are found) */
    (void)SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR);
    ERR_clear_error();

    if (l->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, l->client_ca, NULL) != 1)
            FAIL("[listener %s]: cannot load client_ca %s", l->name, l->client_ca);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(l->client_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (l->crl) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (!lk || X509_load_crl_file(lk, l->crl, X509_FILETYPE_PEM) <= 0)
            FAIL("[listener %s]: cannot load crl %s", l->name, l->crl);
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (l->auth & CG_AUTH_CERT) {
        int mode = SSL_VERIFY_PEER;
        /* require a certificate only when nothing else could identify */
        if ((l->auth & ~(unsigned)CG_AUTH_CERT) == 0)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, l->crl ? crl_chain_verify_cb : NULL);
    }
    if (l->auth & CG_AUTH_PSK) {
        SSL_CTX_set_psk_server_callback(ctx, psk12_cb);
        SSL_CTX_set_psk_find_session_callback(ctx, psk13_cb);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb,
                               (void *)(l->protocol == CG_PROTO_IMAP ? "imap" : "http/1.1"));
    *out = ctx;
    return 0;
}

int cg_tls_client_ctx_new(const cg_upstream_cfg *u, SSL_CTX **out, const char **error_r)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    static __thread char msg[2048];
    *out = NULL;
    if (!ctx) {
        *error_r = "cannot create an SSL context";
        return CG_E_TLS;
    }
    set_versions(ctx, true, true);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (u->ca) {
        if (SSL_CTX_load_verify_locations(ctx, u->ca, NULL) != 1)
            FAIL("[upstream %s]: cannot load ca %s", u->name, u->ca);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else if (!u->has_pin) {
        SSL_CTX_set_default_verify_paths(ctx);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* the pin decides */
    }
    if (u->certificate) {
        if (SSL_CTX_use_certificate_chain_file(ctx, u->certificate) != 1)
            FAIL("[upstream %s]: cannot load certificate %s", u->name, u->certificate);
        if (!u->private_key ||
            SSL_CTX_use_PrivateKey_file(ctx, u->private_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            FAIL("[upstream %s]: cannot load private_key", u->name);
    }
#undef FAIL
    *out = ctx;
    return 0;
}

int cg_tls_ctx_not_after(SSL_CTX *ctx, int64_t *out)
{
    X509 *x = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
    const ASN1_TIME *t = x ? X509_get0_notAfter(x) : NULL;
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return CG_E_NOTFOUND;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* ---- the endpoint -------------------------------------------------------- */

cg_tls *cg_tls_new(SSL_CTX *ctx, bool server, const char *host, const uint8_t *pin,
                   const cg_tls_cbs *cbs, void *cbctx, uint8_t *plainbuf, size_t plaincap)
{
    cg_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx);
    BIO *b = BIO_new(g_bio);
    if (!t->ssl || !b) {
        BIO_free(b);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);
    SSL_set_ex_data(t->ssl, g_exidx, t);
    t->cbs = cbs;
    t->cbctx = cbctx;
    t->plain = plainbuf;
    t->plaincap = plaincap;
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (host && *host) {
            unsigned char tmp[16];
            bool literal = inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
            if (!literal)
                SSL_set_tlsext_host_name(t->ssl, host);
            if (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) {
                if (literal)
                    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
                else
                    SSL_set1_host(t->ssl, host);
            }
        }
        if (pin) {
            memcpy(t->pin, pin, 32);
            t->has_pin = true;
        }
    }
    return t;
}

void cg_tls_free(cg_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t->psk_id);
    free(t->stash);
    free(t->out);
    free(t);
}

SSL *cg_tls_ssl(cg_tls *t)
{
    return t->ssl;
}

bool cg_tls_established(const cg_tls *t)
{
    return t->established;
}

size_t cg_tls_out(cg_tls *t, const uint8_t **p)
{
    *p = t->out + t->outoff;
    return t->outlen - t->outoff;
}

void cg_tls_out_consume(cg_tls *t, size_t n)
{
    t->outoff += n;
    if (t->outoff >= t->outlen) {
        /* drained: give the memory back (idle connections stay small) */
        free(t->out);
        t->out = NULL;
        t->outoff = t->outlen = t->outcap = 0;
    }
}

static bool pin_ok(cg_tls *t)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    unsigned char *der = NULL;
    uint8_t md[32];
    if (!peer)
        return false;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(peer), &der);
    if (n <= 0)
        return false;
    SHA256(der, (size_t)n, md);
    OPENSSL_free(der);
    return cg_ct_equal(md, t->pin, 32);
}

static int fail(cg_tls *t, const char *what)
{
    set_err(what);
    t->failed = true;
    return CG_E_TLS;
}

/* Drives the handshake, then SSL_read until it wants more: 0 with *flow,
 * or CG_E_TLS. */
static int drive(cg_tls *t, enum cg_tls_flow *flow)
{
    *flow = CG_TLS_CONTINUE;
    if (t->failed)
        return CG_E_TLS;
    if (!t->established) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            long v = SSL_get_verify_result(t->ssl);
            if (v != X509_V_OK) {
                char w[160];
                snprintf(w, sizeof w, "handshake failed: certificate: %s",
                         X509_verify_cert_error_string(v));
                return fail(t, w);
            }
            return fail(t, "handshake failed");
        }
        if (t->has_pin && !pin_ok(t)) {
            SSL_shutdown(t->ssl);
            return fail(t, "upstream certificate does not match pin_sha256");
        }
        t->established = true;
        if (t->cbs && t->cbs->on_handshake && t->cbs->on_handshake(t->cbctx) == CG_TLS_STOP) {
            *flow = CG_TLS_STOP;
            return 0;
        }
    }
    for (;;) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, t->plain, t->plaincap, &n);
        if (r == 1) {
            if (t->cbs && t->cbs->on_data && t->cbs->on_data(t->cbctx, t->plain, n) == CG_TLS_STOP) {
                *flow = CG_TLS_STOP;
                return 0;
            }
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            *flow = CG_TLS_EOF;
            return 0;
        }
        return fail(t, "TLS read failed");
    }
}

int cg_tls_start(cg_tls *t)
{
    enum cg_tls_flow flow; /* a client's first flight: nothing to read yet */
    return drive(t, &flow);
}

int cg_tls_feed(cg_tls *t, const uint8_t *in, size_t len, enum cg_tls_flow *flow)
{
    int rc;
    if (t->stashlen) {
        if (!cg_buf_grow((void **)&t->stash, &t->stashcap, t->stashlen + len, len, SIZE_MAX))
            return CG_E_NOMEM;
        memcpy(t->stash + t->stashlen, in, len);
        t->stashlen += len;
        t->in = t->stash;
        t->inlen = t->stashlen;
        rc = drive(t, flow);
        /* keep what is left at the front of the stash */
        memmove(t->stash, t->in, t->inlen);
        t->stashlen = t->inlen;
        if (!t->stashlen) {
            free(t->stash);
            t->stash = NULL;
            t->stashcap = 0;
        }
    } else {
        t->in = in;
        t->inlen = len;
        rc = drive(t, flow);
        if (t->inlen) {
            /* only when processing stopped early (a callback refused) */
            if (cg_buf_grow((void **)&t->stash, &t->stashcap, t->inlen, t->inlen, SIZE_MAX)) {
                memcpy(t->stash, t->in, t->inlen);
                t->stashlen = t->inlen;
            } else {
                rc = CG_E_NOMEM;
            }
        }
    }
    t->in = NULL;
    t->inlen = 0;
    return rc;
}

int cg_tls_write(cg_tls *t, const void *buf, size_t len)
{
    size_t done = 0;
    if (t->failed || !t->established)
        return CG_E_TLS;
    ERR_clear_error();
    if (len && SSL_write_ex(t->ssl, buf, len, &done) != 1)
        return fail(t, "TLS write failed");
    return 0;
}

void cg_tls_shutdown(cg_tls *t)
{
    if (t->established && !t->failed) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

/* ---- peer certificate ------------------------------------------------------ */

/* Adds prefix+data to names; CG_E_LIMIT when it does not fit. A name that
 * could never be registered (empty, or with an embedded NUL, which would
 * let "a@x\0.evil" pose as "a@x") is skipped: it identifies no one. */
static int add_name(const char *prefix, const unsigned char *data, int len, char *buf,
                    size_t cap, size_t *used, const char **names, size_t maxn, size_t *n)
{
    size_t pl = strlen(prefix);
    if (len <= 0 || memchr(data, 0, (size_t)len))
        return 0;
    if (*n >= maxn || *used + pl + (size_t)len + 1 > cap)
        return CG_E_LIMIT;
    char *p = buf + *used;
    memcpy(p, prefix, pl);
    memcpy(p + pl, data, (size_t)len);
    p[pl + (size_t)len] = '\0';
    names[(*n)++] = p;
    *used += pl + (size_t)len + 1;
    return 0;
}

int cg_tls_peer_cert(cg_tls *t, uint8_t fpr[32], char *namebuf, size_t namecap,
                     const char **names, size_t maxnames)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    unsigned int mdlen = 0;
    size_t used = 0, n = 0;
    bool full = false;
    if (!cert)
        return CG_E_NOTFOUND;
    if (X509_digest(cert, EVP_sha256(), fpr, &mdlen) != 1 || mdlen != 32)
        return CG_E_CRYPTO;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    /* the subject CN names the holder only when there is no subjectAltName
     * at all (RFC 6125 6.4.4): a certificate whose issuer put the identity
     * in SANs is not also whoever its CN says */
    bool has_san = gens && sk_GENERAL_NAME_num(gens) > 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const char *prefix = g->type == GEN_EMAIL ? "email:"
                             : g->type == GEN_DNS ? "dns:"
                             : g->type == GEN_URI ? "uri:"
                                                  : NULL;
        if (!prefix)
            continue;
        const ASN1_IA5STRING *s = g->d.ia5;
        if (add_name(prefix, ASN1_STRING_get0_data(s), ASN1_STRING_length(s), namebuf, namecap,
                     &used, names, maxnames, &n) < 0)
            full = true;
    }
    GENERAL_NAMES_free(gens);
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = has_san ? -1 : X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
        if (len > 0 && add_name("cn:", utf8, len, namebuf, namecap, &used, names, maxnames, &n) < 0)
            full = true;
        OPENSSL_free(utf8);
    }
    /* every name counts (names of two principals identify no one): a
     * certificate with more names than fit identifies by fingerprint only */
    if (full)
        n = 0;
    return (int)n;
}
