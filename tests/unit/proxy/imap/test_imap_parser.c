/* tests/unit/proxy/imap/test_imap_parser.c — proxy/imap/parser.c, table-driven: each input is
 * fed whole and one byte at a time, the events rendered as text and
 * compared with the expected rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/imap/parser.h"

static void render_cmd(const cg_imapp *p, char *out, size_t cap)
{
    size_t o = strlen(out);
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (size_t i = 0; i < cg_imapp_ntok(p); i++) {
        const cg_imapp_tok *t = cg_imapp_tok_at(p, i);
        const char *d = cg_imapp_data(p, t);
        const char *sep = i == 0 ? "" : (t->sp_before ? " " : "");
        switch (t->type) {
        case CG_IMAPP_ATOM: o += (size_t)snprintf(out + o, cap - o, "%s%s", sep, d); break;
        case CG_IMAPP_QUOTED: o += (size_t)snprintf(out + o, cap - o, "%sq:%s", sep, d); break;
        case CG_IMAPP_LITERAL:
            if (t->streamed)
                o += (size_t)snprintf(out + o, cap - o, "%sS%s:%llu", sep,
                                      t->literal8 ? "8" : "", (unsigned long long)t->lit_size);
            else
                o += (size_t)snprintf(out + o, cap - o, "%sL:%s", sep, d);
            break;
        case CG_IMAPP_LIST_OPEN: o += (size_t)snprintf(out + o, cap - o, "%s(", sep); break;
        case CG_IMAPP_LIST_CLOSE: o += (size_t)snprintf(out + o, cap - o, ")"); break;
        }
    }
    snprintf(out + o, cap - o, "]");
}

/* Feeds in chunks of `step` bytes (0: all at once); renders events. */
static void run(const char *in, size_t inlen, size_t step, const cg_imapp_limits *lim,
                char *out, size_t cap)
{
    cg_imapp *p = cg_imapp_new(lim);
    assert_non_null(p);
    out[0] = '\0';
    size_t pos = 0;
    char streamed[64] = "";
    while (pos < inlen) {
        size_t n = step ? step : inlen - pos;
        if (n > inlen - pos) n = inlen - pos;
        const uint8_t *b = (const uint8_t *)in + pos;
        size_t off = 0;
        while (off < n) {
            cg_imapp_event ev;
            size_t used = cg_imapp_feed(p, b + off, n - off, &ev);
            off += used;
            size_t o = strlen(out);
            switch (ev.type) {
            case CG_IMAPP_EV_NONE: assert_int_equal(used, n - (off - used)); break;
            case CG_IMAPP_EV_COMMAND: strcat(out, "CMD"); render_cmd(p, out, cap); break;
            case CG_IMAPP_EV_LITERAL: snprintf(out + o, cap - o, "LIT%llu ", (unsigned long long)ev.lit_size); break;
            case CG_IMAPP_EV_STREAM_START:
                snprintf(out + o, cap - o, "SS%llu%s ", (unsigned long long)ev.lit_size, ev.lit_sync ? "s" : "");
                streamed[0] = '\0';
                break;
            case CG_IMAPP_EV_STREAM_DATA:
                for (size_t k = 0; k < ev.len && strlen(streamed) < 60; k++) {
                    size_t sl = strlen(streamed);
                    streamed[sl] = ev.data[k] ? (char)ev.data[k] : '0';
                    streamed[sl + 1] = '\0';
                }
                break;
            case CG_IMAPP_EV_STREAM_END: snprintf(out + o, cap - o, "SE<%s> ", streamed); break;
            case CG_IMAPP_EV_ERROR:
                snprintf(out + o, cap - o, "ERR%s(%s):%s ", ev.fatal ? "!" : "",
                         cg_imapp_tag(p) ? cg_imapp_tag(p) : "*", ev.error);
                break;
            }
        }
        pos += n;
    }
    cg_imapp_free(p);
}

static const cg_imapp_limits lim = { .max_line = 200, .max_literal = 1000,
                                     .max_depth = 3, .max_tokens = 40 };

