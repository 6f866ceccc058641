/* proxy/http/request.c — the HTTP gateway (cg_http_proto): one request at a time per
 * connection (keep-alive and pipelining from clients, pipelined requests
 * held until the answer before them is complete), each parsed strictly,
 * authenticated, judged by the ACL on its normalised path, rewritten and
 * streamed to a pooled backend connection; the answer is streamed back
 * with X-Transaction-Id. Every refusal goes through http_error(). */
#include "proxy/http/http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "policy/acl.h"
#include "store/audit.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/admin/metrics.h"
#include "common/cg_buf.h"
#include "common/cg_util.h"
#include "proxy/core/conn.h"
#include "proxy/http/dav.h"
#include "proxy/http/host.h"
#include "proxy/http/internal.h"
#include "proxy/http/parse.h"
#include "proxy/http/path.h"

/* S_GATE: the request gate's work runs off the loop (http.h WAIT) */
enum { S_HEAD, S_CONNECTING, S_BODY, S_WAIT_RESP, S_CLOSING, S_GATE };

/* Pipelined bytes held while a request is in flight (reading is paused,
 * so at most one read beyond the head limit arrives). */
#define PENDING_MAX (256u * 1024)
/* pipelined bytes kept while a request is forwarded before reading stops
 * (PENDING_MAX leaves room for what one socket read still delivers) */
#define PEND_PAUSE (16u * 1024)
#define OUT_HEAD_MAX (64u * 1024)
/* a 503 for a passing condition (audit store, shutdown) says when to
 * come back (RFC 9110 10.2.3) */
#define RETRY_AFTER "Retry-After: 10\r\n"

typedef struct http_req {
    char txid[40];
    char request_id[129];
    char method[24];
    int64_t principal_id;  /* what later steps look up; 0 when none */
    char principal[CG_NAME_MAX + 1]; /* for logs and audit */
    char fwd_host[CG_HTTP_HOST_MAX + 9]; /* the Host the backend gets:
                                          * "[" name "]:" port NUL */
    const char *auth_method;
    char *path;           /* decoded (what the ACL judged) */
    char *canon;          /* canonical form forwarded */
    char *dest;           /* decoded Destination, or NULL */
    const char *query;
    size_t query_len;
    int64_t rule_id;
    const char *decision;
    bool head_method, keep_alive, expect_continue, filter_multistatus;
    bool has_body, body_done, close_after;
    bool local;           /* answered by the gateway (http.h gate), no backend */
    uint64_t bytes_in, bytes_out;
    int status;
    const cg_http_body_filter *filter;
    void *fctx;
    cg_http_body_verdict verdict;
    bool hold_last;       /* CL body with a filter: last byte held */
    uint8_t held;
    uint64_t body_left;   /* CL bodies: bytes still to come */
} http_req;

/* The paths of one request, each in its own array: a decoded path is at
 * most CG_HTTP_PATH_MAX bytes and its canonical encoding at most three
 * times that (proxy/http/path.h). Every writer is given the sizeof of the array
 * it writes, never an offset into a shared block. */
typedef struct http_paths {
    char path[CG_HTTP_PATH_MAX + 1];            /* target, decoded */
    char canon[3 * CG_HTTP_PATH_MAX + 1];       /* target, canonical */
    char dest[CG_HTTP_PATH_MAX + 1];            /* Destination, decoded */
    char dest_canon[3 * CG_HTTP_PATH_MAX + 1];  /* Destination, canonical */
} http_paths;

typedef struct http_sess {
    bool ready;
    cg_conn *c;
    int state;
    cg_http_parser req, resp;
    uint64_t nreq;
    cg_audit_resv resv;   /* the place of this request's audit record (SPEC 5) */
    struct gate_wait *gate; /* S_GATE: the gate's job on the thread pool */
    http_req r;
    uint8_t *pend;
    size_t plen, pcap;
    char *out;            /* the rewritten request head (kept for a retry) */
    size_t out_len;
    bool retried, up_bytes, resp_started, resp_chunked, resp_close;
    bool in_process;      /* process() is walking a buffer: no re-entry */
    bool client_eof;      /* the client half-closed: answer what it sent */
    char *xml;            /* buffered multistatus */
    size_t xml_len;
    bool xml_over;
    struct http_paths *paths; /* made at the first request */
} http_sess;

static cg_http_filter_select_fn g_filter_select;
static cg_http_gate_fn g_gate;

void cg_http_set_body_filter(cg_http_filter_select_fn fn)
{
    g_filter_select = fn;
}

void cg_http_set_gate(cg_http_gate_fn fn)
{
    g_gate = fn;
}

/* ---- small helpers -------------------------------------------------------- */

static bool pend_append(http_sess *s, const uint8_t *buf, size_t len)
{
    if (len == 0)
        return true;
    if (!cg_buf_grow((void **)&s->pend, &s->pcap, s->plen + len, 16384, PENDING_MAX))
        return false;
    memcpy(s->pend + s->plen, buf, len);
    s->plen += len;
    return true;
}

static void pend_consume(http_sess *s, size_t n)
{
    memmove(s->pend, s->pend + n, s->plen - n);
    s->plen -= n;
}

/* ---- audit and the one error path ----------------------------------------- */

static void audit_request(http_sess *s, const char *reason)
{
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    http_req *r = &s->r;
    char result[8];
    snprintf(result, sizeof result, "%d", r->status);
    cg_audit_rec a;
    cg_conn_info_audit(ci, &a);
    a.txid = r->txid;
    a.request_id = r->request_id[0] ? r->request_id : NULL;
    a.principal = r->principal[0] ? r->principal : NULL;
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
    if (cg_audit_commit(&s->resv, &a) < 0)
        cg_warn("conn=%llu txid=%s audit record not stored", (unsigned long long)ci->id,
                r->txid);
}

static void gate_detach(http_sess *s);

static void req_free(http_sess *s)
{
    http_req *r = &s->r;
    cg_audit_release(&s->resv); /* a place no record took */
    gate_detach(s);
    if (r->filter && r->filter->free)
        r->filter->free(r->fctx);
    r->filter = NULL;
    free(s->xml);
    s->xml = NULL;
    s->xml_len = 0;
    s->xml_over = false;
}

static void next_request(http_sess *s);

/* Status, reason, detail -> "STATUS REASON: DETAIL (txid ID)", with the
 * log line and the audit record. extra: more header lines (CRLF-ended).
 * xml_body: an RFC 4918 precondition body instead of the text line.
 * After the answer the connection closes when close_after is set, or when
 * unread request bytes would otherwise be taken for the next request. */
