/* proxy/core/policy_watch.c — the gateway's policy (policy_watch.h): the
 * read-only store, the first snapshot (from the store, or from the
 * policy_cache copy when the store cannot be loaded), and the watcher
 * thread that polls for committed changes, publishes each new snapshot,
 * keeps the copy, copies policy_log rows into the audit chain, and says in
 * the log and in /metrics whether the store answers and how old the policy
 * in force is. */
#include "proxy/core/policy_watch.h"

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "policy/snapshot.h"
#include "proxy/core/counters.h"
#include "proxy/core/policy_listen.h"
#include "store/audit.h"
#include "store/policy_cache.h"
#include "store/policy_store.h"

#define POLICY_POLL_MS 200
#define REOPEN_FIRST_MS 200   /* a store that cannot be opened: retried after */
#define REOPEN_MAX_MS 5000    /* ... doubling up to this */

static struct {
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    bool stop, running, kick;
    cg_pstore *pstore;       /* NULL while the store cannot be opened */
    char *db, *password;     /* policy_db, policy_db_password (NULL: none) */
    char label[512];         /* policy_db for messages (no password) */
    char *cache;             /* policy_cache (NULL: none) */
    bool up_known, up;       /* for the log: said once per change */
    bool stale;              /* the store's latest policy did not build */
    bool retry;              /* a build that met a store error: again next tick */
    uint64_t reopen_ms, reopen_at;
} w;

/* ---- state shown in /metrics and the log ------------------------------------ */

static void set_up(bool up, const char *why)
{
    cg_metric_set(CG_M_POLICY_STORE_UP, up);
    if (w.up_known && w.up == up)
        return;
    if (up && w.up_known)
        cg_info("policy: the store %s answers again", w.label);
    else if (!up)
        cg_error("policy: the store %s does not answer (%s); the last good policy "
                 "stays in force", w.label, why ? why : "?");
    w.up_known = true;
    w.up = up;
}

/* The policy in force is the store's current one as of now. */
static void confirmed(void)
{
    cg_metric_set(CG_M_POLICY_CONFIRMED_MS, (uint64_t)(cg_time_now_usec() / 1000));
}

/* Whether a failed build is the store's fault (retried, store down), not
 * the policy's (kept out until a change that builds). */
static bool store_error(int rc)
{
    return rc == CG_E_DB || rc == CG_E_BUSY || rc == CG_E_IO || rc == CG_E_UNAVAIL ||
           rc == CG_E_TIMEOUT || rc == CG_E_AGAIN;
}

/* ---- building ------------------------------------------------------------------ */

/* A snapshot of the store published; with policy_cache, built from a
 * recording of what was read, which then becomes the cache. */
static int build_publish(const char **why)
{
    cg_snapshot *s = NULL;
    cg_pcache *rec = NULL;
    cg_metric_add(CG_M_POLICY_BUILDING, 1);
    int rc;
    if (w.cache) {
        rc = cg_pcache_record(w.pstore, &rec, why);
        if (rc == 0)
            rc = cg_snapshot_build_with(cg_pcache_replay, rec, &s, why);
    } else {
        rc = cg_snapshot_build(w.pstore, &s, why);
    }
    cg_metric_add(CG_M_POLICY_BUILDING, -1);
    if (rc == 0) {
        cg_snapshot_publish(s);
        cg_metric_inc(CG_M_POLICY_RELOADS);
        const char *err = NULL;
        if (rec && cg_pcache_write(rec, w.cache, &err) < 0)
            cg_warn("policy: cannot keep the policy cache: %s", err ? err : "?");
    }
    cg_pcache_free(rec);
    return rc;
}

/* Every committed policy change is also a record in the audit chain
 * (SPEC section 5); the audit layer remembers how far it got. */
static void import_policy_log(void)
{
    const char *err = NULL;
    if (cg_audit_import_policy_log(w.pstore, &err) < 0)
        cg_warn("policy: copying policy_log into the audit log failed: %s", err ? err : "?");
}

/* After a build: what it means for the store's state and the age. */
static void built(int rc, const char *why, bool reload)
{
    if (rc == 0) {
        w.stale = w.retry = false;
        set_up(true, NULL);
        confirmed();
        if (reload)
            cg_info("policy: reloaded");
        import_policy_log();
    } else if (store_error(rc)) {
        w.retry = true;
        set_up(false, why);
    } else {
        /* the current snapshot stays: a broken edit must not open anything */
        w.stale = true;
        w.retry = false;
        set_up(true, NULL);
        cg_error("policy: reload failed, keeping the current policy: %s", why ? why : "?");
    }
}

/* ---- the watcher ---------------------------------------------------------------- */

/* No store handle: try to open it (backing off), then load it whole. */
static void reopen(void)
{
    uint64_t now = cg_mono_ms();
    if (now < w.reopen_at)
        return;
    const char *why = NULL;
    int rc = cg_pstore_open_auth(w.db, w.password, CG_PSTORE_READONLY, &w.pstore, &why);
    if (rc == 0) {
        cg_policy_listen_attach(w.pstore);
        rc = build_publish(&why);
        if (rc < 0 && store_error(rc)) {
            cg_pstore_close(w.pstore);
            w.pstore = NULL;
        }
    }
    if (w.pstore) {
        w.reopen_ms = 0;
        built(rc, why, true);
        return;
    }
    set_up(false, why);
    w.reopen_ms = w.reopen_ms ? w.reopen_ms * 2 : REOPEN_FIRST_MS;
    if (w.reopen_ms > REOPEN_MAX_MS)
        w.reopen_ms = REOPEN_MAX_MS;
    w.reopen_at = now + w.reopen_ms;
}

