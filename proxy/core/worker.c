/* proxy/core/worker.c — `workers` threads, each with its own uv loop (its
 * listening sockets are listener.c's), the runtime configuration swapped in
 * by SIGHUP or rebuilt when a certificate file changes, and the per-address connection limit shared by all workers. */
#include "proxy/core/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "common/cg_addrtab.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/counters.h"
#include "proxy/core/conn.h"
#include "policy/saml.h"
#include "proxy/core/tls.h"
#include "proxy/core/upstream.h"

#define RBUF_SIZE (64 * 1024)
#define PBUF_SIZE (16 * 1024 + 256)
#define SBUF_SIZE (16 * 1024) /* one TLS record's plaintext */

enum { REQ_RELOAD = 1, REQ_STOP_ACCEPT = 2, REQ_FORCE_CLOSE = 4, REQ_EXIT = 8 };

/* ---- runtime configuration ------------------------------------------------ */

static uv_mutex_t g_rt_lock;
static cg_runtime *g_rt;
static uint64_t g_rt_gen;

/* The configuration a runtime was built from, shared by the runtimes that
 * a certificate file's change builds from it again (cg_runtime_renew). */
struct cg_runtime_cfg {
    atomic_int refs;
    cg_config *cfg;
};

static void cfg_release(struct cg_runtime_cfg *h)
{
    if (!h || atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    cg_config_free(h->cfg);
    free(h);
}

/* Loads every file the configuration names (TLS contexts, SAML verifier)
 * into rt, whose cfg is set. */
static int runtime_load(cg_runtime *rt, const char **error_r)
{
    const cg_config *cfg = rt->cfg;
    rt->lctx = calloc(cfg->nlisteners + 1, sizeof *rt->lctx);
    rt->uctx = calloc(cfg->nupstreams + 1, sizeof *rt->uctx);
    int r = 0;
    if (!rt->lctx || !rt->uctx)
        return CG_E_NOMEM;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (cfg->listeners[i].tls != CG_TLS_NONE &&
            (r = cg_tls_server_ctx_new(&cfg->listeners[i], &rt->lctx[i], error_r)) < 0)
            return r;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (cfg->upstreams[i].tls &&
            (r = cg_tls_client_ctx_new(&cfg->upstreams[i], &rt->uctx[i], error_r)) < 0)
            return r;
    }
    if (cfg->saml.present) {
        cg_saml_params p = {
            .idp_cert_path = cfg->saml.idp_certificate,
            .issuer = cfg->saml.issuer,
            .audience = cfg->saml.audience,
            .clock_skew = cfg->saml.clock_skew,
        };
        r = cg_saml_global_init(error_r);
        if (r == 0)
            r = cg_saml_verifier_new(&p, &rt->saml, error_r);
        if (r < 0)
            return r;
    }
    return 0;
}

int cg_runtime_new(cg_config *cfg, cg_runtime **out, const char **error_r)
{
    cg_runtime *rt = calloc(1, sizeof *rt);
    struct cg_runtime_cfg *h = calloc(1, sizeof *h);
    if (!rt || !h) {
        free(rt);
        free(h);
        return CG_E_NOMEM;
    }
    atomic_init(&rt->refs, 1);
    atomic_init(&h->refs, 1);
    rt->cfg = cfg;
    int r = runtime_load(rt, error_r);
    if (r < 0) {
        free(h); /* cfg stays the caller's */
        cg_runtime_release(rt);
        return r;
    }
    h->cfg = cfg;
    rt->cfg_owner = h;
    *out = rt;
    return 0;
}

/* An expired certificate that is not the one in force (was's) is refused:
 * one left expired on another listener does not block a renewal. */
static bool expired_new(SSL_CTX *now, SSL_CTX *was, const char *kind, const char *name,
                        const char *file, const char **error_r)
{
    static _Thread_local char why[256];
    int64_t na = 0;
    if (!now || cg_tls_ctx_not_after(now, &na) < 0 || na >= (int64_t)time(NULL))
        return false;
    X509 *a = SSL_CTX_get0_certificate(now), *b = was ? SSL_CTX_get0_certificate(was) : NULL;
    if (b && X509_cmp(a, b) == 0)
        return false;
    snprintf(why, sizeof why, "[%s %s]: certificate %s has expired", kind, name, file);
    *error_r = why;
    return true;
}

