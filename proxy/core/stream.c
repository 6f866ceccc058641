/* proxy/core/stream.c — a TCP endpoint (plain or TLS) with a write queue of chunks:
 * uv_try_write first (libuv 1.44 costs an epoll_ctl per queued write),
 * then one uv_write in flight covering everything queued so far. */
#include "proxy/core/stream.h"

#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "proxy/core/tls.h"

#define CHUNK_MIN 4096
#define MAX_BUFS 64

typedef struct chunk {
    struct chunk *next;
    size_t len, cap;
    uint8_t data[];
} chunk;

typedef struct clist {
    chunk *head, *tail;
} clist;

struct cg_stream {
    uv_tcp_t tcp;
    uv_write_t *wreq; /* only while a write is queued: most writes finish in uv_try_write */
    void *owner;
    const cg_stream_cbs *cbs;
    cg_tls *tls;
    clist q;          /* ciphertext or plain bytes waiting for the socket */
    clist inflight;   /* owned by the uv_write in flight */
    clist plain;      /* plaintext waiting for the TLS handshake */
    size_t queued;    /* bytes in q + inflight + plain */
    size_t inflight_bytes;
    uv_connect_t *creq;
    uv_shutdown_t *sreq;
    uint64_t bytes_in, bytes_out;
    unsigned corked;  /* TLS records wait for cg_stream_uncork */
    bool connected, reading, closing, eof_sent, want_shutdown, tls_client;
};

static void list_free(clist *l)
{
    chunk *c = l->head;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    l->head = l->tail = NULL;
}

static int list_append(clist *l, const uint8_t *p, size_t len)
{
    chunk *t = l->tail;
    if (t && t->cap - t->len >= len) {
        memcpy(t->data + t->len, p, len);
        t->len += len;
        return 0;
    }
    size_t cap = len < CHUNK_MIN ? CHUNK_MIN : len;
    chunk *c = malloc(sizeof *c + cap);
    if (!c)
        return CG_E_NOMEM;
    c->next = NULL;
    c->len = len;
    c->cap = cap;
    memcpy(c->data, p, len);
    if (t)
        t->next = c;
    else
        l->head = c;
    l->tail = c;
    return 0;
}

cg_stream *cg_stream_new(uv_loop_t *loop)
{
    cg_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_tcp_init(loop, &s->tcp) < 0) {
        free(s);
        return NULL;
    }
    s->tcp.data = s;
    return s;
}

uv_tcp_t *cg_stream_tcp(cg_stream *s) { return &s->tcp; }
struct cg_tls *cg_stream_tls(cg_stream *s) { return s->tls; }
bool cg_stream_is_tls(const cg_stream *s) { return s->tls != NULL; }
bool cg_stream_at_eof(const cg_stream *s) { return s->eof_sent; }
bool cg_stream_established(const cg_stream *s) { return !s->tls || cg_tls_established(s->tls); }
static void flush_tls(cg_stream *s);
static void report_eof(cg_stream *s, int status);

/* The loop's staging buffer: plaintext of the corked TLS stream that holds
 * it, encrypted as one record when it is released. */
static int stage_flush(cg_stream *s)
{
    cg_loop_ctx *lc = s->tcp.loop->data;
    if (lc->sowner != s)
        return 0;
    size_t n = lc->slen;
    lc->sowner = NULL;
    lc->slen = 0;
    return n ? cg_tls_write(s->tls, lc->sbuf, n) : 0;
}

static void stage_drop(cg_stream *s)
{
    cg_loop_ctx *lc = s->tcp.loop->data;
    if (lc->sowner == s) {
        lc->sowner = NULL;
        lc->slen = 0;
    }
}

/* Stages what fits of buf for corked TLS stream s; returns the bytes
 * taken (0: write them directly). A full stage leaves as one record. */
static size_t stage(cg_stream *s, const uint8_t *buf, size_t len, int *rc)
{
    cg_loop_ctx *lc = s->tcp.loop->data;
    size_t taken = 0;
    *rc = 0;
    while (len && lc->sbuf && (lc->sowner == s || !lc->sowner)) {
        if (!lc->slen && len >= lc->scap)
            break; /* a record's worth already: no copy */
        size_t n = lc->scap - lc->slen < len ? lc->scap - lc->slen : len;
        memcpy(lc->sbuf + lc->slen, buf, n);
        lc->sowner = s;
        lc->slen += n;
        buf += n;
        len -= n;
        taken += n;
        if (lc->slen == lc->scap && (*rc = stage_flush(s)) < 0)
            break;
    }
    return taken;
}

