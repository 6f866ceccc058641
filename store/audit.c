/* store/audit.c — the audit writer (SPEC section 5): the one thread that
 * owns the audit database, chains and commits queued records in batches,
 * signs checkpoints, fails closed when it cannot write, rotates on request
 * and flushes what the refusal limiter holds back; starting and stopping
 * it. The queue it empties is audit_queue.c. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "store/audit_impl.h"

#define RETRY_MS 500
#define STOP_RETRY_MS 5000

/* ---- writer ------------------------------------------------------------- */

static int open_file(const char **error_r)
{
    if (cg_aq.file_open)
        return 0;
    int rc = cg_afile_open(&cg_aq.file, cg_aq.db_path, cg_aq.node[0] ? cg_aq.node : NULL,
                           true, error_r);
    if (rc < 0)
        return rc;
    cg_aq.file_open = true;
    if (cg_aq.key && cg_afile_register_key(&cg_aq.file, cg_aq.key) < 0) {
        *error_r = "cannot store the audit public key";
        cg_afile_close(&cg_aq.file);
        cg_aq.file_open = false;
        return CG_E_DB;
    }
    cg_aq.since_ckpt = cg_aq.file.last_seq >= cg_aq.file.last_ckpt_seq
                       ? cg_aq.file.last_seq - cg_aq.file.last_ckpt_seq : 0;
    return 0;
}

static bool ckpt_time_due(void)
{
    return cg_aq.file_open && cg_aq.key && cg_aq.file.last_ckpt_seq < cg_aq.file.last_seq &&
           cg_mono_ms() - cg_aq.last_ckpt_ms >= (uint64_t)cg_aq.cfg.checkpoint_seconds * 1000;
}

static int do_checkpoint(bool final)
{
    char t[CG_TIME_LEN];
    cg_time_rfc3339(cg_time_now_usec(), t);
    uint64_t before = cg_aq.file.last_ckpt_seq;
    int rc = cg_afile_checkpoint(&cg_aq.file, cg_aq.key, final, t);
    if (rc == 0 && cg_aq.file.last_ckpt_seq != before) {
        atomic_fetch_add(&cg_aq.st_checkpoints, 1);
        cg_aq.since_ckpt = 0;
        cg_aq.last_ckpt_ms = cg_mono_ms();
        /* A copy of signed positions outside the file (journal, syslog)
         * pins the chain even against someone who rewrites the file and
         * holds the key; at most one line a second. */
        if (final || cg_aq.last_ckpt_ms - cg_aq.last_ckpt_log_ms >= 1000) {
            cg_hex_encode(cg_aq.file.last_hash, CG_AUDIT_HASH_LEN, cg_aq.log_hex);
            cg_aq.log_seq = cg_aq.file.last_ckpt_seq;
            cg_aq.log_final = final;
            cg_aq.log_pending = true; /* logged once committed */
        }
    }
    return rc;
}

/* One transaction: the slots idx[0..n), the checkpoints that fall due,
 * the policy_log position. Nothing of it stays on failure. */
