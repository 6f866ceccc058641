/* bench_snapshot.c — the identity side of the policy snapshot with 10,000
 * principals, each with a PSK, a certificate fingerprint, a certificate
 * name and an address: snapshot build time, lookups per second by each
 * credential kind, and cg_snapshot_acquire/release against the obvious
 * peer (a mutex around the current pointer and its refcount), one and two
 * threads, reported as a ratio measured in the same run.
 *
 *   bench_snapshot [DIR]     (a scratch directory; default /tmp)
 * Build it in a release build directory for meaningful figures. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cg_util.h"
#include "store/db.h"
#include "policy/identity.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/bench/bench_util.h"

#define N 10000
#define LOOKUPS 2000000
#define ACQUIRES 4000000

static void fpr_of(int i, uint8_t fpr[32])
{
    memset(fpr, 0x5a, 32);
    memcpy(fpr, &i, sizeof i);
}

/* The policy, written in one transaction (the edit API commits each
 * change with an fsync; that is not what is measured here). */
static void populate(cg_pstore *st)
{
    sqlite3 *h = cg_db_handle(cg_pstore_db(st));
    const char *err = NULL;
    check(cg_db_begin(cg_pstore_db(st), &err), "begin", err);
    sqlite3_stmt *p = NULL, *c = NULL;
    sqlite3_prepare_v2(h, "INSERT INTO principal (id, name, kind, enabled, created) "
                          "VALUES (?1, ?2, 'user', 1, 'now')", -1, &p, NULL);
    sqlite3_prepare_v2(h, "INSERT INTO credential (principal_id, type, value, secret, created) "
                          "VALUES (?1, ?2, ?3, ?4, 'now')", -1, &c, NULL);
    uint8_t key[32] = { 1 };
    for (int i = 0; i < N; i++) {
        char name[32], v[80];
        snprintf(name, sizeof name, "u%d", i);
        sqlite3_bind_int(p, 1, i + 1);
        sqlite3_bind_text(p, 2, name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(p) != SQLITE_DONE)
            check(-1, "principal", sqlite3_errmsg(h));
        sqlite3_reset(p);
        for (int k = 0; k < 4; k++) {
            uint8_t fpr[32];
            const char *type = "psk";
            if (k == 0) {
                snprintf(v, sizeof v, "psk-%d", i);
            } else if (k == 1) {
                type = "cert";
                fpr_of(i, fpr);
                cg_hex_encode(fpr, 32, v);
            } else if (k == 2) {
                type = "cert-name";
                snprintf(v, sizeof v, "email:u%d@example.com", i);
            } else {
                type = "address";
                /* a spread of prefix lengths (/24 to /29), as real
                 * networks have; each covers the .7 the lookups use */
                int len = 24 + i % 6;
                uint32_t a = htonl(0x0a000000u | ((uint32_t)i << 8));
                uint8_t *b = (uint8_t *)&a;
                snprintf(v, sizeof v, "%u.%u.%u.%u/%d", b[0], b[1], b[2], b[3], len);
            }
            sqlite3_bind_int(c, 1, i + 1);
            sqlite3_bind_text(c, 2, type, -1, SQLITE_STATIC);
            sqlite3_bind_text(c, 3, v, -1, SQLITE_TRANSIENT);
            if (k == 0)
                sqlite3_bind_blob(c, 4, key, sizeof key, SQLITE_STATIC);
            else
                sqlite3_bind_null(c, 4);
            if (sqlite3_step(c) != SQLITE_DONE)
                check(-1, "credential", sqlite3_errmsg(h));
            sqlite3_reset(c);
        }
    }
    sqlite3_finalize(p);
    sqlite3_finalize(c);
    check(cg_db_commit(cg_pstore_db(st), &err), "commit", err);
}

/* ---- the peer: a mutex-guarded pointer with a plain refcount ------------ */

static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { unsigned refs; } peer_obj = { 1 };

