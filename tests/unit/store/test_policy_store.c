/* tests/unit/store/test_policy_store.c — store/db.c and store/policy_store.c on real SQLite
 * files: creation mode 0600 under any umask, no accidental creation, junk
 * and uninitialised files refused, migrations idempotent, every edit one
 * transaction with its policy_log row (a refused edit leaves no trace),
 * validation of names and credentials, read-only stores refusing edits,
 * and the load visitor. */
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "store/db.h"
#include "store/policy_schema.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "tests/unit/unit_util.h"

static char dir[256], path[300];

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-pstore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    rmdir(dir);
    return 0;
}

static int each_setup(void **state)
{
    static int n;
    snprintf(path, sizeof path, "%s/policy-%d.db", dir, n++);
    return 0;
}

static int each_teardown(void **state)
{
    tu_remove_db(path);
    return 0;
}

static cg_pstore *create(void)
{
    cg_pstore *s = NULL;
    const char *err = NULL;
    if (cg_pstore_open(path, CG_PSTORE_CREATE, &s, &err) != 0)
        fail_msg("create: %s", err);
    return s;
}

/* Whether another connection committed since the last poll; the poll
 * itself must succeed. */
static bool polled_change(cg_pstore *s)
{
    bool changed = true;
    assert_int_equal(cg_pstore_poll_changed(s, &changed, NULL), 0);
    return changed;
}

static int64_t count(cg_pstore *s, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(cg_db_handle(cg_pstore_db(s)), sql, -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---- files -------------------------------------------------------------------- */

static void test_created_mode_0600_under_umask_0(void **state)
{
    mode_t old = umask(0);
    cg_pstore *s = create();
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    cg_pstore_close(s);
}

static void test_missing_file_is_not_created(void **state)
{
    cg_pstore *s = NULL;
    const char *err = NULL;
    assert_true(cg_pstore_open(path, 0, &s, &err) < 0);
    assert_non_null(err);
    assert_true(cg_pstore_open(path, CG_PSTORE_READONLY, &s, &err) < 0);
    assert_null(s);
    assert_int_equal(access(path, F_OK), -1);
}

static void test_junk_and_uninitialised_files_are_refused(void **state)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    for (int i = 0; i < 64; i++)
        assert_int_equal(write(fd, "not a database, really\n", 23), 23);
    close(fd);
    cg_pstore *s = NULL;
    const char *err = NULL;
    assert_true(cg_pstore_open(path, 0, &s, &err) < 0);
    assert_non_null(strstr(err, path));
    tu_remove_db(path);

    /* an empty SQLite file: the gateway must not start on it */
    cg_db *db = NULL;
    assert_int_equal(cg_db_open(path, CG_DB_CREATE, &db, &err), 0);
    cg_db_close(db);
    assert_true(cg_pstore_open(path, CG_PSTORE_READONLY, &s, &err) < 0);
    assert_non_null(strstr(err, "cpmgatectl init"));
}

static void test_migrations_are_idempotent(void **state)
{
    cg_pstore *s = create();
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, NULL), 0);
    cg_pstore_close(s);
    s = create(); /* init again */
    assert_int_equal(count(s, "principal"), 1);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(cg_db_handle(cg_pstore_db(s)), "PRAGMA user_version", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), (int)(sizeof cg_policy_migrations /
                                                      sizeof cg_policy_migrations[0]));
    sqlite3_finalize(st);
    /* a schema newer than this program is refused, not guessed at */
    assert_int_equal(cg_db_exec(cg_pstore_db(s), "PRAGMA user_version = 99", NULL), 0);
    cg_pstore_close(s);
    const char *err = NULL;
    assert_true(cg_pstore_open(path, 0, &s, &err) < 0);
    assert_non_null(strstr(err, "newer"));
}

/* ---- edits -------------------------------------------------------------------- */

