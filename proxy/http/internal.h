/* proxy/http/internal.h — internal to the HTTP gateway (the .c files of proxy/http): the
 * session and request state the pipeline's files share (request.c, stages.c,
 * gate.c, forward.c, response.c), request-level authentication, the rights
 * table, and the rewriting of heads toward the backend. Not for other
 * modules. */
#ifndef CG_HTTP_INT_H
#define CG_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/cg_buf.h"
#include "common/cg_remote.h"
#include "proxy/core/conn.h"
#include "proxy/http/host.h"
#include "proxy/http/http.h"
#include "proxy/http/path.h"
#include "store/audit.h"
#include "proxy/http/parse.h"
#include "policy/snapshot.h"

/* ---- proxy/http/auth.c ---- */

typedef struct cg_http_auth {
    int status;               /* 0: *who resolved (maybe NULL or disabled);
                                 401 (challenge) or 400 */
    bool stale;               /* 401 with stale=true (Digest) */
    const char *detail;       /* one sentence for the answer */
    const char *reason;       /* for the log and audit only, NULL: detail;
                                 what the client must not learn (whether
                                 the user exists) goes here, never above */
    const cg_principal *who;
    const char *method;       /* cert | psk | address | digest | saml, or NULL */
    char principal[CG_NAME_MAX + 1]; /* the claimed or proven name, "" when none */
} cg_http_auth;

/* Who sent this request: the connection's identity (cert, psk, address)
 * when there is one, else Digest or SAML in Authorization, as the
 * listener's auth allows. */
void cg_http_authenticate(const cg_conn_info *ci, const cg_http_parser *req,
                          const char *method, const cg_snapshot *snap,
                          cg_http_auth *out);

/* The WWW-Authenticate lines of a 401 (SPEC 4: Digest SHA-256, Digest MD5,
 * SAML, for the methods the listener enables). Returns the length. */
size_t cg_http_challenges(const cg_listener_cfg *l, bool stale, char *out,
                          size_t cap);

/* ---- proxy/http/head.c ---- */

const char *cg_http_reason(int status);
extern const char cg_http_allow[]; /* the Allow list of a 405 */

/* Rights per method (SPEC 4): src on the request path, dst on a COPY/MOVE
 * Destination; subtree for operations that act on a whole collection.
 * false for methods outside the table. */
bool cg_http_method_rights(const char *method, unsigned *src, unsigned *dst,
                           bool *subtree);

/* Fields that never cross the gateway: hop-by-hop ones (RFC 9110 7.6.1),
 * those named in Connection, framing we redo; toward the backend also
 * client-sent identity and forwarding fields, credentials, Expect,
 * Host, Destination and If (sent rewritten). */
bool cg_http_drop_field(const cg_http_parser *p, cg_http_span name,
                        const char *principal_header, bool request);

typedef struct cg_http_fwd {
    const char *method, *canon;  /* canonical target path */
    const char *host;            /* the Host value the backend gets */
    const char *query;           /* NULL: none */
    size_t query_len;
    const char *destination;     /* rewritten, or NULL */
    const char *if_value;        /* rewritten, or NULL */
    const char *client_addr;
    bool tls;
    const char *principal_header; /* NULL: none */
    const char *principal;
    const char *originator;      /* routed: CPM-Originator, else NULL */
    const char *txid;            /* routed: CPM-Transaction-Id */
} cg_http_fwd;

/* A header field as it arrived, "Name: value" CRLF, into b. */
void cg_http_put_field(cg_buf *b, const cg_http_parser *p, const cg_http_header *h);

/* The request head the backend gets into out (cap bytes, its sizeof;
 * NUL-terminated). 0 or CG_E_LIMIT (cap too small). */
int cg_http_build_request(const cg_http_parser *req, const cg_http_fwd *f,
                          char *out, size_t cap, size_t *len);

/* ---- the session (request.c) and its request ---- */

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
#define CG_HTTP_RETRY_AFTER "Retry-After: 10\r\n"

