/* tests/unit/store/test_audit_node.c — the node id, originator and
 * origin_txid of an audit record (store/audit_canon.c, audit_file.c,
 * audit_verify.c, the writer): left out of the canon when null so old
 * records keep their exact bytes and hash, round-tripped when set, signed
 * into checkpoints, a file of schema version 1 still verified and upgraded
 * in place, and a changed node caught by the verifier; the order in which
 * export --merge interleaves several nodes' records (store/audit_merge.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/audit.h"
#include "store/audit_canon.h"
#include "store/audit_file.h"
#include "store/audit_merge.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "tests/unit/store/audit_helpers.h"

#define T0 "2026-12-02T10:00:00.000001Z"
#define T0_USEC 1796205600000001LL /* T0 */

/* ---- canon ------------------------------------------------------------------ */

static void test_new_fields_roundtrip_in_order(void **state)
{
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    r.reason = "why";
    r.node = "gw-a.example";
    r.originator = "bob@REMOTE.EXAMPLE";
    r.origin_txid = "S9.4";
    char out[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(out, sizeof out, 3, T0, &r);
    assert_true(n > 0);
    const char *tail = strstr(out, ",\"reason\":");
    assert_non_null(tail);
    assert_string_equal(tail, ",\"reason\":\"why\",\"node\":\"gw-a.example\","
                        "\"originator\":\"bob@REMOTE.EXAMPLE\",\"origin_txid\":\"S9.4\"}");
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_non_null(p);
    assert_int_equal(cg_audit_canon_parse(out, (size_t)n, p), 0);
    assert_string_equal(p->rec.node, "gw-a.example");
    assert_string_equal(p->rec.originator, "bob@REMOTE.EXAMPLE");
    assert_string_equal(p->rec.origin_txid, "S9.4");
    char again[CG_AUDIT_CANON_MAX];
    assert_int_equal(cg_audit_canon(again, sizeof again, p->seq, p->time, &p->rec), n);
    assert_string_equal(again, out);

    /* each one alone: the others are absent, not null */
    cg_audit_rec_init(&r);
    r.originator = "bob@R";
    cg_audit_canon(out, sizeof out, 3, T0, &r);
    tail = strstr(out, ",\"reason\":");
    assert_string_equal(tail, ",\"reason\":null,\"originator\":\"bob@R\"}");
    assert_int_equal(cg_audit_canon_parse(out, strlen(out), p), 0);
    assert_null(p->rec.node);
    assert_string_equal(p->rec.originator, "bob@R");
    assert_null(p->rec.origin_txid);
    free(p);
}

static void test_record_without_new_fields_keeps_its_bytes(void **state)
{
    /* a record as written before the fields existed: its canon ends at
     * reason, so its hash is what it always was */
    const char *old = "{\"seq\":1,\"time\":\"" T0 "\",\"txid\":\"S1.1\",\"request_id\":null,"
        "\"conn_id\":2,\"listener\":\"imaps\",\"client\":\"127.0.0.1:4000\","
        "\"principal\":\"alice\",\"method\":\"cert\",\"tls_version\":null,"
        "\"tls_cipher\":null,\"service\":\"imap\",\"operation\":\"SELECT\","
        "\"resource\":\"INBOX\",\"decision\":\"allow\",\"rule_id\":4,\"result\":\"OK\","
        "\"bytes_in\":1,\"bytes_out\":2,\"content_sha256\":null,\"key_id\":null,"
        "\"validation\":null,\"reason\":null}";
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_non_null(p);
    assert_int_equal(cg_audit_canon_parse(old, strlen(old), p), 0);
    assert_null(p->rec.node);
    char out[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(out, sizeof out, p->seq, p->time, &p->rec);
    assert_int_equal(n, (int)strlen(old));
    assert_string_equal(out, old);
    free(p);
}

static void test_parser_rejects_null_reordered_and_unknown_trailing(void **state)
{
    static const char *const tails[] = {
        ",\"node\":null}",                                   /* null: never written */
        ",\"originator\":\"a@B\",\"node\":\"n\"}",           /* out of order */
        ",\"node\":\"n\",\"node\":\"n\"}",                   /* twice */
        ",\"site\":\"x\"}",                                  /* unknown */
        ",\"node\":\"n\"",                                   /* unterminated */
    };
    cg_audit_rec r;
    cg_audit_rec_init(&r);
    char base[CG_AUDIT_CANON_MAX];
    int n = cg_audit_canon(base, sizeof base, 1, T0, &r);
    cg_audit_parsed *p = malloc(sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < CG_ARRAY_LEN(tails); i++) {
        char in[CG_AUDIT_CANON_MAX];
        snprintf(in, sizeof in, "%.*s%s", n - 1, base, tails[i]);
        assert_int_equal(cg_audit_canon_parse(in, strlen(in), p), CG_E_PARSE);
    }
    free(p);
}

static void test_checkpoint_message_signs_the_node(void **state)
{
    uint8_t h[CG_AUDIT_HASH_LEN];
    memset(h, 0xab, sizeof h);
    char a[CG_AUDIT_CKPT_MSG_MAX], b[CG_AUDIT_CKPT_MSG_MAX], hex[65];
    cg_hex_encode(h, sizeof h, hex);
    size_t n = cg_audit_checkpoint_msg(12, h, "gw-a", a);
    snprintf(b, sizeof b, "cpmgate-audit-checkpoint-v2\n12\n%s\ngw-a", hex);
    assert_int_equal(n, strlen(b));
    assert_string_equal(a, b);
    cg_audit_checkpoint_msg(12, h, NULL, a);
    snprintf(b, sizeof b, "cpmgate-audit-checkpoint-v1\n12\n%s", hex);
    assert_string_equal(a, b);
    char longest[CG_AUDIT_NODE_MAX + 1];
    memset(longest, 'n', CG_AUDIT_NODE_MAX);
    longest[CG_AUDIT_NODE_MAX] = '\0';
    assert_true(cg_audit_node_ok(longest));
    n = cg_audit_checkpoint_msg(UINT64_MAX, h, longest, a);
    assert_true(n < sizeof a);
    assert_non_null(strstr(a, longest));
    assert_false(cg_audit_node_ok(""));
    assert_false(cg_audit_node_ok("a b"));
    assert_false(cg_audit_node_ok("a\"b"));
    longest[0] = 'x';
    char too_long[CG_AUDIT_NODE_MAX + 2];
    snprintf(too_long, sizeof too_long, "%sx", longest);
    assert_false(cg_audit_node_ok(too_long));
}

/* ---- files ------------------------------------------------------------------ */

/* Appends n samples from seq last+1 on with node set, and a checkpoint. */
static void append_signed(cg_afile *f, EVP_PKEY *key, unsigned from, unsigned n)
{
    assert_int_equal(cg_afile_begin(f), 0);
    for (unsigned k = from; k < from + n; k++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, k, txid, sizeof txid);
        r.node = f->node[0] ? f->node : NULL;
        assert_int_equal(cg_afile_append(f, T0_USEC, &r), 0);
    }
    assert_int_equal(cg_afile_register_key(f, key), 0);
    assert_int_equal(cg_afile_checkpoint(f, key, false, T0), 0);
    assert_int_equal(cg_afile_commit(f), 0);
}

/* A file as the version before node ids wrote it: records without a
 * node, v1 checkpoints, schema version 1 (no checkpoints.node). */
static void write_v1_file(const char *db, EVP_PKEY *key, unsigned n)
{
    cg_afile *f = afile_open(db, NULL);
    f->form = CG_AFILE_ROWS; /* as versions before blocks stored them */
    append_signed(f, key, 1, n);
    afile_close(f);
    sql(db, "DROP TABLE blocks; ALTER TABLE checkpoints DROP COLUMN node; "
           "PRAGMA user_version = 1;");
}

static void test_v1_file_verifies_then_upgrades_in_place(void **state)
{
    char db[512];
    path_in(db, sizeof db, "v1.db");
    EVP_PKEY *k = make_key("v1.key", false);
    write_v1_file(db, k, 5);
    /* read by this version without being changed */
    cg_audit_verify_result res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.last_seq, 5);
    assert_int_equal(res.last_checkpoint_seq, 5);
    assert_int_equal(sql_int(db, "PRAGMA user_version"), 1);
    /* opened by the writer: version 3, the old records untouched, new ones
     * with the node (in a block after the rows), the new checkpoint
     * signing it */
    cg_afile *f = afile_open(db, "gw-a");
    assert_int_equal(sql_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(f->last_seq, 5);
    append_signed(f, k, 6, 3);
    afile_close(f);
    res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.last_seq, 8);
    assert_int_equal(res.checkpoints, 2);
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT (SELECT node FROM checkpoints WHERE seq = 5),"
                                        " (SELECT node FROM checkpoints WHERE seq = 8),"
                                        " (SELECT count(*) FROM records)",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_type(st, 0), SQLITE_NULL);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "gw-a");
    assert_int_equal(sqlite3_column_int(st, 2), 5);
    sqlite3_finalize(st);
    sqlite3_close(h);
    char **cs;
    size_t ncs = canons(db, &cs);
    assert_int_equal(ncs, 8);
    assert_null(strstr(cs[4], "\"node\""));
    assert_non_null(strstr(cs[7], ",\"node\":\"gw-a\"}"));
    canons_free(cs, ncs);
    EVP_PKEY_free(k);
}

