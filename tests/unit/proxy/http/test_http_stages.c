/* tests/unit/proxy/http/test_http_stages.c — the stages of the HTTP request
 * pipeline (proxy/http/stages.c), each run alone on a parsed head, without
 * a connection: what each refuses (status, detail, head lines, body) and
 * what it leaves for the next. The policy is session_driver.c's (alice may
 * write /content/alice/, only read /content/pub/; /content/secret is
 * denied to all). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/acl.h"
#include "proxy/http/internal.h"
#include "tests/support/session_driver.h"

static cg_upstream_cfg up = {
    .name = "nginx", .address = "127.0.0.1:8080", .principal_header = "X-Remote-User",
};

static cg_listener_cfg listener = {
    .name = "https", .protocol = CG_PROTO_HTTP, .tls = CG_TLS_IMPLICIT, .auth = CG_AUTH_CERT,
    .upstream = &up, .digest_realm = (char *)"cpm", .digest_nonce_lifetime = 300,
    .max_body = 1 << 20,
};

/* One request: its session (no connection) and what the request uses,
 * the connection's facts and the stages' shared context. */
typedef struct one {
    http_sess s;
    http_exch ex;
    cg_conn_info ci;
    cg_http_stage_ctx x;
    cg_http_refusal no;
} one;

static int setup_all(void **state)
{
    (void)state;
    sd_init();
    return 0;
}

/* Parses head; the connection is alice's (a certificate identity) over
 * TLS on l. */
static one *start(const cg_listener_cfg *l, const char *head, bool alice)
{
    one *o = calloc(1, sizeof *o);
    assert_non_null(o);
    cg_conn_info_clear(&o->ci);
    o->ci.listener = l;
    o->ci.tls = true;
    snprintf(o->ci.client_addr, sizeof o->ci.client_addr, "192.0.2.7");
    if (alice) {
        cg_snapshot *snap = cg_snapshot_acquire();
        assert_non_null(snap);
        const cg_principal *p = cg_snapshot_principal_by_name(snap, "alice");
        assert_non_null(p);
        o->ci.principal_id = p->id;
        o->ci.auth_method = CG_AUTH_CERT;
        assert_int_equal(cg_conn_info_set(&o->ci.principal, "alice"), 0);
        cg_snapshot_release(snap);
    }
    o->s.ex = &o->ex;
    assert_int_equal(cg_http_parser_init(&o->ex.req, true, 16384, 100, 8192), 0);
    size_t used = 0;
    const char *why = NULL;
    assert_int_equal(cg_http_feed_head(&o->ex.req, (const uint8_t *)head, strlen(head), &used,
                                       &why), CG_HTTP_DONE);
    snprintf(o->ex.r.txid, sizeof o->ex.r.txid, "t.1");
    cg_http_stage_ctx_init(&o->x, &o->ci);
    return o;
}

static void finish(one *o)
{
    free(o->x.if_out);
    if (o->x.snap)
        cg_snapshot_release(o->x.snap);
    cg_http_parser_free(&o->ex.req);
    cg_http_parser_free(&o->ex.resp);
    free(o->ex.paths);
    cg_conn_info_clear(&o->ci);
    free(o);
}

/* Runs the stages from the first through last, in the pipeline's order;
 * returns how the last one ran ended (or the first that did not go on). */
static cg_http_step run_to(one *o, cg_http_stage_fn last)
{
    static const cg_http_stage_fn order[] = {
        cg_http_stage_request, cg_http_stage_target, cg_http_stage_host,
        cg_http_stage_upstream, cg_http_stage_policy, cg_http_stage_authenticate,
        cg_http_stage_originator, cg_http_stage_route, cg_http_stage_method, cg_http_stage_expect, cg_http_stage_depth,
        cg_http_stage_acl, cg_http_stage_destination, cg_http_stage_route_destination,
        cg_http_stage_if, cg_http_stage_route_if, cg_http_stage_body_limit,
    };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        memset(&o->no, 0, sizeof o->no);
        cg_http_step st = order[i](&o->s, &o->x, &o->no);
        if (st != CG_HTTP_NEXT || order[i] == last)
            return st;
    }
    fail_msg("stage not in the order");
    return CG_HTTP_TAKEN;
}

