/* audit_file.c — one audit database file (see audit_file.h): schema,
 * chain state, appends, checkpoints, the gateway's lock and rotation. */
#include "store/audit_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "store/db.h"

/* Version 1 of the audit schema. records.canon is what is hashed; the
 * other columns are copies for filtering, checked against canon by
 * verify. checkpoints sign (seq, hash). keys lets a file be checked on
 * its own (trust comes only from --key). */
static const char schema_v1[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE records ("
    "  seq INTEGER PRIMARY KEY, time TEXT NOT NULL, txid TEXT,"
    "  principal TEXT, decision TEXT, canon TEXT NOT NULL, hash BLOB NOT NULL);"
    "CREATE TABLE checkpoints ("
    "  seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, signature BLOB NOT NULL,"
    "  key_fpr TEXT NOT NULL, time TEXT NOT NULL, final INTEGER NOT NULL);"
    "CREATE TABLE keys (fpr TEXT PRIMARY KEY, pem TEXT NOT NULL);"
    "INSERT INTO meta VALUES ('format', 'cpmgate-audit-v1');"
    "INSERT INTO meta VALUES ('first_seq', '1');"
    "INSERT INTO meta VALUES ('prev_hash', "
    "  '0000000000000000000000000000000000000000000000000000000000000000');"
    "INSERT INTO meta VALUES ('policy_log_seq', '0');"
    "INSERT INTO meta VALUES ('sealed', '0');"
    "PRAGMA user_version = 1;";

/* Version 2: checkpoints name the node that signed them (NULL in those
 * written before, which keep their v1 signed text). Records need no
 * column: the node is in the canon. */
static const char schema_v2[] =
    "ALTER TABLE checkpoints ADD COLUMN node TEXT;"
    "PRAGMA user_version = 2;";

/* Version 3: records are stored in blocks of the compact form
 * (audit_bin.h), one row per block; the rows of records written before
 * stay where they are and the blocks continue their chain. first_time and
 * last_time let a reader skip blocks by time. */
static const char schema_v3[] =
    "CREATE TABLE blocks ("
    "  last_seq INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL,"
    "  first_time TEXT NOT NULL, last_time TEXT NOT NULL, data BLOB NOT NULL);"
    "PRAGMA user_version = 3;";

/* Migration i takes user_version i to i + 1; a new file runs them all. */
static const char *const migrations[] = { schema_v1, schema_v2, schema_v3 };
#define AUDIT_SCHEMA_VERSION 3

static const char *sqlerr(sqlite3 *db)
{
    return cg_say("audit database: %s", db ? sqlite3_errmsg(db) : "cannot open");
}

int cg_afile_meta_get(sqlite3 *db, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK)
        return CG_E_DB;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = CG_E_NOTFOUND;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        rc = cg_strlcpy(out, v ? v : "", cap) ? 0 : CG_E_LIMIT;
    }
    sqlite3_finalize(st);
    return rc;
}

static int meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
        return CG_E_DB;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CG_E_DB;
    sqlite3_finalize(st);
    return rc;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : CG_E_DB;
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Opens the SQLite handle; creates the schema on an empty file. */
static int open_db(const char *path, bool create, bool wal, sqlite3 **out,
                   const char **error_r)
{
    if (!create && !exists(path)) {
        *error_r = "no such audit database";
        return CG_E_NOTFOUND;
    }
    if (create && !exists(path)) {
        /* 0600 before SQLite writes anything: the log names principals. */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        *error_r = sqlerr(db);
        sqlite3_close(db);
        return CG_E_DB;
    }
    sqlite3_busy_timeout(db, 1000);
    sqlite3_stmt *st;
    int ver = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            ver = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    /* A new file: 16 KiB pages (a block of records is one row of up to
     * 32 KiB; with 4 KiB pages its overflow chain and WAL frames cost a
     * quarter of the writer's time more). Only an empty file takes it. */
    if (ver == 0 && create && exec(db, "PRAGMA page_size = 16384") < 0) {
        *error_r = sqlerr(db);
        sqlite3_close(db);
        return CG_E_DB;
    }
    /* A new file, or one an older version wrote: each step in its own
     * transaction, so a crash leaves a file of some whole version. */
    while (ver >= (create ? 0 : 1) && ver < AUDIT_SCHEMA_VERSION) {
        if (exec(db, "BEGIN IMMEDIATE") < 0 || exec(db, migrations[ver]) < 0 ||
            exec(db, "COMMIT") < 0) {
            *error_r = sqlerr(db);
            sqlite3_close(db);
            return CG_E_DB;
        }
        ver++;
    }
    if (ver != AUDIT_SCHEMA_VERSION) {
        *error_r = ver < 0 ? sqlerr(db) : "not an audit database of this version";
        sqlite3_close(db);
        return CG_E_DB;
    }
    char fmt[64];
    if (cg_afile_meta_get(db, "format", fmt, sizeof fmt) < 0 ||
        strcmp(fmt, "cpmgate-audit-v1") != 0) {
        *error_r = "not a cpmgate audit database";
        sqlite3_close(db);
        return CG_E_DB;
    }
    /* WAL: readers (cpmgatectl) never block the writer. NORMAL: a commit
     * survives a crash of the process (kill -9); only power loss may lose
     * the last transactions, never corrupt the file. */
    if (wal && (exec(db, "PRAGMA journal_mode = WAL") < 0 ||
                exec(db, "PRAGMA synchronous = NORMAL") < 0)) {
        *error_r = sqlerr(db);
        sqlite3_close(db);
        return CG_E_DB;
    }
    *out = db;
    return 0;
}

