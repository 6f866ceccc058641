/* audit.c — the audit writer (SPEC section 5): a bounded queue of
 * fixed-size slots that workers fill without touching the disk, and one
 * thread that owns the audit database, chains and commits records in
 * batches, signs checkpoints, fails closed when it cannot write, rotates
 * on request, and coalesces floods of refused connections. */
#include "store/audit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"

/* ---- slots: a record copied into fixed storage ------------------------- */

enum {
    F_TXID, F_REQUEST_ID, F_LISTENER, F_CLIENT, F_PRINCIPAL, F_METHOD,
    F_TLS_VERSION, F_TLS_CIPHER, F_SERVICE, F_OPERATION, F_DECISION, F_RESULT,
    F_CONTENT_SHA256, F_KEY_ID, F_VALIDATION, F_RESOURCE, F_REASON, NF
};
#define REC_OFF(f) offsetof(cg_audit_rec, f)
static const size_t rec_off[NF] = {
    REC_OFF(txid), REC_OFF(request_id), REC_OFF(listener), REC_OFF(client),
    REC_OFF(principal), REC_OFF(method), REC_OFF(tls_version), REC_OFF(tls_cipher),
    REC_OFF(service), REC_OFF(operation), REC_OFF(decision), REC_OFF(result),
    REC_OFF(content_sha256), REC_OFF(key_id), REC_OFF(validation), REC_OFF(resource),
    REC_OFF(reason),
};
/* Per-field caps, including the terminator. Long free text (resource,
 * reason) last, so the short identifying fields always fit the arena. */
static const uint16_t field_cap[NF] = {
    128, 128, 64, 64, 256, 16, 16, 64, 16, 64, 16, 32, 72, 128, 64, 1024, 512,
};
#define SLOT_ARENA 2048
#define NO_STR 0xffffu
static const char trunc_mark[] = "...[truncated]";

typedef struct slot {
    int64_t usec;            /* submit time */
    int64_t rule_id, bytes_in, bytes_out;
    int64_t policy_seq;      /* > 0: a policy_log row */
    uint64_t conn_id;
    uint16_t off[NF];
    char buf[SLOT_ARENA];
} slot;

/* Copies src into the arena, cut (at a UTF-8 boundary, with a marker) to
 * the field's cap and the arena's room: never overflows. */
static void slot_put(slot *s, int f, const char *src, size_t *used)
{
    if (!src) {
        s->off[f] = NO_STR;
        return;
    }
    size_t room = SLOT_ARENA - *used;
    size_t cap = field_cap[f] < room ? field_cap[f] : room;
    if (cap == 0) {
        s->off[f] = NO_STR;
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

static void slot_fill(slot *s, const cg_audit_rec *r, int64_t usec, int64_t policy_seq)
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

static void slot_rec(const slot *s, cg_audit_rec *r)
{
    cg_audit_rec_init(r);
    r->rule_id = s->rule_id;
    r->bytes_in = s->bytes_in;
    r->bytes_out = s->bytes_out;
    r->conn_id = s->conn_id;
    for (int f = 0; f < NF; f++)
        *(const char **)((char *)r + rec_off[f]) =
            s->off[f] == NO_STR ? NULL : s->buf + s->off[f];
}

void cg_audit_rec_init(cg_audit_rec *r)
{
    memset(r, 0, sizeof *r);
    r->rule_id = -1;
    r->bytes_in = -1;
    r->bytes_out = -1;
}

/* ---- state ---------------------------------------------------------------- */

#define BATCH_MAX 1000
#define RETRY_MS 500
#define STOP_RETRY_MS 5000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    cg_audit_config cfg;
    char db_path[4096];
    EVP_PKEY *key;
    int lock_fd;
    slot *slots;
    uint64_t head, tail;            /* tail - head = depth; under mu */
    uint64_t reserved;              /* slots promised to cg_audit_reserve; under mu */
    uint64_t gen;                   /* this run of the writer (reservations); under mu */
    uint64_t full_since_ms;         /* queue full since (0: not full) */
    bool commit_failing;            /* writer only, mirrored in failing */
    cg_afile file;                  /* writer only */
    bool file_open;
    int64_t last_usec;              /* writer only: time is monotonic */
    uint64_t since_ckpt;            /* writer only */
    uint64_t last_ckpt_ms;          /* writer only */
    uint64_t last_ckpt_log_ms;      /* writer only */
    bool log_pending, log_final;    /* writer only: a checkpoint to log */
    uint64_t log_seq;
    char log_hex[2 * CG_AUDIT_HASH_LEN + 1];
    char tcache_prefix[CG_TIME_LEN];
    int64_t tcache_sec;
} A = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .lock_fd = -1 };

