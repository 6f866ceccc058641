/* proxy/policy_watch.c — the gateway's policy (policy_watch.h): the
 * read-only store, the first snapshot, and the watcher thread that polls
 * for committed changes, publishes each new snapshot and copies
 * policy_log rows into the audit chain. */
#include "proxy/policy_watch.h"

#include <uv.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "policy/snapshot.h"
#include "proxy/core/counters.h"
#include "store/audit.h"
#include "store/policy_store.h"

#define POLICY_POLL_MS 200

static struct {
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cv;
    bool stop, running;
    cg_pstore *pstore;
} w;

static int load_policy(const char **error_r)
{
    cg_snapshot *s = NULL;
    int r = cg_snapshot_build(w.pstore, &s, error_r);
    if (r < 0)
        return r;
    cg_snapshot_publish(s);
    cg_metric_inc(CG_M_POLICY_RELOADS);
    return 0;
}

/* Every committed policy change is also a record in the audit chain
 * (SPEC section 5); the audit layer remembers how far it got. */
static void import_policy_log(void)
{
    const char *err = NULL;
    if (cg_audit_import_policy_log(w.pstore, &err) < 0)
        cg_warn("policy: copying policy_log into the audit log failed: %s", err ? err : "?");
}

static void policy_building(void *arg, bool on)
{
    (void)arg;
    cg_metric_add(CG_M_POLICY_BUILDING, on ? 1 : -1);
}

/* The policy database is read-only here; cpmgatectl commits, and the
 * snapshot layer notices (PRAGMA data_version; every 200 ms keeps the 1 s
 * promise of SPEC section 8). Runs on the policy thread, the only user of
 * w.pstore once it started; the snapshot is published by atomic swap. */
static void policy_tick(void)
{
    const char *err = NULL;
    bool published;
    if (cg_snapshot_reload_if_changed_cb(w.pstore, policy_building, NULL, &published, &err) < 0) {
        /* the current snapshot stays: a broken edit must not open anything */
        cg_error("policy: reload failed, keeping the current policy: %s", err ? err : "?");
        return;
    }
    if (!published)
        return;
    cg_metric_inc(CG_M_POLICY_RELOADS);
    cg_info("policy: reloaded");
    import_policy_log();
}

static void policy_thread_main(void *arg)
{
    (void)arg;
    uv_mutex_lock(&w.mu);
    while (!w.stop) {
        uv_mutex_unlock(&w.mu);
        policy_tick();
        uv_mutex_lock(&w.mu);
        if (!w.stop)
            (void)uv_cond_timedwait(&w.cv, &w.mu,
                                    (uint64_t)POLICY_POLL_MS * 1000000u);
    }
    uv_mutex_unlock(&w.mu);
}

int cg_policy_thread_start(void)
{
    if (uv_mutex_init(&w.mu) < 0)
        return CG_E_NOMEM;
    if (uv_cond_init(&w.cv) < 0 ||
        uv_thread_create(&w.thread, policy_thread_main, NULL) < 0) {
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
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    w.running = false;
}

int cg_policy_start(const cg_config *cfg, const char **why)
{
    int rc = cg_pstore_open(cfg->policy_db, CG_PSTORE_READONLY, &w.pstore, why);
    if (rc == 0)
        rc = load_policy(why);
    if (rc < 0)
        return rc;
    import_policy_log();
    return 0;
}

void cg_policy_close(void)
{
    if (w.pstore)
        cg_pstore_close(w.pstore);
    w.pstore = NULL;
}
