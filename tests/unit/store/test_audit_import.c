/* tests/unit/store/test_audit_import.c — store/audit_import.c with the real policy store:
 * each policy change (policy_log row) becomes exactly one audit record,
 * also across a restart of the writer, and never twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/audit.h"
#include "store/audit_canon.h"
#include "common/cg_error.h"
#include "store/policy_store.h"
#include "tests/unit/store/audit_read.h"

static char tmpdir[256], pdb[512], adb[512];

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void start(void)
{
    cg_audit_config cfg = { .db_path = adb, .fail_closed = true };
    const char *err = NULL;
    if (cg_audit_start(&cfg, &err) < 0)
        fail_msg("cg_audit_start: %s", err);
}

static void import(void)
{
    cg_pstore *ps = NULL;
    const char *err = NULL;
    if (cg_pstore_open(pdb, CG_PSTORE_READONLY, &ps, &err) < 0)
        fail_msg("open policy store: %s", err);
    if (cg_audit_import_policy_log(ps, &err) < 0)
        fail_msg("import: %s", err);
    cg_pstore_close(ps);
}

/* "operation resource principal" of each policy record, in order. */
static int policy_records(char lines[][160], int max)
{
    char **cs;
    size_t ncs = canons(adb, &cs);
    cg_audit_parsed *p = malloc(sizeof *p);
    int n = 0;
    for (size_t i = 0; i < ncs && n < max; i++) {
        const char *c = cs[i];
        assert_non_null(c);
        assert_int_equal(cg_audit_canon_parse(c, strlen(c), p), 0);
        if (!p->rec.service || strcmp(p->rec.service, "policy") != 0)
            continue;
        assert_non_null(p->rec.txid);
        assert_int_equal(strncmp(p->rec.txid, "policy.", 7), 0);
        snprintf(lines[n++], 160, "%s|%s|%s", p->rec.operation, p->rec.resource ? p->rec.resource : "",
                 p->rec.principal ? "actor" : "none");
    }
    free(p);
    canons_free(cs, ncs);
    return n;
}

static void test_policy_changes_are_copied_once(void **state)
{
    cg_pstore *ps = NULL;
    const char *err = NULL;
    assert_int_equal(cg_pstore_open(pdb, CG_PSTORE_CREATE, &ps, &err), 0);
    assert_int_equal(cg_pstore_principal_add(ps, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_group_add(ps, "staff", &err), 0);
    start();
    import();
    import(); /* nothing new: nothing copied again */
    sleep_ms(50);
    cg_audit_stop();
    char lines[16][160];
    int n = policy_records(lines, 16);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lines[0], "alice"));
    assert_non_null(strstr(lines[1], "staff"));
    /* a change while the gateway is down is copied at the next import */
    assert_int_equal(cg_pstore_principal_set_enabled(ps, "alice", false, &err), 0);
    cg_pstore_close(ps);
    start();
    import();
    cg_audit_stop();
    n = policy_records(lines, 16);
    assert_int_equal(n, 3);
    assert_non_null(strstr(lines[2], "alice"));
    for (int i = 0; i < n; i++)
        assert_non_null(strstr(lines[i], "|actor"));
    cg_audit_verify_result res;
    assert_int_equal(cg_audit_verify_db(adb, NULL, &res, &err), 0);
    assert_true(res.intact);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cg-audit-import-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(pdb, sizeof pdb, "%s/policy.db", tmpdir);
    snprintf(adb, sizeof adb, "%s/audit.db", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_changes_are_copied_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