typedef struct http_req {
    char txid[40];
    char request_id[129];
    char method[24];
    int64_t principal_id;  /* what later steps look up; 0 when none */
    char principal[CG_NAME_MAX + 1]; /* for logs and audit */
    char fwd_host[CG_HOST_MAX + 9]; /* the Host the backend gets:
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
    bool body_dropped;    /* the backend went mid-body: the rest is dropped */
    bool local;           /* answered by the gateway (http.h gate), no backend */
    uint64_t bytes_in, bytes_out;
    int status;
    const cg_http_body_filter *filter;
    void *fctx;
    cg_http_body_verdict verdict;
    bool hold_last;       /* CL body with a filter: last byte held */
    uint8_t held;
    uint64_t body_left;   /* CL bodies: bytes still to come */
    /* SPEC 7: the remote user a peer's server principal acts for ("" for
     * itself), and its gateway's transaction id */
    char originator[CG_REMOTE_USER_MAX + 1];
    char origin_txid[CG_REMOTE_TXID_MAX];
    /* a request for a remote environment (proxy/http/route.c) */
    const cg_route_cfg *route; /* NULL: this environment's backend */
    const char *fwd_canon;     /* the path the remote gateway gets (in canon) */
    char route_user[CG_NAME_MAX + 1 + 64]; /* NAME@local_domain there */
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

/* What requests use and an idle connection does not hold: the head
 * parsers, the request's state, the pipelined bytes behind it and the
 * buffers. Made at the first byte of a request on a connection that holds
 * none (request.c), kept while requests follow each other (keep-alive,
 * pipelining: no allocation per request), given back with its buffers
 * when the connection has been idle for a while and at the close. A
 * request waiting on anything (the gate's job, the backend, its body)
 * keeps it: the connection is not idle then. */
typedef struct http_exch {
    cg_http_parser req, resp;
    cg_audit_resv resv;   /* the place of this request's audit record (SPEC 5) */
    struct gate_wait *gate; /* S_GATE: the gate's job on the thread pool */
    http_req r;
    cg_buf pend;          /* pipelined bytes held (at most PENDING_MAX) */
    char *out;            /* the rewritten request head (kept for a retry) */
    size_t out_len;
    bool retried, up_bytes, resp_started, resp_chunked, resp_close;
    cg_buf xml;           /* buffered multistatus (at most
                           * CG_HTTP_MULTISTATUS_MAX; failed past it) */
    struct http_paths *paths; /* made at the first request that needs them */
} http_exch;

/* The connection's session: what lasts from request to request. */
typedef struct http_sess {
    bool ready;
    cg_conn *c;
    int state;
    uint64_t nreq;
    http_exch *ex;        /* NULL: no request since the last idle release */
    bool in_process;      /* process() is walking a buffer: no re-entry */
    bool client_eof;      /* the client half-closed: answer what it sent */
    bool peer_counted;    /* a peer's session counted for this connection */
} http_sess;

/* ---- request.c: the session, the one answer path, audit ---- */

/* A refusal: an HTTP status and what goes with it. Its own type, never a
 * return value: a function that refuses fills one of these. */
typedef struct cg_http_refusal {
    int status;             /* 3xx to 5xx (a gate's local answer: also 200) */
    const char *detail;     /* the sentence the client reads */
    const char *reason;     /* for the log line and the audit record only,
                             * NULL: detail (what the client must not learn
                             * goes here, never above) */
    const char *extra;      /* more head lines (CRLF-ended), or NULL */
    const char *xml_body;   /* an RFC 4918 precondition body instead of the
                             * text line, or NULL */
    bool close;             /* the connection closes after the answer */
} cg_http_refusal;

/* The one answer path: writes the refusal's answer, its log line and its
 * audit record. After it the connection closes when no->close is set, or
 * when unread request bytes would be taken for the next request; else the
 * next request is read. */
void cg_http_refuse(http_sess *s, const cg_http_refusal *no);
/* The request's audit record (SPEC 5) in its reserved place. */
void cg_http_audit(http_sess *s, const char *reason);
/* What a finished request holds: its audit place, filter, gate job. */
void cg_http_req_free(http_sess *s);
/* The next request on the connection (keep-alive, pipelining). */
void cg_http_next_request(http_sess *s);
/* Walks the pipelined bytes held while a request was in flight. */
void cg_http_run_pending(http_sess *s);
void cg_http_write_client(http_sess *s, const void *buf, size_t len);

/* ---- stages.c: a request head's way from parsed to forwarded ---- */

/* How a stage ends. */
typedef enum cg_http_step {
    CG_HTTP_NEXT,    /* the next stage takes the request */
    CG_HTTP_REFUSE,  /* the refusal it filled is the answer */
    CG_HTTP_TAKEN,   /* the request went on: forwarded, answered here, or
                      * waiting for the gate's work */
} cg_http_step;

/* What the stages of one request share: found by one stage, read by a
 * later one. On the stack of the stage driver's caller. */
typedef struct cg_http_stage_ctx {
    const cg_conn_info *ci;
    cg_snapshot *snap;            /* held; the caller releases it unless a
                                   * stage handed it on (then NULL) */
    const cg_principal *who;      /* the principal judged, of snap */
    unsigned src, dst;            /* rights on the target, on the Destination */
    bool subtree;
    const char *dest_canon;       /* the Destination, canonical, in s->ex->paths */
    char *if_out;                 /* the rewritten If (malloc'd); the caller
                                   * frees it unless handed on (then NULL) */
    cg_http_request_view view;    /* what the gate and the body filter see */
    cg_http_gate_verdict gate;    /* the gate's verdict (http.h) */
    cg_http_gate_answer answer;   /* and what goes with it */
    char text[4 * CG_HTTP_PATH_MAX]; /* a refusal's detail or head lines */
} cg_http_stage_ctx;

typedef cg_http_step (*cg_http_stage_fn)(http_sess *s, cg_http_stage_ctx *x,
                                         cg_http_refusal *no);

/* The stages, in the order they run; each testable alone. */
cg_http_step cg_http_stage_request(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_target(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_tls(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_audit(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_host(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_upstream(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_policy(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_authenticate(http_sess *s, cg_http_stage_ctx *x,
                                        cg_http_refusal *no);
/* proxy/http/originator.c: a peer's server principal and CPM-Originator */
cg_http_step cg_http_stage_originator(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_method(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_expect(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_depth(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_acl(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_destination(http_sess *s, cg_http_stage_ctx *x,
                                       cg_http_refusal *no);
cg_http_step cg_http_stage_if(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_body_limit(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_gate(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_gate_answer(http_sess *s, cg_http_stage_ctx *x,
                                       cg_http_refusal *no);
cg_http_step cg_http_stage_forward(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
/* route.c: the route of the path (after authentication), the Destination
 * and If of a routed request */
cg_http_step cg_http_stage_route(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);
cg_http_step cg_http_stage_route_destination(http_sess *s, cg_http_stage_ctx *x,
                                             cg_http_refusal *no);
cg_http_step cg_http_stage_route_if(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no);

/* A context with nothing found yet (the text buffer is not cleared). */
void cg_http_stage_ctx_init(cg_http_stage_ctx *x, const cg_conn_info *ci);
/* Runs the stages from `from` (NULL: the first) until one refuses (then
 * the refusal is answered) or takes the request. */
void cg_http_run_stages(http_sess *s, cg_http_stage_ctx *x, cg_http_stage_fn from);
/* A parsed request head through every stage. */
void cg_http_handle_request(http_sess *s);

/* ---- gate.c: the content gate (http.h), its wait, local answers ---- */

/* The hooks' per-thread end (cg_http_set_thread_end), as on_thread_end. */
void cg_http_thread_end(void);
/* The gate's verdict on the request (PASS when no gate is set). */
cg_http_gate_verdict cg_http_gate_ask(const cg_http_request_view *v, cg_http_gate_answer *a);
/* The body filter for the request when a selector is set (then true). */
bool cg_http_filter_select(const cg_http_request_view *v, const cg_http_body_filter **filter,
                           void **fctx);
/* Runs job off the loop while the request waits; takes snap and if_out
 * (they live until the job is done). Without a view (v NULL) the job is a
 * local filter's on_end. 0, or CG_E_NOMEM / CG_E_UNAVAIL when it could
 * not start (job, snap and if_out are freed then). */
int cg_http_gate_wait_start(http_sess *s, const cg_http_request_view *v, void *job,
                            cg_snapshot *snap, char *if_out, const char *dest_canon)
    __attribute__((warn_unused_result));
void cg_http_gate_detach(http_sess *s);
void cg_http_start_local(http_sess *s);
void cg_http_local_end(http_sess *s);

/* ---- forward.c: the request and its body toward the backend ---- */

/* The request head for the backend into s->out (kept for one retry on a
 * fresh connection). 0, CG_E_NOMEM (no buffer) or CG_E_LIMIT (the
 * rewritten head does not fit). */
int cg_http_forward_head(http_sess *s, const cg_conn_info *ci, const char *dest_canon,
                         const char *if_rewritten) __attribute__((warn_unused_result));
/* Connects the backend for the request; the negative code of the connect
 * when it cannot start. */
int cg_http_start_forwarding(http_sess *s) __attribute__((warn_unused_result));
/* Connects the request's backend: its route's remote gateway, else the
 * listener's upstream (cg_conn_upstream_connect_to). */
int cg_http_connect_backend(http_sess *s) __attribute__((warn_unused_result));
void cg_http_body_fail(http_sess *s, int status, const char *detail);
void cg_http_req_body(void *ctx, const uint8_t *buf, size_t len);
void cg_http_req_body_done(http_sess *s);
void cg_http_connected(cg_conn *c, int status);

/* ---- response.c: the backend's answer toward the client ---- */

void cg_http_resp_body(void *ctx, const uint8_t *buf, size_t len);
void cg_http_upstream_data(cg_conn *c, const uint8_t *buf, size_t len);
void cg_http_upstream_eof(cg_conn *c, int status);

#endif
