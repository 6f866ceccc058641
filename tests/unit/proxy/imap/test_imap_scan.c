/* tests/unit/proxy/imap/test_imap_scan.c — proxy/imap/scan.c, table-driven: server byte streams
 * are fed whole and one byte at a time; responses are rendered with their
 * classification and the bytes they carried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/imap/scan.h"

static const char *kind_name(int k)
{
    return k == CG_IMAPS_TAGGED ? "T" : k == CG_IMAPS_UNTAGGED ? "U" : "C";
}

/* Renders "<kind>:<tag>:<word>[:n]=<len>|" per response; asserts that the
 * bytes of all events reassemble the input exactly. */
static void run(const char *in, size_t inlen, size_t step, char *out,
                size_t cap)
{
    cg_imaps *s = cg_imaps_new();
    assert_non_null(s);
    out[0] = '\0';
    char re[8192];
    size_t relen = 0, resp_bytes = 0;
    size_t pos = 0;
    while (pos < inlen) {
        size_t n = step ? step : inlen - pos;
        if (n > inlen - pos) n = inlen - pos;
        const uint8_t *b = (const uint8_t *)in + pos;
        size_t off = 0;
        for (;;) {
            cg_imaps_event ev;
            size_t used = cg_imaps_feed(s, b + off, n - off, &ev);
            off += used;
            size_t o = strlen(out);
            if (ev.type == CG_IMAPS_EV_NONE)
                break;
            if (ev.type == CG_IMAPS_EV_ERROR) {
                snprintf(out + o, cap - o, "ERR:%s|", ev.error);
                cg_imaps_free(s);
                return;
            }
            if (ev.type == CG_IMAPS_EV_HEAD) {
                const cg_imaps_head *h = cg_imaps_head_of(s);
                if (h->has_number)
                    snprintf(out + o, cap - o, "%s:%s:%s:%u", kind_name(h->kind), h->tag, h->word, h->number);
                else
                    snprintf(out + o, cap - o, "%s:%s:%s", kind_name(h->kind), h->tag, h->word);
                resp_bytes = 0;
            }
            if (ev.type == CG_IMAPS_EV_HEAD || ev.type == CG_IMAPS_EV_DATA) {
                assert_true(relen + ev.len <= sizeof re);
                memcpy(re + relen, ev.data, ev.len);
                relen += ev.len;
                resp_bytes += ev.len;
            }
            if (ev.type == CG_IMAPS_EV_END)
                snprintf(out + o, cap - o, "=%zu|", resp_bytes);
            if (off == n && ev.type != CG_IMAPS_EV_HEAD && ev.type != CG_IMAPS_EV_DATA)
                break;
        }
        pos += n;
    }
    /* flush a pending END */
    cg_imaps_event ev;
    cg_imaps_feed(s, NULL, 0, &ev);
    if (ev.type == CG_IMAPS_EV_END)
        snprintf(out + strlen(out), cap - strlen(out), "=%zu|", resp_bytes);
    assert_int_equal(relen, inlen);
    assert_memory_equal(re, in, inlen);
    cg_imaps_free(s);
}

