/* tests/unit/policy/test_snapshot.c — policy/snapshot.c on a real policy database: what a
 * snapshot holds (groups, keys, signed-only paths, peers, rules), that an
 * allow rule which cannot be compiled is skipped while a deny rule which
 * cannot be compiled keeps the old snapshot in force, that a commit by
 * another connection is noticed and published (a disabled principal, a
 * removed PSK), and that concurrent acquire/publish never frees a snapshot
 * a reader holds (run under ASan). */
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "policy/acl.h"
#include "common/cg_error.h"
#include "store/db.h"
#include "policy/identity.h"
#include "store/policy_keys.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/unit/unit_util.h"

static char dir[256], db_path[300];
static cg_pstore *rw, *ro;
static int64_t bob_psk_id;

static void ok(int rc, const char *what, const char *err)
{
    if (rc != 0)
        fail_msg("%s: %d %s", what, rc, err ? err : "");
}

/* Rules are written with SQL here: the rule edits are another module's;
 * this test is about what the snapshot makes of the table. */
/* Whether another connection committed since the last poll of ro; the
 * poll itself must succeed. */
static bool polled_change(void)
{
    bool changed = true;
    assert_int_equal(cg_pstore_poll_changed(ro, &changed, NULL), 0);
    return changed;
}

/* Whether a reload on ro published a new snapshot; it must not fail. */
static bool reloaded(const char **err)
{
    bool published = true;
    assert_int_equal(cg_snapshot_reload_if_changed(ro, &published, err), 0);
    return published;
}

static int64_t add_rule(const char *effect, const char *subject, const char *pattern)
{
    sqlite3 *h = cg_db_handle(cg_pstore_db(rw));
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "INSERT INTO acl_rule (effect, subject, service, pattern, "
                                        "rights, created) VALUES (?1, ?2, 'http', ?3, 3, 'now')",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, effect, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, pattern, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    return sqlite3_last_insert_rowid(h);
}

static void remove_rule(int64_t id)
{
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM acl_rule WHERE id = %lld", (long long)id);
    assert_int_equal(cg_db_exec(cg_pstore_db(rw), sql, NULL), 0);
}

static char *ed25519_pem(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    /* the BIO's data is not NUL-terminated: copy exactly n bytes */
    char *pem = malloc((size_t)n + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(b);
    EVP_PKEY_free(k);
    return pem;
}

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-snapshot-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/policy.db", dir);
    const char *err = NULL;
    static const uint8_t key[32] = { 7 };
    ok(cg_pstore_open(db_path, CG_PSTORE_CREATE, &rw, &err), "open", err);
    ok(cg_pstore_principal_add(rw, "alice", "user", NULL, &err), "alice", err);
    ok(cg_pstore_principal_add(rw, "bob", "user", NULL, &err), "bob", err);
    ok(cg_pstore_principal_add(rw, "carol", "server", NULL, &err), "carol", err);
    ok(cg_pstore_cred_add(rw, "bob", "psk", "bob-id", key, sizeof key, NULL, NULL, &bob_psk_id,
                          &err), "psk", err);
    ok(cg_pstore_cred_add(rw, "alice", "address", "127.0.0.0/8", NULL, 0, NULL, NULL, NULL, &err),
       "address", err);
    ok(cg_pstore_group_add(rw, "staff", &err), "staff", err);
    ok(cg_pstore_group_add(rw, "ops", &err), "ops", err);
    ok(cg_pstore_group_member(rw, "staff", "alice", true, &err), "member", err);
    ok(cg_pstore_group_member(rw, "staff", "bob", true, &err), "member", err);
    ok(cg_pstore_group_member(rw, "ops", "bob", true, &err), "member", err);
    char *pem = ed25519_pem();
    ok(cg_pkeys_key_add(rw, "alice", "alice-k1", pem, NULL, &err), "key", err);
    free(pem);
    ok(cg_pkeys_require_signed_add(rw, "/signed/*", &err), "require-signed", err);
    ok(cg_pkeys_peer_add(rw, "remote.example", "carol", "required", &err), "peer", err);
    ok(cg_pkeys_peer_add(rw, "lax.example", "carol", "optional", &err), "peer", err);
    add_rule("allow", "@staff", "/content/*");
    ok(cg_pstore_open(db_path, CG_PSTORE_READONLY, &ro, &err), "open read-only", err);
    return 0;
}

