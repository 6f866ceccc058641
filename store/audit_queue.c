/* store/audit_queue.c — the audit record queue: fixed-size slots that
 * workers fill without touching the disk or taking a lock (a lock-free
 * stack of free slots, a ring of published ones; see audit_impl.h), places
 * held for the record of an operation still running, the fail-closed rule
 * when the queue stays full, the writer's sleep and wake-up, and the
 * statistics. The writer thread that empties it is audit.c. */
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

cg_audit_state cg_aq = { .mu = PTHREAD_MUTEX_INITIALIZER, .lock_fd = -1 };

void cg_audit__warn(const char *what)
{
    uint64_t now = cg_mono_ms(), last = atomic_load(&cg_aq.warn_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&cg_aq.warn_ms, &last, now))
        cg_error("audit: %s (dropped %llu, failures %llu)", what,
                 (unsigned long long)atomic_load(&cg_aq.st_dropped),
                 (unsigned long long)atomic_load(&cg_aq.st_failures));
}

/* ---- the free stack and the ready ring ----------------------------------- */

static void free_push(uint32_t i)
{
    uint64_t top = atomic_load(&cg_aq.free_top), next;
    do {
        atomic_store_explicit(&cg_aq.free_next[i], (uint32_t)top, memory_order_relaxed);
        next = ((top >> 32) + 1) << 32 | (uint64_t)(i + 1);
    } while (!atomic_compare_exchange_weak(&cg_aq.free_top, &top, next));
}

/* A free slot's index, or -1 when there is none. The tag in the top half
 * changes at every push and pop, so a stale top never matches (ABA). */
static int64_t free_pop(void)
{
    uint64_t top = atomic_load(&cg_aq.free_top), next;
    do {
        uint32_t t = (uint32_t)top;
        if (t == 0)
            return -1;
        uint32_t below = atomic_load_explicit(&cg_aq.free_next[t - 1], memory_order_relaxed);
        next = ((top >> 32) + 1) << 32 | below;
    } while (!atomic_compare_exchange_weak(&cg_aq.free_top, &top, next));
    return (int64_t)(uint32_t)top - 1;
}

int cg_audit__queue_init(size_t capacity)
{
    if (capacity == 0 || capacity > UINT32_MAX - 1)
        return CG_E_INVAL;
    cg_aq.slots = calloc(capacity, sizeof *cg_aq.slots);
    cg_aq.free_next = calloc(capacity, sizeof *cg_aq.free_next);
    cg_aq.ring = calloc(capacity, sizeof *cg_aq.ring);
    if (!cg_aq.slots || !cg_aq.free_next || !cg_aq.ring) {
        cg_audit__queue_free();
        return CG_E_NOMEM;
    }
    atomic_store(&cg_aq.free_top, 0);
    for (size_t i = capacity; i-- > 0;)
        free_push((uint32_t)i); /* slot 0 on top: the first ones are reused */
    atomic_store(&cg_aq.ring_tail, 0);
    cg_aq.ring_head = 0;
    atomic_store(&cg_aq.depth, 0);
    return 0;
}

void cg_audit__queue_free(void)
{
    free(cg_aq.slots);
    free((void *)cg_aq.free_next);
    free(cg_aq.ring);
    cg_aq.slots = NULL;
    cg_aq.free_next = NULL;
    cg_aq.ring = NULL;
}

void cg_audit__wake(void)
{
    atomic_fetch_add(&cg_aq.wake_seq, 1);
    if (atomic_load(&cg_aq.sleeping))
        syscall(SYS_futex, &cg_aq.wake_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void cg_audit__wait(uint64_t want, long ms)
{
    uint32_t w = atomic_load(&cg_aq.wake_seq);
    atomic_store(&cg_aq.sleeping, true);
    /* looked at after sleeping is set: a producer that published before
     * is seen here, one after sees sleeping (or changed wake_seq) */
    if (atomic_load(&cg_aq.depth) < want && !atomic_load(&cg_aq.stop) &&
        !atomic_load(&cg_aq.rotate)) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        syscall(SYS_futex, &cg_aq.wake_seq, FUTEX_WAIT_PRIVATE, w, &ts, NULL, 0);
    }
    atomic_store(&cg_aq.sleeping, false);
}

/* Makes slot i's record visible to the writer; wakes it when the queue
 * was empty (it sleeps) or now fills a batch. */
static void publish(uint32_t i)
{
    uint64_t pos = atomic_fetch_add(&cg_aq.ring_tail, 1);
    ring_cell *c = &cg_aq.ring[pos % cg_aq.cfg.queue_capacity];
    atomic_store_explicit(&c->slot, i, memory_order_relaxed);
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    uint64_t depth = atomic_fetch_add(&cg_aq.depth, 1);
    if (depth == 0 || depth + 1 == BATCH_MAX)
        cg_audit__wake();
}

size_t cg_audit__peek(uint32_t *idx, size_t max)
{
    size_t n = 0;
    for (; n < max; n++) {
        uint64_t pos = cg_aq.ring_head + n;
        ring_cell *c = &cg_aq.ring[pos % cg_aq.cfg.queue_capacity];
        if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos + 1)
            break; /* not published yet (a producer between its add and its store) */
        idx[n] = atomic_load_explicit(&c->slot, memory_order_relaxed);
    }
    return n;
}

