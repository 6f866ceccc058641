/* proxy/http/request.c — the HTTP gateway's session (cg_http_proto): one
 * request at a time per connection (keep-alive and pipelining from clients,
 * pipelined requests held until the answer before them is complete), the
 * request heads read and handed to the stages (stages.c), the one answer
 * path every refusal goes through (cg_http_refuse) with its log line and
 * audit record, and the connection's callbacks. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/counters.h"
#include "proxy/core/conn.h"
#include "proxy/http/internal.h"
#include "proxy/http/parse.h"
#include "store/audit.h"

/* A keep-alive connection without a request for this long gives back what
 * its requests used (http_exch: the head parsers and their buffers, the
 * request's state, the paths, the forwarded head, the pipelining buffer:
 * about 50 KiB), made again by its next request. A busy connection keeps
 * it: no allocation per request. */
#define IDLE_RELEASE_MS 1000

/* ---- pipelined bytes ------------------------------------------------------ */

/* Keeps bytes that arrived while a request was in flight; false past
 * PENDING_MAX (or without memory). */
static bool pend_append(http_sess *s, const uint8_t *buf, size_t len)
{
    cg_buf_add(&s->ex->pend, buf, len);
    return !s->ex->pend.failed;
}

/* ---- audit and the one error path ----------------------------------------- */

void cg_http_audit(http_sess *s, const char *reason)
{
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    http_req *r = &s->ex->r;
    char result[8];
    snprintf(result, sizeof result, "%d", r->status);
    cg_audit_rec a;
    cg_conn_info_audit(ci, &a);
    a.txid = r->txid;
    a.request_id = r->request_id[0] ? r->request_id : NULL;
    a.principal = r->principal[0] ? r->principal : NULL;
    a.originator = r->originator[0] ? r->originator : NULL;
    a.origin_txid = r->origin_txid[0] ? r->origin_txid : NULL;
    a.method = r->auth_method;
    a.service = "http";
    a.operation = r->method[0] ? r->method : NULL;
    a.resource = r->path && r->path[0] ? r->path : NULL;
    a.decision = r->decision;
    a.rule_id = r->rule_id > 0 ? r->rule_id : -1;
    a.result = result;
    a.bytes_in = (int64_t)r->bytes_in;
    a.bytes_out = (int64_t)r->bytes_out;
    a.content_sha256 = r->verdict.content_sha256[0] ? r->verdict.content_sha256 : NULL;
    a.key_id = r->verdict.key_id;
    a.validation = r->verdict.validation;
    a.reason = reason;
    if (r->decision)
        cg_metrics_operation("http", r->decision);
    if (cg_audit_commit(&s->ex->resv, &a) < 0)
        cg_warn("conn=%llu txid=%s audit record not stored", (unsigned long long)ci->id,
                r->txid);
}


void cg_http_req_free(http_sess *s)
{
    http_req *r = &s->ex->r;
    cg_audit_release(&s->ex->resv); /* a place no record took */
    cg_http_gate_detach(s);
    if (r->filter && r->filter->free)
        r->filter->free(r->fctx);
    r->filter = NULL;
    cg_buf_free(&s->ex->xml);
    cg_buf_init(&s->ex->xml, CG_HTTP_MULTISTATUS_MAX + 1);
}


/* Writes "STATUS REASON: DETAIL (txid ID)" (or xml_body) with its head.
 * A head too large for its buffer becomes a bare one that closes
 * (*close_after set), and so does a client that can no longer be written
 * to. Returns the body bytes written. */
static uint64_t write_answer(cg_conn *c, int status, const char *detail, const char *txid,
                             const char *extra, const char *xml_body, bool head_only,
                             bool *close_after)
{
    char body[600];
    int bl;
    const char *ctype = "text/plain; charset=utf-8";
    if (xml_body) {
        bl = snprintf(body, sizeof body, "%s", xml_body);
        ctype = "application/xml; charset=utf-8";
    } else {
        bl = snprintf(body, sizeof body, "%d %s: %s (txid %s)\n", status, cg_http_reason(status),
                      detail, txid);
    }
    if (bl < 0 || (size_t)bl >= sizeof body)
        bl = (int)strlen(body);
    char head[2048];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                      "X-Transaction-Id: %s\r\n%s%s\r\n",
                      status, cg_http_reason(status), ctype, bl, txid, extra ? extra : "",
                      *close_after ? "Connection: close\r\n" : "");
    if (hl < 0 || (size_t)hl >= sizeof head)
        hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nX-Transaction-Id: %s\r\n"
                      "Connection: close\r\n\r\n", status, cg_http_reason(status), txid),
        bl = 0, *close_after = true;
    if (cg_conn_write_client(c, head, (size_t)hl) < 0) {
        *close_after = true;
        return 0;
    }
    if (head_only || bl <= 0)
        return 0;
    if (cg_conn_write_client(c, body, (size_t)bl) < 0) {
        *close_after = true;
        return 0;
    }
    return (uint64_t)bl;
}