static int commit_batch(const uint32_t *idx, size_t n, bool final)
{
    const char *err = NULL;
    if (open_file(&err) < 0) {
        cg_audit__warn(err ? err : "cannot open the audit database");
        return CG_E_DB;
    }
    uint64_t t0 = cg_mono_ms();
    int64_t saved_usec = cg_aq.last_usec;
    uint64_t saved_since = cg_aq.since_ckpt, saved_ckpts = atomic_load(&cg_aq.st_checkpoints);
    int64_t max_policy = 0;
    int rc = cg_afile_begin(&cg_aq.file);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const slot *s = &cg_aq.slots[idx[i]];
        cg_audit_rec r;
        cg_audit__slot_rec(s, &r);
        if (cg_aq.node[0])
            r.node = cg_aq.node; /* every record says which node wrote it */
        if (s->usec > cg_aq.last_usec)
            cg_aq.last_usec = s->usec;
        rc = cg_afile_append(&cg_aq.file, cg_aq.last_usec, &r);
        if (s->policy_seq > max_policy)
            max_policy = s->policy_seq;
        if (rc == 0 && cg_aq.key && ++cg_aq.since_ckpt >= cg_aq.cfg.checkpoint_records)
            rc = do_checkpoint(false);
    }
    if (rc == 0 && (final || ckpt_time_due()))
        rc = do_checkpoint(final);
    if (rc == 0 && max_policy > cg_aq.file.policy_seq)
        rc = cg_afile_set_policy_seq(&cg_aq.file, max_policy);
    if (rc == 0)
        rc = cg_afile_commit(&cg_aq.file);
    if (rc < 0) {
        /* Reopen on the next try: after SQLITE_FULL or IOERR the handle's
         * state is not worth trusting, and a reopen reloads the chain. */
        cg_warn("audit: commit of %llu records failed: %s", (unsigned long long)n,
                sqlite3_errmsg(cg_aq.file.db));
        cg_afile_rollback(&cg_aq.file);
        cg_afile_close(&cg_aq.file);
        cg_aq.file_open = false;
        cg_aq.last_usec = saved_usec;
        cg_aq.since_ckpt = saved_since;
        cg_aq.log_pending = false;
        atomic_store(&cg_aq.st_checkpoints, saved_ckpts);
        return rc;
    }
    atomic_store(&cg_aq.st_last_commit_usec, (cg_mono_ms() - t0) * 1000);
    if (cg_aq.log_pending) {
        cg_info("audit: checkpoint%s seq %llu hash %s", cg_aq.log_final ? " (final)" : "",
                (unsigned long long)cg_aq.log_seq, cg_aq.log_hex);
        cg_aq.last_ckpt_log_ms = cg_mono_ms();
        cg_aq.log_pending = false;
    }
    return 0;
}

static void set_failing(bool failing)
{
    bool was = atomic_exchange(&cg_aq.failing, failing);
    if (failing) {
        atomic_fetch_add(&cg_aq.st_failures, 1);
        if (cg_aq.cfg.fail_closed)
            atomic_store(&cg_aq.available, false);
        if (!was)
            cg_error("audit: records cannot be committed to %s; %s", cg_aq.db_path,
                     cg_aq.cfg.fail_closed ? "refusing new operations (audit_fail = closed)"
                                       : "still serving (audit_fail = open)");
        else
            cg_audit__warn("records still cannot be committed");
    } else if (was) {
        cg_info("audit: writing to %s works again", cg_aq.db_path);
    }
}

static void rotate_now(void)
{
    const char *err = NULL;
    if (cg_aq.file_open) {
        /* Sign what is there so the seal needs no extra step. */
        if (commit_batch(NULL, 0, true) < 0)
            cg_warn("audit: cannot sign before rotating; the seal will try again");
    }
    if (cg_aq.file_open) {
        cg_afile_close(&cg_aq.file);
        cg_aq.file_open = false;
    }
    char sealed[4200];
    if (cg_afile_rotate(cg_aq.db_path, cg_aq.key, cg_aq.node[0] ? cg_aq.node : NULL, sealed,
                        sizeof sealed, &err) < 0)
        cg_error("audit: rotation of %s failed: %s", cg_aq.db_path, err ? err : "error");
    if (open_file(&err) < 0)
        cg_error("audit: cannot reopen %s after rotation: %s", cg_aq.db_path, err);
}

/* How long a batch that is not full waits for more records. A commit costs
 * about 150 µs of the writer's CPU whatever it holds (bench_audit N RATE):
 * at 5 ms, 1,000 records/s paid 30 µs each; at 20 ms, a fourth of that.
 * Records are durable that much later; SIGTERM still commits all. */
#define GATHER_MS 20

static uint32_t batch[BATCH_MAX]; /* writer only: the slots of one batch */

