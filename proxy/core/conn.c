/* proxy/core/conn.c — one proxied connection (proxy/core/conn.h): accept, the
 * client half and its TLS handshake, backpressure, every timeout as one
 * entry in the worker's deadline heap, the one refusal path (log line +
 * audit record + protocol answer), and a teardown that is deferred while a
 * callback runs. The upstream half is in conn_upstream.c, the identity in
 * conn_identity.c. */
#include "proxy/core/conn_internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "store/audit.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "proxy/core/counters.h"
#include "proxy/core/stream.h"
#include "proxy/core/tls.h"
#include "proxy/core/worker.h"

#define CONN_MAGIC 0xC6C0117Eu
#define LINGER_MS 5000 /* flush-then-close: the longest we wait */

static atomic_uint_fast64_t g_next_id = 1;

const cg_conn_info *cg_conn_info_of(const cg_conn *c) { return &c->info; }
/* The session's memory is made when first asked for; NULL only when out
 * of memory (hooks are called only once it exists: session_ready). */
void *cg_conn_session(cg_conn *c)
{
    if (!c->session)
        c->session = calloc(1, c->proto->session_size ? c->proto->session_size : 1);
    return c->session;
}

/* Before a protocol hook: the session exists and, for a lazy_open
 * protocol, on_open ran. false: out of memory, the connection aborts. */
static bool session_ready(cg_conn *c)
{
    if (!cg_conn_session(c)) {
        cg_conn_abort(c, "out of memory");
        return false;
    }
    if (c->open_deferred) {
        c->open_deferred = false;
        c->opened = true;
        if (c->proto->on_open)
            c->proto->on_open(c);
    }
    return c->state == ST_OPEN;
}
uv_loop_t *cg_conn_loop(cg_conn *c) { return &c->w->loop; }

static void teardown(cg_conn *c);
static void do_close(cg_conn *c);

/* ---- callback nesting: closes requested inside run when it unwinds ------ */

void cg_conn_enter(cg_conn *c) { c->depth++; }

void cg_conn_leave(cg_conn *c)
{
    if (--c->depth > 0)
        return;
    if (c->abort_pending) {
        c->abort_pending = false;
        teardown(c);
    } else if (c->close_pending) {
        c->close_pending = false;
        do_close(c);
    }
}

/* ---- refusal -------------------------------------------------------------- */

/* The one refusal path: protocol answer, log line, audit record, close. */
static void refuse(cg_conn *c, int err, const char *reason)
{
    if (c->refused || c->state >= ST_CLOSING)
        return;
    c->refused = true;
    cg_conn_enter(c);
    /* an answer only where the client can read one: never plaintext into
     * a TLS handshake */
    bool app_ready = (c->info.listener->tls != CG_TLS_IMPLICIT || c->info.tls) &&
                     (!cg_stream_is_tls(c->cli) || cg_stream_established(c->cli));
    if (app_ready && c->proto->on_refuse) {
        (void)session_ready(c); /* a deferred on_open first, as if a byte had come */
        if (c->session)
            c->proto->on_refuse(c, err, reason);
    }
    cg_warn("conn=%llu client=%s listener=%s refused: %s", (unsigned long long)c->info.id,
            c->info.client, c->info.listener->name, reason);
    cg_metric_inc(CG_M_CONN_REFUSED);
    /* the refusal stands either way; a record the log could not take is
     * counted by the audit layer and said here */
    if (cg_conn_audit_tls(&c->info, "refused", "refused", "error", reason, true) < 0)
        cg_debug("conn=%llu refusal not audited: audit log unavailable",
                 (unsigned long long)c->info.id);
    cg_conn_close(c, reason);
    cg_conn_leave(c);
}

/* ---- timer ---------------------------------------------------------------- */

uint64_t cg_conn_now(cg_conn *c) { return uv_now(&c->w->loop); }