void cg_http_refuse(http_sess *s, const cg_http_refusal *no)
{
    int status = no->status;
    const char *reason = no->reason ? no->reason : no->detail;
    bool close_after = no->close;
    cg_conn *c = s->c;
    const cg_conn_info *ci = cg_conn_info_of(c);
    http_req *r = &s->ex->r;
    /* allow and deny are the ACL's words; an answer the ACL did not decide
     * (authentication, syntax, limits, the audit store, the backend) is an
     * error, and its reason says which */
    if (!r->decision)
        r->decision = "error";
    r->status = status;
    cg_log(status >= 400 ? CG_LOG_WARN : CG_LOG_INFO,
           "conn=%llu client=%s txid=%s %s %s -> %d: %s", (unsigned long long)ci->id,
            ci->client, r->txid, r->method[0] ? r->method : "-",
            r->path && r->path[0] ? r->path : "-", status, reason);
    if (s->ex->resp_started) {
        /* part of an answer is out: nothing honest can follow it */
        cg_http_audit(s, reason);
        cg_http_req_free(s);
        s->state = S_CLOSING;
        cg_conn_upstream_release(c, false);
        cg_conn_abort(c, reason);
        return;
    }
    if (r->has_body && !r->body_done)
        close_after = true;
    if (!r->keep_alive)
        close_after = true;
    r->bytes_out += write_answer(c, status, no->detail, r->txid, no->extra, no->xml_body,
                                 r->head_method, &close_after);
    cg_http_audit(s, reason);
    cg_http_req_free(s);
    if (cg_conn_upstream_attached(c))
        cg_conn_upstream_release(c, false);
    if (close_after) {
        s->state = S_CLOSING;
        cg_conn_set_timer(c, 0);
        cg_conn_close(c, reason);
        return;
    }
    cg_http_next_request(s);
}

static void process(http_sess *s, const uint8_t *buf, size_t len, size_t *consumed);

/* After a half-close, once every complete request sent was answered. */
static void finish_if_eof(http_sess *s)
{
    if (s->client_eof && s->state == S_HEAD && !s->in_process) {
        s->state = S_CLOSING;
        cg_conn_close(s->c, "client closed");
    }
}

void cg_http_run_pending(http_sess *s)
{
    while (s->ex->pend.len && (s->state == S_HEAD || s->state == S_BODY)) {
        size_t used = 0;
        int before = s->state;
        process(s, (const uint8_t *)s->ex->pend.p, s->ex->pend.len, &used);
        if (s->state == S_CLOSING)
            return;
        cg_buf_consume(&s->ex->pend, used);
        if (used == 0 && s->state == before)
            break;
    }
    if (s->state == S_HEAD || s->state == S_BODY)
        cg_conn_read_client(s->c, true);
    finish_if_eof(s);
}

void cg_http_next_request(http_sess *s)
{
    http_exch *e = s->ex;
    cg_http_parser_reset(&e->req);
    if (e->resp.initialized)
        cg_http_parser_reset(&e->resp);
    e->req.on_body = cg_http_req_body;
    e->req.ctx = s;
    memset(&e->r, 0, sizeof e->r);
    e->resp_started = e->resp_chunked = e->resp_close = false;
    s->state = S_HEAD;
    cg_conn_set_timer(s->c, IDLE_RELEASE_MS); /* http_timer: exch_free */
    if (!s->in_process)
        cg_http_run_pending(s);
}

static void process_inner(http_sess *s, const uint8_t *buf, size_t len, size_t *consumed);

/* Walks buf through the request parser; pipelined requests answered
 * without the backend (errors) are taken in the same walk. */
static void process(http_sess *s, const uint8_t *buf, size_t len, size_t *consumed)
{
    bool outer = !s->in_process;
    s->in_process = true;
    process_inner(s, buf, len, consumed);
    if (outer)
        s->in_process = false;
    if (s->state == S_HEAD || s->state == S_BODY)
        cg_conn_read_client(s->c, true);
    if (outer)
        finish_if_eof(s);
}

