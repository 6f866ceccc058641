/* tests/unit/store/test_db_copy.c — store/db_copy.c on real SQLite files:
 * the online copy holds what was committed (also what is still only in the
 * WAL) and not what a writer has not committed, is one file in rollback
 * mode and never overwrites; quick_check refuses a damaged file; the
 * SHA-256 of a file; install replaces a database with its WAL and keeps
 * the old pair aside as .pre-restore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db_copy.h"

static char dir[512];

static const char *at(const char *name)
{
    static char p[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-dbcopy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    return h;
}

static void exec(sqlite3 *h, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

static int64_t count(const char *path)
{
    sqlite3 *h = open_db(path);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return n;
}

/* A WAL database with n committed rows that are still in its -wal. */
static sqlite3 *live_db(const char *path, int n)
{
    sqlite3 *h = open_db(path);
    exec(h, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
            " CREATE TABLE t (x)");
    for (int i = 0; i < n; i++)
        exec(h, "INSERT INTO t VALUES (randomblob(100))");
    return h;
}

static void test_online_copy_is_the_committed_state_in_one_file(void **state)
{
    sqlite3 *w = live_db(at("live.db"), 50);
    assert_int_equal(access(at("live.db-wal"), F_OK), 0);
    exec(w, "BEGIN; INSERT INTO t VALUES (1)"); /* not committed */
    const char *err = NULL;
    assert_int_equal(cg_db_copy_online(at("live.db"), at("copy.db"), &err), 0);
    exec(w, "COMMIT");
    sqlite3_close(w);
    assert_int_equal(count(at("copy.db")), 50);
    assert_int_not_equal(access(at("copy.db-wal"), F_OK), 0);
    sqlite3 *c = open_db(at("copy.db"));
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "delete");
    sqlite3_finalize(st);
    sqlite3_close(c);
    /* an existing file is never overwritten */
    assert_true(cg_db_copy_online(at("live.db"), at("copy.db"), &err) < 0);
    assert_non_null(strstr(err, "copy.db"));
    assert_int_equal(count(at("copy.db")), 50);
    assert_int_equal(cg_db_copy_check(at("copy.db"), &err), 0);
}

static void test_check_refuses_a_damaged_file(void **state)
{
    sqlite3 *w = live_db(at("d.db"), 200);
    exec(w, "CREATE INDEX tx ON t (x)");
    sqlite3_close(w); /* the last close checkpoints into the file */
    FILE *f = fopen(at("d.db"), "r+b");
    assert_non_null(f);
    fseek(f, 3 * 4096 + 100, SEEK_SET);
    for (int i = 0; i < 64; i++)
        fputc(0x5a, f);
    fclose(f);
    const char *err = NULL;
    assert_true(cg_db_copy_check(at("d.db"), &err) < 0);
    assert_non_null(err);
}

static void test_sha256_of_a_file(void **state)
{
    FILE *f = fopen(at("abc"), "w");
    fputs("abc", f);
    fclose(f);
    uint8_t h[32];
    uint64_t size = 0;
    char hex[65];
    const char *err = NULL;
    assert_int_equal(cg_file_sha256(at("abc"), h, &size, &err), 0);
    cg_hex_encode(h, sizeof h, hex);
    assert_int_equal(size, 3);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(cg_file_sha256(at("missing"), h, &size, &err) < 0);
}

static void test_install_replaces_the_database_and_keeps_the_old_one(void **state)
{
    sqlite3 *w = live_db(at("new.db"), 3);
    sqlite3_close(w);
    /* the target: 7 rows, all still in its -wal (copied while the writer
     * has it open, as a stopped gateway can leave a database) */
    w = live_db(at("old.db"), 7);
    assert_int_equal(system(cg_say("cp '%s' '%s' && cp '%s' '%s'", at("old.db"), at("tgt.db"),
                                   at("old.db-wal"), at("tgt.db-wal"))), 0);
    sqlite3_close(w);
    assert_int_equal(access(at("tgt.db-wal"), F_OK), 0);
    /* 3 rows after: the old -wal was not replayed into the new file */
    const char *err = NULL;
    assert_int_equal(cg_file_install(at("new.db"), at("tgt.db"), &err), 0);
    assert_int_equal(count(at("tgt.db")), 3);
    assert_int_equal(access(at("tgt.db.restoring"), F_OK), -1);
    assert_int_equal(access(at("tgt.db.pre-restore"), F_OK), 0);
    assert_int_equal(access(at("tgt.db.pre-restore-wal"), F_OK), 0);
    assert_int_equal(count(at("tgt.db.pre-restore")), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_copy_is_the_committed_state_in_one_file),
        cmocka_unit_test(test_check_refuses_a_damaged_file),
        cmocka_unit_test(test_sha256_of_a_file),
        cmocka_unit_test(test_install_replaces_the_database_and_keeps_the_old_one),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
