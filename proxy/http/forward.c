/* proxy/http/forward.c — the request toward the backend: the rewritten head
 * (kept for one retry on a fresh connection), the body decoded from the
 * client's framing and re-framed, the filter's held last byte, the backend
 * connect and its failures. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/conn.h"
#include "proxy/http/internal.h"
#include "proxy/http/parse.h"

int cg_http_forward_head(http_sess *s, const cg_conn_info *ci, const char *dest_canon,
                         const char *if_rewritten)
{
    const cg_upstream_cfg *u = ci->listener->upstream;
    http_req *r = &s->ex->r;
    if (!s->ex->out)
        s->ex->out = malloc(OUT_HEAD_MAX);
    if (!s->ex->out)
        return CG_E_NOMEM;
    /* a remote gateway authenticates this one and takes the originator;
     * a principal header means nothing to it */
    cg_http_fwd f = {
        .method = r->method, .canon = r->route ? r->fwd_canon : r->canon, .host = r->fwd_host,
        .query = r->query, .query_len = r->query_len,
        .destination = dest_canon, .if_value = if_rewritten, .client_addr = ci->client_addr,
        .tls = ci->tls, .principal_header = u && !r->route ? u->principal_header : NULL,
        .principal = r->principal,
        .originator = r->route ? r->route_user : NULL, .txid = r->txid,
    };
    return cg_http_build_request(&s->ex->req, &f, s->ex->out, OUT_HEAD_MAX, &s->ex->out_len);
}

int cg_http_start_forwarding(http_sess *s)
{
    s->state = S_CONNECTING;
    s->ex->retried = false;
    s->ex->up_bytes = false;
    /* the client stays readable: what it pipelines meanwhile is kept (up
     * to PEND_PAUSE, then reading stops), which spares two epoll_ctl
     * calls per request on a keep-alive connection */
    return cg_http_connect_backend(s);
}

int cg_http_connect_backend(http_sess *s)
{
    const cg_upstream_cfg *u = s->ex->r.route ? s->ex->r.route->http
                                          : cg_conn_info_of(s->c)->listener->upstream;
    return cg_conn_upstream_connect_to(s->c, u);
}

void cg_http_body_fail(http_sess *s, int status, const char *detail)
{
    /* the backend got part of a body: drop that connection before the
     * end, so nothing half-sent is ever committed */
    cg_conn_upstream_release(s->c, false);
    cg_http_refuse(s, &(cg_http_refusal){ .status = status, .detail = detail, .close = true });
}

/* The body filter did not pass the body (http.h): a refusal's status and
 * sentence are on the verdict; LOCAL or WAIT, which a forwarded body's
 * filter may not answer, are the gateway's own error. */
static void filter_refused(http_sess *s, cg_http_gate_verdict g)
{
    const cg_http_body_verdict *v = &s->ex->r.verdict;
    cg_http_body_fail(s, g == CG_HTTP_GATE_REFUSE ? v->status : 500,
                      v->detail ? v->detail : "content refused");
}

/* Body bytes toward the backend. A write fails only once the backend half
 * is gone (it closed, or was released after its answer): the rest of the
 * body has nowhere to go and the answer is the upstream end's
 * (cg_http_upstream_eof), so the bytes are dropped and that is said once. */
static void to_backend(http_sess *s, const void *buf, size_t len)
{
    if (cg_conn_write_upstream(s->c, buf, len) < 0 && !s->ex->r.body_dropped) {
        s->ex->r.body_dropped = true;
        cg_debug("conn=%llu request body dropped: the backend connection is gone",
                 (unsigned long long)cg_conn_info_of(s->c)->id);
    }
}

