/* tests/unit/store/test_policy_cache.c — store/policy_cache.c: a policy
 * recorded from a real store, written and read back, replays exactly the
 * calls the store makes (secrets included) and builds the same snapshot;
 * the file is 0600 and replaced atomically; a damaged, truncated or
 * foreign file is refused, never half used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "policy/snapshot.h"
#include "store/policy_cache.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "tests/unit/unit_util.h"

static char dir[256], db[300], cache[300];

/* ---- every visitor call as a line ----------------------------------------- */

#define S(x) ((x) ? (x) : "(null)")
static int d_principal(void *c, int64_t id, const char *n, const char *k, const char *m, bool e)
{
    cg_buf_fmt(c, "P %lld %s %s %s %d\n", (long long)id, S(n), S(k), S(m), e);
    return 0;
}
static int d_credential(void *c, int64_t id, int64_t pid, const char *t, const char *v,
                        const uint8_t *sec, size_t sl, const char *h1, const char *h2)
{
    cg_buf_fmt(c, "C %lld %lld %s %s %zu:", (long long)id, (long long)pid, S(t), S(v), sl);
    for (size_t i = 0; sec && i < sl; i++)
        cg_buf_fmt(c, "%02x", sec[i]);
    cg_buf_fmt(c, " %s %s\n", S(h1), S(h2));
    return 0;
}
static int d_group(void *c, int64_t id, const char *n)
{
    cg_buf_fmt(c, "G %lld %s\n", (long long)id, S(n));
    return 0;
}
static int d_member(void *c, int64_t g, int64_t p)
{
    cg_buf_fmt(c, "M %lld %lld\n", (long long)g, (long long)p);
    return 0;
}
static int d_rule(void *c, int64_t id, const char *e, const char *s, const char *sv,
                  const char *p, unsigned r)
{
    cg_buf_fmt(c, "R %lld %s %s %s %s %u\n", (long long)id, S(e), S(s), S(sv), S(p), r);
    return 0;
}
static int d_pubkey(void *c, int64_t id, const char *k, int64_t p, const char *a, const char *pem)
{
    cg_buf_fmt(c, "K %lld %s %lld %s %s\n", (long long)id, S(k), (long long)p, S(a), S(pem));
    return 0;
}
static int d_signed(void *c, const char *p)
{
    cg_buf_fmt(c, "S %s\n", S(p));
    return 0;
}
static int d_peer(void *c, const char *d, int64_t p, const char *a)
{
    cg_buf_fmt(c, "E %s %lld %s\n", S(d), (long long)p, S(a));
    return 0;
}
static const cg_pstore_visitor dump = {
    d_principal, d_credential, d_group, d_member, d_rule, d_pubkey, d_signed, d_peer,
};

/* ---- fixtures ------------------------------------------------------------- */

