/* store/audit_queue.c — the audit record queue: a bounded ring of
 * fixed-size slots that workers fill without touching the disk, places
 * held for the record of an operation still running, the fail-closed
 * rule when the queue stays full, and the statistics. The writer thread
 * that empties it is audit.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "store/audit_impl.h"

/* ---- slots: a record copied into fixed storage ------------------------- */

#define REC_OFF(f) offsetof(cg_audit_rec, f)
static const size_t rec_off[NF] = {
    REC_OFF(txid), REC_OFF(request_id), REC_OFF(listener), REC_OFF(client),
    REC_OFF(principal), REC_OFF(method), REC_OFF(tls_version), REC_OFF(tls_cipher),
    REC_OFF(service), REC_OFF(operation), REC_OFF(decision), REC_OFF(result),
    REC_OFF(content_sha256), REC_OFF(key_id), REC_OFF(validation), REC_OFF(node),
    REC_OFF(originator), REC_OFF(origin_txid), REC_OFF(resource), REC_OFF(reason),
};
/* Per-field caps, including the terminator. Long free text (resource,
 * reason) last, so the short identifying fields always fit the arena. */
static const uint16_t field_cap[NF] = {
    128, 128, 64, 64, 256, 16, 16, 64, 16, 64, 16, 32, 72, 128, 64,
    CG_AUDIT_NODE_MAX + 1, 256, 128, 1024, 512,
};
static const char trunc_mark[] = "...[truncated]";

/* Copies src into the arena, cut (at a UTF-8 boundary, with a marker) to
 * the field's cap and the arena's room: never overflows. */
static void slot_put(slot *s, int f, const char *src, size_t *used)
{
    if (!src) {
        s->off[f] = CG_AUDIT_NO_STR;
        return;
    }
    size_t room = SLOT_ARENA - *used;
    size_t cap = field_cap[f] < room ? field_cap[f] : room;
    if (cap == 0) {
        s->off[f] = CG_AUDIT_NO_STR;
        return;
    }
    char *dst = s->buf + *used;
    size_t n = strnlen(src, cap);
    if (n < cap) {
        memcpy(dst, src, n + 1);
    } else {
        size_t mark = sizeof trunc_mark - 1;
        size_t keep = cap > mark + 1 ? cap - 1 - mark : 0;
        while (keep > 0 && ((unsigned char)src[keep] & 0xc0) == 0x80)
            keep--;
        memcpy(dst, src, keep);
        size_t m = cap - 1 - keep < mark ? cap - 1 - keep : mark;
        memcpy(dst + keep, trunc_mark, m);
        n = keep + m;
        dst[n] = '\0';
    }
    s->off[f] = (uint16_t)*used;
    *used += n + 1;
}

void cg_audit__slot_fill(slot *s, const cg_audit_rec *r, int64_t usec, int64_t policy_seq)
{
    s->usec = usec;
    s->rule_id = r->rule_id;
    s->bytes_in = r->bytes_in;
    s->bytes_out = r->bytes_out;
    s->conn_id = r->conn_id;
    s->policy_seq = policy_seq;
    size_t used = 0;
    for (int f = 0; f < NF; f++)
        slot_put(s, f, *(const char *const *)((const char *)r + rec_off[f]), &used);
}

void cg_audit__slot_rec(const slot *s, cg_audit_rec *r)
{
    cg_audit_rec_init(r);
    r->rule_id = s->rule_id;
    r->bytes_in = s->bytes_in;
    r->bytes_out = s->bytes_out;
    r->conn_id = s->conn_id;
    for (int f = 0; f < NF; f++)
        *(const char **)((char *)r + rec_off[f]) =
            s->off[f] == CG_AUDIT_NO_STR ? NULL : s->buf + s->off[f];
}

void cg_audit_rec_init(cg_audit_rec *r)
{
    memset(r, 0, sizeof *r);
    r->rule_id = -1;
    r->bytes_in = -1;
    r->bytes_out = -1;
}

/* ---- state ---------------------------------------------------------------- */

cg_audit_state cg_aq = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
                      .lock_fd = -1 };

void cg_audit__warn(const char *what)
{
    uint64_t now = cg_mono_ms(), last = atomic_load(&cg_aq.warn_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&cg_aq.warn_ms, &last, now))
        cg_error("audit: %s (dropped %llu, failures %llu)", what,
                 (unsigned long long)atomic_load(&cg_aq.st_dropped),
                 (unsigned long long)atomic_load(&cg_aq.st_failures));
}

/* ---- submit ----------------------------------------------------------- */

/* Under mu: the queue has no free slot (promised ones count as taken).
 * Records when it became full; with fail_closed, a queue full for
 * queue_full_ms makes the log unavailable. */
static bool queue_full_locked(void)
{
    if (cg_aq.tail - cg_aq.head + cg_aq.reserved < cg_aq.cfg.queue_capacity)
        return false;
    uint64_t ms = cg_mono_ms();
    if (!cg_aq.full_since_ms)
        cg_aq.full_since_ms = ms;
    if (cg_aq.cfg.fail_closed && ms - cg_aq.full_since_ms >= cg_aq.cfg.queue_full_ms)
        atomic_store(&cg_aq.available, false);
    return true;
}