static uint64_t min_deadline(cg_conn *c)
{
    uint64_t d[] = { c->t_hs, c->t_idle, c->t_proto, c->t_connect, c->t_response, c->t_linger };
    uint64_t m = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN(d); i++)
        if (d[i] && (!m || d[i] < m))
            m = d[i];
    if (c->up_pending)
        m = cg_conn_now(c);
    return m;
}

/* Deadlines live in the worker's heap (proxy/core/deadline.h). A
 * connection's key is the deadline it is armed for; it only moves earlier,
 * so the idle deadline moving later with every byte costs nothing: when the
 * key comes up, the connection looks at its real deadlines and re-arms. */
void cg_conn_schedule(cg_conn *c)
{
    if (c->state == ST_DEAD)
        return;
    uint64_t m = min_deadline(c);
    if (!m) {
        cg_deadline_remove(&c->w->deadlines, &c->dl);
        return;
    }
    if (c->dl.at && c->dl.at <= m)
        return;
    if (cg_deadline_set(&c->w->deadlines, &c->dl, m) < 0) {
        /* no memory for the heap: closing is the only safe way out */
        c->abort_pending = true;
    }
}

void cg_conn_deadline_fire(cg_deadline *d)
{
    cg_conn *c = (cg_conn *)((char *)d - offsetof(cg_conn, dl));
    uint64_t now = cg_conn_now(c);
    cg_conn_enter(c);
    cg_conn_upstream_pending(c);
    if (c->t_linger && now >= c->t_linger) {
        c->t_linger = 0;
        c->abort_pending = true;
    } else if (c->t_hs && now >= c->t_hs) {
        c->t_hs = 0;
        refuse(c, CG_E_TIMEOUT, "handshake timeout");
    } else if (c->state == ST_OPEN) {
        cg_conn_upstream_due(c, now);
        if (c->state == ST_OPEN && c->t_proto && now >= c->t_proto) {
            c->t_proto = 0;
            if (c->session && c->proto->on_timer)
                c->proto->on_timer(c);
        }
        if (c->state == ST_OPEN && c->t_idle && now >= c->t_idle) {
            c->t_idle = 0;
            /* the protocol may say goodbye (IMAP BYE) through on_refuse */
            cg_info("conn=%llu client=%s listener=%s closed: idle timeout",
                    (unsigned long long)c->info.id, c->info.client, c->info.listener->name);
            if (c->proto->on_refuse)
                c->proto->on_refuse(c, CG_E_TIMEOUT, "idle timeout");
            cg_conn_close(c, "idle timeout");
        }
    }
    cg_conn_update_reads(c);
    cg_conn_schedule(c);
    cg_conn_leave(c);
}

/* ---- reading and backpressure --------------------------------------------- */

void cg_conn_update_reads(cg_conn *c)
{
    if (c->state == ST_DEAD)
        return;
    if (c->up) {
        size_t q = cg_stream_queued(c->up);
        if (q > CG_STREAM_HIGH)
            c->cli_bp = true;
        else if (q <= CG_STREAM_LOW)
            c->cli_bp = false;
    } else {
        c->cli_bp = false;
    }
    size_t q = cg_stream_queued(c->cli);
    if (q > CG_STREAM_HIGH)
        c->up_bp = true;
    else if (q <= CG_STREAM_LOW)
        c->up_bp = false;
    bool cli_on = c->state == ST_HANDSHAKE || c->state == ST_CLOSING ||
                  (c->state == ST_OPEN && c->cli_want && !c->cli_bp);
    cg_stream_read(c->cli, cli_on);
    if (c->up && !c->up_connecting)
        cg_stream_read(c->up, c->state == ST_OPEN && c->up_want && !c->up_bp);
}

/* 0, or CG_E_NOMEM when the server name cannot be kept (it must be: the
 * HTTP gateway holds requests to it) */