static void test_refused_edits_leave_no_trace(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    static const uint8_t key[16] = { 1 };
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_cred_add(s, "alice", "psk", "id1", key, 16, NULL, NULL, NULL, &err),
                     0);
    int64_t logs = count(s, "policy_log");
    assert_int_equal(logs, 2);

    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), CG_E_EXISTS);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(cg_pstore_cred_add(s, "alice", "psk", "id1", key, 16, NULL, NULL, NULL, &err),
                     CG_E_EXISTS);
    assert_int_equal(cg_pstore_cred_add(s, "bob", "psk", "id2", key, 16, NULL, NULL, NULL, &err),
                     CG_E_NOTFOUND);
    assert_non_null(strstr(err, "unknown principal 'bob'"));
    assert_int_equal(cg_pstore_principal_set_enabled(s, "bob", false, &err), CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_cred_remove(s, "alice", 999, &err), CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_group_member(s, "nogroup", "alice", true, &err), CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_group_add(s, "staff", &err), 0);
    assert_int_equal(cg_pstore_group_member(s, "staff", "alice", false, &err), CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_group_add(s, "staff", &err), CG_E_EXISTS);
    assert_int_equal(count(s, "policy_log"), logs + 1);
    assert_int_equal(count(s, "principal"), 1);
    assert_int_equal(count(s, "credential"), 1);
    assert_int_equal(count(s, "grp_member"), 0);
    /* and the connection is usable afterwards: nothing left half open */
    assert_true(sqlite3_get_autocommit(cg_db_handle(cg_pstore_db(s))));
    assert_int_equal(cg_pstore_group_member(s, "staff", "alice", true, &err), 0);
    cg_pstore_close(s);
}

static const char *const bad_names[] = {
    "", "@staff", "*", "a b", "a\tb", "a\nb", "victim*gw", "50%", "a/b", "a\"b", "a\\b",
    "\x7f", NULL,
};

static void test_name_validation(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    for (int i = 0; bad_names[i]; i++) {
        if (cg_pstore_principal_add(s, bad_names[i], "user", NULL, &err) != CG_E_INVAL)
            fail_msg("principal name '%s' accepted", bad_names[i]);
        if (cg_pstore_group_add(s, bad_names[i], &err) != CG_E_INVAL)
            fail_msg("group name '%s' accepted", bad_names[i]);
        if (bad_names[i][0] &&
            cg_pstore_principal_add(s, "ok", "user", bad_names[i], &err) != CG_E_INVAL)
            fail_msg("mailbox '%s' accepted", bad_names[i]);
    }
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(cg_pstore_principal_add(s, longname, "user", NULL, &err), CG_E_INVAL);
    assert_int_equal(cg_pstore_principal_add(s, "ok", "robot", NULL, &err), CG_E_INVAL);
    assert_int_equal(count(s, "principal"), 0);
    assert_int_equal(count(s, "policy_log"), 0);
    assert_int_equal(cg_pstore_principal_add(s, "alice@example.com", "user", "alice.m", &err), 0);
    cg_pstore_close(s);
}

static void test_imap_logins_are_unique(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_add(s, "bob", "user", "robert", &err), 0);
    /* a mailbox that is another principal's login, either way round */
    assert_int_equal(cg_pstore_principal_add(s, "mallory", "user", "alice", &err), CG_E_EXISTS);
    assert_non_null(strstr(err, "IMAP login 'alice'"));
    assert_int_equal(cg_pstore_principal_add(s, "robert", "user", NULL, &err), CG_E_EXISTS);
    assert_int_equal(cg_pstore_principal_add(s, "eve", "user", "robert", &err), CG_E_EXISTS);
    assert_int_equal(count(s, "principal"), 2);
    assert_int_equal(count(s, "policy_log"), 2);
    /* a login equal to the principal's own name is no conflict */
    assert_int_equal(cg_pstore_principal_add(s, "carol", "user", "carol", &err), 0);
    /* nor is a name that is only another principal's name... */
    assert_int_equal(cg_pstore_principal_add(s, "dave", "user", "bob", &err), 0);
    cg_pstore_close(s);
}

