/* db_copy.c — whole-database copies (see db_copy.h): the SQLite online
 * backup API from one read snapshot, quick_check, a file's SHA-256, and the
 * atomic install of a copy in place of a database. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"
#include "store/db_copy.h"

/* Pages per sqlite3_backup_step: small enough that each step is short,
 * large enough that a big database is not thousands of calls. */
#define COPY_PAGES 256

static int sql_fail(sqlite3 *h, const char *what, const char *path, const char **error_r)
{
    *error_r = cg_say("%s: %s: %s", path, what, h ? sqlite3_errmsg(h) : "cannot open");
    return CG_E_DB;
}

int cg_db_copy_online(const char *src, const char *dst, const char **error_r)
{
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        *error_r = cg_say("cannot create %s: %s", dst, strerror(e));
        return -e;
    }
    close(fd);
    sqlite3 *in = NULL, *out = NULL;
    int rc = 0;
    if (sqlite3_open_v2(src, &in, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = sql_fail(in, "cannot open", src, error_r);
        goto done;
    }
    sqlite3_busy_timeout(in, 5000);
    /* One read transaction for the whole copy: every step reads the same
     * snapshot, so a commit by the gateway neither restarts the copy nor
     * waits for it (WAL readers do not block the writer). */
    if (sqlite3_exec(in, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) !=
        SQLITE_OK) {
        rc = sql_fail(in, "cannot read", src, error_r);
        goto done;
    }
    if (sqlite3_open_v2(dst, &out, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = sql_fail(out, "cannot open", dst, error_r);
        goto done;
    }
    sqlite3_backup *b = sqlite3_backup_init(out, "main", in, "main");
    if (!b) {
        rc = sql_fail(out, "cannot start the copy", dst, error_r);
        goto done;
    }
    int step;
    while ((step = sqlite3_backup_step(b, COPY_PAGES)) == SQLITE_OK ||
           step == SQLITE_BUSY || step == SQLITE_LOCKED)
        if (step != SQLITE_OK)
            sqlite3_sleep(10);
    sqlite3_backup_finish(b);
    if (step != SQLITE_DONE) {
        *error_r = cg_say("%s: copy failed: %s", src, sqlite3_errstr(step));
        rc = CG_E_DB;
        goto done;
    }
    sqlite3_exec(in, "COMMIT", NULL, NULL, NULL);
    /* A copy of a WAL database says WAL in its header: make it one file. */
    if (sqlite3_exec(out, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK)
        rc = sql_fail(out, "cannot leave WAL mode", dst, error_r);
done:
    sqlite3_close(in);
    sqlite3_close(out);
    if (rc == 0)
        rc = cg_db_copy_check(dst, error_r);
    int synced = rc == 0 ? cg_db_fsync_path(dst, false) : 0;
    if (synced < 0) {
        *error_r = cg_say("cannot fsync %s: %s", dst, cg_strerror(synced));
        rc = CG_E_IO;
    }
    return rc;
}

int cg_db_copy_check(const char *path, const char **error_r)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int rc = CG_E_DB;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
        rc = sql_fail(h, "cannot open", path, error_r);
    } else if (sqlite3_step(st) != SQLITE_ROW) {
        rc = sql_fail(h, "cannot check", path, error_r);
    } else {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v && strcmp(v, "ok") == 0)
            rc = 0;
        else
            *error_r = cg_say("%s: damaged: %s", path, v ? v : "no answer");
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return rc;
}

int cg_file_sha256(const char *path, uint8_t out[32], uint64_t *size_r, const char **error_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        *error_r = cg_say("cannot open %s: %s", path, strerror(e));
        return -e;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : CG_E_CRYPTO;
    uint64_t size = 0;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            *error_r = cg_say("cannot read %s: %s", path, strerror(-rc));
            break;
        }
        size += (uint64_t)n;
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
            rc = CG_E_CRYPTO;
    }
    unsigned len = 0;
    if (rc == 0 && EVP_DigestFinal_ex(md, out, &len) != 1)
        rc = CG_E_CRYPTO;
    if (rc == CG_E_CRYPTO)
        *error_r = "SHA-256 failed";
    EVP_MD_CTX_free(md);
    close(fd);
    *size_r = size;
    return rc;
}

static int copy_fd(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            off += w;
        }
    }
}

int cg_file_install(const char *src, const char *dst, const char **error_r)
{
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.restoring", dst);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;
        *error_r = cg_say("cannot open %s: %s", src, strerror(e));
        return -e;
    }
    unlink(aside); /* a partial one from an interrupted restore */
    int out = open(aside, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        int e = errno;
        *error_r = cg_say("cannot create %s: %s", aside, strerror(e));
        close(in);
        return -e;
    }
    /* The file replaced keeps its owner (root restores a database the
     * gateway's user must open); as another user it is ours already. */
    struct stat old;
    int rc = 0;
    if (stat(dst, &old) == 0 && (old.st_uid != geteuid() || old.st_gid != getegid()) &&
        fchown(out, old.st_uid, old.st_gid) < 0)
        rc = -errno;
    if (rc == 0)
        rc = copy_fd(in, out);
    if (rc == 0 && fsync(out) < 0)
        rc = -errno;
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        *error_r = cg_say("cannot write %s: %s", aside, strerror(-rc));
        unlink(aside);
        return rc;
    }
    /* The database replaced, with its WAL, goes aside as "<dst>.pre-restore"
     * (a pair SQLite opens together), so nothing committed is lost. */
    char pre[4200], from[4200], to[4200];
    snprintf(pre, sizeof pre, "%s.pre-restore", dst);
    static const char *const sides[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3 && rc == 0; i++) {
        snprintf(to, sizeof to, "%s%s", pre, sides[i]);
        if (unlink(to) < 0 && errno != ENOENT)
            rc = -errno;
    }
    for (int i = 0; i < 3 && rc == 0; i++) {
        snprintf(from, sizeof from, "%s%s", dst, sides[i]);
        snprintf(to, sizeof to, "%s%s", pre, sides[i]);
        /* the -shm is rebuilt from the -wal: never carried over */
        if ((i == 2 ? unlink(from) : rename(from, to)) < 0 && errno != ENOENT)
            rc = -errno;
    }
    if (rc < 0) {
        *error_r = cg_say("cannot move %s aside to %s: %s", dst, pre, strerror(-rc));
        unlink(aside);
        return rc;
    }
    if (rename(aside, dst) < 0) {
        int e = errno;
        *error_r = cg_say("cannot rename %s to %s: %s", aside, dst, strerror(e));
        unlink(aside);
        return -e;
    }
    if (cg_db_fsync_dir_of(dst) < 0) {
        *error_r = cg_say("cannot fsync the directory of %s", dst);
        return CG_E_IO;
    }
    return 0;
}
