/* proxy/core/stream.h — one TCP endpoint on a worker loop, plain or TLS: a bounded
 * write queue tried with uv_try_write first, reads into the loop's one
 * shared buffer, TLS through tls.h. Used for both halves of a connection
 * and for pooled upstream connections (whose owner changes).
 *
 * Lifetime: cg_stream_close() starts the close; the stream is freed in the
 * handle's close callback, so it stays valid until the current callback
 * returns. Callbacks are never made after cg_stream_close(). */
#ifndef CG_STREAM_H
#define CG_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#define CG_STREAM_HIGH (256 * 1024) /* stop reading the other side above */
#define CG_STREAM_LOW (64 * 1024)   /* resume below */

/* Per-loop scratch buffers (loop->data points at one). */
typedef struct cg_loop_ctx {
    uint8_t *rbuf; /* socket reads */
    size_t rcap;
    uint8_t *pbuf; /* TLS plaintext */
    size_t pcap;
    /* plaintext written to a corked TLS stream, sent as one record at
     * uncork; held by one stream at a time (sowner) */
    uint8_t *sbuf;
    size_t scap, slen;
    void *sowner;
    void *worker;
} cg_loop_ctx;

typedef struct cg_stream cg_stream;

typedef struct cg_stream_cbs {
    /* TCP connect finished (and the TLS handshake, for TLS streams made
     * by cg_stream_connect): 0 or a negative code. */
    void (*on_connect)(void *owner, int status);
    /* Server TLS handshake finished; false refuses (stops reading). */
    bool (*on_handshake)(void *owner);
    void (*on_data)(void *owner, const uint8_t *buf, size_t len);
    /* Peer closed (0), read/write error or TLS failure (negative). Once. */
    void (*on_eof)(void *owner, int status);
    /* After a write completed with the queue at or below CG_STREAM_LOW. */
    void (*on_drain)(void *owner);
} cg_stream_cbs;

/* A stream whose handle is initialised on loop (for uv_accept or
 * cg_stream_connect). */
cg_stream *cg_stream_new(uv_loop_t *loop);
uv_tcp_t *cg_stream_tcp(cg_stream *s);
void cg_stream_set_owner(cg_stream *s, const cg_stream_cbs *cbs, void *owner);

/* After uv_accept: TCP_NODELAY, reading may start. */
void cg_stream_accepted(cg_stream *s);
/* Server-side TLS from now on (implicit TLS at accept, or STARTTLS after
 * everything already queued was sent in plaintext). */
int cg_stream_start_tls_server(cg_stream *s, SSL_CTX *ctx)
    __attribute__((warn_unused_result));
/* Connect; with ctx the client handshake follows (host: SNI and name
 * check; pin: SPKI SHA-256 or NULL). prefix (e.g. a PROXY v2 header) is
 * sent in plaintext before anything else. on_connect follows. */
int cg_stream_connect(cg_stream *s, const struct sockaddr *addr, SSL_CTX *ctx,
                      const char *host, const uint8_t *pin, const void *prefix,
                      size_t prefixlen)
    __attribute__((warn_unused_result));

/* Queue plaintext (encrypted for TLS; held until the handshake is done). */
int cg_stream_write(cg_stream *s, const void *buf, size_t len)
    __attribute__((warn_unused_result));
/* While corked, plaintext written to a TLS stream is staged (up to one
 * record, in the loop's buffer) and TLS records are kept: at the matching
 * uncork they leave as few records as fit in one send (a response head and
 * its body: one SSL_write, one record, one write(2)). Only for the span of
 * one callback: the records are held in memory. */
void cg_stream_cork(cg_stream *s);
void cg_stream_uncork(cg_stream *s);
size_t cg_stream_queued(const cg_stream *s);
void cg_stream_read(cg_stream *s, bool on);
/* Half-close after the queue drains (TLS: close_notify first). */
void cg_stream_shutdown(cg_stream *s);
void cg_stream_close(cg_stream *s);

bool cg_stream_is_tls(const cg_stream *s);
/* The peer closed or an error ended reading. */
bool cg_stream_at_eof(const cg_stream *s);
bool cg_stream_established(const cg_stream *s);
struct cg_tls *cg_stream_tls(cg_stream *s); /* NULL for plain */
uint64_t cg_stream_bytes_in(const cg_stream *s);
uint64_t cg_stream_bytes_out(const cg_stream *s);
#endif
