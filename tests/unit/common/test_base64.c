/* tests/unit/common/test_base64.c — common/cg_base64.c: RFC 4648 vectors, and the strict
 * decoder refusing every non-canonical or malformed form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/cg_base64.h"
#include "common/cg_error.h"

/* RFC 4648 section 10 */
static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
static const char *const std[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
static const char *const url[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };

static void test_vectors(void **state)
{
    for (size_t i = 0; i < 7; i++) {
        char out[32];
        uint8_t dec[32];
        size_t n = strlen(plain[i]);
        assert_int_equal(cg_b64_encode((const uint8_t *)plain[i], n, out, sizeof out), strlen(std[i]));
        assert_string_equal(out, std[i]);
        assert_int_equal(cg_b64url_encode((const uint8_t *)plain[i], n, out, sizeof out), strlen(url[i]));
        assert_string_equal(out, url[i]);
        assert_int_equal(cg_b64_decode(std[i], strlen(std[i]), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, plain[i], n);
        assert_int_equal(cg_b64url_decode(url[i], strlen(url[i]), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, plain[i], n);
    }
}

static void test_alphabets_and_large(void **state)
{
    uint8_t bin[3000], dec[3000];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7 + 3);
    static char s[4100];
    size_t n = cg_b64_encode(bin, sizeof bin, s, sizeof s);
    assert_int_equal(n, 4000);
    assert_int_equal(cg_b64_decode(s, n, dec, sizeof dec), 3000);
    assert_memory_equal(dec, bin, 3000);
    /* exactly-sized output buffer, and one byte short */
    assert_int_equal(cg_b64_decode("Zm9vYg==", 8, dec, 4), 4);
    assert_int_equal(cg_b64_decode("Zm9vYg==", 8, dec, 3), CG_E_LIMIT);
    assert_int_equal(cg_b64_encode(bin, 3, s, 4), 0);
    uint8_t ff[3] = { 0xfb, 0xff, 0xfe };
    assert_int_equal(cg_b64url_encode(ff, 3, s, sizeof s), 4);
    assert_string_equal(s, "-__-");
    assert_int_equal(cg_b64_encode(ff, 3, s, sizeof s), 4);
    assert_string_equal(s, "+//+");
}

static void test_strict_refusals(void **state)
{
    static const char *const bad_std[] = {
        "Zg", "Zg=", "Zg===", "Z===", "=Zg=", "Zm=9", "Zm9v\n", " Zm9v", "Zm 9v", "Zm9-",
        "Zm9_", "Zm9v!A==", "Zh==", "Zm9=", "Zm8==", "\x80Zm9",
    };
    uint8_t dec[16];
    for (size_t i = 0; i < sizeof bad_std / sizeof bad_std[0]; i++)
        if (cg_b64_decode(bad_std[i], strlen(bad_std[i]), dec, sizeof dec) != CG_E_PARSE)
            fail_msg("accepted '%s'", bad_std[i]);
    static const char *const bad_url[] = { "Z", "Zg==", "Zm9+", "Zm9/", "Zh", "Zm9", "Zm9vY" };
    for (size_t i = 0; i < sizeof bad_url / sizeof bad_url[0]; i++)
        if (cg_b64url_decode(bad_url[i], strlen(bad_url[i]), dec, sizeof dec) != CG_E_PARSE)
            fail_msg("accepted url '%s'", bad_url[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_alphabets_and_large),
        cmocka_unit_test(test_strict_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
