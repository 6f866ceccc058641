/* tests/unit/store/test_audit_blocks.c — the compact record form and its
 * blocks (store/audit_bin.c), read back by store/audit_rows.c and checked
 * by the verifier: every record comes back as the canon the chain hashed,
 * a file of rows goes on in blocks, and a change to a block is named by
 * the record it touches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/audit_bin.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "tests/unit/store/audit_helpers.h"

static void test_record_round_trips_with_nulls_and_negatives(void **state)
{
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.txid = "S1.2";
    r.resource = "caf\xc3\xa9 \"quoted\"";
    r.reason = "";
    r.conn_id = 1ULL << 40;
    r.bytes_out = 123456789012LL;
    r.node = "gw-a";
    uint8_t buf[CG_AUDIT_BIN_MAX];
    int n = cg_audit_bin_encode(buf, sizeof buf, 77, 1796205600123456LL, &r);
    assert_true(n > 0);
    cg_audit_bin_rec *d = malloc(sizeof *d);
    assert_non_null(d);
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n, d), 0);
    assert_int_equal(d->seq, 77);
    assert_int_equal(cg_audit_bin_seq(buf, (size_t)n), 77); /* read without decoding */
    assert_int_equal(cg_audit_bin_seq(buf, 0), 0);
    assert_int_equal(d->usec, 1796205600123456LL);
    assert_int_equal(d->rec.conn_id, 1ULL << 40);
    assert_int_equal(d->rec.rule_id, -1);
    assert_int_equal(d->rec.bytes_in, -1);
    assert_int_equal(d->rec.bytes_out, 123456789012LL);
    assert_string_equal(d->rec.txid, "S1.2");
    assert_string_equal(d->rec.resource, "caf\xc3\xa9 \"quoted\"");
    assert_string_equal(d->rec.reason, "");
    assert_string_equal(d->rec.node, "gw-a");
    assert_null(d->rec.principal);
    assert_null(d->rec.origin_txid);
    /* the canon of the decoded record is the canon of the original */
    char a[CG_AUDIT_CANON_MAX], b[CG_AUDIT_CANON_MAX], t[CG_TIME_LEN];
    cg_time_rfc3339(d->usec, t);
    assert_int_equal(cg_audit_canon(a, sizeof a, 77, t, &r),
                     cg_audit_canon(b, sizeof b, 77, t, &d->rec));
    assert_string_equal(a, b);
    /* too small a buffer is refused, never overrun */
    assert_int_equal(cg_audit_bin_encode(buf, 30, 77, 1, &r), CG_E_LIMIT);
    assert_int_equal(cg_audit_bin_encode(buf, (size_t)n - 1, 77, 1796205600123456LL, &r),
                     CG_E_LIMIT);
    free(d);
}

