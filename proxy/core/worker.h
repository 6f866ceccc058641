/* proxy/core/worker.h — the event-loop threads and the runtime configuration they
 * share: a loaded cg_config plus its TLS contexts, reference counted so
 * that connections keep the configuration they started under while SIGHUP
 * swaps a new one in for new connections. Internal to the proxy layer. */
#ifndef CG_WORKER_H
#define CG_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "proxy/core/config.h"
#include "proxy/core/deadline.h"
#include "proxy/core/stream.h"

struct cg_saml_verifier;
struct cg_runtime_cfg;

typedef struct cg_runtime {
    atomic_int refs;
    cg_config *cfg;
    struct cg_runtime_cfg *cfg_owner; /* cfg, shared with renewed runtimes */
    SSL_CTX **lctx; /* per listener (NULL for tls = none) */
    SSL_CTX **uctx; /* per upstream (NULL for plain) */
    /* [saml]'s verifier (NULL without [saml]): made and freed with this
     * runtime, so a connection always checks assertions against the IdP
     * certificate, issuer and audience of the configuration it started
     * under, and a reload that drops a configuration drops its verifier. */
    struct cg_saml_verifier *saml;
    uint64_t generation;
} cg_runtime;

/* Builds the TLS contexts and the SAML verifier for cfg (taking ownership
 * of cfg on success). */
int cg_runtime_new(cg_config *cfg, cg_runtime **out, const char **error_r)
    __attribute__((warn_unused_result));
/* A runtime for cur's configuration with every file it names loaded
 * again (a certificate, key, CA, CRL or IdP certificate changed on disk):
 * the configuration file is not read again. Refused, leaving cur as it
 * is, when a file does not load or a certificate other than cur's has
 * expired. */
int cg_runtime_renew(cg_runtime *cur, cg_runtime **out, const char **error_r)
    __attribute__((warn_unused_result));
cg_runtime *cg_runtime_ref(cg_runtime *rt);
void cg_runtime_release(cg_runtime *rt);
/* The current runtime for new connections. */
cg_runtime *cg_runtime_acquire(void);
void cg_runtime_publish(cg_runtime *rt); /* takes over the reference */
size_t cg_runtime_upstream_index(const cg_runtime *rt, const cg_upstream_cfg *u);

typedef struct cg_worker cg_worker;
struct cg_conn;

/* Binds every listener of rt->cfg on every worker (SO_REUSEPORT), so
 * errors (address in use, permission) surface before the threads start. */
int cg_workers_create(cg_runtime *rt, unsigned n, const char **error_r)
    __attribute__((warn_unused_result));
int cg_workers_start(void)
    __attribute__((warn_unused_result));
/* SIGHUP: listeners that appeared or changed address are bound, vanished
 * ones closed (asynchronously, on each worker). */
void cg_workers_reload(void);
/* SIGTERM: stop accepting; connections finish. */
void cg_workers_stop_accepting(void);
/* After drain_timeout: tell every connection to end (on_refuse "shutting
 * down"). */
void cg_workers_force_close(void);
/* Number of open connections over all workers. */
uint64_t cg_workers_active(void);
/* Stops the loops once their connections are gone and joins. */
void cg_workers_join(void);
bool cg_workers_shutting_down(void);

/* For proxy/core/conn.c */
struct cg_worker {
    uv_loop_t loop;
    cg_loop_ctx lc;
    uv_async_t async;
    uv_thread_t thread;
    unsigned index;
    struct cg_conn *conns; /* doubly linked list */
    uint64_t nconns;
    void *pools;           /* upstream.c */
    uint64_t pool_generation; /* upstream.c: newest runtime generation seen */
    void *listeners;       /* listener.c */
    size_t nlisteners;
    atomic_uint pending;   /* async request bits */
    bool stopping;
    cg_deadline_heap deadlines; /* of its connections: one timer */
};

/* Per-address connection limit shared by all workers. */
int cg_addrlimit_take(const struct sockaddr *sa, unsigned max)
    __attribute__((warn_unused_result));
void cg_addrlimit_put(const struct sockaddr *sa);

/* proxy/core/listener.c: listen on l (SO_REUSEPORT, so every worker has
 * its own socket); close them all (SIGTERM); follow rt's listeners
 * (SIGHUP: same name and address kept, others closed, new ones bound). */
int cg_listener_open(cg_worker *w, const cg_listener_cfg *l, const char **error_r)
    __attribute__((warn_unused_result));
void cg_listeners_close(cg_worker *w);
void cg_listeners_sync(cg_worker *w, const cg_runtime *rt);

/* proxy/core/conn.c: a new client connection on w for listener li of rt (the
 * reference to rt is taken by the connection). */
void cg_conn_accept(cg_worker *w, cg_runtime *rt, size_t li, cg_stream *s);
void cg_conn_worker_link(cg_worker *w, struct cg_conn *c);
/* A connection's deadline came up (the fire callback of w->deadlines). */
void cg_conn_deadline_fire(cg_deadline *d);
/* Every connection of w: told "shutting down" (on_refuse) and closed;
 * abort_now drops them at once (exit). */
void cg_conn_shutdown_all(cg_worker *w, bool abort_now);
/* SIGTERM: the connections of w that owe nothing (a protocol's on_idle
 * says so, or a lazy protocol's client never spoke) close now, as nginx
 * and HAProxy close idle keep-alive connections; the others drain. */
void cg_conn_close_idle_all(cg_worker *w);

#endif
