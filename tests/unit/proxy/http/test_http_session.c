/* tests/unit/proxy/http/test_http_session.c — the whole HTTP gateway
 * (cg_http_proto) driven through the in-memory connection of
 * tests/support/session_driver.c, without sockets: what reaches the
 * backend and what the client reads, for an allowed request, a denied
 * one, one without credentials and one for a host the listener does not
 * serve. The policy is session_driver.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/conn.h"
#include "proxy/http/http.h"
#include "proxy/http/internal.h"
#include "tests/support/session_driver.h"

static cg_upstream_cfg up = {
    .name = "nginx", .address = "127.0.0.1:8080", .connect_timeout = 5,
    .response_timeout = 30, .pool_size = 4, .principal_header = "X-Remote-User",
};

#define LISTENER(nm, auths, names)                                                           \
    {                                                                                        \
        .name = nm, .protocol = CG_PROTO_HTTP, .listen = "127.0.0.1:443",                    \
        .tls = CG_TLS_IMPLICIT, .auth = auths, .digest_realm = (char *)"cpm",                \
        .digest_nonce_lifetime = 300, .upstream_name = (char *)"nginx", .upstream = &up,     \
        .server_names = names, .insecure = CG_INSECURE_REJECT, .tls12 = true, .tls13 = true, \
        .handshake_timeout = 10, .idle_timeout = 60, .client_timeout = 30, .max_line = 8192, \
        .max_headers = 100, .max_header_bytes = 16384, .max_body = 1 << 20,                  \
    }

static cg_listener_cfg l_cert = LISTENER("https-cert", CG_AUTH_CERT, (char *)"gw.example");
static cg_listener_cfg l_digest = LISTENER("https-digest", CG_AUTH_DIGEST, NULL);

enum { V_ALICE, V_DIGEST };
static const sd_variant variants[] = {
    [V_ALICE] = { &l_cert, "alice", CG_AUTH_CERT, true, NULL },
    [V_DIGEST] = { &l_digest, NULL, 0, true, NULL },
};

static int setup_all(void **state)
{
    (void)state;
    sd_init();
    return 0;
}

static void run(const sd_script *s)
{
    assert_false(s->over);
    sd_script_run(&cg_http_proto, variants, sizeof variants / sizeof variants[0], s);
    assert_false(sd_captured.client.failed);
    assert_false(sd_captured.backend.failed);
}

static const char *client(void)
{
    return sd_captured.client.p ? sd_captured.client.p : "";
}

static const char *backend(void)
{
    return sd_captured.backend.p ? sd_captured.backend.p : "";
}

/* An allowed GET goes to the backend with the rewritten head (canonical
 * path, the gateway's Host, the principal header it sets, never the
 * client's, nor CPM-Originator or CPM-Transaction-Id), and the backend's answer reaches the client with
 * X-Transaction-Id. */