static void test_decode_is_strict(void **state)
{
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.txid = "T";
    uint8_t buf[CG_AUDIT_BIN_MAX];
    int n = cg_audit_bin_encode(buf, sizeof buf, 5, 9, &r);
    assert_true(n > 0);
    cg_audit_bin_rec *d = malloc(sizeof *d);
    assert_non_null(d);
    /* every cut is refused, and so is a byte left over */
    for (int cut = 0; cut < n; cut++)
        assert_int_equal(cg_audit_bin_decode(buf, (size_t)cut, d), CG_E_PARSE);
    buf[n] = 0;
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n + 1, d), CG_E_PARSE);
    /* an overlong varint (5 as 0x85 0x00) */
    uint8_t over[CG_AUDIT_BIN_MAX];
    over[0] = 0x85;
    over[1] = 0x00;
    memcpy(over + 2, buf + 1, (size_t)n - 1);
    assert_int_equal(cg_audit_bin_decode(over, (size_t)n + 1, d), CG_E_PARSE);
    /* a NUL inside a string: the txid "T" is the 7th byte */
    assert_int_equal(buf[6], 2);
    assert_int_equal(buf[7], 'T');
    buf[7] = 0;
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n, d), CG_E_PARSE);
    /* a string longer than what is left */
    buf[7] = 'T';
    buf[6] = 100;
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n, d), CG_E_PARSE);
    /* a time past year 9999 (the canon's time has four-digit years) */
    cg_audit_bin_rec *d2 = malloc(sizeof *d2);
    assert_non_null(d2);
    n = cg_audit_bin_encode(buf, sizeof buf, 5, CG_TIME_USEC_MAX + 1, &r);
    assert_true(n > 0);
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n, d2), CG_E_PARSE);
    n = cg_audit_bin_encode(buf, sizeof buf, 5, CG_TIME_USEC_MAX, &r);
    assert_int_equal(cg_audit_bin_decode(buf, (size_t)n, d2), 0);
    free(d2);
    free(d);
    char t[CG_TIME_LEN];
    cg_time_rfc3339(INT64_MAX, t);
    assert_string_equal(t, "9999-12-31T23:59:59.999999Z");
    cg_time_rfc3339(-5, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000000Z");
    /* a block entry whose length runs past the data */
    uint8_t blk[64] = { 50, 1, 2, 3 };
    cg_audit_block_cur c = { blk, blk + 4 };
    const uint8_t *rec, *h;
    size_t len;
    assert_int_equal(cg_audit_block_next(&c, &rec, &len, &h), CG_E_PARSE);
}

/* The canon is written straight into the buffer where the worst case
 * fits and piece by piece where it may not: the same text either way, and
 * CG_E_LIMIT only when the text itself does not fit. */
static void test_canon_is_the_same_however_tight_the_buffer(void **state)
{
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.txid = "S1.1";
    r.resource = "tab\t quote\" back\\ ctl\x01 caf\xc3\xa9 bad\xff\xfe 4\xf0\x9f\x98\x80";
    r.reason = "plain reason";
    r.origin_txid = "o.1";
    char big[CG_AUDIT_CANON_MAX], tight[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(big, sizeof big, 9, "2026-12-02T10:00:00.000001Z", &r);
    assert_true(n > 0);
    assert_non_null(strstr(big, "\\u0001"));
    assert_non_null(strstr(big, "bad\xef\xbf\xbd\xef\xbf\xbd 4\xf0\x9f\x98\x80"));
    for (size_t cap = (size_t)n + 1; cap < (size_t)n + 200; cap++) {
        memset(tight, 'x', sizeof tight);
        assert_int_equal(cg_audit_canon(tight, cap, 9, "2026-12-02T10:00:00.000001Z", &r), n);
        assert_memory_equal(tight, big, (size_t)n + 1);
    }
    for (size_t cap = 1; cap <= (size_t)n; cap += 7)
        assert_int_equal(cg_audit_canon(tight, cap, 9, "2026-12-02T10:00:00.000001Z", &r),
                         CG_E_LIMIT);
}

static void test_writer_stores_blocks_that_verify(void **state)
{
    char db[512], kp[512];
    path_in(db, sizeof db, "w.db");
    path_in(kp, sizeof kp, "w.key");
    EVP_PKEY *k = make_key("w.key", false);
    start(db, kp, 100, true, 4096, 1000);
    submit_n(0, 600);
    wait_committed(600);
    cg_audit_stop();
    assert_int_equal(sql_int(db, "SELECT count(*) FROM records"), 0);
    /* a new file's pages hold a block */
    assert_int_equal(sql_int(db, "PRAGMA page_size"), 16384);
    /* at most CG_AUDIT_BLOCK_RECORDS a block: at least three */
    assert_true(sql_int(db, "SELECT count(*) FROM blocks") >= 3);
    cg_audit_verify_result res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.records, 600);
    assert_int_equal(res.last_checkpoint_seq, 600);
    /* each record reads back as the canon its hash was made of */
    char **cs;
    size_t n = canons(db, &cs);
    assert_int_equal(n, 600);
    uint8_t prev[CG_AUDIT_HASH_LEN] = { 0 };
    for (size_t i = 0; i < n; i++) {
        assert_non_null(cs[i]);
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%zu,", i + 1);
        assert_int_equal(strncmp(cs[i], want, strlen(want)), 0);
        cg_audit_chain_hash(prev, cs[i], strlen(cs[i]), prev);
    }
    /* the chain over those canons ends at the file's last hash */
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    uint64_t last;
    uint8_t lh[CG_AUDIT_HASH_LEN];
    assert_int_equal(cg_afile_last(h, &last, lh), 1);
    sqlite3_close(h);
    assert_int_equal(last, 600);
    assert_memory_equal(prev, lh, CG_AUDIT_HASH_LEN);
    canons_free(cs, n);
    EVP_PKEY_free(k);
}

