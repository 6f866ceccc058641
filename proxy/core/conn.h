/* proxy/core/conn.h — one proxied connection: the client half (socket, TLS over
 * memory BIOs), the upstream half (plain or TLS, pooled for HTTP), bounded
 * write queues with backpressure, timers. A protocol gateway (relay, IMAP,
 * HTTP) plugs in through cg_proto_ops and sees only plaintext bytes.
 *
 * Threading: a connection lives on one worker loop for its whole life; all
 * callbacks run on that loop. Bytes passed to on_*_data are valid only
 * during the call: the protocol consumes them or copies them into its own
 * bounded buffers.
 *
 * Backpressure is the core's: while one side's write queue is above the
 * high-water mark, reading from the other side stops; it resumes below the
 * low-water mark (and on_drain is called). */
#ifndef CG_CONN_H
#define CG_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/core/config.h"
#include "store/policy_store.h"

typedef struct cg_conn cg_conn;

typedef struct cg_proto_ops {
    const char *name;
    size_t session_size; /* zeroed per-connection state: cg_conn_session() */
    /* on_open (and the session's memory) wait for the client's first byte
     * (or its end, a refusal, a timer): an idle connection of a protocol
     * that says nothing first holds no session. */
    bool lazy_open;
    /* Client side ready for application bytes: after the TLS handshake
     * (implicit) or at accept (starttls/none). Identity already resolved
     * into cg_conn_info. */
    void (*on_open)(cg_conn *c);
    void (*on_client_data)(cg_conn *c, const uint8_t *buf, size_t len);
    void (*on_client_eof)(cg_conn *c);
    /* After cg_conn_start_tls(): the handshake finished (identity updated). */
    void (*on_tls_ready)(cg_conn *c);
    /* After cg_conn_upstream_connect(): 0, or CG_E_UNAVAIL / CG_E_TIMEOUT /
     * CG_E_TLS / CG_E_LIMIT (a route's max_connections). Always called from the loop, never inside the connect call. */
    void (*on_upstream_connected)(cg_conn *c, int status);
    void (*on_upstream_data)(cg_conn *c, const uint8_t *buf, size_t len);
    /* Upstream closed (status 0), failed, or response_timeout passed
     * without bytes while a response was expected (CG_E_TIMEOUT). */
    void (*on_upstream_eof)(cg_conn *c, int status);
    void (*on_drain)(cg_conn *c);   /* optional */
    void (*on_timer)(cg_conn *c);   /* the cg_conn_set_timer deadline */
    /* The core refuses the connection (no usable identity, disabled
     * principal, limit, audit unavailable, shutting down): write the
     * protocol's answer; the core logs, audits and closes. May come
     * before on_open (refused at accept or right after the handshake):
     * the session is then still zeroed. */
    void (*on_refuse)(cg_conn *c, int err, const char *reason); /* optional */
    void (*on_close)(cg_conn *c);   /* free what the session holds */
    /* Optional: true when the connection owes its client nothing (between
     * requests): at SIGTERM it is closed at once instead of drained. */
    bool (*on_idle)(cg_conn *c);
    /* A worker thread ends (optional): free what the protocol keeps per
     * thread. */
    void (*on_thread_end)(void);
} cg_proto_ops;

/* What the connection knows about itself; valid for its life. */
typedef struct cg_conn_info {
    uint64_t id;                      /* process-unique connection id */
    char session_id[17];              /* 16 lowercase hex, random: the
                                       * IMAP session id; HTTP request n of
                                       * this connection has txid SID.n */
    const cg_config *config;          /* the configuration it started under */
    const struct cg_saml_verifier *saml; /* that configuration's, NULL
                                       * without [saml] */
    const cg_listener_cfg *listener;
    struct sockaddr_storage peer;
    char client[64];                  /* "addr:port" ("[v6]:port") */
    char client_addr[48];             /* "addr" */
    bool tls;                         /* client side encrypted now */
    /* OpenSSL's names, static strings (set when tls is) */
    const char *tls_version;          /* "TLSv1.3" */
    const char *tls_cipher;           /* "TLS_AES_256_GCM_SHA384" */
    char alpn[16];                    /* as negotiated, "" when none */
    const char *sni;                  /* TLS server name the client asked
                                       * for, "" when none */
    /* Connection-level identity (cert, psk or address), "" when none. */
    unsigned auth_method;             /* one CG_AUTH_* bit, 0 when none */
    int64_t principal_id;             /* the store id: what later steps look
                                       * up (cg_snapshot_principal_by_id) */
    const char *principal;            /* its name, for logs and audit, ""
                                       * when none */
    bool shutting_down;               /* SIGTERM: drain */
} cg_conn_info;