static atomic_bool available_flag, failing_flag, rotate_flag;
static _Atomic int64_t policy_submitted;
static _Atomic uint64_t st_queued, st_committed, st_dropped, st_failures, st_checkpoints,
    st_depth, st_last_commit_usec;
static _Atomic uint64_t warn_ms;

static void warn_limited(const char *what)
{
    uint64_t now = cg_mono_ms(), last = atomic_load(&warn_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&warn_ms, &last, now))
        cg_error("audit: %s (dropped %llu, failures %llu)", what,
                 (unsigned long long)atomic_load(&st_dropped),
                 (unsigned long long)atomic_load(&st_failures));
}

/* ---- submit ----------------------------------------------------------- */

/* Under mu: the queue has no free slot (promised ones count as taken).
 * Records when it became full; with fail_closed, a queue full for
 * queue_full_ms makes the log unavailable. */
static bool queue_full_locked(void)
{
    if (A.tail - A.head + A.reserved < A.cfg.queue_capacity)
        return false;
    uint64_t ms = cg_mono_ms();
    if (!A.full_since_ms)
        A.full_since_ms = ms;
    if (A.cfg.fail_closed && ms - A.full_since_ms >= A.cfg.queue_full_ms)
        atomic_store(&available_flag, false);
    return true;
}

/* Under mu, with a free slot: queues r; unlocks. */
static void enqueue_unlock(const cg_audit_rec *r, int64_t now, int64_t policy_seq)
{
    uint64_t depth = A.tail - A.head;
    A.full_since_ms = 0;
    slot_fill(&A.slots[A.tail % A.cfg.queue_capacity], r, now, policy_seq);
    A.tail++;
    if (policy_seq > atomic_load(&policy_submitted))
        atomic_store(&policy_submitted, policy_seq);
    atomic_store(&st_depth, depth + 1);
    bool wake = depth == 0 || depth + 1 == BATCH_MAX;
    pthread_mutex_unlock(&A.mu);
    if (wake)
        pthread_cond_signal(&A.cv);
    atomic_fetch_add(&st_queued, 1);
}

static int submit(const cg_audit_rec *r, int64_t policy_seq)
{
    if (!r)
        return CG_E_INVAL;
    int64_t now = cg_time_now_usec();
    pthread_mutex_lock(&A.mu);
    if (!A.started) {
        pthread_mutex_unlock(&A.mu);
        return CG_E_AUDIT; /* no log, no operations */
    }
#ifdef CG_BENCH_AUDIT_DISCARD
    /* the "audit off" side of tests/bench (meson option bench_audit_discard) */
    pthread_mutex_unlock(&A.mu);
    (void)now;
    (void)policy_seq;
    return 0;
#endif
    bool closed = A.cfg.fail_closed;
    if (queue_full_locked()) {
        pthread_mutex_unlock(&A.mu);
        atomic_fetch_add(&st_dropped, 1);
        warn_limited("queue full, record dropped");
        return closed ? CG_E_AUDIT : 0;
    }
    enqueue_unlock(r, now, policy_seq);
    return closed && !atomic_load(&available_flag) ? CG_E_AUDIT : 0;
}

int cg_audit_reserve(cg_audit_resv *rv)
{
    pthread_mutex_lock(&A.mu);
    if (rv->gen && rv->gen == A.gen && A.started) {
        pthread_mutex_unlock(&A.mu); /* one held already: it serves */
        return 0;
    }
    rv->gen = 0;
    int rc = 0;
    if (!A.started) {
        rc = CG_E_AUDIT;
    } else if (A.cfg.fail_closed && !atomic_load(&available_flag)) {
        rc = CG_E_AUDIT; /* SPEC 5: nothing unrecorded happens */
    } else if (queue_full_locked()) {
        /* audit_fail = open goes on without a place; the record is tried
         * at commit and counted as dropped if there is still no room */
        rc = A.cfg.fail_closed ? CG_E_AUDIT : 0;
    } else {
        A.reserved++;
        rv->gen = A.gen;
    }
    pthread_mutex_unlock(&A.mu);
    if (rc < 0)
        warn_limited("no room for an operation's record, operation refused");
    return rc;
}