static const struct { const char *in, *want; } cases[] = {
    { "a1 NOOP\r\n", "CMD[a1 NOOP]" },
    { "a1 NOOP\n", "CMD[a1 NOOP]" },
    { "\r\na1 NOOP\r\n", "CMD[a1 NOOP]" },
    { "a LOGIN alice \"p w\\\"\\\\\"\r\n", "CMD[a LOGIN alice q:p w\"\\]" },
    { "a SELECT {5}\r\nINBOX\r\n", "LIT5 CMD[a SELECT L:INBOX]" },
    { "a SELECT {5+}\r\nINBOX\r\n", "CMD[a SELECT L:INBOX]" },
    { "a SELECT {0}\r\n\r\n", "LIT0 CMD[a SELECT L:]" },
    { "a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n",
      "CMD[a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)]" },
    { "a UID COPY 1:5 \"Archive/2024\"\r\n", "CMD[a UID COPY 1:5 q:Archive/2024]" },
    { "a LIST \"\" %\r\n", "CMD[a LIST q: %]" },
    { "a APPEND INBOX (\\Seen) {3}\r\nabc\r\n", "SS3s SE<abc> CMD[a APPEND INBOX (\\Seen) S:3]" },
    { "a APPEND INBOX {3+}\r\nabc {2+}\r\nde\r\n", "SS3 SE<abc> SS2 SE<de> CMD[a APPEND INBOX S:3 S:2]" },
    { "a APPEND INBOX ~{3+}\r\na\0c\r\n", "SS3 SE<a0c> CMD[a APPEND INBOX S8:3]" },
    { "a APPEND {5}\r\nINBOX {1}\r\nx\r\n", "LIT5 SS1s SE<x> CMD[a APPEND L:INBOX S:1]" },
    /* errors */
    { "a\r\n", "ERR(a):missing command " },
    { "+x NOOP\r\nb NOOP\r\n", "ERR(*):invalid tag CMD[b NOOP]" },
    { "a NOOP)\r\nb NOOP\r\n", "ERR(a):unexpected ')' CMD[b NOOP]" },
    { "a X (((x)))\r\n", "CMD[a X (((x)))]" },
    { "a X ((((x))))\r\n", "ERR(a):lists nested too deeply " },
    { "a X ((x)\r\nb NOOP\r\n", "ERR(a):unclosed list CMD[b NOOP]" },
    { "a X \"abc\r\nb NOOP\r\n", "ERR(a):invalid character in quoted string CMD[b NOOP]" },
    { "a X \"a\\b\"\r\n", "ERR(a):invalid escape in quoted string " },
    { "a X caf\xc3\xa9\r\n", "ERR(a):invalid character in atom " },
    { "a X \xc3\xa9\r\n", "ERR(a):8-bit character outside a string " },
    { "a X  y\r\n", "ERR(a):unexpected space " },
    { "a X {5}x\r\n", "ERR(a):literal must end the line " },
    { "a X {}\r\n", "ERR(a):invalid literal " },
    { "a X {99999999999999999999999}\r\n", "ERR(a):literal size overflows " },
    { "a SELECT {500}\r\nb NOOP\r\n", "ERR(a):literal too large CMD[b NOOP]" },
    { "a SELECT {20+}\r\n01234567890123456789\r\n", "CMD[a SELECT L:01234567890123456789]" },
    { "a SELECT ~{1}\r\nb NOOP\r\n", "ERR(a):literal8 outside APPEND CMD[b NOOP]" },
    /* "~" starts a literal8 only before "{": elsewhere it is an atom char */
    { "a LIST \"\" ~foo\r\n", "CMD[a LIST q: ~foo]" },
    { "a LIST \"\" ~\r\n", "CMD[a LIST q: ~]" },
    { "a LIST ~ (~x)\r\n", "CMD[a LIST ~ (~x)]" },
    { "~a NOOP\r\n", "CMD[~a NOOP]" },
    { "a APPEND INBOX {2000}\r\nb NOOP\r\n", "ERR(a):literal too large CMD[b NOOP]" },
    { "a APPEND INBOX {2000+}\r\n", "ERR!(a):non-synchronising literal too large " },
    { "a X \"a\"\"b\"\r\n", "ERR(a):missing space " },
    { "a {1}\r\n", "ERR(a):literal before the command name " },
    { "{1}\r\n", "ERR(*):literal before the command name " },
};