/* Writes "STATUS REASON: DETAIL (txid ID)" (or xml_body) with its head.
 * A head too large for its buffer becomes a bare one that closes
 * (*close_after set). Returns the body bytes written. */
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
    cg_conn_write_client(c, head, (size_t)hl);
    if (head_only || bl <= 0)
        return 0;
    cg_conn_write_client(c, body, (size_t)bl);
    return (uint64_t)bl;
}

static void http_answer(http_sess *s, int status, const char *detail, const char *reason,
                        const char *extra, const char *xml_body, bool close_after);

static void http_error(http_sess *s, int status, const char *detail, const char *extra,
                       const char *xml_body, bool close_after)
{
    http_answer(s, status, detail, detail, extra, xml_body, close_after);
}

/* As http_error, but the client reads detail while the log line and the
 * audit record carry reason (what the client must not be told). */
static void http_answer(http_sess *s, int status, const char *detail, const char *reason,
                        const char *extra, const char *xml_body, bool close_after)
{
    cg_conn *c = s->c;
    const cg_conn_info *ci = cg_conn_info_of(c);
    http_req *r = &s->r;
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
    if (s->resp_started) {
        /* part of an answer is out: nothing honest can follow it */
        audit_request(s, reason);
        req_free(s);
        s->state = S_CLOSING;
        cg_conn_upstream_release(c, false);
        cg_conn_abort(c, reason);
        return;
    }
    if (r->has_body && !r->body_done)
        close_after = true;
    if (!r->keep_alive)
        close_after = true;
    r->bytes_out += write_answer(c, status, detail, r->txid, extra, xml_body, r->head_method,
                                 &close_after);
    audit_request(s, reason);
    req_free(s);
    if (cg_conn_upstream_attached(c))
        cg_conn_upstream_release(c, false);
    if (close_after) {
        s->state = S_CLOSING;
        cg_conn_set_timer(c, 0);
        cg_conn_close(c, reason);
        return;
    }
    next_request(s);
}

/* ---- request head: authentication, decision, rewriting --------------------- */

static const char *hdr_lookup(const void *hctx, const char *name, size_t *len)
{
    const cg_http_parser *p = hctx;
    const cg_http_header *h = cg_http_header_get(p, name, NULL);
    if (!h)
        return NULL;
    *len = h->value.len;
    return cg_http_str(p, h->value);
}

/* Decides every right in rights on path (and, for subtree operations,
 * below it). 0, or the 403 was answered. */
static int judge(http_sess *s, const cg_snapshot *snap, const cg_principal *p,
                 unsigned rights, const char *path, bool subtree)
{
    http_req *r = &s->r;
    const struct cg_acl *acl = cg_snapshot_acl(snap);
    for (unsigned bit = 1; bit <= CG_RIGHT_DELETE; bit <<= 1) {
        if (!(rights & bit))
            continue;
        cg_decision d = cg_acl_decide(acl, p, CG_SVC_HTTP, bit, path, strlen(path), '/');
        r->rule_id = d.rule_id;
        char detail[CG_HTTP_PATH_MAX + 64];
        if (!d.allow) {
            r->decision = "deny";
            snprintf(detail, sizeof detail, "%s denied on \"%.256s\"", cg_right_name(bit), path);
            http_error(s, 403, detail, NULL, NULL, false);
            return -1;
        }
        if (subtree) {
            /* SPEC 4: MOVE /a/ must not carry /a/secret/ out from under a
             * deny; any target may be a collection, so always check */
            char prefix[CG_HTTP_PATH_MAX + 2];
            size_t pl = strlen(path);
            memcpy(prefix, path, pl);
            if (pl == 0 || prefix[pl - 1] != '/')
                prefix[pl++] = '/';
            prefix[pl] = '\0';
            int64_t rid = 0;
            if (!cg_acl_subtree_clear(acl, p, CG_SVC_HTTP, bit, prefix, pl, '/', &rid)) {
                r->decision = "deny";
                r->rule_id = rid;
                snprintf(detail, sizeof detail, "%s denied below \"%.256s\"", cg_right_name(bit),
                         path);
                http_error(s, 403, detail, NULL, NULL, false);
                return -1;
            }
        }
    }
    return 0;
}

/* The request head for the backend, kept in s->out (for one retry on a
 * fresh connection). 0 or an error was answered. */
static int build_request_head(http_sess *s, const char *dest_canon, const char *if_rewritten)
{
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    const cg_upstream_cfg *u = ci->listener->upstream;
    http_req *r = &s->r;
    if (!s->out)
        s->out = malloc(OUT_HEAD_MAX);
    if (!s->out) {
        http_error(s, 503, "out of memory", NULL, NULL, true);
        return -1;
    }
    cg_http_fwd f = {
        .method = r->method, .canon = r->canon, .host = r->fwd_host, .query = r->query,
        .query_len = r->query_len,
        .destination = dest_canon, .if_value = if_rewritten, .client_addr = ci->client_addr,
        .tls = ci->tls, .principal_header = u ? u->principal_header : NULL,
        .principal = r->principal,
    };
    if (cg_http_build_request(&s->req, &f, s->out, OUT_HEAD_MAX, &s->out_len) < 0) {
        http_error(s, 431, "request head too large after rewriting", NULL, NULL, false);
        return -1;
    }
    return 0;
}

/* RFC 9110 7.4: a listener answers only for the names it serves
 * (server_names), and over TLS only for the name the client asked for in
 * SNI (the certificate it checked was for that name). Anything else is
 * 421, so no client picks the backend's virtual host. The backend gets
 * the upstream's fixed host, else the matched name without the client's
 * port or spelling. 0, or the 421 / 400 was answered. */