/* The policy database is read-only here; cpmgatectl commits, and the
 * store notices (PRAGMA data_version; every 200 ms keeps the 1 s promise
 * of SPEC section 8; PostgreSQL's notifications wake the thread at once,
 * proxy/core/policy_listen.h). Runs on the policy thread, the only user of
 * w.pstore once it started; the snapshot is published by atomic swap. */
static void policy_tick(void)
{
    if (!w.pstore) {
        reopen();
        return;
    }
    const char *why = NULL;
    bool changed = false;
    /* PostgreSQL: reconnects a store that went away (then all is reloaded) */
    if (!cg_policy_listen_tend()) {
        set_up(false, "the policy database is not connected");
        return;
    }
    if (cg_pstore_poll_changed(w.pstore, &changed, &why) < 0) {
        set_up(false, why ? why : "cannot poll the policy database for changes");
        return;
    }
    if (!changed && !w.retry) {
        set_up(true, NULL);
        if (!w.stale)
            confirmed();
        return;
    }
    int rc = build_publish(&why); /* why is set by it: not in one call */
    built(rc, why, true);
}

static void policy_thread_main(void *arg)
{
    (void)arg;
    uv_mutex_lock(&w.mu);
    while (!w.stop) {
        uv_mutex_unlock(&w.mu);
        policy_tick();
        uv_mutex_lock(&w.mu);
        if (!w.stop && !w.kick)
            (void)uv_cond_timedwait(&w.cv, &w.mu, (uint64_t)POLICY_POLL_MS * 1000000u);
        w.kick = false;
    }
    uv_mutex_unlock(&w.mu);
}

/* Any thread: the policy thread looks at the store now. */
static void policy_wake(void)
{
    uv_mutex_lock(&w.mu);
    w.kick = true;
    uv_cond_signal(&w.cv);
    uv_mutex_unlock(&w.mu);
}

int cg_policy_thread_start(uv_loop_t *loop)
{
    if (uv_mutex_init(&w.mu) < 0)
        return CG_E_NOMEM;
    int rc = cg_policy_listen_start(loop, w.pstore, w.db, policy_wake);
    if (rc < 0) {
        uv_mutex_destroy(&w.mu);
        return rc;
    }
    if (uv_cond_init(&w.cv) < 0 ||
        uv_thread_create(&w.thread, policy_thread_main, NULL) < 0) {
        cg_policy_listen_stop();
        uv_mutex_destroy(&w.mu);
        return CG_E_NOMEM;
    }
    w.running = true;
    return 0;
}

void cg_policy_thread_stop(void)
{
    if (!w.running)
        return;
    uv_mutex_lock(&w.mu);
    w.stop = true;
    uv_cond_signal(&w.cv);
    uv_mutex_unlock(&w.mu);
    uv_thread_join(&w.thread);
    cg_policy_listen_stop();
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    w.running = false;
}

/* ---- start -------------------------------------------------------------------- */

/* The store cannot be loaded at start: the cached copy, or nothing. */
static int start_from_cache(const char *store_why, const char **why)
{
    if (!w.cache) {
        *why = store_why;
        return CG_E_UNAVAIL;
    }
    cg_pcache *c = NULL;
    int64_t written = 0;
    const char *err = NULL;
    cg_snapshot *s = NULL;
    int rc = cg_pcache_read(w.cache, &c, &written, &err);
    if (rc == 0)
        rc = cg_snapshot_build_with(cg_pcache_replay, c, &s, &err);
    cg_pcache_free(c);
    if (rc < 0) {
        *why = cg_say("%s; and the policy cache cannot be used: %s", store_why ? store_why : "?",
                      err ? err : "?");
        return rc;
    }
    cg_snapshot_publish(s);
    cg_metric_inc(CG_M_POLICY_RELOADS);
    cg_metric_set(CG_M_POLICY_CONFIRMED_MS, (uint64_t)(written > 0 ? written : 0) * 1000);
    set_up(false, store_why);
    char t[CG_TIME_LEN];
    cg_time_rfc3339(written * 1000000, t);
    cg_warn("policy: starting from the policy cache %s (written %s); the store is tried "
            "again until it answers", w.cache, t);
    return 0;
}

int cg_policy_start(const cg_config *cfg, const char **why)
{
    w.db = strdup(cfg->policy_db);
    w.password = cfg->policy_db_password ? strdup(cfg->policy_db_password) : NULL;
    w.cache = cfg->policy_cache ? strdup(cfg->policy_cache) : NULL;
    if (!w.db || (cfg->policy_cache && !w.cache) || (cfg->policy_db_password && !w.password)) {
        *why = "out of memory";
        return CG_E_NOMEM;
    }
    cg_pstore_redact(w.db, w.label, sizeof w.label);
    const char *store_why = NULL;
    int rc = cg_pstore_open_auth(w.db, w.password, CG_PSTORE_READONLY, &w.pstore, &store_why);
    if (rc == 0)
        rc = build_publish(&store_why);
    if (rc == 0) {
        set_up(true, NULL);
        confirmed();
        import_policy_log();
        return 0;
    }
    if (w.pstore)
        cg_pstore_close(w.pstore);
    w.pstore = NULL;
    if (w.cache)
        cg_error("policy database %s: %s", w.label, store_why ? store_why : "cannot read");
    return start_from_cache(store_why, why);
}

void cg_policy_close(void)
{
    if (w.pstore)
        cg_pstore_close(w.pstore);
    w.pstore = NULL;
    if (w.password)
        explicit_bzero(w.password, strlen(w.password));
    free(w.db);
    free(w.password);
    free(w.cache);
    w.db = w.password = w.cache = NULL;
}