static int fill_tls_info(cg_conn *c)
{
    SSL *ssl = cg_tls_ssl(cg_stream_tls(c->cli));
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    c->info.tls = true;
    c->info.tls_version = SSL_get_version(ssl);
    c->info.tls_cipher = SSL_get_cipher_name(ssl);
    SSL_get0_alpn_selected(ssl, &alpn, &alen);
    if (alen && alen < sizeof c->info.alpn) {
        memcpy(c->info.alpn, alpn, alen);
        c->info.alpn[alen] = '\0';
    }
    return cg_conn_info_set(&c->info.sni, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
}

void cg_conn_drained(cg_conn *c, const bool *bp)
{
    bool was = *bp;
    cg_conn_update_reads(c);
    if (c->state == ST_OPEN && was && !*bp && c->session && c->proto->on_drain)
        c->proto->on_drain(c);
}

/* ---- client side callbacks ------------------------------------------------- */

static void open_session(cg_conn *c)
{
    c->state = ST_OPEN;
    c->t_hs = 0;
    c->t_idle = cg_conn_now(c) + (uint64_t)c->info.listener->idle_timeout * 1000;
    /* on_open runs in session_ready: now, or at the first byte of a
     * lazy_open protocol */
    c->open_deferred = true;
    if (!c->proto->lazy_open)
        (void)session_ready(c);
}

static bool cli_on_handshake(void *owner)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    int err = fill_tls_info(c);
    cg_metric_inc(CG_M_HS_OK);
    const char *why = NULL;
    if (err < 0) {
        refuse(c, CG_E_UNAVAIL, "out of memory");
    } else if (c->deferred_reason) {
        refuse(c, c->deferred_err, c->deferred_reason);
    } else if ((err = cg_conn_identity_resolve(&c->info, cg_stream_tls(c->cli), &why)) < 0) {
        refuse(c, err, why);
    } else if (c->starttls) {
        c->state = ST_OPEN;
        c->t_hs = 0;
        if (c->proto->on_tls_ready)
            c->proto->on_tls_ready(c);
    } else {
        open_session(c);
    }
    cg_conn_schedule(c);
    bool go_on = c->state == ST_OPEN && !c->close_pending && !c->abort_pending;
    cg_conn_leave(c);
    return go_on;
}

static void cli_on_data(void *owner, const uint8_t *buf, size_t len)
{
    cg_conn *c = owner;
    if (c->state != ST_OPEN)
        return; /* closing: discard what still arrives */
    cg_conn_enter(c);
    c->t_idle = cg_conn_now(c) + (uint64_t)c->info.listener->idle_timeout * 1000;
    cg_stream *cli = c->cli;
    cg_stream_cork(cli);
    if (session_ready(c) && c->proto->on_client_data)
        c->proto->on_client_data(c, buf, len);
    cg_stream_uncork(cli); /* c->cli lives until leave tears c down */
    cg_conn_update_reads(c);
    cg_conn_leave(c);
}

static void cli_on_eof(void *owner, int status)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    if (c->state == ST_HANDSHAKE) {
        if (status == CG_E_TLS) {
            cg_metric_inc(CG_M_HS_FAILED);
            char why[300];
            snprintf(why, sizeof why, "TLS %s", cg_tls_error(cg_stream_tls(c->cli)));
            refuse(c, CG_E_TLS, why);
        } else {
            cg_debug("conn=%llu client=%s: closed during handshake",
                     (unsigned long long)c->info.id, c->info.client);
            c->abort_pending = true;
        }
    } else if (c->state == ST_OPEN) {
        if (status == 0 && session_ready(c) && c->proto->on_client_eof)
            c->proto->on_client_eof(c);
        else if (status == 0)
            cg_conn_close(c, "client closed");
        else
            cg_conn_abort(c, cg_strerror(status));
    } else {
        c->abort_pending = true; /* closing and the client is gone */
    }
    cg_conn_leave(c);
}

