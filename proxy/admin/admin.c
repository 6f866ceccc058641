/* proxy/admin/admin.c — a minimal HTTP/1.1 responder for /metrics and /healthz: one
 * request per connection, the request head bounded to 4 KiB, everything
 * else answered 404 or 405, then the connection is closed. Each connection
 * has admin_timeout for its request and answer (408 when the request did
 * not come), and at most admin_max_connections are open (503 past that),
 * so idle sockets cannot pile up on the main loop. */
#include "proxy/admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/audit.h"
#include "common/cg_buf.h"
#include "common/cg_log.h"
#include "proxy/admin/metrics.h"
#include "proxy/core/certwatch.h"
#include "proxy/core/counters.h"
#include "proxy/core/worker.h"

#define HEAD_MAX 4096
#define BODY_MAX 16384

typedef struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    uv_write_t wreq;
    unsigned open_handles; /* freed when both tcp and deadline closed */
    size_t len;
    bool answered;
    char head[HEAD_MAX];
    char out[BODY_MAX + 256];
} admin_conn;

static uv_tcp_t g_server;
static bool g_running;
static uint64_t g_timeout_ms;
static unsigned g_max_conns, g_nconns;

static void conn_closed(uv_handle_t *h)
{
    admin_conn *a = h->data;
    if (--a->open_handles == 0) {
        free(a);
        g_nconns--;
    }
}

static void conn_close(admin_conn *a)
{
    if (!uv_is_closing((uv_handle_t *)&a->tcp))
        uv_close((uv_handle_t *)&a->tcp, conn_closed);
    if (!uv_is_closing((uv_handle_t *)&a->deadline))
        uv_close((uv_handle_t *)&a->deadline, conn_closed);
}

static void write_done(uv_write_t *req, int status)
{
    admin_conn *a = req->data;
    (void)status;
    conn_close(a);
}

static void answer(admin_conn *a, int code, const char *reason, const char *ctype,
                   const char *body, size_t blen)
{
    int n = snprintf(a->out, sizeof a->out,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, reason, ctype, blen);
    if (n < 0 || (size_t)n + blen > sizeof a->out) {
        conn_close(a);
        return;
    }
    memmove(a->out + n, body, blen);
    a->answered = true;
    uv_read_stop((uv_stream_t *)&a->tcp);
    uv_buf_t b = uv_buf_init(a->out, (unsigned)((size_t)n + blen));
    a->wreq.data = a;
    if (uv_write(&a->wreq, (uv_stream_t *)&a->tcp, &b, 1, write_done) < 0)
        conn_close(a);
}

/* With policy_max_age set, a snapshot not confirmed current for longer
 * (the store unreachable, or a change that does not build) makes /healthz
 * unhealthy: the sentence into out, its length; 0 when fresh enough. */
static int policy_too_old(char *out, size_t cap)
{
    cg_runtime *rt = cg_runtime_acquire();
    unsigned max = rt ? rt->cfg->policy_max_age : 0;
    cg_runtime_release(rt);
    uint64_t age = cg_policy_age_seconds();
    if (!max || age <= max)
        return 0;
    int n = snprintf(out, cap, "unavailable: the policy in force was last confirmed current "
                     "%llu s ago (policy_max_age %u s)%s\n", (unsigned long long)age, max,
                     cg_metric_get(CG_M_POLICY_STORE_UP) ? "" : "; the policy store is down");
    return n < 0 ? 0 : n;
}