int cg_audit_commit(cg_audit_resv *rv, const cg_audit_rec *r)
{
    if (!rv->gen)
        return submit(r, 0);
    int64_t now = cg_time_now_usec();
    pthread_mutex_lock(&A.mu);
    bool held = rv->gen == A.gen && A.started;
    rv->gen = 0;
    if (!held) { /* the writer was restarted since: an ordinary submit */
        pthread_mutex_unlock(&A.mu);
        return submit(r, 0);
    }
    A.reserved--;
#ifdef CG_BENCH_AUDIT_DISCARD
    pthread_mutex_unlock(&A.mu);
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
    pthread_mutex_lock(&A.mu);
    if (rv->gen == A.gen && A.started)
        A.reserved--;
    rv->gen = 0;
    pthread_mutex_unlock(&A.mu);
}

int cg_audit_submit(const cg_audit_rec *r) { return submit(r, 0); }

int cg_audit__submit_policy(const cg_audit_rec *r, int64_t policy_seq)
{
    return submit(r, policy_seq);
}

int64_t cg_audit__policy_seq(void) { return atomic_load(&policy_submitted); }

bool cg_audit_available(void) { return atomic_load(&available_flag); }

void cg_audit_request_rotate(void)
{
    /* Async-signal-safe enough for a SIGUSR1 handler that calls it: an
     * atomic store; the writer looks at least every second. */
    atomic_store(&rotate_flag, true);
}

void cg_audit_get_stats(cg_audit_stats *out)
{
    out->queued = atomic_load(&st_queued);
    out->committed = atomic_load(&st_committed);
    out->dropped = atomic_load(&st_dropped);
    out->failures = atomic_load(&st_failures);
    out->checkpoints = atomic_load(&st_checkpoints);
    out->queue_depth = atomic_load(&st_depth);
    out->last_commit_usec = atomic_load(&st_last_commit_usec);
}

/* ---- refused connections: at most one record per address per second ---- */

#define REF_TABLE 256
#define REF_BUDGET 1000 /* distinct-address records per second, then one summary */

typedef struct ref_entry {
    bool used;
    char addr[64];
    int64_t sec;
    uint32_t pending;       /* suppressed since the last record */
    slot last;              /* the latest suppressed one */
} ref_entry;