static void test_table(void **state)
{
    char out[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        if (strstr(cases[i].in, "~{3+}"))
            len += 4; /* the case carries a NUL in its literal */
        /* the NUL case: strlen stops early; use sizeof-known length */
        if (strstr(cases[i].in, "~{3+}"))
            len = strlen("a APPEND INBOX ~{3+}\r\na") + 1 + strlen("c\r\n");
        for (size_t step = 0; step <= 1; step++) {
            run(cases[i].in, len, step, &lim, out, sizeof out);
            if (strcmp(out, cases[i].want) != 0)
                fail_msg("case %zu step %zu: %s\n got: %s\nwant: %s", i, step,
                         cases[i].in, out, cases[i].want);
        }
    }
}

static void test_line_limit(void **state)
{
    char in[512], out[1024];
    memset(in, 'x', sizeof in);
    memcpy(in, "a X ", 4);
    memcpy(in + 500, "\r\nb NOOP\r\n", 10);
    run(in, 510, 0, &lim, out, sizeof out);
    /* the token buffer or the line counter: either way a BAD, and the
     * next command is parsed */
    assert_non_null(strstr(out, "too long CMD[b NOOP]"));
}

static void test_token_limit(void **state)
{
    char in[256] = "a X", out[1024];
    for (int i = 0; i < 50; i++)
        strcat(in, " 1");
    strcat(in, "\r\n");
    run(in, strlen(in), 0, &lim, out, sizeof out);
    assert_string_equal(out, "ERR(a):command too long ");
}

static void test_literal_minus(void **state)
{
    cg_imapp_limits l = lim;
    l.max_nonsync = 4;
    char out[256];
    const char *in = "a APPEND INBOX {5+}\r\nhello\r\n";
    run(in, strlen(in), 0, &l, out, sizeof out);
    assert_string_equal(out, "ERR!(a):non-synchronising literal too large ");
}

/* A refused synchronising literal: after reset the next line is a new
 * command (the client never sent the literal). */
static void test_reset_after_refusal(void **state)
{
    cg_imapp *p = cg_imapp_new(&lim);
    const char *a = "a APPEND Secret {3}\r\n";
    cg_imapp_event ev;
    size_t n = cg_imapp_feed(p, (const uint8_t *)a, strlen(a), &ev);
    assert_int_equal(n, strlen(a));
    assert_int_equal(ev.type, CG_IMAPP_EV_STREAM_START);
    assert_true(ev.lit_sync);
    assert_string_equal(cg_imapp_data(p, cg_imapp_tok_at(p, 2)), "Secret");
    cg_imapp_reset(p);
    const char *b = "b NOOP\r\n";
    n = cg_imapp_feed(p, (const uint8_t *)b, strlen(b), &ev);
    assert_int_equal(ev.type, CG_IMAPP_EV_COMMAND);
    assert_string_equal(cg_imapp_tag(p), "b");
    cg_imapp_free(p);
}

/* Server mode parses LIST responses with a literal name. */
static void test_server_mode(void **state)
{
    cg_imapp_limits l = lim;
    l.server = true;
    char out[256];
    const char *in = "* LIST (\\HasNoChildren) \"/\" {3}\r\na\"b\r\n";
    run(in, strlen(in), 0, &l, out, sizeof out);
    assert_string_equal(out, "CMD[* LIST (\\HasNoChildren) q:/ L:a\"b]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_token_limit),
        cmocka_unit_test(test_literal_minus),
        cmocka_unit_test(test_reset_after_refusal),
        cmocka_unit_test(test_server_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
