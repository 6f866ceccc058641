/* proxy/core/conn_upstream.c — the upstream half of a connection
 * (proxy/core/conn.h): connect or take from the pool, its stream's
 * callbacks, writes toward it, release to the pool, its two deadlines
 * (connect_timeout, response_timeout), and the place a connection holds on
 * a route (max_connections). */
#include "proxy/core/conn_internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "proxy/core/counters.h"
#include "proxy/core/tls.h"
#include "proxy/core/upstream.h"

/* Records why the upstream failed, for the answer; returns the sentence
 * (for the log). Its buffer is made at a connection's first failure: a
 * connection that never had one holds none. */
__attribute__((format(printf, 2, 3)))
static const char *set_why(cg_conn *c, const char *fmt, ...)
{
    if (!c->up_why && !(c->up_why = malloc(CG_UP_WHY_MAX)))
        return "out of memory";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->up_why, CG_UP_WHY_MAX, fmt, ap);
    va_end(ap);
    return c->up_why;
}

static void fire_upstream_connected(cg_conn *c, int status)
{
    if (c->state == ST_OPEN && c->proto->on_upstream_connected)
        c->proto->on_upstream_connected(c, status);
}

static void up_on_connect(void *owner, int status)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    c->up_connecting = false;
    c->t_connect = 0;
    if (status < 0) {
        cg_metric_inc(CG_M_BACKEND_ERRORS);
        const char *why = set_why(c, "%s", status == CG_E_TLS ? cg_tls_error(cg_stream_tls(c->up))
                                                             : cg_strerror(status));
        cg_warn("conn=%llu upstream %s: %s", (unsigned long long)c->info.id, c->up_cfg->name, why);
        cg_stream_close(c->up);
        c->up = NULL;
        fire_upstream_connected(c, status == CG_E_TLS ? CG_E_TLS : CG_E_UNAVAIL);
    } else {
        cg_conn_update_reads(c);
        fire_upstream_connected(c, 0);
    }
    cg_conn_update_reads(c);
    cg_conn_schedule(c);
    cg_conn_leave(c);
}

static void up_on_data(void *owner, const uint8_t *buf, size_t len)
{
    cg_conn *c = owner;
    if (c->state != ST_OPEN)
        return;
    cg_conn_enter(c);
    /* a long answer streaming to the client is not an idle connection */
    cg_conn_touch(c);
    if (c->expecting) {
        c->expecting = false;
        c->t_response = 0;
    }
    cg_stream *cli = c->cli;
    cg_stream_cork(cli);
    if (c->proto->on_upstream_data)
        c->proto->on_upstream_data(c, buf, len);
    cg_stream_uncork(cli);
    cg_conn_update_reads(c);
    cg_conn_leave(c);
}

static void up_on_eof(void *owner, int status)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    cg_stream_close(c->up);
    c->up = NULL;
    c->t_response = 0;
    c->expecting = false;
    if (status < 0)
        cg_metric_inc(CG_M_BACKEND_ERRORS);
    if (c->state == ST_OPEN && c->proto->on_upstream_eof)
        c->proto->on_upstream_eof(c, status < 0 ? CG_E_UNAVAIL : 0);
    cg_conn_update_reads(c);
    cg_conn_leave(c);
}

static void up_on_drain(void *owner)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    cg_conn_drained(c, &c->cli_bp);
    cg_conn_leave(c);
}

static const cg_stream_cbs up_cbs = {
    .on_connect = up_on_connect,
    .on_data = up_on_data,
    .on_eof = up_on_eof,
    .on_drain = up_on_drain,
};

int cg_conn_write_upstream(cg_conn *c, const void *buf, size_t len)
{
    if (c->state != ST_OPEN || !c->up)
        return CG_E_IO;
    int r = cg_stream_write(c->up, buf, len);
    if (r == 0 && !c->depth)
        cg_conn_update_reads(c);
    return r;
}


size_t cg_conn_upstream_queued(const cg_conn *c) { return c->up ? cg_stream_queued(c->up) : 0; }
bool cg_conn_upstream_attached(const cg_conn *c) { return c->up != NULL; }

const char *cg_conn_upstream_why(const cg_conn *c) { return c->up_why ? c->up_why : ""; }

/* A place on u's route for the connection's life; false past the route's
 * max_connections (all workers count together). */
static bool route_take(cg_conn *c, const cg_upstream_cfg *u)
{
    cg_route_cfg *r = u->route;
    if (!r || c->route_held == r)
        return true;
    cg_conn_route_put(c);
    if (atomic_fetch_add(&r->active, 1) >= r->max_connections) {
        atomic_fetch_sub(&r->active, 1);
        return false;
    }
    c->route_held = r;
    return true;
}

void cg_conn_route_put(cg_conn *c)
{
    if (c->route_held)
        atomic_fetch_sub(&c->route_held->active, 1);
    c->route_held = NULL;
}