static int teardown(void **state)
{
    cg_snapshot_publish(NULL);
    cg_pstore_close(ro);
    cg_pstore_close(rw);
    tu_remove_db(db_path);
    rmdir(dir);
    return 0;
}

static cg_snapshot *build(cg_pstore *s)
{
    cg_snapshot *snap = NULL;
    const char *err = NULL;
    ok(cg_snapshot_build(s, &snap, &err), "build", err);
    return snap;
}

static void test_nothing_published_yet(void **state)
{
    assert_null(cg_snapshot_acquire());
}

static void test_contents(void **state)
{
    cg_snapshot *s = build(ro);
    assert_int_equal(cg_snapshot_nprincipals(s), 3);
    assert_int_equal(cg_snapshot_ngroups(s), 2);
    const cg_principal *alice = cg_snapshot_principal_by_name(s, "alice");
    const cg_principal *bob = cg_snapshot_principal_by_name(s, "bob");
    const cg_principal *carol = cg_snapshot_principal_by_name(s, "carol");
    assert_non_null(alice);
    assert_int_equal(alice->ngroups, 1);
    assert_string_equal(cg_snapshot_group_name(s, alice->groups[0]), "staff");
    assert_int_equal(bob->ngroups, 2);
    assert_true(bob->groups[0] < bob->groups[1]); /* sorted */
    const char *g0 = cg_snapshot_group_name(s, bob->groups[0]);
    const char *g1 = cg_snapshot_group_name(s, bob->groups[1]);
    assert_true((strcmp(g0, "staff") == 0 && strcmp(g1, "ops") == 0) ||
                (strcmp(g0, "ops") == 0 && strcmp(g1, "staff") == 0));
    assert_int_equal(carol->ngroups, 0);
    assert_null(cg_snapshot_group_name(s, 2));

    /* by id: the same entries, and no entry for an id nobody has */
    assert_ptr_equal(cg_snapshot_principal_by_id(s, alice->id), alice);
    assert_ptr_equal(cg_snapshot_principal_by_id(s, bob->id), bob);
    assert_ptr_equal(cg_snapshot_principal_by_id(s, carol->id), carol);
    assert_null(cg_snapshot_principal_by_id(s, 0));
    assert_null(cg_snapshot_principal_by_id(s, carol->id + 1000));

    const cg_pubkey *k = cg_snapshot_pubkey(s, "alice-k1");
    assert_non_null(k);
    assert_string_equal(k->alg, "ed25519");
    assert_int_equal(k->principal_idx, alice->idx);
    assert_non_null(k->evp);
    assert_true(EVP_PKEY_is_a(k->evp, "ED25519"));
    assert_non_null(strstr(k->pem, "BEGIN PUBLIC KEY"));
    assert_null(cg_snapshot_pubkey(s, "alice-k2"));

    assert_int_equal(cg_snapshot_nrequire_signed(s), 1);
    assert_string_equal(cg_snapshot_require_signed(s, 0), "/signed/*");
    assert_null(cg_snapshot_require_signed(s, 1));

    const cg_peer *p = cg_snapshot_peer(s, "Remote.Example"); /* DNS names: any case */
    assert_non_null(p);
    assert_int_equal(p->principal_idx, carol->idx);
    assert_true(p->auth_required);
    assert_false(cg_snapshot_peer(s, "lax.example")->auth_required);
    assert_null(cg_snapshot_peer(s, "other.example"));

    assert_non_null(cg_snapshot_acl(s));
    cg_snapshot_release(s);
}

