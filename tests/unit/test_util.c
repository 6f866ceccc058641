/* test_util.c — common/cg_util.c and cg_error.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cg_error.h"
#include "cg_util.h"

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

static void test_errors_named(void **state)
{
    assert_string_equal(cg_errname(CG_E_PARSE), "CG_E_PARSE");
    assert_string_equal(cg_strerror(CG_E_NOMEM), "out of memory");
    assert_non_null(cg_strerror(-2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_roundtrip),
        cmocka_unit_test(test_hex_rejects),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_errors_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