/* Under mu, with a free slot: queues r; unlocks. */
static void enqueue_unlock(const cg_audit_rec *r, int64_t now, int64_t policy_seq)
{
    uint64_t depth = cg_aq.tail - cg_aq.head;
    cg_aq.full_since_ms = 0;
    cg_audit__slot_fill(&cg_aq.slots[cg_aq.tail % cg_aq.cfg.queue_capacity], r, now, policy_seq);
    cg_aq.tail++;
    if (policy_seq > atomic_load(&cg_aq.policy_submitted))
        atomic_store(&cg_aq.policy_submitted, policy_seq);
    atomic_store(&cg_aq.st_depth, depth + 1);
    bool wake = depth == 0 || depth + 1 == BATCH_MAX;
    pthread_mutex_unlock(&cg_aq.mu);
    if (wake)
        pthread_cond_signal(&cg_aq.cv);
    atomic_fetch_add(&cg_aq.st_queued, 1);
}

int cg_audit__submit(const cg_audit_rec *r, int64_t policy_seq)
{
    if (!r)
        return CG_E_INVAL;
    int64_t now = cg_time_now_usec();
    pthread_mutex_lock(&cg_aq.mu);
    if (!cg_aq.started) {
        pthread_mutex_unlock(&cg_aq.mu);
        return CG_E_AUDIT; /* no log, no operations */
    }
#ifdef CG_BENCH_AUDIT_DISCARD
    /* the "audit off" side of tests/bench (meson option bench_audit_discard) */
    pthread_mutex_unlock(&cg_aq.mu);
    (void)now;
    (void)policy_seq;
    return 0;
#endif
    bool closed = cg_aq.cfg.fail_closed;
    if (queue_full_locked()) {
        pthread_mutex_unlock(&cg_aq.mu);
        atomic_fetch_add(&cg_aq.st_dropped, 1);
        cg_audit__warn("queue full, record dropped");
        return closed ? CG_E_AUDIT : 0;
    }
    enqueue_unlock(r, now, policy_seq);
    return closed && !atomic_load(&cg_aq.available) ? CG_E_AUDIT : 0;
}

int cg_audit_reserve(cg_audit_resv *rv)
{
    pthread_mutex_lock(&cg_aq.mu);
    if (rv->gen && rv->gen == cg_aq.gen && cg_aq.started) {
        pthread_mutex_unlock(&cg_aq.mu); /* one held already: it serves */
        return 0;
    }
    rv->gen = 0;
    int rc = 0;
    if (!cg_aq.started) {
        rc = CG_E_AUDIT;
    } else if (cg_aq.cfg.fail_closed && !atomic_load(&cg_aq.available)) {
        rc = CG_E_AUDIT; /* SPEC 5: nothing unrecorded happens */
    } else if (queue_full_locked()) {
        /* audit_fail = open goes on without a place; the record is tried
         * at commit and counted as dropped if there is still no room */
        rc = cg_aq.cfg.fail_closed ? CG_E_AUDIT : 0;
    } else {
        cg_aq.reserved++;
        rv->gen = cg_aq.gen;
    }
    pthread_mutex_unlock(&cg_aq.mu);
    if (rc < 0)
        cg_audit__warn("no room for an operation's record, operation refused");
    return rc;
}

int cg_audit_commit(cg_audit_resv *rv, const cg_audit_rec *r)
{
    if (!rv->gen)
        return cg_audit__submit(r, 0);
    int64_t now = cg_time_now_usec();
    pthread_mutex_lock(&cg_aq.mu);
    bool held = rv->gen == cg_aq.gen && cg_aq.started;
    rv->gen = 0;
    if (!held) { /* the writer was restarted since: an ordinary submit */
        pthread_mutex_unlock(&cg_aq.mu);
        return cg_audit__submit(r, 0);
    }
    cg_aq.reserved--;
#ifdef CG_BENCH_AUDIT_DISCARD
    pthread_mutex_unlock(&cg_aq.mu);
    (void)now;
    return 0;
#endif
    enqueue_unlock(r, now, 0); /* the reserved slot is free: cannot fail */
    return 0;
}

void cg_audit_release(cg_audit_resv *rv)
{
    if (!rv->gen)
        return;
    pthread_mutex_lock(&cg_aq.mu);
    if (rv->gen == cg_aq.gen && cg_aq.started)
        cg_aq.reserved--;
    rv->gen = 0;
    pthread_mutex_unlock(&cg_aq.mu);
}

int cg_audit_submit(const cg_audit_rec *r) { return cg_audit__submit(r, 0); }

int cg_audit__submit_policy(const cg_audit_rec *r, int64_t policy_seq)
{
    return cg_audit__submit(r, policy_seq);
}

int64_t cg_audit__policy_seq(void) { return atomic_load(&cg_aq.policy_submitted); }

bool cg_audit_available(void) { return atomic_load(&cg_aq.available); }

void cg_audit_request_rotate(void)
{
    /* Async-signal-safe enough for a SIGUSR1 handler that calls it: an
     * atomic store; the writer looks at least every second. */
    atomic_store(&cg_aq.rotate, true);
}

void cg_audit_get_stats(cg_audit_stats *out)
{
    out->queued = atomic_load(&cg_aq.st_queued);
    out->committed = atomic_load(&cg_aq.st_committed);
    out->dropped = atomic_load(&cg_aq.st_dropped);
    out->failures = atomic_load(&cg_aq.st_failures);
    out->checkpoints = atomic_load(&cg_aq.st_checkpoints);
    out->queue_depth = atomic_load(&cg_aq.st_depth);
    out->last_commit_usec = atomic_load(&cg_aq.st_last_commit_usec);
}