static int check_expiry(const cg_runtime *rt, const cg_runtime *was, const char **error_r)
{
    const cg_config *c = rt->cfg;
    for (size_t i = 0; i < c->nlisteners; i++)
        if (expired_new(rt->lctx[i], was->lctx[i], "listener", c->listeners[i].name,
                        c->listeners[i].certificate, error_r))
            return CG_E_TLS;
    for (size_t i = 0; i < c->nupstreams; i++)
        if (expired_new(rt->uctx[i], was->uctx[i], "upstream", c->upstreams[i].name,
                        c->upstreams[i].certificate, error_r))
            return CG_E_TLS;
    return 0;
}

int cg_runtime_renew(cg_runtime *cur, cg_runtime **out, const char **error_r)
{
    cg_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return CG_E_NOMEM;
    atomic_init(&rt->refs, 1);
    rt->cfg = cur->cfg;
    rt->cfg_owner = cur->cfg_owner;
    atomic_fetch_add(&rt->cfg_owner->refs, 1);
    int r = runtime_load(rt, error_r);
    if (r == 0)
        r = check_expiry(rt, cur, error_r);
    if (r < 0) {
        cg_runtime_release(rt);
        return r;
    }
    *out = rt;
    return 0;
}

cg_runtime *cg_runtime_ref(cg_runtime *rt)
{
    atomic_fetch_add(&rt->refs, 1);
    return rt;
}

