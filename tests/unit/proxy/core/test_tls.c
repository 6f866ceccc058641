/* tests/unit/proxy/core/test_tls.c — proxy/core/tls.c without sockets: a server endpoint made by our
 * code and a plain OpenSSL client pass bytes through memory. Handshake and
 * data both ways, ALPN checked when sent, PSK (TLS 1.2 and 1.3) from a real
 * policy snapshot: a wrong key and an unknown identity end in the same
 * alert, CBC PSK suites are not offered by default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/cg_error.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "proxy/core/tls.h"

static char dir[256], cert_path[300], key_path[300], db_path[300];
static uint8_t plainbuf[16 * 1024 + 256];
static const uint8_t bob_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                     17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

/* ---- fixtures: a self-signed server certificate and a policy database -- */

static void make_cert(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void make_policy(void)
{
    cg_pstore *ps = NULL;
    const char *err = NULL;
    assert_int_equal(cg_pstore_open(db_path, CG_PSTORE_CREATE, &ps, &err), 0);
    assert_int_equal(cg_pstore_principal_add(ps, "bob", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_cred_add(ps, "bob", "psk", "bob-phone", bob_key, sizeof bob_key,
                                        NULL, NULL, NULL, &err),
                     0);
    cg_snapshot *s = NULL;
    assert_int_equal(cg_snapshot_build(ps, &s, &err), 0);
    cg_snapshot_publish(s);
    cg_pstore_close(ps);
}

static int setup(void **state)
{
    const char *err = NULL;
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/cg-test-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cert_path, sizeof cert_path, "%s/server.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/server.key", dir);
    snprintf(db_path, sizeof db_path, "%s/policy.db", dir);
    make_cert();
    make_policy();
    assert_int_equal(cg_tls_global_init(&err), 0);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static SSL_CTX *server_ctx(unsigned auth, const char *ciphers)
{
    cg_listener_cfg l;
    memset(&l, 0, sizeof l);
    l.name = "test";
    l.protocol = CG_PROTO_IMAP;
    l.tls = CG_TLS_IMPLICIT;
    l.certificate = cert_path;
    l.private_key = key_path;
    l.auth = auth;
    l.tls12 = l.tls13 = true;
    l.ciphers = (char *)ciphers;
    SSL_CTX *ctx = NULL;
    const char *err = NULL;
    assert_int_equal(cg_tls_server_ctx_new(&l, &ctx, &err), 0);
    return ctx;
}

/* ---- a client and the pump between it and our endpoint ------------------ */

typedef struct peer {
    cg_tls *srv;
    SSL *cli;
    BIO *cin, *cout;   /* client's read and write memory BIOs */
    int handshakes;
    char got[256];     /* plaintext the server received */
    size_t gotlen;
    int alert;         /* alert the client received, -1 none */
    const char *psk_id;
    const uint8_t *psk_key;
    size_t psk_len;
} peer;

static peer *g_peer;

static enum cg_tls_flow on_hs(void *ctx)
{
    ((peer *)ctx)->handshakes++;
    return CG_TLS_CONTINUE;
}

static enum cg_tls_flow on_data(void *ctx, const uint8_t *b, size_t n)
{
    peer *p = ctx;
    if (p->gotlen + n < sizeof p->got) {
        memcpy(p->got + p->gotlen, b, n);
        p->gotlen += n;
    }
    return CG_TLS_CONTINUE;
}

static const cg_tls_cbs cbs = { on_hs, on_data };

static void info_cb(const SSL *ssl, int where, int ret)
{
    (void)ssl;
    if ((where & SSL_CB_READ_ALERT) && g_peer && g_peer->alert < 0)
        g_peer->alert = ret & 0xff;
}

static unsigned int cli_psk12(SSL *ssl, const char *hint, char *id, unsigned int max_id,
                              unsigned char *psk, unsigned int max_psk)
{
    (void)ssl;
    (void)hint;
    snprintf(id, max_id, "%s", g_peer->psk_id);
    memcpy(psk, g_peer->psk_key, g_peer->psk_len < max_psk ? g_peer->psk_len : max_psk);
    return (unsigned int)g_peer->psk_len;
}

static int cli_psk13(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                     SSL_SESSION **sess)
{
    static const unsigned char aes128[2] = { 0x13, 0x01 };
    (void)md;
    SSL_SESSION *s = SSL_SESSION_new();
    SSL_SESSION_set1_master_key(s, g_peer->psk_key, g_peer->psk_len);
    SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, aes128));
    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
    *id = (const unsigned char *)g_peer->psk_id;
    *idlen = strlen(g_peer->psk_id);
    *sess = s;
    return 1;
}

