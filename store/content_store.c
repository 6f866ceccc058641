/* content_store.c — content_db: recorded uploads and their validation
 * state (see content_store.h). One connection per thread, statements
 * prepared once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/content_store.h"
#include "store/db.h"

static const char *const migrations[] = {
    /* 1: one row per path: the last upload that passed the gateway */
    "CREATE TABLE upload ("
    "  path TEXT PRIMARY KEY,"
    "  size INTEGER NOT NULL CHECK (size >= 0),"
    "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64),"
    "  uploader TEXT NOT NULL,"
    "  txid TEXT NOT NULL,"
    "  time TEXT NOT NULL,"
    "  validated INTEGER NOT NULL DEFAULT 0,"
    "  key_id TEXT);",
};

enum { ST_RECORD, ST_LOOKUP, ST_VALIDATE, ST_CLEAR, ST_CLEAR_TREE, ST_FORGET,
       ST_FORGET_TREE, ST_N };

static const char *const sql[ST_N] = {
    [ST_RECORD] = "INSERT OR REPLACE INTO upload (path, size, sha256, uploader, txid, time, "
                  "validated, key_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_LOOKUP] = "SELECT path, size, sha256, uploader, txid, time, validated, key_id "
                  "FROM upload WHERE path = ?1",
    [ST_VALIDATE] = "UPDATE upload SET validated = 1, key_id = ?4 "
                    "WHERE path = ?1 AND size = ?2 AND sha256 = ?3",
    [ST_CLEAR] = "UPDATE upload SET validated = 0, key_id = NULL WHERE path = ?1",
    /* ?2 is path + "/": a byte-wise prefix test (LIKE would treat % and _
     * in names as wildcards) */
    [ST_CLEAR_TREE] = "UPDATE upload SET validated = 0, key_id = NULL "
                      "WHERE path = ?1 OR substr(path, 1, length(?2)) = ?2",
    [ST_FORGET] = "DELETE FROM upload WHERE path = ?1",
    [ST_FORGET_TREE] = "DELETE FROM upload WHERE path = ?1 OR substr(path, 1, length(?2)) = ?2",
};

struct cg_content_store {
    cg_db *db;
    sqlite3_stmt *st[ST_N];
};

static const char *dberr(cg_content_store *cs)
{
    return cg_say("content database: %s", cg_db_errmsg(cs->db));
}

void cg_content_close(cg_content_store *cs)
{
    if (!cs)
        return;
    for (int i = 0; i < ST_N; i++)
        sqlite3_finalize(cs->st[i]);
    cg_db_close(cs->db);
    free(cs);
}

int cg_content_open(const char *path, bool readonly, cg_content_store **out,
                    const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *out = NULL;
    cg_content_store *cs = calloc(1, sizeof *cs);
    if (!cs)
        return CG_E_NOMEM;
    int rc = cg_db_open(path, readonly ? CG_DB_READONLY : CG_DB_CREATE, &cs->db, error_r);
    if (rc < 0) {
        free(cs);
        return rc;
    }
    if (!readonly) {
        /* migrating takes the write lock: only when the schema is behind,
         * so a connection opens while another process holds that lock */
        int64_t v = -1;
        rc = cg_db_pragma_int(cs->db, "user_version", &v, error_r);
        if (rc == 0 && v != (int64_t)CG_ARRAY_LEN(migrations))
            rc = cg_db_migrate(cs->db, migrations, CG_ARRAY_LEN(migrations), error_r);
        /* WAL + NORMAL: durable against crashes of the process, one fsync
         * per checkpoint instead of per upload */
        if (rc == 0)
            rc = cg_db_exec(cs->db, "PRAGMA synchronous = NORMAL", error_r);
        if (rc < 0) {
            cg_content_close(cs);
            return rc;
        }
    }
    for (int i = 0; i < ST_N; i++) {
        if (readonly && i != ST_LOOKUP)
            continue;
        if (sqlite3_prepare_v3(cg_db_handle(cs->db), sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &cs->st[i], NULL) != SQLITE_OK) {
            *error_r = dberr(cs);
            cg_content_close(cs);
            return CG_E_DB;
        }
    }
    *out = cs;
    return 0;
}

/* Checks a path argument; first points a NULL *error_r at scratch, so the
 * caller can always say why. */
static int path_ok(const char *path, const char ***error_r)
{
    static _Thread_local const char *scratch;
    if (!*error_r)
        *error_r = &scratch;
    if (!path || path[0] != '/' || strlen(path) > CG_CONTENT_MAX_PATH) {
        **error_r = "content path must start with / and be at most 4096 bytes";
        return CG_E_INVAL;
    }
    return 0;
}

