/* bench_audit.c — records per second that the audit writer sustains
 * (issue target: 100,000/s on one core) and the writer's CPU per record
 * (issue 15: at most 1 µs; the process's CPU time less the submitting
 * thread's, which does not depend on how busy the machine is): one thread
 * submits as fast as the queue takes records, the writer chains, commits
 * and signs checkpoints every 1000. With RATE, records come at that steady
 * rate instead (a gateway's load: the writer's group commit then gathers
 * what 5 ms bring, and the cost of a commit counts). The peer, measured in the same run on the same disk, is a
 * bare SQLite loop inserting the same canon text in transactions of 1000
 * with no hashing, copying or signing, so the ratio says what the audit
 * machinery costs. Usage: bench_audit [N [RATE]] (default 300000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "store/audit.h"
#include "store/audit_canon.h"
#include "common/cg_util.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void sample(cg_audit_rec *r, uint64_t k, char *txid, size_t cap)
{
    cg_audit_rec_init(r);
    snprintf(txid, cap, "7f3a9c21.%llu", (unsigned long long)k);
    r->txid = txid;
    r->conn_id = k / 20 + 1;
    r->listener = "imaps";
    r->client = "127.0.0.1:51234";
    r->principal = "alice";
    r->method = "cert";
    r->tls_version = "TLSv1.3";
    r->tls_cipher = "TLS_AES_128_GCM_SHA256";
    r->service = "imap";
    r->operation = "FETCH";
    r->resource = "INBOX";
    r->decision = "allow";
    r->rule_id = 12;
    r->result = "OK";
    r->bytes_in = 40;
    r->bytes_out = 2048;
}

static double peer(const char *path, uint64_t n)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE r (seq INTEGER PRIMARY KEY, canon TEXT)", NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "INSERT INTO r VALUES (?, ?)", -1, &st, NULL);
    cg_audit_rec r;
    char txid[48], canon[CG_AUDIT_CANON_MAX];
    sample(&r, 0, txid, sizeof txid);
    int len = cg_audit_canon(canon, sizeof canon, 1, "2026-12-02T10:00:00.000000Z", &r);
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        if (i % 1000 == 0)
            sqlite3_exec(db, i ? "COMMIT; BEGIN" : "BEGIN", NULL, NULL, NULL);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)i + 1);
        sqlite3_bind_text(st, 2, canon, len, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    double dt = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n / dt;
}

int main(int argc, char **argv)
{
    uint64_t n = 300000, pace = 0;
    if ((argc > 1 && cg_parse_u64(argv[1], 1000, 100000000, &n) < 0) ||
        (argc > 2 && cg_parse_u64(argv[2], 1, 10000000, &pace) < 0)) {
        fprintf(stderr, "usage: bench_audit [N [RATE]]\n");
        return 2;
    }
    char dir[] = "/tmp/cg-bench-audit-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char db[256], key[256], peerdb[256];
    snprintf(db, sizeof db, "%s/audit.db", dir);
    snprintf(key, sizeof key, "%s/audit.key", dir);
    snprintf(peerdb, sizeof peerdb, "%s/peer.db", dir);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    FILE *f = fopen(key, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(k);

    cg_audit_config cfg = { .db_path = db, .key_path = key, .fail_closed = true,
                            .checkpoint_records = 1000, .checkpoint_seconds = 5,
                            .queue_capacity = 65536 };
    const char *err = NULL;
    if (cg_audit_start(&cfg, &err) < 0) {
        fprintf(stderr, "bench_audit: %s\n", err);
        return 1;
    }
    cg_audit_rec r;
    char txid[48];
    double t0 = now_s(), submit_busy = 0;
    double p0 = cpu_s(RUSAGE_SELF), m0 = cpu_s(RUSAGE_THREAD);
    uint64_t retries = 0;
    for (uint64_t i = 0; i < n; i++) {
        sample(&r, i, txid, sizeof txid);
        double due = t0 + (double)i / (double)pace, s0 = now_s();
        if (pace && due > s0) { /* a steady RATE records/s, as a gateway submits them */
            struct timespec ts = { (time_t)(due - s0), (long)((due - s0 - (time_t)(due - s0)) * 1e9) };
            nanosleep(&ts, NULL);
            s0 = now_s();
        }
        while (cg_audit_submit(&r) < 0) {
            retries++;
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL); /* queue full: the writer is the bottleneck */
        }
        submit_busy += now_s() - s0;
    }
    cg_audit_stats st;
    do {
        cg_audit_get_stats(&st);
    } while (st.committed < n && (usleep(200), 1));
    double dt = now_s() - t0;
    double main_cpu = cpu_s(RUSAGE_THREAD) - m0;
    double writer_cpu = cpu_s(RUSAGE_SELF) - p0 - main_cpu;
    cg_audit_stop();
    cg_audit_get_stats(&st);
    double rate = n / dt;
    double prate = peer(peerdb, n);
    printf("audit writer: %llu records in %.3f s = %.0f records/s (%llu checkpoints, "
           "%llu full-queue retries, submit %.0f ns/record incl. waits)\n",
           (unsigned long long)n, dt, rate, (unsigned long long)st.checkpoints,
           (unsigned long long)retries, submit_busy / n * 1e9);
    printf("CPU per record%s: writer %.2f µs (target 1 µs: %s), submitting thread %.2f µs\n",
           pace ? " at the given rate" : "", writer_cpu / n * 1e6,
           writer_cpu / n * 1e6 <= 1.0 ? "met" : "not met", main_cpu / n * 1e6);
    if (pace) { /* the peer and verify measure the full-speed case */
        cg_audit_stop();
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
    }
    printf("peer (bare SQLite insert, same rows): %.0f records/s\n", prate);
    printf("ratio audit/peer: %.2f; target 100000/s: %s\n", rate / prate,
           rate >= 100000 ? "met" : "not met");
    cg_audit_verify_result res;
    if (cg_audit_verify_db(db, NULL, &res, &err) == 0)
        printf("verify: %s, %llu records\n", res.intact ? "intact" : res.what,
               (unsigned long long)res.records);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
