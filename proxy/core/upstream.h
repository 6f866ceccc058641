/* proxy/core/upstream.h — the backend half: connect (plain or TLS, PROXY protocol v2
 * header when configured) and a per-worker pool of idle keep-alive
 * connections per upstream. Internal to the proxy layer. */
#ifndef CG_UPSTREAM_H
#define CG_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "proxy/core/config.h"
#include "proxy/core/stream.h"

struct cg_worker;

/* Pools are keyed by the generation of the runtime (worker.h) whose
 * configuration made their connections: a reload that changes an
 * upstream's ca, pin_sha256, server_name or client certificate must not
 * hand out a connection that was checked against the old ones. Once w has
 * seen a generation, older pools are closed and older connections are
 * not pooled again. */

/* Takes an idle pooled connection of this generation (*pooled = true:
 * already connected, the caller reports the connect from the loop) or
 * starts a new one (on_connect follows). client/local: the addresses for
 * the PROXY header. */
int cg_upstream_open(struct cg_worker *w, const cg_upstream_cfg *u, uint64_t generation,
                     SSL_CTX *ctx,
                     const struct sockaddr *client, const struct sockaddr *local,
                     const cg_stream_cbs *cbs, void *owner, cg_stream **out,
                     bool *pooled)
    __attribute__((warn_unused_result));
/* Gives a connection back: pooled when reusable and there is room, else
 * closed. */
void cg_upstream_put(struct cg_worker *w, const cg_upstream_cfg *u, uint64_t generation,
                     cg_stream *s, bool reusable);
/* A reload published generation: closes the idle connections of every
 * older one on w. */
void cg_upstream_pool_retire(struct cg_worker *w, uint64_t generation);
/* Closes every idle pooled connection of w (shutdown). */
void cg_upstream_pool_clear(struct cg_worker *w);

/* PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2): writes the
 * header for a TCP connection from client to local into out (cap at least
 * CG_PROXY_V2_MAX: the 16-byte head and the IPv6 address block, two
 * addresses and two ports); returns its length, 0 when cap is smaller. */
#define CG_PROXY_V2_MAX (16 + 2 * 16 + 2 * 2)
size_t cg_proxy_v2_header(const struct sockaddr *client, const struct sockaddr *local,
                          uint8_t *out, size_t cap);

#endif