static void test_credential_validation(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    uint8_t key[65] = { 0 };
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    static const struct {
        const char *type, *value;
        size_t keylen;
        const char *md5, *sha;
    } bad[] = {
        { "password", "x", 0, NULL, NULL },
        { "cert", "AB", 0, NULL, NULL },
        { "cert", "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB", 0, NULL, NULL },
        { "cert", "abababababababababababababababababababababababababababababababa", 0, NULL, NULL },
        { "cert-name", "alice@example.com", 0, NULL, NULL },
        { "cert-name", "dns:", 0, NULL, NULL },
        { "cert-name", "cn:a\nb", 0, NULL, NULL },
        { "psk", "id", 15, NULL, NULL },
        { "psk", "id", 65, NULL, NULL },
        { "psk", "id", 0, NULL, NULL },
        { "psk", "i d", 16, NULL, NULL },
        { "address", "10.0.0.0/8; DROP", 0, NULL, NULL },
        { "address", "", 0, NULL, NULL },
        { "digest", "realm", 0, "00", "00" },
        { "digest", "realm", 0, NULL, NULL },
        { "digest", "re\"alm", 0, "0123456789abcdef0123456789abcdef",
          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
        { "digest", "realm", 0, "0123456789ABCDEF0123456789ABCDEF",
          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = cg_pstore_cred_add(s, "alice", bad[i].type, bad[i].value,
                                    bad[i].keylen ? key : NULL, bad[i].keylen, bad[i].md5,
                                    bad[i].sha, NULL, &err);
        if (rc != CG_E_INVAL)
            fail_msg("%s '%s' (%zu-byte key): %d, want CG_E_INVAL", bad[i].type, bad[i].value,
                     bad[i].keylen, rc);
    }
    assert_int_equal(count(s, "credential"), 0);
    /* the boundaries are accepted */
    assert_int_equal(cg_pstore_cred_add(s, "alice", "psk", "k16", key, 16, NULL, NULL, NULL, &err), 0);
    assert_int_equal(cg_pstore_cred_add(s, "alice", "psk", "k64", key, 64, NULL, NULL, NULL, &err), 0);
    /* dns names are stored in one case, so a second spelling is a duplicate */
    assert_int_equal(cg_pstore_cred_add(s, "alice", "cert-name", "dns:Host.Example", NULL, 0,
                                        NULL, NULL, NULL, &err), 0);
    assert_int_equal(cg_pstore_cred_add(s, "alice", "cert-name", "dns:host.example", NULL, 0,
                                        NULL, NULL, NULL, &err), CG_E_EXISTS);
    cg_pstore_close(s);
}

typedef struct seen {
    int n;
    char last[64];
    size_t secret_len;
} seen;

static int on_cred(void *ctx, const cg_pstore_cred *c)
{
    seen *x = ctx;
    x->n++;
    snprintf(x->last, sizeof x->last, "%s=%s", c->type, c->value);
    x->secret_len = c->secret_len;
    return 0;
}

static int on_principal(void *ctx, const cg_pstore_principal *p)
{
    seen *x = ctx;
    x->n++;
    snprintf(x->last, sizeof x->last, "%s/%s/%d", p->name, p->kind, p->enabled);
    return 0;
}

static void test_lists(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    static const uint8_t key[20] = { 9 };
    assert_int_equal(cg_pstore_principal_add(s, "bob", "server", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_set_enabled(s, "bob", false, &err), 0);
    seen x = { 0 };
    assert_int_equal(cg_pstore_principal_list(s, NULL, on_principal, &x, &err), 0);
    assert_int_equal(x.n, 2);
    assert_string_equal(x.last, "bob/server/0"); /* by name */
    x = (seen){ 0 };
    assert_int_equal(cg_pstore_principal_list(s, "carol", on_principal, &x, &err), CG_E_NOTFOUND);
    assert_int_equal(x.n, 0);
    int64_t id = 0;
    assert_int_equal(cg_pstore_cred_add(s, "bob", "psk", "b1", key, sizeof key, NULL, NULL, &id,
                                        &err), 0);
    assert_true(id > 0);
    x = (seen){ 0 };
    assert_int_equal(cg_pstore_cred_list(s, "bob", on_cred, &x, &err), 0);
    assert_int_equal(x.n, 1);
    assert_string_equal(x.last, "psk=b1");
    assert_int_equal(x.secret_len, sizeof key);
    assert_int_equal(cg_pstore_cred_list(s, "nobody", on_cred, &x, &err), CG_E_NOTFOUND);
    cg_pstore_close(s);
}

/* ---- removal, log --------------------------------------------------------------- */

static void test_remove_with_rules_needs_force(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_db_exec(cg_pstore_db(s),
                                "INSERT INTO acl_rule (effect, subject, service, pattern, rights, "
                                "created) VALUES ('allow', 'alice', '*', '/a/*', 1, 'x'), "
                                "('deny', 'alice', '*', '/b/*', 1, 'x'), "
                                "('allow', '@alice', '*', '/c/*', 1, 'x')", &err), 0);
    int64_t logs = count(s, "policy_log");
    assert_int_equal(cg_pstore_principal_remove(s, "alice", false, &err), CG_E_EXISTS);
    assert_non_null(strstr(err, "2 ACL rule(s)"));
    assert_int_equal(count(s, "acl_rule"), 3);
    assert_int_equal(count(s, "policy_log"), logs);
    assert_int_equal(cg_pstore_principal_remove(s, "alice", true, &err), 0);
    assert_int_equal(count(s, "acl_rule"), 1); /* the group's rule stays */
    assert_int_equal(count(s, "principal"), 0);
    assert_int_equal(count(s, "policy_log"), logs + 1);
    assert_int_equal(cg_pstore_principal_remove(s, "alice", true, &err), CG_E_NOTFOUND);
    cg_pstore_close(s);
}

static int on_rule(void *ctx, const cg_pstore_rule *r)
{
    snprintf(ctx, 64, "%s", r->subject);
    return 0;
}

/* SPEC 7: a remote user or a whole remote domain is a subject without a
 * principal row, stored in one spelling; a malformed one is still unknown */
static void test_remote_subjects(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    int64_t id = 0;
    assert_int_equal(cg_pstore_rule_add(s, false, "alice@B.Example", "imap", "Shared/*", 3, NULL,
                                        &id, &err), 0);
    char subject[64] = "";
    assert_int_equal(cg_pstore_rule_list(s, NULL, NULL, on_rule, subject, &err), 0);
    assert_string_equal(subject, "alice@b.example");
    assert_int_equal(cg_pstore_rule_add(s, true, "*@b.example", "*", "x", 1, NULL, &id, &err), 0);
    assert_int_equal(cg_pstore_rule_add(s, false, "alice", "imap", "x", 1, NULL, &id, &err),
                     CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_rule_add(s, false, "a*b@b.example", "imap", "x", 1, NULL, &id,
                                        &err), CG_E_NOTFOUND);
    assert_int_equal(cg_pstore_rule_add(s, false, "alice@b..example", "imap", "x", 1, NULL, &id,
                                        &err), CG_E_NOTFOUND);
    assert_int_equal(count(s, "acl_rule"), 2);
    cg_pstore_close(s);
}

typedef struct logrows {
    int n;
    int64_t last_seq;
    char actor[64], op[64];
} logrows;

static int on_log(void *ctx, int64_t seq, const char *time, const char *actor,
                  const char *operation, const char *detail)
{
    logrows *l = ctx;
    assert_true(seq > l->last_seq);
    assert_int_equal(strlen(time), 27);
    l->last_seq = seq;
    l->n++;
    snprintf(l->actor, sizeof l->actor, "%s", actor);
    snprintf(l->op, sizeof l->op, "%s", operation);
    return 0;
}

static void test_log_since(void **state)
{
    cg_pstore *s = create();
    const char *err = NULL;
    assert_int_equal(cg_pstore_principal_add(s, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_set_enabled(s, "alice", false, &err), 0);
    assert_int_equal(cg_pstore_group_add(s, "g", &err), 0);
    logrows l = { 0 };
    assert_int_equal(cg_pstore_log_since(s, 0, on_log, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.op, "group add");
    struct passwd *pw = getpwuid(geteuid());
    if (pw)
        assert_string_equal(l.actor, pw->pw_name);
    int64_t last = l.last_seq;
    l = (logrows){ .last_seq = last - 1 };
    assert_int_equal(cg_pstore_log_since(s, last - 1, on_log, &l, &err), 0);
    assert_int_equal(l.n, 1);
    l = (logrows){ .last_seq = last };
    assert_int_equal(cg_pstore_log_since(s, last, on_log, &l, &err), 0);
    assert_int_equal(l.n, 0);
    cg_pstore_close(s);
}

/* ---- read-only, load ---------------------------------------------------------- */

static int stop_at_second(void *ctx, int64_t id, const char *name, const char *kind,
                          const char *mailbox, bool enabled)
{
    int *n = ctx;
    return ++*n == 2 ? 42 : 0;
}

static void test_readonly_and_load(void **state)
{
    cg_pstore *rw = create(), *ro = NULL;
    const char *err = NULL;
    assert_int_equal(cg_pstore_principal_add(rw, "a", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_add(rw, "b", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_add(rw, "c", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_open(path, CG_PSTORE_READONLY, &ro, &err), 0);
    assert_int_equal(cg_pstore_principal_add(ro, "d", "user", NULL, &err), CG_E_INVAL);
    assert_int_equal(cg_pstore_group_add(ro, "g", &err), CG_E_INVAL);
    assert_int_equal(count(rw, "principal"), 3);

    /* a visitor that stops: its code comes back, the read transaction ends */
    int n = 0;
    cg_pstore_visitor v = { .principal = stop_at_second };
    assert_int_equal(cg_pstore_load(ro, &v, &n, &err), 42);
    assert_int_equal(n, 2);
    assert_true(sqlite3_get_autocommit(cg_db_handle(cg_pstore_db(ro))));
    /* callbacks left NULL are skipped */
    cg_pstore_visitor none = { 0 };
    assert_int_equal(cg_pstore_load(ro, &none, NULL, &err), 0);

    /* a commit on another connection is noticed once; the watcher's own
     * reads are not commits */
    assert_false(polled_change(ro));
    assert_int_equal(cg_pstore_principal_set_enabled(rw, "a", false, &err), 0);
    assert_true(polled_change(ro));
    assert_false(polled_change(ro));
    n = 0;
    assert_int_equal(cg_pstore_load(ro, &v, &n, &err), 42);
    assert_false(polled_change(ro));
    /* the writer going away and coming back (cpmgatectl runs once per
     * command) is seen the same way */
    cg_pstore_close(rw);
    assert_int_equal(cg_pstore_open(path, 0, &rw, &err), 0);
    assert_int_equal(cg_pstore_principal_add(rw, "e", "user", NULL, &err), 0);
    cg_pstore_close(rw);
    assert_true(polled_change(ro));
    cg_pstore_close(ro);
}

#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_created_mode_0600_under_umask_0),
        T(test_missing_file_is_not_created),
        T(test_junk_and_uninitialised_files_are_refused),
        T(test_migrations_are_idempotent),
        T(test_refused_edits_leave_no_trace),
        T(test_name_validation),
        T(test_imap_logins_are_unique),
        T(test_credential_validation),
        T(test_lists),
        T(test_remove_with_rules_needs_force),
        T(test_remote_subjects),
        T(test_log_since),
        T(test_readonly_and_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