int cg_conn_upstream_connect(cg_conn *c)
{
    return cg_conn_upstream_connect_to(c, c->info.listener->upstream);
}

int cg_conn_upstream_connect_to(cg_conn *c, const cg_upstream_cfg *u)
{
    if (c->state != ST_OPEN || !u)
        return CG_E_INVAL;
    if (c->up && c->up_cfg != u)
        cg_conn_upstream_release(c, false); /* another upstream's */
    if (c->up_why)
        c->up_why[0] = '\0';
    if (!route_take(c, u)) {
        const char *why = set_why(c, "route %s: max_connections (%u) reached", u->route->domain,
                                  u->route->max_connections);
        cg_warn("conn=%llu upstream %s: %s", (unsigned long long)c->info.id, u->name, why);
        c->up_pending = true;
        c->up_pending_status = CG_E_LIMIT;
        cg_conn_schedule(c);
        return 0;
    }
    if (c->up) {
        if (!c->up_connecting) {
            c->up_pending = true;
            c->up_pending_status = 0;
            cg_conn_schedule(c);
        }
        return 0;
    }
    /* the address the client reached, for a PROXY v2 header only: asked
     * for at such an upstream's connect, not kept by every connection */
    struct sockaddr_storage local = { .ss_family = AF_UNSPEC };
    int len = sizeof local;
    if (u->proxy_protocol &&
        uv_tcp_getsockname(cg_stream_tcp(c->cli), (struct sockaddr *)&local, &len) != 0)
        return CG_E_IO; /* PROXY v2 would name no local address */
    bool pooled = false;
    SSL_CTX *ctx = c->rt->uctx[cg_runtime_upstream_index(c->rt, u)];
    int r = cg_upstream_open(c->w, u, c->rt->generation, ctx,
                             (const struct sockaddr *)&c->info.peer,
                             (const struct sockaddr *)&local, &up_cbs, c, &c->up, &pooled);
    if (r >= 0)
        c->up_cfg = u;
    if (r < 0) {
        c->up = NULL;
        (void)set_why(c, "%s", cg_strerror(r));
        c->up_pending = true;
        c->up_pending_status = CG_E_UNAVAIL;
        cg_metric_inc(CG_M_BACKEND_ERRORS);
        cg_warn("conn=%llu upstream %s: %s", (unsigned long long)c->info.id, u->name,
                cg_strerror(r));
    } else if (pooled) {
        c->up_pending = true;
        c->up_pending_status = 0;
        cg_conn_update_reads(c);
    } else {
        c->up_connecting = true;
        c->t_connect = cg_conn_now(c) + (uint64_t)u->connect_timeout * 1000;
    }
    cg_conn_schedule(c);
    return 0;
}

void cg_conn_upstream_release(cg_conn *c, bool reusable)
{
    if (!c->up)
        return;
    cg_stream *s = c->up;
    c->up = NULL;
    c->t_connect = c->t_response = 0;
    c->expecting = false;
    if (c->up_connecting)
        reusable = false;
    c->up_connecting = false;
    cg_upstream_put(c->w, c->up_cfg, c->rt->generation, s, reusable);
    cg_conn_update_reads(c);
}

void cg_conn_upstream_shutdown(cg_conn *c)
{
    if (c->up)
        cg_stream_shutdown(c->up);
}

void cg_conn_upstream_expect(cg_conn *c, bool expecting)
{
    const cg_upstream_cfg *u = c->up_cfg ? c->up_cfg : c->info.listener->upstream;
    c->expecting = expecting;
    c->t_response = expecting && u ? cg_conn_now(c) + (uint64_t)u->response_timeout * 1000 : 0;
    cg_conn_schedule(c);
}

void cg_conn_upstream_pending(cg_conn *c)
{
    if (c->up_pending) {
        c->up_pending = false;
        fire_upstream_connected(c, c->up_pending_status);
    }
}

void cg_conn_upstream_due(cg_conn *c, uint64_t now)
{
    if (c->t_connect && now >= c->t_connect) {
        c->t_connect = 0;
        c->up_connecting = false;
        cg_stream_close(c->up);
        c->up = NULL;
        cg_metric_inc(CG_M_BACKEND_ERRORS);
        (void)set_why(c, "connect timeout");
        cg_warn("conn=%llu upstream %s: connect timeout", (unsigned long long)c->info.id,
                c->up_cfg ? c->up_cfg->name : "-");
        fire_upstream_connected(c, CG_E_TIMEOUT);
    }
    if (c->state == ST_OPEN && c->t_response && now >= c->t_response) {
        c->t_response = 0;
        c->expecting = false;
        cg_metric_inc(CG_M_BACKEND_ERRORS);
        if (c->proto->on_upstream_eof)
            c->proto->on_upstream_eof(c, CG_E_TIMEOUT);
    }
}
