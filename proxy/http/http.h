/* proxy/http/http.h — the HTTP gateway (cg_http_proto, registered with the
 * core by the daemon: proxy/core/conn.h) and its extension
 * point for request bodies: a per-request body filter that sees every
 * body byte as it streams and decides whether the end of the body goes
 * out (SPEC section 6, self-contained manifest validation).
 *
 * How a body is forwarded: decoded from the client's framing, handed to
 * the filter's on_data, then written to the backend. With a filter, the
 * end of the body is held back: the last byte of a Content-Length body,
 * or the terminating "0\r\n\r\n" of a chunked one. When the client's body
 * is complete, on_end decides: CG_HTTP_GATE_PASS lets the end go out;
 * CG_HTTP_GATE_REFUSE with an HTTP status (e.g. 422) drops the backend
 * connection before the end, so the backend never commits the content
 * (nginx writes a PUT to a temporary file and renames it only after the
 * last byte), and the client gets that status through the gateway's one
 * error path. */
#ifndef CG_HTTP_H
#define CG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/snapshot.h"
#include "proxy/core/conn.h"

extern const cg_proto_ops cg_http_proto;

/* What a filter may know about the request it watches. Valid for the
 * filter's life (the request). */
typedef struct cg_http_request_view {
    const char *method;       /* "PUT" */
    const char *path;         /* decoded, normalised (what the ACL judged) */
    const char *principal;    /* name, for records and ${user} */
    const cg_principal *who;  /* the principal judged, of snap */
    const char *txid;
    uint64_t content_length;  /* UINT64_MAX when chunked */
    const cg_snapshot *snap;  /* the snapshot the request was judged under */
    const char *dest;         /* COPY/MOVE: the decoded Destination path, else NULL */
    /* A request header by name (case-insensitive), or NULL; *len set. */
    const char *(*header)(const void *hctx, const char *name, size_t *len);
    const void *hctx;
} cg_http_request_view;

/* What a request gate, a gate job's finish or a body filter decides. Its
 * own type: an HTTP status is never a return value. */
typedef enum cg_http_gate_verdict {
    CG_HTTP_GATE_PASS,   /* go on: the request is forwarded, the body's held
                          * end goes out (a local filter's on_end: 200) */
    CG_HTTP_GATE_REFUSE, /* refused: the status and sentence are in the
                          * answer (a gate) or the body verdict (a filter) */
    CG_HTTP_GATE_LOCAL,  /* a gate only: the gateway answers the request */
    CG_HTTP_GATE_WAIT,   /* a gate, or a local filter's on_end: the answer
                          * needs blocking work first (cg_http_gate_job) */
} cg_http_gate_verdict;

/* What a filter reports for the audit record (SPEC section 5) and, when
 * it refuses, for the answer. */
typedef struct cg_http_body_verdict {
    char content_sha256[65];  /* "" when not computed */
    const char *key_id;       /* static or filter-owned until free */
    const char *validation;   /* e.g. "valid", "mismatch" */
    int status;               /* CG_HTTP_GATE_REFUSE: the HTTP status */
    const char *detail;       /* one sentence when refused (or a local
                               * answer's) */
} cg_http_body_verdict;

typedef struct cg_http_body_filter {
    /* Every body byte, in order. PASS, or REFUSE to refuse at once (the
     * backend connection is dropped, nothing is committed). */
    cg_http_gate_verdict (*on_data)(void *fctx, const uint8_t *buf, size_t len,
                                    cg_http_body_verdict *v);
    /* The client's body is complete: PASS sends the held end, REFUSE
     * refuses. */
    cg_http_gate_verdict (*on_end)(void *fctx, cg_http_body_verdict *v);
    /* The backend's final status for the request (optional): what the
     * filter saw is now stored (2xx) or not. Not called when the request
     * failed before an answer. */
    void (*on_response)(void *fctx, int status);
    /* Optional, for the local filter of a gate (CG_HTTP_GATE_LOCAL): its
     * on_end may answer CG_HTTP_GATE_WAIT when the answer needs blocking
     * work; job then hands that work over (a cg_http_gate_job, below),
     * run as a gate's is, finish's verdict being on_end's (its status in
     * the answer, its sentence in the body verdict or the answer). */
    struct cg_http_gate_job *(*job)(void *fctx);
    void (*free)(void *fctx);
} cg_http_body_filter;

/* The hook: called for each authorised request with a body (PUT, POST,
 * PATCH) before any body byte is forwarded. Return NULL for no filter,
 * or a filter and its context in *fctx (to refuse before any byte is
 * forwarded, refuse in the first on_data: nothing has gone out yet).
 * Set once at start, before the workers run. */
typedef const cg_http_body_filter *(*cg_http_filter_select_fn)(
    const cg_http_request_view *req, void **fctx);
void cg_http_set_body_filter(cg_http_filter_select_fn fn);

/* Called at each worker thread's end (cg_http_proto's on_thread_end), for
 * what the hooks keep per thread. Set once at start, like the hooks. */
void cg_http_set_thread_end(void (*fn)(void));

/* What goes with a gate's verdict. */
typedef struct cg_http_gate_answer {
    int status;                       /* REFUSE: the HTTP status */
    const char *detail;               /* REFUSE: the sentence */
    const cg_http_body_filter *local; /* LOCAL: the filter that answers */
    void *fctx;                       /* LOCAL: its context; WAIT: the job */
} cg_http_gate_answer;

/* The request gate (SPEC section 6): called for every authorised request
 * after the ACL, before anything is forwarded and before the body filter
 * is selected. CG_HTTP_GATE_PASS goes on; CG_HTTP_GATE_REFUSE refuses
 * with a->status and a->detail; CG_HTTP_GATE_LOCAL: the gateway answers
 * the request itself, the backend never sees it: every body byte goes to
 * a->local's on_data, and on_end's verdict (PASS for 200, else REFUSE
 * with the verdict's status) with the verdict's detail is the answer.
 * Set once at start, before the workers run. */
typedef cg_http_gate_verdict (*cg_http_gate_fn)(const cg_http_request_view *req,
                                                cg_http_gate_answer *a);
void cg_http_set_gate(cg_http_gate_fn fn);

/* A gate whose answer needs blocking work (content_db: SQLite waits up to
 * its busy timeout for a lock) returns CG_HTTP_GATE_WAIT with a->fctx
 * pointing to a cg_http_gate_job, so the worker loop is not stalled. The
 * gateway then holds the request (nothing of it is forwarded; what the
 * client sends meanwhile is buffered), runs work on libuv's thread pool
 * and then finish on the loop; finish answers as the gate would have
 * (PASS, REFUSE or LOCAL; never WAIT). free follows finish, or comes
 * alone when the connection closed meanwhile. work must not use the
 * request view: the job carries copies of what it needs. */
typedef struct cg_http_gate_job cg_http_gate_job;
struct cg_http_gate_job {
    void (*work)(cg_http_gate_job *j);
    cg_http_gate_verdict (*finish)(cg_http_gate_job *j, cg_http_gate_answer *a);
    void (*free)(cg_http_gate_job *j);
};

/* Bound on a buffered PROPFIND Depth: 1 multistatus answer (502 beyond). */
#define CG_HTTP_MULTISTATUS_MAX (4u << 20)

#endif