void cg_stream_cork(cg_stream *s)
{
    s->corked++;
}

void cg_stream_uncork(cg_stream *s)
{
    if (s->corked && --s->corked == 0 && s->tls && !s->closing) {
        if (stage_flush(s) < 0) {
            flush_tls(s);
            report_eof(s, CG_E_TLS);
            return;
        }
        flush_tls(s);
    }
}

size_t cg_stream_queued(const cg_stream *s) { return s->queued; }
uint64_t cg_stream_bytes_in(const cg_stream *s) { return s->bytes_in; }
uint64_t cg_stream_bytes_out(const cg_stream *s) { return s->bytes_out; }

void cg_stream_set_owner(cg_stream *s, const cg_stream_cbs *cbs, void *owner)
{
    s->cbs = cbs;
    s->owner = owner;
}

static void report_eof(cg_stream *s, int status)
{
    if (s->eof_sent || s->closing)
        return;
    s->eof_sent = true;
    if (s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
    if (s->cbs && s->cbs->on_eof)
        s->cbs->on_eof(s->owner, status);
}

static void do_shutdown(cg_stream *s);
static void kick(cg_stream *s);

static void write_cb(uv_write_t *req, int status)
{
    cg_stream *s = req->data;
    free(req);
    s->wreq = NULL;
    list_free(&s->inflight);
    s->queued -= s->inflight_bytes;
    s->bytes_out += s->inflight_bytes;
    s->inflight_bytes = 0;
    if (status == UV_ECANCELED || s->closing)
        return;
    if (status < 0) {
        report_eof(s, status);
        return;
    }
    kick(s);
    if (s->closing)
        return;
    if (!s->queued && s->want_shutdown)
        do_shutdown(s);
    if (s->queued <= CG_STREAM_LOW && s->cbs && s->cbs->on_drain)
        s->cbs->on_drain(s->owner);
}

static void kick(cg_stream *s)
{
    if (s->inflight.head || !s->q.head || !s->connected || s->closing)
        return;
    uv_buf_t bufs[MAX_BUFS];
    unsigned n = 0;
    size_t bytes = 0;
    chunk *c = s->q.head, *last = NULL;
    while (c && n < MAX_BUFS) {
        bufs[n++] = uv_buf_init((char *)c->data, (unsigned)c->len);
        bytes += c->len;
        last = c;
        c = c->next;
    }
    s->inflight.head = s->q.head;
    s->inflight.tail = last;
    s->q.head = last->next;
    if (!s->q.head)
        s->q.tail = NULL;
    last->next = NULL;
    s->inflight_bytes = bytes;
    s->wreq = malloc(sizeof *s->wreq);
    int r = s->wreq ? 0 : UV_ENOMEM;
    if (s->wreq) {
        s->wreq->data = s;
        r = uv_write(s->wreq, (uv_stream_t *)&s->tcp, bufs, n, write_cb);
        if (r < 0) {
            free(s->wreq);
            s->wreq = NULL;
        }
    }
    if (r < 0) {
        /* treat like a failed write: the handle is unusable */
        list_free(&s->inflight);
        s->queued -= bytes;
        s->inflight_bytes = 0;
        report_eof(s, r);
    }
}

/* Bytes for the socket as they are (ciphertext, or plaintext streams). */
static int raw_send(cg_stream *s, const uint8_t *p, size_t len)
{
    if (!len)
        return 0;
    if (s->connected && !s->inflight.head && !s->q.head && !s->want_shutdown) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (n > 0) {
            s->bytes_out += (size_t)n;
            p += n;
            len -= (size_t)n;
            if (!len)
                return 0;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            report_eof(s, n);
            return n;
        }
    }
    int r = list_append(&s->q, p, len);
    if (r < 0)
        return r;
    s->queued += len;
    kick(s);
    return 0;
}