static int route_host(http_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    const cg_listener_cfg *l = ci->listener;
    const cg_http_head *h = &s->req.head;
    http_req *r = &s->r;
    const char *list = l->server_names ? l->server_names : "*";
    bool every = strcmp(list, "*") == 0;
    const cg_http_span names[2] = {h->host, h->form == CG_HTTP_ABSOLUTE ? h->authority
                                                                       : (cg_http_span){0, 0}};
    const char *name = NULL;
    size_t nlen = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN(names); i++) {
        const char *n;
        size_t nl;
        if (!names[i].len)
            continue;
        if (!cg_http_host_name(cg_http_str(&s->req, names[i]), names[i].len, &n, &nl)) {
            http_error(s, 400, "malformed Host", NULL, NULL, false);
            return -1;
        }
        if (!every && !cg_http_name_served(list, n, nl, &n, &nl)) {
            http_error(s, 421, "this listener does not serve that host", NULL, NULL, false);
            return -1;
        }
        if (!every && ci->sni[0] && !cg_http_is_ip(ci->sni) &&
            !cg_http_same_host(ci->sni, strlen(ci->sni), n, nl)) {
            http_error(s, 421, "Host differs from the TLS server name", NULL, NULL, false);
            return -1;
        }
        name = n;
        nlen = nl;
    }
    const cg_upstream_cfg *u = l->upstream;
    const char *it = list;
    if (u && u->host) {
        cg_strlcpy(r->fwd_host, u->host, sizeof r->fwd_host);
    } else if (name) {
        cg_http_host_format(name, nlen, r->fwd_host, sizeof r->fwd_host);
    } else if (every || !cg_http_first_name(&it, &name, &nlen) ||
               !cg_http_host_format(name, nlen, r->fwd_host, sizeof r->fwd_host)) {
        /* HTTP/1.0 without Host: the backend still gets a 1.1 Host */
        cg_strlcpy(r->fwd_host, "localhost", sizeof r->fwd_host);
    }
    return 0;
}

static void sanitize_request_id(http_sess *s)
{
    const cg_http_header *h = cg_http_header_get(&s->req, "x-request-id", NULL);
    size_t o = 0;
    if (h) {
        const char *v = cg_http_str(&s->req, h->value);
        for (size_t i = 0; i < h->value.len && o + 1 < sizeof s->r.request_id; i++)
            if (v[i] > 0x20 && v[i] < 0x7F)
                s->r.request_id[o++] = v[i];
    }
    s->r.request_id[o] = '\0';
}

static void start_forwarding(http_sess *s);
static void start_local(http_sess *s);
static void write_client(http_sess *s, const void *buf, size_t len);

static void resp_body(void *ctx, const uint8_t *buf, size_t len);

/* The buffers a request needs beyond its head, made at the first
 * request: an idle or never-used connection holds only its head buffer. */
static bool request_buffers(http_sess *s)
{
    if (!s->paths && !(s->paths = malloc(sizeof *s->paths)))
        return false;
    if (!s->resp.initialized) {
        if (cg_http_parser_init(&s->resp, false, 32768, 200, 32768) < 0)
            return false;
        s->resp.on_body = resp_body;
        s->resp.ctx = s;
    }
    return true;
}

/* The gate's answer: 0 forwards the request, CG_HTTP_GATE_LOCAL answers
 * it here, a status refuses it. */
static void gate_answered(http_sess *s, const cg_http_request_view *v, int g,
                          const cg_http_body_filter *lf, void *lctx, const char *gd,
                          const char *dest_canon, const char *if_out)
{
    http_req *r = &s->r;
    if (g == CG_HTTP_GATE_LOCAL) {
        r->filter = lf;
        r->fctx = lctx;
        start_local(s);
        return;
    }
    if (g) {
        if (g >= 400)
            r->decision = "error";
        http_error(s, g, gd ? gd : "refused", NULL, NULL, false);
        return;
    }
    if (g_filter_select) {
        r->filter = g_filter_select(v, &r->fctx);
        r->hold_last = r->filter && r->has_body && s->req.head.framing == CG_HTTP_BODY_LENGTH;
    }
    if (build_request_head(s, dest_canon, if_out) < 0)
        return;
    start_forwarding(s);
}

/* A gate job on libuv's thread pool (http.h CG_HTTP_GATE_WAIT). The
 * request waits in S_GATE; its view points into the session and the
 * snapshot, both kept until the job is done. */
typedef struct gate_wait {
    uv_work_t work;
    http_sess *s;                 /* NULL once the connection closed */
    cg_http_gate_job *job;
    cg_http_request_view v;
    cg_snapshot *snap;
    char *if_out;
    const char *dest_canon;       /* in the session's path buffers */
    bool local;                   /* for a local filter's on_end, not the gate */
} gate_wait;

static void gate_work(uv_work_t *w)
{
    gate_wait *gw = w->data;
    gw->job->work(gw->job);
}

static void gate_wait_free(gate_wait *gw)
{
    gw->job->free(gw->job);
    free(gw->if_out);
    if (gw->snap)
        cg_snapshot_release(gw->snap);
    free(gw);
}

static void run_pending(http_sess *s);
static void local_answer(http_sess *s, int st);

/* The request ends before its job: the job finishes alone and is freed. */
static void gate_detach(http_sess *s)
{
    if (s->gate) {
        s->gate->s = NULL;
        s->gate = NULL;
    }
}

static void gate_done(uv_work_t *w, int status)
{
    gate_wait *gw = w->data;
    http_sess *s = gw->s;
    if (s) {
        s->gate = NULL;
        const cg_http_body_filter *lf = NULL;
        void *lctx = NULL;
        const char *gd = "content check could not run";
        int g = status == 0 ? gw->job->finish(gw->job, &lf, &lctx, &gd) : 503;
        if (g == CG_HTTP_GATE_WAIT) {
            g = 500;
            gd = "content check asked to wait twice";
        }
        if (gw->local) { /* a local filter's on_end (no view, no forwarding) */
            if (!s->r.verdict.detail)
                s->r.verdict.detail = gd;
            local_answer(s, g);
        } else {
            gate_answered(s, &gw->v, g, lf, lctx, gd, gw->dest_canon, gw->if_out);
        }
        if (s->state == S_BODY) /* what the client sent while we waited */
            run_pending(s);
    }
    gate_wait_free(gw);
}

/* Takes snap and if_out: they live until the job is done. Without a
 * view (v NULL) the job is a local filter's on_end. */
static void gate_wait_start(http_sess *s, const cg_http_request_view *v, void *job,
                            cg_snapshot *snap, char *if_out, const char *dest_canon)
{
    gate_wait *gw = job ? calloc(1, sizeof *gw) : NULL;
    if (gw) {
        *gw = (gate_wait){ .s = s, .job = job, .snap = snap, .if_out = if_out,
                           .dest_canon = dest_canon, .local = !v };
        if (v)
            gw->v = *v;
        gw->work.data = gw;
        if (uv_queue_work(cg_conn_loop(s->c), &gw->work, gate_work, gate_done) == 0) {
            s->gate = gw;
            s->state = S_GATE;
            return;
        }
        gw->s = NULL;
        gate_wait_free(gw);
    } else {
        if (job)
            ((cg_http_gate_job *)job)->free(job);
        free(if_out);
        if (snap)
            cg_snapshot_release(snap);
    }
    http_error(s, 503, "content check could not start", NULL, NULL, false);
}

