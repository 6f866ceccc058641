/* proxy/http/response.c — the backend's answer toward the client: its head
 * filtered and re-framed with X-Transaction-Id, Location pointed back at the
 * gateway, PROPFIND Depth: 1 multistatus filtered to what the principal may
 * list, the end of an answer and the reuse of the backend connection. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "policy/acl.h"
#include "proxy/core/conn.h"
#include "proxy/http/dav.h"
#include "proxy/http/host.h"
#include "proxy/http/internal.h"
#include "proxy/http/parse.h"

/* ---- response ------------------------------------------------------------- */


/* A redirect the backend builds names itself: nginx writes the Host it
 * was sent with its own port and scheme ("http://localhost:20080/d/").
 * Point it back at the gateway the client talks to (scheme and Host of
 * the request), so following it never bypasses the gateway. true when a
 * rewritten Location was written. */
static bool location_rewrite(http_sess *s, cg_buf *o, const char *v, size_t n)
{
    const cg_http_head *rq = &s->ex->req.head;
    if (!rq->host.len)
        return false;
    size_t skip = n > 7 && strncasecmp(v, "http://", 7) == 0    ? 7
                  : n > 8 && strncasecmp(v, "https://", 8) == 0 ? 8
                                                                 : 0;
    if (!skip)
        return false;
    size_t e = skip;
    while (e < n && v[e] != '/' && v[e] != '?' && v[e] != '#')
        e++;
    /* the backend names the host it was sent, with its own port */
    const char *ln, *fn;
    size_t lnl, fnl;
    const char *fwd = s->ex->r.fwd_host;
    if (!cg_host_name(v + skip, e - skip, &ln, &lnl) ||
        !cg_host_name(fwd, strlen(fwd), &fn, &fnl) || !cg_http_same_host(ln, lnl, fn, fnl))
        return false;
    const char *host = cg_http_str(&s->ex->req, rq->host);
    size_t hl = rq->host.len;
    cg_buf_str(o, cg_conn_info_of(s->c)->tls ? "Location: https://" : "Location: http://");
    cg_buf_add(o, host, hl);
    if (s->ex->r.route && e < n && v[e] == '/') /* a remote environment's path */
        cg_buf_add(o, s->ex->r.route->http_prefix, s->ex->r.route->http_prefix_len - 1);
    cg_buf_add(o, v + e, n - e);
    cg_buf_str(o, "\r\n");
    return true;
}

/* The answer's head toward the client: backend status and end-to-end
 * fields, our framing, X-Transaction-Id. */
static void send_response_head(http_sess *s, bool have_length, uint64_t length)
{
    cg_http_parser *p = &s->ex->resp;
    http_req *r = &s->ex->r;
    /* the request head in s->ex->out is no longer needed (an answer came, so
     * no retry): the buffer is reused, no allocation per response */
    char *buf = s->ex->out;
    cg_buf o;
    cg_buf_init_fixed(&o, buf, OUT_HEAD_MAX);
    char line[64];
    snprintf(line, sizeof line, "HTTP/1.1 %d ", p->head.status);
    cg_buf_str(&o, line);
    cg_buf_add(&o, cg_http_str(p, p->head.reason), p->head.reason.len);
    cg_buf_str(&o, "\r\n");
    int st = p->head.status;
    bool no_body = r->head_method || st == 204 || st == 304;
    for (size_t i = 0; i < p->head.nheaders; i++) {
        const cg_http_header *h = &p->head.headers[i];
        bool is_cl = cg_http_span_eq(p, h->name, "content-length");
        /* HEAD and 304 keep the backend's Content-Length (it describes
         * the representation); a rewritten body gets its own */
        if (is_cl && no_body && st != 204 && !have_length) {
            /* kept below */
        } else if (cg_http_drop_field(p, h->name, NULL, false)) {
            continue;
        }
        if (cg_http_span_eq(p, h->name, "location") &&
            location_rewrite(s, &o, cg_http_str(p, h->value), h->value.len))
            continue;
        cg_http_put_field(&o, p, h);
    }
    s->ex->resp_chunked = false;
    if (!no_body) {
        if (have_length) {
            snprintf(line, sizeof line, "Content-Length: %" PRIu64 "\r\n", length);
            cg_buf_str(&o, line);
        } else if (s->ex->req.head.minor >= 1) {
            cg_buf_str(&o, "Transfer-Encoding: chunked\r\n");
            s->ex->resp_chunked = true;
        } else {
            s->ex->resp_close = true; /* HTTP/1.0 client: delimited by close */
        }
    }
    if (!r->keep_alive || (r->has_body && !r->body_done))
        s->ex->resp_close = true;
    if (s->ex->resp_close)
        cg_buf_str(&o, "Connection: close\r\n");
    cg_buf_str(&o, "X-Transaction-Id: ");
    cg_buf_str(&o, r->txid);
    cg_buf_str(&o, "\r\n\r\n");
    s->ex->out_len = 0;
    if (o.failed) {
        cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                              .detail = "backend response head too large",
                                              .close = true });
        return;
    }
    s->ex->resp_started = true;
    r->status = st;
    cg_http_write_client(s, buf, o.len);
}