static void flush_tls(cg_stream *s)
{
    const uint8_t *p;
    size_t n;
    while (s->tls && (n = cg_tls_out(s->tls, &p)) > 0) {
        if (raw_send(s, p, n) < 0) {
            cg_tls_out_consume(s->tls, n);
            return;
        }
        cg_tls_out_consume(s->tls, n);
    }
}

/* Plaintext held during the handshake goes through TLS now. */
static void flush_plain(cg_stream *s)
{
    chunk *c = s->plain.head;
    s->plain.head = s->plain.tail = NULL;
    while (c) {
        chunk *n = c->next;
        s->queued -= c->len;
        if (!s->closing && cg_tls_write(s->tls, c->data, c->len) < 0)
            report_eof(s, CG_E_TLS);
        free(c);
        c = n;
    }
    flush_tls(s);
}

int cg_stream_write(cg_stream *s, const void *buf, size_t len)
{
    if (s->closing || s->eof_sent || s->want_shutdown)
        return CG_E_IO;
    if (!len)
        return 0;
    if (s->tls) {
        if (!cg_tls_established(s->tls)) {
            int r = list_append(&s->plain, buf, len);
            if (r == 0)
                s->queued += len;
            return r;
        }
        int rc = 0;
        if (s->corked) {
            size_t n = stage(s, buf, len, &rc);
            buf = (const uint8_t *)buf + n;
            len -= n;
        }
        if (rc < 0 || (len && (stage_flush(s) < 0 || cg_tls_write(s->tls, buf, len) < 0))) {
            flush_tls(s);
            report_eof(s, CG_E_TLS);
            return CG_E_TLS;
        }
        if (!s->corked)
            flush_tls(s);
        return 0;
    }
    return raw_send(s, buf, len);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    cg_loop_ctx *lc = h->loop->data;
    (void)suggested;
    *buf = uv_buf_init((char *)lc->rbuf, (unsigned)lc->rcap);
}

static enum cg_tls_flow tls_on_handshake(void *ctx)
{
    cg_stream *s = ctx;
    if (s->closing)
        return CG_TLS_STOP;
    if (s->tls_client) {
        flush_plain(s);
        if (s->cbs && s->cbs->on_connect)
            s->cbs->on_connect(s->owner, 0);
        return s->closing ? CG_TLS_STOP : CG_TLS_CONTINUE;
    }
    bool go_on = !s->cbs || !s->cbs->on_handshake || s->cbs->on_handshake(s->owner);
    if (!s->closing)
        flush_plain(s);
    return !go_on || s->closing ? CG_TLS_STOP : CG_TLS_CONTINUE;
}

static enum cg_tls_flow tls_on_data(void *ctx, const uint8_t *buf, size_t len)
{
    cg_stream *s = ctx;
    if (s->closing || s->eof_sent)
        return CG_TLS_STOP;
    if (s->cbs && s->cbs->on_data)
        s->cbs->on_data(s->owner, buf, len);
    return s->closing || s->eof_sent ? CG_TLS_STOP : CG_TLS_CONTINUE;
}

static const cg_tls_cbs stream_tls_cbs = { tls_on_handshake, tls_on_data };