static void handle_request(http_sess *s)
{
    cg_conn *c = s->c;
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_listener_cfg *l = ci->listener;
    http_req *r = &s->r;
    cg_http_head *h = &s->req.head;

    if (!request_buffers(s)) {
        http_error(s, 503, "out of memory", NULL, NULL, true);
        return;
    }

    size_t ml = h->method_name.len < sizeof r->method - 1 ? h->method_name.len
                                                          : sizeof r->method - 1;
    memcpy(r->method, cg_http_str(&s->req, h->method_name), ml);
    r->method[ml] = '\0';
    r->head_method = h->method == HTTP_HEAD;
    r->keep_alive = h->keep_alive;
    r->has_body = h->framing != CG_HTTP_BODY_NONE;
    r->body_done = !r->has_body;
    r->body_left = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length : 0;
    sanitize_request_id(s);

    /* the path first: every later answer names the resource */
    http_paths *ps = s->paths;
    char *dec = ps->path, *can = ps->canon;
    r->path = dec;
    r->canon = can;
    dec[0] = can[0] = '\0';
    const char *target = cg_http_str(&s->req, h->path);
    size_t pl = 0;
    if (h->form == CG_HTTP_ASTERISK) {
        memcpy(dec, "*", 2);
        memcpy(can, "*", 2);
    } else {
        const char *why = "malformed request target";
        size_t dl, cl;
        if (cg_http_target_split(target, h->path.len, &pl, &r->query, &r->query_len) < 0 ||
            cg_http_path_normalize(target, pl, dec, sizeof ps->path, &dl, can,
                                   sizeof ps->canon, &cl, &why) < 0) {
            dec[0] = '\0';
            http_error(s, pl > CG_HTTP_PATH_MAX ? 414 : 400, why, NULL, NULL, false);
            return;
        }
    }

    /* SPEC 3: a plaintext listener serves nothing */
    if (l->tls == CG_TLS_NONE) {
        if (l->insecure == CG_INSECURE_REDIRECT && l->redirect_to) {
            char loc[CG_HTTP_PATH_MAX * 4];
            size_t rl = strlen(l->redirect_to);
            while (rl > 0 && l->redirect_to[rl - 1] == '/')
                rl--;
            snprintf(loc, sizeof loc, "Location: %.*s%s%s%.*s\r\n", (int)rl, l->redirect_to,
                     h->form == CG_HTTP_ASTERISK ? "/" : can, r->query ? "?" : "",
                     (int)r->query_len, r->query ? r->query : "");
            http_error(s, 308, "TLS required", loc, NULL, false);
        } else {
            http_error(s, 426, "TLS required", "Upgrade: TLS/1.2, HTTP/1.1\r\n", NULL, true);
        }
        return;
    }
    if (cg_audit_reserve(&s->resv) < 0) {
        /* SPEC 5, audit_fail = closed: nothing unrecorded happens */
        http_error(s, 503, "audit log unavailable", RETRY_AFTER, NULL, true);
        return;
    }
    if (route_host(s) < 0)
        return;
    if (!l->upstream) {
        http_error(s, 502, "no upstream configured", NULL, NULL, false);
        return;
    }

    cg_snapshot *snap = cg_snapshot_acquire();
    if (!snap) {
        http_error(s, 503, "policy not loaded", NULL, NULL, true);
        return;
    }
    char *if_out = NULL;
    cg_http_auth au;
    cg_http_authenticate(ci, &s->req, r->method, snap, &au);
    cg_strlcpy(r->principal, au.principal, sizeof r->principal);
    r->auth_method = au.method;
    if (au.status == 401) {
        char extra[1200];
        cg_http_challenges(l, au.stale, extra, sizeof extra);
        http_answer(s, 401, au.detail, au.reason ? au.reason : au.detail, extra, NULL, false);
        goto out;
    }
    if (au.status) {
        http_error(s, au.status, au.detail, NULL, NULL, false);
        goto out;
    }
    const cg_principal *p = au.who;
    if (!p || !p->enabled) {
        http_error(s, 403, p ? "principal disabled" : "principal unknown", NULL, NULL, false);
        goto out;
    }
    cg_strlcpy(r->principal, p->name, sizeof r->principal);
    r->principal_id = p->id;

    unsigned src, dst;
    bool subtree;
    if (!cg_http_method_rights(r->method, &src, &dst, &subtree)) {
        char allow[256];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", cg_http_allow);
        http_error(s, 405, "method not allowed", allow, NULL, false);
        goto out;
    }
    if (h->form == CG_HTTP_ASTERISK && h->method != HTTP_OPTIONS) {
        http_error(s, 400, "asterisk-form target", NULL, NULL, false);
        goto out;
    }

    /* Expect (RFC 9110 10.1.1): 100-continue is answered by the gateway
     * once the request is authorised; other expectations cannot be met */
    const cg_http_header *ex = cg_http_header_get(&s->req, "expect", NULL);
    if (ex) {
        if (!cg_http_span_eq(&s->req, ex->value, "100-continue")) {
            http_error(s, 417, "unsupported expectation", NULL, NULL, true);
            goto out;
        }
        r->expect_continue = r->has_body;
    }

    if (h->method == HTTP_PROPFIND) {
        const cg_http_header *dh = cg_http_header_get(&s->req, "depth", NULL);
        bool d0 = dh && cg_http_span_eq(&s->req, dh->value, "0");
        bool d1 = dh && cg_http_span_eq(&s->req, dh->value, "1");
        if (!d0 && !d1) {
            /* RFC 4918 9.1: no Depth means infinity */
            http_error(s, 403, "PROPFIND with Depth: infinity", NULL,
                       "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                       "<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
                       false);
            goto out;
        }
        r->filter_multistatus = d1;
    }

    if (src && h->form != CG_HTTP_ASTERISK && judge(s, snap, p, src, dec, subtree) < 0)
        goto out;

    const char *https_host = h->host.len ? cg_http_str(&s->req, h->host) : "";
    size_t hostlen = h->host.len;
    char *dest_canon = NULL;
    if (dst) {
        const cg_http_header *dh = cg_http_header_get(&s->req, "destination", NULL);
        if (!dh) {
            http_error(s, 400, "Destination header missing", NULL, NULL, false);
            goto out;
        }
        size_t vl = dh->value.len, cl;
        char *ddec = ps->dest;
        dest_canon = ps->dest_canon;
        /* RFC 9110 15.5.15 (414) is for the target; a header gets 400 */
        if (vl > CG_HTTP_PATH_MAX) {
            http_error(s, 400, "Destination too long", NULL, NULL, false);
            goto out;
        }
        int rc = cg_http_dav_url_canon(cg_http_str(&s->req, dh->value), vl, https_host, hostlen,
                                       ci->tls, ddec, sizeof ps->dest, dest_canon,
                                       sizeof ps->dest_canon, &cl);
        if (rc == 1) {
            http_error(s, 502, "Destination names another server", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_E_LIMIT) {
            http_error(s, 400, "Destination too long", NULL, NULL, false);
            goto out;
        }
        if (rc < 0) {
            http_error(s, 400, "malformed Destination", NULL, NULL, false);
            goto out;
        }
        r->dest = ddec;
        if (judge(s, snap, p, dst, ddec, true) < 0)
            goto out;
    }
    const cg_http_header *ih = cg_http_header_get(&s->req, "if", NULL);
    if (ih) {
        /* one allocation of if_cap bytes, told if_cap: every tag's
         * canonical form is at most three times its URL (proxy/http/dav.h) */
        size_t if_cap = 3 * (size_t)ih->value.len + 64, ol;
        if (!(if_out = malloc(if_cap))) {
            http_error(s, 503, "out of memory", NULL, NULL, true);
            goto out;
        }
        int rc = cg_http_dav_rewrite_if(cg_http_str(&s->req, ih->value), ih->value.len,
                                        https_host, hostlen, ci->tls, if_out, if_cap, &ol);
        if (rc == 1) {
            http_error(s, 502, "If header names another server", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_E_LIMIT) {
            http_error(s, 400, "If header resource tag too long", NULL, NULL, false);
            goto out;
        }
        if (rc < 0) {
            http_error(s, 400, "malformed If header", NULL, NULL, false);
            goto out;
        }
    }

    if (l->max_body && h->framing == CG_HTTP_BODY_LENGTH && h->content_length > l->max_body) {
        http_error(s, 413, "request body too large", NULL, NULL, true);
        goto out;
    }
    r->decision = "allow";

    cg_http_request_view v = {
        .method = r->method, .path = dec, .principal = r->principal, .who = p, .txid = r->txid,
        .content_length = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length
                          : h->framing == CG_HTTP_BODY_NONE ? 0 : UINT64_MAX,
        .snap = snap, .dest = r->dest, .header = hdr_lookup, .hctx = &s->req,
    };
    const cg_http_body_filter *lf = NULL;
    void *lctx = NULL;
    const char *gd = NULL;
    /* content validation (SPEC 6): may refuse, answer itself, or wait */
    int g = g_gate ? g_gate(&v, &lf, &lctx, &gd) : 0;
    if (g == CG_HTTP_GATE_WAIT) {
        gate_wait_start(s, &v, lctx, snap, if_out, dest_canon);
        return; /* snap and if_out go with the wait */
    }
    gate_answered(s, &v, g, lf, lctx, gd, dest_canon, if_out);
out:
    free(if_out);
    cg_snapshot_release(snap);
}

/* ---- forwarding ----------------------------------------------------------- */

static void start_forwarding(http_sess *s)
{
    s->state = S_CONNECTING;
    s->retried = false;
    s->up_bytes = false;
    /* the client stays readable: what it pipelines meanwhile is kept (up
     * to PEND_PAUSE, then reading stops), which spares two epoll_ctl
     * calls per request on a keep-alive connection */
    if (cg_conn_upstream_connect(s->c) < 0)
        http_error(s, 502, "backend unavailable", NULL, NULL, true);
}

static void body_fail(http_sess *s, int status, const char *detail)
{
    /* the backend got part of a body: drop that connection before the
     * end, so nothing half-sent is ever committed */
    cg_conn_upstream_release(s->c, false);
    http_error(s, status, detail, NULL, NULL, true);
}

/* Decoded request body bytes (from the request parser). */
static void req_body(void *ctx, const uint8_t *buf, size_t len)
{
    http_sess *s = ctx;
    http_req *r = &s->r;
    cg_conn *c = s->c;
    if (s->state != S_BODY || len == 0)
        return;
    const cg_listener_cfg *l = cg_conn_info_of(c)->listener;
    r->bytes_in += len;
    if (l->max_body && r->bytes_in > l->max_body) {
        body_fail(s, 413, "request body too large");
        return;
    }
    if (r->filter && r->filter->on_data) {
        int st = r->filter->on_data(r->fctx, buf, len, &r->verdict);
        if (st) {
            body_fail(s, st, r->verdict.detail ? r->verdict.detail : "content refused");
            return;
        }
    }
    if (r->local)
        return;
    if (s->req.head.framing == CG_HTTP_BODY_CHUNKED) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        cg_conn_write_upstream(c, sz, (size_t)n);
        cg_conn_write_upstream(c, buf, len);
        cg_conn_write_upstream(c, "\r\n", 2);
        return;
    }
    r->body_left -= len;
    if (r->hold_last && r->body_left == 0) {
        /* keep the last byte until the filter approves (http.h) */
        r->held = buf[len - 1];
        len--;
    }
    if (len)
        cg_conn_write_upstream(c, buf, len);
}

/* A request the gate answers itself: its whole body goes to the local
 * filter, on_end's status (0: 200) with the verdict's detail is the
 * answer. The backend never sees it. */
static void local_end(http_sess *s)
{
    http_req *r = &s->r;
    r->body_done = true;
    int st = r->filter && r->filter->on_end ? r->filter->on_end(r->fctx, &r->verdict) : 0;
    if (st == CG_HTTP_GATE_WAIT && r->filter->job) {
        gate_wait_start(s, NULL, r->filter->job(r->fctx), NULL, NULL, NULL);
        return;
    }
    local_answer(s, st);
}

static void local_answer(http_sess *s, int st)
{
    http_req *r = &s->r;
    if (st == 0)
        st = 200;
    if (st >= 400)
        r->decision = "error";
    http_error(s, st, r->verdict.detail ? r->verdict.detail : st == 200 ? "accepted" : "refused",
               NULL, NULL, false);
}

static void start_local(http_sess *s)
{
    http_req *r = &s->r;
    r->local = true;
    if (!r->has_body) {
        local_end(s);
        return;
    }
    if (r->expect_continue)
        write_client(s, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    s->state = S_BODY;
    cg_conn_set_timer(s->c, (uint64_t)cg_conn_info_of(s->c)->listener->client_timeout * 1000);
}

static void req_body_done(http_sess *s)
{
    http_req *r = &s->r;
    cg_conn *c = s->c;
    if (r->local) {
        local_end(s);
        return;
    }
    if (r->filter && r->filter->on_end && r->has_body) {
        int st = r->filter->on_end(r->fctx, &r->verdict);
        if (st) {
            r->body_done = true;
            body_fail(s, st, r->verdict.detail ? r->verdict.detail : "content refused");
            return;
        }
    }
    if (s->req.head.framing == CG_HTTP_BODY_CHUNKED)
        cg_conn_write_upstream(c, "0\r\n\r\n", 5);
    else if (r->hold_last)
        cg_conn_write_upstream(c, &r->held, 1);
    r->body_done = true;
    cg_conn_set_timer(c, 0);
    if (s->state == S_BODY) {
        s->state = S_WAIT_RESP;
        if (!s->up_bytes)
            cg_conn_upstream_expect(c, true);
    }
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

static void run_pending(http_sess *s)
{
    while (s->plen && (s->state == S_HEAD || s->state == S_BODY)) {
        size_t used = 0;
        int before = s->state;
        process(s, s->pend, s->plen, &used);
        if (s->state == S_CLOSING)
            return;
        pend_consume(s, used);
        if (used == 0 && s->state == before)
            break;
    }
    if (s->state == S_HEAD || s->state == S_BODY)
        cg_conn_read_client(s->c, true);
    finish_if_eof(s);
}

static void next_request(http_sess *s)
{
    cg_http_parser_reset(&s->req);
    if (s->resp.initialized)
        cg_http_parser_reset(&s->resp);
    s->req.on_body = req_body;
    s->req.ctx = s;
    memset(&s->r, 0, sizeof s->r);
    s->resp_started = s->resp_chunked = s->resp_close = false;
    s->state = S_HEAD;
    cg_conn_set_timer(s->c, 0);
    if (!s->in_process)
        run_pending(s);
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
            if (!s->r.txid[0]) {
                /* client_timeout: a deadline for the whole head, not
                 * reset by each byte (slowloris) */
                cg_conn_set_timer(s->c, (uint64_t)ci->listener->client_timeout * 1000);
                s->nreq++;
                snprintf(s->r.txid, sizeof s->r.txid, "%s.%" PRIu64, ci->session_id, s->nreq);
            }
            int r = cg_http_feed_head(&s->req, buf + off, len - off, &used, &why);
            off += used;
            if (r == 0)
                continue;
            cg_conn_set_timer(s->c, 0);
            if (r != 1) {
                char allow[256];
                snprintf(allow, sizeof allow, "Allow: %s\r\n", cg_http_allow);
                http_error(s, r, why ? why : "malformed request", r == 405 ? allow : NULL,
                           NULL, true);
                *consumed = len;
                return;
            }
            handle_request(s);
            if (s->state == S_CLOSING) {
                *consumed = len;
                return;
            }
        } else if (s->state == S_BODY) {
            cg_conn_set_timer(s->c, (uint64_t)ci->listener->client_timeout * 1000);
            int r = cg_http_feed_body(&s->req, buf + off, len - off, &used, &why);
            off += used;
            if (s->state == S_CLOSING) {
                *consumed = len;
                return;
            }
            if (r > 1) {
                body_fail(s, r, why ? why : "malformed body");
                *consumed = len;
                return;
            }
            if (r == 1)
                req_body_done(s);
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

/* ---- response ------------------------------------------------------------- */

static void write_client(http_sess *s, const void *buf, size_t len)
{
    if (len == 0)
        return;
    cg_conn_write_client(s->c, buf, len);
}

/* A redirect the backend builds names itself: nginx writes the Host it
 * was sent with its own port and scheme ("http://localhost:20080/d/").
 * Point it back at the gateway the client talks to (scheme and Host of
 * the request), so following it never bypasses the gateway. true when a
 * rewritten Location was written. */
static bool location_rewrite(http_sess *s, cg_obuf *o, const char *v, size_t n)
{
    const cg_http_head *rq = &s->req.head;
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
    const char *fwd = s->r.fwd_host;
    if (!cg_http_host_name(v + skip, e - skip, &ln, &lnl) ||
        !cg_http_host_name(fwd, strlen(fwd), &fn, &fnl) || !cg_http_same_host(ln, lnl, fn, fnl))
        return false;
    const char *host = cg_http_str(&s->req, rq->host);
    size_t hl = rq->host.len;
    cg_ob_str(o, cg_conn_info_of(s->c)->tls ? "Location: https://" : "Location: http://");
    cg_ob_add(o, host, hl);
    cg_ob_add(o, v + e, n - e);
    cg_ob_str(o, "\r\n");
    return true;
}

/* The answer's head toward the client: backend status and end-to-end
 * fields, our framing, X-Transaction-Id. */
static void send_response_head(http_sess *s, bool have_length, uint64_t length)
{
    cg_http_parser *p = &s->resp;
    http_req *r = &s->r;
    /* the request head in s->out is no longer needed (an answer came, so
     * no retry): the buffer is reused, no allocation per response */
    char *buf = s->out;
    cg_obuf o = {buf, 0, OUT_HEAD_MAX, false};
    char line[64];
    snprintf(line, sizeof line, "HTTP/1.1 %d ", p->head.status);
    cg_ob_str(&o, line);
    cg_ob_add(&o, cg_http_str(p, p->head.reason), p->head.reason.len);
    cg_ob_str(&o, "\r\n");
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
        cg_ob_add(&o, cg_http_str(p, h->name), h->name.len);
        cg_ob_str(&o, ": ");
        cg_ob_add(&o, cg_http_str(p, h->value), h->value.len);
        cg_ob_str(&o, "\r\n");
    }
    s->resp_chunked = false;
    if (!no_body) {
        if (have_length) {
            snprintf(line, sizeof line, "Content-Length: %" PRIu64 "\r\n", length);
            cg_ob_str(&o, line);
        } else if (s->req.head.minor >= 1) {
            cg_ob_str(&o, "Transfer-Encoding: chunked\r\n");
            s->resp_chunked = true;
        } else {
            s->resp_close = true; /* HTTP/1.0 client: delimited by close */
        }
    }
    if (!r->keep_alive || (r->has_body && !r->body_done))
        s->resp_close = true;
    if (s->resp_close)
        cg_ob_str(&o, "Connection: close\r\n");
    cg_ob_str(&o, "X-Transaction-Id: ");
    cg_ob_str(&o, r->txid);
    cg_ob_str(&o, "\r\n\r\n");
    s->out_len = 0;
    if (o.over) {
        http_error(s, 502, "backend response head too large", NULL, NULL, true);
        return;
    }
    s->resp_started = true;
    r->status = st;
    write_client(s, buf, o.len);
}

typedef struct keep_ctx {
    const cg_snapshot *snap;
    const cg_principal *p;
} keep_ctx;

static bool keep_href(void *ctx, const char *path, size_t len)
{
    keep_ctx *k = ctx;
    cg_decision d = cg_acl_decide(cg_snapshot_acl(k->snap), k->p, CG_SVC_HTTP, CG_RIGHT_LIST,
                                  path, len, '/');
    return d.allow;
}

static void resp_body(void *ctx, const uint8_t *buf, size_t len)
{
    http_sess *s = ctx;
    if (len == 0 || s->state == S_CLOSING)
        return;
    if (s->r.filter_multistatus && !s->resp_started) {
        if (s->xml_over || s->xml_len + len > CG_HTTP_MULTISTATUS_MAX) {
            s->xml_over = true;
            return;
        }
        char *n = realloc(s->xml, s->xml_len + len + 1);
        if (!n) {
            s->xml_over = true;
            return;
        }
        s->xml = n;
        memcpy(s->xml + s->xml_len, buf, len);
        s->xml_len += len;
        return;
    }
    s->r.bytes_out += len;
    if (s->resp_chunked) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        write_client(s, sz, (size_t)n);
        write_client(s, buf, len);
        write_client(s, "\r\n", 2);
    } else {
        write_client(s, buf, len);
    }
}

static void filtered_multistatus(http_sess *s)
{
    if (s->xml_over) {
        http_error(s, 502, "multistatus answer too large to filter", NULL, NULL, false);
        return;
    }
    cg_snapshot *snap = cg_snapshot_acquire();
    const cg_principal *p = snap ? cg_snapshot_principal_by_id(snap, s->r.principal_id) : NULL;
    char *out = NULL;
    size_t ol = 0, removed = 0;
    keep_ctx k = {snap, p};
    const cg_http_head *h = &s->req.head;
    int rc = p ? cg_http_dav_filter(s->xml ? s->xml : "", s->xml_len,
                                    cg_http_str(&s->req, h->host), h->host.len,
                                    cg_conn_info_of(s->c)->tls, keep_href, &k, &out, &ol, &removed)
               : CG_E_AUTH;
    if (snap)
        cg_snapshot_release(snap);
    if (rc < 0) {
        http_error(s, 502, "unreadable multistatus answer", NULL, NULL, false);
        return;
    }
    send_response_head(s, true, ol);
    if (s->state != S_CLOSING) {
        write_client(s, out, ol);
        s->r.bytes_out += ol;
    }
    free(out);
}

static void response_done(http_sess *s, bool upstream_reusable)
{
    cg_conn *c = s->c;
    http_req *r = &s->r;
    if (r->filter_multistatus && !s->resp_started) {
        filtered_multistatus(s);
        if (s->state == S_CLOSING)
            return;
    }
    if (s->resp_chunked)
        write_client(s, "0\r\n\r\n", 5);
    if (r->filter && r->filter->on_response)
        r->filter->on_response(r->fctx, r->status);
    bool reusable = upstream_reusable && s->resp.head.keep_alive && r->body_done;
    if (cg_conn_upstream_attached(c))
        cg_conn_upstream_release(c, reusable);
    cg_debug("conn=%llu txid=%s %s %s -> %d principal=%s", (unsigned long long)cg_conn_info_of(c)->id,
            r->txid, r->method, r->path ? r->path : "-", r->status,
            r->principal[0] ? r->principal : "-");
    audit_request(s, NULL);
    req_free(s);
    if (s->resp_close || !r->body_done) {
        s->state = S_CLOSING;
        cg_conn_close(c, "response complete");
        return;
    }
    next_request(s);
}

static void on_response_head(http_sess *s)
{
    cg_http_parser *p = &s->resp;
    if (p->head.status >= 100 && p->head.status < 200) {
        /* interim answers (100, 102, 103) are not relayed: the gateway
         * answered Expect itself */
        bool nb = p->no_body;
        cg_http_parser_reset(p);
        p->no_body = nb;
        p->on_body = resp_body;
        p->ctx = s;
        return;
    }
    if (s->r.filter_multistatus && p->head.status != 207)
        s->r.filter_multistatus = false;
    if (!s->r.filter_multistatus) {
        bool have = p->head.framing == CG_HTTP_BODY_LENGTH ||
                    (p->head.framing == CG_HTTP_BODY_NONE && !s->r.head_method &&
                     p->head.status != 204 && p->head.status != 304);
        send_response_head(s, have, p->head.framing == CG_HTTP_BODY_LENGTH
                                        ? p->head.content_length : 0);
    } else {
        s->r.status = p->head.status;
    }
}

/* ---- connection callbacks ------------------------------------------------- */

static void http_open(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    const cg_listener_cfg *l = cg_conn_info_of(c)->listener;
    s->c = c;
    if (cg_http_parser_init(&s->req, true, l->max_header_bytes, l->max_headers, l->max_line) < 0) {
        cg_conn_abort(c, "out of memory");
        return;
    }
    s->ready = true;
    s->req.on_body = req_body;
    s->req.ctx = s;
    s->state = S_HEAD;
}

static void http_client_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    http_sess *s = cg_conn_session(c);
    if (!s->ready || s->state == S_CLOSING)
        return;
    if (s->plen || (s->state != S_HEAD && s->state != S_BODY)) {
        if (!pend_append(s, buf, len)) {
            s->state = S_CLOSING;
            cg_conn_close(c, "too many pipelined bytes");
            return;
        }
        if (s->state != S_HEAD && s->state != S_BODY) {
            if (s->plen >= PEND_PAUSE)
                cg_conn_read_client(c, false);
            return;
        }
        run_pending(s);
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
        if (s->plen >= PEND_PAUSE || s->state == S_HEAD || s->state == S_BODY)
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
        s->r.body_done) {
        /* a client may half-close after its requests: the answers (also
         * to those still pending) go out, then the connection closes */
        return;
    }
    if (s->state == S_BODY || s->state == S_CONNECTING || s->state == S_GATE) {
        s->state = S_CLOSING;
        cg_conn_upstream_release(c, false);
        s->r.status = 400;
        s->r.decision = s->r.decision ? s->r.decision : "error";
        audit_request(s, "client closed before the end of the request");
        req_free(s);
    }
    s->state = S_CLOSING;
    cg_conn_close(c, "client closed");
}

static void http_connected(cg_conn *c, int status)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_CONNECTING)
        return;
    if (status < 0) {
        http_error(s, status == CG_E_TIMEOUT ? 502 : 502,
                   status == CG_E_TIMEOUT ? "backend connect timeout" : "backend unavailable",
                   NULL, NULL, s->r.has_body);
        return;
    }
    cg_http_parser_reset(&s->resp);
    s->resp.on_body = resp_body;
    s->resp.ctx = s;
    s->resp.no_body = s->r.head_method;
    cg_conn_write_upstream(c, s->out, s->out_len);
    if (s->r.expect_continue && !s->retried)
        write_client(s, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (s->r.has_body && !s->r.body_done) {
        s->state = S_BODY;
        cg_conn_set_timer(c, (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000);
        run_pending(s);
    } else {
        s->state = S_WAIT_RESP;
        cg_conn_upstream_expect(c, true);
    }
}

static void http_upstream_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_WAIT_RESP && s->state != S_BODY) {
        /* bytes with no request waiting: the connection is not reusable */
        cg_conn_upstream_release(c, false);
        return;
    }
    s->up_bytes = true;
    /* a long answer is activity: the idle timer is for idle connections */
    cg_conn_touch(c);
    size_t off = 0;
    while (off < len && s->state != S_CLOSING) {
        size_t used = 0;
        const char *why = NULL;
        if (!s->resp.head_done) {
            int r = cg_http_feed_head(&s->resp, buf + off, len - off, &used, &why);
            off += used;
            if (r == 0)
                return;
            if (r != 1) {
                cg_conn_upstream_release(c, false);
                http_error(s, 502, why ? why : "malformed backend response", NULL, NULL, true);
                return;
            }
            on_response_head(s);
            if (s->state == S_CLOSING)
                return;
            if (!s->resp.head_done)
                continue; /* an interim answer was dropped */
            if (s->resp.complete) {
                response_done(s, off == len);
                return;
            }
            continue;
        }
        int r = cg_http_feed_body(&s->resp, buf + off, len - off, &used, &why);
        off += used;
        if (s->state == S_CLOSING)
            return;
        if (r > 1) {
            cg_conn_upstream_release(c, false);
            http_error(s, 502, why ? why : "malformed backend body", NULL, NULL, true);
            return;
        }
        if (r == 1) {
            response_done(s, off == len);
            return;
        }
    }
}

