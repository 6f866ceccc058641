/* tests/unit/common/test_cg_log.c — common/cg_log.c: one event is one line, whatever bytes
 * the message carries (control bytes and backslashes are escaped for every caller); the
 * text and JSON forms of a line; the level filter; the journal's priority prefix exactly
 * when stderr is the stream $JOURNAL_STREAM names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/cg_log.h"

/* Puts a new pipe on stderr (fds: its ends) and writes its device:inode,
 * as $JOURNAL_STREAM would name it, into env; returns the saved stderr. */
static int stderr_to_pipe(int fds[2], char *env, size_t cap)
{
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], 2), 2);
    struct stat st;
    assert_int_equal(fstat(2, &st), 0);
    snprintf(env, cap, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    return saved;
}

static void restore_stderr(int saved)
{
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
}

/* Runs log(arg) with stderr on a pipe; returns what was written (0: nothing). */
static size_t capture_with(char *out, size_t cap, void (*log)(const char *), const char *arg)
{
    int fds[2];
    char env[64];
    int saved = stderr_to_pipe(fds, env, sizeof env);
    log(arg);
    restore_stderr(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, cap - 1);
    close(fds[0]);
    assert_true(n >= 0);
    out[n] = '\0';
    return (size_t)n;
}

static void log_login_failed(const char *arg) { cg_info("login failed for \"%s\": unknown user", arg); }