static void cli_on_drain(void *owner)
{
    cg_conn *c = owner;
    cg_conn_enter(c);
    cg_conn_drained(c, &c->up_bp);
    if (c->state == ST_CLOSING && !cg_stream_queued(c->cli) && cg_stream_at_eof(c->cli))
        c->abort_pending = true;
    cg_conn_leave(c);
}

static const cg_stream_cbs cli_cbs = {
    .on_handshake = cli_on_handshake,
    .on_data = cli_on_data,
    .on_eof = cli_on_eof,
    .on_drain = cli_on_drain,
};

/* ---- accept ------------------------------------------------------------------ */

static void format_peer(cg_conn *c)
{
    const struct sockaddr *sa = (const struct sockaddr *)&c->info.peer;
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        port = ntohs(in->sin_port);
        snprintf(c->info.client, sizeof c->info.client, "%s:%u", a, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        port = ntohs(in6->sin6_port);
        snprintf(c->info.client, sizeof c->info.client, "[%s]:%u", a, port);
    } else {
        snprintf(c->info.client, sizeof c->info.client, "?");
    }
    cg_strlcpy(c->info.client_addr, a, sizeof c->info.client_addr);
}

/* Written before the workers start, read only after: no lock. */
static const cg_proto_ops *g_protos[CG_PROTO_HTTP + 1];

void cg_proto_register(enum cg_proto_kind kind, const cg_proto_ops *ops)
{
    if ((size_t)kind < CG_ARRAY_LEN(g_protos))
        g_protos[kind] = ops;
}

void cg_protos_thread_end(void)
{
    for (size_t i = 0; i < CG_ARRAY_LEN(g_protos); i++)
        if (g_protos[i] && g_protos[i]->on_thread_end)
            g_protos[i]->on_thread_end();
}

static const cg_proto_ops *proto_for(const cg_listener_cfg *l)
{
    const cg_proto_ops *p = (size_t)l->protocol < CG_ARRAY_LEN(g_protos) ? g_protos[l->protocol]
                                                                        : NULL;
    return p ? p : &cg_relay_proto;
}

void cg_conn_worker_link(cg_worker *w, cg_conn *c)
{
    c->next = w->conns;
    c->prev = NULL;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
}

static void worker_unlink(cg_conn *c)
{
    cg_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
}