static void test_rule_that_does_not_compile(void **state)
{
    const char *err = NULL;
    /* an allow rule that cannot be compiled grants nothing: skipped */
    int64_t good = add_rule("allow", "alice", "/a/*");
    int64_t bad_allow = add_rule("allow", "alice", "/x/${user");
    cg_snapshot *s = build(ro);
    assert_non_null(cg_acl_rule(cg_snapshot_acl(s), good));
    assert_null(cg_acl_rule(cg_snapshot_acl(s), bad_allow));
    cg_snapshot_release(s);

    /* a deny rule that cannot be compiled must not silently vanish: the
     * build fails, and the published snapshot stays as it was */
    cg_snapshot_publish(build(ro));
    assert_true(polled_change()); /* consume the edits above */
    cg_snapshot *before = cg_snapshot_acquire();
    int64_t bad_deny = add_rule("deny", "bob", "/y/${user");
    s = NULL;
    assert_true(cg_snapshot_build(ro, &s, &err) < 0);
    assert_null(s);
    assert_non_null(err);
    char idtext[32];
    snprintf(idtext, sizeof idtext, "%lld", (long long)bad_deny);
    assert_non_null(strstr(err, idtext));
    err = NULL;
    bool published = true;
    assert_true(cg_snapshot_reload_if_changed(ro, &published, &err) < 0);
    assert_false(published);
    assert_non_null(err);
    cg_snapshot *after = cg_snapshot_acquire();
    assert_ptr_equal(before, after);
    cg_snapshot_release(after);
    /* fixed: the next change publishes again */
    remove_rule(bad_deny);
    remove_rule(bad_allow);
    assert_true(reloaded(&err));
    after = cg_snapshot_acquire();
    assert_true(cg_snapshot_generation(after) > cg_snapshot_generation(before));
    cg_snapshot_release(after);
    cg_snapshot_release(before);
}

static void test_reload_after_commit_by_another_connection(void **state)
{
    const char *err = NULL;
    cg_snapshot_publish(build(ro));
    (void)polled_change();
    assert_false(reloaded(&err)); /* nothing committed */
    cg_snapshot *old = cg_snapshot_acquire();
    assert_true(cg_snapshot_principal_by_name(old, "alice")->enabled);

    ok(cg_pstore_principal_set_enabled(rw, "alice", false, &err), "disable", err);
    assert_true(reloaded(&err));
    assert_false(reloaded(&err));
    cg_snapshot *now = cg_snapshot_acquire();
    assert_ptr_not_equal(now, old);
    assert_true(cg_snapshot_generation(now) > cg_snapshot_generation(old));
    const cg_principal *a = cg_snapshot_principal_by_name(now, "alice");
    assert_non_null(a);
    assert_false(a->enabled);
    /* an address credential still finds her, disabled, so the refusal can
     * say why */
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    assert_ptr_equal(cg_identity_by_address(now, (struct sockaddr *)&sin), a);
    /* the reader that held the old snapshot still sees the old state */
    assert_true(cg_snapshot_principal_by_name(old, "alice")->enabled);
    cg_snapshot_release(now);

    const uint8_t *key;
    size_t len;
    assert_non_null(cg_identity_by_psk(old, "bob-id", 6, &key, &len));
    ok(cg_pstore_cred_remove(rw, "bob", bob_psk_id, &err), "remove psk", err);
    assert_true(reloaded(&err));
    now = cg_snapshot_acquire();
    assert_null(cg_identity_by_psk(now, "bob-id", 6, &key, &len));
    assert_non_null(cg_identity_by_psk(old, "bob-id", 6, &key, &len));
    cg_snapshot_release(now);
    cg_snapshot_release(old);

    /* a refused edit commits nothing, so nothing is noticed */
    assert_true(cg_pstore_principal_add(rw, "alice", "user", NULL, &err) < 0);
    assert_false(polled_change());
    ok(cg_pstore_principal_set_enabled(rw, "alice", true, &err), "enable", err);
    assert_true(polled_change());
    assert_false(polled_change());
}

static void test_ambiguous_login_identifies_no_one(void **state)
{
    const char *err = NULL;
    ok(cg_pstore_principal_add(rw, "dan", "user", "dan.m", &err), "dan", err);
    cg_snapshot *s = build(ro);
    assert_string_equal(cg_snapshot_principal_by_mailbox(s, "dan.m")->name, "dan");
    cg_snapshot_release(s);
    /* the store refuses this; a hand edit of the file does not */
    assert_int_equal(cg_db_exec(cg_pstore_db(rw),
                                "UPDATE principal SET mailbox = 'dan.m' WHERE name = 'carol'",
                                &err), 0);
    s = build(ro);
    assert_null(cg_snapshot_principal_by_mailbox(s, "dan.m"));
    assert_non_null(cg_snapshot_principal_by_mailbox(s, "alice"));
    cg_snapshot_release(s);
    assert_int_equal(cg_db_exec(cg_pstore_db(rw),
                                "UPDATE principal SET mailbox = NULL WHERE name = 'carol'", &err),
                     0);
    ok(cg_pstore_principal_remove(rw, "dan", false, &err), "remove dan", err);
}

