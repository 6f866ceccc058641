/* proxy/core/upstream.c — backend connections: connect with optional TLS and PROXY v2
 * header, and a per-worker pool of idle connections per upstream, so that
 * HTTP keep-alive reuses backend connections instead of one per client. */
#include "proxy/core/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "common/cg_error.h"
#include "proxy/core/worker.h"

typedef struct idle {
    struct idle *next, *prev;
    struct pool *pool;
    cg_stream *s;
} idle;

typedef struct pool {
    struct pool *next;
    uint64_t generation; /* of the runtime whose configuration made them */
    char name[64];
    struct sockaddr_storage addr;
    bool tls;
    unsigned n;
    idle *head;
} pool;

static pool *pool_find(cg_worker *w, const cg_upstream_cfg *u, uint64_t generation,
                       bool create)
{
    for (pool *p = w->pools; p; p = p->next)
        if (p->generation == generation && strcmp(p->name, u->name) == 0 && p->tls == u->tls &&
            memcmp(&p->addr, &u->addr, sizeof p->addr) == 0)
            return p;
    if (!create)
        return NULL;
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->generation = generation;
    snprintf(p->name, sizeof p->name, "%s", u->name);
    memcpy(&p->addr, &u->addr, sizeof p->addr);
    p->tls = u->tls;
    p->next = w->pools;
    w->pools = p;
    return p;
}

static void idle_unlink(idle *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        e->pool->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->pool->n--;
}

/* An idle backend connection that speaks or closes is no longer reusable. */
static void idle_drop(void *owner)
{
    idle *e = owner;
    idle_unlink(e);
    cg_stream_close(e->s);
    free(e);
}
static void idle_on_data(void *owner, const uint8_t *b, size_t n) { (void)b; (void)n; idle_drop(owner); }
static void idle_on_eof(void *owner, int st) { (void)st; idle_drop(owner); }
static const cg_stream_cbs idle_cbs = { .on_data = idle_on_data, .on_eof = idle_on_eof };

/* "host:port" or "[v6]:port" -> host */
static void host_of(const char *address, char *out, size_t cap)
{
    const char *start = address, *end;
    if (*address == '[') {
        start = address + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(address, ':');
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

/* The address block of a PROXY v2 header (after its 12-byte signature and
 * version byte): family, length, both addresses (alen bytes each), both
 * ports; returns the header's whole length. */
static size_t proxy_v2_addrs(uint8_t *out, uint8_t family, const void *caddr, const void *laddr,
                             size_t alen, const void *cport, const void *lport)
{
    out[13] = family;
    out[14] = 0;
    out[15] = (uint8_t)(2 * alen + 4);
    memcpy(out + 16, caddr, alen);
    memcpy(out + 16 + alen, laddr, alen);
    memcpy(out + 16 + 2 * alen, cport, 2);
    memcpy(out + 18 + 2 * alen, lport, 2);
    return 16 + 2 * alen + 4;
}

size_t cg_proxy_v2_header(const struct sockaddr *client, const struct sockaddr *local,
                          uint8_t *out, size_t cap)
{
    static const uint8_t sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                     0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
    if (cap < CG_PROXY_V2_MAX)
        return 0;
    memcpy(out, sig, 12);
    out[12] = 0x21; /* version 2, PROXY */
    if (client->sa_family == AF_INET && local->sa_family == AF_INET) {
        const struct sockaddr_in *c = (const void *)client, *l = (const void *)local;
        return proxy_v2_addrs(out, 0x11 /* TCP over IPv4 */, &c->sin_addr, &l->sin_addr,
                              sizeof c->sin_addr, &c->sin_port, &l->sin_port);
    }
    if (client->sa_family == AF_INET6 && local->sa_family == AF_INET6) {
        const struct sockaddr_in6 *c = (const void *)client, *l = (const void *)local;
        return proxy_v2_addrs(out, 0x21 /* TCP over IPv6 */, &c->sin6_addr, &l->sin6_addr,
                              sizeof c->sin6_addr, &c->sin6_port, &l->sin6_port);
    }
    out[13] = 0x20; /* LOCAL: mixed families, no address block */
    out[14] = 0;
    out[15] = 0;
    return 16;
}

int cg_upstream_open(cg_worker *w, const cg_upstream_cfg *u, uint64_t generation,
                     SSL_CTX *ctx, const struct sockaddr *client, const struct sockaddr *local,
                     const cg_stream_cbs *cbs, void *owner, cg_stream **out, bool *pooled)
{
    *out = NULL;
    *pooled = false;
    cg_upstream_pool_retire(w, generation);
    pool *p = u->proxy_protocol ? NULL : pool_find(w, u, generation, false);
    if (p && p->head) {
        idle *e = p->head;
        idle_unlink(e);
        cg_stream *s = e->s;
        free(e);
        cg_stream_set_owner(s, cbs, owner);
        *out = s;
        *pooled = true;
        return 0;
    }
    if (u->tls && !ctx)
        return CG_E_TLS;
    cg_stream *s = cg_stream_new(&w->loop);
    if (!s)
        return CG_E_NOMEM;
    cg_stream_set_owner(s, cbs, owner);
    uint8_t hdr[CG_PROXY_V2_MAX];
    size_t hlen = u->proxy_protocol ? cg_proxy_v2_header(client, local, hdr, sizeof hdr) : 0;
    char host[256];
    if (u->server_name)
        snprintf(host, sizeof host, "%s", u->server_name);
    else
        host_of(u->address, host, sizeof host);
    int r = cg_stream_connect(s, (const struct sockaddr *)&u->addr, u->tls ? ctx : NULL, host,
                              u->has_pin ? u->pin_sha256 : NULL, hlen ? hdr : NULL, hlen);
    if (r < 0) {
        cg_stream_close(s);
        return r;
    }
    *out = s;
    return 0;
}

void cg_upstream_put(cg_worker *w, const cg_upstream_cfg *u, uint64_t generation,
                     cg_stream *s, bool reusable)
{
    if (!s)
        return;
    cg_upstream_pool_retire(w, generation);
    if (!reusable || u->proxy_protocol || u->pool_size == 0 || w->stopping ||
        generation < w->pool_generation || cg_stream_queued(s) != 0) {
        cg_stream_close(s);
        return;
    }
    pool *p = pool_find(w, u, generation, true);
    idle *e = p && p->n < u->pool_size ? calloc(1, sizeof *e) : NULL;
    if (!e) {
        cg_stream_close(s);
        return;
    }
    e->pool = p;
    e->s = s;
    e->next = p->head;
    if (p->head)
        p->head->prev = e;
    p->head = e;
    p->n++;
    cg_stream_set_owner(s, &idle_cbs, e);
    cg_stream_read(s, true); /* notice the backend closing it */
}

static void pool_free(pool *p)
{
    while (p->head)
        idle_drop(p->head);
    free(p);
}

void cg_upstream_pool_retire(cg_worker *w, uint64_t generation)
{
    if (generation <= w->pool_generation)
        return;
    w->pool_generation = generation;
    pool **pp = (pool **)&w->pools;
    while (*pp) {
        pool *p = *pp;
        if (p->generation < generation) {
            *pp = p->next;
            pool_free(p);
        } else {
            pp = &p->next;
        }
    }
}

void cg_upstream_pool_clear(cg_worker *w)
{
    pool *p = w->pools;
    w->pools = NULL;
    while (p) {
        pool *next = p->next;
        pool_free(p);
        p = next;
    }
}