static void peer_init(peer *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
    memset(p, 0, sizeof *p);
    p->alert = -1;
    p->srv = cg_tls_new(sctx, true, NULL, NULL, &cbs, p, plainbuf, sizeof plainbuf);
    assert_non_null(p->srv);
    p->cli = SSL_new(cctx);
    p->cin = BIO_new(BIO_s_mem());
    p->cout = BIO_new(BIO_s_mem());
    SSL_set_bio(p->cli, p->cin, p->cout);
    SSL_set_connect_state(p->cli);
    SSL_set_info_callback(p->cli, info_cb);
    g_peer = p;
}

static void peer_free(peer *p)
{
    SSL_free(p->cli);
    cg_tls_free(p->srv);
    g_peer = NULL;
}

/* Moves bytes both ways until nothing moves; returns the last feed code. */
static int pump(peer *p)
{
    int rc = 0;
    for (int round = 0; round < 50; round++) {
        bool moved = false;
        if (!SSL_is_init_finished(p->cli))
            SSL_do_handshake(p->cli);
        else {
            char tmp[256];
            size_t n;
            while (SSL_read_ex(p->cli, tmp, sizeof tmp, &n) == 1)
                ;
        }
        char buf[16384];
        int n;
        while ((n = BIO_read(p->cout, buf, sizeof buf)) > 0) {
            enum cg_tls_flow flow;
            rc = cg_tls_feed(p->srv, (const uint8_t *)buf, (size_t)n, &flow);
            moved = true;
        }
        const uint8_t *o;
        size_t l;
        while ((l = cg_tls_out(p->srv, &o)) > 0) {
            BIO_write(p->cin, o, (int)l);
            cg_tls_out_consume(p->srv, l);
            moved = true;
        }
        if (!moved)
            break;
    }
    return rc;
}