/* The verdict on a copy of db changed by stmt; it must be broken. */
static cg_audit_verify_result tampered(const char *db, EVP_PKEY *k, const char *stmt)
{
    char t[512];
    path_in(t, sizeof t, "tampered.db");
    copy_file(db, t);
    sql(t, stmt);
    cg_audit_verify_result res = verify(t, k);
    assert_false(res.intact);
    return res;
}

static void test_changed_node_fails_verification(void **state)
{
    char db[512];
    path_in(db, sizeof db, "n.db");
    EVP_PKEY *k = make_key("n.key", false);
    cg_afile *f = afile_open(db, "gw-a");
    f->form = CG_AFILE_ROWS; /* as versions before blocks stored them */
    append_signed(f, k, 1, 10);
    afile_close(f);
    assert_true(verify(db, k).intact);
    /* the node of a record changed: its hash no longer follows */
    assert_int_equal(tampered(db, k, "UPDATE records SET canon = "
                              "replace(canon, '\"gw-a\"', '\"gw-b\"') WHERE seq = 4").broken_seq, 4);
    /* the node left out of a record: likewise */
    assert_int_equal(tampered(db, k, "UPDATE records SET canon = "
                              "replace(canon, ',\"node\":\"gw-a\"', '') WHERE seq = 7").broken_seq, 7);
    /* the node of a checkpoint changed: not the record's node */
    assert_int_equal(tampered(db, k, "UPDATE checkpoints SET node = 'gw-b'").broken_seq, 10);
    /* the node taken off a checkpoint: the signature covers it */
    cg_audit_verify_result res = tampered(db, k, "UPDATE checkpoints SET node = NULL");
    assert_int_equal(res.broken_seq, 10);
    assert_non_null(strstr(res.what, "signature"));
    EVP_PKEY_free(k);
}