static void test_target_stage_refuses_a_bad_path_with_400(void **state)
{
    (void)state;
    one *o = start(&listener, "GET /content/a%2fb HTTP/1.1\r\nHost: gw\r\n\r\n", true);
    assert_int_equal(cg_http_stage_request(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_target(&o->s, &o->x, &o->no), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 400);
    assert_false(o->no.close);
    assert_string_equal(o->ex.r.path, ""); /* the answer names no resource */
    finish(o);

    /* a good one is normalised for the ACL and the backend */
    o = start(&listener, "GET /content/alice/./x/../y%20z?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n",
              true);
    assert_int_equal(cg_http_stage_request(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_target(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_string_equal(o->ex.r.path, "/content/alice/y z");
    assert_string_equal(o->ex.r.canon, "/content/alice/y%20z");
    assert_int_equal(o->ex.r.query_len, 3);
    finish(o);
}

static void test_target_stage_refuses_a_too_long_path_with_414(void **state)
{
    (void)state;
    char head[CG_HTTP_PATH_MAX + 128];
    int n = snprintf(head, sizeof head, "GET /");
    memset(head + n, 'a', CG_HTTP_PATH_MAX + 8);
    snprintf(head + n + CG_HTTP_PATH_MAX + 8, sizeof head - (size_t)n - CG_HTTP_PATH_MAX - 8,
             " HTTP/1.1\r\nHost: gw\r\n\r\n");
    one *o = start(&listener, head, true);
    assert_int_equal(cg_http_stage_request(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_target(&o->s, &o->x, &o->no), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 414);
    finish(o);
}

/* Method rights: PUT needs write, which alice lacks on /content/pub/:
 * 403 naming the right and the path, decided by the ACL ("deny"). */
static void test_method_rights_refuse_a_write_alice_lacks_with_403(void **state)
{
    (void)state;
    one *o = start(&listener, "PUT /content/pub/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\n",
                   true);
    assert_int_equal(run_to(o, cg_http_stage_method), CG_HTTP_NEXT);
    assert_int_equal(o->x.src, CG_RIGHT_WRITE);
    assert_int_equal(cg_http_stage_acl(&o->s, &o->x, &o->no), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 403);
    assert_string_equal(o->no.detail, "write denied on \"/content/pub/x\"");
    assert_string_equal(o->ex.r.decision, "deny");
    assert_string_equal(o->ex.r.principal, "alice");
    finish(o);

    /* reading there is hers */
    o = start(&listener, "GET /content/pub/x HTTP/1.1\r\nHost: gw\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_string_equal(o->ex.r.decision, "allow");
    finish(o);
}

static void test_method_stage_refuses_a_method_outside_the_table_with_405(void **state)
{
    (void)state;
    one *o = start(&listener, "TRACE /content/alice/x HTTP/1.1\r\nHost: gw\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_method), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 405);
    assert_non_null(o->no.extra);
    assert_true(strncmp(o->no.extra, "Allow: ", 7) == 0);
    assert_non_null(strstr(o->no.extra, "PROPFIND"));
    finish(o);
}

/* A subtree operation is refused when a deny lies below its target. */
static void test_acl_stage_refuses_a_delete_over_a_denied_subtree(void **state)
{
    (void)state;
    one *o = start(&listener, "DELETE /content/alice/ HTTP/1.1\r\nHost: gw\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_acl), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 403);
    assert_string_equal(o->no.detail, "delete denied below \"/content/alice/\"");
    finish(o);
}

/* WebDAV: the Destination becomes the canonical path of this gateway
 * (what the backend gets) and is judged decoded. */
static void test_destination_stage_rewrites_destination(void **state)
{
    (void)state;
    one *o = start(&listener,
                   "COPY /content/alice/a HTTP/1.1\r\nHost: gw.example\r\n"
                   "Destination: https://gw.example/content/alice/b%20c/./d\r\n\r\n",
                   true);
    assert_int_equal(run_to(o, cg_http_stage_destination), CG_HTTP_NEXT);
    assert_string_equal(o->x.dest_canon, "/content/alice/b%20c/d");
    assert_string_equal(o->ex.r.dest, "/content/alice/b c/d");
    finish(o);

    o = start(&listener,
              "COPY /content/alice/a HTTP/1.1\r\nHost: gw.example\r\n"
              "Destination: https://elsewhere.example/content/alice/b\r\n\r\n",
              true);
    assert_int_equal(run_to(o, cg_http_stage_destination), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 502);
    assert_string_equal(o->no.detail, "Destination names another server");
    finish(o);

    o = start(&listener,
              "MOVE /content/alice/a HTTP/1.1\r\nHost: gw.example\r\n"
              "Destination: /content/secret/a\r\n\r\n",
              true);
    assert_int_equal(run_to(o, cg_http_stage_destination), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 403);
    assert_string_equal(o->no.detail, "write denied on \"/content/secret/a\"");
    finish(o);

    o = start(&listener, "COPY /content/alice/a HTTP/1.1\r\nHost: gw.example\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_destination), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 400);
    assert_string_equal(o->no.detail, "Destination header missing");
    finish(o);
}

static void test_if_stage_rewrites_resource_tags(void **state)
{
    (void)state;
    one *o = start(&listener,
                   "PUT /content/alice/a HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 0\r\n"
                   "If: <https://gw.example/content/alice/./a> (<urn:uuid:1>)\r\n\r\n",
                   true);
    assert_int_equal(run_to(o, cg_http_stage_if), CG_HTTP_NEXT);
    assert_string_equal(o->x.if_out, "</content/alice/a> (<urn:uuid:1>)");
    finish(o);
}

static void test_depth_stage_refuses_infinity_with_a_precondition_body(void **state)
{
    (void)state;
    one *o = start(&listener, "PROPFIND /content/alice/ HTTP/1.1\r\nHost: gw\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_depth), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 403);
    assert_non_null(o->no.xml_body);
    assert_non_null(strstr(o->no.xml_body, "<D:propfind-finite-depth/>"));
    finish(o);

    o = start(&listener, "PROPFIND /content/alice/ HTTP/1.1\r\nHost: gw\r\nDepth: 1\r\n\r\n",
              true);
    assert_int_equal(run_to(o, cg_http_stage_depth), CG_HTTP_NEXT);
    assert_true(o->ex.r.filter_multistatus);
    finish(o);
}

static void test_expect_stage_refuses_an_unknown_expectation_and_closes(void **state)
{
    (void)state;
    one *o = start(&listener,
                   "PUT /content/alice/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n"
                   "Expect: 200-ok\r\n\r\n",
                   true);
    assert_int_equal(run_to(o, cg_http_stage_expect), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 417);
    assert_true(o->no.close);
    finish(o);
}

static void test_host_stage_refuses_a_name_not_served_with_421(void **state)
{
    (void)state;
    cg_listener_cfg l = listener;
    l.server_names = (char *)"gw.example, *.files.example";
    one *o = start(&l, "GET /content/alice/x HTTP/1.1\r\nHost: other.example\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_host), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 421);
    assert_string_equal(o->no.detail, "this listener does not serve that host");
    finish(o);

    /* a served name: the backend gets it without the client's port */
    o = start(&l, "GET /content/alice/x HTTP/1.1\r\nHost: A.Files.Example:8443\r\n\r\n", true);
    assert_int_equal(run_to(o, cg_http_stage_host), CG_HTTP_NEXT);
    assert_string_equal(o->ex.r.fwd_host, "a.files.example");
    finish(o);
}

static void test_authenticate_stage_challenges_without_credentials(void **state)
{
    (void)state;
    cg_listener_cfg l = listener;
    l.auth = CG_AUTH_DIGEST;
    one *o = start(&l, "GET /content/alice/x HTTP/1.1\r\nHost: gw\r\n\r\n", false);
    assert_int_equal(run_to(o, cg_http_stage_authenticate), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 401);
    assert_string_equal(o->no.detail, "authentication required");
    assert_non_null(o->no.extra);
    assert_non_null(strstr(o->no.extra, "WWW-Authenticate: Digest"));
    assert_non_null(strstr(o->no.extra, "SHA-256"));
    finish(o);
}

static void test_body_limit_stage_refuses_a_declared_body_past_max_body(void **state)
{
    (void)state;
    one *o = start(&listener,
                   "PUT /content/alice/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000000\r\n\r\n",
                   true);
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 413);
    assert_true(o->no.close);
    assert_null(o->ex.r.decision); /* not the ACL's: the answer path says "error" */
    finish(o);
}

/* A request gate (http.h) that answers what the test sets and notes the
 * request it saw. */
static cg_http_gate_verdict gate_verdict;
static int gate_status;
static const char *gate_detail;
static char gate_saw[64];

static cg_http_gate_verdict test_gate(const cg_http_request_view *req, cg_http_gate_answer *a)
{
    snprintf(gate_saw, sizeof gate_saw, "%s %s", req->method, req->path);
    a->status = gate_status;
    a->detail = gate_detail;
    return gate_verdict;
}

/* Runs a PUT through the gate's two stages; how the second ended. */
static cg_http_step gate_put(one **op)
{
    one *o = start(&listener,
                   "PUT /content/alice/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\n",
                   true);
    *op = o;
    gate_saw[0] = '\0';
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_gate(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_string_equal(gate_saw, "PUT /content/alice/a");
    memset(&o->no, 0, sizeof o->no);
    return cg_http_stage_gate_answer(&o->s, &o->x, &o->no);
}

static void test_gate_stages_go_on_or_refuse_as_the_gate_answers(void **state)
{
    (void)state;
    one *o;
    cg_http_set_gate(test_gate);

    /* PASS: on to forwarding, still allowed */
    gate_verdict = CG_HTTP_GATE_PASS;
    gate_status = 0;
    gate_detail = NULL;
    assert_int_equal(gate_put(&o), CG_HTTP_NEXT);
    assert_string_equal(o->ex.r.decision, "allow");
    finish(o);

    /* REFUSE: the gate's status and sentence are the answer */
    gate_verdict = CG_HTTP_GATE_REFUSE;
    gate_status = 422;
    gate_detail = "manifest refused: no item";
    assert_int_equal(gate_put(&o), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 422);
    assert_string_equal(o->no.detail, "manifest refused: no item");
    assert_false(o->no.close);
    assert_string_equal(o->ex.r.decision, "error");
    finish(o);

    /* a refusal without a sentence says "refused" */
    gate_status = 403;
    gate_detail = NULL;
    assert_int_equal(gate_put(&o), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 403);
    assert_string_equal(o->no.detail, "refused");
    finish(o);

    cg_http_set_gate(NULL);
}

static void test_tls_stage_redirects_a_plaintext_listener(void **state)
{
    (void)state;
    cg_listener_cfg l = listener;
    l.tls = CG_TLS_NONE;
    l.insecure = CG_INSECURE_REDIRECT;
    l.redirect_to = (char *)"https://gw.example/";
    one *o = start(&l, "GET /content/a%20b?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n", false);
    assert_int_equal(cg_http_stage_request(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_target(&o->s, &o->x, &o->no), CG_HTTP_NEXT);
    assert_int_equal(cg_http_stage_tls(&o->s, &o->x, &o->no), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 308);
    assert_string_equal(o->no.extra, "Location: https://gw.example/content/a%20b?x=1\r\n");
    finish(o);
}

/* A remote environment under /content/alice/b/ (alice may do all there
 * in the driver's policy), reached through a TLS upstream named
 * gw.b.example. */
static cg_upstream_cfg remote_up = {
    .name = "b-http", .address = "127.0.0.2:443", .tls = true, .server_name = "gw.b.example",
};
static cg_route_cfg route_b = {
    .domain = "b.example", .http = &remote_up, .http_prefix = "/content/alice/b/",
    .http_prefix_len = 17, .max_connections = 4,
};
static cg_config routed_cfg = {
    .local_domain = "a.example", .routes = &route_b, .nroutes = 1,
};

static one *start_routed(const char *head)
{
    one *o = start(&listener, head, true);
    o->ci.config = &routed_cfg;
    return o;
}

/* head, routed, is refused with status at stage last. */
static void routed_refused_at(const char *head, cg_http_stage_fn last, int status)
{
    one *o = start_routed(head);
    assert_int_equal(run_to(o, last), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, status);
    finish(o);
}

static void test_route_stage_sends_a_prefixed_path_to_the_remote_gateway(void **state)
{
    (void)state;
    one *o = start_routed("GET /content/alice/b/shared/a%20b HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_ptr_equal(o->ex.r.route, &route_b);
    assert_string_equal(o->ex.r.fwd_canon, "/shared/a%20b");
    assert_string_equal(o->ex.r.route_user, "alice@a.example");
    assert_string_equal(o->ex.r.fwd_host, "gw.b.example");
    /* the local ACL judged the full local path */
    assert_string_equal(o->ex.r.path, "/content/alice/b/shared/a b");
    finish(o);

    /* the prefix without its slash is the remote root; beside it, local */
    o = start_routed("PROPFIND /content/alice/b HTTP/1.1\r\nHost: gw\r\nDepth: 0\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_string_equal(o->ex.r.fwd_canon, "/");
    assert_true(o->ex.r.filter_multistatus); /* hrefs made local */
    finish(o);
    o = start_routed("GET /content/alice/bx HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_null(o->ex.r.route);
    finish(o);
}

static void test_route_stage_refuses_a_request_that_has_an_originator(void **state)
{
    (void)state;
    /* a request a peer's server principal made for a remote user (the
     * originator stage honoured its CPM-Originator) */
    one *o = start_routed("GET /content/alice/b/x HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_authenticate), CG_HTTP_NEXT);
    snprintf(o->ex.r.originator, sizeof o->ex.r.originator, "mallory@c.example");
    assert_int_equal(cg_http_stage_route(&o->s, &o->x, &o->no), CG_HTTP_REFUSE);
    assert_int_equal(o->no.status, 508);
    assert_string_equal(o->ex.r.decision, "deny");
    finish(o);
}

static void test_route_destination_stays_in_one_environment(void **state)
{
    (void)state;
    one *o = start_routed("MOVE /content/alice/b/x HTTP/1.1\r\nHost: gw\r\n"
                          "Destination: https://gw/content/alice/b/y%20z\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_string_equal(o->x.dest_canon, "/y%20z");
    finish(o);

    /* out of the remote environment, or into it from here: another server */
    routed_refused_at("COPY /content/alice/b/x HTTP/1.1\r\nHost: gw\r\n"
                      "Destination: /content/alice/y\r\n\r\n",
                      cg_http_stage_route_destination, 502);
    routed_refused_at("COPY /content/alice/y HTTP/1.1\r\nHost: gw\r\n"
                      "Destination: /content/alice/b/y\r\n\r\n",
                      cg_http_stage_route_destination, 502);
}

static void test_route_if_tags_lose_the_prefix(void **state)
{
    (void)state;
    one *o = start_routed("PUT /content/alice/b/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n"
                          "If: <https://gw/content/alice/b/x> (<urn:t:1>) <https://gw/content/alice/b> "
                          "([\"e\"])\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_string_equal(o->x.if_out, "</x> (<urn:t:1>) </> ([\"e\"])");
    finish(o);

    routed_refused_at("PUT /content/alice/b/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n"
                      "If: </content/alice/x> (<urn:t:1>)\r\n\r\n",
                      cg_http_stage_route_if, 502);
}

/* The head a remote gateway gets: the route's originator and transaction
 * id, never the client's own fields of those names, no principal header. */
static void test_routed_head_carries_originator_and_transaction_id(void **state)
{
    (void)state;
    one *o = start_routed("GET /content/alice/b/x HTTP/1.1\r\nHost: gw\r\n"
                          "CPM-Originator: forged@c.example\r\n"
                          "CPM-Transaction-Id: forged\r\n\r\n");
    assert_int_equal(run_to(o, cg_http_stage_body_limit), CG_HTTP_NEXT);
    assert_int_equal(cg_http_forward_head(&o->s, &o->ci, NULL, NULL), 0);
    const char *h = o->ex.out;
    assert_non_null(strstr(h, "GET /x HTTP/1.1\r\nHost: gw.b.example\r\n"));
    assert_non_null(strstr(h, "\r\nCPM-Originator: alice@a.example\r\n"));
    assert_non_null(strstr(h, "\r\nCPM-Transaction-Id: t.1\r\n"));
    assert_null(strstr(h, "forged"));
    assert_null(strstr(h, "X-Remote-User"));
    free(o->ex.out);
    finish(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_stage_refuses_a_bad_path_with_400),
        cmocka_unit_test(test_target_stage_refuses_a_too_long_path_with_414),
        cmocka_unit_test(test_method_rights_refuse_a_write_alice_lacks_with_403),
        cmocka_unit_test(test_method_stage_refuses_a_method_outside_the_table_with_405),
        cmocka_unit_test(test_acl_stage_refuses_a_delete_over_a_denied_subtree),
        cmocka_unit_test(test_destination_stage_rewrites_destination),
        cmocka_unit_test(test_if_stage_rewrites_resource_tags),
        cmocka_unit_test(test_depth_stage_refuses_infinity_with_a_precondition_body),
        cmocka_unit_test(test_expect_stage_refuses_an_unknown_expectation_and_closes),
        cmocka_unit_test(test_host_stage_refuses_a_name_not_served_with_421),
        cmocka_unit_test(test_authenticate_stage_challenges_without_credentials),
        cmocka_unit_test(test_body_limit_stage_refuses_a_declared_body_past_max_body),
        cmocka_unit_test(test_tls_stage_redirects_a_plaintext_listener),
        cmocka_unit_test(test_gate_stages_go_on_or_refuse_as_the_gate_answers),
        cmocka_unit_test(test_route_stage_sends_a_prefixed_path_to_the_remote_gateway),
        cmocka_unit_test(test_route_stage_refuses_a_request_that_has_an_originator),
        cmocka_unit_test(test_route_destination_stays_in_one_environment),
        cmocka_unit_test(test_route_if_tags_lose_the_prefix),
        cmocka_unit_test(test_routed_head_carries_originator_and_transaction_id),
    };
    return cmocka_run_group_tests(tests, setup_all, NULL);
}