void cg_conn_accept(cg_worker *w, cg_runtime *rt, size_t li, cg_stream *s)
{
    const cg_listener_cfg *l = &rt->cfg->listeners[li];
    const cg_proto_ops *proto = proto_for(l);
    cg_conn *c = calloc(1, sizeof *c);
    uint8_t sid[8];
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    /* a connection without a session id or a known peer address cannot be
     * audited or judged by address: it is closed before anything else */
    int rc = !c ? CG_E_NOMEM : cg_random(sid, sizeof sid);
    if (rc == 0 && uv_tcp_getpeername(cg_stream_tcp(s), (struct sockaddr *)&peer, &plen) != 0)
        rc = CG_E_IO;
    if (rc < 0) {
        cg_warn("listener=%s accept: %s", l->name,
                !c ? "out of memory" : rc == CG_E_IO ? "peer address unknown" : "no random bytes");
        free(c);
        cg_stream_close(s);
        cg_runtime_release(rt);
        return;
    }
    c->magic = CONN_MAGIC;
    c->w = w;
    c->rt = rt;
    c->li = li;
    c->proto = proto;
    c->cli = s;
    c->cli_want = c->up_want = true;
    c->info.id = atomic_fetch_add(&g_next_id, 1);
    cg_hex_encode(sid, sizeof sid, c->info.session_id);
    c->info.config = rt->cfg;
    c->info.saml = rt->saml;
    c->info.listener = l;
    cg_conn_info_clear(&c->info);
    _Static_assert(sizeof c->info.peer == sizeof peer, "peer is a sockaddr_storage");
    memcpy(&c->info.peer, &peer, sizeof c->info.peer);
    format_peer(c);
    cg_conn_worker_link(w, c);
    cg_stream_set_owner(s, &cli_cbs, c);
    cg_stream_accepted(s);
    cg_metric_inc(CG_M_CONN_ACCEPTED);
    cg_metric_inc(CG_M_CONN_ACTIVE);
    c->state = l->tls == CG_TLS_IMPLICIT ? ST_HANDSHAKE : ST_OPEN;

    cg_conn_enter(c);
    /* Every refusal is answered in the protocol (HTTP 503, IMAP BYE): on
     * an implicit-TLS listener that needs the handshake first, so the
     * refusal waits for it (bounded by handshake_timeout, and counted
     * against the address's limit like any connection). Only the
     * per-address limit itself is a bare close there: answering would
     * spend on that address the very handshakes the limit bounds. */
    if (cg_addrlimit_take((const struct sockaddr *)&c->info.peer, l->max_conn_per_addr) < 0) {
        refuse(c, CG_E_LIMIT, "connection limit per address");
    } else if ((c->counted = true, cg_workers_shutting_down())) {
        c->deferred_err = CG_E_UNAVAIL;
        c->deferred_reason = "shutting down";
    } else if (!cg_audit_available()) {
        c->deferred_err = CG_E_AUDIT;
        c->deferred_reason = "audit log unavailable";
    }
    if (c->refused) {
        /* answered (plaintext) or closed above */
    } else if (c->deferred_reason && l->tls != CG_TLS_IMPLICIT) {
        refuse(c, c->deferred_err, c->deferred_reason);
    } else if (l->tls == CG_TLS_IMPLICIT) {
        if (cg_stream_start_tls_server(s, rt->lctx[li]) < 0) {
            c->abort_pending = true;
        } else {
            c->t_hs = cg_conn_now(c) + (uint64_t)l->handshake_timeout * 1000;
            cg_conn_update_reads(c);
        }
    } else {
        const char *why = NULL;
        int err = cg_conn_identity_resolve(&c->info, cg_stream_tls(c->cli), &why);
        if (err < 0) {
            refuse(c, err, why);
        } else {
            open_session(c);
            cg_conn_update_reads(c);
        }
    }
    cg_conn_schedule(c);
    cg_conn_leave(c);
}

/* ---- the API for protocols ---------------------------------------------------- */

int cg_conn_write_client(cg_conn *c, const void *buf, size_t len)
{
    if (c->state == ST_DEAD || !c->cli)
        return CG_E_IO;
    return cg_stream_write(c->cli, buf, len);
}

size_t cg_conn_client_queued(const cg_conn *c) { return c->cli ? cg_stream_queued(c->cli) : 0; }
int cg_conn_start_tls(cg_conn *c)
{
    if (c->state != ST_OPEN || c->info.tls || cg_stream_is_tls(c->cli) || !c->rt->lctx[c->li])
        return CG_E_INVAL;
    int r = cg_stream_start_tls_server(c->cli, c->rt->lctx[c->li]);
    if (r < 0)
        return r;
    c->starttls = true;
    c->state = ST_HANDSHAKE;
    c->t_hs = cg_conn_now(c) + (uint64_t)c->info.listener->handshake_timeout * 1000;
    cg_conn_update_reads(c);
    cg_conn_schedule(c);
    return 0;
}

void cg_conn_read_client(cg_conn *c, bool on)
{
    c->cli_want = on;
    cg_conn_update_reads(c);
}

void cg_conn_read_upstream(cg_conn *c, bool on)
{
    c->up_want = on;
    cg_conn_update_reads(c);
}

void cg_conn_set_timer(cg_conn *c, uint64_t ms)
{
    c->t_proto = ms ? cg_conn_now(c) + ms : 0;
    cg_conn_schedule(c);
}

bool cg_conn_draining(const cg_conn *c)
{
    (void)c;
    return cg_workers_shutting_down();
}

