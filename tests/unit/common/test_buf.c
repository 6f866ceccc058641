/* tests/unit/common/test_buf.c — common/cg_buf.c: a fixed buffer never
 * writes past the sizeof it was given and an add that does not fit writes
 * nothing; a growing buffer doubles up to its bound and no further; the
 * content is always followed by a NUL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_buf.h"

static void test_fixed_add_lands_whole_or_not_at_all(void **state)
{
    (void)state;
    char store[8 + 1]; /* eight bytes of content and the NUL */
    char guard[4];
    memset(guard, 'G', sizeof guard);
    cg_buf b;
    cg_buf_init_fixed(&b, store, sizeof store);
    cg_buf_str(&b, "abcd");
    cg_buf_add(&b, "efgh", 4);
    assert_false(b.failed);
    assert_string_equal(b.p, "abcdefgh");
    cg_buf_add(&b, "i", 1); /* one past: refused, content untouched */
    assert_true(b.failed);
    assert_int_equal(b.len, 8);
    assert_string_equal(store, "abcdefgh");
    cg_buf_str(&b, ""); /* after a failure nothing more is written */
    assert_true(b.failed);
    assert_memory_equal(guard, "GGGG", 4);
    cg_buf_reset(&b);
    assert_false(b.failed);
    assert_int_equal(b.len, 0);
    assert_string_equal(store, "");
}

static void test_fixed_fmt_that_does_not_fit_keeps_the_old_content(void **state)
{
    (void)state;
    char store[10];
    cg_buf b;
    cg_buf_init_fixed(&b, store, sizeof store);
    cg_buf_fmt(&b, "%s=%d", "ab", 12);
    assert_string_equal(b.p, "ab=12");
    cg_buf_fmt(&b, "%s", "toolong");
    assert_true(b.failed);
    assert_int_equal(b.len, 5);
    assert_string_equal(store, "ab=12");
}

static void test_growing_doubles_up_to_its_bound(void **state)
{
    (void)state;
    cg_buf b;
    cg_buf_init(&b, 1000);
    cg_buf_add(&b, "x", 1);
    assert_int_equal(b.cap, CG_BUF_FIRST);
    char chunk[300];
    memset(chunk, 'y', sizeof chunk);
    cg_buf_add(&b, chunk, sizeof chunk);
    assert_int_equal(b.cap, 2 * CG_BUF_FIRST);
    cg_buf_add(&b, chunk, sizeof chunk);
    assert_int_equal(b.cap, 1000); /* the bound, not 1024 */
    assert_int_equal(b.len, 601);
    cg_buf_add(&b, chunk, sizeof chunk); /* 901 + NUL fits */
    assert_false(b.failed);
    cg_buf_add(&b, chunk, 98); /* 999 + NUL = 1000 fits */
    assert_false(b.failed);
    cg_buf_add(&b, "z", 1);
    assert_true(b.failed);
    assert_int_equal(b.len, 999);
    assert_int_equal(b.p[999], '\0');
    cg_buf_free(&b);
    assert_null(b.p);
}

static void test_growing_fmt_grows_for_a_long_line(void **state)
{
    (void)state;
    cg_buf b;
    cg_buf_init(&b, 1 << 20);
    char long_arg[5000];
    memset(long_arg, 'a', sizeof long_arg - 1);
    long_arg[sizeof long_arg - 1] = '\0';
    cg_buf_fmt(&b, "<%s>", long_arg);
    assert_false(b.failed);
    assert_int_equal(b.len, 5001);
    assert_int_equal(b.p[0], '<');
    assert_int_equal(b.p[5000], '>');
    assert_int_equal(b.p[5001], '\0');
    cg_buf_consume(&b, 5000);
    assert_string_equal(b.p, ">");
    cg_buf_free(&b);
}

static void test_grow_rule(void **state)
{
    (void)state;
    void *p = NULL;
    size_t cap = 0;
    assert_true(cg_buf_grow(&p, &cap, 10, 16, 64));
    assert_int_equal(cap, 16);
    assert_true(cg_buf_grow(&p, &cap, 40, 16, 64));
    assert_int_equal(cap, 64);
    assert_false(cg_buf_grow(&p, &cap, 65, 16, 64));
    assert_int_equal(cap, 64); /* unchanged on refusal */
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_add_lands_whole_or_not_at_all),
        cmocka_unit_test(test_fixed_fmt_that_does_not_fit_keeps_the_old_content),
        cmocka_unit_test(test_growing_doubles_up_to_its_bound),
        cmocka_unit_test(test_growing_fmt_grows_for_a_long_line),
        cmocka_unit_test(test_grow_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
