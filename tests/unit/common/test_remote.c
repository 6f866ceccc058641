/* tests/unit/common/test_remote.c — common/cg_remote.c: which domains and
 * remote user addresses are accepted, their one spelling, and the
 * transaction ids another gateway may send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_remote.h"

static void test_domains(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want; /* want NULL: refused */
    } t[] = {
        { "b.example", "b.example" },  { "B.Example", "b.example" },
        { "a-b.c1", "a-b.c1" },        { "localhost", "localhost" },
        { "", NULL },                  { "b.example.", NULL },
        { ".b", NULL },                { "a..b", NULL },
        { "-a.b", NULL },              { "a-.b", NULL },
        { "a_b.c", NULL },             { "a b", NULL },
        { "a/b", NULL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[256];
        bool ok = cg_remote_domain(t[i].in, strlen(t[i].in), out, sizeof out);
        if (ok != (t[i].want != NULL) || (ok && strcmp(out, t[i].want) != 0))
            fail_msg("'%s': got %d '%s'", t[i].in, ok, ok ? out : "");
    }
    char label[70];
    memset(label, 'a', 64);
    label[64] = '\0';
    char out[256];
    assert_false(cg_remote_domain(label, 64, out, sizeof out)); /* label of 64 */
    assert_true(cg_remote_domain(label, 63, out, sizeof out));
    assert_false(cg_remote_domain("b.example", 9, out, 9)); /* no room for the NUL */
}

static void test_users(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool wildcard;
        const char *want;
        size_t at;
    } t[] = {
        { "alice@b.example", false, "alice@b.example", 5 },
        { "Alice@B.EXAMPLE", false, "Alice@b.example", 5 }, /* the local part keeps its case */
        { "*@b.example", true, "*@b.example", 1 },
        { "*@b.example", false, NULL, 0 },
        { "a*@b.example", true, NULL, 0 },
        { "a%b@b.example", false, NULL, 0 },
        { "a/b@b.example", false, NULL, 0 },
        { "a b@b.example", false, NULL, 0 },
        { "a\"b@b.example", false, NULL, 0 },
        { "@b.example", false, NULL, 0 },
        { "alice@", false, NULL, 0 },
        { "alice", false, NULL, 0 },
        { "a@b@c", false, NULL, 0 },
        { "alice@b.example.", false, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[CG_REMOTE_USER_MAX + 1];
        size_t at = 99;
        bool ok = cg_remote_user(t[i].in, strlen(t[i].in), t[i].wildcard, out, sizeof out, &at);
        if (ok != (t[i].want != NULL) || (ok && (strcmp(out, t[i].want) != 0 || at != t[i].at)))
            fail_msg("'%s': got %d '%s' at %zu", t[i].in, ok, ok ? out : "", at);
    }
    char big[80];
    memset(big, 'u', 65);
    strcpy(big + 65, "@b.example");
    char out[CG_REMOTE_USER_MAX + 1];
    assert_false(cg_remote_user(big, strlen(big), false, out, sizeof out, NULL));
    assert_true(cg_remote_user(big + 1, strlen(big + 1), false, out, sizeof out, NULL));
}

static void test_txids(void **state)
{
    (void)state;
    assert_true(cg_remote_txid("a1B2.c3:d_e-f", 13));
    assert_true(cg_remote_txid("x", 1));
    assert_false(cg_remote_txid("", 0));
    assert_false(cg_remote_txid("a b", 3));
    assert_false(cg_remote_txid("a\"b", 3));
    assert_false(cg_remote_txid("a\0b", 3)); /* a NUL inside */
    assert_false(cg_remote_txid("a\r\n", 3));
    char long_id[80];
    memset(long_id, 'a', sizeof long_id);
    assert_true(cg_remote_txid(long_id, CG_REMOTE_TXID_MAX - 1));
    assert_false(cg_remote_txid(long_id, CG_REMOTE_TXID_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_txids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