static void process_inner(http_sess *s, const uint8_t *buf, size_t len, size_t *consumed)
{
    size_t off = 0;
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    while (off < len) {
        size_t used = 0;
        const char *why = NULL;
        if (s->state == S_HEAD) {
            if (!s->ex->r.txid[0]) {
                /* client_timeout: a deadline for the whole head, not
                 * reset by each byte (slowloris) */
                cg_conn_set_timer(s->c, (uint64_t)ci->listener->client_timeout * 1000);
                s->nreq++;
                snprintf(s->ex->r.txid, sizeof s->ex->r.txid, "%s.%" PRIu64, ci->session_id,
                         s->nreq);
            }
            cg_http_feed r = cg_http_feed_head(&s->ex->req, buf + off, len - off, &used, &why);
            off += used;
            if (r == CG_HTTP_MORE)
                continue;
            cg_conn_set_timer(s->c, 0);
            if (r == CG_HTTP_REFUSED) {
                int st = s->ex->req.refused_status;
                char allow[256];
                snprintf(allow, sizeof allow, "Allow: %s\r\n", cg_http_allow);
                cg_http_refuse(s, &(cg_http_refusal){ .status = st,
                                                      .detail = why ? why : "malformed request",
                                                      .extra = st == 405 ? allow : NULL,
                                                      .close = true });
                *consumed = len;
                return;
            }
            cg_http_handle_request(s);
            if (s->state == S_CLOSING) {
                *consumed = len;
                return;
            }
        } else if (s->state == S_BODY) {
            cg_conn_set_timer(s->c, (uint64_t)ci->listener->client_timeout * 1000);
            cg_http_feed r = cg_http_feed_body(&s->ex->req, buf + off, len - off, &used, &why);
            off += used;
            if (s->state == S_CLOSING) {
                *consumed = len;
                return;
            }
            if (r == CG_HTTP_REFUSED) {
                cg_http_body_fail(s, s->ex->req.refused_status, why ? why : "malformed body");
                *consumed = len;
                return;
            }
            if (r == CG_HTTP_DONE)
                cg_http_req_body_done(s);
            if (s->state == S_CLOSING) {
                *consumed = len;
                return;
            }
        } else {
            break;
        }
    }
    *consumed = off;
}

void cg_http_write_client(http_sess *s, const void *buf, size_t len)
{
    if (len == 0)
        return;
    /* fails only when the client half is gone: the connection ends */
    if (cg_conn_write_client(s->c, buf, len) < 0)
        cg_conn_close(s->c, "client connection lost");
}

/* ---- connection callbacks ------------------------------------------------- */

/* What requests use (http_exch), made at the first byte of a request on a
 * connection that holds none; the parsers keep the listener's limits and
 * make their buffers at their first bytes. CG_E_NOMEM. */
static int exch_make(http_sess *s)
{
    const cg_listener_cfg *l = cg_conn_info_of(s->c)->listener;
    http_exch *e = calloc(1, sizeof *e);
    if (!e)
        return CG_E_NOMEM;
    /* a bound of n bytes is a cg_buf of n + 1 (its NUL) */
    cg_buf_init(&e->pend, PENDING_MAX + 1);
    cg_buf_init(&e->xml, CG_HTTP_MULTISTATUS_MAX + 1);
    if (cg_http_parser_init(&e->req, true, l->max_header_bytes, l->max_headers, l->max_line) < 0) {
        free(e);
        return CG_E_NOMEM;
    }
    e->req.on_body = cg_http_req_body;
    e->req.ctx = s;
    s->ex = e;
    return 0;
}

/* Gives back what requests used (made again by the next one): between
 * requests once idle, and at the close after cg_http_req_free. */
static void exch_free(http_sess *s)
{
    http_exch *e = s->ex;
    if (!e)
        return;
    cg_http_parser_free(&e->req);
    cg_http_parser_free(&e->resp);
    cg_buf_free(&e->pend);
    cg_buf_free(&e->xml);
    free(e->paths);
    free(e->out);
    free(e);
    s->ex = NULL;
}

static void http_open(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    s->c = c;
    s->ready = true;
    s->state = S_HEAD;
}

static void http_client_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    http_sess *s = cg_conn_session(c);
    if (!s->ready || s->state == S_CLOSING)
        return;
    if (!s->ex && exch_make(s) < 0) {
        s->state = S_CLOSING;
        cg_conn_abort(c, "out of memory");
        return;
    }
    if (s->ex->pend.len || (s->state != S_HEAD && s->state != S_BODY)) {
        if (!pend_append(s, buf, len)) {
            s->state = S_CLOSING;
            cg_conn_close(c, "too many pipelined bytes");
            return;
        }
        if (s->state != S_HEAD && s->state != S_BODY) {
            if (s->ex->pend.len >= PEND_PAUSE)
                cg_conn_read_client(c, false);
            return;
        }
        cg_http_run_pending(s);
        return;
    }
    size_t used = 0;
    process(s, buf, len, &used);
    if (s->state != S_CLOSING && used < len) {
        if (!pend_append(s, buf + used, len - used)) {
            s->state = S_CLOSING;
            cg_conn_close(c, "too many pipelined bytes");
            return;
        }
        if (s->ex->pend.len >= PEND_PAUSE || s->state == S_HEAD || s->state == S_BODY)
            cg_conn_read_client(c, false);
    }
}

