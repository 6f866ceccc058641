/* db.h — the one SQLite helper: open with the project's pragmas, migrate
 * by PRAGMA user_version, transactions, one-line errors. One connection per
 * thread; statements are prepared once by their owners and reused. */
#ifndef CG_DB_H
#define CG_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cg_db cg_db;

enum cg_db_flags {
    CG_DB_READONLY = 1, /* open read-only (watchers, verify) */
    CG_DB_CREATE = 2,   /* create if missing, mode 0600 */
};

/* WAL, foreign_keys=ON, busy_timeout 5 s. error_r: one sentence, static
 * per thread, valid until the next call on this thread. */
int cg_db_open(const char *path, int flags, cg_db **out, const char **error_r)
    __attribute__((warn_unused_result));
void cg_db_close(cg_db *db);
sqlite3 *cg_db_handle(cg_db *db);

/* Applies migrations[user_version..n-1], each in its own transaction. */
int cg_db_migrate(cg_db *db, const char *const *migrations, size_t n,
                  const char **error_r) __attribute__((warn_unused_result));

int cg_db_exec(cg_db *db, const char *sql, const char **error_r)
    __attribute__((warn_unused_result));
int cg_db_begin(cg_db *db, const char **error_r)
    __attribute__((warn_unused_result)); /* BEGIN IMMEDIATE */
int cg_db_begin_read(cg_db *db, const char **error_r)
    __attribute__((warn_unused_result)); /* BEGIN (deferred) */
int cg_db_commit(cg_db *db, const char **error_r) __attribute__((warn_unused_result));
void cg_db_rollback(cg_db *db);

/* The integer a "PRAGMA name" answers (user_version, data_version). */
int cg_db_pragma_int(cg_db *db, const char *name, int64_t *out, const char **error_r)
    __attribute__((warn_unused_result));

/* The last SQLite error of db as one sentence. */
const char *cg_db_errmsg(cg_db *db);

/* Makes a file durable (dir: a directory, so the names in it are):
 * 0 or -errno. */
int cg_db_fsync_path(const char *path, bool dir) __attribute__((warn_unused_result));
/* Makes the directory holding path durable (after a rename into it):
 * 0, -errno, or CG_E_INVAL for a path too long. */
int cg_db_fsync_dir_of(const char *path) __attribute__((warn_unused_result));

#endif
