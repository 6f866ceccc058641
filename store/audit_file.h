/* audit_file.h — one audit database file: schema, chain state, appending
 * records and checkpoints, the gateway's lock, and rotation (sealing a file
 * and starting the next one chained to it). Used by the writer thread and
 * by `cpmgatectl audit rotate` on a file no gateway holds.
 *
 * Rotation: "<db>" is sealed (final checkpoint, meta sealed=1, rollback
 * journal) and renamed to "<db>.<first_seq>-<last_seq>"; a new "<db>" is
 * built as "<db>.new" whose meta holds first_seq = last_seq + 1, prev_hash
 * = the sealed file's last hash and prev_file = the sealed file's name, and
 * whose first record (service gateway, operation rotate) chains to it. A
 * crash at any step is finished on the next open. */
#ifndef CG_AUDIT_FILE_H
#define CG_AUDIT_FILE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cg_util.h"
#include "store/audit.h"
#include "store/audit_bin.h"
#include "store/audit_canon.h"

/* How records are stored: in blocks of the compact form (audit_bin.h;
 * schema 3 on, what the gateway writes), or one row of canon text each
 * (what versions before schema 3 wrote; kept to test that such files
 * still verify). The hash is the same either way. */
enum { CG_AFILE_BLOCKS = 0, CG_AFILE_ROWS = 1 };

typedef struct cg_afile {
    sqlite3 *db;
    char path[4096];
    int form;                             /* CG_AFILE_BLOCKS or CG_AFILE_ROWS */
    sqlite3_stmt *ins_rec, *ins_blk, *ins_ckpt, *set_meta, *begin_st, *commit_st;
    /* the block being filled (stored at CG_AUDIT_BLOCK_RECORDS or _BYTES,
     * and at commit): entries, count, first seq, first and last time */
    uint8_t *blk;
    EVP_MD_CTX *md;                       /* the chain's hashing, reused */
    size_t blk_len;
    unsigned blk_n;
    uint64_t blk_first;
    char blk_time0[CG_TIME_LEN], blk_time1[CG_TIME_LEN];
    int64_t tcache_sec;                   /* the second tcache holds */
    char tcache[CG_TIME_LEN];
    uint64_t first_seq, last_seq, last_ckpt_seq;
    uint8_t genesis[CG_AUDIT_HASH_LEN];   /* prev_hash of first_seq */
    uint8_t last_hash[CG_AUDIT_HASH_LEN];
    int64_t policy_seq;                   /* last policy_log row copied */
    bool sealed;
    char node[CG_AUDIT_NODE_MAX + 1];     /* signed into checkpoints; "" none */
    char canon[CG_AUDIT_CANON_MAX];       /* scratch for append */
    uint8_t bin[CG_AUDIT_BIN_MAX];        /* scratch for append */
} cg_afile;

/* Opens path read-write (create: make it if missing, mode 0600), finishing
 * an interrupted rotation first, upgrades the schema of a file written by
 * an older version, and loads the chain state. node (NULL: none) is the
 * node id its checkpoints (and the record of a rotation) carry. */
int cg_afile_open(cg_afile *f, const char *path, const char *node, bool create,
                  const char **error_r)
    __attribute__((warn_unused_result));
void cg_afile_close(cg_afile *f);

/* Re-reads the chain state (after a rollback). */
int cg_afile_load_state(cg_afile *f, const char **error_r) __attribute__((warn_unused_result));

int cg_afile_begin(cg_afile *f) __attribute__((warn_unused_result));
int cg_afile_commit(cg_afile *f) __attribute__((warn_unused_result));
void cg_afile_rollback(cg_afile *f);

/* Inside a transaction: appends r as seq last_seq+1 at usec (its time in
 * the canon, RFC 3339 with microseconds), chaining to last_hash; updates
 * the in-memory state (reload it on rollback). In blocks, the record is
 * stored at the latest by cg_afile_commit. */
int cg_afile_append(cg_afile *f, int64_t usec, const cg_audit_rec *r)
    __attribute__((warn_unused_result));
/* Inside a transaction: signs a checkpoint over last_seq unless one
 * already covers it. */
int cg_afile_checkpoint(cg_afile *f, EVP_PKEY *key, bool final, const char *time)
    __attribute__((warn_unused_result));
/* Inside a transaction: remembers the policy_log position. */
int cg_afile_set_policy_seq(cg_afile *f, int64_t seq) __attribute__((warn_unused_result));
/* Stores the public key (by fingerprint) for self-contained verification. */
int cg_afile_register_key(cg_afile *f, EVP_PKEY *key) __attribute__((warn_unused_result));

/* The last record of an audit database, rows or blocks: 1 and its seq and
 * hash, 0 when it has none, CG_E_DB when it cannot be read. */
int cg_afile_last(sqlite3 *db, uint64_t *seq, uint8_t hash[CG_AUDIT_HASH_LEN])
    __attribute__((warn_unused_result));

/* The meta table: value into out; CG_E_NOTFOUND when absent. */
int cg_afile_meta_get(sqlite3 *db, const char *key, char *out, size_t cap)
    __attribute__((warn_unused_result));

/* Seals the (closed) file at path and starts its successor; key signs the
 * final checkpoint (NULL allowed when a checkpoint already covers the last
 * record); node (NULL: none) goes into that checkpoint and the rotation
 * record. sealed_r: the sealed file's path. */
int cg_afile_rotate(const char *path, EVP_PKEY *key, const char *node, char *sealed_r,
                    size_t cap, const char **error_r) __attribute__((warn_unused_result));

/* The gateway's exclusive hold on "<path>.lock" (flock, holding the pid).
 * 0 and *fd_r on success; CG_E_BUSY and *holder_r when another process
 * holds it. */
int cg_afile_lock(const char *path, int *fd_r, long *holder_r, const char **error_r)
    __attribute__((warn_unused_result));
void cg_afile_unlock(int fd);

#endif