typedef struct keep_ctx {
    const cg_snapshot *snap;
    const cg_principal *p;
    const char *originator; /* SPEC 7: the remote user p acts for, or NULL */
    const cg_route_cfg *route; /* a remote environment's answer: its paths
                                * are judged under the route's prefix */
} keep_ctx;

static bool keep_href(void *ctx, const char *path, size_t len)
{
    keep_ctx *k = ctx;
    char full[CG_HTTP_PATH_MAX + 1];
    if (k->route) {
        size_t pl = k->route->http_prefix_len - 1;
        if (pl + len >= sizeof full)
            return false;
        memcpy(full, k->route->http_prefix, pl);
        memcpy(full + pl, path, len);
        full[pl + len] = '\0';
        path = full;
        len += pl;
    }
    cg_decision d = cg_acl_decide_as(cg_snapshot_acl(k->snap), k->p, k->originator,
                                     CG_SVC_HTTP, CG_RIGHT_LIST, path, len, '/');
    return d.allow;
}

void cg_http_resp_body(void *ctx, const uint8_t *buf, size_t len)
{
    http_sess *s = ctx;
    if (len == 0 || s->state == S_CLOSING)
        return;
    if (s->ex->r.filter_multistatus && !s->ex->resp_started) {
        cg_buf_add(&s->ex->xml, buf, len); /* past the bound: failed, answered 502 */
        return;
    }
    s->ex->r.bytes_out += len;
    if (s->ex->resp_chunked) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        cg_http_write_client(s, sz, (size_t)n);
        cg_http_write_client(s, buf, len);
        cg_http_write_client(s, "\r\n", 2);
    } else {
        cg_http_write_client(s, buf, len);
    }
}

static void filtered_multistatus(http_sess *s)
{
    if (s->ex->xml.failed) {
        cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                              .detail = "multistatus answer too large to filter" });
        return;
    }
    cg_snapshot *snap = cg_snapshot_acquire();
    const cg_principal *p = snap ? cg_snapshot_principal_by_id(snap, s->ex->r.principal_id) : NULL;
    char *out = NULL;
    size_t ol = 0, removed = 0;
    const cg_route_cfg *rt = s->ex->r.route;
    keep_ctx k = {snap, p, s->ex->r.originator[0] ? s->ex->r.originator : NULL, rt};
    const cg_http_head *h = &s->ex->req.head;
    int rc = p ? cg_http_dav_filter(s->ex->xml.p ? s->ex->xml.p : "", s->ex->xml.len,
                                    cg_http_str(&s->ex->req, h->host), h->host.len,
                                    cg_conn_info_of(s->c)->tls, keep_href, &k,
                                    rt ? rt->http_prefix : NULL, rt ? rt->http_prefix_len - 1 : 0,
                                    &out, &ol, &removed)
               : CG_E_AUTH;
    if (snap)
        cg_snapshot_release(snap);
    if (rc < 0) {
        cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                              .detail = "unreadable multistatus answer" });
        return;
    }
    send_response_head(s, true, ol);
    if (s->state != S_CLOSING) {
        cg_http_write_client(s, out, ol);
        s->ex->r.bytes_out += ol;
    }
    free(out);
}

static void response_done(http_sess *s, bool upstream_reusable)
{
    cg_conn *c = s->c;
    http_req *r = &s->ex->r;
    if (r->filter_multistatus && !s->ex->resp_started) {
        filtered_multistatus(s);
        if (s->state == S_CLOSING)
            return;
    }
    if (s->ex->resp_chunked)
        cg_http_write_client(s, "0\r\n\r\n", 5);
    if (r->filter && r->filter->on_response)
        r->filter->on_response(r->fctx, r->status);
    bool reusable = upstream_reusable && s->ex->resp.head.keep_alive && r->body_done;
    if (cg_conn_upstream_attached(c))
        cg_conn_upstream_release(c, reusable);
    cg_debug("conn=%llu txid=%s %s %s -> %d principal=%s",
             (unsigned long long)cg_conn_info_of(c)->id, r->txid, r->method,
             r->path ? r->path : "-", r->status, r->principal[0] ? r->principal : "-");
    cg_http_audit(s, NULL);
    cg_http_req_free(s);
    if (s->ex->resp_close || !r->body_done) {
        s->state = S_CLOSING;
        cg_conn_close(c, "response complete");
        return;
    }
    cg_http_next_request(s);
}

