/* tests/unit/proxy/imap/test_imap_mutf7.c — proxy/imap/mutf7.c: RFC 3501 5.1.3 examples, the
 * round trip, and every non-canonical spelling refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "proxy/imap/mutf7.h"

static const struct { const char *mutf7, *utf8; } good[] = {
    { "INBOX", "INBOX" },
    { "&-", "&" },
    { "a&-b", "a&b" },
    { "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
      "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
    { "Entw&APw-rfe", "Entw\xc3\xbc" "rfe" },
    { "&2D3eAQ-", "\xf0\x9f\x98\x81" },                  /* surrogate pair */
    { "x&AH8-", "x\x7f" },
    { "&AOQA9gD8-", "\xc3\xa4\xc3\xb6\xc3\xbc" },
};

static const char *bad[] = {
    "&AGE-",      /* "a" encoded: printable ASCII must be itself */
    "&AOQ",       /* unterminated */
    "&AOQ-&APw-", /* two adjacent runs */
    "&AOR-",      /* non-zero pad bits */
    "&AO-",       /* leftover bits */
    "&2D0-",      /* lone high surrogate */
    "&3gE-",      /* lone low surrogate */
    "&AAA-",      /* NUL */
    "a\x01",      /* raw control */
    "caf\xc3\xa9", /* raw 8-bit */
    "&A=Q-",      /* not base64 */
    "&AOQ/-",     /* "/" is "," in modified base64 */
};

static void test_decode_good(void **state)
{
    char out[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int n = cg_mutf7_decode(good[i].mutf7, strlen(good[i].mutf7), out,
                                sizeof out);
        assert_int_equal(n, (int)strlen(good[i].utf8));
        assert_string_equal(out, good[i].utf8);
    }
}

static void test_encode_good(void **state)
{
    char out[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int n = cg_mutf7_encode(good[i].utf8, strlen(good[i].utf8), out,
                                sizeof out);
        assert_int_equal(n, (int)strlen(good[i].mutf7));
        assert_string_equal(out, good[i].mutf7);
    }
}

static void test_decode_bad(void **state)
{
    char out[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cg_mutf7_decode(bad[i], strlen(bad[i]), out,
                                         sizeof out), CG_E_PARSE);
}

static void test_encode_bad_utf8(void **state)
{
    static const char *inv[] = { "\xc0\xaf", "\xed\xa0\x80", "\xff", "a\xc3",
                                 "\xf4\x90\x80\x80" };
    char out[64];
    for (size_t i = 0; i < sizeof inv / sizeof inv[0]; i++) {
        assert_int_equal(cg_mutf7_encode(inv[i], strlen(inv[i]), out, sizeof out),
                         CG_E_PARSE);
        assert_false(cg_utf8_valid(inv[i], strlen(inv[i])));
    }
    assert_false(cg_utf8_valid("a\0b", 3));
    assert_true(cg_utf8_valid("\xe2\x82\xac", 3));
}

static void test_small_buffer(void **state)
{
    char out[4];
    assert_int_equal(cg_mutf7_decode("INBOX", 5, out, sizeof out), CG_E_LIMIT);
    assert_int_equal(cg_mutf7_encode("\xc3\xa4\xc3\xa4", 4, out, sizeof out),
                     CG_E_LIMIT);
}

/* Every BMP code point outside printable ASCII survives the round trip. */
static void test_roundtrip_bmp(void **state)
{
    char u8[8], m7[32], back[8];
    for (uint32_t cp = 1; cp < 0x10000; cp += 7) {
        if ((cp >= 0x20 && cp <= 0x7e) || (cp >= 0xd800 && cp <= 0xdfff))
            continue;
        size_t n;
        if (cp < 0x80) { u8[0] = (char)cp; n = 1; }
        else if (cp < 0x800) { u8[0] = (char)(0xc0 | (cp >> 6)); u8[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
        else { u8[0] = (char)(0xe0 | (cp >> 12)); u8[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); u8[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
        int m = cg_mutf7_encode(u8, n, m7, sizeof m7);
        assert_true(m > 0);
        int b = cg_mutf7_decode(m7, (size_t)m, back, sizeof back);
        assert_int_equal(b, (int)n);
        assert_memory_equal(back, u8, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_good),
        cmocka_unit_test(test_encode_good),
        cmocka_unit_test(test_decode_bad),
        cmocka_unit_test(test_encode_bad_utf8),
        cmocka_unit_test(test_small_buffer),
        cmocka_unit_test(test_roundtrip_bmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
