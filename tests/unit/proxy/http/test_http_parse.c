/* tests/unit/proxy/http/test_http_parse.c — the strict HTTP parser: well-formed heads and
 * bodies parse; every request-smuggling shape of the issue (CL+TE,
 * duplicate or malformed CL, TE other than chunked, obs-fold, bare CR/LF,
 * NUL, whitespace before colon, foreign absolute-form, CONNECT, HTTP/0.9
 * and 2.0) is refused with its status; limits give 414/431; responses are
 * framed by CL, chunked, close, and HEAD/204/304 have no body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/http/parse.h"

typedef struct sink {
    char data[4096];
    size_t len;
} sink;

static void sink_body(void *ctx, const uint8_t *b, size_t n)
{
    sink *s = ctx;
    assert_true(s->len + n <= sizeof s->data);
    memcpy(s->data + s->len, b, n);
    s->len += n;
}

/* A feed's outcome as the tables below write it: 1 done, 0 more, else
 * the status the parser refused with. */
static int outcome(const cg_http_parser *p, cg_http_feed f)
{
    return f == CG_HTTP_DONE ? 1 : f == CG_HTTP_MORE ? 0 : p->refused_status;
}

/* Feeds msg in pieces of step bytes: head, then body. Returns the head
 * result (1 ok or a status); body result in *body_r, body bytes in s. */
static int parse(cg_http_parser *p, const char *msg, size_t step, int *body_r,
                 sink *s, size_t *rest)
{
    size_t n = strlen(msg), off = 0, used;
    const char *why = NULL;
    int r = 0;
    static char last[256];
    p->on_body = sink_body;
    p->ctx = s;
    while (off < n && r == 0) {
        size_t k = n - off < step ? n - off : step;
        r = outcome(p, cg_http_feed_head(p, (const uint8_t *)msg + off, k, &used, &why));
        off += used;
    }
    if (r != 1) {
        snprintf(last, sizeof last, "%s", why ? why : "");
        if (getenv("TEST_VERBOSE"))
            fprintf(stderr, "refused: %s\n", last);
        *body_r = -1;
        return r;
    }
    int b = p->complete ? 1 : 0;
    while (off < n && b == 0) {
        size_t k = n - off < step ? n - off : step;
        b = outcome(p, cg_http_feed_body(p, (const uint8_t *)msg + off, k, &used, &why));
        off += used;
    }
    *body_r = b;
    if (rest)
        *rest = n - off;
    return 1;
}

typedef struct rcase {
    const char *name;
    const char *msg;
    int head;  /* expected head result */
} rcase;