static void on_response_head(http_sess *s)
{
    cg_http_parser *p = &s->ex->resp;
    if (p->head.status >= 100 && p->head.status < 200) {
        /* interim answers (100, 102, 103) are not relayed: the gateway
         * answered Expect itself */
        bool nb = p->no_body;
        cg_http_parser_reset(p);
        p->no_body = nb;
        p->on_body = cg_http_resp_body;
        p->ctx = s;
        return;
    }
    if (s->ex->r.filter_multistatus && p->head.status != 207)
        s->ex->r.filter_multistatus = false;
    if (!s->ex->r.filter_multistatus) {
        bool have = p->head.framing == CG_HTTP_BODY_LENGTH ||
                    (p->head.framing == CG_HTTP_BODY_NONE && !s->ex->r.head_method &&
                     p->head.status != 204 && p->head.status != 304);
        send_response_head(s, have, p->head.framing == CG_HTTP_BODY_LENGTH
                                        ? p->head.content_length : 0);
    } else {
        s->ex->r.status = p->head.status;
    }
}

void cg_http_upstream_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_WAIT_RESP && s->state != S_BODY) {
        /* bytes with no request waiting: the connection is not reusable */
        cg_conn_upstream_release(c, false);
        return;
    }
    s->ex->up_bytes = true;
    /* a long answer is activity: the idle timer is for idle connections */
    cg_conn_touch(c);
    size_t off = 0;
    while (off < len && s->state != S_CLOSING) {
        size_t used = 0;
        const char *why = NULL;
        if (!s->ex->resp.head_done) {
            cg_http_feed r = cg_http_feed_head(&s->ex->resp, buf + off, len - off, &used, &why);
            off += used;
            if (r == CG_HTTP_MORE)
                return;
            if (r == CG_HTTP_REFUSED) {
                cg_conn_upstream_release(c, false);
                cg_http_refuse(s, &(cg_http_refusal){
                    .status = 502, .detail = why ? why : "malformed backend response",
                    .close = true });
                return;
            }
            on_response_head(s);
            if (s->state == S_CLOSING)
                return;
            if (!s->ex->resp.head_done)
                continue; /* an interim answer was dropped */
            if (s->ex->resp.complete) {
                response_done(s, off == len);
                return;
            }
            continue;
        }
        cg_http_feed r = cg_http_feed_body(&s->ex->resp, buf + off, len - off, &used, &why);
        off += used;
        if (s->state == S_CLOSING)
            return;
        if (r == CG_HTTP_REFUSED) {
            cg_conn_upstream_release(c, false);
            cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                                  .detail = why ? why : "malformed backend body",
                                                  .close = true });
            return;
        }
        if (r == CG_HTTP_DONE) {
            response_done(s, off == len);
            return;
        }
    }
}

void cg_http_upstream_eof(cg_conn *c, int status)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_WAIT_RESP && s->state != S_BODY)
        return;
    if (status == CG_E_TIMEOUT) {
        cg_conn_upstream_release(c, false);
        cg_http_refuse(s, &(cg_http_refusal){ .status = 504,
                                              .detail = "backend response timeout",
                                              .close = !s->ex->r.body_done });
        return;
    }
    if (s->ex->resp.head_done) {
        const char *why;
        if (cg_http_finish(&s->ex->resp, &why) == CG_HTTP_DONE) {
            response_done(s, false);
            return;
        }
        cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                              .detail = "backend closed during the answer",
                                              .close = true });
        return;
    }
    /* A pooled connection the backend had already closed: send the
     * request once more on a fresh one, when no body byte is lost and the
     * method is idempotent (RFC 9110 9.2.2, RFC 9112 9.3.1). */
    const char *m = s->ex->r.method;
    bool idempotent = !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS") ||
                      !strcmp(m, "DELETE") || !strcmp(m, "PROPFIND");
    if (!s->ex->up_bytes && !s->ex->retried && !s->ex->r.has_body && s->ex->out_len && idempotent) {
        s->ex->retried = true;
        s->state = S_CONNECTING;
        if (cg_http_connect_backend(s) == 0)
            return;
    }
    cg_http_refuse(s, &(cg_http_refusal){ .status = 502,
                                          .detail = "backend closed the connection",
                                          .close = !s->ex->r.body_done });
}