void cg_audit__consumed(const uint32_t *idx, size_t n)
{
    cg_aq.ring_head += n;
    atomic_fetch_sub(&cg_aq.depth, n);
    for (size_t i = 0; i < n; i++)
        free_push(idx[i]);
}

/* ---- submit ----------------------------------------------------------- */

/* A free slot, or -1: then the queue is full (held places count as taken).
 * Records when it became full; with fail_closed, a queue full for
 * queue_full_ms makes the log unavailable. */
static int64_t take_slot(void)
{
    int64_t i = free_pop();
    if (i >= 0) {
        if (atomic_load_explicit(&cg_aq.full_since_ms, memory_order_relaxed))
            atomic_store(&cg_aq.full_since_ms, 0);
        return i;
    }
    uint64_t ms = cg_mono_ms(), since = 0;
    if (atomic_compare_exchange_strong(&cg_aq.full_since_ms, &since, ms))
        since = ms;
    if (cg_aq.cfg.fail_closed && ms - since >= cg_aq.cfg.queue_full_ms)
        atomic_store(&cg_aq.available, false);
    return -1;
}

/* Fills slot i with r and publishes it. */
static void enqueue(uint32_t i, const cg_audit_rec *r, int64_t now, int64_t policy_seq)
{
    cg_audit__slot_fill(&cg_aq.slots[i], r, now, policy_seq);
    if (policy_seq > 0) {
        int64_t cur = atomic_load(&cg_aq.policy_submitted);
        while (policy_seq > cur &&
               !atomic_compare_exchange_weak(&cg_aq.policy_submitted, &cur, policy_seq))
            ;
    }
    publish(i);
    atomic_fetch_add_explicit(&cg_aq.st_queued, 1, memory_order_relaxed);
}

/* Enter and leave the queue: cg_audit_stop frees it only once no producer
 * is inside. false: the writer is not running (left already). */
static bool enter(void)
{
    atomic_fetch_add(&cg_aq.users, 1);
    if (atomic_load(&cg_aq.started))
        return true;
    atomic_fetch_sub(&cg_aq.users, 1);
    return false;
}

static void leave(void) { atomic_fetch_sub(&cg_aq.users, 1); }

int cg_audit__submit(const cg_audit_rec *r, int64_t policy_seq)
{
    if (!r)
        return CG_E_INVAL;
    int64_t now = cg_time_now_usec();
    if (!enter())
        return CG_E_AUDIT; /* no log, no operations */
#ifdef CG_BENCH_AUDIT_DISCARD
    /* the "audit off" side of tests/bench (meson option bench_audit_discard) */
    leave();
    (void)now;
    (void)policy_seq;
    return 0;
#endif
    bool closed = cg_aq.cfg.fail_closed;
    int64_t i = take_slot();
    if (i < 0) {
        leave();
        atomic_fetch_add(&cg_aq.st_dropped, 1);
        cg_audit__warn("queue full, record dropped");
        return closed ? CG_E_AUDIT : 0;
    }
    enqueue((uint32_t)i, r, now, policy_seq);
    leave();
    return closed && !atomic_load(&cg_aq.available) ? CG_E_AUDIT : 0;
}

int cg_audit_reserve(cg_audit_resv *rv)
{
    if (!enter()) {
        rv->gen = 0;
        cg_audit__warn("no room for an operation's record, operation refused");
        return CG_E_AUDIT;
    }
    uint64_t gen = atomic_load(&cg_aq.gen);
    if (rv->gen && rv->gen == gen) {
        leave(); /* one held already: it serves */
        return 0;
    }
    rv->gen = 0;
    int rc = 0;
    int64_t i;
    if (cg_aq.cfg.fail_closed && !atomic_load(&cg_aq.available)) {
        rc = CG_E_AUDIT; /* SPEC 5: nothing unrecorded happens */
    } else if ((i = take_slot()) < 0) {
        /* audit_fail = open goes on without a place; the record is tried
         * at commit and counted as dropped if there is still no room */
        rc = cg_aq.cfg.fail_closed ? CG_E_AUDIT : 0;
    } else {
        rv->gen = gen;
        rv->slot = (uint32_t)i;
    }
    leave();
    if (rc < 0)
        cg_audit__warn("no room for an operation's record, operation refused");
    return rc;
}

int cg_audit_commit(cg_audit_resv *rv, const cg_audit_rec *r)
{
    if (!rv->gen)
        return cg_audit__submit(r, 0);
    int64_t now = cg_time_now_usec();
    bool in = enter();
    bool held = in && rv->gen == atomic_load(&cg_aq.gen);
    rv->gen = 0;
    if (!held) { /* the writer was restarted since: an ordinary submit */
        if (in)
            leave();
        return cg_audit__submit(r, 0);
    }
#ifdef CG_BENCH_AUDIT_DISCARD
    free_push(rv->slot);
    leave();
    (void)now;
    return 0;
#endif
    enqueue(rv->slot, r, now, 0); /* the held slot: cannot fail */
    leave();
    return 0;
}

void cg_audit_release(cg_audit_resv *rv)
{
    if (!rv->gen)
        return;
    if (enter()) {
        if (rv->gen == atomic_load(&cg_aq.gen))
            free_push(rv->slot);
        leave();
    }
    rv->gen = 0;
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
    out->queue_depth = atomic_load(&cg_aq.depth);
    out->last_commit_usec = atomic_load(&cg_aq.st_last_commit_usec);
}

