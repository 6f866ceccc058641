/* tests/unit/store/test_policy_pg.c — the PostgreSQL side of the policy
 * store that needs no server: which policy_db values name PostgreSQL,
 * ?N placeholders written as $N (not inside quoted literals), and the
 * password taken out of every form of a connection string before a
 * message may name it; a server that is not there is a clean error that
 * names the database without its password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "store/policy_store.h"
#include "store/policy_store_impl.h"

static void test_which_values_name_postgresql(void **state)
{
    (void)state;
    assert_true(cg_pstore_url("postgresql://gw@db.example/policy"));
    assert_true(cg_pstore_url("postgres://db/policy"));
    assert_true(cg_pstore_url("host=db dbname=policy"));
    assert_false(cg_pstore_url("policy.db"));
    assert_false(cg_pstore_url("/var/lib/cpmgate/policy.db"));
    assert_false(cg_pstore_url(NULL));
}

static void test_placeholders_become_dollars(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "SELECT id FROM principal WHERE name = ?1", "SELECT id FROM principal WHERE name = $1" },
        { "VALUES (?1, ?2, ?10)", "VALUES ($1, $2, $10)" },
        { "WHERE ?1 IS NULL OR name = ?1", "WHERE $1 IS NULL OR name = $1" },
        { "WHERE a = '?1' AND b = ?2", "WHERE a = '?1' AND b = $2" },
        { "SELECT '?' || ?1", "SELECT '?' || $1" },
        { "no placeholders?", "no placeholders?" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        cg_ps_dollar(cases[i].in, out);
        assert_string_equal(out, cases[i].out);
    }
}

static void test_passwords_never_reach_a_message(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "postgresql://gw:s3cret@db.example:5432/policy",
          "postgresql://gw:xxx@db.example:5432/policy" },
        { "postgres://gw:p%40ss@db/policy?sslmode=require",
          "postgres://gw:xxx@db/policy?sslmode=require" },
        { "postgresql://gw@db/policy?password=s3cret&sslmode=require",
          "postgresql://gw@db/policy?password=xxx&sslmode=require" },
        { "postgresql://db/policy?sslmode=require&password=s3cret",
          "postgresql://db/policy?sslmode=require&password=xxx" },
        { "host=db dbname=policy password=s3cret user=gw",
          "host=db dbname=policy password=xxx user=gw" },
        { "host=db password = 's3 cr\\'et' user=gw", "host=db password = xxx user=gw" },
        { "postgresql://gw@/policy?host=/run/pg", "postgresql://gw@/policy?host=/run/pg" },
        { "host=db passwordless=1", "host=db passwordless=1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        cg_pstore_redact(cases[i].in, out, sizeof out);
        assert_string_equal(out, cases[i].out);
    }
    /* a buffer too small cuts, never overflows */
    char small[12];
    cg_pstore_redact("postgresql://gw:s3cret@db/policy", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_null(strstr(small, "s3cret"));
}

static void test_a_server_that_is_not_there(void **state)
{
    (void)state;
    cg_pstore *s = (cg_pstore *)1;
    const char *err = NULL;
    int rc = cg_pstore_open_auth("postgresql://gw:s3cret@127.0.0.1:1/policy?connect_timeout=2",
                                 NULL, CG_PSTORE_READONLY, &s, &err);
    assert_true(rc < 0);
    assert_null(s);
    assert_non_null(err);
    assert_null(strstr(err, "s3cret"));
    assert_non_null(strstr(err, "gw:xxx@127.0.0.1:1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_values_name_postgresql),
        cmocka_unit_test(test_placeholders_become_dollars),
        cmocka_unit_test(test_passwords_never_reach_a_message),
        cmocka_unit_test(test_a_server_that_is_not_there),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
