/* tests/unit/store/audit_fill.c — a small driver of the real audit writer for the CLI tests
 * (tests/integration/test_audit_cli.py): starts the writer, submits N
 * varied records, and stops; or crashes (kill -9 of itself) once they are
 * committed; or holds the file, rotating on SIGUSR1, until SIGTERM; or
 * submits from three threads until SIGTERM (--load); or fills
 * the file system with a filler file and runs the disk-full cycle.
 * Not a test by itself. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/audit.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

static volatile sig_atomic_t got_term;
static void on_term(int sig) { got_term = 1; }
static void on_usr1(int sig) { cg_audit_request_rotate(); }

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int fill(uint64_t base, uint64_t n)
{
    static const char *principals[] = { "alice", "bob", "carol" };
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = base + i;
        char txid[48], res[64], sha[65];
        snprintf(txid, sizeof txid, "S%04llu.%llu", (unsigned long long)(k / 10),
                 (unsigned long long)(k % 10));
        snprintf(res, sizeof res, "/dav/file%llu.txt", (unsigned long long)k);
        memset(sha, 'a' + (int)(k % 6), 64);
        sha[64] = '\0';
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.txid = txid;
        r.conn_id = k / 10 + 1;
        r.listener = k % 2 ? "content" : "imaps";
        r.client = "127.0.0.1:40000";
        r.principal = principals[k % 3];
        r.method = k % 2 ? "cert" : "psk";
        r.tls_version = "TLSv1.3";
        r.tls_cipher = "TLS_AES_128_GCM_SHA256";
        r.service = k % 2 ? "http" : "imap";
        r.operation = k % 2 ? "PUT" : "SELECT";
        r.resource = k % 2 ? res : "INBOX";
        r.decision = k % 4 == 3 ? "deny" : "allow";
        r.rule_id = (int64_t)(k % 7);
        r.result = k % 2 ? "201" : "OK";
        r.bytes_in = (int64_t)(k * 3);
        r.bytes_out = (int64_t)(k * 5);
        r.content_sha256 = k % 2 ? sha : NULL;
        /* One record with everything an escaper can get wrong. */
        if (k == 4)
            r.reason = "quote \" backslash \\ newline \n tab \t ctl \x01 utf8 \xc3\xa9 bad \xff";
        int rc;
        /* A full queue: wait for the writer (this is a test driver). An
         * unavailable log: the record is kept, do not submit it twice. */
        for (int tries = 0; (rc = cg_audit_submit(&r)) < 0 && cg_audit_available() &&
                            tries < 1000; tries++)
            sleep_ms(2);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void wait_committed(uint64_t n)
{
    cg_audit_stats st;
    for (int i = 0; i < 3000; i++) {
        cg_audit_get_stats(&st);
        if (st.committed >= n)
            return;
        sleep_ms(10);
    }
}

/* --load: submitters until SIGTERM; counts what the log acknowledged. */
static _Atomic uint64_t acked;

static void *load_thread(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg * 100000000ull;
    for (uint64_t k = 0; !got_term; k++) {
        cg_audit_rec r;
        char txid[48];
        cg_audit_rec_init(&r);
        snprintf(txid, sizeof txid, "L%llu", (unsigned long long)(base + k));
        r.txid = txid;
        r.service = "imap";
        r.operation = "NOOP";
        r.result = "OK";
        if (cg_audit_submit(&r) == 0)
            atomic_fetch_add(&acked, 1);
        else
            sleep_ms(1);
    }
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: audit_fill --db F [--key K] [-n N] [--checkpoint-records C]\n"
                    "       [--checkpoint-seconds S] [--crash | --hold | --load | --diskfull FILLER]\n");
    return 2;
}