/* The seq and hash of the last entry of a block's data: 1, or 0 when the
 * data holds none or is malformed. */
static int block_last(const uint8_t *data, size_t len, uint64_t first, uint64_t *seq,
                      uint8_t hash[CG_AUDIT_HASH_LEN])
{
    cg_audit_block_cur c = { data, data + len };
    const uint8_t *rec, *h = NULL;
    size_t rlen;
    uint64_t n = 0;
    int rc;
    while ((rc = cg_audit_block_next(&c, &rec, &rlen, &h)) == 1)
        n++;
    if (rc < 0 || n == 0)
        return 0;
    *seq = first + n - 1;
    memcpy(hash, h, CG_AUDIT_HASH_LEN);
    return 1;
}

int cg_afile_last(sqlite3 *db, uint64_t *seq, uint8_t hash[CG_AUDIT_HASH_LEN])
{
    sqlite3_stmt *st;
    int found = 0;
    /* blocks follow the rows: the last block, when there is one */
    if (sqlite3_prepare_v2(db, "SELECT first_seq, data FROM blocks ORDER BY last_seq DESC "
                           "LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            found = block_last(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                               (uint64_t)sqlite3_column_int64(st, 0), seq, hash);
        sqlite3_finalize(st);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            return CG_E_DB;
        if (step == SQLITE_ROW)
            return found ? 1 : CG_E_DB;
    } /* else a file of schema 2 or before, which has no blocks */
    if (sqlite3_prepare_v2(db, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return CG_E_DB;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        memset(hash, 0, CG_AUDIT_HASH_LEN);
        if (sqlite3_column_bytes(st, 1) == CG_AUDIT_HASH_LEN)
            memcpy(hash, sqlite3_column_blob(st, 1), CG_AUDIT_HASH_LEN);
        found = 1;
    }
    sqlite3_finalize(st);
    return step == SQLITE_ROW || step == SQLITE_DONE ? found : CG_E_DB;
}

int cg_afile_load_state(cg_afile *f, const char **error_r)
{
    char v[128];
    uint64_t first;
    if (cg_afile_meta_get(f->db, "first_seq", v, sizeof v) < 0 ||
        cg_parse_u64(v, 1, INT64_MAX, &first) < 0 ||
        cg_afile_meta_get(f->db, "prev_hash", v, sizeof v) < 0 ||
        cg_hex_decode(v, f->genesis, sizeof f->genesis) != CG_AUDIT_HASH_LEN) {
        *error_r = "audit database: bad meta (first_seq, prev_hash)";
        return CG_E_DB;
    }
    f->first_seq = first;
    uint64_t ps = 0;
    if (cg_afile_meta_get(f->db, "policy_log_seq", v, sizeof v) == 0)
        cg_parse_u64(v, 0, INT64_MAX, &ps);
    f->policy_seq = (int64_t)ps;
    f->sealed = cg_afile_meta_get(f->db, "sealed", v, sizeof v) == 0 && strcmp(v, "1") == 0;
    f->last_seq = first - 1;
    memcpy(f->last_hash, f->genesis, CG_AUDIT_HASH_LEN);
    f->last_ckpt_seq = 0;
    f->blk_len = 0;
    f->blk_n = 0;
    uint64_t seq;
    uint8_t h[CG_AUDIT_HASH_LEN];
    int found = cg_afile_last(f->db, &seq, h);
    if (found < 0) {
        *error_r = sqlerr(f->db);
        return CG_E_DB;
    }
    if (found) {
        f->last_seq = seq;
        memcpy(f->last_hash, h, CG_AUDIT_HASH_LEN);
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(f->db, "SELECT max(seq) FROM checkpoints", -1, &st, NULL) != SQLITE_OK) {
        *error_r = sqlerr(f->db);
        return CG_E_DB;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        f->last_ckpt_seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int prepare(cg_afile *f, const char **error_r)
{
    if (sqlite3_prepare_v2(f->db,
            "INSERT INTO records (seq, time, txid, principal, decision, canon, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &f->ins_rec, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db,
            "INSERT INTO blocks (last_seq, first_seq, first_time, last_time, data)"
            " VALUES (?, ?, ?, ?, ?)", -1, &f->ins_blk, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db,
            "INSERT INTO checkpoints (seq, hash, signature, key_fpr, time, final, node)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &f->ins_ckpt, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "INSERT OR REPLACE INTO meta VALUES (?, ?)", -1,
                           &f->set_meta, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "BEGIN IMMEDIATE", -1, &f->begin_st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(f->db, "COMMIT", -1, &f->commit_st, NULL) != SQLITE_OK) {
        *error_r = sqlerr(f->db);
        return CG_E_DB;
    }
    if ((!f->blk && !(f->blk = malloc(CG_AUDIT_BLOCK_BYTES + CG_AUDIT_ENTRY_MAX))) ||
        (!f->md && !(f->md = EVP_MD_CTX_new()))) {
        *error_r = "out of memory for the audit block";
        return CG_E_NOMEM;
    }
    return 0;
}

static int finish_rotation(const char *path, const char *node, const char **error_r);

/* Zeroes f up to its scratch buffer and sets its node. */
static int afile_init(cg_afile *f, const char *node, const char **error_r)
{
    memset(f, 0, offsetof(cg_afile, canon));
    if (node && !cg_audit_node_ok(node)) {
        *error_r = "the node id must be 1 to 64 of A-Z a-z 0-9 . _ -";
        return CG_E_INVAL;
    }
    if (node)
        cg_strlcpy(f->node, node, sizeof f->node);
    return 0;
}

int cg_afile_open(cg_afile *f, const char *path, const char *node, bool create,
                  const char **error_r)
{
    int rc = afile_init(f, node, error_r);
    if (rc < 0)
        return rc;
    if (!cg_strlcpy(f->path, path, sizeof f->path)) {
        *error_r = "audit database path too long";
        return CG_E_INVAL;
    }
    char newp[4200];
    snprintf(newp, sizeof newp, "%s.new", path);
    /* A crash between the two renames of a rotation left only "<db>.new". */
    if (!exists(path) && exists(newp) && rename(newp, path) < 0) {
        *error_r = "cannot finish an interrupted rotation (rename)";
        return CG_E_IO;
    }
    rc = open_db(path, create, true, &f->db, error_r);
    if (rc < 0)
        return rc;
    rc = cg_afile_load_state(f, error_r);
    if (rc == 0 && f->sealed) {
        /* A sealed file is never written again: finish its rotation. */
        sqlite3_close(f->db);
        f->db = NULL;
        rc = finish_rotation(path, node, error_r);
        if (rc == 0)
            rc = open_db(path, false, true, &f->db, error_r);
        if (rc == 0)
            rc = cg_afile_load_state(f, error_r);
    }
    if (rc == 0)
        rc = prepare(f, error_r);
    if (rc < 0)
        cg_afile_close(f);
    return rc;
}

void cg_afile_close(cg_afile *f)
{
    sqlite3_finalize(f->ins_rec);
    sqlite3_finalize(f->ins_blk);
    sqlite3_finalize(f->ins_ckpt);
    sqlite3_finalize(f->set_meta);
    sqlite3_finalize(f->begin_st);
    sqlite3_finalize(f->commit_st);
    f->ins_rec = f->ins_blk = f->ins_ckpt = f->set_meta = f->begin_st = f->commit_st = NULL;
    free(f->blk);
    f->blk = NULL;
    EVP_MD_CTX_free(f->md);
    f->md = NULL;
    f->blk_len = 0;
    f->blk_n = 0;
    if (f->db)
        sqlite3_close(f->db);
    f->db = NULL;
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : CG_E_DB;
}

/* Stores the block being filled as one row. */
static int flush_block(cg_afile *f)
{
    if (f->blk_n == 0)
        return 0;
    sqlite3_stmt *st = f->ins_blk;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(f->blk_first + f->blk_n - 1));
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->blk_first);
    sqlite3_bind_text(st, 3, f->blk_time0, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, f->blk_time1, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, f->blk, (int)f->blk_len, SQLITE_STATIC);
    int rc = step_reset(st);
    if (rc == 0) {
        f->blk_len = 0;
        f->blk_n = 0;
    }
    return rc;
}

/* BEGIN and COMMIT prepared once: a commit a batch, parsed every time,
 * showed in the writer's profile at low rates. */
int cg_afile_begin(cg_afile *f) { return step_reset(f->begin_st); }

int cg_afile_commit(cg_afile *f)
{
    int rc = flush_block(f);
    return rc < 0 ? rc : step_reset(f->commit_st);
}

void cg_afile_rollback(cg_afile *f)
{
    f->blk_len = 0;
    f->blk_n = 0;
    if (f->db && !sqlite3_get_autocommit(f->db))
        exec(f->db, "ROLLBACK");
}

/* RFC 3339 with microseconds; the second's prefix is cached because a
 * batch mostly shares one second. */
static void format_time(cg_afile *f, int64_t usec, char out[CG_TIME_LEN])
{
    int64_t sec = usec / 1000000;
    if (sec != f->tcache_sec || !f->tcache[0]) {
        cg_time_rfc3339(sec * 1000000, f->tcache);
        f->tcache_sec = sec;
    }
    memcpy(out, f->tcache, CG_TIME_LEN);
    long us = (long)(usec % 1000000);
    for (int i = 25; i >= 20; i--) {
        out[i] = (char)('0' + us % 10);
        us /= 10;
    }
}

/* Adds the record and its hash to the block being filled; stores the
 * block when it is full. */
static int block_add(cg_afile *f, uint64_t seq, int64_t usec, const char *time,
                     const cg_audit_rec *r, const uint8_t h[CG_AUDIT_HASH_LEN])
{
    int m = cg_audit_bin_encode(f->bin, sizeof f->bin, seq, usec, r);
    if (m < 0)
        return m;
    int k = cg_audit_block_put(f->blk + f->blk_len,
                               CG_AUDIT_BLOCK_BYTES + CG_AUDIT_ENTRY_MAX - f->blk_len,
                               f->bin, (size_t)m, h);
    if (k < 0)
        return k;
    if (f->blk_n++ == 0) {
        f->blk_first = seq;
        memcpy(f->blk_time0, time, CG_TIME_LEN);
    }
    memcpy(f->blk_time1, time, CG_TIME_LEN);
    f->blk_len += (size_t)k;
    if (f->blk_n >= CG_AUDIT_BLOCK_RECORDS || f->blk_len >= CG_AUDIT_BLOCK_BYTES)
        return flush_block(f);
    return 0;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int cg_afile_append(cg_afile *f, int64_t usec, const cg_audit_rec *r)
{
    uint64_t seq = f->last_seq + 1;
    char time[CG_TIME_LEN];
    format_time(f, usec, time);
    int n = cg_audit_canon(f->canon, sizeof f->canon, seq, time, r);
    if (n < 0)
        return n;
    uint8_t h[CG_AUDIT_HASH_LEN];
    cg_audit_chain_hash_in(f->md, f->last_hash, f->canon, (size_t)n, h);
    int rc;
    if (f->form == CG_AFILE_BLOCKS) {
        rc = block_add(f, seq, usec, time, r, h);
    } else {
        sqlite3_stmt *st = f->ins_rec;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        sqlite3_bind_text(st, 2, time, -1, SQLITE_STATIC);
        bind_opt(st, 3, r->txid);
        bind_opt(st, 4, r->principal);
        bind_opt(st, 5, r->decision);
        sqlite3_bind_text(st, 6, f->canon, n, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, h, CG_AUDIT_HASH_LEN, SQLITE_STATIC);
        rc = step_reset(st);
    }
    if (rc < 0)
        return rc;
    f->last_seq = seq;
    memcpy(f->last_hash, h, CG_AUDIT_HASH_LEN);
    return 0;
}

int cg_afile_checkpoint(cg_afile *f, EVP_PKEY *key, bool final, const char *time)
{
    if (!key || f->last_seq < f->first_seq || f->last_ckpt_seq >= f->last_seq)
        return 0;
    char msg[CG_AUDIT_CKPT_MSG_MAX], fpr[65];
    size_t mlen = cg_audit_checkpoint_msg(f->last_seq, f->last_hash,
                                          f->node[0] ? f->node : NULL, msg);
    uint8_t sig[256];
    size_t siglen = sizeof sig;
    if (cg_audit_sign(key, msg, mlen, sig, &siglen) < 0 ||
        cg_audit_key_fingerprint(key, fpr) < 0)
        return CG_E_CRYPTO;
    sqlite3_stmt *st = f->ins_ckpt;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)f->last_seq);
    sqlite3_bind_blob(st, 2, f->last_hash, CG_AUDIT_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, sig, (int)siglen, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, fpr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, time, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, final ? 1 : 0);
    bind_opt(st, 7, f->node[0] ? f->node : NULL);
    int rc = step_reset(st);
    if (rc == 0)
        f->last_ckpt_seq = f->last_seq;
    return rc;
}

int cg_afile_set_policy_seq(cg_afile *f, int64_t seq)
{
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)seq);
    sqlite3_bind_text(f->set_meta, 1, "policy_log_seq", -1, SQLITE_STATIC);
    sqlite3_bind_text(f->set_meta, 2, v, -1, SQLITE_TRANSIENT);
    int rc = step_reset(f->set_meta);
    if (rc == 0)
        f->policy_seq = seq;
    return rc;
}

