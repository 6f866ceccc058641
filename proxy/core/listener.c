/* proxy/core/listener.c — a worker's listening sockets: bound with SO_REUSEPORT
 * on every worker (libuv 1.44 has no UV_TCP_REUSEPORT: socket, setsockopt,
 * bind, listen, uv_tcp_open), kept, closed or added on SIGHUP by name and
 * address, and the accept side: a new connection goes to the listener of
 * that name in the current runtime configuration. */
#include "proxy/core/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/cg_error.h"
#include "common/cg_log.h"

#define BACKLOG 511

typedef struct lsock {
    uv_tcp_t tcp;
    struct lsock *next;
    cg_worker *w;
    char name[64];
    struct sockaddr_storage addr;
    bool closing;
} lsock;

static void on_connection(uv_stream_t *server, int status)
{
    lsock *ls = server->data;
    cg_worker *w = ls->w;
    if (status < 0) {
        cg_warn("listener %s: accept: %s", ls->name, uv_strerror(status));
        return;
    }
    cg_stream *s = cg_stream_new(&w->loop);
    if (!s)
        return;
    if (uv_accept(server, (uv_stream_t *)cg_stream_tcp(s)) < 0) {
        cg_stream_close(s);
        return;
    }
    cg_runtime *rt = cg_runtime_acquire();
    size_t li = rt ? rt->cfg->nlisteners : 0;
    for (size_t i = 0; rt && i < rt->cfg->nlisteners; i++)
        if (strcmp(rt->cfg->listeners[i].name, ls->name) == 0)
            li = i;
    if (!rt || li == rt->cfg->nlisteners) {
        cg_stream_close(s);
        cg_runtime_release(rt);
        return;
    }
    cg_conn_accept(w, rt, li, s);
}

static int bind_socket(const cg_listener_cfg *l, int *fd_out, const char **error_r)
{
    static __thread char msg[300];
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (l->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, BACKLOG) < 0)
        goto fail;
    *fd_out = fd;
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    snprintf(msg, sizeof msg, "[listener %s]: cannot listen on %s: %s", l->name, l->listen,
             strerror(e));
    *error_r = msg;
    return -e;
}

int cg_listener_open(cg_worker *w, const cg_listener_cfg *l, const char **error_r)
{
    int fd = -1;
    int r = bind_socket(l, &fd, error_r);
    if (r < 0)
        return r;
    lsock *ls = calloc(1, sizeof *ls);
    if (!ls) {
        close(fd);
        return CG_E_NOMEM;
    }
    uv_tcp_init(&w->loop, &ls->tcp);
    ls->tcp.data = ls;
    ls->w = w;
    snprintf(ls->name, sizeof ls->name, "%s", l->name);
    memcpy(&ls->addr, &l->addr, sizeof ls->addr);
    if ((r = uv_tcp_open(&ls->tcp, fd)) < 0 ||
        (r = uv_listen((uv_stream_t *)&ls->tcp, BACKLOG, on_connection)) < 0) {
        static __thread char msg[200];
        snprintf(msg, sizeof msg, "[listener %s]: %s", l->name, uv_strerror(r));
        *error_r = msg;
        uv_close((uv_handle_t *)&ls->tcp, (uv_close_cb)free);
        return r;
    }
    ls->next = w->listeners;
    w->listeners = ls;
    w->nlisteners++;
    return 0;
}

static void lsock_close(lsock *ls)
{
    if (ls->closing)
        return;
    ls->closing = true;
    uv_close((uv_handle_t *)&ls->tcp, (uv_close_cb)free);
}

void cg_listeners_close(cg_worker *w)
{
    for (lsock *ls = w->listeners, *n; ls; ls = n) {
        n = ls->next;
        lsock_close(ls);
    }
    w->listeners = NULL;
    w->nlisteners = 0;
}

void cg_listeners_sync(cg_worker *w, const cg_runtime *rt)
{
    lsock **pp = (lsock **)&w->listeners;
    while (*pp) {
        lsock *ls = *pp;
        bool keep = false;
        for (size_t i = 0; i < rt->cfg->nlisteners; i++)
            if (strcmp(rt->cfg->listeners[i].name, ls->name) == 0 &&
                memcmp(&rt->cfg->listeners[i].addr, &ls->addr, sizeof ls->addr) == 0)
                keep = true;
        if (keep) {
            pp = &ls->next;
        } else {
            *pp = ls->next;
            w->nlisteners--;
            lsock_close(ls);
        }
    }
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        const cg_listener_cfg *l = &rt->cfg->listeners[i];
        bool have = false;
        for (lsock *ls = w->listeners; ls; ls = ls->next)
            if (strcmp(l->name, ls->name) == 0)
                have = true;
        const char *err = NULL;
        if (!have && cg_listener_open(w, l, &err) < 0)
            cg_error("reload: %s", err);
        else if (!have && w->index == 0)
            cg_info("listener %s: listening on %s", l->name, l->listen);
    }
}
