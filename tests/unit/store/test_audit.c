/* tests/unit/store/test_audit.c — store/audit.c and audit_queue.c: the
 * real writer thread on a real SQLite file: batches, checkpoints,
 * restart, truncation of long strings, fail closed on a size-limited or locked file, fail open counting drops,
 * reserved places. The file itself (canon, chain, signatures, rotation,
 * lock, verifier) is test_audit_file.c, the refusal limiter
 * test_audit_refused.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "store/audit.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "tests/unit/store/audit_helpers.h"

/* ---- the writer ---------------------------------------------------------------- */

static void test_writer_batches_checkpoints_and_restart(void **state)
{
    char db[512], kp[512];
    path_in(db, sizeof db, "w.db");
    path_in(kp, sizeof kp, "w.key");
    EVP_PKEY *k = make_key("w.key", false);
    start(db, kp, 1000, true, 4096, 1000);
    assert_true(cg_audit_available());
    submit_n(0, 2500);
    cg_audit_stop();
    cg_audit_verify_result res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.records, 2500);
    assert_int_equal(res.last_seq, 2500);
    assert_int_equal(res.checkpoints, 3); /* 1000, 2000, final 2500 */
    assert_int_equal(res.last_checkpoint_seq, 2500);
    /* the chain continues after a restart, signed with another (P-256) key */
    EVP_PKEY *k2 = make_key("w2.key", true);
    char kp2[512];
    path_in(kp2, sizeof kp2, "w2.key");
    start(db, kp2, 1000, true, 4096, 1000);
    submit_n(2500, 10);
    cg_audit_stop();
    res = verify(db, NULL);
    assert_true(res.intact);
    assert_int_equal(res.last_seq, 2510);
    assert_int_equal(res.checkpoints, 4);
    /* with one trusted key, the other's checkpoint is not accepted */
    res = verify(db, k);
    assert_false(res.intact);
    assert_int_equal(res.broken_seq, 2510);
    assert_non_null(strstr(res.what, "not signed by the given key"));
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

static void test_submit_truncates_long_strings(void **state)
{
    char db[512];
    path_in(db, sizeof db, "t.db");
    start(db, NULL, 1000, true, 64, 1000);
    char *big = malloc(100000);
    memset(big, 'r', 99999);
    big[99999] = '\0';
    /* a multi-byte character straddling the cut is not split */
    memcpy(big + 1020, "\xe2\x82\xac", 3);
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.resource = big;
    r.reason = big;
    r.principal = big;
    r.txid = "T1";
    assert_int_equal(cg_audit_submit(&r), 0);
    cg_audit_stop();
    free(big);
    char **cs;
    size_t ncs = canons(db, &cs);
    assert_true(ncs >= 1);
    const char *canon = cs[0];
    assert_non_null(canon);
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_int_equal(cg_audit_canon_parse(canon, strlen(canon), p), 0);
    assert_string_equal(p->rec.txid, "T1");
    assert_true(strlen(p->rec.principal) < 256);
    assert_true(strlen(p->rec.resource) < 1024);
    assert_non_null(strstr(p->rec.resource, "...[truncated]"));
    assert_non_null(strstr(p->rec.principal, "...[truncated]"));
    assert_null(strstr(p->rec.resource, "\xef\xbf\xbd")); /* no split character */
    free(p);
    canons_free(cs, ncs);
    assert_true(verify(db, NULL).intact);
}