void cg_runtime_release(cg_runtime *rt)
{
    if (!rt || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    size_t nl = rt->cfg ? rt->cfg->nlisteners : 0, nu = rt->cfg ? rt->cfg->nupstreams : 0;
    for (size_t i = 0; rt->lctx && i < nl; i++)
        SSL_CTX_free(rt->lctx[i]);
    for (size_t i = 0; rt->uctx && i < nu; i++)
        SSL_CTX_free(rt->uctx[i]);
    free(rt->lctx);
    free(rt->uctx);
    cg_saml_verifier_free(rt->saml);
    cfg_release(rt->cfg_owner);
    free(rt);
}

cg_runtime *cg_runtime_acquire(void)
{
    uv_mutex_lock(&g_rt_lock);
    cg_runtime *rt = g_rt ? cg_runtime_ref(g_rt) : NULL;
    uv_mutex_unlock(&g_rt_lock);
    return rt;
}

void cg_runtime_publish(cg_runtime *rt)
{
    uv_mutex_lock(&g_rt_lock);
    cg_runtime *old = g_rt;
    rt->generation = ++g_rt_gen;
    g_rt = rt;
    uv_mutex_unlock(&g_rt_lock);
    cg_runtime_release(old);
}

size_t cg_runtime_upstream_index(const cg_runtime *rt, const cg_upstream_cfg *u)
{
    return (size_t)(u - rt->cfg->upstreams);
}

/* ---- per-address connection limit ------------------------------------------- */

/* Connections from one address prefix (cg_addrtab.h), across all workers.
 * A key lives only while it holds a connection, so the table is bounded by
 * the open connections; the cap is a backstop. */
#define CONN_KEYS_MAX (1u << 20)

static cg_addrtab *g_conns;
static pthread_once_t g_conns_once = PTHREAD_ONCE_INIT;

static void conns_init(void)
{
    g_conns = cg_addrtab_new(CONN_KEYS_MAX);
}

/* Addresses of other families (none today) share the all-zero key. */
static cg_addrtab *conns_key(const struct sockaddr *sa, cg_addrkey *k)
{
    pthread_once(&g_conns_once, conns_init);
    if (cg_addrkey_of(sa, k) < 0)
        memset(k, 0, sizeof *k);
    return g_conns;
}

int cg_addrlimit_take(const struct sockaddr *sa, unsigned max)
{
    cg_addrkey k;
    cg_addrtab *t = conns_key(sa, &k);
    return t ? cg_addrtab_take(t, &k, max) : CG_E_NOMEM;
}

void cg_addrlimit_put(const struct sockaddr *sa)
{
    cg_addrkey k;
    cg_addrtab *t = conns_key(sa, &k);
    if (t)
        cg_addrtab_put(t, &k);
}

/* ---- workers ------------------------------------------------------------------- */

static cg_worker *g_workers;
static unsigned g_nworkers;
static atomic_bool g_shutting_down;

bool cg_workers_shutting_down(void) { return atomic_load(&g_shutting_down); }

/* SIGHUP on one worker: idle backend connections made under an older
 * configuration go, listeners follow the new one. */
static void reload(cg_worker *w)
{
    cg_runtime *rt = cg_runtime_acquire();
    if (!rt)
        return;
    cg_upstream_pool_retire(w, rt->generation);
    cg_listeners_sync(w, rt);
    cg_runtime_release(rt);
}

static void async_cb(uv_async_t *a)
{
    cg_worker *w = a->data;
    unsigned req = atomic_exchange(&w->pending, 0);
    if ((req & REQ_RELOAD) && !w->stopping)
        reload(w);
    if (req & (REQ_STOP_ACCEPT | REQ_EXIT)) {
        w->stopping = true;
        cg_listeners_close(w);
        cg_upstream_pool_clear(w);
        cg_conn_close_idle_all(w);
    }
    if (req & (REQ_FORCE_CLOSE | REQ_EXIT)) {
        cg_conn_shutdown_all(w, (req & REQ_EXIT) != 0);
    }
    if (req & REQ_EXIT) {
        uv_close((uv_handle_t *)&w->async, NULL);
        cg_deadline_heap_close(&w->deadlines);
    }
}

static void worker_main(void *arg)
{
    cg_worker *w = arg;
    /* named for perf/top: profiles attribute samples by thread */
    (void)pthread_setname_np(pthread_self(), "cg-worker");
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cg_upstream_pool_clear(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        cg_debug("worker %u: loop closed with handles left", w->index);
    cg_protos_thread_end();
}

int cg_workers_create(cg_runtime *rt, unsigned n, const char **error_r)
{
    uv_mutex_init(&g_rt_lock);
    cg_runtime_publish(cg_runtime_ref(rt));
    g_workers = calloc(n, sizeof *g_workers);
    if (!g_workers)
        return CG_E_NOMEM;
    g_nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        cg_worker *w = &g_workers[i];
        w->index = i;
        uv_loop_init(&w->loop);
        w->lc.rbuf = malloc(RBUF_SIZE);
        w->lc.rcap = RBUF_SIZE;
        w->lc.pbuf = malloc(PBUF_SIZE);
        w->lc.pcap = PBUF_SIZE;
        w->lc.sbuf = malloc(SBUF_SIZE);
        w->lc.scap = SBUF_SIZE;
        w->lc.worker = w;
        w->loop.data = &w->lc;
        if (!w->lc.rbuf || !w->lc.pbuf || !w->lc.sbuf)
            return CG_E_NOMEM;
        uv_async_init(&w->loop, &w->async, async_cb);
        w->async.data = w;
        cg_deadline_heap_init(&w->deadlines, &w->loop, cg_conn_deadline_fire);
        for (size_t j = 0; j < rt->cfg->nlisteners; j++) {
            int r = cg_listener_open(w, &rt->cfg->listeners[j], error_r);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int cg_workers_start(void)
{
    for (unsigned i = 0; i < g_nworkers; i++) {
        int r = uv_thread_create(&g_workers[i].thread, worker_main, &g_workers[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static void post_all(unsigned req)
{
    for (unsigned i = 0; i < g_nworkers; i++) {
        atomic_fetch_or(&g_workers[i].pending, req);
        uv_async_send(&g_workers[i].async);
    }
}

void cg_workers_reload(void) { post_all(REQ_RELOAD); }

void cg_workers_stop_accepting(void)
{
    atomic_store(&g_shutting_down, true);
    post_all(REQ_STOP_ACCEPT);
}

void cg_workers_force_close(void) { post_all(REQ_FORCE_CLOSE); }

uint64_t cg_workers_active(void)
{
    return atomic_load_explicit(&cg_metrics[CG_M_CONN_ACTIVE], memory_order_relaxed);
}

void cg_workers_join(void)
{
    post_all(REQ_EXIT);
    for (unsigned i = 0; i < g_nworkers; i++) {
        uv_thread_join(&g_workers[i].thread);
        free(g_workers[i].lc.rbuf);
        free(g_workers[i].lc.pbuf);
        free(g_workers[i].lc.sbuf);
        cg_deadline_heap_free(&g_workers[i].deadlines);
    }
    free(g_workers);
    g_workers = NULL;
    g_nworkers = 0;
    uv_mutex_lock(&g_rt_lock);
    cg_runtime *rt = g_rt;
    g_rt = NULL;
    uv_mutex_unlock(&g_rt_lock);
    cg_runtime_release(rt);
}