static struct {
    pthread_mutex_t mu;
    ref_entry tab[REF_TABLE];
    int64_t budget_sec;
    uint32_t budget_used;
    uint32_t overflow;      /* refusals beyond the budget, not yet recorded */
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* "192.0.2.1:443" -> "192.0.2.1", "[2001:db8::1]:443" -> "2001:db8::1". */
static void client_addr(const char *client, char out[64])
{
    if (!client) {
        cg_strlcpy(out, "", 64);
        return;
    }
    if (client[0] == '[') {
        const char *e = strchr(client, ']');
        size_t n = e ? (size_t)(e - client - 1) : strlen(client + 1);
        if (n > 63)
            n = 63;
        memcpy(out, client + 1, n);
        out[n] = '\0';
        return;
    }
    const char *c = strchr(client, ':');
    bool v4 = c && !strchr(c + 1, ':');
    size_t n = v4 ? (size_t)(c - client) : strlen(client);
    if (n > 63)
        n = 63;
    memcpy(out, client, n);
    out[n] = '\0';
}

static int submit_counted(const cg_audit_rec *r, uint32_t count)
{
    if (count <= 1)
        return submit(r, 0);
    cg_audit_rec c = *r;
    char reason[640];
    snprintf(reason, sizeof reason, "%s (x%u)", r->reason ? r->reason : "refused", count);
    c.reason = reason;
    return submit(&c, 0);
}

static int submit_slot_counted(const slot *s, uint32_t count)
{
    cg_audit_rec r;
    slot_rec(s, &r);
    return submit_counted(&r, count);
}

int cg_audit_refused(const cg_audit_rec *r)
{
    char addr[64];
    client_addr(r->client, addr);
    int64_t sec = cg_time_now_usec() / 1000000;
    uint32_t h = 2166136261u;
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    slot *flush = NULL;
    uint32_t flush_count = 0;
    pthread_mutex_lock(&R.mu);
    ref_entry *e = &R.tab[h % REF_TABLE];
    if (e->used && strcmp(e->addr, addr) == 0) {
        if (e->sec == sec) {
            e->pending++;
            slot_fill(&e->last, r, cg_time_now_usec(), 0);
            pthread_mutex_unlock(&R.mu);
            return atomic_load(&available_flag) || !A.cfg.fail_closed ? 0 : CG_E_AUDIT;
        }
        uint32_t count = e->pending + 1;
        e->pending = 0;
        e->sec = sec;
        pthread_mutex_unlock(&R.mu);
        return submit_counted(r, count);
    }
    if (R.budget_sec != sec) {
        R.budget_sec = sec;
        R.budget_used = 0;
    }
    if (R.budget_used >= REF_BUDGET) {
        /* Many addresses at once (an IPv6 sweep): one summary a second. */
        R.overflow++;
        pthread_mutex_unlock(&R.mu);
        return atomic_load(&available_flag) || !A.cfg.fail_closed ? 0 : CG_E_AUDIT;
    }
    R.budget_used++;
    if (e->used && e->pending) {
        flush = malloc(sizeof *flush);
        if (flush) {
            *flush = e->last;
            flush_count = e->pending;
        }
    }
    e->used = true;
    cg_strlcpy(e->addr, addr, sizeof e->addr);
    e->sec = sec;
    e->pending = 0;
    pthread_mutex_unlock(&R.mu);
    if (flush) {
        submit_slot_counted(flush, flush_count);
        free(flush);
    }
    return submit(r, 0);
}

/* Writer, about once a second and at stop (all): records what the
 * table still holds back. */
static void refused_flush(slot *tmp, bool all)
{
    int64_t sec = cg_time_now_usec() / 1000000 + (all ? 1 : 0);
    for (size_t i = 0; i < REF_TABLE; i++) {
        pthread_mutex_lock(&R.mu);
        ref_entry *e = &R.tab[i];
        uint32_t n = 0;
        if (e->used && e->pending && e->sec < sec) {
            *tmp = e->last;
            n = e->pending;
            e->pending = 0;
            e->sec = sec;
        }
        pthread_mutex_unlock(&R.mu);
        if (n)
            submit_slot_counted(tmp, n);
    }
    pthread_mutex_lock(&R.mu);
    uint32_t over = R.budget_sec < sec ? R.overflow : 0;
    if (over)
        R.overflow = 0;
    pthread_mutex_unlock(&R.mu);
    if (over) {
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.service = "gateway";
        r.operation = "refused";
        r.result = "refused";
        r.reason = "connections refused beyond the per-second record budget";
        submit_counted(&r, over + 1);
    }
}

/* ---- writer ------------------------------------------------------------- */

/* RFC 3339 with microseconds; the second's prefix is cached because a
 * batch mostly shares one second. */
static void format_time(int64_t usec, char out[CG_TIME_LEN])
{
    int64_t sec = usec / 1000000;
    if (sec != A.tcache_sec || !A.tcache_prefix[0]) {
        cg_time_rfc3339(sec * 1000000, A.tcache_prefix);
        A.tcache_sec = sec;
    }
    memcpy(out, A.tcache_prefix, CG_TIME_LEN);
    long us = (long)(usec % 1000000);
    for (int i = 25; i >= 20; i--) {
        out[i] = (char)('0' + us % 10);
        us /= 10;
    }
}

static int open_file(const char **error_r)
{
    if (A.file_open)
        return 0;
    int rc = cg_afile_open(&A.file, A.db_path, true, error_r);
    if (rc < 0)
        return rc;
    A.file_open = true;
    if (A.key && cg_afile_register_key(&A.file, A.key) < 0) {
        *error_r = "cannot store the audit public key";
        cg_afile_close(&A.file);
        A.file_open = false;
        return CG_E_DB;
    }
    A.since_ckpt = A.file.last_seq >= A.file.last_ckpt_seq
                       ? A.file.last_seq - A.file.last_ckpt_seq : 0;
    return 0;
}

static bool ckpt_time_due(void)
{
    return A.file_open && A.key && A.file.last_ckpt_seq < A.file.last_seq &&
           cg_mono_ms() - A.last_ckpt_ms >= (uint64_t)A.cfg.checkpoint_seconds * 1000;
}

static int do_checkpoint(bool final)
{
    char t[CG_TIME_LEN];
    cg_time_rfc3339(cg_time_now_usec(), t);
    uint64_t before = A.file.last_ckpt_seq;
    int rc = cg_afile_checkpoint(&A.file, A.key, final, t);
    if (rc == 0 && A.file.last_ckpt_seq != before) {
        atomic_fetch_add(&st_checkpoints, 1);
        A.since_ckpt = 0;
        A.last_ckpt_ms = cg_mono_ms();
        /* A copy of signed positions outside the file (journal, syslog)
         * pins the chain even against someone who rewrites the file and
         * holds the key; at most one line a second. */
        if (final || A.last_ckpt_ms - A.last_ckpt_log_ms >= 1000) {
            cg_hex_encode(A.file.last_hash, CG_AUDIT_HASH_LEN, A.log_hex);
            A.log_seq = A.file.last_ckpt_seq;
            A.log_final = final;
            A.log_pending = true; /* logged once committed */
        }
    }
    return rc;
}

/* One transaction: slots [head, head+n), the checkpoints that fall due,
 * the policy_log position. Nothing of it stays on failure. */
static int commit_batch(uint64_t head, uint64_t n, bool final)
{
    const char *err = NULL;
    if (open_file(&err) < 0) {
        warn_limited(err ? err : "cannot open the audit database");
        return CG_E_DB;
    }
    uint64_t t0 = cg_mono_ms();
    int64_t saved_usec = A.last_usec;
    uint64_t saved_since = A.since_ckpt, saved_ckpts = atomic_load(&st_checkpoints);
    int64_t max_policy = 0;
    int rc = cg_afile_begin(&A.file);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        const slot *s = &A.slots[(head + i) % A.cfg.queue_capacity];
        cg_audit_rec r;
        slot_rec(s, &r);
        if (s->usec > A.last_usec)
            A.last_usec = s->usec;
        char t[CG_TIME_LEN];
        format_time(A.last_usec, t);
        rc = cg_afile_append(&A.file, t, &r);
        if (s->policy_seq > max_policy)
            max_policy = s->policy_seq;
        if (rc == 0 && A.key && ++A.since_ckpt >= A.cfg.checkpoint_records)
            rc = do_checkpoint(false);
    }
    if (rc == 0 && (final || ckpt_time_due()))
        rc = do_checkpoint(final);
    if (rc == 0 && max_policy > A.file.policy_seq)
        rc = cg_afile_set_policy_seq(&A.file, max_policy);
    if (rc == 0)
        rc = cg_afile_commit(&A.file);
    if (rc < 0) {
        /* Reopen on the next try: after SQLITE_FULL or IOERR the handle's
         * state is not worth trusting, and a reopen reloads the chain. */
        cg_warn("audit: commit of %llu records failed: %s", (unsigned long long)n,
                sqlite3_errmsg(A.file.db));
        cg_afile_rollback(&A.file);
        cg_afile_close(&A.file);
        A.file_open = false;
        A.last_usec = saved_usec;
        A.since_ckpt = saved_since;
        A.log_pending = false;
        atomic_store(&st_checkpoints, saved_ckpts);
        return rc;
    }
    atomic_store(&st_last_commit_usec, (cg_mono_ms() - t0) * 1000);
    if (A.log_pending) {
        cg_info("audit: checkpoint%s seq %llu hash %s", A.log_final ? " (final)" : "",
                (unsigned long long)A.log_seq, A.log_hex);
        A.last_ckpt_log_ms = cg_mono_ms();
        A.log_pending = false;
    }
    return 0;
}