static void http_upstream_eof(cg_conn *c, int status)
{
    http_sess *s = cg_conn_session(c);
    if (s->state != S_WAIT_RESP && s->state != S_BODY)
        return;
    if (status == CG_E_TIMEOUT) {
        cg_conn_upstream_release(c, false);
        http_error(s, 504, "backend response timeout", NULL, NULL, !s->r.body_done);
        return;
    }
    if (s->resp.head_done) {
        const char *why;
        if (cg_http_finish(&s->resp, &why) == 1) {
            response_done(s, false);
            return;
        }
        http_error(s, 502, "backend closed during the answer", NULL, NULL, true);
        return;
    }
    /* A pooled connection the backend had already closed: send the
     * request once more on a fresh one, when no body byte is lost and the
     * method is idempotent (RFC 9110 9.2.2, RFC 9112 9.3.1). */
    const char *m = s->r.method;
    bool idempotent = !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS") ||
                      !strcmp(m, "DELETE") || !strcmp(m, "PROPFIND");
    if (!s->up_bytes && !s->retried && !s->r.has_body && s->out_len && idempotent) {
        s->retried = true;
        s->state = S_CONNECTING;
        if (cg_conn_upstream_connect(c) == 0)
            return;
    }
    http_error(s, 502, "backend closed the connection", NULL, NULL, !s->r.body_done);
}