void cg_conn_touch(cg_conn *c)
{
    c->t_idle = cg_conn_now(c) + (uint64_t)c->info.listener->idle_timeout * 1000;
}

/* ---- closing ------------------------------------------------------------------------ */

void cg_conn_close(cg_conn *c, const char *reason)
{
    if (c->state >= ST_CLOSING)
        return;
    c->state = ST_CLOSING;
    c->close_reason = reason;
    if (c->depth)
        c->close_pending = true;
    else
        do_close(c);
}

void cg_conn_abort(cg_conn *c, const char *reason)
{
    if (c->state == ST_DEAD)
        return;
    if (!c->close_reason)
        c->close_reason = reason;
    c->state = ST_CLOSING;
    if (c->depth)
        c->abort_pending = true;
    else
        teardown(c);
}

/* Flush what is queued to the client, then FIN; keep reading (and
 * discarding) until the client closes or the linger deadline: closing with
 * unread bytes would send RST and could destroy the last answer. */
static void do_close(cg_conn *c)
{
    if (c->state == ST_DEAD)
        return;
    if (c->up) {
        cg_stream_close(c->up);
        c->up = NULL;
    }
    c->t_hs = c->t_idle = c->t_proto = c->t_connect = c->t_response = 0;
    c->up_pending = false;
    c->t_linger = cg_conn_now(c) + LINGER_MS;
    cg_debug("conn=%llu closing: %s", (unsigned long long)c->info.id,
             c->close_reason ? c->close_reason : "-");
    /* the shutdown may report the client's EOF (or an error) at once: its
     * callback must find c still on the stack, not tear it down under us */
    c->depth++;
    cg_stream_shutdown(c->cli);
    c->depth--;
    if (c->abort_pending || (cg_stream_at_eof(c->cli) && cg_stream_queued(c->cli) == 0)) {
        c->abort_pending = false;
        teardown(c);
        return;
    }
    cg_conn_update_reads(c);
    cg_conn_schedule(c);
}

static void teardown(cg_conn *c)
{
    if (c->state == ST_DEAD)
        return;
    c->state = ST_DEAD;
    if (c->opened && c->proto->on_close) {
        c->depth++; /* a close requested from on_close has nothing left to do */
        c->proto->on_close(c);
        c->depth--;
    }
    cg_stream_close(c->cli);
    c->cli = NULL;
    cg_stream_close(c->up);
    c->up = NULL;
    cg_conn_route_put(c);
    if (c->counted)
        cg_addrlimit_put((const struct sockaddr *)&c->info.peer);
    worker_unlink(c);
    cg_deadline_remove(&c->w->deadlines, &c->dl);
    cg_metric_add(CG_M_CONN_ACTIVE, -1);
    /* nothing refers to c any more: the streams make no callbacks after
     * cg_stream_close, and teardown only runs with no callback on the
     * stack (leave) */
    cg_runtime_release(c->rt);
    c->magic = 0;
    cg_conn_info_clear(&c->info);
    free(c->up_why);
    free(c->session);
    free(c);
}

void cg_conn_close_idle_all(cg_worker *w)
{
    cg_conn *c = w->conns;
    while (c) {
        cg_conn *next = c->next; /* teardown unlinks c */
        bool idle = c->session ? c->proto->on_idle && c->proto->on_idle(c)
                               : c->proto->lazy_open;
        if (c->state == ST_OPEN && idle && !c->depth) {
            c->info.shutting_down = true;
            cg_conn_close(c, "shutting down: idle");
        }
        c = next;
    }
}

void cg_conn_shutdown_all(cg_worker *w, bool abort_now)
{
    cg_conn *c = w->conns;
    while (c) {
        cg_conn *next = c->next; /* teardown unlinks c */
        if (abort_now) {
            cg_conn_abort(c, "exit");
        } else if (c->state < ST_CLOSING) {
            c->info.shutting_down = true;
            refuse(c, CG_E_UNAVAIL, "shutting down");
        }
        c = next;
    }
}