static void set_failing(bool failing)
{
    bool was = atomic_exchange(&failing_flag, failing);
    if (failing) {
        atomic_fetch_add(&st_failures, 1);
        if (A.cfg.fail_closed)
            atomic_store(&available_flag, false);
        if (!was)
            cg_error("audit: records cannot be committed to %s; %s", A.db_path,
                     A.cfg.fail_closed ? "refusing new operations (audit_fail = closed)"
                                       : "still serving (audit_fail = open)");
        else
            warn_limited("records still cannot be committed");
    } else if (was) {
        cg_info("audit: writing to %s works again", A.db_path);
    }
}

static void rotate_now(void)
{
    const char *err = NULL;
    if (A.file_open) {
        /* Sign what is there so the seal needs no extra step. */
        if (commit_batch(0, 0, true) < 0)
            cg_warn("audit: cannot sign before rotating; the seal will try again");
    }
    if (A.file_open) {
        cg_afile_close(&A.file);
        A.file_open = false;
    }
    char sealed[4200];
    if (cg_afile_rotate(A.db_path, A.key, sealed, sizeof sealed, &err) < 0)
        cg_error("audit: rotation of %s failed: %s", A.db_path, err ? err : "error");
    if (open_file(&err) < 0)
        cg_error("audit: cannot reopen %s after rotation: %s", A.db_path, err);
}

