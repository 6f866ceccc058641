/* audit.h — the non-repudiation log (SPEC section 5): workers submit
 * records to a bounded queue; one writer thread owns the audit database,
 * hash-chains records, commits them in batches and signs checkpoints.
 * cg_audit_submit never blocks on disk. */
#ifndef CG_AUDIT_H
#define CG_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One record as a caller fills it. Strings may be NULL (null in canon);
 * numbers use -1 for null. The record is copied on submit. */
typedef struct cg_audit_rec {
    const char *txid;        /* SID.n for IMAP, request id for HTTP */
    const char *request_id;  /* client's X-Request-Id */
    uint64_t conn_id;        /* 0: null */
    const char *listener;
    const char *client;      /* "addr:port" */
    const char *principal;
    const char *method;      /* cert | psk | address | login | digest | saml */
    const char *tls_version;
    const char *tls_cipher;
    const char *service;     /* imap | http | tls | policy | gateway */
    const char *operation;   /* SELECT, GET, handshake, auth, refused, ... */
    const char *resource;
    const char *decision;    /* allow | deny: what the ACL decided; error:
                              * refused or failed otherwise (reason says) */
    int64_t rule_id;         /* -1: null */
    const char *result;      /* OK/NO/BAD, "200", "refused" ... */
    int64_t bytes_in;        /* -1: null */
    int64_t bytes_out;       /* -1: null */
    const char *content_sha256;
    const char *key_id;
    const char *validation;
    const char *reason;
    /* Set on the records of several-node and remote setups; a null one is
     * left out of the canon, so records written before these existed keep
     * their exact canon and hash. */
    const char *node;        /* the node_id of the gateway that wrote it
                              * (the writer fills it in, see node_id) */
    const char *originator;  /* "user@DOMAIN" a peer server acts for */
    const char *origin_txid; /* the originating gateway's transaction id */
} cg_audit_rec;

/* Longest node id: a host name's length. */
#define CG_AUDIT_NODE_MAX 64

/* Initialises every field to null. */
void cg_audit_rec_init(cg_audit_rec *r);

typedef struct cg_audit_config {
    const char *db_path;
    const char *key_path;            /* Ed25519 or ECDSA P-256 PEM */
    bool fail_closed;
    unsigned checkpoint_records;     /* default 1000 */
    unsigned checkpoint_seconds;     /* default 5 */
    size_t queue_capacity;           /* records; default 65536 */
    unsigned queue_full_ms;          /* fail_closed: a queue full this long
                                        makes the log unavailable; default 1000 */
    const char *node_id;             /* written into every record and checkpoint;
                                        NULL: none (the records of one node) */
} cg_audit_config;

/* Whether s may be a node id: 1 to CG_AUDIT_NODE_MAX characters of
 * [A-Za-z0-9._-] (a host name fits), so it needs no escaping anywhere. */
bool cg_audit_node_ok(const char *s);

/* Starts the writer thread (opens/creates the database, resumes the
 * chain). Takes an exclusive lock on "<db_path>.lock" (flock, holding the
 * pid) for as long as it runs: only the running gateway writes the file. */
int cg_audit_start(const cg_audit_config *cfg, const char **error_r)
    __attribute__((warn_unused_result));
/* Commits everything queued, writes a final checkpoint, joins. */
void cg_audit_stop(void);

/* Queues a copy of r (strings cut to fixed caps with a "...[truncated]"
 * marker). Never waits on disk. Returns 0, or CG_E_AUDIT when fail_closed
 * is set and either the queue is full (the record is dropped) or the log
 * is unavailable (the record is kept, committed once writing works): the
 * caller refuses the operation. With audit_fail = open a full queue drops
 * and counts. Also CG_E_AUDIT when the writer is not running. */
int cg_audit_submit(const cg_audit_rec *r) __attribute__((warn_unused_result));

/* A place in the queue held for the record of one operation, taken when
 * the operation is decided (SPEC 5: no record, no operation). Zero it
 * before first use; gen 0 means none is held. */
typedef struct cg_audit_resv {
    uint64_t gen;
    uint32_t slot;
} cg_audit_resv;

/* Holds a free slot for a record still to come (one already held by rv
 * serves again). 0, or CG_E_AUDIT when the operation must be refused:
 * the writer is not running, or with audit_fail = closed the log is
 * unavailable or the queue has no free slot (held ones count as taken).
 * With audit_fail = open a full queue gives 0 and holds nothing. */
int cg_audit_reserve(cg_audit_resv *rv) __attribute__((warn_unused_result));
/* Queues a copy of r. With a place held by rv this cannot fail and
 * returns 0 (the place is used up); without one it is cg_audit_submit. */
int cg_audit_commit(cg_audit_resv *rv, const cg_audit_rec *r)
    __attribute__((warn_unused_result));
/* Gives back a place that no record will use (the session ends). */
void cg_audit_release(cg_audit_resv *rv);

/* For refused connections and failed handshakes: at most one record per
 * client address (r->client without its port; an IPv6 /64 is one address,
 * as in every per-address limit, common/cg_addrtab.h) per second;
 * refusals in between are counted and the next record says so in its
 * reason, e.g. "tls handshake failed (x37)". A bounded table; beyond 1000
 * new addresses a second (or a full table), one summary record a second.
 * Same return as cg_audit_submit. */
int cg_audit_refused(const cg_audit_rec *r) __attribute__((warn_unused_result));

struct cg_pstore;
/* Copies policy_log rows not yet in the chain (SPEC 5): one record per
 * row (service "policy", operation = the row's operation, resource =
 * detail, principal = actor, txid "policy.<seq>", reason "policy_log seq
 * N at TIME"). The position is kept in the audit database's meta, updated
 * in the transaction that commits the records, so a row is copied exactly
 * once across restarts. Call from a thread that may block briefly (the
 * policy watcher), not a worker loop. Returns 0 or a negative code. */
int cg_audit_import_policy_log(struct cg_pstore *ps, const char **error_r)
    __attribute__((warn_unused_result));

/* False while records cannot be committed and fail_closed is set: new
 * operations are refused until writing works again. Cheap (atomic). */
bool cg_audit_available(void);

/* Rotation (SIGUSR1 in the gateway): seal the current file with a final
 * checkpoint, rename it "<db>.<first_seq>-<last_seq>" and continue in a new
 * "<db>" whose first record chains to it (see audit_file.h). Asynchronous;
 * only sets a flag, so a signal handler may call it. */
void cg_audit_request_rotate(void);

/* Statistics for /metrics. */
typedef struct cg_audit_stats {
    uint64_t queued, committed, dropped, failures, checkpoints;
    uint64_t queue_depth;
    uint64_t last_commit_usec; /* duration of the last batch commit */
} cg_audit_stats;
void cg_audit_get_stats(cg_audit_stats *out);

/* Internal, for audit_import.c: submit carrying the policy_log seq, and
 * the highest seq submitted (or committed at start). */
int cg_audit__submit_policy(const cg_audit_rec *r, int64_t policy_seq)
    __attribute__((warn_unused_result));
int64_t cg_audit__policy_seq(void);

#endif