static void test_allowed_get_is_forwarded_and_answered(void **state)
{
    (void)state;
    sd_script s;
    sd_script_init(&s, V_ALICE);
    sd_script_text(&s, SD_CLIENT,
                   "GET /content/alice/./docs/../a%20b HTTP/1.1\r\nHost: gw.example:8443\r\n"
                   "X-Remote-User: mallory\r\nAccept: text/plain\r\n"
                   "CPM-Originator: bob@b.example\r\nCPM-Transaction-Id: a.1\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    sd_script_text(&s, SD_BACKEND,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
    run(&s);

    assert_int_equal(sd_captured.backend_conns, 1);
    const char *b = backend();
    assert_true(strncmp(b, "GET /content/alice/a%20b HTTP/1.1\r\nHost: gw.example\r\n", 52) == 0);
    assert_non_null(strstr(b, "\r\nAccept: text/plain\r\n"));
    assert_non_null(strstr(b, "\r\nX-Remote-User: alice\r\n"));
    assert_null(strstr(b, "mallory"));
    /* SPEC 7: a user principal's CPM- fields are ignored and never forwarded */
    assert_null(strstr(b, "CPM-"));
    assert_null(strstr(b, "bob@b.example"));
    assert_non_null(strstr(b, "\r\nX-Forwarded-Proto: https\r\n"));

    const char *c = client();
    assert_true(strncmp(c, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(c, "\r\nX-Transaction-Id: "));
    assert_non_null(strstr(c, "\r\nContent-Length: 5\r\n"));
    size_t n = strlen(c);
    assert_true(n > 5 && strcmp(c + n - 5, "hello") == 0);
}

/* A path the ACL denies is answered 403 by the gateway; nothing of it
 * reaches the backend, not even a connection. */
static void test_denied_path_gets_403_and_nothing_reaches_the_backend(void **state)
{
    (void)state;
    sd_script s;
    sd_script_init(&s, V_ALICE);
    sd_script_text(&s, SD_CLIENT,
                   "GET /content/secret/plans HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    run(&s);

    assert_int_equal(sd_captured.backend_conns, 0);
    assert_int_equal(sd_captured.backend.len, 0);
    const char *c = client();
    assert_true(strncmp(c, "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
    assert_non_null(strstr(c, "\r\nX-Transaction-Id: "));
    assert_non_null(strstr(c, "read denied on \"/content/secret/plans\""));
}

/* A request without credentials on a Digest listener gets 401 with the
 * challenges (SHA-256 and MD5, SPEC 4); the backend sees nothing. */
static void test_unauthenticated_request_on_digest_gets_401_with_challenges(void **state)
{
    (void)state;
    sd_script s;
    sd_script_init(&s, V_DIGEST);
    sd_script_text(&s, SD_CLIENT, "GET /content/alice/x HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    run(&s);

    assert_int_equal(sd_captured.backend_conns, 0);
    const char *c = client();
    assert_true(strncmp(c, "HTTP/1.1 401 ", 13) == 0);
    const char *d1 = strstr(c, "\r\nWWW-Authenticate: Digest ");
    assert_non_null(d1);
    assert_non_null(strstr(d1 + 1, "\r\nWWW-Authenticate: Digest "));
    assert_non_null(strstr(c, "algorithm=SHA-256"));
    assert_non_null(strstr(c, "realm=\"cpm\""));
}

/* A Host outside server_names is 421 before anything is forwarded. */
static void test_host_outside_server_names_gets_421(void **state)
{
    (void)state;
    sd_script s;
    sd_script_init(&s, V_ALICE);
    sd_script_text(&s, SD_CLIENT,
                   "GET /content/alice/x HTTP/1.1\r\nHost: backend.internal\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    run(&s);

    assert_int_equal(sd_captured.backend_conns, 0);
    const char *c = client();
    assert_true(strncmp(c, "HTTP/1.1 421 ", 13) == 0);
    assert_non_null(strstr(c, "this listener does not serve that host"));
}

/* Keep-alive: a refused request does not end the connection; the next
 * one on it is forwarded (the stages start afresh). */
static void test_refusal_keeps_the_connection_for_the_next_request(void **state)
{
    (void)state;
    sd_script s;
    sd_script_init(&s, V_ALICE);
    sd_script_text(&s, SD_CLIENT,
                   "GET /content/secret/x HTTP/1.1\r\nHost: gw.example\r\n\r\n"
                   "GET /content/alice/y HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    sd_script_text(&s, SD_BACKEND, "HTTP/1.1 204 No Content\r\n\r\n");
    run(&s);

    const char *c = client();
    const char *second = strstr(c, "HTTP/1.1 204 No Content\r\n");
    assert_true(strncmp(c, "HTTP/1.1 403 ", 13) == 0);
    assert_non_null(second);
    assert_non_null(strstr(second, "X-Transaction-Id: "));
    assert_true(strncmp(backend(), "GET /content/alice/y HTTP/1.1\r\n", 31) == 0);
    assert_null(strstr(backend(), "secret"));
}

/* What the session held after each operation: its request state
 * (http_exch, with the request buffers), and which one. */
static bool g_held[16];
static const void *g_ex[16];
static size_t g_nheld;

static void record_buffers(enum sd_op op, const void *session)
{
    const http_sess *hs = session;
    (void)op;
    if (g_nheld < sizeof g_held / sizeof g_held[0]) {
        g_ex[g_nheld] = hs->ex;
        g_held[g_nheld++] = hs->ex != NULL;
    }
}

/* A connection holds no request state before its first request; a
 * keep-alive request right after another uses the same; without a
 * request for a while (its protocol timer) the connection gives it back
 * with the request buffers, and its next request is forwarded and
 * answered as the first was. */
static void test_idle_keep_alive_connection_gives_back_its_request_buffers(void **state)
{
    (void)state;
    /* what lasts between requests only: the request state is apart */
    assert_true(sizeof(http_sess) <= 64);
    sd_script s;
    sd_script_init(&s, V_ALICE);
    sd_script_op(&s, SD_DRAIN);
    sd_script_text(&s, SD_CLIENT, "GET /content/alice/a HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    sd_script_text(&s, SD_BACKEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    sd_script_text(&s, SD_CLIENT, "GET /content/alice/b HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    sd_script_text(&s, SD_BACKEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthere");
    sd_script_op(&s, SD_TIMER);
    sd_script_text(&s, SD_CLIENT, "GET /content/alice/c HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    sd_script_op(&s, SD_CONNECT_OK);
    sd_script_text(&s, SD_BACKEND, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld");
    assert_false(s.over);
    sd_checker chk = sd_capture_checker;
    chk.after = record_buffers;
    g_nheld = 0;
    sd_run(&cg_http_proto, variants, sizeof variants / sizeof variants[0], &chk, s.b, s.len);
    cg_buf_add(&sd_captured.client, "", 0);
    cg_buf_add(&sd_captured.backend, "", 0);

    assert_int_equal(g_nheld, 11);
    assert_false(g_held[0]); /* open, no request yet: no request state */
    assert_true(g_held[1]);  /* the first byte of a request makes it */
    assert_true(g_held[3]);  /* answered, idle: still held (a busy connection keeps it) */
    assert_ptr_equal(g_ex[4], g_ex[3]); /* the next request uses it again */
    assert_ptr_equal(g_ex[6], g_ex[3]);
    assert_false(g_held[7]); /* the idle timer passed: given back */
    assert_true(g_held[8]);  /* the next request makes it again */
    assert_true(g_held[10]);
    const char *c = client();
    const char *first = strstr(c, "hello"), *second = strstr(c, "there");
    const char *third = strstr(c, "world");
    assert_non_null(first);
    assert_non_null(second);
    assert_non_null(third);
    assert_true(first < second && second < third);
    assert_non_null(strstr(backend(), "GET /content/alice/b HTTP/1.1\r\n"));
    assert_non_null(strstr(backend(), "GET /content/alice/c HTTP/1.1\r\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allowed_get_is_forwarded_and_answered),
        cmocka_unit_test(test_denied_path_gets_403_and_nothing_reaches_the_backend),
        cmocka_unit_test(test_unauthenticated_request_on_digest_gets_401_with_challenges),
        cmocka_unit_test(test_host_outside_server_names_gets_421),
        cmocka_unit_test(test_refusal_keeps_the_connection_for_the_next_request),
        cmocka_unit_test(test_idle_keep_alive_connection_gives_back_its_request_buffers),
    };
    return cmocka_run_group_tests(tests, setup_all, NULL);
}
