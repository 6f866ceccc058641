/* db.c — the one SQLite helper (see db.h): open with the project's pragmas
 * (WAL, foreign keys, busy timeout), create new files mode 0600, migrate by
 * PRAGMA user_version, and turn SQLite errors into one sentence. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"

struct cg_db {
    sqlite3 *h;
    bool readonly;
};

sqlite3 *cg_db_handle(cg_db *db)
{
    return db ? db->h : NULL;
}

const char *cg_db_errmsg(cg_db *db)
{
    return cg_say("%s", db && db->h ? sqlite3_errmsg(db->h) : "no database");
}

/* The file is created before SQLite sees it, with O_EXCL and an explicit
 * fchmod, so neither a permissive umask nor a race with another creator can
 * leave a policy database (PSK keys, HA1s) readable by others. */
static int create_file(const char *path, const char **error_r)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        *error_r = cg_say("cannot create %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = 0;
    if (fchmod(fd, 0600) < 0) {
        *error_r = cg_say("cannot set mode 0600 on %s: %s", path, strerror(errno));
        rc = -errno;
    }
    close(fd);
    return rc;
}

int cg_db_open(const char *path, int flags, cg_db **out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *out = NULL;
    if (!path || !*path) {
        *error_r = "no database file given";
        return CG_E_INVAL;
    }
    bool ro = flags & CG_DB_READONLY;
    if (!ro && (flags & CG_DB_CREATE)) {
        int rc = create_file(path, error_r);
        if (rc < 0)
            return rc;
    } else if (access(path, F_OK) < 0) {
        /* never let SQLite create an empty file by accident */
        *error_r = cg_say("%s: %s", path, strerror(errno));
        return -errno;
    }
    cg_db *db = calloc(1, sizeof *db);
    if (!db) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    db->readonly = ro;
    int of = (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db->h, of, NULL) != SQLITE_OK) {
        *error_r = cg_say("cannot open %s: %s", path, db->h ? sqlite3_errmsg(db->h) : "out of memory");
        sqlite3_close(db->h);
        free(db);
        return CG_E_DB;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, 5000);
    int rc = cg_db_exec(db, "PRAGMA foreign_keys = ON", error_r);
    if (rc == 0 && !ro) {
        /* journal_mode answers a row; exec ignores it. A read-only
         * connection cannot switch modes and follows the file's. */
        rc = cg_db_exec(db, "PRAGMA journal_mode = WAL", error_r);
    }
    /* a file that is not a database is refused here, not at first use */
    if (rc == 0)
        rc = cg_db_exec(db, "SELECT count(*) FROM sqlite_schema", error_r);
    if (rc < 0) {
        *error_r = cg_say("%s: not a usable database: %s", path, sqlite3_errmsg(db->h));
        cg_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void cg_db_close(cg_db *db)
{
    if (!db)
        return;
    sqlite3_close_v2(db->h);
    free(db);
}

int cg_db_exec(cg_db *db, const char *sql, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    char *err = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &err) != SQLITE_OK) {
        *error_r = cg_say("%s%s", "database: ", err ? err : sqlite3_errmsg(db->h));
        int code = sqlite3_extended_errcode(db->h) & 0xff;
        sqlite3_free(err);
        if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
            return CG_E_BUSY;
        if (code == SQLITE_CONSTRAINT)
            return CG_E_EXISTS;
        return CG_E_DB;
    }
    return 0;
}

int cg_db_begin(cg_db *db, const char **error_r)
{
    return cg_db_exec(db, "BEGIN IMMEDIATE", error_r);
}

int cg_db_begin_read(cg_db *db, const char **error_r)
{
    return cg_db_exec(db, "BEGIN", error_r);
}

int cg_db_commit(cg_db *db, const char **error_r)
{
    int rc = cg_db_exec(db, "COMMIT", error_r);
    if (rc < 0)
        cg_db_rollback(db);
    return rc;
}

void cg_db_rollback(cg_db *db)
{
    if (db && db->h && !sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

int cg_db_pragma_int(cg_db *db, const char *name, int64_t *out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA %s", name);
    sqlite3_stmt *st = NULL;
    int rc = CG_E_DB;
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        *error_r = cg_say("database: cannot read %s: %s", name, sqlite3_errmsg(db->h));
    }
    sqlite3_finalize(st);
    return rc;
}

int cg_db_migrate(cg_db *db, const char *const *migrations, size_t n,
                  const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (db->readonly) {
        *error_r = "database is open read-only: cannot migrate";
        return CG_E_INVAL;
    }
    int64_t v = 0;
    /* read inside the write transaction: two cpmgatectl init at once must
     * not both apply migration 1 */
    for (;;) {
        int rc = cg_db_begin(db, error_r);
        if (rc < 0)
            return rc;
        rc = cg_db_pragma_int(db, "user_version", &v, error_r);
        if (rc < 0) {
            cg_db_rollback(db);
            return rc;
        }
        if (v < 0 || (size_t)v > n) {
            cg_db_rollback(db);
            *error_r = cg_say("database schema version %lld is newer than this program knows (%zu)",
                              (long long)v, n);
            return CG_E_INVAL;
        }
        if ((size_t)v == n) {
            cg_db_rollback(db);
            return 0;
        }
        rc = cg_db_exec(db, migrations[v], error_r);
        if (rc == 0) {
            char set[64];
            snprintf(set, sizeof set, "PRAGMA user_version = %lld", (long long)v + 1);
            rc = cg_db_exec(db, set, error_r);
        }
        if (rc == 0)
            rc = cg_db_commit(db, error_r);
        if (rc < 0) {
            cg_db_rollback(db);
            return rc;
        }
    }
}

int cg_db_fsync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int cg_db_fsync_dir_of(const char *path)
{
    char tmp[4096];
    if (!cg_strlcpy(tmp, path, sizeof tmp))
        return CG_E_INVAL;
    return cg_db_fsync_path(dirname(tmp), true);
}
