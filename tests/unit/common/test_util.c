/* tests/unit/common/test_util.c — common/cg_util.c and cg_error.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

static void test_hex_roundtrip(void **state)
{
    const uint8_t in[] = { 0x00, 0x7f, 0xab, 0xff };
    char hex[9];
    cg_hex_encode(in, sizeof in, hex);
    assert_string_equal(hex, "007fabff");
    uint8_t out[4];
    assert_int_equal(cg_hex_decode("007FabfF", out, sizeof out), 4);
    assert_memory_equal(in, out, 4);
}

static void test_hex_rejects(void **state)
{
    uint8_t out[4];
    static const char *bad[] = { "", "0", "0g", "zz", "0011223344", " 00" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_true(cg_hex_decode(bad[i], out, sizeof out) < 0);
}

static void test_parse_u64(void **state)
{
    uint64_t v;
    assert_int_equal(cg_parse_u64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_true(cg_parse_u64("101", 0, 100, &v) < 0);
    assert_true(cg_parse_u64("-1", 0, 100, &v) < 0);
    assert_true(cg_parse_u64("1x", 0, 100, &v) < 0);
    assert_true(cg_parse_u64("", 0, 100, &v) < 0);
    assert_true(cg_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v) < 0);
}

static void test_time_format(void **state)
{
    char t[CG_TIME_LEN];
    cg_time_rfc3339(INT64_C(1764669600000001), t);
    assert_string_equal(t, "2025-12-02T10:00:00.000001Z");
}

/* One validator serves paths, mailbox names, manifests and the
 * configuration: each class of malformed UTF-8 is refused, one case each. */
static void test_utf8_strict(void **state)
{
#define S(lit) lit, sizeof lit - 1 /* the bytes, NULs included */
    static const struct { const char *s; size_t n; bool ok; } cases[] = {
        { S("plain/ascii"), true },
        { S("\xc3\xa9t\xc3\xa9"), true },          /* été */
        { S("\xe2\x82\xac"), true },                /* U+20AC */
        { S("\xf0\x9f\x98\x80"), true },           /* U+1F600 */
        { S("\xf4\x8f\xbf\xbf"), true },           /* U+10FFFF */
        { S("\xc0\xae"), false },                    /* overlong '.' */
        { S("\xe0\x80\xae"), false },               /* overlong, 3 bytes */
        { S("\xed\xa0\x80"), false },               /* surrogate D800 */
        { S("\xf4\x90\x80\x80"), false },          /* above U+10FFFF */
        { S("\xc3"), false },                         /* cut short */
        { S("\x80"), false },                         /* lone continuation */
        { S("\xff"), false },
        { S("a\0b"), false },                         /* NUL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(cg_utf8_valid(cases[i].s, cases[i].n), cases[i].ok);
#undef S
}

static void test_hexval_and_tchar(void **state)
{
    assert_int_equal(cg_hexval('0'), 0);
    assert_int_equal(cg_hexval('f'), 15);
    assert_int_equal(cg_hexval('F'), 15);
    assert_int_equal(cg_hexval('g'), -1);
    assert_int_equal(cg_hexval('%'), -1);
    assert_true(cg_is_tchar('a') && cg_is_tchar('~') && cg_is_tchar('!'));
    assert_false(cg_is_tchar(' ') || cg_is_tchar(':') || cg_is_tchar('(') ||
                 cg_is_tchar(0) || cg_is_tchar(0x80));
}

static void test_errors_named(void **state)
{
    assert_string_equal(cg_errname(CG_E_PARSE), "CG_E_PARSE");
    assert_string_equal(cg_strerror(CG_E_NOMEM), "out of memory");
    assert_non_null(cg_strerror(-2));
}

/* An error sentence may quote an earlier one (formatted aside, then
 * stored), and one lives while fewer than CG_SAY_RING others are made. */
static void test_say_quotes_an_earlier_sentence(void **state)
{
    (void)state;
    const char *inner = cg_say("cannot open %s", "policy.db");
    const char *outer = cg_say("cannot read the policy: %s", inner);
    assert_string_equal(outer, "cannot read the policy: cannot open policy.db");
    assert_string_equal(inner, "cannot open policy.db");
    const char *first = cg_say("first");
    for (int i = 0; i < CG_SAY_RING - 1; i++)
        (void)cg_say("other %d", i);
    assert_string_equal(first, "first");
    char longer[CG_SAY_MAX * 2];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(strlen(cg_say("%s", longer)), CG_SAY_MAX - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_roundtrip),
        cmocka_unit_test(test_hex_rejects),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_errors_named),
        cmocka_unit_test(test_utf8_strict),
        cmocka_unit_test(test_hexval_and_tchar),
        cmocka_unit_test(test_say_quotes_an_earlier_sentence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