const cg_conn_info *cg_conn_info_of(const cg_conn *c);
/* The strings of cg_conn_info (sni, principal) are the connection's own
 * copies, sized to what they hold: set sets one (NULL or "": ""), 0 or
 * CG_E_NOMEM (the field then reads ""); drop frees one, clear all of
 * them, reading "" after (clear is also how a zeroed cg_conn_info is made
 * ready). */
int cg_conn_info_set(const char **field, const char *v) __attribute__((warn_unused_result));
void cg_conn_info_drop(const char **field);
void cg_conn_info_clear(cg_conn_info *ci);

/* Starts an audit record with the connection's fields (id, listener,
 * client, TLS version and cipher, the connection-level principal and
 * method): the one place they are copied. A protocol then sets its own
 * (service, operation, a principal it authenticated itself, ...). */
struct cg_audit_rec;
void cg_conn_info_audit(const cg_conn_info *ci, struct cg_audit_rec *r);
void *cg_conn_session(cg_conn *c);
/* The worker loop the connection lives on: for work handed to libuv's
 * thread pool (uv_queue_work), whose completion runs on this loop. */
struct uv_loop_s *cg_conn_loop(cg_conn *c);

/* Queue bytes toward a side (encrypting for TLS). Returns 0, or a negative
 * code when the side is closed. */
int cg_conn_write_client(cg_conn *c, const void *buf, size_t len)
    __attribute__((warn_unused_result));
int cg_conn_write_upstream(cg_conn *c, const void *buf, size_t len)
    __attribute__((warn_unused_result));
size_t cg_conn_client_queued(const cg_conn *c);
size_t cg_conn_upstream_queued(const cg_conn *c);

/* Open (or take from the worker's pool for this listener's upstream) the
 * upstream half; on_upstream_connected follows. */
int cg_conn_upstream_connect(cg_conn *c)
    __attribute__((warn_unused_result));
/* The same toward u, an upstream of the connection's configuration (a
 * route's, SPEC section 7). A route's upstream first takes a place on the
 * route for the connection's life: past its max_connections,
 * on_upstream_connected gets CG_E_LIMIT. */
int cg_conn_upstream_connect_to(cg_conn *c, const cg_upstream_cfg *u)
    __attribute__((warn_unused_result));
/* Why the last upstream connect failed ("" when not known): the TLS
 * verification's sentence, a limit, a refused connect. */
const char *cg_conn_upstream_why(const cg_conn *c);
/* Detach the upstream half: back to the pool when reusable (HTTP
 * keep-alive, response complete), else closed. */
void cg_conn_upstream_release(cg_conn *c, bool reusable);
bool cg_conn_upstream_attached(const cg_conn *c);
/* Half-close toward the upstream once its queue is sent (relay: the
 * client sent EOF, the answer may still come back). */
void cg_conn_upstream_shutdown(cg_conn *c);
/* Mark that a response is expected: arms response_timeout until the next
 * upstream bytes arrive. */
void cg_conn_upstream_expect(cg_conn *c, bool expecting);

/* IMAP STARTTLS: everything already queued to the client is sent in
 * plaintext first, then the server handshake starts; on_tls_ready follows.
 * The caller must drop any plaintext it still holds (CVE-2011-0411). */
int cg_conn_start_tls(cg_conn *c)
    __attribute__((warn_unused_result));

/* Pause or resume reading a side (on top of the core's backpressure). */
void cg_conn_read_client(cg_conn *c, bool on);
void cg_conn_read_upstream(cg_conn *c, bool on);

/* One protocol deadline (ms from now; 0 cancels): on_timer. */
void cg_conn_set_timer(cg_conn *c, uint64_t ms);
/* The gateway is draining (SIGTERM): answers close their connection. */
bool cg_conn_draining(const cg_conn *c);
/* Reset the idle timer (the core resets it on every client byte too). */
void cg_conn_touch(cg_conn *c);

/* Flush what is queued to the client, then close both halves. Safe to call
 * twice and from inside any callback (the close is deferred until the
 * callback returns). reason goes to the log. */
void cg_conn_close(cg_conn *c, const char *reason);
/* Close at once, dropping queued bytes. */
void cg_conn_abort(cg_conn *c, const char *reason);

/* The gateway of a listener protocol, registered by the daemon before the
 * workers start: the core knows no protocol by name, and a listener whose
 * protocol has none registered relays bytes (cg_relay_proto). */
extern const cg_proto_ops cg_relay_proto;
void cg_proto_register(enum cg_proto_kind kind, const cg_proto_ops *ops);
/* At a worker thread's end: every registered protocol's on_thread_end. */
void cg_protos_thread_end(void);

#endif