static SSL_CTX *client_ctx(int version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (version) {
        SSL_CTX_set_min_proto_version(c, version);
        SSL_CTX_set_max_proto_version(c, version);
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return c;
}

/* ---- tests ------------------------------------------------------------- */

static void test_handshake_and_data_both_ways(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(CG_AUTH_LOGIN, NULL), *c = client_ctx(0);
    peer p;
    peer_init(&p, s, c);
    pump(&p);
    assert_true(cg_tls_established(p.srv));
    assert_int_equal(p.handshakes, 1);
    assert_true(SSL_is_init_finished(p.cli));
    assert_string_equal(cg_tls_psk_identity(p.srv), "");

    size_t w;
    assert_int_equal(SSL_write_ex(p.cli, "a1 NOOP\r\n", 9, &w), 1);
    pump(&p);
    assert_int_equal(p.gotlen, 9);
    assert_memory_equal(p.got, "a1 NOOP\r\n", 9);

    assert_int_equal(cg_tls_write(p.srv, "* OK\r\n", 6), 0);
    const uint8_t *o;
    size_t l = cg_tls_out(p.srv, &o);
    assert_true(l > 6); /* a record: header, ciphertext, tag */
    BIO_write(p.cin, o, (int)l);
    cg_tls_out_consume(p.srv, l);
    char buf[32];
    size_t n = 0;
    assert_int_equal(SSL_read_ex(p.cli, buf, sizeof buf, &n), 1);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "* OK\r\n", 6);

    /* close_notify from the client is an orderly EOF */
    SSL_shutdown(p.cli);
    char tmp[256];
    int k = BIO_read(p.cout, tmp, sizeof tmp);
    assert_true(k > 0);
    enum cg_tls_flow flow = CG_TLS_CONTINUE;
    assert_int_equal(cg_tls_feed(p.srv, (uint8_t *)tmp, (size_t)k, &flow), 0);
    assert_int_equal(flow, CG_TLS_EOF);
    peer_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

/* Bytes fed one at a time still make a handshake (records split across
 * reads are the normal case on a socket). */
static void test_handshake_fed_byte_by_byte(void **state)
{
    (void)state;
    SSL_CTX *s = server_ctx(CG_AUTH_LOGIN, NULL), *c = client_ctx(0);
    peer p;
    peer_init(&p, s, c);
    for (int round = 0; round < 20 && !cg_tls_established(p.srv); round++) {
        SSL_do_handshake(p.cli);
        char b;
        enum cg_tls_flow flow;
        while (BIO_read(p.cout, &b, 1) == 1)
            assert_int_equal(cg_tls_feed(p.srv, (uint8_t *)&b, 1, &flow), 0);
        const uint8_t *o;
        size_t l;
        while ((l = cg_tls_out(p.srv, &o)) > 0) {
            BIO_write(p.cin, o, (int)l);
            cg_tls_out_consume(p.srv, l);
        }
    }
    assert_true(cg_tls_established(p.srv));
    peer_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

static void alpn_case(const char *offer, size_t offerlen, bool ok)
{
    SSL_CTX *s = server_ctx(CG_AUTH_LOGIN, NULL), *c = client_ctx(0);
    if (offer)
        SSL_CTX_set_alpn_protos(c, (const unsigned char *)offer, (unsigned)offerlen);
    peer p;
    peer_init(&p, s, c);
    int rc = pump(&p);
    if (ok) {
        assert_true(cg_tls_established(p.srv));
    } else {
        assert_false(cg_tls_established(p.srv));
        assert_int_equal(rc, CG_E_TLS);
        assert_int_equal(p.alert, SSL_AD_NO_APPLICATION_PROTOCOL);
    }
    peer_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

static void test_alpn(void **state)
{
    (void)state;
    alpn_case(NULL, 0, true);                           /* not sent: fine */
    alpn_case("\x04imap", 5, true);                     /* ours */
    alpn_case("\x02h2\x04imap", 8, true);               /* among others */
    alpn_case("\x08http/1.1", 9, false);                /* another protocol */
    alpn_case("\x02h2\x08http/1.1", 12, false);
}

/* Runs a PSK handshake; returns the alert the client got (-1: none). */
static int psk_case(int version, const char *cipher, const char *id, const uint8_t *key,
                    size_t keylen, bool *established, char *used_id, size_t cap)
{
    SSL_CTX *s = server_ctx(CG_AUTH_PSK, NULL), *c = client_ctx(version);
    if (version == TLS1_2_VERSION) {
        SSL_CTX_set_cipher_list(c, cipher);
        SSL_CTX_set_psk_client_callback(c, cli_psk12);
    } else {
        SSL_CTX_set_psk_use_session_callback(c, cli_psk13);
    }
    peer p;
    peer_init(&p, s, c);
    p.psk_id = id;
    p.psk_key = key;
    p.psk_len = keylen;
    pump(&p);
    *established = cg_tls_established(p.srv);
    snprintf(used_id, cap, "%s", cg_tls_psk_identity(p.srv));
    int alert = p.alert;
    peer_free(&p);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
    return alert;
}

static void psk_version(int version, const char *cipher)
{
    uint8_t wrong[32];
    bool est;
    char used[160];
    memcpy(wrong, bob_key, sizeof wrong);
    wrong[0] ^= 0xff;

    int a = psk_case(version, cipher, "bob-phone", bob_key, sizeof bob_key, &est, used, sizeof used);
    assert_true(est);
    assert_int_equal(a, -1);
    assert_string_equal(used, "bob-phone");

    int aw = psk_case(version, cipher, "bob-phone", wrong, sizeof wrong, &est, used, sizeof used);
    assert_false(est);
    int au = psk_case(version, cipher, "nobody", bob_key, sizeof bob_key, &est, used, sizeof used);
    assert_false(est);
    assert_true(aw >= 0);
    /* the point of the dummy key: nothing tells the two apart */
    assert_int_equal(aw, au);
    assert_int_not_equal(au, SSL_AD_UNKNOWN_PSK_IDENTITY);
}

static void test_psk_tls12_wrong_key_same_as_unknown_identity(void **state)
{
    (void)state;
    psk_version(TLS1_2_VERSION, "PSK-AES128-GCM-SHA256");
    psk_version(TLS1_2_VERSION, "ECDHE-PSK-CHACHA20-POLY1305");
}

static void test_psk_tls13_wrong_key_same_as_unknown_identity(void **state)
{
    (void)state;
    psk_version(TLS1_3_VERSION, NULL);
}

static void test_psk_cbc_not_offered_by_default(void **state)
{
    bool est;
    char used[160];
    (void)state;
    psk_case(TLS1_2_VERSION, "ECDHE-PSK-AES128-CBC-SHA256", "bob-phone", bob_key, sizeof bob_key,
             &est, used, sizeof used);
    assert_false(est);
    psk_case(TLS1_2_VERSION, "PSK-AES128-CBC-SHA256", "bob-phone", bob_key, sizeof bob_key, &est,
             used, sizeof used);
    assert_false(est);
}

/* A suite list naming no usable cipher is refused at load, not at the
 * first client. */
static void test_bad_cipher_list_refused(void **state)
{
    (void)state;
    cg_listener_cfg l;
    memset(&l, 0, sizeof l);
    l.name = "bad";
    l.protocol = CG_PROTO_HTTP;
    l.certificate = cert_path;
    l.private_key = key_path;
    l.tls12 = l.tls13 = true;
    l.ciphers = "NO-SUCH-CIPHER";
    SSL_CTX *ctx = NULL;
    const char *err = NULL;
    assert_int_equal(cg_tls_server_ctx_new(&l, &ctx, &err), CG_E_TLS);
    assert_null(ctx);
    assert_non_null(strstr(err, "ciphers"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data_both_ways),
        cmocka_unit_test(test_handshake_fed_byte_by_byte),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_psk_tls12_wrong_key_same_as_unknown_identity),
        cmocka_unit_test(test_psk_tls13_wrong_key_same_as_unknown_identity),
        cmocka_unit_test(test_psk_cbc_not_offered_by_default),
        cmocka_unit_test(test_bad_cipher_list_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
