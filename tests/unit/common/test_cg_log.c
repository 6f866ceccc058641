/* tests/unit/common/test_cg_log.c — common/cg_log.c: one event is one line, whatever bytes
 * the message carries (control bytes are escaped for every caller). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cg_log.h"

/* Runs cg_info(fmt, arg) with stderr on a pipe; returns what was written. */
static size_t capture(char *out, size_t cap, const char *arg)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], 2), 2);
    cg_info("login failed for \"%s\": unknown user", arg);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, cap - 1);
    close(fds[0]);
    assert_true(n > 0);
    out[n] = '\0';
    return (size_t)n;
}

static void test_controls_are_escaped(void **state)
{
    (void)state;
    char out[4096];
    size_t n = capture(out, sizeof out, "x\r\nFORGED injected line\x1b[0m\x7f");
    /* exactly one line */
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', n - 1));
    assert_null(memchr(out, '\r', n));
    assert_non_null(strstr(out, " info login failed for \"x\\x0d\\x0aFORGED injected line"
                                "\\x1b[0m\\x7f\": unknown user\n"));
}

static void test_long_message_stays_one_line(void **state)
{
    (void)state;
    char arg[3000], out[8192];
    for (size_t i = 0; i < sizeof arg - 1; i++)
        arg[i] = (i % 2) ? '\n' : 'a';
    arg[sizeof arg - 1] = '\0';
    size_t n = capture(out, sizeof out, arg);
    assert_true(n <= 2048);
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', n - 1));
    /* no escape cut in half before the newline */
    const char *last = strrchr(out, '\\');
    assert_non_null(last);
    assert_true(out + n - 1 - last >= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls_are_escaped),
        cmocka_unit_test(test_long_message_stays_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
