/* store/audit_rows.c — one reader over both forms of stored records (see
 * audit_rows.h): a statement over the rows, then one over the blocks whose
 * entries are decoded and turned back into canon text one at a time. */
#include "store/audit_rows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/audit_bin.h"

struct cg_arows {
    sqlite3 *db;
    sqlite3_stmt *rows, *blocks;
    bool in_blocks;
    /* the current block: its entries, the place of the next one */
    cg_audit_block_cur cur;
    cg_ablock blk;         /* its row's columns */
    uint64_t next_seq;
    bool block_bad;        /* its data broke off: one unreadable record, then the next block */
    bool block_new;        /* no record of it given yet */
    uint64_t from;
    cg_audit_bin_rec bin;  /* the entry decoded */
    char canon[CG_AUDIT_CANON_MAX];
};

int cg_arows_open(sqlite3 *db, uint64_t from, const char *since, const char *until,
                  cg_arows **out)
{
    cg_arows *it = calloc(1, sizeof *it);
    if (!it)
        return CG_E_NOMEM;
    it->db = db;
    it->from = from;
    if (sqlite3_prepare_v2(db, "SELECT seq, canon, hash, time, txid, principal, decision "
                           "FROM records WHERE seq >= ?1 ORDER BY seq", -1, &it->rows,
                           NULL) != SQLITE_OK) {
        free(it);
        return CG_E_DB;
    }
    sqlite3_bind_int64(it->rows, 1, (sqlite3_int64)from);
    /* a file of schema 2 or before has no blocks: only rows */
    if (sqlite3_prepare_v2(db, "SELECT first_seq, data, last_seq, first_time, last_time "
                           "FROM blocks WHERE last_seq >= ?1"
                           " AND (?2 IS NULL OR last_time >= ?2)"
                           " AND (?3 IS NULL OR first_time <= ?3) ORDER BY last_seq",
                           -1, &it->blocks, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(it->blocks, 1, (sqlite3_int64)from);
        if (since)
            sqlite3_bind_text(it->blocks, 2, since, -1, SQLITE_TRANSIENT);
        if (until)
            sqlite3_bind_text(it->blocks, 3, until, -1, SQLITE_TRANSIENT);
    }
    *out = it;
    return 0;
}

void cg_arows_close(cg_arows *it)
{
    if (!it)
        return;
    sqlite3_finalize(it->rows);
    sqlite3_finalize(it->blocks);
    free(it);
}

static int next_row(cg_arows *it, cg_arow *row)
{
    int step = sqlite3_step(it->rows);
    if (step == SQLITE_DONE)
        return 0;
    if (step != SQLITE_ROW)
        return CG_E_DB;
    sqlite3_stmt *st = it->rows;
    memset(row, 0, sizeof *row);
    row->seq = (uint64_t)sqlite3_column_int64(st, 0);
    row->canon = (const char *)sqlite3_column_text(st, 1);
    row->canon_len = (size_t)sqlite3_column_bytes(st, 1);
    if (sqlite3_column_bytes(st, 2) == CG_AUDIT_HASH_LEN)
        row->hash = sqlite3_column_blob(st, 2);
    row->time = (const char *)sqlite3_column_text(st, 3);
    row->txid = (const char *)sqlite3_column_text(st, 4);
    row->principal = (const char *)sqlite3_column_text(st, 5);
    row->decision = (const char *)sqlite3_column_text(st, 6);
    return 1;
}

/* A time column as stored: "" unless it is text that fits (a blob sorts
 * after every text in SQL, so its bytes alone are not the column). */
static void time_col(sqlite3_stmt *st, int i, char out[CG_TIME_LEN])
{
    out[0] = '\0';
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return;
    const char *t = (const char *)sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (t && n < CG_TIME_LEN && strlen(t) == n)
        memcpy(out, t, n + 1);
}

/* Moves to the next block that has data; 0 when none is left. */
static int next_block(cg_arows *it)
{
    if (!it->blocks)
        return 0;
    int step = sqlite3_step(it->blocks);
    if (step == SQLITE_DONE)
        return 0;
    if (step != SQLITE_ROW)
        return CG_E_DB;
    const uint8_t *data = sqlite3_column_blob(it->blocks, 1);
    size_t len = (size_t)sqlite3_column_bytes(it->blocks, 1);
    it->cur.p = data;
    it->cur.end = data ? data + len : NULL;
    it->next_seq = (uint64_t)sqlite3_column_int64(it->blocks, 0);
    it->block_bad = false;
    it->block_new = true;
    it->blk.first_seq = sqlite3_column_int64(it->blocks, 0);
    it->blk.last_seq = sqlite3_column_int64(it->blocks, 2);
    time_col(it->blocks, 3, it->blk.first_time);
    time_col(it->blocks, 4, it->blk.last_time);
    return 1;
}

/* The canon of a decoded entry, as the writer made it. */
static bool entry_canon(cg_arows *it, const uint8_t *rec, size_t len, size_t *clen)
{
    if (cg_audit_bin_decode(rec, len, &it->bin) < 0)
        return false;
    char time[CG_TIME_LEN];
    cg_time_rfc3339(it->bin.usec, time);
    int n = cg_audit_canon(it->canon, sizeof it->canon, it->bin.seq, time, &it->bin.rec);
    if (n < 0)
        return false;
    *clen = (size_t)n;
    return true;
}

static int next_entry(cg_arows *it, cg_arow *row)
{
    for (;;) {
        const uint8_t *rec = NULL, *h = NULL;
        size_t len = 0;
        int rc = it->block_bad || !it->cur.p ? 0 : cg_audit_block_next(&it->cur, &rec, &len, &h);
        if (rc == 0) {
            rc = next_block(it);
            if (rc <= 0)
                return rc;
            continue;
        }
        memset(row, 0, sizeof *row);
        row->block = &it->blk;
        row->seq = it->next_seq++;
        if (rc < 0) {
            it->block_bad = true; /* one unreadable record stands for the rest */
            return 1;
        }
        if (row->seq < it->from)
            continue; /* the block starts before from: not decoded */
        row->block_first = it->block_new;
        row->block_last = it->cur.p >= it->cur.end;
        it->block_new = false;
        row->hash = h;
        size_t clen;
        if (entry_canon(it, rec, len, &clen)) {
            row->canon = it->canon;
            row->canon_len = clen;
        }
        return 1;
    }
}

int cg_arows_next(cg_arows *it, cg_arow *row)
{
    if (!it->in_blocks) {
        int rc = next_row(it, row);
        if (rc != 0)
            return rc;
        it->in_blocks = true;
    }
    return next_entry(it, row);
}

uint64_t cg_arows_peek_seq(cg_arows *it)
{
    if (!it->in_blocks) {
        sqlite3_stmt *st;
        uint64_t out = 0;
        sqlite3_int64 cur = sqlite3_column_int64(it->rows, 0);
        if (sqlite3_prepare_v2(it->db, "SELECT canon FROM records WHERE seq > ? ORDER BY seq "
                               "LIMIT 1", -1, &st, NULL) != SQLITE_OK)
            return 0;
        sqlite3_bind_int64(st, 1, cur);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *c = (const char *)sqlite3_column_text(st, 0);
            unsigned long long s;
            if (c && sscanf(c, "{\"seq\":%llu,", &s) == 1)
                out = s;
        }
        sqlite3_finalize(st);
        return out;
    }
    if (it->block_bad || !it->cur.p)
        return 0;
    cg_audit_block_cur c = it->cur;
    const uint8_t *rec, *h;
    size_t len;
    if (c.p < c.end)
        return cg_audit_block_next(&c, &rec, &len, &h) == 1 ? cg_audit_bin_seq(rec, len) : 0;
    /* the current block is done: the first record of the next one */
    sqlite3_stmt *st;
    uint64_t seq = 0;
    if (sqlite3_prepare_v2(it->db, "SELECT data FROM blocks WHERE last_seq >= ? "
                           "ORDER BY last_seq LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)it->next_seq);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const uint8_t *data = sqlite3_column_blob(st, 0);
        c.p = data;
        c.end = data ? data + sqlite3_column_bytes(st, 0) : NULL;
        if (data && cg_audit_block_next(&c, &rec, &len, &h) == 1)
            seq = cg_audit_bin_seq(rec, len);
    }
    sqlite3_finalize(st);
    return seq;
}