static void *writer_main(void *arg)
{
    uint64_t last_flush = cg_mono_ms(), stop_since = 0;
    bool flushed_at_stop = false;
    for (;;) {
        while (atomic_load(&cg_aq.depth) == 0 && !atomic_load(&cg_aq.stop) &&
               !atomic_load(&cg_aq.rotate) && !ckpt_time_due() &&
               cg_mono_ms() - last_flush < 1000)
            cg_audit__wait(1, 200);
        /* Group commit: a batch that is not full gathers for a few more
         * milliseconds (a producer wakes the writer when it fills), so a
         * busy gateway pays one transaction per batch, not per record. */
        uint64_t depth = atomic_load(&cg_aq.depth);
        if (depth > 0 && depth < BATCH_MAX && !atomic_load(&cg_aq.stop) &&
            !atomic_load(&cg_aq.rotate))
            cg_audit__wait(BATCH_MAX, GATHER_MS);
        bool stopping = atomic_load(&cg_aq.stop);
        size_t n = cg_audit__peek(batch, BATCH_MAX);
        if (stopping && n == 0 && flushed_at_stop)
            break;

        if (cg_mono_ms() - last_flush >= 1000 || (stopping && !flushed_at_stop)) {
            cg_audit__refused_flush(stopping);
            last_flush = cg_mono_ms();
            if (stopping) {
                flushed_at_stop = true;
                continue; /* take what the flush queued */
            }
        }
        /* Nothing queued and no checkpoint due: no transaction at all. */
        bool work = n > 0 || ckpt_time_due();
        int rc = work ? commit_batch(batch, n, false) : 0;
        if (rc == 0) {
            cg_audit__consumed(batch, n);
            atomic_fetch_add(&cg_aq.st_committed, n);
            if (work) {
                atomic_store(&cg_aq.full_since_ms, 0);
                set_failing(false);
                atomic_store(&cg_aq.available, true);
            }
            if (atomic_exchange(&cg_aq.rotate, false))
                rotate_now();
            continue;
        }
        set_failing(true);
        if (stopping) {
            if (!stop_since)
                stop_since = cg_mono_ms();
            if (cg_mono_ms() - stop_since >= STOP_RETRY_MS) {
                cg_error("audit: giving up at stop: %llu records could not be committed",
                         (unsigned long long)atomic_load(&cg_aq.depth));
                break;
            }
        }
        /* Keep the batch (it stays in the queue) and retry. */
        struct timespec ts = { 0, RETRY_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
    /* The final checkpoint of a clean stop. */
    if (commit_batch(NULL, 0, true) < 0)
        cg_error("audit: cannot write the final checkpoint");
    if (cg_aq.file_open)
        cg_afile_close(&cg_aq.file);
    cg_aq.file_open = false;
    return NULL;
}

int cg_audit_start(const cg_audit_config *cfg, const char **error_r)
{
    static __thread char msg[1600];
    if (atomic_load(&cg_aq.started)) {
        *error_r = "the audit writer is running already";
        return CG_E_INVAL;
    }
    if (!cfg->db_path || !cg_strlcpy(cg_aq.db_path, cfg->db_path, sizeof cg_aq.db_path)) {
        *error_r = "no audit database path";
        return CG_E_INVAL;
    }
    if (cfg->node_id && !cg_audit_node_ok(cfg->node_id)) {
        *error_r = "the node id must be 1 to 64 of A-Z a-z 0-9 . _ -";
        return CG_E_INVAL;
    }
    cg_strlcpy(cg_aq.node, cfg->node_id ? cfg->node_id : "", sizeof cg_aq.node);
    cg_aq.cfg = *cfg;
    cg_aq.cfg.db_path = cg_aq.db_path;
    cg_aq.cfg.node_id = NULL; /* cg_aq.node holds it */
    if (!cg_aq.cfg.checkpoint_records) cg_aq.cfg.checkpoint_records = 1000;
    if (!cg_aq.cfg.checkpoint_seconds) cg_aq.cfg.checkpoint_seconds = 5;
    if (!cg_aq.cfg.queue_capacity) cg_aq.cfg.queue_capacity = 65536;
    if (!cg_aq.cfg.queue_full_ms) cg_aq.cfg.queue_full_ms = 1000;
    cg_aq.key = NULL;
    const char *err = NULL;
    if (cfg->key_path && cg_audit_key_load_private(cfg->key_path, &cg_aq.key, &err) < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s", cfg->key_path, err);
        *error_r = msg;
        return CG_E_CRYPTO;
    }
    if (!cg_aq.key)
        cg_warn("audit: no audit_key: checkpoints are not signed");
    long holder = 0;
    int rc = cg_afile_lock(cg_aq.db_path, &cg_aq.lock_fd, &holder, &err);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s (pid %ld)", cg_aq.db_path, err, holder);
        *error_r = msg;
        goto fail;
    }
    rc = open_file(&err);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s", cg_aq.db_path, err);
        *error_r = msg;
        goto fail;
    }
    rc = cg_audit__queue_init(cg_aq.cfg.queue_capacity);
    if (rc < 0) {
        *error_r = rc == CG_E_NOMEM ? "out of memory for the audit queue"
                                    : "audit queue capacity out of range";
        goto fail;
    }
    atomic_fetch_add(&cg_aq.gen, 1); /* reservations of an earlier run are void */
    atomic_store(&cg_aq.full_since_ms, 0);
    atomic_store(&cg_aq.stop, false);
    cg_aq.last_usec = 0;
    cg_aq.last_ckpt_ms = cg_mono_ms();
    atomic_store(&cg_aq.policy_submitted, cg_aq.file.policy_seq);
    /* Counters are per run of the writer (the gateway runs one). */
    atomic_store(&cg_aq.st_queued, 0);
    atomic_store(&cg_aq.st_committed, 0);
    atomic_store(&cg_aq.st_dropped, 0);
    atomic_store(&cg_aq.st_failures, 0);
    atomic_store(&cg_aq.st_checkpoints, 0);
    atomic_store(&cg_aq.failing, false);
    atomic_store(&cg_aq.rotate, false);
    atomic_store(&cg_aq.available, true);
    if (cg_audit__refused_reset() < 0) {
        *error_r = "out of memory for the refusal limiter";
        rc = CG_E_NOMEM;
        goto fail;
    }
    atomic_store(&cg_aq.started, true);
    if (pthread_create(&cg_aq.thread, NULL, writer_main, NULL) != 0) {
        atomic_store(&cg_aq.started, false);
        *error_r = "cannot start the audit writer thread";
        rc = CG_E_NOMEM;
        goto fail;
    }
    cg_info("audit: writing %s from seq %llu", cg_aq.db_path,
            (unsigned long long)(cg_aq.file.last_seq + 1));
    return 0;
fail:
    if (cg_aq.file_open)
        cg_afile_close(&cg_aq.file);
    cg_aq.file_open = false;
    cg_audit__queue_free();
    cg_afile_unlock(cg_aq.lock_fd);
    cg_aq.lock_fd = -1;
    EVP_PKEY_free(cg_aq.key);
    cg_aq.key = NULL;
    return rc;
}

void cg_audit_stop(void)
{
    pthread_mutex_lock(&cg_aq.mu);
    if (!atomic_load(&cg_aq.started)) {
        pthread_mutex_unlock(&cg_aq.mu);
        return;
    }
    atomic_store(&cg_aq.stop, true);
    cg_audit__wake();
    pthread_join(cg_aq.thread, NULL);
    /* no producer gets in from here; the queue goes once the last is out */
    atomic_store(&cg_aq.started, false);
    atomic_store(&cg_aq.available, false);
    while (atomic_load(&cg_aq.users) > 0)
        sched_yield();
    cg_audit__queue_free();
    pthread_mutex_unlock(&cg_aq.mu);
    cg_afile_unlock(cg_aq.lock_fd);
    cg_aq.lock_fd = -1;
    EVP_PKEY_free(cg_aq.key);
    cg_aq.key = NULL;
}