#define H "Host: gw.example\r\n"
static const rcase reqs[] = {
    {"plain GET", "GET /a HTTP/1.1\r\n" H "\r\n", 1},
    {"HTTP/1.0 without Host", "GET /a HTTP/1.0\r\n\r\n", 1},
    {"leading CRLF ignored", "\r\nGET /a HTTP/1.1\r\n" H "\r\n", 1},
    {"absolute-form for this host", "GET http://gw.example/a HTTP/1.1\r\n" H "\r\n", 1},
    {"asterisk OPTIONS", "OPTIONS * HTTP/1.1\r\n" H "\r\n", 1},
    {"CL and TE", "POST /a HTTP/1.1\r\n" H "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TE and CL", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
    {"duplicate CL differing", "POST /a HTTP/1.1\r\n" H "Content-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
    {"duplicate CL equal", "POST /a HTTP/1.1\r\n" H "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400},
    {"CL list", "POST /a HTTP/1.1\r\n" H "Content-Length: 3, 3\r\n\r\n", 400},
    {"CL sign", "POST /a HTTP/1.1\r\n" H "Content-Length: +3\r\n\r\n", 400},
    {"CL hex", "POST /a HTTP/1.1\r\n" H "Content-Length: 0x3\r\n\r\n", 400},
    {"CL empty", "POST /a HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400},
    {"CL huge", "POST /a HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 400},
    {"TE gzip", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400},
    {"TE chunked, gzip", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400},
    {"TE chunked twice", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TE xchunked", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 400},
    {"TE with vertical tab", "POST /a HTTP/1.1\r\n" H "Transfer-Encoding:\x0b" "chunked\r\n\r\n", 400},
    {"TE in HTTP/1.0", "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"obs-fold SP", "GET /a HTTP/1.1\r\n" H "X-A: b\r\n c\r\n\r\n", 400},
    {"obs-fold HTAB", "GET /a HTTP/1.1\r\n" H "X-A: b\r\n\tc\r\n\r\n", 400},
    {"obs-fold hiding TE", "POST /a HTTP/1.1\r\n" H "X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n", 400},
    {"bare LF line end", "GET /a HTTP/1.1\n" H "\r\n", 400},
    {"bare LF in header", "GET /a HTTP/1.1\r\n" H "X-A: b\nX-B: c\r\n\r\n", 400},
    {"bare CR in header", "GET /a HTTP/1.1\r\n" H "X-A: b\rX-B: c\r\n\r\n", 400},
    {"space before colon", "GET /a HTTP/1.1\r\n" H "Content-Length : 3\r\n\r\n", 400},
    {"tab before colon", "GET /a HTTP/1.1\r\n" H "X-A\t: b\r\n\r\n", 400},
    {"header without colon", "GET /a HTTP/1.1\r\n" H "X-A b\r\n\r\n", 400},
    {"empty header name", "GET /a HTTP/1.1\r\n" H ": b\r\n\r\n", 400},
    {"control char in value", "GET /a HTTP/1.1\r\n" H "X-A: b\x01" "c\r\n\r\n", 400},
    {"absolute-form other host", "GET http://evil.example/a HTTP/1.1\r\n" H "\r\n", 400},
    {"absolute-form userinfo", "GET http://x@gw.example/a HTTP/1.1\r\n" H "\r\n", 400},
    {"authority-form CONNECT", "CONNECT gw.example:443 HTTP/1.1\r\n" H "\r\n", 400},
    {"asterisk GET", "GET * HTTP/1.1\r\n" H "\r\n", 400},
    {"relative target", "GET a/b HTTP/1.1\r\n" H "\r\n", 400},
    {"HTTP/0.9", "GET /a\r\n\r\n", 400},
    {"HTTP/2.0", "GET /a HTTP/2.0\r\n" H "\r\n", 505},
    {"HTTP/1.2", "GET /a HTTP/1.2\r\n" H "\r\n", 400},
    {"no Host in 1.1", "GET /a HTTP/1.1\r\n\r\n", 400},
    {"two Host", "GET /a HTTP/1.1\r\n" H H "\r\n", 400},
    {"Host with slash", "GET /a HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
    {"double space request line", "GET  /a HTTP/1.1\r\n" H "\r\n", 400},
    {"lowercase version", "GET /a http/1.1\r\n" H "\r\n", 400},
};

static void test_request_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        /* byte by byte and whole: the answer must not depend on how the
         * bytes arrive */
        size_t steps[] = {1, 7, 100000};
        for (size_t k = 0; k < 3; k++) {
            cg_http_parser p;
            assert_int_equal(cg_http_parser_init(&p, true, 4096, 20, 1024), 0);
            sink s = {0};
            int b;
            int r = parse(&p, reqs[i].msg, steps[k], &b, &s, NULL);
            /* a NUL cannot be in a C string literal case: see below */
            if (r != reqs[i].head)
                fail_msg("\"%s\" (step %zu): got %d, want %d", reqs[i].name,
                         steps[k], r, reqs[i].head);
            if (r == 1)
                assert_true(p.head.path.len > 0);
            cg_http_parser_free(&p);
        }
    }
}

static void test_nul_refused(void **state)
{
    (void)state;
    static const char msg[] = "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: b\0c\r\n\r\n";
    cg_http_parser p;
    assert_int_equal(cg_http_parser_init(&p, true, 4096, 20, 1024), 0);
    size_t used;
    const char *why;
    assert_int_equal(cg_http_feed_head(&p, (const uint8_t *)msg, sizeof msg - 1, &used, &why),
                     CG_HTTP_REFUSED);
    assert_int_equal(p.refused_status, 400);
    cg_http_parser_free(&p);
}

static void test_limits(void **state)
{
    (void)state;
    cg_http_parser p;
    char big[8192];
    /* request line over max_line: 414 */
    assert_int_equal(cg_http_parser_init(&p, true, 4096, 5, 100), 0);
    snprintf(big, sizeof big, "GET /%0200d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    sink s = {0};
    int b;
    assert_int_equal(parse(&p, big, 1000, &b, &s, NULL), 414);
    cg_http_parser_free(&p);
    /* too many headers: 431 */
    assert_int_equal(cg_http_parser_init(&p, true, 4096, 5, 100), 0);
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\n"
             "D: 1\r\nE: 1\r\n\r\n");
    assert_int_equal(parse(&p, big, 1000, &b, &s, NULL), 431);
    cg_http_parser_free(&p);
    /* head bigger than max_header_bytes: 431 */
    assert_int_equal(cg_http_parser_init(&p, true, 200, 50, 100), 0);
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: %0300d\r\n\r\n", 0);
    assert_int_equal(parse(&p, big, 1000, &b, &s, NULL), 431);
    cg_http_parser_free(&p);
}

static void test_bodies_and_pipelining(void **state)
{
    (void)state;
    cg_http_parser p;
    assert_int_equal(cg_http_parser_init(&p, true, 4096, 20, 1024), 0);
    sink s = {0};
    int b;
    size_t rest;
    const char *m = "PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n";
    assert_int_equal(parse(&p, m, 3, &b, &s, &rest), 1);
    assert_int_equal(b, 1);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.data, "hello", 5);
    assert_int_equal(p.head.framing, CG_HTTP_BODY_LENGTH);
    /* the pipelined next request is left over, untouched */
    assert_int_equal(rest, strlen("GET /b HTTP/1.1\r\n"));
    assert_true(cg_http_span_eq(&p, p.head.method_name, "PUT"));
    assert_true(cg_http_span_eq(&p, p.head.path, "/a"));

    cg_http_parser_reset(&p);
    memset(&s, 0, sizeof s);
    m = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT";
    assert_int_equal(parse(&p, m, 1, &b, &s, &rest), 1);
    assert_int_equal(b, 1);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.data, "abcde", 5);
    assert_int_equal(rest, 4);

    /* a malformed chunk size is refused */
    cg_http_parser_reset(&p);
    memset(&s, 0, sizeof s);
    m = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_int_equal(parse(&p, m, 100, &b, &s, &rest), 1);
    assert_int_equal(b, 400);

    /* keep-alive: HTTP/1.1 default on, Connection: close off */
    cg_http_parser_reset(&p);
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                           100, &b, &s, NULL), 1);
    assert_false(p.head.keep_alive);
    cg_http_parser_reset(&p);
    assert_int_equal(parse(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 100, &b, &s, NULL), 1);
    assert_true(p.head.keep_alive);
    assert_true(p.complete);
    cg_http_parser_free(&p);
}

static void test_responses(void **state)
{
    (void)state;
    cg_http_parser p;
    assert_int_equal(cg_http_parser_init(&p, false, 4096, 50, 1024), 0);
    sink s = {0};
    int b;
    size_t rest;
    /* Content-Length */
    assert_int_equal(parse(&p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiX", 5, &b, &s, &rest), 1);
    assert_int_equal(b, 1);
    assert_int_equal(p.head.status, 200);
    assert_int_equal(rest, 1);
    /* chunked */
    cg_http_parser_reset(&p);
    memset(&s, 0, sizeof s);
    assert_int_equal(parse(&p, "HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "4\r\nabcd\r\n0\r\n\r\n", 2, &b, &s, &rest), 1);
    assert_int_equal(b, 1);
    assert_int_equal(s.len, 4);
    /* close-delimited: complete only at EOF */
    cg_http_parser_reset(&p);
    memset(&s, 0, sizeof s);
    assert_int_equal(parse(&p, "HTTP/1.1 200 OK\r\n\r\nsome bytes", 100, &b, &s, &rest), 1);
    assert_int_equal(b, 0);
    assert_int_equal(p.head.framing, CG_HTTP_BODY_EOF);
    const char *why;
    assert_int_equal(cg_http_finish(&p, &why), CG_HTTP_DONE);
    assert_int_equal(s.len, 10);
    /* HEAD response with Content-Length: no body follows */
    cg_http_parser_reset(&p);
    p.no_body = true;
    memset(&s, 0, sizeof s);
    assert_int_equal(parse(&p, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1", 100, &b, &s, &rest), 1);
    assert_true(p.complete);
    assert_int_equal(p.head.framing, CG_HTTP_BODY_NONE);
    assert_int_equal(p.head.content_length, 100);
    /* 204 and 304 have no body */
    int codes[] = {204, 304};
    for (int i = 0; i < 2; i++) {
        char m[128];
        snprintf(m, sizeof m, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", codes[i]);
        cg_http_parser_reset(&p);
        assert_int_equal(parse(&p, m, 100, &b, &s, &rest), 1);
        assert_true(p.complete);
    }
    /* a response with CL and TE is refused (502 to the client) */
    cg_http_parser_reset(&p);
    assert_int_equal(parse(&p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                           100, &b, &s, &rest), 502);
    /* cut short: finish reports the error */
    cg_http_parser_reset(&p);
    assert_int_equal(parse(&p, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nabc", 100, &b, &s, &rest), 1);
    assert_int_equal(b, 0);
    assert_int_equal(cg_http_finish(&p, &why), CG_HTTP_REFUSED);
    assert_int_equal(p.refused_status, 502);
    cg_http_parser_free(&p);
}

static void test_list_has(void **state)
{
    (void)state;
    assert_true(cg_http_list_has("keep-alive, Upgrade", 19, "upgrade"));
    assert_true(cg_http_list_has(" close ", 7, "close"));
    assert_false(cg_http_list_has("closed", 6, "close"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_nul_refused),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_bodies_and_pipelining),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_list_has),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