int cg_afile_register_key(cg_afile *f, EVP_PKEY *key)
{
    char fpr[65];
    char *pem = cg_audit_key_public_pem(key);
    if (!pem || cg_audit_key_fingerprint(key, fpr) < 0) {
        free(pem);
        return CG_E_CRYPTO;
    }
    sqlite3_stmt *st;
    int rc = CG_E_DB;
    if (sqlite3_prepare_v2(f->db, "INSERT OR IGNORE INTO keys VALUES (?, ?)", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, pem, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CG_E_DB;
        sqlite3_finalize(st);
    }
    free(pem);
    return rc;
}

/* ---- rotation ----------------------------------------------------------- */

/* path is sealed and closed: switch it to a rollback journal (so no -wal
 * file is left to pair with its successor), build "<path>.new", then
 * rename both into place. */
static int finish_rotation(const char *path, const char *node, const char **error_r)
{
    *error_r = NULL;
    sqlite3 *db;
    int rc = open_db(path, false, false, &db, error_r);
    if (rc < 0)
        return rc;
    cg_afile old;
    memset(&old, 0, offsetof(cg_afile, canon));
    old.db = db;
    rc = cg_afile_load_state(&old, error_r);
    if (rc == 0 && exec(db, "PRAGMA journal_mode = DELETE") < 0) {
        *error_r = "cannot seal the audit database while another process reads it; retry";
        rc = CG_E_BUSY;
    }
    sqlite3_close(db);
    if (rc < 0)
        return rc;

    char sealed[4200], newp[4200];
    snprintf(sealed, sizeof sealed, "%s.%llu-%llu", path,
             (unsigned long long)old.first_seq, (unsigned long long)old.last_seq);
    snprintf(newp, sizeof newp, "%s.new", path);
    if (exists(sealed)) {
        *error_r = "the sealed file's name is taken already";
        return CG_E_EXISTS;
    }
    unlink(newp); /* a partial one from a crash is rebuilt */
    cg_afile nf;
    rc = afile_init(&nf, node, error_r);
    if (rc < 0)
        return rc;
    rc = open_db(newp, true, false, &nf.db, error_r);
    if (rc < 0)
        return rc;
    char sealed_copy[4200], v[128];
    cg_strlcpy(sealed_copy, sealed, sizeof sealed_copy);
    const char *base = basename(sealed_copy);
    char hex[2 * CG_AUDIT_HASH_LEN + 1];
    cg_hex_encode(old.last_hash, CG_AUDIT_HASH_LEN, hex);
    rc = exec(nf.db, "BEGIN IMMEDIATE");
    snprintf(v, sizeof v, "%llu", (unsigned long long)(old.last_seq + 1));
    if (rc == 0) rc = meta_set(nf.db, "first_seq", v);
    if (rc == 0) rc = meta_set(nf.db, "prev_hash", hex);
    if (rc == 0) rc = meta_set(nf.db, "prev_file", base);
    snprintf(v, sizeof v, "%lld", (long long)old.policy_seq);
    if (rc == 0) rc = meta_set(nf.db, "policy_log_seq", v);
    if (rc == 0) rc = cg_afile_load_state(&nf, error_r);
    if (rc == 0) rc = prepare(&nf, error_r);
    if (rc == 0) {
        /* The first record names the sealed file; it chains to that file's
         * last hash through prev_hash, so the link is itself hashed. */
        char reason[256];
        snprintf(reason, sizeof reason, "continues %s after seq %llu, hash %s", base,
                 (unsigned long long)old.last_seq, hex);
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.service = "gateway";
        r.operation = "rotate";
        r.resource = base;
        r.result = "OK";
        r.reason = reason;
        r.node = nf.node[0] ? nf.node : NULL;
        rc = cg_afile_append(&nf, cg_time_now_usec(), &r);
    }
    if (rc == 0)
        rc = cg_afile_commit(&nf);
    if (rc < 0 && !*error_r)
        *error_r = sqlerr(nf.db);
    cg_afile_close(&nf);
    if (rc < 0) {
        unlink(newp);
        return rc;
    }
    /* the rotation goes on either way (the data is committed by SQLite);
     * a file or directory not made durable is said */
    int synced = cg_db_fsync_path(newp, false);
    if (synced < 0)
        cg_warn("audit: cannot fsync %s: %s", newp, cg_strerror(synced));
    if (rename(path, sealed) < 0 || rename(newp, path) < 0) {
        *error_r = "cannot rename the audit database during rotation";
        return CG_E_IO;
    }
    if (cg_db_fsync_dir_of(path) < 0)
        cg_warn("audit: cannot fsync the directory of %s", path);
    cg_info("audit: sealed %s (seq %llu-%llu), continuing in %s", sealed,
            (unsigned long long)old.first_seq, (unsigned long long)old.last_seq, path);
    return 0;
}

int cg_afile_rotate(const char *path, EVP_PKEY *key, const char *node, char *sealed_r,
                    size_t cap, const char **error_r)
{
    cg_afile f;
    int rc = afile_init(&f, node, error_r);
    if (rc < 0)
        return rc;
    sqlite3 *db;
    rc = open_db(path, false, true, &db, error_r);
    if (rc < 0)
        return rc;
    f.db = db;
    rc = cg_afile_load_state(&f, error_r);
    uint64_t first = f.first_seq, last = f.last_seq;
    if (rc == 0 && !f.sealed) {
        if (f.last_seq < f.first_seq) {
            *error_r = "the audit database has no records: nothing to rotate";
            rc = CG_E_INVAL;
        } else if (f.last_ckpt_seq < f.last_seq && !key) {
            *error_r = "the last records are not covered by a checkpoint: "
                       "give the audit key to sign the seal";
            rc = CG_E_INVAL;
        }
        if (rc == 0)
            rc = prepare(&f, error_r);
        if (rc == 0 && (rc = cg_afile_begin(&f)) == 0) {
            char t[CG_TIME_LEN];
            cg_time_rfc3339(cg_time_now_usec(), t);
            if (key)
                rc = cg_afile_register_key(&f, key);
            if (rc == 0)
                rc = cg_afile_checkpoint(&f, key, true, t);
            if (rc == 0)
                rc = meta_set(f.db, "sealed", "1");
            if (rc == 0)
                rc = cg_afile_commit(&f);
            if (rc < 0) {
                *error_r = sqlerr(f.db);
                cg_afile_rollback(&f);
            }
        }
    }
    cg_afile_close(&f);
    if (rc == 0)
        rc = finish_rotation(path, node, error_r);
    if (rc == 0 && sealed_r)
        snprintf(sealed_r, cap, "%s.%llu-%llu", path, (unsigned long long)first,
                 (unsigned long long)last);
    return rc;
}

/* ---- the gateway's lock --------------------------------------------------- */

int cg_afile_lock(const char *path, int *fd_r, long *holder_r, const char **error_r)
{
    char lp[4200];
    snprintf(lp, sizeof lp, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error_r = "cannot open the audit lock file";
        return CG_E_IO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        close(fd);
        uint64_t pid = 0;
        buf[strcspn(buf, "\n")] = '\0';
        cg_parse_u64(buf, 0, INT32_MAX, &pid);
        if (holder_r)
            *holder_r = (long)pid;
        *error_r = e == EWOULDBLOCK ? "the audit database is held by a running gateway"
                                    : "cannot lock the audit database";
        return e == EWOULDBLOCK ? CG_E_BUSY : CG_E_IO;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        close(fd);
        *error_r = "cannot write the audit lock file";
        return CG_E_IO;
    }
    *fd_r = fd;
    return 0;
}

void cg_afile_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* the flock goes with the descriptor */
}
