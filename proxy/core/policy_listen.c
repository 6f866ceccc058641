/* proxy/core/policy_listen.c — the LISTEN connection of a PostgreSQL
 * policy store on the main loop, and keeping the store connected from the
 * policy thread (see policy_listen.h). The connection moves from the
 * policy thread (which opens it, blocking) to the loop (which reads it)
 * through a mutex-held slot and a uv_async_t; each connection is used by
 * one thread at a time. */
#include "proxy/core/policy_listen.h"

#include <stdatomic.h>

#include "common/cg_error.h"
#include "common/cg_log.h"

#define BACKOFF_FIRST_MS 250
#define BACKOFF_MAX_MS 5000

static struct {
    cg_pstore *store;
    void (*wake)(void);
    bool on;
    uv_async_t async;       /* "a connection is in the slot" */
    uv_mutex_t mu;
    cg_pslisten *slot;      /* handed over, not yet taken (mu) */
    /* main loop: the connection read, and the one waiting for the poll
     * handle to close (a handle watches one descriptor for its life) */
    cg_pslisten *active, *incoming;
    uv_poll_t poll;
    bool poll_open, poll_closing;
    /* policy thread */
    atomic_bool need_listener;
    bool down_said;
    uint64_t next_try_ms, backoff_ms;
} L;

static void watch(cg_pslisten *l);

static void on_poll_closed(uv_handle_t *h)
{
    (void)h;
    L.poll_open = L.poll_closing = false;
    cg_pslisten *l = L.incoming;
    L.incoming = NULL;
    if (l)
        watch(l);
}

/* Main loop: stops reading the active connection and closes it. */
static void drop_active(void)
{
    if (L.poll_open && !L.poll_closing) {
        uv_poll_stop(&L.poll);
        L.poll_closing = true;
        uv_close((uv_handle_t *)&L.poll, on_poll_closed);
    }
    cg_pslisten_close(L.active);
    L.active = NULL;
}

/* Main loop: the store is down now; the policy thread says so and
 * reconnects. */
static void lost(void)
{
    drop_active();
    atomic_store(&L.need_listener, true);
    L.wake();
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)events;
    bool notified = false;
    const char *err = NULL;
    if (!L.active)
        return;
    if (status < 0 || cg_pslisten_read(L.active, &notified, &err) < 0)
        lost();
    else if (notified)
        L.wake();
}

/* Main loop: reads l from now on (once the old handle has closed). */
static void watch(cg_pslisten *l)
{
    if (L.poll_open) {
        cg_pslisten_close(L.incoming);
        L.incoming = l;
        drop_active();
        return;
    }
    if (uv_poll_init(L.async.loop, &L.poll, cg_pslisten_fd(l)) < 0) {
        cg_pslisten_close(l);
        cg_error("policy: cannot watch the policy database's notifications");
        atomic_store(&L.need_listener, true);
        return;
    }
    L.poll_open = true;
    L.active = l;
    if (uv_poll_start(&L.poll, UV_READABLE, on_readable) < 0) {
        lost();
        return;
    }
    /* what arrived while the connection changed hands */
    on_readable(&L.poll, 0, UV_READABLE);
}

/* Main loop: takes the connection in the slot, in place of the active one. */
static void on_handover(uv_async_t *a)
{
    (void)a;
    uv_mutex_lock(&L.mu);
    cg_pslisten *l = L.slot;
    L.slot = NULL;
    uv_mutex_unlock(&L.mu);
    if (l)
        watch(l);
}

int cg_policy_listen_start(uv_loop_t *loop, cg_pstore *s, const char *db, void (*wake)(void))
{
    if (s ? !cg_pstore_is_pg(s) : !cg_pstore_url(db))
        return 0;
    int rc = uv_mutex_init(&L.mu);
    if (rc < 0)
        return rc;
    rc = uv_async_init(loop, &L.async, on_handover);
    if (rc < 0) {
        uv_mutex_destroy(&L.mu);
        return rc;
    }
    L.store = s;
    L.wake = wake;
    L.backoff_ms = BACKOFF_FIRST_MS;
    atomic_store(&L.need_listener, true);
    L.on = true;
    return 0;
}

void cg_policy_listen_attach(cg_pstore *s)
{
    if (L.on && !L.store) {
        L.store = s;
        atomic_store(&L.need_listener, true);
    }
}

void cg_policy_listen_stop(void)
{
    if (!L.on)
        return;
    drop_active();
    cg_pslisten_close(L.slot);
    cg_pslisten_close(L.incoming);
    L.slot = L.incoming = NULL;
    uv_close((uv_handle_t *)&L.async, NULL);
    uv_mutex_destroy(&L.mu);
    L.on = false;
}

/* Policy thread: the store is down; reconnects when the backoff allows. */
static bool reconnect(uint64_t now)
{
    if (!L.down_said) {
        cg_warn("policy: lost the policy database %s; serving the last policy, reconnecting",
                cg_pstore_label(L.store));
        L.down_said = true;
        L.backoff_ms = BACKOFF_FIRST_MS;
        L.next_try_ms = now + L.backoff_ms;
        return false;
    }
    if (now < L.next_try_ms)
        return false;
    const char *err = NULL;
    if (cg_pstore_reconnect(L.store, &err) < 0) {
        L.backoff_ms = L.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : L.backoff_ms * 2;
        L.next_try_ms = now + L.backoff_ms;
        cg_debug("policy: reconnect failed (next in %llu ms): %s",
                 (unsigned long long)L.backoff_ms, err ? err : "?");
        return false;
    }
    atomic_store(&L.need_listener, true);
    return true;
}

bool cg_policy_listen_tend(void)
{
    if (!L.on || !L.store)
        return true;
    uint64_t now = uv_hrtime() / 1000000u;
    if (!cg_pstore_up(L.store) && !reconnect(now))
        return false;
    if (atomic_load(&L.need_listener)) {
        cg_pslisten *l = NULL;
        const char *err = NULL;
        if (cg_pslisten_open(L.store, &l, &err) < 0) {
            /* the next tick tries again; the store's own state says more */
            cg_debug("policy: LISTEN failed: %s", err ? err : "?");
            return cg_pstore_up(L.store);
        }
        atomic_store(&L.need_listener, false);
        uv_mutex_lock(&L.mu);
        cg_pslisten_close(L.slot);
        L.slot = l;
        uv_mutex_unlock(&L.mu);
        uv_async_send(&L.async);
        /* whatever changed before LISTEN took effect: reload everything */
        cg_pstore_mark_changed(L.store);
        if (L.down_said) {
            cg_info("policy: the policy database %s is back; reloading the whole policy",
                    cg_pstore_label(L.store));
            L.down_said = false;
        }
        L.backoff_ms = BACKOFF_FIRST_MS;
    }
    return true;
}