static const struct { const char *in, *want; } cases[] = {
    { "* OK [CAPABILITY IMAP4rev1] ready\r\n", "U::OK=35|" },
    { "a1 OK done\r\n", "T:a1:OK=12|" },
    { "a1 no [NONEXISTENT] x\r\n", "T:a1:NO=23|" },
    { "+ idling\r\n", "C::=10|" },
    { "* 3 FETCH (BODY[] {5}\r\nab\r\nc)\r\na OK\r\n", "U::FETCH:3=31|T:a:OK=6|" },
    /* a literal whose contents look like responses */
    { "* 1 FETCH (BODY[] {12}\r\na OK fake\r\n)\r\n", "U::FETCH:1=38|" },
    { "* LIST () \"/\" {3}\r\na}b\r\n* LIST () \"/\" x\r\n", "U::LIST=24|U::LIST=17|" },
    /* "{5}" in a quoted string or in resp-text is not a literal */
    { "* LIST () \"/\" \"a{5}\"\r\nb OK\r\n", "U::LIST=22|T:b:OK=6|" },
    { "a NO Mailbox doesn't exist: x{5}\r\nb OK\r\n", "T:a:NO=34|T:b:OK=6|" },
    { "* BYE bye {3}\r\n", "U::BYE=15|" },
    { "+ {3}\r\nb OK\r\n", "C::=7|T:b:OK=6|" },
    { "* 2 FETCH (BINARY[] ~{2}\r\n\0\1)\r\n", "U::FETCH:2=31|" },
    { "* 1 FETCH (X {0}\r\n)\r\n", "U::FETCH:1=21|" },
    { "* CAPABILITY IMAP4rev1 IDLE\n", "U::CAPABILITY=28|" },
    { "* 1 FETCH (X {999999999999999999999})\r\n", "ERR:literal size overflows|" },
    /* past the words the scan goes in bulk: escaped quotes and braces
     * inside quoted strings, then a real literal */
    { "* 1 FETCH (ENVELOPE (\"a \\\"{3}\\\" b\" NIL) BODY[] {3}\r\nabc)\r\nb OK\r\n",
      "U::FETCH:1=58|T:b:OK=6|" },
    { "* LIST () \"\\\\\" \"x\\\\\\\"{2}\"\r\nc OK {4}\r\n", "U::LIST=27|T:c:OK=10|" },
};

static void test_table(void **state)
{
    char out[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].in);
        if (strstr(cases[i].in, "~{2}"))
            len = 31;
        for (size_t step = 0; step <= 1; step++) {
            run(cases[i].in, len, step, out, sizeof out);
            if (strcmp(out, cases[i].want) != 0)
                fail_msg("case %zu step %zu:\n got: %s\nwant: %s", i, step, out,
                         cases[i].want);
        }
    }
}

/* A first line longer than the scanner's head (1 KiB): the head is
 * reported full, the rest of the line is scanned for the literal after
 * it, whole and one byte at a time. */
static void test_line_longer_than_the_head(void **state)
{
    char in[4096], want[128], out[1024];
    char ys[1501];
    memset(ys, 'y', 1500);
    ys[1500] = '\0';
    int n = snprintf(in, sizeof in, "* 1 FETCH (X \"%s {9}\" BODY[] {2}\r\nzz)\r\na OK\r\n", ys);
    assert_true(n > 0 && (size_t)n < sizeof in);
    snprintf(want, sizeof want, "U::FETCH:1=%d|T:a:OK=6|", n - 6);
    for (size_t step = 0; step <= 1; step++) {
        run(in, (size_t)n, step, out, sizeof out);
        assert_string_equal(out, want);
    }
}

/* A 1 MiB literal passes in bulk: few events, the boundary after it found. */
static void test_large_literal_streams(void **state)
{
    static uint8_t big[1 << 20];
    memset(big, 'x', sizeof big);
    cg_imaps *s = cg_imaps_new();
    const char *h = "* 1 FETCH (BODY[] {1048576}\r\n";
    cg_imaps_event ev;
    size_t n = cg_imaps_feed(s, (const uint8_t *)h, strlen(h), &ev);
    assert_int_equal(ev.type, CG_IMAPS_EV_HEAD);
    assert_int_equal(n, strlen(h));
    n = cg_imaps_feed(s, big, sizeof big, &ev);
    assert_int_equal(ev.type, CG_IMAPS_EV_DATA);
    assert_true(ev.literal);
    assert_int_equal(n, sizeof big);
    const char *t = ")\r\nz OK\r\n";
    n = cg_imaps_feed(s, (const uint8_t *)t, strlen(t), &ev);
    assert_int_equal(ev.type, CG_IMAPS_EV_DATA);
    assert_int_equal(n, 3);
    n = cg_imaps_feed(s, (const uint8_t *)t + 3, strlen(t) - 3, &ev);
    assert_int_equal(ev.type, CG_IMAPS_EV_END);
    n = cg_imaps_feed(s, (const uint8_t *)t + 3, strlen(t) - 3, &ev);
    assert_int_equal(ev.type, CG_IMAPS_EV_HEAD);
    assert_int_equal(cg_imaps_head_of(s)->kind, CG_IMAPS_TAGGED);
    assert_string_equal(cg_imaps_head_of(s)->tag, "z");
    cg_imaps_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_line_longer_than_the_head),
        cmocka_unit_test(test_large_literal_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
