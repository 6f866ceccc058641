/* store/audit_bin.h — the compact form audit records are stored in since
 * audit schema 3: a record as bytes (varints and length-prefixed strings),
 * and blocks of them that the writer stores as one row. What is hashed and
 * signed does not change: the chain hashes the canon JSON that the record
 * gives (audit_canon.h), so readers rebuild the canon from these bytes and
 * `export` prints exactly what it printed before.
 *
 * A record: varint seq, varint usec, varint conn_id, zigzag varints
 * rule_id, bytes_in, bytes_out, then the twenty string fields of
 * cg_audit_rec in a fixed order, each varint 0 (null) or length + 1 and
 * its bytes. A block's data: for each record, varint length, the record,
 * and its 32-byte chain hash. */
#ifndef CG_AUDIT_BIN_H
#define CG_AUDIT_BIN_H

#include <stddef.h>
#include <stdint.h>

#include "store/audit.h"
#include "store/audit_canon.h"

/* Longest encoded record (the writer's slots hold at most 2 KiB of text). */
#define CG_AUDIT_BIN_MAX 8192
/* A block is stored when it holds this many records or bytes. */
#define CG_AUDIT_BLOCK_RECORDS 256
#define CG_AUDIT_BLOCK_BYTES 32768
/* One entry of a block at most: length, record, hash. */
#define CG_AUDIT_ENTRY_MAX (10 + CG_AUDIT_BIN_MAX + CG_AUDIT_HASH_LEN)

/* Encodes the record seq at usec into out. Returns its length, or
 * CG_E_LIMIT when it does not fit cap. */
int cg_audit_bin_encode(uint8_t *out, size_t cap, uint64_t seq, int64_t usec,
                        const cg_audit_rec *r) __attribute__((warn_unused_result));

/* A decoded record; its strings point into buf. */
typedef struct cg_audit_bin_rec {
    uint64_t seq;
    int64_t usec;
    cg_audit_rec rec;
    char buf[CG_AUDIT_BIN_MAX];
} cg_audit_bin_rec;

/* Strict decode of exactly len bytes (no bytes left over, no NUL inside a
 * string). 0 or CG_E_PARSE. */
int cg_audit_bin_decode(const uint8_t *in, size_t len, cg_audit_bin_rec *out)
    __attribute__((warn_unused_result));

/* The seq written in an encoded record (its first varint), without
 * decoding the rest: 0 when even that cannot be read. */
uint64_t cg_audit_bin_seq(const uint8_t *rec, size_t len);

/* Appends one entry (length, record, hash) at out; returns its length or
 * CG_E_LIMIT. */
int cg_audit_block_put(uint8_t *out, size_t cap, const uint8_t *rec, size_t len,
                       const uint8_t hash[CG_AUDIT_HASH_LEN]) __attribute__((warn_unused_result));

/* Reads the block entries of [p, end) one by one. */
typedef struct cg_audit_block_cur {
    const uint8_t *p, *end;
} cg_audit_block_cur;
/* 1 and the next entry's record and hash, 0 at the end, CG_E_PARSE when
 * the data is cut or malformed. */
int cg_audit_block_next(cg_audit_block_cur *c, const uint8_t **rec, size_t *len,
                        const uint8_t **hash) __attribute__((warn_unused_result));

#endif