/* Steps a prepared write statement once and resets it. */
static int step_write(cg_content_store *cs, sqlite3_stmt *st, int *changes,
                      const char **error_r)
{
    if (!st) {
        *error_r = "content database is open read-only";
        return CG_E_INVAL;
    }
    int r = sqlite3_step(st);
    if (changes)
        *changes = sqlite3_changes(cg_db_handle(cs->db));
    int rc = 0;
    if (r != SQLITE_DONE) {
        *error_r = dberr(cs);
        rc = (r & 0xff) == SQLITE_BUSY ? CG_E_BUSY : CG_E_DB;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int cg_content_record(cg_content_store *cs, const char *path, uint64_t size,
                      const uint8_t sha256[32], const char *uploader,
                      const char *txid, const char *validated_key_id,
                      const char **error_r)
{
    if (path_ok(path, &error_r) < 0)
        return CG_E_INVAL;
    if (size > INT64_MAX || !uploader || !txid) {
        *error_r = "content record lacks size, uploader or transaction id";
        return CG_E_INVAL;
    }
    char hex[65], t[CG_TIME_LEN];
    cg_hex_encode(sha256, 32, hex);
    cg_time_rfc3339(cg_time_now_usec(), t);
    sqlite3_stmt *st = cs->st[ST_RECORD];
    if (st) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_text(st, 3, hex, 64, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, uploader, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, txid, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, t, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 7, validated_key_id != NULL);
        if (validated_key_id)
            sqlite3_bind_text(st, 8, validated_key_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 8);
    }
    return step_write(cs, st, NULL, error_r);
}

static void col_copy(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    cg_strlcpy(out, v ? v : "", cap);
}

int cg_content_lookup(cg_content_store *cs, const char *path, cg_content_rec *out,
                      const char **error_r)
{
    if (path_ok(path, &error_r) < 0)
        return CG_E_INVAL;
    sqlite3_stmt *st = cs->st[ST_LOOKUP];
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), rc = 0;
    if (r == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        col_copy(st, 0, out->path, sizeof out->path);
        out->size = (uint64_t)sqlite3_column_int64(st, 1);
        const char *hex = (const char *)sqlite3_column_text(st, 2);
        if (!hex || cg_hex_decode(hex, out->sha256, 32) != 32) {
            *error_r = "content database holds a malformed hash";
            rc = CG_E_DB;
        }
        col_copy(st, 3, out->uploader, sizeof out->uploader);
        col_copy(st, 4, out->txid, sizeof out->txid);
        col_copy(st, 5, out->time, sizeof out->time);
        out->validated = sqlite3_column_int(st, 6) != 0;
        col_copy(st, 7, out->key_id, sizeof out->key_id);
    } else if (r == SQLITE_DONE) {
        *error_r = "no upload recorded for this path";
        rc = CG_E_NOTFOUND;
    } else {
        *error_r = dberr(cs);
        rc = CG_E_DB;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int cg_content_mark_validated(cg_content_store *cs, const char *path,
                              uint64_t size, const uint8_t sha256[32],
                              const char *key_id, const char **error_r)
{
    if (path_ok(path, &error_r) < 0 || !key_id || size > INT64_MAX) {
        *error_r = "bad arguments";
        return CG_E_INVAL;
    }
    char hex[65];
    cg_hex_encode(sha256, 32, hex);
    sqlite3_stmt *st = cs->st[ST_VALIDATE];
    if (st) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
        sqlite3_bind_text(st, 3, hex, 64, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, key_id, -1, SQLITE_STATIC);
    }
    int changes = 0;
    int rc = step_write(cs, st, &changes, error_r);
    if (rc < 0 || changes == 1)
        return rc;
    /* say why: nothing recorded, or recorded content that differs */
    cg_content_rec rec;
    rc = cg_content_lookup(cs, path, &rec, error_r);
    if (rc < 0)
        return rc;
    *error_r = rec.size != size ? "recorded upload has another size"
                                : "recorded upload has another SHA-256";
    return CG_E_AUTH;
}

static int tree_op(cg_content_store *cs, int one, int tree, const char *path, bool subtree,
                   const char **error_r)
{
    if (path_ok(path, &error_r) < 0)
        return CG_E_INVAL;
    sqlite3_stmt *st = cs->st[subtree ? tree : one];
    char prefix[CG_CONTENT_MAX_PATH + 2];
    if (subtree) {
        size_t n = strlen(path);
        memcpy(prefix, path, n);
        if (n == 0 || prefix[n - 1] != '/')
            prefix[n++] = '/';
        prefix[n] = '\0';
        /* "/a/" and "/a" name the same collection */
        char base[CG_CONTENT_MAX_PATH + 1];
        cg_strlcpy(base, prefix, sizeof base);
        if (n > 1)
            base[n - 1] = '\0';
        if (st) {
            sqlite3_bind_text(st, 1, base, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, prefix, -1, SQLITE_TRANSIENT);
        }
    } else if (st) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    }
    return step_write(cs, st, NULL, error_r);
}

int cg_content_clear(cg_content_store *cs, const char *path, bool subtree,
                     const char **error_r)
{
    return tree_op(cs, ST_CLEAR, ST_CLEAR_TREE, path, subtree, error_r);
}

int cg_content_forget(cg_content_store *cs, const char *path, bool subtree,
                      const char **error_r)
{
    return tree_op(cs, ST_FORGET, ST_FORGET_TREE, path, subtree, error_r);
}