#define GATHER_MS 5

static struct timespec deadline_in_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
    }
    return ts;
}

static void *writer_main(void *arg)
{
    slot *tmp = malloc(sizeof *tmp);
    uint64_t last_flush = cg_mono_ms(), stop_since = 0;
    bool flushed_at_stop = tmp == NULL; /* no scratch slot: nothing to flush */
    pthread_mutex_lock(&A.mu);
    for (;;) {
        while (A.tail == A.head && !A.stop && !atomic_load(&rotate_flag) &&
               !ckpt_time_due() && cg_mono_ms() - last_flush < 1000) {
            struct timespec ts = deadline_in_ms(200);
            pthread_cond_timedwait(&A.cv, &A.mu, &ts);
        }
        /* Group commit: a batch that is not full gathers for a few more
         * milliseconds (submit wakes the writer again when it fills), so a
         * busy gateway pays one transaction per batch, not per record. */
        if (A.tail != A.head && A.tail - A.head < BATCH_MAX && !A.stop &&
            !atomic_load(&rotate_flag)) {
            struct timespec ts = deadline_in_ms(GATHER_MS);
            pthread_cond_timedwait(&A.cv, &A.mu, &ts);
        }
        uint64_t depth = A.tail - A.head;
        bool stopping = A.stop;
        if (stopping && depth == 0 && flushed_at_stop)
            break;
        uint64_t n = depth < BATCH_MAX ? depth : BATCH_MAX;
        uint64_t head = A.head;
        pthread_mutex_unlock(&A.mu);

        if (tmp && (cg_mono_ms() - last_flush >= 1000 || (stopping && !flushed_at_stop))) {
            refused_flush(tmp, stopping);
            last_flush = cg_mono_ms();
            if (stopping) {
                flushed_at_stop = true;
                pthread_mutex_lock(&A.mu);
                continue; /* take what the flush queued */
            }
        }
        /* Nothing queued and no checkpoint due: no transaction at all. */
        bool work = n > 0 || ckpt_time_due();
        int rc = work ? commit_batch(head, n, false) : 0;
        pthread_mutex_lock(&A.mu);
        if (rc == 0) {
            A.head += n;
            if (A.head == A.tail)
                A.head = A.tail = 0; /* only slots up to the peak depth are ever touched */
            if (work)
                A.full_since_ms = 0;
            atomic_store(&st_depth, A.tail - A.head);
            atomic_fetch_add(&st_committed, n);
            pthread_mutex_unlock(&A.mu);
            if (work) {
                set_failing(false);
                atomic_store(&available_flag, true);
            }
            if (atomic_exchange(&rotate_flag, false))
                rotate_now();
            pthread_mutex_lock(&A.mu);
            continue;
        }
        pthread_mutex_unlock(&A.mu);
        set_failing(true);
        if (stopping) {
            if (!stop_since)
                stop_since = cg_mono_ms();
            if (cg_mono_ms() - stop_since >= STOP_RETRY_MS) {
                pthread_mutex_lock(&A.mu);
                cg_error("audit: giving up at stop: %llu records could not be committed",
                         (unsigned long long)(A.tail - A.head));
                break;
            }
        }
        /* Keep the batch (it stays in the queue) and retry. */
        struct timespec ts = { 0, RETRY_MS * 1000000L };
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&A.mu);
    }
    pthread_mutex_unlock(&A.mu);
    /* The final checkpoint of a clean stop. */
    if (commit_batch(0, 0, true) < 0)
        cg_error("audit: cannot write the final checkpoint");
    if (A.file_open)
        cg_afile_close(&A.file);
    A.file_open = false;
    free(tmp);
    return NULL;
}