static void test_fail_closed_on_full_file_then_recovers(void **state)
{
    char db[512];
    path_in(db, sizeof db, "full.db");
    signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
    start(db, NULL, 1000, true, 100000, 1000);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 200 * 1024; /* a file system with 200 KiB */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    unsigned n = 0;
    bool refused = false;
    for (int i = 0; i < 4000 && cg_audit_available(); i++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, n, txid, sizeof txid);
        /* kept either way: the queue has room (audit_fail = open) */
        assert_int_equal(cg_audit_submit(&r), 0);
        n++;
        if (i % 50 == 0)
            sleep_ms(5);
    }
    for (int i = 0; i < 400 && cg_audit_available(); i++)
        sleep_ms(5);
    assert_false(cg_audit_available());
    /* new operations are refused, the record itself is kept */
    cg_audit_rec r;
    char txid[32];
    sample(&r, n, txid, sizeof txid);
    refused = cg_audit_submit(&r) == CG_E_AUDIT;
    n++;
    assert_true(refused);
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    assert_true(st.failures > 0);
    assert_int_equal(st.dropped, 0);
    /* space returns: writing resumes by itself */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    for (int i = 0; i < 1000 && !cg_audit_available(); i++)
        sleep_ms(5);
    assert_true(cg_audit_available());
    cg_audit_stop();
    cg_audit_verify_result res = verify(db, NULL);
    assert_true(res.intact);
    assert_int_equal(res.records, n); /* nothing accepted was lost */
}

static void test_fail_open_keeps_serving_and_counts_drops(void **state)
{
    char db[512];
    path_in(db, sizeof db, "open.db");
    signal(SIGXFSZ, SIG_IGN);
    start(db, NULL, 1000, false, 32, 100);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 60 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (unsigned i = 0; i < 3000; i++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, i, txid, sizeof txid);
        assert_int_equal(cg_audit_submit(&r), 0); /* never refused */
        if (i % 20 == 0)
            sleep_ms(1);
    }
    assert_true(cg_audit_available());
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    assert_true(st.dropped > 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    cg_audit_stop();
    assert_true(verify(db, NULL).intact);
}

/* A fail-closed writer on a fresh file with one record committed, then
 * another connection holding the file's write lock (returned). */
static sqlite3 *start_then_lock(char *db, size_t cap, const char *name, size_t queue,
                                unsigned full_ms)
{
    path_in(db, cap, name);
    start(db, NULL, 1000, true, queue, full_ms);
    submit_n(0, 1);
    wait_committed(1);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return h;
}

static void test_fail_closed_when_database_locked_and_queue_full(void **state)
{
    char db[512];
    /* Another process holds the write lock: the writer waits (busy
     * timeout), the queue fills and stays full past its bound. */
    sqlite3 *h = start_then_lock(db, sizeof db, "q.db", 16, 50);
    unsigned kept = 0;
    for (unsigned i = 0; i < 40; i++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, 1 + i, txid, sizeof txid);
        if (cg_audit_submit(&r) == 0)
            kept++;
    }
    sleep_ms(100);
    cg_audit_rec r;
    char txid[32];
    sample(&r, 99, txid, sizeof txid);
    assert_int_equal(cg_audit_submit(&r), CG_E_AUDIT);
    assert_false(cg_audit_available());
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    assert_true(st.dropped > 0);
    /* the lock goes away: writing and service resume */
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    for (int i = 0; i < 1000 && !cg_audit_available(); i++)
        sleep_ms(5);
    assert_true(cg_audit_available());
    cg_audit_stop();
    cg_audit_verify_result res = verify(db, NULL);
    assert_true(res.intact);
    assert_true(res.records >= 1 + kept);
}

/* SPEC 5, no record, no operation: a place reserved when the operation
 * is decided is there when its record comes, however full the queue got
 * meanwhile; with no free place the reservation (the operation) fails. */
