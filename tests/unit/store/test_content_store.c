/* tests/unit/store/test_content_store.c — store/content_store.c on a real SQLite file:
 * record, lookup, decoupled validation (right and wrong size/hash),
 * clearing and forgetting single paths and subtrees, and a second
 * connection seeing the first one's commits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "store/content_store.h"
#include "tests/unit/unit_util.h"

static char dir[512], file[600];

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-content-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(file, sizeof file, "%s/content.db", dir);
    return 0;
}

static int teardown(void **state)
{
    tu_remove_db(file);
    rmdir(dir);
    return 0;
}

static void hash_of(int v, uint8_t h[32])
{
    memset(h, v, 32);
}

static cg_content_store *open_rw(void)
{
    cg_content_store *cs = NULL;
    const char *err = NULL;
    int rc = cg_content_open(file, false, &cs, &err);
    if (rc != 0)
        fail_msg("open: %s", err ? err : "?");
    return cs;
}

static void test_record_lookup_validate(void **state)
{
    cg_content_store *cs = open_rw();
    uint8_t h1[32], h2[32];
    hash_of(0x11, h1);
    hash_of(0x22, h2);
    const char *err;
    cg_content_rec r;
    assert_int_equal(cg_content_lookup(cs, "/c/a.txt", &r, &err), CG_E_NOTFOUND);
    assert_int_equal(cg_content_record(cs, "/c/a.txt", 10, h1, "alice", "s1.1", NULL, &err), 0);
    assert_int_equal(cg_content_lookup(cs, "/c/a.txt", &r, &err), 0);
    assert_string_equal(r.path, "/c/a.txt");
    assert_int_equal(r.size, 10);
    assert_memory_equal(r.sha256, h1, 32);
    assert_string_equal(r.uploader, "alice");
    assert_string_equal(r.txid, "s1.1");
    assert_false(r.validated);
    assert_string_equal(r.key_id, "");
    assert_int_equal(strlen(r.time), 27);
    /* decoupled manifest: wrong size, wrong hash, then right */
    assert_int_equal(cg_content_mark_validated(cs, "/c/a.txt", 11, h1, "k1", &err), CG_E_AUTH);
    assert_non_null(strstr(err, "size"));
    assert_int_equal(cg_content_mark_validated(cs, "/c/a.txt", 10, h2, "k1", &err), CG_E_AUTH);
    assert_non_null(strstr(err, "SHA-256"));
    assert_int_equal(cg_content_lookup(cs, "/c/a.txt", &r, &err), 0);
    assert_false(r.validated);
    assert_int_equal(cg_content_mark_validated(cs, "/c/none", 10, h1, "k1", &err), CG_E_NOTFOUND);
    assert_int_equal(cg_content_mark_validated(cs, "/c/a.txt", 10, h1, "k1", &err), 0);
    assert_int_equal(cg_content_lookup(cs, "/c/a.txt", &r, &err), 0);
    assert_true(r.validated);
    assert_string_equal(r.key_id, "k1");
    /* a new upload replaces the record and its validation */
    assert_int_equal(cg_content_record(cs, "/c/a.txt", 12, h2, "bob", "s2.4", NULL, &err), 0);
    assert_int_equal(cg_content_lookup(cs, "/c/a.txt", &r, &err), 0);
    assert_false(r.validated);
    assert_int_equal(r.size, 12);
    assert_string_equal(r.uploader, "bob");
    /* a self-contained upload is recorded validated */
    assert_int_equal(cg_content_record(cs, "/c/b.txt", 1, h1, "alice", "s3.1", "k2", &err), 0);
    assert_int_equal(cg_content_lookup(cs, "/c/b.txt", &r, &err), 0);
    assert_true(r.validated);
    assert_string_equal(r.key_id, "k2");
    /* bad input changes nothing */
    assert_int_equal(cg_content_record(cs, "relative", 1, h1, "a", "t", NULL, &err), CG_E_INVAL);
    assert_int_equal(cg_content_record(cs, "/x", 1, h1, NULL, "t", NULL, &err), CG_E_INVAL);
    assert_int_equal(cg_content_lookup(cs, "/x", &r, &err), CG_E_NOTFOUND);
    cg_content_close(cs);
}

static void rec(cg_content_store *cs, const char *path)
{
    uint8_t h[32];
    hash_of(0x33, h);
    assert_int_equal(cg_content_record(cs, path, 3, h, "alice", "t", "k", NULL), 0);
}

static bool validated(cg_content_store *cs, const char *path)
{
    cg_content_rec r;
    assert_int_equal(cg_content_lookup(cs, path, &r, NULL), 0);
    return r.validated;
}

static bool exists(cg_content_store *cs, const char *path)
{
    cg_content_rec r;
    return cg_content_lookup(cs, path, &r, NULL) == 0;
}

static void test_clear_and_forget(void **state)
{
    cg_content_store *cs = open_rw();
    const char *paths[] = { "/t/a", "/t/a/x", "/t/a/y/z", "/t/ab", "/t/a%/q", "/t/a_/q", "/t/b" };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        rec(cs, paths[i]);
    /* PUT onto one path */
    assert_int_equal(cg_content_clear(cs, "/t/b", false, NULL), 0);
    assert_false(validated(cs, "/t/b"));
    assert_true(validated(cs, "/t/a"));
    /* MOVE/COPY onto a collection clears everything below it, only that */
    assert_int_equal(cg_content_clear(cs, "/t/a/", true, NULL), 0);
    assert_false(validated(cs, "/t/a"));
    assert_false(validated(cs, "/t/a/x"));
    assert_false(validated(cs, "/t/a/y/z"));
    assert_true(validated(cs, "/t/ab"));
    assert_true(validated(cs, "/t/a%/q"));
    /* % and _ are no wildcards */
    assert_int_equal(cg_content_forget(cs, "/t/a%", true, NULL), 0);
    assert_false(exists(cs, "/t/a%/q"));
    assert_true(exists(cs, "/t/a_/q"));
    assert_true(exists(cs, "/t/ab"));
    assert_int_equal(cg_content_forget(cs, "/t/a", true, NULL), 0);
    assert_false(exists(cs, "/t/a"));
    assert_false(exists(cs, "/t/a/y/z"));
    assert_true(exists(cs, "/t/ab"));
    assert_int_equal(cg_content_forget(cs, "/t/ab", false, NULL), 0);
    assert_false(exists(cs, "/t/ab"));
    assert_true(exists(cs, "/t/a_/q"));
    cg_content_close(cs);
}

static void test_second_connection_and_readonly(void **state)
{
    cg_content_store *w = open_rw(), *other = open_rw(), *ro = NULL;
    assert_int_equal(cg_content_open(file, true, &ro, NULL), 0);
    rec(w, "/shared/x");
    assert_true(exists(other, "/shared/x"));
    assert_true(exists(ro, "/shared/x"));
    uint8_t h[32];
    hash_of(1, h);
    const char *err = NULL;
    assert_int_equal(cg_content_record(ro, "/shared/y", 1, h, "a", "t", NULL, &err), CG_E_INVAL);
    assert_false(exists(w, "/shared/y"));
    cg_content_close(ro);
    cg_content_close(other);
    cg_content_close(w);
    /* reopened, the record is still there */
    w = open_rw();
    assert_true(exists(w, "/shared/x"));
    cg_content_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_lookup_validate),
        cmocka_unit_test(test_clear_and_forget),
        cmocka_unit_test(test_second_connection_and_readonly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