static void http_timer(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    if (s->state == S_HEAD && s->req.len > 0) {
        http_error(s, 408, "request head not received in time", NULL, NULL, true);
    } else if (s->state == S_BODY) {
        if (cg_conn_upstream_queued(c) > 0) {
            /* the backend, not the client, is slow: wait on */
            cg_conn_set_timer(c, (uint64_t)cg_conn_info_of(c)->listener->client_timeout * 1000);
            return;
        }
        body_fail(s, 408, "request body stalled");
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
        write_answer(c, unavailable ? 503 : 403, reason, txid, unavailable ? RETRY_AFTER : NULL,
                     NULL, false, &close_after);
        return;
    }
    if (s->resp_started || s->state == S_CLOSING)
        return;
    /* between requests (idle, shutting down) nothing is owed; during one,
     * a 503 tells the client it may retry elsewhere */
    if (s->state == S_HEAD && s->req.len == 0)
        return;
    /* the core closes the connection after this: the one error path
     * answers, logs and audits this request */
    s->r.keep_alive = false;
    http_error(s, unavailable ? 503 : 403, reason, unavailable ? RETRY_AFTER : NULL, NULL, true);
}

static void http_drain(cg_conn *c)
{
    cg_conn_touch(c);
}

static void http_close(cg_conn *c)
{
    http_sess *s = cg_conn_session(c);
    if (s->state == S_BODY || s->state == S_WAIT_RESP || s->state == S_CONNECTING ||
        s->state == S_GATE) {
        if (s->r.status == 0)
            s->r.status = 499;
        audit_request(s, "connection closed before the answer");
    }
    req_free(s);
    cg_http_parser_free(&s->req);
    cg_http_parser_free(&s->resp);
    free(s->pend);
    free(s->out);
    free(s->paths);
    s->pend = NULL;
    s->out = NULL;
    s->paths = NULL;
    s->ready = false;
}

const cg_proto_ops cg_http_proto = {
    .name = "http",
    .session_size = sizeof(http_sess),
    .on_open = http_open,
    .on_client_data = http_client_data,
    .on_client_eof = http_client_eof,
    .on_upstream_connected = http_connected,
    .on_upstream_data = http_upstream_data,
    .on_upstream_eof = http_upstream_eof,
    .on_drain = http_drain,
    .on_timer = http_timer,
    .on_refuse = http_refuse,
    .on_close = http_close,
};