static void test_rows_go_on_in_blocks(void **state)
{
    char db[512];
    path_in(db, sizeof db, "mixed.db");
    EVP_PKEY *k = make_key("mixed.key", false);
    write_file(db, k, 12, 4, CG_AFILE_ROWS);
    write_file(db, k, 9, 3, CG_AFILE_BLOCKS);
    assert_int_equal(sql_int(db, "SELECT count(*) FROM records"), 12);
    assert_int_equal(sql_int(db, "SELECT count(*) FROM blocks"), 3);
    cg_audit_verify_result res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.records, 21);
    assert_int_equal(res.last_seq, 21);
    assert_int_equal(res.last_checkpoint_seq, 21);
    /* the seam is checked: the first block's first record changed */
    char t[512];
    path_in(t, sizeof t, "mixed-t.db");
    copy_file(db, t);
    block_edit(t, 13, BLOCK_PATCH, "INBOX", "Trash");
    res = verify(t, k);
    assert_false(res.intact);
    assert_int_equal(res.broken_seq, 13);
    EVP_PKEY_free(k);
}

static char base[512];
static EVP_PKEY *base_key;

static cg_audit_verify_result tampered(const char *name, enum block_how how, uint64_t seq,
                                       const char *stmt, bool with_key)
{
    char db[512];
    path_in(db, sizeof db, name);
    unlink(db);
    copy_file(base, db);
    if (seq)
        block_edit(db, seq, how, "INBOX", "Trash");
    if (stmt)
        sql(db, stmt);
    return verify(db, with_key ? base_key : NULL);
}

static void expect_broken(cg_audit_verify_result res, uint64_t seq, const char *what)
{
    if (res.intact || res.broken_seq != seq || !strstr(res.what, what))
        fail_msg("expected broken at %llu (%s), got intact=%d at %llu: %s",
                 (unsigned long long)seq, what, res.intact,
                 (unsigned long long)res.broken_seq, res.what);
}