static void handle(admin_conn *a)
{
    static char body[BODY_MAX];
    const char *sp = memchr(a->head, ' ', a->len);
    if (!sp || (size_t)(sp - a->head) != 3 || memcmp(a->head, "GET", 3) != 0) {
        answer(a, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 19);
        return;
    }
    const char *target = sp + 1;
    if (strncmp(target, "/metrics ", 9) == 0) {
        cg_buf b;
        cg_buf_init_fixed(&b, body, sizeof body);
        cg_metrics_render(&b); /* whole lines, up to what fits */
        answer(a, 200, "OK", "text/plain; version=0.0.4", b.p, b.len);
    } else if (strncmp(target, "/healthz ", 9) == 0) {
        bool ok = cg_audit_available() && !cg_workers_shutting_down();
        const char *problem = cg_certwatch_problem();
        int n;
        if (ok && (n = policy_too_old(body, sizeof body)) > 0) {
            /* a node that lost its policy store: a balancer drains it */
            answer(a, 503, "Service Unavailable", "text/plain", body,
                   (size_t)n < sizeof body ? (size_t)n : sizeof body - 1);
        } else if (ok && problem) {
            /* still serving with the files in force: degraded, not down */
            n = snprintf(body, sizeof body, "degraded: %s\n", problem);
            answer(a, 200, "OK", "text/plain", body,
                   n < 0 ? 0 : (size_t)n < sizeof body ? (size_t)n : sizeof body - 1);
        } else if (ok)
            answer(a, 200, "OK", "text/plain", "ok\n", 3);
        else
            answer(a, 503, "Service Unavailable", "text/plain", "unavailable\n", 12);
    } else {
        answer(a, 404, "Not Found", "text/plain", "not found\n", 10);
    }
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    admin_conn *a = h->data;
    (void)s;
    *buf = uv_buf_init(a->head + a->len, (unsigned)(HEAD_MAX - 1 - a->len));
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    admin_conn *a = st->data;
    (void)buf;
    if (a->answered)
        return;
    if (n < 0) {
        conn_close(a);
        return;
    }
    a->len += (size_t)n;
    a->head[a->len] = '\0';
    if (strstr(a->head, "\r\n\r\n") || strstr(a->head, "\n\n"))
        handle(a);
    else if (a->len >= HEAD_MAX - 1)
        answer(a, 431, "Request Header Fields Too Large", "text/plain", "too large\n", 10);
}

/* The deadline: a request that has not come is answered 408; an answer
 * the client does not take within a second deadline is dropped. */
static void deadline_cb(uv_timer_t *t)
{
    admin_conn *a = t->data;
    if (a->answered) {
        conn_close(a);
        return;
    }
    uv_timer_start(&a->deadline, deadline_cb, g_timeout_ms, 0);
    answer(a, 408, "Request Timeout", "text/plain", "request timeout\n", 16);
}

/* Past the cap: a fixed answer written without queueing, then closed. */
static void refused_closed(uv_handle_t *h) { free(h); }

static void refuse(uv_stream_t *server)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n"
                               "\r\nbusy\n";
    uv_tcp_t *t = calloc(1, sizeof *t);
    if (!t)
        return;
    uv_tcp_init(server->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)busy, sizeof busy - 1);
        (void)uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, refused_closed);
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    if (g_nconns >= g_max_conns) {
        cg_warn("admin: %u connections open (admin_max_connections), refusing one", g_nconns);
        refuse(server);
        return;
    }
    admin_conn *a = calloc(1, sizeof *a);
    if (!a)
        return;
    g_nconns++;
    uv_tcp_init(server->loop, &a->tcp);
    uv_timer_init(server->loop, &a->deadline);
    a->open_handles = 2;
    a->tcp.data = a;
    a->deadline.data = a;
    if (uv_accept(server, (uv_stream_t *)&a->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&a->tcp, alloc_cb, read_cb) < 0 ||
        uv_timer_start(&a->deadline, deadline_cb, g_timeout_ms, 0) < 0)
        conn_close(a);
}

int cg_admin_start(uv_loop_t *loop, const cg_config *cfg, const char **error_r)
{
    int r;
    g_timeout_ms = (uint64_t)cfg->admin_timeout * 1000;
    g_max_conns = cfg->admin_max_connections;
    uv_tcp_init(loop, &g_server);
    if ((r = uv_tcp_bind(&g_server, (const struct sockaddr *)&cfg->admin_addr, 0)) < 0 ||
        (r = uv_listen((uv_stream_t *)&g_server, 64, on_conn)) < 0) {
        *error_r = uv_strerror(r);
        uv_close((uv_handle_t *)&g_server, NULL);
        return r;
    }
    g_running = true;
    cg_info("admin: listening on %s (/metrics, /healthz)", cfg->admin_listen);
    return 0;
}

void cg_admin_stop(void)
{
    if (g_running && !uv_is_closing((uv_handle_t *)&g_server))
        uv_close((uv_handle_t *)&g_server, NULL);
    g_running = false;
}