static cg_pstore *make_store(void)
{
    cg_pstore *s = NULL;
    const char *err = NULL;
    if (cg_pstore_open(db, CG_PSTORE_CREATE, &s, &err) != 0)
        fail_msg("create: %s", err);
    const uint8_t key[16] = { 0, 1, 2, 3, 0, 0xff, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", "alice", &err), 0);
    assert_int_equal(cg_pstore_principal_add(s, "bob", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_set_enabled(s, "bob", false, &err), 0);
    assert_int_equal(cg_pstore_cred_add(s, "alice", "psk", "id1", key, 16, NULL, NULL, NULL,
                                        &err), 0);
    assert_int_equal(cg_pstore_cred_add(s, "alice", "address", "127.0.0.1/32", NULL, 0, NULL,
                                        NULL, NULL, &err), 0);
    assert_int_equal(cg_pstore_group_add(s, "staff", &err), 0);
    assert_int_equal(cg_pstore_group_member(s, "staff", "alice", true, &err), 0);
    assert_int_equal(cg_pstore_rule_add(s, false, "@staff", "imap", "INBOX/*", 3, "c", NULL,
                                        &err), 0);
    assert_int_equal(cg_pstore_rule_add(s, true, "bob", "*", "*", 31, NULL, NULL, &err), 0);
    return s;
}

static char *load_text(int (*load)(void *, const cg_pstore_visitor *, void *, const char **),
                       void *src)
{
    cg_buf b;
    cg_buf_init(&b, 1 << 20);
    const char *err = NULL;
    if (load(src, &dump, &b, &err) != 0)
        fail_msg("load: %s", err);
    assert_false(b.failed);
    return b.p;
}

static int store_load(void *src, const cg_pstore_visitor *v, void *ctx, const char **err)
{
    return cg_pstore_load(src, v, ctx, err);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_recorded_policy_replays_the_store_exactly(void **state)
{
    cg_pstore *s = make_store();
    cg_pcache *rec = NULL, *back = NULL;
    const char *err = NULL;
    assert_int_equal(cg_pcache_record(s, &rec, &err), 0);
    assert_int_equal(cg_pcache_write(rec, cache, &err), 0);
    struct stat st;
    assert_int_equal(stat(cache, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    int64_t written = 0;
    assert_int_equal(cg_pcache_read(cache, &back, &written, &err), 0);
    assert_int_equal(written, (int64_t)st.st_mtime);
    char *want = load_text(store_load, s);
    char *got = load_text(cg_pcache_replay, back);
    assert_non_null(strstr(want, "16:0001020300ff0607"));  /* the PSK, NUL bytes and all */
    assert_non_null(strstr(want, "P 2 bob user (null) 0"));
    assert_string_equal(got, want);
    free(want);
    free(got);
    /* the snapshot built from the copy is the store's */
    cg_snapshot *a = NULL, *b = NULL;
    assert_int_equal(cg_snapshot_build(s, &a, &err), 0);
    assert_int_equal(cg_snapshot_build_with(cg_pcache_replay, back, &b, &err), 0);
    assert_int_equal(cg_snapshot_nprincipals(b), cg_snapshot_nprincipals(a));
    assert_int_equal(cg_snapshot_ngroups(b), 1);
    assert_false(cg_snapshot_principal_by_name(b, "bob")->enabled);
    cg_snapshot_release(a);
    cg_snapshot_release(b);
    cg_pcache_free(rec);
    cg_pcache_free(back);
    cg_pstore_close(s);
}

/* Rewrites byte `at` of the cache (or cuts it to `at` bytes). */
static void damage(long at, bool cut)
{
    if (cut) {
        assert_int_equal(truncate(cache, at), 0);
        return;
    }
    FILE *f = fopen(cache, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x20, f);
    fclose(f);
}

static void test_damaged_files_are_refused(void **state)
{
    cg_pstore *s = make_store();
    cg_pcache *rec = NULL, *back = NULL;
    const char *err = NULL;
    assert_int_equal(cg_pcache_record(s, &rec, &err), 0);
    struct { long at; bool cut; } cases[] = {
        { 0, false },     /* the header */
        { 30, false },    /* the digest */
        { 100, false },   /* the body */
        { -1, false },    /* the last byte */
        { 80, true },     /* cut */
        { 10, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(cg_pcache_write(rec, cache, &err), 0);
        struct stat st;
        assert_int_equal(stat(cache, &st), 0);
        damage(cases[i].at < 0 ? (long)st.st_size - 1 : cases[i].at, cases[i].cut);
        err = NULL;
        assert_int_equal(cg_pcache_read(cache, &back, NULL, &err), CG_E_PARSE);
        assert_non_null(err);
    }
    /* garbage of any length, and no file */
    FILE *f = fopen(cache, "w");
    fputs("SQLite format 3", f);
    fclose(f);
    assert_int_equal(cg_pcache_read(cache, &back, NULL, &err), CG_E_PARSE);
    unlink(cache);
    assert_int_equal(cg_pcache_read(cache, &back, NULL, &err), CG_E_NOTFOUND);
    /* a rewrite replaces the file whole and leaves no temporary beside it */
    assert_int_equal(cg_pcache_write(rec, cache, &err), 0);
    assert_int_equal(cg_pcache_write(rec, cache, &err), 0);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", cache);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(cg_pcache_read(cache, &back, NULL, &err), 0);
    cg_pcache_free(back);
    cg_pcache_free(rec);
    cg_pstore_close(s);
}

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-pcache-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db, sizeof db, "%s/policy.db", dir);
    snprintf(cache, sizeof cache, "%s/policy.cache", dir);
    return 0;
}

static int each_teardown(void **state)
{
    tu_remove_db(db);
    unlink(cache);
    return 0;
}

static int teardown(void **state)
{
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_recorded_policy_replays_the_store_exactly, each_teardown),
        cmocka_unit_test_teardown(test_damaged_files_are_refused, each_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