static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    cg_stream *s = h->data;
    if (s->closing)
        return;
    if (nread < 0) {
        if (s->tls_client && s->tls && !cg_tls_established(s->tls) && s->cbs &&
            s->cbs->on_connect) {
            s->eof_sent = true;
            s->cbs->on_connect(s->owner, CG_E_TLS);
            return;
        }
        report_eof(s, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    if (nread == 0)
        return;
    s->bytes_in += (uint64_t)nread;
    if (!s->tls) {
        if (s->cbs && s->cbs->on_data)
            s->cbs->on_data(s->owner, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    bool was = cg_tls_established(s->tls);
    enum cg_tls_flow flow = CG_TLS_CONTINUE;
    int rc = cg_tls_feed(s->tls, (const uint8_t *)buf->base, (size_t)nread, &flow);
    if (s->closing)
        return;
    flush_tls(s); /* alerts, handshake flights, TLS 1.3 tickets, KeyUpdate */
    if (rc == 0 && flow == CG_TLS_EOF) {
        report_eof(s, 0);
    } else if (rc < 0) {
        if (s->tls_client && !was && s->cbs && s->cbs->on_connect) {
            s->eof_sent = true;
            s->cbs->on_connect(s->owner, CG_E_TLS);
            return;
        }
        report_eof(s, rc);
    }
}

void cg_stream_read(cg_stream *s, bool on)
{
    if (s->closing || s->eof_sent || !s->connected)
        return;
    if (on && !s->reading) {
        if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) == 0)
            s->reading = true;
    } else if (!on && s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
}

void cg_stream_accepted(cg_stream *s)
{
    s->connected = true;
    uv_tcp_nodelay(&s->tcp, 1);
}

int cg_stream_start_tls_server(cg_stream *s, SSL_CTX *ctx)
{
    cg_loop_ctx *lc = s->tcp.loop->data;
    if (s->tls)
        return CG_E_INVAL;
    s->tls = cg_tls_new(ctx, true, NULL, NULL, &stream_tls_cbs, s, lc->pbuf, lc->pcap);
    return s->tls ? 0 : CG_E_NOMEM;
}

static void connect_cb(uv_connect_t *req, int status)
{
    cg_stream *s = req->data;
    free(req);
    s->creq = NULL;
    if (status == UV_ECANCELED || s->closing)
        return;
    if (status < 0) {
        s->eof_sent = true;
        if (s->cbs && s->cbs->on_connect)
            s->cbs->on_connect(s->owner, status);
        return;
    }
    s->connected = true;
    uv_tcp_nodelay(&s->tcp, 1);
    if (s->tls) {
        cg_stream_read(s, true);
        int rc = cg_tls_start(s->tls);
        flush_tls(s);
        if (rc < 0 && !s->closing && s->cbs && s->cbs->on_connect) {
            s->eof_sent = true;
            s->cbs->on_connect(s->owner, CG_E_TLS);
        }
        return;
    }
    kick(s);
    if (s->cbs && s->cbs->on_connect)
        s->cbs->on_connect(s->owner, 0);
}

int cg_stream_connect(cg_stream *s, const struct sockaddr *addr, SSL_CTX *ctx,
                      const char *host, const uint8_t *pin, const void *prefix, size_t prefixlen)
{
    cg_loop_ctx *lc = s->tcp.loop->data;
    if (ctx) {
        s->tls = cg_tls_new(ctx, false, host, pin, &stream_tls_cbs, s, lc->pbuf, lc->pcap);
        if (!s->tls)
            return CG_E_NOMEM;
        s->tls_client = true;
    }
    if (prefix && prefixlen) {
        /* PROXY header: plaintext, ahead of anything written later */
        int r = list_append(&s->q, prefix, prefixlen);
        if (r < 0)
            return r;
        s->queued += prefixlen;
    }
    s->creq = malloc(sizeof *s->creq);
    if (!s->creq)
        return CG_E_NOMEM;
    s->creq->data = s;
    int r = uv_tcp_connect(s->creq, &s->tcp, addr, connect_cb);
    if (r < 0) {
        free(s->creq);
        s->creq = NULL;
    }
    return r;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

static void do_shutdown(cg_stream *s)
{
    if (s->sreq || s->closing)
        return;
    s->sreq = malloc(sizeof *s->sreq);
    if (!s->sreq)
        return;
    if (uv_shutdown(s->sreq, (uv_stream_t *)&s->tcp, shutdown_cb) < 0) {
        free(s->sreq);
        s->sreq = NULL;
    }
}

void cg_stream_shutdown(cg_stream *s)
{
    if (s->closing || s->want_shutdown)
        return;
    if (s->tls) {
        if (stage_flush(s) < 0)
            stage_drop(s); /* the TLS endpoint failed: nothing more leaves */
        cg_tls_shutdown(s->tls);
        flush_tls(s);
    }
    s->want_shutdown = true;
    if (!s->queued && s->connected)
        do_shutdown(s);
}

static void close_cb(uv_handle_t *h)
{
    cg_stream *s = h->data;
    list_free(&s->q);
    list_free(&s->inflight);
    list_free(&s->plain);
    cg_tls_free(s->tls);
    free(s);
}

void cg_stream_close(cg_stream *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    stage_drop(s);
    if (s->reading)
        uv_read_stop((uv_stream_t *)&s->tcp);
    uv_close((uv_handle_t *)&s->tcp, close_cb);
}
