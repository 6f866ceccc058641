/* ctl_audit_merge.c — `cpmgatectl audit export --merge`: the records of
 * several audit databases (one per node) as one stream of JSON lines,
 * interleaved by time, then node id, then seq (store/audit_merge.h), each
 * line naming its database, so one request's trail can be followed from
 * node to node. Each database is read in seq order, one row ahead. */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "policy/ctl/ctl.h"
#include "store/audit.h"
#include "store/audit_merge.h"

/* One source: its key and copies of what the key points at (the row's
 * text is valid only until the next step of its statement). */
typedef struct head {
    char time[40];
    char node[CG_AUDIT_NODE_MAX + 1];
} head;

/* The node id of a canon: the value of its "node" key, "" when none. The
 * key can only be the real one: inside a canon string every '"' is
 * escaped, so ,"node":" never occurs in a value. */
static void canon_node(const char *canon, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = canon ? strstr(canon, ",\"node\":\"") : NULL;
    if (!p)
        return;
    p += 9;
    size_t n = strcspn(p, "\"");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Steps source i to its next row; its key goes dead at the end. */
static int advance(sqlite3_stmt *st, const char *db, head *h, cg_audit_mkey *k)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        k->live = false;
        return CTL_OK;
    }
    if (rc != SQLITE_ROW)
        return ctl_fail("%s: read error", db);
    const char *canon = (const char *)sqlite3_column_text(st, 0);
    const char *t = (const char *)sqlite3_column_text(st, 3);
    snprintf(h->time, sizeof h->time, "%s", t ? t : "");
    canon_node(canon, h->node, sizeof h->node);
    k->live = canon != NULL && sqlite3_column_bytes(st, 0) >= 2;
    k->time = h->time;
    k->node = h->node[0] ? h->node : NULL;
    k->seq = (uint64_t)sqlite3_column_int64(st, 2);
    if (!k->live)
        return ctl_fail("%s: record %llu has no content: run audit verify", db,
                        (unsigned long long)k->seq);
    return CTL_OK;
}

int ctl_audit_merge(const char *const *dbs, sqlite3_stmt **sts, size_t n, uint64_t limit)
{
    head heads[CTL_MAX_DBS];
    cg_audit_mkey keys[CTL_MAX_DBS];
    if (n > CTL_MAX_DBS)
        return ctl_fail("at most %d --audit-db at once", CTL_MAX_DBS);
    for (size_t i = 0; i < n; i++)
        if (advance(sts[i], dbs[i], &heads[i], &keys[i]) != CTL_OK)
            return CTL_ERROR;
    uint64_t out = 0;
    int i;
    while ((limit == 0 || out < limit) && (i = cg_audit_merge_pick(keys, n)) >= 0) {
        ctl_audit_jsonl(sts[i], dbs[i]);
        out++;
        if (advance(sts[i], dbs[i], &heads[i], &keys[i]) != CTL_OK)
            return CTL_ERROR;
    }
    return CTL_OK;
}