static void http_client_eof(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    if (!s->ready || s->state == S_CLOSING)
        return;
    s->client_eof = true;
    if ((s->state == S_WAIT_RESP || s->state == S_CONNECTING || s->state == S_GATE) &&
        s->ex->r.body_done) {
        /* a client may half-close after its requests: the answers (also
         * to those still pending) go out, then the connection closes */
        return;
    }
    if (s->state == S_BODY || s->state == S_CONNECTING || s->state == S_GATE) {
        s->state = S_CLOSING;
        cg_conn_upstream_release(c, false);
        s->ex->r.status = 400;
        s->ex->r.decision = s->ex->r.decision ? s->ex->r.decision : "error";
        cg_http_audit(s, "client closed before the end of the request");
        cg_http_req_free(s);
    }
    s->state = S_CLOSING;
    cg_conn_close(c, "client closed");
}

static bool http_idle(cg_conn *c);

static void http_timer(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    if (http_idle(c)) {
        exch_free(s);
    } else if (!s->ex) {
        return;
    } else if (s->state == S_HEAD && s->ex->req.len > 0) {
        cg_http_refuse(s, &(cg_http_refusal){ .status = 408,
                                              .detail = "request head not received in time",
                                              .close = true });
    } else if (s->state == S_BODY) {
        if (cg_conn_upstream_queued(c) > 0) {
            /* the backend, not the client, is slow: wait on */
            cg_conn_set_timer(c, (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000);
            return;
        }
        cg_http_body_fail(s, 408, "request body stalled");
    }
}

static void http_refuse(cg_conn *c, int err, const char *reason)
{
    http_sess *s = cg_conn_session(c);
    bool unavailable = err != CG_E_AUTH && err != CG_E_DENIED;
    if (!s->ready) {
        /* refused before any request (at accept or after the handshake):
         * the answer to whatever the client sends first. The core logs
         * and audits the refusal; this is transaction 1. */
        if (err == CG_E_TIMEOUT)
            return;
        char txid[40];
        snprintf(txid, sizeof txid, "%s.1", cg_conn_info_of(c)->session_id);
        bool close_after = true;
        write_answer(c, unavailable ? 503 : 403, reason, txid,
                     unavailable ? CG_HTTP_RETRY_AFTER : NULL, NULL, false, &close_after);
        return;
    }
    /* between requests (idle, shutting down) nothing is owed; during one,
     * a 503 tells the client it may retry elsewhere */
    if (!s->ex || s->ex->resp_started || s->state == S_CLOSING)
        return;
    if (s->state == S_HEAD && s->ex->req.len == 0)
        return;
    /* the core closes the connection after this: the one error path
     * answers, logs and audits this request */
    s->ex->r.keep_alive = false;
    cg_http_refuse(s, &(cg_http_refusal){ .status = unavailable ? 503 : 403,
                                          .detail = reason,
                                          .extra = unavailable ? CG_HTTP_RETRY_AFTER : NULL,
                                          .close = true });
}

static void http_drain(cg_conn *c)
{
    cg_conn_touch(c);
}

/* Between requests: no head begun, nothing pipelined, nothing running
 * (also when nothing of a request is held: none since the idle release). */
static bool http_idle(cg_conn *c)
{
    const http_sess *s = cg_conn_session(c);
    return s->ready && s->state == S_HEAD && !s->in_process &&
           (!s->ex || (s->ex->req.len == 0 && s->ex->pend.len == 0));
}

static void http_close(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    s->ready = false;
    if (!s->ex)
        return; /* no request since the last idle release: nothing held */
    if (s->state == S_BODY || s->state == S_WAIT_RESP || s->state == S_CONNECTING ||
        s->state == S_GATE) {
        if (s->ex->r.status == 0)
            s->ex->r.status = 499;
        cg_http_audit(s, "connection closed before the answer");
    }
    cg_http_req_free(s);
    exch_free(s);
}

const cg_proto_ops cg_http_proto = {
    .name = "http",
    .session_size = sizeof(http_sess),
    .lazy_open = true, /* the client speaks first: an idle connection holds no session */
    .on_open = http_open,
    .on_client_data = http_client_data,
    .on_client_eof = http_client_eof,
    .on_upstream_connected = cg_http_connected,
    .on_upstream_data = cg_http_upstream_data,
    .on_upstream_eof = cg_http_upstream_eof,
    .on_drain = http_drain,
    .on_timer = http_timer,
    .on_refuse = http_refuse,
    .on_close = http_close,
    .on_idle = http_idle,
    .on_thread_end = cg_http_thread_end,
};
