/* store/audit_rows.h — reading the records of an audit database in seq
 * order, whatever form they are stored in: the rows of canon text that
 * files before schema 3 hold, then the blocks of the compact form
 * (audit_bin.h) that follow them. Each record comes out as its canon (made
 * again from the compact form: the same bytes the chain hashed) and its
 * stored hash. Used by verify, show, export, follow and backup. */
#ifndef CG_AUDIT_ROWS_H
#define CG_AUDIT_ROWS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/audit_canon.h"
#include "common/cg_util.h"

/* The columns of a block's row as stored: readers skip blocks by them
 * (last_seq against from, the times against since and until) and number
 * a block's records from first_seq, so verify holds each against the
 * records the block gives. A time column that is not text of at most
 * CG_TIME_LEN - 1 bytes is kept as "" (it matches no record's time). */
typedef struct cg_ablock {
    int64_t last_seq, first_seq;
    char first_time[CG_TIME_LEN], last_time[CG_TIME_LEN];
} cg_ablock;

typedef struct cg_arow {
    uint64_t seq;          /* its place: the row's seq, or its block's first seq + index */
    const char *canon;     /* NUL-terminated; NULL when the stored record cannot be read */
    size_t canon_len;
    const uint8_t *hash;   /* the stored hash; NULL when it is not 32 bytes */
    const cg_ablock *block; /* the block it is stored in; NULL for a row */
    /* the first record given from its block; the last entry of its block */
    bool block_first, block_last;
    /* rows: the search columns stored beside the canon (NULL in blocks,
     * which have none) */
    const char *time, *txid, *principal, *decision;
} cg_arow;

typedef struct cg_arows cg_arows;

/* Reads db's records with seq >= from (1: all). since/until (NULL: none;
 * RFC 3339 as the canon has it) let whole blocks outside the range be
 * skipped; the caller still filters each record. 0 or CG_E_DB/NOMEM. */
int cg_arows_open(sqlite3 *db, uint64_t from, const char *since, const char *until,
                  cg_arows **out) __attribute__((warn_unused_result));
/* 1 and the next record (valid until the next call), 0 at the end,
 * CG_E_DB when the database cannot be read. A block whose data is cut
 * gives its readable records, then one with canon NULL. */
int cg_arows_next(cg_arows *it, cg_arow *row) __attribute__((warn_unused_result));
/* The seq written inside the record after the one last returned (0: none
 * or unreadable), for naming a reordering. */
uint64_t cg_arows_peek_seq(cg_arows *it);
void cg_arows_close(cg_arows *it);

#endif
