/* store/audit_impl.h — the inside of the audit log, shared by the record
 * queue (audit_queue.c), the refusal limiter (audit_refused.c) and the
 * writer thread (audit.c) only: the fixed-size slot a record is copied
 * into, and the state of the queue and the writer. */
#ifndef CG_AUDIT_IMPL_H
#define CG_AUDIT_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/cg_util.h"
#include "store/audit.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"

/* The string fields of a record, in the order they fill a slot's arena. */
enum {
    F_TXID, F_REQUEST_ID, F_LISTENER, F_CLIENT, F_PRINCIPAL, F_METHOD,
    F_TLS_VERSION, F_TLS_CIPHER, F_SERVICE, F_OPERATION, F_DECISION, F_RESULT,
    F_CONTENT_SHA256, F_KEY_ID, F_VALIDATION, F_NODE, F_ORIGINATOR, F_ORIGIN_TXID,
    F_RESOURCE, F_REASON, NF
};
#define SLOT_ARENA 2048

/* A record copied into fixed storage: strings at off[f] in buf, or
 * CG_AUDIT_NO_STR for a null one. */
#define CG_AUDIT_NO_STR 0xffffu
typedef struct slot {
    int64_t usec;            /* submit time */
    int64_t rule_id, bytes_in, bytes_out;
    int64_t policy_seq;      /* > 0: a policy_log row */
    uint64_t conn_id;
    uint16_t off[NF];
    char buf[SLOT_ARENA];
} slot;

/* Copies r into s (strings cut to their caps with a marker). */
void cg_audit__slot_fill(slot *s, const cg_audit_rec *r, int64_t usec, int64_t policy_seq);
/* A record whose strings point into s. */
void cg_audit__slot_rec(const slot *s, cg_audit_rec *r);

#define BATCH_MAX 1000

/* One place of the ready ring: the slot published at position pos holds
 * seq = pos + 1 once the slot is filled. */
typedef struct ring_cell {
    _Atomic uint64_t seq;
    _Atomic uint32_t slot;
} ring_cell;

/* The queue and the writer: one per process (defined in audit_queue.c).
 *
 * No lock on the submit path. A producer takes a free slot from a
 * lock-free stack (LIFO, so only as many slots as the queue was ever deep
 * are touched), fills it, and publishes its index at the next position of
 * the ready ring (one fetch-and-add); the writer alone reads the ring in
 * order and gives the slots back after their commit. A slot is the whole
 * bound: a held place (cg_audit_reserve) is a slot taken and not yet
 * published, so the ring never holds more than queue_capacity entries. */
typedef struct cg_audit_state {
    pthread_mutex_t mu;             /* start and stop only */
    pthread_t thread;
    cg_audit_config cfg;
    char db_path[4096];
    char node[CG_AUDIT_NODE_MAX + 1]; /* "" when none is configured */
    EVP_PKEY *key;
    int lock_fd;
    slot *slots;
    _Atomic uint32_t *free_next;    /* the free stack's links: slot index + 1, 0 ends */
    _Atomic uint64_t free_top;      /* tag << 32 | (top slot index + 1); 0 in the low half: empty */
    ring_cell *ring;
    _Atomic uint64_t ring_tail;     /* next position to publish */
    uint64_t ring_head;             /* writer only: next position to read */
    _Atomic uint64_t depth;         /* published and not yet committed */
    _Atomic uint64_t gen;           /* this run of the writer (reservations) */
    _Atomic int users;              /* producers inside the queue (stop waits for 0) */
    atomic_bool started, stop;
    _Atomic uint32_t wake_seq;      /* the writer's futex word */
    atomic_bool sleeping;           /* the writer waits on wake_seq */
    _Atomic uint64_t full_since_ms; /* queue full since (0: not full) */
    cg_afile file;                  /* writer only */
    bool file_open;
    int64_t last_usec;              /* writer only: time is monotonic */
    uint64_t since_ckpt;            /* writer only */
    uint64_t last_ckpt_ms;          /* writer only */
    uint64_t last_ckpt_log_ms;      /* writer only */
    bool log_pending, log_final;    /* writer only: a checkpoint to log */
    uint64_t log_seq;
    char log_hex[2 * CG_AUDIT_HASH_LEN + 1];
    atomic_bool available, failing, rotate;
    _Atomic int64_t policy_submitted;
    _Atomic uint64_t st_queued, st_committed, st_dropped, st_failures, st_checkpoints,
        st_last_commit_usec;
    _Atomic uint64_t warn_ms;
} cg_audit_state;
extern cg_audit_state cg_aq;

/* The queue's memory for capacity slots (writer start). 0 or CG_E_NOMEM. */
int cg_audit__queue_init(size_t capacity) __attribute__((warn_unused_result));
/* Writer stop, once no producer is inside: frees it. */
void cg_audit__queue_free(void);
/* Writer: the slot indices of up to max published records from the head
 * of the ring, in order; how many. */
size_t cg_audit__peek(uint32_t *idx, size_t max);
/* Writer: the first n records peeked are committed; their slots are free. */
void cg_audit__consumed(const uint32_t *idx, size_t n);
/* Writer: sleeps until depth reaches want, stop or rotate is asked, a
 * producer wakes it, or ms pass. */
void cg_audit__wait(uint64_t want, long ms);
/* Wakes the writer (stop, rotate). */
void cg_audit__wake(void);

/* cg_error, at most once a second, with the drop and failure counts. */
void cg_audit__warn(const char *what);
/* Queues r (policy_seq > 0: a policy_log row); cg_audit_submit's return. */
int cg_audit__submit(const cg_audit_rec *r, int64_t policy_seq)
    __attribute__((warn_unused_result));

/* The refusal limiter (audit_refused.c). Writer, about once a second and
 * at stop (all): records what the limiter still holds back. */
void cg_audit__refused_flush(bool all);
/* Writer start: the limiter forgets everything. 0 or CG_E_NOMEM. */
int cg_audit__refused_reset(void) __attribute__((warn_unused_result));

#endif