int cg_audit_start(const cg_audit_config *cfg, const char **error_r)
{
    static __thread char msg[1600];
    if (A.started) {
        *error_r = "the audit writer is running already";
        return CG_E_INVAL;
    }
    if (!cfg->db_path || !cg_strlcpy(A.db_path, cfg->db_path, sizeof A.db_path)) {
        *error_r = "no audit database path";
        return CG_E_INVAL;
    }
    A.cfg = *cfg;
    A.cfg.db_path = A.db_path;
    if (!A.cfg.checkpoint_records) A.cfg.checkpoint_records = 1000;
    if (!A.cfg.checkpoint_seconds) A.cfg.checkpoint_seconds = 5;
    if (!A.cfg.queue_capacity) A.cfg.queue_capacity = 65536;
    if (!A.cfg.queue_full_ms) A.cfg.queue_full_ms = 1000;
    A.key = NULL;
    const char *err = NULL;
    if (cfg->key_path && cg_audit_key_load_private(cfg->key_path, &A.key, &err) < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s", cfg->key_path, err);
        *error_r = msg;
        return CG_E_CRYPTO;
    }
    if (!A.key)
        cg_warn("audit: no audit_key: checkpoints are not signed");
    long holder = 0;
    int rc = cg_afile_lock(A.db_path, &A.lock_fd, &holder, &err);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s (pid %ld)", A.db_path, err, holder);
        *error_r = msg;
        goto fail;
    }
    rc = open_file(&err);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "%.1024s: %s", A.db_path, err);
        *error_r = msg;
        goto fail;
    }
    A.slots = calloc(A.cfg.queue_capacity, sizeof *A.slots);
    if (!A.slots) {
        *error_r = "out of memory for the audit queue";
        rc = CG_E_NOMEM;
        goto fail;
    }
    A.head = A.tail = 0;
    A.reserved = 0;
    A.gen++; /* reservations of an earlier run are void */
    A.full_since_ms = 0;
    A.stop = false;
    A.last_usec = 0;
    A.last_ckpt_ms = cg_mono_ms();
    A.tcache_prefix[0] = '\0';
    atomic_store(&policy_submitted, A.file.policy_seq);
    /* Counters are per run of the writer (the gateway runs one). */
    atomic_store(&st_queued, 0);
    atomic_store(&st_committed, 0);
    atomic_store(&st_dropped, 0);
    atomic_store(&st_failures, 0);
    atomic_store(&st_checkpoints, 0);
    atomic_store(&st_depth, 0);
    atomic_store(&failing_flag, false);
    atomic_store(&rotate_flag, false);
    atomic_store(&available_flag, true);
    memset(R.tab, 0, sizeof R.tab);
    R.overflow = 0;
    A.started = true;
    if (pthread_create(&A.thread, NULL, writer_main, NULL) != 0) {
        A.started = false;
        *error_r = "cannot start the audit writer thread";
        rc = CG_E_NOMEM;
        goto fail;
    }
    cg_info("audit: writing %s from seq %llu", A.db_path,
            (unsigned long long)(A.file.last_seq + 1));
    return 0;
fail:
    if (A.file_open)
        cg_afile_close(&A.file);
    A.file_open = false;
    free(A.slots);
    A.slots = NULL;
    cg_afile_unlock(A.lock_fd);
    A.lock_fd = -1;
    EVP_PKEY_free(A.key);
    A.key = NULL;
    return rc;
}

void cg_audit_stop(void)
{
    pthread_mutex_lock(&A.mu);
    if (!A.started) {
        pthread_mutex_unlock(&A.mu);
        return;
    }
    A.stop = true;
    pthread_mutex_unlock(&A.mu);
    pthread_cond_signal(&A.cv);
    pthread_join(A.thread, NULL);
    pthread_mutex_lock(&A.mu);
    A.started = false;
    atomic_store(&available_flag, false);
    free(A.slots);
    A.slots = NULL;
    A.head = A.tail = 0;
    pthread_mutex_unlock(&A.mu);
    cg_afile_unlock(A.lock_fd);
    A.lock_fd = -1;
    EVP_PKEY_free(A.key);
    A.key = NULL;
}