static void test_writer_stamps_its_node(void **state)
{
    char db[512], kp[512];
    path_in(db, sizeof db, "w.db");
    path_in(kp, sizeof kp, "w.key");
    EVP_PKEY *k = make_key("w.key", true);
    const char *err = NULL;
    cg_audit_config bad = { .db_path = db, .node_id = "no spaces" };
    assert_int_equal(cg_audit_start(&bad, &err), CG_E_INVAL);
    cg_audit_config cfg = { .db_path = db, .key_path = kp, .fail_closed = true,
                            .checkpoint_records = 4, .node_id = "gw-b.example" };
    if (cg_audit_start(&cfg, &err) < 0)
        fail_msg("start: %s", err);
    submit_n(0, 10);
    wait_committed(10);
    cg_audit_stop();
    cg_audit_verify_result res = verify(db, k);
    assert_true(res.intact);
    assert_int_equal(res.last_checkpoint_seq, 10);
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char **cs;
    size_t ncs = canons(db, &cs);
    int stamped = 0;
    for (size_t i = 0; i < ncs; i++)
        stamped += cs[i] && strstr(cs[i], ",\"node\":\"gw-b.example\"}") != NULL;
    canons_free(cs, ncs);
    assert_int_equal(stamped, 10);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT (SELECT count(*) FROM checkpoints WHERE node"
                                        " = 'gw-b.example'), (SELECT count(*) FROM checkpoints)",
                                        -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), sqlite3_column_int(st, 1));
    assert_true(sqlite3_column_int(st, 1) >= 2);
    sqlite3_finalize(st);
    sqlite3_close(h);
    EVP_PKEY_free(k);
}

/* ---- merge order ------------------------------------------------------------ */

static void test_merge_orders_by_time_then_node_then_seq(void **state)
{
    /* three sources; heads as export --merge would see them */
    cg_audit_mkey h[3] = {
        { true, "2026-12-02T10:00:01.000000Z", "gw-b", 7 },
        { true, "2026-12-02T10:00:01.000000Z", "gw-a", 9 },
        { true, "2026-12-02T10:00:00.999999Z", "gw-c", 1 },
    };
    assert_int_equal(cg_audit_merge_pick(h, 3), 2);      /* earliest time */
    h[2].live = false;
    assert_int_equal(cg_audit_merge_pick(h, 3), 1);      /* same time: node */
    h[1].node = "gw-b";
    h[1].seq = 3;
    assert_int_equal(cg_audit_merge_pick(h, 3), 1);      /* same node: seq */
    h[1].seq = 7;
    assert_int_equal(cg_audit_merge_cmp(&h[0], &h[1]), 0);
    assert_int_equal(cg_audit_merge_pick(h, 3), 0);      /* a full tie: first source */
    h[0].node = NULL;                                    /* no node sorts first */
    assert_true(cg_audit_merge_cmp(&h[0], &h[1]) < 0);
    assert_true(cg_audit_merge_cmp(&h[1], &h[0]) > 0);
    h[0].live = h[1].live = false;
    assert_int_equal(cg_audit_merge_pick(h, 3), -1);
    assert_int_equal(cg_audit_merge_pick(h, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_fields_roundtrip_in_order),
        cmocka_unit_test(test_record_without_new_fields_keeps_its_bytes),
        cmocka_unit_test(test_parser_rejects_null_reordered_and_unknown_trailing),
        cmocka_unit_test(test_checkpoint_message_signs_the_node),
        cmocka_unit_test(test_v1_file_verifies_then_upgrades_in_place),
        cmocka_unit_test(test_changed_node_fails_verification),
        cmocka_unit_test(test_writer_stamps_its_node),
        cmocka_unit_test(test_merge_orders_by_time_then_node_then_seq),
    };
    return cmocka_run_group_tests(tests, audit_setup, audit_teardown);
}