static void *peer_loop(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&peer_lock);
        peer_obj.refs++;
        pthread_mutex_unlock(&peer_lock);
        pthread_mutex_lock(&peer_lock);
        peer_obj.refs--;
        pthread_mutex_unlock(&peer_lock);
    }
    return NULL;
}

static atomic_long sink;

static void *acquire_loop(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        cg_snapshot *s = cg_snapshot_acquire();
        atomic_fetch_add_explicit(&sink, (long)cg_snapshot_nprincipals(s), memory_order_relaxed);
        cg_snapshot_release(s);
    }
    return NULL;
}

static double run_threads(void *(*fn)(void *), int threads, long per_thread)
{
    pthread_t t[2];
    double t0 = now();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, (void *)per_thread);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return now() - t0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/bench-snapshot-%d.db", dir, (int)getpid());
    cg_pstore *st;
    const char *err = NULL;
    check(cg_pstore_open(path, CG_PSTORE_CREATE, &st, &err), "open", err);
    populate(st);

    double t0 = now();
    cg_snapshot *s = NULL;
    const int builds = 5;
    for (int i = 0; i < builds; i++) {
        if (s)
            cg_snapshot_release(s);
        check(cg_snapshot_build(st, &s, &err), "build", err);
    }
    printf("snapshot build, %d principals x 4 credentials: %.1f ms\n", N,
           (now() - t0) / builds * 1e3);

    volatile size_t found = 0;
    t0 = now();
    for (long i = 0; i < LOOKUPS; i++) {
        char id[32];
        int n = snprintf(id, sizeof id, "psk-%ld", (i * 7919) % N);
        const uint8_t *k;
        size_t kl;
        found += cg_identity_by_psk(s, id, (size_t)n, &k, &kl) != NULL;
    }
    double psk = now() - t0;
    t0 = now();
    for (long i = 0; i < LOOKUPS; i++) {
        uint8_t fpr[32];
        fpr_of((int)((i * 7919) % N), fpr);
        found += cg_identity_by_cert(s, fpr, NULL, 0) != NULL;
    }
    double cert = now() - t0;
    t0 = now();
    for (long i = 0; i < LOOKUPS; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "email:u%ld@example.com", (i * 7919) % N);
        const char *names[] = { nm };
        uint8_t none[32] = { 0 };
        found += cg_identity_by_cert(s, none, names, 1) != NULL;
    }
    double cname = now() - t0;
    t0 = now();
    for (long i = 0; i < LOOKUPS; i++) {
        struct sockaddr_in sin = { .sin_family = AF_INET };
        sin.sin_addr.s_addr = htonl(0x0a000000u | ((uint32_t)((i * 7919) % N) << 8) | 7);
        found += cg_identity_by_address(s, (struct sockaddr *)&sin) != NULL;
    }
    double addr = now() - t0;
    if (found != 4 * (size_t)LOOKUPS) {
        fprintf(stderr, "bench_snapshot: %zu of %d lookups found\n", (size_t)found, 4 * LOOKUPS);
        return 1;
    }
    printf("lookups per second (one core): psk %.2fM, cert fingerprint %.2fM, "
           "cert name %.2fM, address %.2fM (each includes formatting its key)\n",
           LOOKUPS / psk / 1e6, LOOKUPS / cert / 1e6, LOOKUPS / cname / 1e6,
           LOOKUPS / addr / 1e6);

    cg_snapshot_publish(s);
    for (int threads = 1; threads <= 2; threads++) {
        double a = run_threads(acquire_loop, threads, ACQUIRES / threads);
        double p = run_threads(peer_loop, threads, ACQUIRES / threads);
        printf("%d thread(s): acquire+release %.1f ns, mutex peer %.1f ns, ratio %.2f\n",
               threads, a / ACQUIRES * 1e9, p / ACQUIRES * 1e9, p / a);
    }
    cg_snapshot_publish(NULL);
    cg_pstore_close(st);
    char f[600];
    const char *sfx[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof f, "%s%s", path, sfx[i]);
        unlink(f);
    }
    return 0;
}