static void test_reserved_places_always_commit(void **state)
{
    char db[512];
    /* the writer cannot commit while another connection holds the write
     * lock, so nothing leaves the queue (busy timeout 1 s: be quick) */
    sqlite3 *h = start_then_lock(db, sizeof db, "resv.db", 8, 60000);
    cg_audit_resv rv[3];
    memset(rv, 0, sizeof rv);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cg_audit_reserve(&rv[i]), 0);
    assert_int_equal(cg_audit_reserve(&rv[0]), 0); /* held already: the same place */
    /* other records take the free places, not the reserved ones */
    unsigned taken = 0;
    cg_audit_rec r;
    char txid[32];
    for (unsigned k = 1; k <= 20; k++) {
        sample(&r, k, txid, sizeof txid);
        if (cg_audit_submit(&r) == 0)
            taken++;
    }
    assert_int_equal(taken, 8 - 3);
    cg_audit_resv none = { 0 };
    assert_int_equal(cg_audit_reserve(&none), CG_E_AUDIT);
    /* a place given back can be reserved again */
    cg_audit_release(&rv[2]);
    assert_int_equal(cg_audit_reserve(&none), 0);
    /* every reserved place commits, the queue being full or not */
    sample(&r, 50, txid, sizeof txid);
    assert_int_equal(cg_audit_commit(&rv[0], &r), 0);
    sample(&r, 51, txid, sizeof txid);
    assert_int_equal(cg_audit_commit(&rv[1], &r), 0);
    sample(&r, 52, txid, sizeof txid);
    assert_int_equal(cg_audit_commit(&none, &r), 0);
    /* used up: a second commit on it is an ordinary submit, refused */
    sample(&r, 53, txid, sizeof txid);
    assert_int_equal(cg_audit_commit(&none, &r), CG_E_AUDIT);
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    assert_int_equal(st.queue_depth, 8);
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    wait_committed(1 + 8);
    cg_audit_stop();
    cg_audit_verify_result res = verify(db, NULL);
    assert_true(res.intact);
    assert_int_equal(res.records, 1 + 8);
}

/* Producers on several threads, with no lock between them: every record
 * submitted or committed on a held place is in the chain exactly once,
 * each thread's records in the order it queued them, and a queue smaller
 * than what passes through it reuses its slots. */
#define PRODUCERS 4
#define PER_PRODUCER 3000

static void *produce(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned k = 0; k < PER_PRODUCER; k++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, k, txid, sizeof txid);
        snprintf(txid, sizeof txid, "P%u.%u", t, k);
        cg_audit_resv rv = { 0 };
        int rc;
        if (k % 3 == 0) { /* a held place, then its record */
            while ((rc = cg_audit_reserve(&rv)) < 0)
                sleep_ms(1);
            rc = cg_audit_commit(&rv, &r);
        } else {
            while ((rc = cg_audit_submit(&r)) < 0)
                sleep_ms(1);
        }
        assert_int_equal(rc, 0);
    }
    return NULL;
}

static void test_many_producers_lose_nothing(void **state)
{
    char db[512];
    path_in(db, sizeof db, "mp.db");
    start(db, NULL, 1000, true, 512, 60000);
    pthread_t th[PRODUCERS];
    for (uintptr_t t = 0; t < PRODUCERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, produce, (void *)t), 0);
    for (int t = 0; t < PRODUCERS; t++)
        pthread_join(th[t], NULL);
    wait_committed(PRODUCERS * PER_PRODUCER);
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(st.committed, PRODUCERS * PER_PRODUCER);
    /* a full queue refused some (fail closed): they were tried again */
    assert_int_equal(st.queued, PRODUCERS * PER_PRODUCER);
    cg_audit_stop();
    assert_true(verify(db, NULL).intact);
    char **cs;
    size_t n = canons(db, &cs);
    assert_int_equal(n, PRODUCERS * PER_PRODUCER);
    unsigned next[PRODUCERS] = { 0 };
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cg_audit_canon_parse(cs[i], strlen(cs[i]), p), 0);
        unsigned t, k;
        assert_int_equal(sscanf(p->rec.txid, "P%u.%u", &t, &k), 2);
        assert_true(t < PRODUCERS);
        assert_int_equal(k, next[t]); /* each thread's records in order, none twice */
        next[t]++;
    }
    for (int t = 0; t < PRODUCERS; t++)
        assert_int_equal(next[t], PER_PRODUCER);
    free(p);
    canons_free(cs, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_batches_checkpoints_and_restart),
        cmocka_unit_test(test_submit_truncates_long_strings),
        cmocka_unit_test(test_fail_closed_on_full_file_then_recovers),
        cmocka_unit_test(test_fail_open_keeps_serving_and_counts_drops),
        cmocka_unit_test(test_fail_closed_when_database_locked_and_queue_full),
        cmocka_unit_test(test_reserved_places_always_commit),
        cmocka_unit_test(test_many_producers_lose_nothing),
    };
    return cmocka_run_group_tests(tests, audit_setup, audit_teardown);
}
