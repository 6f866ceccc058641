/* tests/unit/store/audit_helpers.c — what the audit test programs share
 * (audit_helpers.h): a scratch folder, keys, sample records, the real
 * writer started and filled, the verifier, SQL on a file. */
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

char tmpdir[256];

void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* A fresh Ed25519 (or P-256) key file; returns the key too. */
EVP_PKEY *make_key(const char *name, bool ec)
{
    EVP_PKEY *k = ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                     : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    char p[512];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return k;
}

void sample(cg_audit_rec *r, unsigned k, char *txid, size_t cap)
{
    const char *who[] = { "alice", "bob", "carol" };
    cg_audit_rec_init(r);
    snprintf(txid, cap, "S%u.%u", k / 10, k % 10);
    r->txid = txid;
    r->conn_id = k / 10 + 1;
    r->listener = "imaps";
    r->client = "127.0.0.1:4000";
    r->principal = who[k % 3];
    r->method = "cert";
    r->service = "imap";
    r->operation = "SELECT";
    r->resource = "INBOX";
    r->decision = k % 4 == 3 ? "deny" : "allow";
    r->rule_id = k % 5;
    r->result = "OK";
    r->bytes_in = k;
    r->bytes_out = 2 * k;
}

void start(const char *db, const char *key, unsigned ckpt_records, bool closed,
                  size_t cap, unsigned full_ms)
{
    cg_audit_config cfg = { .db_path = db, .key_path = key, .fail_closed = closed,
                            .checkpoint_records = ckpt_records, .checkpoint_seconds = 60,
                            .queue_capacity = cap, .queue_full_ms = full_ms };
    const char *err = NULL;
    int rc = cg_audit_start(&cfg, &err);
    if (rc < 0)
        fail_msg("cg_audit_start: %s", err);
}

void submit_n(unsigned from, unsigned n)
{
    for (unsigned k = from; k < from + n; k++) {
        cg_audit_rec r;
        char txid[32];
        sample(&r, k, txid, sizeof txid);
        int rc;
        while ((rc = cg_audit_submit(&r)) < 0)
            sleep_ms(1);
    }
}

void wait_committed(uint64_t n)
{
    cg_audit_stats st;
    for (int i = 0; i < 2000; i++) {
        cg_audit_get_stats(&st);
        if (st.committed >= n)
            return;
        sleep_ms(5);
    }
    fail_msg("only %llu of %llu records committed", (unsigned long long)st.committed,
             (unsigned long long)n);
}

cg_audit_verify_result verify(const char *db, EVP_PKEY *key)
{
    cg_audit_verify_result res;
    const char *err = NULL;
    int rc = cg_audit_verify_db(db, key, &res, &err);
    if (rc < 0)
        fail_msg("verify: %s", err);
    return res;
}

int sql_int(const char *db, const char *query)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    if (sqlite3_prepare_v2(h, query, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", query, sqlite3_errmsg(h));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

void sql(const char *db, const char *stmt)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(h, stmt, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", stmt, err);
    sqlite3_close(h);
}

cg_afile *afile_open(const char *db, const char *node)
{
    cg_afile *f = malloc(sizeof *f);
    assert_non_null(f);
    const char *err = NULL;
    if (cg_afile_open(f, db, node, true, &err) < 0)
        fail_msg("open %s: %s", db, err);
    return f;
}

void afile_close(cg_afile *f)
{
    cg_afile_close(f);
    free(f);
}

void write_file(const char *db, EVP_PKEY *key, unsigned n, unsigned every, int form)
{
    cg_afile *f = afile_open(db, NULL);
    f->form = form;
    assert_int_equal(cg_afile_register_key(f, key), 0);
    int64_t usec = 1796205600000001LL;
    for (unsigned k = 0; k < n;) {
        assert_int_equal(cg_afile_begin(f), 0);
        for (unsigned j = 0; j < every && k < n; j++, k++) {
            cg_audit_rec r;
            char txid[32];
            sample(&r, k, txid, sizeof txid);
            assert_int_equal(cg_afile_append(f, usec + k * 1000, &r), 0);
        }
        assert_int_equal(cg_afile_checkpoint(f, key, k == n, "2026-12-02T10:00:01.000000Z"), 0);
        assert_int_equal(cg_afile_commit(f), 0);
    }
    afile_close(f);
}

void block_edit(const char *db, uint64_t seq, enum block_how how, const char *find,
                const char *repl)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT first_seq, last_seq, data FROM blocks "
                                        "WHERE first_seq <= ?1 AND last_seq >= ?1", -1, &st,
                                        NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    uint64_t first = (uint64_t)sqlite3_column_int64(st, 0);
    uint64_t last = (uint64_t)sqlite3_column_int64(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    uint8_t *in = malloc(len), *out = malloc(len);
    assert_true(in && out);
    memcpy(in, sqlite3_column_blob(st, 2), len);
    sqlite3_finalize(st);
    cg_audit_block_cur c = { in, in + len };
    const uint8_t *rec, *hash;
    size_t rlen, olen = 0;
    cg_audit_bin_rec *kept = calloc(1, sizeof *kept); /* the last record kept */
    assert_non_null(kept);
    for (uint64_t at = first; cg_audit_block_next(&c, &rec, &rlen, &hash) == 1; at++) {
        uint8_t e[CG_AUDIT_ENTRY_MAX];
        int k = cg_audit_block_put(e, sizeof e, rec, rlen, hash);
        assert_true(k > 0);
        if (at == seq && how == BLOCK_DROP)
            continue;
        assert_int_equal(cg_audit_bin_decode(rec, rlen, kept), 0);
        if (at == seq && how == BLOCK_ZERO_HASH)
            memset(e + k - CG_AUDIT_HASH_LEN, 0, CG_AUDIT_HASH_LEN);
        if (at == seq && how == BLOCK_PATCH) {
            uint8_t *p = memmem(e, (size_t)k - CG_AUDIT_HASH_LEN, find, strlen(find));
            assert_non_null(p);
            assert_int_equal(strlen(find), strlen(repl));
            memcpy(p, repl, strlen(repl));
        }
        memcpy(out + olen, e, (size_t)k);
        olen += (size_t)k;
    }
    /* the columns kept in step, as a careful editor would */
    char t1[CG_TIME_LEN];
    cg_time_rfc3339(kept->usec, t1);
    assert_int_equal(sqlite3_prepare_v2(h, "UPDATE blocks SET last_seq = ?, data = ?, "
                                        "last_time = ? WHERE first_seq = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)(how == BLOCK_DROP ? last - 1 : last));
    sqlite3_bind_blob(st, 2, out, (int)olen, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t1, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)first);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(h);
    free(in);
    free(out);
    free(kept);
}

void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

int audit_setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cg-audit-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

int audit_teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}
