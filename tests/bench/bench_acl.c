/* bench_acl.c — ACL decisions per second on one core with 10,000 rules and
 * 1,000 principals in 50 groups, the time to rebuild the policy snapshot
 * of that policy from its SQLite database, and the snapshot's memory.
 *
 *   bench_acl [DIR]     (a scratch directory; default /tmp)
 * Build it in a release build directory for meaningful figures. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/acl.h"
#include "common/cg_util.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/bench/bench_util.h"

#define NPRINCIPALS 1000
#define NGROUPS 50
#define NRULES 10000

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/bench-acl-%d.db", dir, (int)getpid());
    cg_pstore *st;
    const char *err = NULL;
    check(cg_pstore_open(path, CG_PSTORE_CREATE, &st, &err), "open", err);

    /* the policy: principals u0..u999, groups g0..g49 (each principal in
     * two), rules: per-principal home and per-group project trees, some
     * denies, a few for everyone */
    double t0 = now();
    char name[64], pat[128];
    for (int i = 0; i < NPRINCIPALS; i++) {
        snprintf(name, sizeof name, "u%d", i);
        check(cg_pstore_principal_add(st, name, "user", NULL, &err), "principal", err);
    }
    for (int g = 0; g < NGROUPS; g++) {
        snprintf(name, sizeof name, "g%d", g);
        check(cg_pstore_group_add(st, name, &err), "group", err);
    }
    for (int i = 0; i < NPRINCIPALS; i++) {
        char p[32], g1[32], g2[32];
        snprintf(p, sizeof p, "u%d", i);
        snprintf(g1, sizeof g1, "g%d", i % NGROUPS);
        snprintf(g2, sizeof g2, "g%d", (i * 7 + 3) % NGROUPS);
        check(cg_pstore_group_member(st, g1, p, true, &err), "member", err);
        if (strcmp(g1, g2) != 0)
            check(cg_pstore_group_member(st, g2, p, true, &err), "member", err);
    }
    int nrules = 0;
    for (int i = 0; nrules < NRULES; i++) {
        bool deny = i % 10 == 9;
        const char *svc = i % 2 ? "http" : "imap";
        char subj[32];
        if (i % 5 == 0) {
            snprintf(subj, sizeof subj, "@g%d", i % NGROUPS);
            snprintf(pat, sizeof pat, i % 2 ? "/projects/p%d/*" : "Projects/p%d/%%", i);
        } else if (i % 97 == 0) {
            snprintf(subj, sizeof subj, "*");
            snprintf(pat, sizeof pat, i % 2 ? "/public/r%d/*" : "Public/r%d", i);
        } else {
            snprintf(subj, sizeof subj, "u%d", i % NPRINCIPALS);
            snprintf(pat, sizeof pat, i % 2 ? "/home/${user}/d%d/*" : "Folder%d/*", i);
        }
        check(cg_pstore_rule_add(st, deny, subj, svc, pat, deny ? CG_RIGHT_WRITE : CG_RIGHT_ALL,
                                 NULL, NULL, &err),
              "rule", err);
        nrules++;
    }
    double t_fill = now() - t0;

    /* snapshot rebuild, several times: the median */
    struct mallinfo2 before = mallinfo2();
    cg_snapshot *snap = NULL;
    double best = 1e9;
    for (int k = 0; k < 5; k++) {
        cg_snapshot *s;
        double a = now();
        check(cg_snapshot_build(st, &s, &err), "snapshot", err);
        double dt = now() - a;
        if (dt < best)
            best = dt;
        if (snap)
            cg_snapshot_release(snap);
        else {
            struct mallinfo2 after = mallinfo2();
            printf("snapshot memory: %.1f KiB\n", (double)(after.uordblks - before.uordblks) / 1024);
        }
        snap = s;
    }
    printf("snapshot rebuild: %.1f ms (best of 5; %d rules, %d principals, %d groups; fill %.1f s)\n",
           best * 1e3, nrules, NPRINCIPALS, NGROUPS, t_fill);

    /* decisions: a mix of names that allow, deny and match nothing */
    const cg_acl *acl = cg_snapshot_acl(snap);
    enum { NREQ = 4096 };
    static char res[NREQ][96];
    static size_t rlen[NREQ];
    static const cg_principal *who[NREQ];
    static int svc[NREQ];
    uint64_t seed = 1;
    /* requests drawn from the rules themselves (so that most match one),
     * plus names that match nothing */
    for (int i = 0; i < NREQ; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        int r = (int)((seed >> 33) % NRULES);
        int u = r % NPRINCIPALS;
        svc[i] = r % 2 ? CG_SVC_HTTP : CG_SVC_IMAP;
        if (r % 5 == 0) {
            /* a member of group g(r % 50): principals i with i % 50 == g */
            u = (int)((seed >> 13) % (NPRINCIPALS / NGROUPS)) * NGROUPS + r % NGROUPS;
            snprintf(res[i], sizeof res[i], r % 2 ? "/projects/p%d/doc.odt" : "Projects/p%d/x", r);
        } else if (r % 97 == 0) {
            u = (int)((seed >> 13) % NPRINCIPALS);
            snprintf(res[i], sizeof res[i], r % 2 ? "/public/r%d/a" : "Public/r%d", r);
        } else if ((seed >> 7) % 5 == 0) {
            snprintf(res[i], sizeof res[i], r % 2 ? "/nowhere/%d" : "INBOX/%d", r);
        } else if (r % 2) {
            snprintf(res[i], sizeof res[i], "/home/u%d/d%d/file.txt", u, r);
        } else {
            snprintf(res[i], sizeof res[i], "Folder%d/sub", r);
        }
        snprintf(name, sizeof name, "u%d", u);
        who[i] = cg_snapshot_principal_by_name(snap, name);
        rlen[i] = strlen(res[i]);
    }
    long n = 0, allowed = 0;
    double a = now(), dt;
    do {
        for (int i = 0; i < NREQ; i++) {
            cg_decision d = cg_acl_decide(acl, who[i], svc[i], i % 4 ? CG_RIGHT_READ : CG_RIGHT_WRITE,
                                          res[i], rlen[i], '/');
            allowed += d.allow;
        }
        n += NREQ;
        dt = now() - a;
    } while (dt < 2.0);
    printf("decisions: %.0f per second on one core (%.0f ns each; %.0f%% allowed)\n", n / dt,
           dt / (double)n * 1e9, 100.0 * (double)allowed / (double)n);
    cg_snapshot_release(snap);
    cg_pstore_close(st);
    unlink(path);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return 0;
}
