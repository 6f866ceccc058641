/* tests/unit/store/test_audit_refused.c — store/audit_refused.c, the
 * refusal limiter, through the real writer: one record per client address
 * per second with the rest counted; an IPv6 /64 is one address; many
 * addresses at once each keep their own count (no table slot shared or
 * overwritten). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
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

/* Reasons of all records, summed "(xN)" counts (1 without a count). */
static unsigned count_refusals(const char *db, unsigned *records)
{
    char **cs;
    size_t ncs = canons(db, &cs);
    unsigned total = 0;
    *records = 0;
    cg_audit_parsed *p = malloc(sizeof *p);
    for (size_t i = 0; i < ncs; i++) {
        const char *c = cs[i];
        assert_non_null(c);
        assert_int_equal(cg_audit_canon_parse(c, strlen(c), p), 0);
        const char *x = p->rec.reason ? strstr(p->rec.reason, "(x") : NULL;
        total += x ? (unsigned)strtoul(x + 2, NULL, 10) : 1;
        (*records)++;
    }
    free(p);
    canons_free(cs, ncs);
    return total;
}

static void test_refused_connections_are_coalesced(void **state)
{
    char db[512];
    path_in(db, sizeof db, "f.db");
    start(db, NULL, 1000, true, 1024, 1000);
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.client = "192.0.2.7:5555";
    r.service = "tls";
    r.operation = "handshake";
    r.result = "refused";
    r.reason = "tls handshake failed";
    for (int i = 0; i < 5000; i++)
        assert_int_equal(cg_audit_refused(&r), 0);
    r.client = "[2001:db8::1]:443";
    for (int i = 0; i < 10; i++)
        assert_int_equal(cg_audit_refused(&r), 0);
    sleep_ms(2100); /* the writer records what was held back */
    cg_audit_stop();
    unsigned records;
    unsigned total = count_refusals(db, &records);
    assert_int_equal(total, 5010); /* every refusal counted */
    assert_true(records <= 8);     /* but a handful of records */
    assert_true(records >= 2);
}

static void refusal(cg_audit_rec *r, const char *client)
{
    cg_audit_rec_init(r);
    r->client = client;
    r->service = "tls";
    r->operation = "handshake";
    r->result = "refused";
    r->reason = "tls handshake failed";
}

static int64_t second_now(void) { return cg_time_now_usec() / 1000000; }

/* Runs refuse() against a fresh writer within one second (tried again, up
 * to three times, when a second begins in the middle), lets the writer
 * record what was held back, and counts: the refusals the records stand
 * for, and the records (*records). */
static unsigned refusals_in_one_second(const char *name, void (*refuse)(void),
                                       unsigned *records)
{
    for (int attempt = 0;; attempt++) {
        char db[512], file[64];
        snprintf(file, sizeof file, "%s-%d.db", name, attempt);
        path_in(db, sizeof db, file);
        start(db, NULL, 1000, true, 4096, 1000);
        int64_t sec = second_now();
        refuse();
        bool same_second = second_now() == sec;
        sleep_ms(2100); /* the writer records what was held back */
        cg_audit_stop();
        if (same_second || attempt == 3)
            return count_refusals(db, records);
    }
}

static void refuse_from_one_64(void)
{
    cg_audit_rec r;
    for (int i = 0; i < 10; i++) {
        refusal(&r, i % 2 ? "[2001:db8:7:7::1]:443" : "[2001:db8:7:7:ffff::2]:993");
        assert_int_equal(cg_audit_refused(&r), 0);
    }
}

/* Two addresses of one /64, refused in turns within a second: one key, so
 * one record now and one counted record later (a key per address would
 * give at least four). */
static void test_refusals_of_one_ipv6_64_share_a_record(void **state)
{
    unsigned records;
    assert_int_equal(refusals_in_one_second("v6", refuse_from_one_64, &records), 10);
    assert_int_equal(records, 2);
}

enum { MANY = 600 };

static void refuse_from_many(void)
{
    static char clients[MANY][32];
    for (int i = 0; i < MANY; i++)
        snprintf(clients[i], sizeof clients[i], "198.51.%d.%d:443", i / 250, i % 250 + 1);
    cg_audit_rec r;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < MANY; i++) {
            refusal(&r, clients[i]);
            assert_int_equal(cg_audit_refused(&r), 0);
        }
    }
}

/* 600 addresses (more than a table of slots would hold without sharing),
 * each refused three times in turns within a second: every address gets
 * its first record at once and one record "(x2)" for the rest, none is
 * lost to another address and none is counted as new again. */
static void test_many_addresses_keep_their_own_counts(void **state)
{
    unsigned records;
    assert_int_equal(refusals_in_one_second("many", refuse_from_many, &records), 3 * MANY);
    assert_int_equal(records, 2 * MANY); /* no summary record: all within budget */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_connections_are_coalesced),
        cmocka_unit_test(test_refusals_of_one_ipv6_64_share_a_record),
        cmocka_unit_test(test_many_addresses_keep_their_own_counts),
    };
    return cmocka_run_group_tests(tests, audit_setup, audit_teardown);
}