static size_t capture(char *out, size_t cap, const char *arg)
{
    size_t n = capture_with(out, cap, log_login_failed, arg);
    assert_true(n > 0);
    return n;
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

/* A value holding "\x0a" as four characters must not read as an escaped
 * newline: the backslash itself is escaped. */
static void test_backslash_is_escaped(void **state)
{
    (void)state;
    char out[4096];
    capture(out, sizeof out, "a\\x0aFORGED\\");
    assert_non_null(strstr(out, " info login failed for \"a\\x5cx0aFORGED\\x5c\": unknown user\n"));
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

/* 2026-12-02T10:00:00.000042Z */
static const struct timeval T0 = { .tv_sec = 1796205600, .tv_usec = 42 };

static const char *line_of(enum cg_log_format fmt, enum cg_log_level lvl, const char *msg,
                           char *out, size_t cap)
{
    size_t n = cg_log_line(fmt, lvl, &T0, msg, out, cap);
    assert_true(n > 0 && n < cap);
    out[n] = '\0';
    return out;
}

static void test_text_form(void **state)
{
    (void)state;
    char out[CG_LOG_TEXT_MAX + 1];
    assert_string_equal(line_of(CG_LOG_TEXT, CG_LOG_WARN, "conn=7 client=192.0.2.1:5 refused: x",
                                out, sizeof out),
                        "2026-12-02T10:00:00.000042Z warn conn=7 client=192.0.2.1:5 refused: x\n");
}

/* The JSON form of a message: the key=value run that opens it becomes
 * members, the rest is msg; one case a line. */
static void test_json_members_from_the_opening_fields(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *members;
    } cases[] = {
        { "conn=7 client=192.0.2.1:5 listener=imaps auth method=cert principal=alice",
          "\"conn\":\"7\",\"client\":\"192.0.2.1:5\",\"listener\":\"imaps\","
          "\"msg\":\"auth method=cert principal=alice\"" },
        { "cpmgate ready: workers=2", "\"msg\":\"cpmgate ready: workers=2\"" },
        { "conn=7", "\"conn\":\"7\",\"msg\":\"\"" },
        { "", "\"msg\":\"\"" },
        /* a key seen before, one the form has of its own, or no key: msg */
        { "conn=1 conn=2 x", "\"conn\":\"1\",\"msg\":\"conn=2 x\"" },
        { "conn=1 level=error x", "\"conn\":\"1\",\"msg\":\"level=error x\"" },
        { "msg=x time=y", "\"msg\":\"msg=x time=y\"" },
        { "Conn=1 x", "\"msg\":\"Conn=1 x\"" },
        { "conn= x", "\"msg\":\"conn= x\"" },
        { "=1 x", "\"msg\":\"=1 x\"" },
        { "policy_db2=a b", "\"policy_db2\":\"a\",\"msg\":\"b\"" },
        /* a colon that ends a value is the sentence's, and ends the run */
        { "conn=1 client=192.0.2.1:5: closed during handshake x=y",
          "\"conn\":\"1\",\"client\":\"192.0.2.1:5\",\"msg\":\"closed during handshake x=y\"" },
        { "conn=1 a=: b", "\"conn\":\"1\",\"msg\":\"a=: b\"" },
        /* a value is escaped like the message */
        { "user=a\"b\\c d", "\"user\":\"a\\\"b\\\\c\",\"msg\":\"d\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[CG_LOG_JSON_MAX + 1], want[512];
        snprintf(want, sizeof want,
                 "{\"time\":\"2026-12-02T10:00:00.000042Z\",\"level\":\"info\",%s}\n",
                 cases[i].members);
        assert_string_equal(line_of(CG_LOG_JSON, CG_LOG_INFO, cases[i].msg, out, sizeof out), want);
    }
}

static void test_json_escapes_controls_quotes_backslashes_and_bad_utf8(void **state)
{
    (void)state;
    char out[CG_LOG_JSON_MAX + 1];
    line_of(CG_LOG_JSON, CG_LOG_ERROR,
            "for \"x\r\nFORGED\x1b[0m\x7f\\x0a\" caf\xc3\xa9 \xff\xc3 \xed\xa0\x80 \xf0\x9f\x94\x92", out,
            sizeof out);
    assert_string_equal(out, "{\"time\":\"2026-12-02T10:00:00.000042Z\",\"level\":\"error\","
                             "\"msg\":\"for \\\"x\\u000d\\u000aFORGED\\u001b[0m\\u007f\\\\x0a\\\" "
                             "caf\xc3\xa9 \\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \xf0\x9f\x94\x92\"}\n");
}

/* Whatever is cut, the line stays one JSON object: closed string, closed
 * object, no escape or member in half. */
static void test_json_cut_keeps_the_object_whole(void **state)
{
    (void)state;
    char msg[CG_LOG_TEXT_MAX], out[CG_LOG_JSON_MAX + 1];
    memset(msg, '\x01', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    size_t n = cg_log_line(CG_LOG_JSON, CG_LOG_INFO, &T0, msg, out, CG_LOG_JSON_MAX);
    assert_true(n > 1000 && n <= CG_LOG_JSON_MAX);
    out[n] = '\0';
    assert_string_equal(out + n - 9, "\\u0001\"}\n");
    assert_null(memchr(out, '\n', n - 1));

    /* a member that would not fit goes into msg, which is cut */
    char big[400];
    memcpy(big, "client=", 7);
    memset(big + 7, 'a', sizeof big - 8);
    big[sizeof big - 1] = '\0';
    n = cg_log_line(CG_LOG_JSON, CG_LOG_INFO, &T0, big, out, 200);
    assert_true(n <= 200 && n > 100);
    out[n] = '\0';
    assert_null(strstr(out, "\"client\":"));
    assert_non_null(strstr(out, ",\"msg\":\"client=aaa"));
    assert_string_equal(out + n - 4, "a\"}\n");

    assert_int_equal(cg_log_line(CG_LOG_JSON, CG_LOG_INFO, &T0, "x", out, CG_LOG_LINE_MIN - 1), 0);
}

static void log_each_level(const char *arg)
{
    (void)arg;
    cg_error("e");
    cg_warn("w");
    cg_info("i");
    cg_debug("d");
}

static void test_level_hides_less_severe_events(void **state)
{
    (void)state;
    char out[4096];
    cg_log_set_level(CG_LOG_WARN);
    capture_with(out, sizeof out, log_each_level, NULL);
    assert_non_null(strstr(out, " error e\n"));
    assert_non_null(strstr(out, " warn w\n"));
    assert_null(strstr(out, " info i\n"));
    assert_null(strstr(out, " debug d\n"));
    cg_log_set_level(CG_LOG_DEBUG);
    capture_with(out, sizeof out, log_each_level, NULL);
    assert_non_null(strstr(out, " info i\n"));
    assert_non_null(strstr(out, " debug d\n"));
    cg_log_set_level(CG_LOG_INFO);
}

static void test_json_format_is_what_cg_log_writes(void **state)
{
    (void)state;
    char out[4096];
    cg_log_set_format(CG_LOG_JSON);
    size_t n = capture(out, sizeof out, "x\\y");
    cg_log_set_format(CG_LOG_TEXT);
    assert_int_equal(strncmp(out, "{\"time\":\"", 9), 0);
    assert_non_null(strstr(out, "Z\",\"level\":\"info\",\"msg\":\"login failed for \\\"x\\\\y\\\": "
                                "unknown user\"}\n"));
    assert_null(memchr(out, '\n', n - 1));
}

/* Detection with stderr on a pipe and $JOURNAL_STREAM unset (value NULL),
 * set to value, or (value "") to the pipe's device and the inode after. */
static bool journal_on(const char *value)
{
    int fds[2];
    char env[64];
    int saved = stderr_to_pipe(fds, env, sizeof env);
    strcat(env, "1");
    if (value)
        assert_int_equal(setenv("JOURNAL_STREAM", value[0] ? value : env, 1), 0);
    else
        assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
    bool on = cg_log_detect_journal();
    restore_stderr(saved);
    close(fds[0]);
    close(fds[1]);
    return on;
}

static void test_journal_prefix_only_on_the_journal_stream(void **state)
{
    (void)state;
    char out[4096];
    assert_false(journal_on(NULL));
    assert_false(journal_on(""));
    assert_false(journal_on("8:x"));
    assert_false(journal_on("garbage"));
    /* detection on the same pipe the lines then go to */
    int fds[2];
    char env[64];
    int saved = stderr_to_pipe(fds, env, sizeof env);
    assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
    bool on = cg_log_detect_journal();
    cg_log_set_level(CG_LOG_DEBUG);
    log_each_level(NULL);
    cg_log_set_format(CG_LOG_JSON);
    cg_info("j");
    cg_log_set_format(CG_LOG_TEXT);
    cg_log_set_level(CG_LOG_INFO);
    restore_stderr(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, sizeof out - 1);
    close(fds[0]);
    assert_true(on);
    assert_true(n > 0);
    out[n] = '\0';
    char *save = NULL;
    const char *want[] = { "<3>", "<4>", "<6>", "<7>", "<6>{\"time\":" };
    const char *tail[] = { " error e", " warn w", " info i", " debug d", "\"msg\":\"j\"}" };
    size_t i = 0;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), i++) {
        assert_true(i < 5);
        assert_int_equal(strncmp(l, want[i], strlen(want[i])), 0);
        assert_string_equal(l + strlen(l) - strlen(tail[i]), tail[i]);
    }
    assert_int_equal(i, 5);

    /* another stream (a terminal, a file the output went to): none */
    assert_false(journal_on(""));
    capture(out, sizeof out, "x");
    assert_int_equal(out[0], '2');
    assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls_are_escaped),
        cmocka_unit_test(test_backslash_is_escaped),
        cmocka_unit_test(test_long_message_stays_one_line),
        cmocka_unit_test(test_text_form),
        cmocka_unit_test(test_json_members_from_the_opening_fields),
        cmocka_unit_test(test_json_escapes_controls_quotes_backslashes_and_bad_utf8),
        cmocka_unit_test(test_json_cut_keeps_the_object_whole),
        cmocka_unit_test(test_level_hides_less_severe_events),
        cmocka_unit_test(test_json_format_is_what_cg_log_writes),
        cmocka_unit_test(test_journal_prefix_only_on_the_journal_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