/* Decoded request body bytes (from the request parser). */
void cg_http_req_body(void *ctx, const uint8_t *buf, size_t len)
{
    http_sess *s = ctx;
    http_req *r = &s->ex->r;
    cg_conn *c = s->c;
    if (s->state != S_BODY || len == 0)
        return;
    const cg_listener_cfg *l = cg_conn_info_of(c)->listener;
    r->bytes_in += len;
    if (l->max_body && r->bytes_in > l->max_body) {
        cg_http_body_fail(s, 413, "request body too large");
        return;
    }
    if (r->filter && r->filter->on_data) {
        cg_http_gate_verdict g = r->filter->on_data(r->fctx, buf, len, &r->verdict);
        if (g != CG_HTTP_GATE_PASS) {
            filter_refused(s, g);
            return;
        }
    }
    if (r->local)
        return;
    if (s->ex->req.head.framing == CG_HTTP_BODY_CHUNKED) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        to_backend(s, sz, (size_t)n);
        to_backend(s, buf, len);
        to_backend(s, "\r\n", 2);
        return;
    }
    r->body_left -= len;
    if (r->hold_last && r->body_left == 0) {
        /* keep the last byte until the filter approves (http.h) */
        r->held = buf[len - 1];
        len--;
    }
    if (len)
        to_backend(s, buf, len);
}

void cg_http_req_body_done(http_sess *s)
{
    http_req *r = &s->ex->r;
    cg_conn *c = s->c;
    if (r->local) {
        cg_http_local_end(s);
        return;
    }
    if (r->filter && r->filter->on_end && r->has_body) {
        cg_http_gate_verdict g = r->filter->on_end(r->fctx, &r->verdict);
        if (g != CG_HTTP_GATE_PASS) {
            r->body_done = true;
            filter_refused(s, g);
            return;
        }
    }
    if (s->ex->req.head.framing == CG_HTTP_BODY_CHUNKED)
        to_backend(s, "0\r\n\r\n", 5);
    else if (r->hold_last)
        to_backend(s, &r->held, 1);
    r->body_done = true;
    cg_conn_set_timer(c, 0);
    if (s->state == S_BODY) {
        s->state = S_WAIT_RESP;
        if (!s->ex->up_bytes)
            cg_conn_upstream_expect(c, true);
    }
}

void cg_http_connected(cg_conn *c, int status)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_CONNECTING)
        return;
    if (status < 0) {
        /* a remote gateway: the same answers, its certificate's refusal
         * and a full route besides; the log and audit name why */
        const char *why = status == CG_E_TIMEOUT ? "backend connect timeout"
                          : status == CG_E_LIMIT ? "too many connections to the remote gateway"
                          : status == CG_E_TLS && s->ex->r.route ? "remote gateway not trusted"
                                                             : "backend unavailable";
        const char *detail = cg_conn_upstream_why(c);
        cg_http_refuse(s, &(cg_http_refusal){ .status = status == CG_E_LIMIT ? 503 : 502,
                                              .detail = why,
                                              .reason = s->ex->r.route && detail[0] ? detail : NULL,
                                              .extra = status == CG_E_LIMIT ? CG_HTTP_RETRY_AFTER
                                                                            : NULL,
                                              .close = s->ex->r.has_body });
        return;
    }
    cg_http_parser_reset(&s->ex->resp);
    s->ex->resp.on_body = cg_http_resp_body;
    s->ex->resp.ctx = s;
    s->ex->resp.no_body = s->ex->r.head_method;
    if (cg_conn_write_upstream(c, s->ex->out, s->ex->out_len) < 0) {
        /* connected, yet the head cannot go: as unavailable as a refusal */
        cg_http_body_fail(s, 502, "backend unavailable");
        return;
    }
    if (s->ex->r.expect_continue && !s->ex->retried)
        cg_http_write_client(s, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (s->ex->r.has_body && !s->ex->r.body_done) {
        s->state = S_BODY;
        cg_conn_set_timer(c, (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000);
        cg_http_run_pending(s);
    } else {
        s->state = S_WAIT_RESP;
        cg_conn_upstream_expect(c, true);
    }
}
