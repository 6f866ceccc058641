/* bench_rebuild.c — how long the gateway's policy thread takes to rebuild
 * the snapshot (cg_snapshot_build: read every table in one read
 * transaction, compile the ACL) from a SQLite file and from PostgreSQL,
 * with 10,000, 100,000 and 1,000,000 ACL rules over 1,000 principals.
 * Prints one table: rules, backend, best and median of the runs, and the
 * best time of only reading the rules out of the store. The
 * snapshot in force keeps serving while a rebuild runs (it is swapped in
 * when done), so this is the delay of a change, not an outage.
 *
 *   bench_rebuild DIR [POSTGRESQL_URL] [MAX_RULES]
 * DIR holds the SQLite file; the URL names an empty database (skipped
 * when absent). Build it in a release build directory for real figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/cg_util.h"
#include "policy/snapshot.h"
#include "store/db.h"
#include "store/policy_store.h"
#include "tests/bench/bench_util.h"

#define PRINCIPALS 1000

/* A FROM item with a column i from 0 to n - 1. */
static void series(char *out, size_t cap, long n, bool pg)
{
    if (pg)
        snprintf(out, cap, "generate_series(0, %ld - 1) AS c(i)", n);
    else
        snprintf(out, cap, "(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s "
                 "WHERE i < %ld - 1) SELECT i FROM s) AS c", n);
}

/* The same SQL on both backends: principals p0..p999, rules spread over
 * them, '*' and a group, with a pattern each. */
static void fill_sql(char *sql, size_t cap, long rules, bool pg)
{
    char from_p[300], from_r[300];
    series(from_p, sizeof from_p, PRINCIPALS, pg);
    series(from_r, sizeof from_r, rules, pg);
    snprintf(sql, cap,
             "DELETE FROM acl_rule; DELETE FROM grp_member; DELETE FROM grp; "
             "DELETE FROM principal;"
             "INSERT INTO principal (id, name, kind, enabled, created) "
             "SELECT i + 1, 'p' || i, 'user', 1, 'now' FROM %s;"
             "INSERT INTO grp (id, name, created) VALUES (1, 'staff', 'now');"
             "INSERT INTO grp_member (group_id, principal_id) SELECT 1, i + 1 FROM %s "
             "WHERE i %% 10 = 0;"
             "INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
             "SELECT CASE WHEN i %% 7 = 0 THEN 'deny' ELSE 'allow' END, "
             "CASE WHEN i %% 50 = 0 THEN '*' WHEN i %% 50 = 1 THEN '@staff' "
             "ELSE 'p' || (i %% %d) END, "
             "CASE WHEN i %% 2 = 0 THEN 'http' ELSE 'imap' END, "
             "CASE WHEN i %% 2 = 0 THEN '/content/d' || i || '/*' ELSE 'Shared/f' || i END, "
             "3, 'now' FROM %s;",
             from_p, from_p, PRINCIPALS, from_r);
}

static void fill_sqlite(cg_pstore *st, long rules)
{
    static char sql[4096];
    const char *err = NULL;
    fill_sql(sql, sizeof sql, rules, false);
    check(cg_db_begin(cg_pstore_db(st), &err), "begin", err);
    check(cg_db_exec(cg_pstore_db(st), sql, &err), "fill", err);
    check(cg_db_commit(cg_pstore_db(st), &err), "commit", err);
}

static void fill_pg(const char *url, long rules)
{
    static char sql[4096];
    char full[4200];
    fill_sql(sql, sizeof sql, rules, true);
    snprintf(full, sizeof full, "BEGIN; %s COMMIT; ANALYZE;", sql);
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, full) : NULL;
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_rebuild: fill: %s\n", PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int count_rule(void *ctx, int64_t id, const char *effect, const char *subject,
                      const char *service, const char *pattern, unsigned rights)
{
    (*(long *)ctx)++;
    return 0;
}

/* Builds runs snapshots: best and median seconds; read: the best time of
 * only reading the rules out of the store (the rest is compiling). */
static void measure(cg_pstore *st, int runs, double *best, double *median, double *read)
{
    double t[5];
    *read = 1e9;
    for (int i = 0; i < runs; i++) {
        const char *err = NULL;
        cg_snapshot *s = NULL;
        double t0 = now();
        check(cg_snapshot_build(st, &s, &err), "build", err);
        t[i] = now() - t0;
        cg_snapshot_release(s);
        long n = 0;
        cg_pstore_visitor v = { .rule = count_rule };
        t0 = now();
        check(cg_pstore_load(st, &v, &n, &err), "load", err);
        if (now() - t0 < *read)
            *read = now() - t0;
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp);
    *best = t[0];
    *median = t[runs / 2];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_rebuild DIR [POSTGRESQL_URL] [MAX_RULES]\n");
        return 2;
    }
    const char *url = argc > 2 && argv[2][0] ? argv[2] : NULL;
    long max = argc > 3 ? atol(argv[3]) : 1000000;
    char path[600];
    snprintf(path, sizeof path, "%s/bench_rebuild.db", argv[1]);
    unlink(path);
    const char *err = NULL;
    cg_pstore *lite = NULL, *pg = NULL;
    check(cg_pstore_open(path, CG_PSTORE_CREATE, &lite, &err), "open", err);
    if (url)
        check(cg_pstore_open(url, CG_PSTORE_CREATE, &pg, &err), "open", err);
    printf("%10s  %-10s  %8s  %8s  %8s\n", "rules", "backend", "best s", "median s", "read s");
    for (long rules = 10000; rules <= max; rules *= 10) {
        int runs = rules >= 1000000 ? 3 : 5;
        double best, median, read;
        fill_sqlite(lite, rules);
        measure(lite, runs, &best, &median, &read);
        printf("%10ld  %-10s  %8.3f  %8.3f  %8.3f\n", rules, "sqlite", best, median, read);
        fflush(stdout);
        if (pg) {
            fill_pg(url, rules);
            measure(pg, runs, &best, &median, &read);
            printf("%10ld  %-10s  %8.3f  %8.3f  %8.3f\n", rules, "postgresql", best, median,
                   read);
            fflush(stdout);
        }
    }
    cg_pstore_close(lite);
    cg_pstore_close(pg);
    unlink(path);
    return 0;
}
