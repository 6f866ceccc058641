/* tests/unit/proxy/core/test_certwatch.c — proxy/core/certwatch.c and
 * cg_runtime_renew (proxy/core/worker.c): a renewed runtime shares the
 * configuration and carries the new certificate, a file that does not load
 * or an expired certificate is refused; on a real uv loop, a certificate
 * replaced by rename is published without a signal, and a bad one leaves
 * the runtime in force, counted and reported as the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/cg_error.h"
#include "proxy/core/certwatch.h"
#include "proxy/core/counters.h"
#include "proxy/core/tls.h"
#include "proxy/core/worker.h"

static char dir[256], cert_path[300], key_path[300], conf[300];

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* A self-signed P-256 certificate valid until now + lifetime seconds
 * (negative: expired), written by rename over certificate and key. */
static void put_cert(long lifetime)
{
    char tmp[320];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL) ^ rand());
    X509_gmtime_adj(X509_getm_notBefore(x), -2 * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), lifetime);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(tmp, sizeof tmp, "%s.new", key_path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    assert_int_equal(rename(tmp, key_path), 0);
    snprintf(tmp, sizeof tmp, "%s.new", cert_path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    assert_int_equal(rename(tmp, cert_path), 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void put_text(const char *path, const char *text)
{
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static int64_t not_after_of(const cg_runtime *rt)
{
    int64_t na = 0;
    assert_int_equal(cg_tls_ctx_not_after(rt->lctx[0], &na), 0);
    return na;
}

static int setup(void **state)
{
    (void)state;
    char audit_key[300], err[512];
    const char *why = NULL;
    snprintf(dir, sizeof dir, "/tmp/cg-test-certwatch-XXXXXX");
    assert_non_null(mkdtemp(dir));
    path_in(cert_path, sizeof cert_path, "server.pem");
    path_in(key_path, sizeof key_path, "server.key");
    path_in(audit_key, sizeof audit_key, "audit.key");
    path_in(conf, sizeof conf, "cpmgate.conf");
    put_text(audit_key, "x\n");
    put_text(conf, "[gateway]\nworkers = 1\naudit_key = audit.key\n"
                   "[listener web]\nprotocol = http\nlisten = 127.0.0.1:1\n"
                   "certificate = server.pem\nprivate_key = server.key\n"
                   "auth = address\nserver_names = localhost\nupstream = n\n"
                   "[upstream n]\naddress = 127.0.0.1:2\n");
    put_cert(86400);
    cg_config *cfg = NULL;
    cg_runtime *rt = NULL;
    assert_int_equal(cg_tls_global_init(&why), 0);
    assert_int_equal(cg_config_load(conf, &cfg, err, sizeof err), 0);
    assert_int_equal(cg_runtime_new(cfg, &rt, &why), 0);
    /* no worker threads: only the runtime in force is published */
    assert_int_equal(cg_workers_create(rt, 0, &why), 0);
    cg_runtime_release(rt);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    cg_workers_join();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_renew_shares_the_configuration_and_loads_the_new_file(void **state)
{
    (void)state;
    const char *why = NULL;
    cg_runtime *cur = cg_runtime_acquire(), *rt = NULL;
    put_cert(30 * 86400L);
    assert_int_equal(cg_runtime_renew(cur, &rt, &why), 0);
    assert_ptr_equal(rt->cfg, cur->cfg);
    assert_true(not_after_of(rt) > not_after_of(cur) + 20 * 86400L);
    /* the configuration outlives the runtime it was loaded with */
    cg_runtime_release(cur);
    assert_string_equal(rt->cfg->listeners[0].name, "web");
    cg_runtime_release(rt);
}

static void test_renew_refuses_what_does_not_load(void **state)
{
    (void)state;
    const char *why = NULL;
    cg_runtime *cur = cg_runtime_acquire(), *rt = NULL;
    put_cert(-3600);
    assert_int_equal(cg_runtime_renew(cur, &rt, &why), CG_E_TLS);
    assert_null(rt);
    assert_non_null(strstr(why, "has expired"));
    put_text(cert_path, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    assert_true(cg_runtime_renew(cur, &rt, &why) < 0);
    assert_non_null(strstr(why, "cannot load certificate"));
    cg_runtime_release(cur);
    put_cert(86400);
}

static void test_expired_certificate_in_force_does_not_block_a_renewal(void **state)
{
    (void)state;
    char err[512];
    const char *why = NULL;
    cg_config *cfg = NULL;
    cg_runtime *cur = NULL, *rt = NULL;
    put_cert(-3600); /* a start takes it (the expiry is for the operator to see) */
    assert_int_equal(cg_config_load(conf, &cfg, err, sizeof err), 0);
    assert_int_equal(cg_runtime_new(cfg, &cur, &why), 0);
    /* another file changed: the expired certificate is the one in force */
    assert_int_equal(cg_runtime_renew(cur, &rt, &why), 0);
    cg_runtime_release(rt);
    cg_runtime_release(cur);
    put_cert(86400);
}

/* Runs the loop until a runtime is published (or, with failure, until a
 * failure is counted), for at most 5 s. */
static uv_loop_t loop;
static uint64_t want_gen, want_failures;
static bool want_failure;
static uv_timer_t tick;
static int ticks;

static void tick_cb(uv_timer_t *t)
{
    cg_runtime *rt = cg_runtime_acquire();
    bool moved = want_failure ? cg_metric_get(CG_M_TLS_RELOAD_FAILURES) != want_failures
                              : rt->generation != want_gen;
    cg_runtime_release(rt);
    if (moved || ++ticks > 100)
        uv_stop(t->loop);
}

static void run_until(bool failure)
{
    cg_runtime *rt = cg_runtime_acquire();
    want_gen = rt->generation;
    want_failures = cg_metric_get(CG_M_TLS_RELOAD_FAILURES);
    want_failure = failure;
    cg_runtime_release(rt);
    ticks = 0;
    uv_timer_start(&tick, tick_cb, 50, 50);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_timer_stop(&tick);
}

static void test_watcher_follows_a_rename_and_keeps_the_runtime_on_failure(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &tick);
    assert_int_equal(cg_certwatch_start(&loop), 0);
    assert_null(cg_certwatch_problem());

    cg_runtime *before = cg_runtime_acquire();
    put_cert(60 * 86400L);
    run_until(false);
    cg_runtime *after = cg_runtime_acquire();
    assert_true(after->generation > before->generation);
    assert_true(not_after_of(after) > not_after_of(before) + 50 * 86400L);
    assert_null(cg_certwatch_problem());
    cg_runtime_release(before);

    uint64_t failures = cg_metric_get(CG_M_TLS_RELOAD_FAILURES);
    put_text(key_path, "not a key\n");
    run_until(true);
    cg_runtime *still = cg_runtime_acquire();
    assert_int_equal(cg_metric_get(CG_M_TLS_RELOAD_FAILURES), failures + 1);
    assert_ptr_equal(still, after);
    assert_non_null(cg_certwatch_problem());
    assert_non_null(strstr(cg_certwatch_problem(), "private_key"));
    cg_runtime_release(still);
    cg_runtime_release(after);

    put_cert(86400);
    run_until(false);
    assert_null(cg_certwatch_problem());

    cg_certwatch_stop();
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renew_shares_the_configuration_and_loads_the_new_file),
        cmocka_unit_test(test_renew_refuses_what_does_not_load),
        cmocka_unit_test(test_expired_certificate_in_force_does_not_block_a_renewal),
        cmocka_unit_test(test_watcher_follows_a_rename_and_keeps_the_runtime_on_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