int main(int argc, char **argv)
{
    cg_audit_config cfg = { .fail_closed = true, .checkpoint_records = 100,
                            .checkpoint_seconds = 5, .queue_capacity = 4096 };
    uint64_t n = 10;
    bool crash = false, hold = false, load = false;
    const char *filler = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (strcmp(a, "--crash") == 0) { crash = true; continue; }
        if (strcmp(a, "--hold") == 0) { hold = true; continue; }
        if (strcmp(a, "--load") == 0) { load = true; continue; }
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--db") == 0) cfg.db_path = v;
        else if (strcmp(a, "--key") == 0) cfg.key_path = v;
        else if (strcmp(a, "--diskfull") == 0) filler = v;
        else if (cg_parse_u64(v, 0, 100000000, &u) < 0) return usage();
        else if (strcmp(a, "-n") == 0) n = u;
        else if (strcmp(a, "--checkpoint-records") == 0) cfg.checkpoint_records = (unsigned)u;
        else if (strcmp(a, "--checkpoint-seconds") == 0) cfg.checkpoint_seconds = (unsigned)u;
        else return usage();
    }
    if (!cfg.db_path)
        return usage();
    signal(SIGTERM, on_term);
    signal(SIGUSR1, on_usr1);
    const char *err = NULL;
    if (cg_audit_start(&cfg, &err) < 0) {
        fprintf(stderr, "audit_fill: %s\n", err);
        return 1;
    }
    if (filler) {
        /* The file system fills up under the running writer: records fail
         * to commit, the log turns unavailable and submit refuses; then
         * space returns. */
        FILE *f = fopen(filler, "wb");
        if (!f) {
            cg_audit_stop();
            return 1;
        }
        static char zeros[4096];
        while (fwrite(zeros, 1, sizeof zeros, f) == sizeof zeros && fflush(f) == 0)
            ;
        fclose(f);
        uint64_t k = 0;
        for (int i = 0; i < 20000 && cg_audit_available(); i++) {
            fill(k, 20);
            k += 20;
            sleep_ms(5);
        }
        if (cg_audit_available()) {
            printf("still available\n");
            cg_audit_stop();
            return 1;
        }
        cg_audit_rec r;
        cg_audit_rec_init(&r);
        r.service = "imap";
        r.operation = "NOOP";
        printf("unavailable after %llu records; submit %s\n", (unsigned long long)k,
               cg_audit_submit(&r) == CG_E_AUDIT ? "refused" : "accepted");
        fflush(stdout);
        unlink(filler);
        for (int i = 0; i < 3000 && !cg_audit_available(); i++)
            sleep_ms(10);
        printf("%s\n", cg_audit_available() ? "recovered" : "not recovered");
        fill(k, 10);
        cg_audit_stop();
        cg_audit_stats st;
        cg_audit_get_stats(&st);
        printf("committed %llu failures %llu\n", (unsigned long long)st.committed,
               (unsigned long long)st.failures);
        return 0;
    }
    if (load) {
        pthread_t th[3];
        for (uintptr_t i = 0; i < 3; i++)
            pthread_create(&th[i], NULL, load_thread, (void *)i);
        printf("ready %ld\n", (long)getpid());
        fflush(stdout);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        cg_audit_stop(); /* what SIGTERM does in the gateway: commit all */
        cg_audit_stats st;
        cg_audit_get_stats(&st);
        printf("acked %llu committed %llu\n", (unsigned long long)atomic_load(&acked),
               (unsigned long long)st.committed);
        return 0;
    }
    if (fill(0, n) < 0) {
        fprintf(stderr, "audit_fill: submit failed\n");
        cg_audit_stop();
        return 1;
    }
    if (crash) {
        wait_committed(n);
        raise(SIGKILL); /* no stop, no final checkpoint: what kill -9 leaves */
    }
    if (hold) {
        printf("ready %ld\n", (long)getpid());
        fflush(stdout);
        while (!got_term)
            sleep_ms(20);
    }
    cg_audit_stop();
    cg_audit_stats st;
    cg_audit_get_stats(&st);
    printf("committed %llu\n", (unsigned long long)st.committed);
    return 0;
}