static void test_changes_to_blocks_are_named(void **state)
{
    path_in(base, sizeof base, "blocks.db");
    base_key = make_key("blocks.key", false);
    /* 30 records in blocks 1-10, 11-20, 21-30, checkpoints at each end */
    write_file(base, base_key, 30, 10, CG_AFILE_BLOCKS);
    assert_true(verify(base, base_key).intact);
    expect_broken(tampered("t1.db", BLOCK_PATCH, 5, NULL, false), 5,
                  "record 5 changed: its hash does not follow");
    expect_broken(tampered("t2.db", BLOCK_ZERO_HASH, 14, NULL, false), 14, "record 14 changed");
    expect_broken(tampered("t3.db", BLOCK_DROP, 7, NULL, false), 7, "record 7 removed");
    expect_broken(tampered("t4.db", 0, 0, "DELETE FROM blocks WHERE first_seq = 11", false),
                  11, "records 11-20 removed");
    expect_broken(tampered("t5.db", 0, 0, "DELETE FROM blocks WHERE first_seq = 21", false),
                  21, "tail truncated");
    expect_broken(tampered("t6.db", 0, 0, "UPDATE blocks SET data = substr(data, 1, 100) "
                           "WHERE first_seq = 11", false), 11, "not a valid record");
    /* blocks renumbered to hide a removed one */
    expect_broken(tampered("t7.db", 0, 0, "DELETE FROM blocks WHERE first_seq = 11; "
                           "UPDATE blocks SET first_seq = 11, last_seq = 20 "
                           "WHERE first_seq = 21", false), 11, "removed");
    /* the data of two blocks swapped */
    expect_broken(tampered("t8.db", 0, 0, "UPDATE blocks SET data = CASE first_seq WHEN 11 "
                           "THEN (SELECT data FROM blocks WHERE first_seq = 21) ELSE "
                           "(SELECT data FROM blocks WHERE first_seq = 11) END "
                           "WHERE first_seq IN (11, 21)", false), 11, "record 11");
    /* a block's content and hashes rewritten: the checkpoint's signature
     * no longer covers it */
    expect_broken(tampered("t9.db", 0, 0, "UPDATE checkpoints SET signature = zeroblob(64) "
                           "WHERE seq = 20", true), 20, "signature does not verify");
    EVP_PKEY_free(base_key);
}

/* Readers skip a block by its columns (show --since/--until by first_time
 * and last_time, export --from-seq by last_seq) and number its records
 * from first_seq: each column changed alone leaves the chain whole, and
 * verify, even with the key that signed it, names the column. The file:
 * blocks 1-10, 11-20, 21-30; record k written at T0 + (k - 1) ms. */
static void columns_file(const char *name)
{
    path_in(base, sizeof base, name);
    base_key = make_key("cols.key", false);
    write_file(base, base_key, 30, 10, CG_AFILE_BLOCKS);
    assert_true(verify(base, base_key).intact);
}

static void test_a_block_first_seq_is_held_against_its_first_record(void **state)
{
    columns_file("c-first-seq.db");
    expect_broken(tampered("c1.db", 0, 0, "UPDATE blocks SET first_seq = 12 "
                           "WHERE last_seq = 20", true), 11,
                  "block 20 changed: its first_seq column (12) is not the seq of its first "
                  "record (11)");
    expect_broken(tampered("c2.db", 0, 0, "UPDATE blocks SET first_seq = 5 "
                           "WHERE last_seq = 20", true), 11,
                  "block 20 changed: its first_seq column (5)");
    EVP_PKEY_free(base_key);
}

static void test_a_block_last_seq_is_held_against_its_last_record(void **state)
{
    columns_file("c-last-seq.db");
    /* still ordered after the other blocks: only its column is wrong */
    expect_broken(tampered("c3.db", 0, 0, "UPDATE blocks SET last_seq = 15 "
                           "WHERE last_seq = 20", true), 11,
                  "block 15 changed: its last_seq column is not the seq of its last "
                  "record (20)");
    expect_broken(tampered("c4.db", 0, 0, "UPDATE blocks SET last_seq = 25 "
                           "WHERE last_seq = 20", true), 11,
                  "block 25 changed: its last_seq column");
    EVP_PKEY_free(base_key);
}

static void test_a_block_first_time_is_held_against_its_first_record(void **state)
{
    columns_file("c-first-time.db");
    expect_broken(tampered("c5.db", 0, 0, "UPDATE blocks SET first_time = "
                           "'2099-01-01T00:00:00.000000Z' WHERE last_seq = 20", true), 11,
                  "block 20 changed: its first_time column (\"2099-01-01T00:00:00.000000Z\") "
                  "is not the time of its first record (2026-12-02T10:00:00.010001Z)");
    /* the same bytes as a blob: SQL sorts a blob after every text */
    expect_broken(tampered("c6.db", 0, 0, "UPDATE blocks SET first_time = "
                           "CAST(first_time AS BLOB) WHERE last_seq = 20", true), 11,
                  "block 20 changed: its first_time column (\"\")");
    EVP_PKEY_free(base_key);
}

