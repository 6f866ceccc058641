/* tests/unit/store/test_audit_file.c — store/audit_canon.c, audit_file.c
 * and audit_verify.c: the canon encoding, the chain, signatures with both
 * key types, the lock, rotation (and an interrupted one finished on open),
 * and the verifier locating each kind of tampering. */
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

/* ---- canon ------------------------------------------------------------------ */

static void test_canon_null_record(void **state)
{
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    char out[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(out, sizeof out, 7, "2026-12-02T10:00:00.000001Z", &r);
    const char *want =
        "{\"seq\":7,\"time\":\"2026-12-02T10:00:00.000001Z\",\"txid\":null,\"request_id\":null,"
        "\"conn_id\":null,\"listener\":null,\"client\":null,\"principal\":null,\"method\":null,"
        "\"tls_version\":null,\"tls_cipher\":null,\"service\":null,\"operation\":null,"
        "\"resource\":null,\"decision\":null,\"rule_id\":null,\"result\":null,\"bytes_in\":null,"
        "\"bytes_out\":null,\"content_sha256\":null,\"key_id\":null,\"validation\":null,"
        "\"reason\":null}";
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_canon_fields_and_escapes(void **state)
{
    static const struct { const char *in, *json; } cases[] = {
        { "plain", "\"plain\"" },
        { "q\"b\\s/", "\"q\\\"b\\\\s/\"" },
        { "n\nr\rt\tb\bf\f", "\"n\\nr\\rt\\tb\\bf\\f\"" },
        { "\x01\x1f", "\"\\u0001\\u001f\"" },
        { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
        { "bad\xff\xc0\xafx", "\"bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx\"" }, /* invalid, overlong */
        { "\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },             /* surrogate */
        { "", "\"\"" },
        { "a\x7f" "b\"c\x01", "\"a\x7f" "b\\\"c\\u0001\"" }, /* runs end at DEL, '"', controls */
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(cases); i++) {
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.reason = cases[i].in;
        char out[CG_AUDIT_CANON_MAX], want[256];
        cg_audit_canon(out, sizeof out, 1, "t", &r);
        snprintf(want, sizeof want, ",\"reason\":%s}", cases[i].json);
        const char *tail = strstr(out, ",\"reason\":");
        assert_non_null(tail);
        assert_string_equal(tail, want);
    }
    /* numbers are JSON numbers, 0 is a value, -1 and conn_id 0 are null */
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.conn_id = 18446744073709551615ull;
    r.rule_id = 0;
    r.bytes_in = 9007199254740993;
    char out[CG_AUDIT_CANON_MAX];
    cg_audit_canon(out, sizeof out, 1, "t", &r);
    assert_non_null(strstr(out, "\"conn_id\":18446744073709551615,"));
    assert_non_null(strstr(out, "\"rule_id\":0,"));
    assert_non_null(strstr(out, "\"bytes_in\":9007199254740993,\"bytes_out\":null"));
    /* too small a buffer is an error, never an overflow */
    char small[40];
    assert_int_equal(cg_audit_canon(small, sizeof small, 1, "t", &r), CG_E_LIMIT);
}

static void test_canon_parse_roundtrip(void **state)
{
    cg_audit_rec r;
    char txid[32];
    sample(&r, 17, txid, sizeof txid);
    r.reason = "x\"\\\n\x02\xc3\xa9";
    r.content_sha256 = "ab";
    char out[CG_AUDIT_CANON_MAX], again[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(out, sizeof out, 42, "2026-01-01T00:00:00.000000Z", &r);
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_int_equal(cg_audit_canon_parse(out, (size_t)n, p), 0);
    assert_int_equal(p->seq, 42);
    assert_string_equal(p->rec.principal, r.principal);
    assert_string_equal(p->rec.reason, r.reason);
    assert_int_equal(p->rec.bytes_out, 34);
    assert_null(p->rec.request_id);
    int m = cg_audit_canon(again, sizeof again, p->seq, p->time, &p->rec);
    assert_int_equal(m, n);
    assert_memory_equal(out, again, (size_t)n);
    /* not canon: whitespace, other key order, trailing bytes */
    static const char *bad[] = {
        "{\"seq\": 1}", "{\"time\":\"t\",\"seq\":1}", "", "{\"seq\":1,\"time\":\"t\"}x",
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(bad); i++)
        assert_int_equal(cg_audit_canon_parse(bad[i], strlen(bad[i]), p), CG_E_PARSE);
    assert_int_equal(cg_audit_canon_parse(out, (size_t)n - 1, p), CG_E_PARSE);
    free(p);
}

static void test_chain_hash_is_sha256_of_prev_and_canon(void **state)
{
    uint8_t prev[32], h[32], want[32];
    memset(prev, 0, sizeof prev);
    const char *canon = "{\"seq\":1}";
    cg_audit_chain_hash(prev, canon, strlen(canon), h);
    uint8_t buf[64];
    memcpy(buf, prev, 32);
    memcpy(buf + 32, canon, strlen(canon));
    unsigned len;
    EVP_Digest(buf, 32 + strlen(canon), want, &len, EVP_sha256(), NULL);
    assert_memory_equal(h, want, 32);
    char msg[CG_AUDIT_CKPT_MSG_MAX];
    size_t m = cg_audit_checkpoint_msg(1000, want, NULL, msg);
    char hex[65];
    cg_hex_encode(want, 32, hex);
    char expect[128];
    snprintf(expect, sizeof expect, "cpmgate-audit-checkpoint-v1\n1000\n%s", hex);
    assert_int_equal(m, strlen(expect));
    assert_string_equal(msg, expect);
}

static void test_sign_both_key_types(void **state)
{
    for (int ec = 0; ec < 2; ec++) {
        EVP_PKEY *k = make_key("k.pem", ec);
        uint8_t sig[256];
        size_t sl = sizeof sig;
        assert_int_equal(cg_audit_sign(k, "msg", 3, sig, &sl), 0);
        assert_true(cg_audit_sig_ok(k, "msg", 3, sig, sl));
        assert_false(cg_audit_sig_ok(k, "msG", 3, sig, sl));
        char p[512];
        path_in(p, sizeof p, "k.pem");
        EVP_PKEY *pub = NULL;
        const char *err;
        assert_int_equal(cg_audit_key_load_public(p, &pub, &err), 0);
        assert_true(cg_audit_sig_ok(pub, "msg", 3, sig, sl));
        EVP_PKEY_free(pub);
        EVP_PKEY_free(k);
    }
    /* RSA is not an audit key */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char p[512];
    path_in(p, sizeof p, "rsa.pem");
    FILE *f = fopen(p, "w");
    PEM_write_PrivateKey(f, rsa, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY *k = NULL;
    const char *err = NULL;
    assert_true(cg_audit_key_load_private(p, &k, &err) < 0);
    assert_non_null(strstr(err, "Ed25519"));
    EVP_PKEY_free(rsa);
}

static void test_lock_names_the_holder(void **state)
{
    char db[512];
    path_in(db, sizeof db, "l.db");
    start(db, NULL, 1000, true, 64, 1000);
    int fd = -1;
    long pid = 0;
    const char *err = NULL;
    assert_int_equal(cg_afile_lock(db, &fd, &pid, &err), CG_E_BUSY);
    assert_int_equal(pid, (long)getpid());
    /* and the gateway's file cannot be rotated from outside */
    cg_audit_stop();
    assert_int_equal(cg_afile_lock(db, &fd, &pid, &err), 0);
    cg_afile_unlock(fd);
}

static void test_rotation_chains_files(void **state)
{
    char db[512], kp[512], sealed[600];
    path_in(db, sizeof db, "r.db");
    path_in(kp, sizeof kp, "r.key");
    EVP_PKEY *k = make_key("r.key", false);
    start(db, kp, 1000, true, 256, 1000);
    submit_n(0, 50);
    wait_committed(50);
    cg_audit_request_rotate();
    snprintf(sealed, sizeof sealed, "%s.1-50", db);
    struct stat sb;
    for (int i = 0; i < 400 && stat(sealed, &sb) < 0; i++)
        sleep_ms(10);
    assert_int_equal(stat(sealed, &sb), 0);
    submit_n(50, 20);
    cg_audit_stop();
    cg_audit_verify_result res = verify(sealed, k);
    assert_true(res.intact);
    assert_int_equal(res.last_seq, 50);
    assert_int_equal(res.last_checkpoint_seq, 50);
    res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.first_seq, 51);
    assert_int_equal(res.last_seq, 71); /* the rotate record, then 20 */
    assert_non_null(strstr(res.notes, "link verified"));
    /* a sealed file whose final records were cut is detected */
    char cut[600];
    path_in(cut, sizeof cut, "cut.db");
    copy_file(sealed, cut);
    block_edit(cut, 50, BLOCK_DROP, NULL, NULL);
    sql(cut, "DELETE FROM checkpoints WHERE seq = 50;");
    res = verify(cut, k);
    assert_false(res.intact);
    assert_int_equal(res.broken_seq, 50);
    assert_non_null(strstr(res.what, "sealed"));
    /* the new file no longer chains when the sealed one is rewritten */
    block_edit(sealed, 50, BLOCK_ZERO_HASH, NULL, NULL);
    res = verify(db, k);
    assert_false(res.intact);
    assert_int_equal(res.broken_seq, 51);
    /* offline rotation (no gateway): works on a clean file */
    char sealed2[600];
    const char *err = NULL;
    assert_int_equal(cg_afile_rotate(db, NULL, NULL, sealed2, sizeof sealed2, &err), 0);
    snprintf(cut, sizeof cut, "%s.51-71", db);
    assert_string_equal(sealed2, cut);
    res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.first_seq, 72);
    EVP_PKEY_free(k);
}

static void test_interrupted_rotation_is_finished_on_open(void **state)
{
    char db[512], kp[512], sealed[600], newp[600];
    path_in(db, sizeof db, "ir.db");
    path_in(kp, sizeof kp, "ir.key");
    EVP_PKEY *k = make_key("ir.key", false);
    start(db, kp, 1000, true, 256, 1000);
    submit_n(0, 30);
    cg_audit_stop();
    /* crash right after the seal was committed, before any rename */
    sql(db, "UPDATE meta SET value = '1' WHERE key = 'sealed'");
    start(db, kp, 1000, true, 256, 1000);
    submit_n(30, 5);
    cg_audit_stop();
    snprintf(sealed, sizeof sealed, "%s.1-30", db);
    cg_audit_verify_result res = verify(sealed, k);
    assert_true(res.intact);
    assert_int_equal(res.last_seq, 30);
    res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.first_seq, 31);
    assert_int_equal(res.last_seq, 36); /* rotate record + 5 */
    /* crash between the two renames: only "<db>.new" is there */
    const char *err = NULL;
    char sealed2[600];
    assert_int_equal(cg_afile_rotate(db, NULL, NULL, sealed2, sizeof sealed2, &err), 0);
    snprintf(newp, sizeof newp, "%s.new", db);
    assert_int_equal(rename(db, newp), 0);
    start(db, kp, 1000, true, 256, 1000);
    submit_n(40, 3);
    cg_audit_stop();
    res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.first_seq, 37);
    assert_int_equal(res.last_seq, 40);
    assert_non_null(strstr(res.notes, "link verified"));
    EVP_PKEY_free(k);
}
/* ---- the verifier locates tampering ------------------------------------------- */

static char base_db[512];
static EVP_PKEY *base_key;

/* 30 records, checkpoints at 10, 20 and 30 (final). */
static void make_base(void)
{
    if (base_db[0])
        return;
    char kp[512];
    path_in(base_db, sizeof base_db, "base.db");
    path_in(kp, sizeof kp, "base.key");
    base_key = make_key("base.key", false);
    /* one row per record, as files before schema 3 hold them: their
     * tampering is named record by record (blocks: below) */
    write_file(base_db, base_key, 30, 10, CG_AFILE_ROWS);
    cg_audit_verify_result res = verify(base_db, base_key);
    assert_true(res.intact);
    assert_int_equal(res.checkpoints, 3);
}

/* Recomputes every hash from seq 'from' on and re-signs the checkpoints
 * with a key of the attacker's own, storing that key in the file. */
static void rewrite_chain(const char *db, EVP_PKEY *forger)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st, *up;
    uint8_t prev[32] = { 0 };
    sqlite3_prepare_v2(h, "SELECT seq, canon FROM records ORDER BY seq", -1, &st, NULL);
    sqlite3_prepare_v2(h, "UPDATE records SET hash = ? WHERE seq = ?", -1, &up, NULL);
    sqlite3_exec(h, "BEGIN", NULL, NULL, NULL);
    uint8_t hashes[64][32];
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        cg_audit_chain_hash(prev, c, strlen(c), prev);
        memcpy(hashes[seq], prev, 32);
        sqlite3_bind_blob(up, 1, prev, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 2, seq);
        sqlite3_step(up);
        sqlite3_reset(up);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    char fpr[65];
    cg_audit_key_fingerprint(forger, fpr);
    char *pem = cg_audit_key_public_pem(forger);
    sqlite3_prepare_v2(h, "INSERT INTO keys VALUES (?, ?)", -1, &st, NULL);
    sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, pem, -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_finalize(st);
    free(pem);
    sqlite3_prepare_v2(h, "UPDATE checkpoints SET hash = ?, signature = ?, key_fpr = ? "
                       "WHERE seq = ?", -1, &up, NULL);
    for (int seq = 10; seq <= 30; seq += 10) {
        char msg[CG_AUDIT_CKPT_MSG_MAX];
        size_t ml = cg_audit_checkpoint_msg((uint64_t)seq, hashes[seq], NULL, msg);
        uint8_t sig[256];
        size_t sl = sizeof sig;
        cg_audit_sign(forger, msg, ml, sig, &sl);
        sqlite3_bind_blob(up, 1, hashes[seq], 32, SQLITE_STATIC);
        sqlite3_bind_blob(up, 2, sig, (int)sl, SQLITE_STATIC);
        sqlite3_bind_text(up, 3, fpr, -1, SQLITE_STATIC);
        sqlite3_bind_int(up, 4, seq);
        sqlite3_step(up);
        sqlite3_reset(up);
    }
    sqlite3_finalize(up);
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(h);
}

static void test_verify_locates_tampering(void **state)
{
    make_base();
    static const struct {
        const char *name, *sql;
        bool with_key;
        bool intact;
        uint64_t seq;
        const char *what;
    } cases[] = {
        { "untouched", "", true, true, 0, NULL },
        { "field in canon", "UPDATE records SET canon = replace(canon, '\"INBOX\"', '\"Trash\"') "
          "WHERE seq = 5", false, false, 5, "record 5 changed: its hash" },
        { "field and column", "UPDATE records SET principal = 'eve', canon = replace(canon, "
          "'\"principal\":\"bob\"', '\"principal\":\"eve\"') WHERE seq = 5",
          false, false, 5, "record 5 changed" },
        { "column only", "UPDATE records SET decision = 'allow' WHERE seq = 4", false, false, 4,
          "search column" },
        { "number made non-canonical", "UPDATE records SET canon = replace(canon, "
          "'\"bytes_in\":6,', '\"bytes_in\":06,') WHERE seq = 7", false, false, 7, "canonical" },
        { "deleted", "DELETE FROM records WHERE seq = 7", false, false, 7, "record 7 removed" },
        { "deleted two", "DELETE FROM records WHERE seq IN (7, 8)", false, false, 7,
          "records 7-8 removed" },
        { "deleted and renumbered", "DELETE FROM records WHERE seq = 12; UPDATE records SET "
          "seq = seq - 1 WHERE seq > 12", false, false, 12, "record 12 removed" },
        { "swapped", "UPDATE records SET seq = -1 WHERE seq = 12; UPDATE records SET seq = 12 "
          "WHERE seq = 13; UPDATE records SET seq = 13 WHERE seq = -1", false, false, 12,
          "reordered" },
        { "inserted and renumbered", "UPDATE records SET seq = seq + 100 WHERE seq >= 8; "
          "UPDATE records SET seq = seq - 99 WHERE seq >= 108; INSERT INTO records "
          "SELECT 8, time, txid, principal, decision, canon, hash FROM records WHERE seq = 9",
          false, false, 8, "inserted" },
        { "tail truncated", "DELETE FROM records WHERE seq > 25", false, false, 26,
          "tail truncated" },
        { "checkpoint hash forged", "UPDATE checkpoints SET hash = zeroblob(32) WHERE seq = 20",
          false, false, 20, "checkpoint at seq 20 does not match" },
        { "checkpoint signature forged", "UPDATE checkpoints SET signature = zeroblob(64) "
          "WHERE seq = 20", true, false, 20, "signature does not verify" },
        { "checkpoint signature forged, no key", "UPDATE checkpoints SET signature = "
          "zeroblob(64) WHERE seq = 10", false, false, 10, "signature does not verify" },
        { "genesis changed", "UPDATE meta SET value = '" "11111111111111111111111111111111"
          "11111111111111111111111111111111' WHERE key = 'prev_hash'", false, false, 1,
          "record 1 changed" },
        /* The documented limit: a tail cut together with its checkpoint
         * looks like a crash before the next checkpoint. */
        { "tail and its checkpoint cut", "DELETE FROM records WHERE seq > 25; DELETE FROM "
          "checkpoints WHERE seq > 20", true, true, 0, NULL },
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(cases); i++) {
        char db[512];
        path_in(db, sizeof db, "case.db");
        unlink(db);
        copy_file(base_db, db);
        if (cases[i].sql[0])
            sql(db, cases[i].sql);
        cg_audit_verify_result res = verify(db, cases[i].with_key ? base_key : NULL);
        if (res.intact != cases[i].intact)
            fail_msg("%s: intact=%d (%s)", cases[i].name, res.intact, res.what);
        if (!cases[i].intact) {
            if (res.broken_seq != cases[i].seq || !strstr(res.what, cases[i].what))
                fail_msg("%s: broken at %llu: %s", cases[i].name,
                         (unsigned long long)res.broken_seq, res.what);
        } else if (i > 0) {
            assert_non_null(strstr(res.notes, "not signed yet"));
        }
    }
}

static void test_verify_rewritten_chain_needs_the_key(void **state)
{
    make_base();
    char db[512];
    path_in(db, sizeof db, "forged.db");
    unlink(db);
    copy_file(base_db, db);
    sql(db, "UPDATE records SET canon = replace(canon, '\"INBOX\"', '\"Trash\"') WHERE seq = 15");
    EVP_PKEY *forger = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    rewrite_chain(db, forger);
    /* consistent in itself: without the trusted key, it looks whole */
    cg_audit_verify_result res = verify(db, NULL);
    assert_true(res.intact);
    assert_non_null(strstr(res.notes, "give --key"));
    /* with the gateway's public key the first re-signed checkpoint fails */
    res = verify(db, base_key);
    assert_false(res.intact);
    assert_int_equal(res.broken_seq, 10);
    assert_non_null(strstr(res.what, "not signed by the given key"));
    EVP_PKEY_free(forger);
}

static int teardown(void **state)
{
    EVP_PKEY_free(base_key);
    return audit_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canon_null_record),
        cmocka_unit_test(test_canon_fields_and_escapes),
        cmocka_unit_test(test_canon_parse_roundtrip),
        cmocka_unit_test(test_chain_hash_is_sha256_of_prev_and_canon),
        cmocka_unit_test(test_sign_both_key_types),
        cmocka_unit_test(test_lock_names_the_holder),
        cmocka_unit_test(test_rotation_chains_files),
        cmocka_unit_test(test_interrupted_rotation_is_finished_on_open),
        cmocka_unit_test(test_verify_locates_tampering),
        cmocka_unit_test(test_verify_rewritten_chain_needs_the_key),
    };
    return cmocka_run_group_tests(tests, audit_setup, teardown);
}
