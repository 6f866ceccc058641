/* proxy/core/conn_internal.h — internal to proxy/core: the parts of a
 * connection that live in files of their own beside proxy/core/conn.c. */
#ifndef CG_CONN_INTERNAL_H
#define CG_CONN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/core/conn.h"
#include "proxy/core/deadline.h"
#include "proxy/core/stream.h"
#include "proxy/core/worker.h"

struct cg_tls;

/* The connection itself: proxy/core/conn.c owns its life and the client
 * half, proxy/core/conn_upstream.c the upstream half. */
enum conn_state { ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DEAD };

#define CG_UP_WHY_MAX 160

struct cg_conn {
    uint32_t magic;
    enum conn_state state;
    int depth;              /* callbacks on the stack */
    bool close_pending, abort_pending, opened, counted, starttls;
    bool open_deferred;     /* lazy_open: on_open waits for the first byte */
    bool cli_want, up_want; /* the protocol's wish */
    bool cli_bp, up_bp;     /* stopped by backpressure */
    bool up_connecting, up_pending, expecting, refused;
    int up_pending_status;
    /* A refusal decided at accept on an implicit-TLS listener, given once
     * the handshake is done so the client reads it in its protocol */
    int deferred_err;
    const char *deferred_reason;
    const char *close_reason;
    cg_worker *w;
    cg_runtime *rt;
    size_t li;
    const cg_proto_ops *proto;
    cg_stream *cli, *up;
    const cg_upstream_cfg *up_cfg; /* the upstream c->up belongs to */
    cg_route_cfg *route_held; /* a place taken on this route (freed at
                               * teardown) */
    char *up_why;           /* the last upstream failure, for the answer:
                             * CG_UP_WHY_MAX bytes made at the first one */
    cg_deadline dl;         /* in the worker's deadline heap */
    uint64_t t_hs, t_idle, t_proto, t_connect, t_response, t_linger;
    struct cg_conn *prev, *next;
    cg_conn_info info;
    void *session;          /* proto->session_size zeroed bytes, made
                             * when first needed (cg_conn_session) */
};

/* proxy/core/conn.c. Callbacks run between enter and leave: a close asked
 * for inside one happens when the outermost returns. */
void cg_conn_enter(cg_conn *c);
void cg_conn_leave(cg_conn *c);
uint64_t cg_conn_now(cg_conn *c);
/* Puts c in the worker's deadline heap for its earliest deadline. */
void cg_conn_schedule(cg_conn *c);
/* Reading on or off on each side: the protocol's wish and backpressure. */
void cg_conn_update_reads(cg_conn *c);
/* A side's queue drained: reads follow, and on_drain when the reading
 * that *bp held back (backpressure on the other side) is free again. */
void cg_conn_drained(cg_conn *c, const bool *bp);

/* proxy/core/conn_upstream.c, from the deadline: on_upstream_connected for
 * an upstream taken from the pool (or failed at once), never inside the
 * connect call; then the connect and response deadlines that are due. */
void cg_conn_upstream_pending(cg_conn *c);
void cg_conn_upstream_due(cg_conn *c, uint64_t now);
/* The route place c holds, given back (teardown). */
void cg_conn_route_put(cg_conn *c);

/* proxy/core/conn_identity.c: the connection-level identity from the PSK
 * identity or the verified certificate of tls (NULL: plain), else the
 * source address (SPEC section 2), written into ci. Returns 0 when the
 * connection may continue, else the refusal's code (CG_E_UNAVAIL: no
 * policy yet; CG_E_DENIED: a disabled principal; CG_E_AUTH: no usable
 * identity) with its reason in *why_r. */
int cg_conn_identity_resolve(cg_conn_info *ci, struct cg_tls *tls, const char **why_r)
    __attribute__((warn_unused_result));

/* proxy/core/conn_info.c: one audit record of service "tls" with the
 * connection's fields. A refusal goes through the audit layer's limiter
 * per address, so a flood of bad handshakes cannot flood the log.
 * 0, or CG_E_AUDIT when the record was not taken (cg_audit_submit). */
int cg_conn_audit_tls(const cg_conn_info *ci, const char *operation, const char *result,
                      const char *decision, const char *reason, bool refusal)
    __attribute__((warn_unused_result));

#endif
