/* store/audit_impl.h — the inside of the audit log, shared by the record
 * queue (audit_queue.c), the refusal limiter (audit_refused.c) and the
 * writer thread (audit.c) only: the fixed-size slot a record is copied
 * into, and the state of the queue and the writer. */
#ifndef CG_AUDIT_IMPL_H
#define CG_AUDIT_IMPL_H

#include <pthread.h>
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

/* The queue and the writer: one per process (defined in audit_queue.c). */
typedef struct cg_audit_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    cg_audit_config cfg;
    char db_path[4096];
    char node[CG_AUDIT_NODE_MAX + 1]; /* "" when none is configured */
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
    /* read without mu */
    atomic_bool available, failing, rotate;
    _Atomic int64_t policy_submitted;
    _Atomic uint64_t st_queued, st_committed, st_dropped, st_failures, st_checkpoints,
        st_depth, st_last_commit_usec;
    _Atomic uint64_t warn_ms;
} cg_audit_state;
extern cg_audit_state cg_aq;

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