static void test_a_block_last_time_is_held_against_its_last_record(void **state)
{
    columns_file("c-last-time.db");
    expect_broken(tampered("c7.db", 0, 0, "UPDATE blocks SET last_time = "
                           "'2000-01-01T00:00:00.000000Z' WHERE last_seq = 30", true), 21,
                  "block 30 changed: its last_time column (\"2000-01-01T00:00:00.000000Z\") "
                  "is not the time of its last record (2026-12-02T10:00:00.029001Z)");
    EVP_PKEY_free(base_key);
}

static void test_a_block_without_records_is_named(void **state)
{
    columns_file("c-empty.db");
    expect_broken(tampered("c8.db", 0, 0, "INSERT INTO blocks VALUES (40, 31, "
                           "'2026-12-02T10:00:01.000000Z', '2026-12-02T10:00:01.000000Z', "
                           "x'')", true), 40, "block 40 changed: it holds no records");
    /* one whose data was emptied: its records are missing from the chain */
    expect_broken(tampered("c9.db", 0, 0, "UPDATE blocks SET data = '' WHERE last_seq = 20",
                           false), 11, "records 11-20 removed");
    EVP_PKEY_free(base_key);
}

/* first_time and last_time bound a block only if its records are in time
 * order (the writer's are): a chain written with a time going back inside
 * a block is refused, though each hash follows and the columns name its
 * first and last record. */
static void test_a_block_whose_times_go_back_is_refused(void **state)
{
    char db[512];
    path_in(db, sizeof db, "back.db");
    EVP_PKEY *k = make_key("back.key", false);
    cg_afile *f = afile_open(db, NULL);
    assert_int_equal(cg_afile_register_key(f, k), 0);
    const int64_t usec[] = { 1796205600000001LL, 1796205603000001LL, 1796205601000001LL,
                             1796205602000001LL };
    assert_int_equal(cg_afile_begin(f), 0);
    for (unsigned i = 0; i < 4; i++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, i, txid, sizeof txid);
        assert_int_equal(cg_afile_append(f, usec[i], &r), 0);
    }
    assert_int_equal(cg_afile_checkpoint(f, k, true, "2026-12-02T10:00:05.000000Z"), 0);
    assert_int_equal(cg_afile_commit(f), 0);
    afile_close(f);
    /* one block, first_time 10:00:00, last_time 10:00:02: --since 10:00:02.5
     * would skip it, and record 2 (10:00:03) with it */
    assert_int_equal(sql_int(db, "SELECT count(*) FROM blocks WHERE last_time = "
                             "'2026-12-02T10:00:02.000001Z'"), 1);
    expect_broken(verify(db, k), 3, "block 4 changed: record 3 is older than the record "
                  "before it");
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trips_with_nulls_and_negatives),
        cmocka_unit_test(test_decode_is_strict),
        cmocka_unit_test(test_canon_is_the_same_however_tight_the_buffer),
        cmocka_unit_test(test_writer_stores_blocks_that_verify),
        cmocka_unit_test(test_rows_go_on_in_blocks),
        cmocka_unit_test(test_changes_to_blocks_are_named),
        cmocka_unit_test(test_a_block_first_seq_is_held_against_its_first_record),
        cmocka_unit_test(test_a_block_last_seq_is_held_against_its_last_record),
        cmocka_unit_test(test_a_block_first_time_is_held_against_its_first_record),
        cmocka_unit_test(test_a_block_last_time_is_held_against_its_last_record),
        cmocka_unit_test(test_a_block_without_records_is_named),
        cmocka_unit_test(test_a_block_whose_times_go_back_is_refused),
    };
    return cmocka_run_group_tests(tests, audit_setup, audit_teardown);
}