static void test_one_network_twice_identifies_no_one(void **state)
{
    const char *err = NULL;
    /* two spellings of 10.5.0.0/16 (cpmgatectl would store one form) */
    ok(cg_pstore_cred_add(rw, "alice", "address", "10.5.0.0/16", NULL, 0, NULL, NULL, NULL, &err),
       "address", err);
    ok(cg_pstore_cred_add(rw, "carol", "address", "::ffff:10.5.0.0/112", NULL, 0, NULL, NULL,
                          NULL, &err), "address", err);
    ok(cg_pstore_cred_add(rw, "carol", "address", "10.5.7.0/24", NULL, 0, NULL, NULL, NULL, &err),
       "address", err);
    cg_snapshot *s = build(ro);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a050101) };
    assert_null(cg_identity_by_address(s, (struct sockaddr *)&sin));
    /* a longer prefix that is unambiguous still decides */
    sin.sin_addr.s_addr = htonl(0x0a050701);
    assert_string_equal(cg_identity_by_address(s, (struct sockaddr *)&sin)->name, "carol");
    cg_snapshot_release(s);
}

/* ---- concurrency ------------------------------------------------------------ */

enum { READERS = 4, PUBLISHES = 150 };
static atomic_bool stop;

/* cmocka's assertions are not for other threads: readers count problems */
static atomic_int reader_errors;

static void *reader(void *arg)
{
    uint64_t last = 0;
    unsigned long n = 0;
    while (!atomic_load(&stop) || n < 1000) {
        cg_snapshot *s = cg_snapshot_acquire();
        if (!s) {
            atomic_fetch_add(&reader_errors, 1);
            break;
        }
        uint64_t g = cg_snapshot_generation(s);
        /* a thread never goes back to an older policy */
        if (g < last)
            atomic_fetch_add(&reader_errors, 1);
        last = g;
        /* touch the snapshot's memory: ASan reports any use after free */
        const cg_principal *p = cg_snapshot_principal_by_name(s, "bob");
        if (!p || strcmp(p->name, "bob") != 0)
            atomic_fetch_add(&reader_errors, 1);
        if (p && n % 7 == 0) {
            /* hold a second reference across other threads' publishes */
            cg_snapshot *again = cg_snapshot_ref(s);
            cg_snapshot_release(s);
            sched_yield();
            if (strcmp(cg_snapshot_principal(again, p->idx)->name, "bob") != 0)
                atomic_fetch_add(&reader_errors, 1);
            s = again;
        }
        cg_snapshot_release(s);
        n++;
    }
    return (void *)n;
}

static void test_concurrent_acquire_and_publish(void **state)
{
    cg_snapshot_publish(build(ro));
    pthread_t t[READERS];
    atomic_store(&stop, false);
    atomic_store(&reader_errors, 0);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, NULL), 0);
    uint64_t first = 0;
    for (int i = 0; i < PUBLISHES; i++) {
        cg_snapshot *s = build(ro);
        if (!first)
            first = cg_snapshot_generation(s);
        cg_snapshot_publish(s);
        if (i % 10 == 0)
            sched_yield();
    }
    atomic_store(&stop, true);
    for (int i = 0; i < READERS; i++) {
        void *n;
        assert_int_equal(pthread_join(t[i], &n), 0);
        assert_true((unsigned long)n >= 1000);
    }
    assert_int_equal(atomic_load(&reader_errors), 0);
    cg_snapshot *s = cg_snapshot_acquire();
    assert_int_equal(cg_snapshot_generation(s), first + PUBLISHES - 1);
    cg_snapshot_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_published_yet),
        cmocka_unit_test(test_contents),
        cmocka_unit_test(test_rule_that_does_not_compile),
        cmocka_unit_test(test_reload_after_commit_by_another_connection),
        cmocka_unit_test(test_ambiguous_login_identifies_no_one),
        cmocka_unit_test(test_one_network_twice_identifies_no_one),
        cmocka_unit_test(test_concurrent_acquire_and_publish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
