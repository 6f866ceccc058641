/* ctl_audit_merge.c — `cpmgatectl audit export --merge`: the records of
 * several audit databases (one per node) as one stream of JSON lines,
 * interleaved by time, then node id, then seq (store/audit_merge.h), each
 * line naming its database, so one request's trail can be followed from
 * node to node. Each database is read in seq order, one record ahead. */
#include <stdio.h>
#include <string.h>

#include "policy/ctl/ctl.h"
#include "store/audit.h"
#include "store/audit_canon.h"
#include "store/audit_merge.h"

/* Steps source i to its next record; its key goes dead at the end. */
static int advance(ctl_audit_src *s, const char *db, cg_audit_mkey *k)
{
    int rc = ctl_audit_src_next(s, db);
    if (rc < 0)
        return CTL_ERROR;
    k->live = rc == 1;
    if (!k->live)
        return CTL_OK;
    k->seq = s->seq;
    if (!s->parsed)
        return ctl_fail("%s: record %llu cannot be read: run audit verify", db,
                        (unsigned long long)k->seq);
    k->time = s->p->time;
    k->node = s->p->rec.node;
    return CTL_OK;
}

int ctl_audit_merge(const char *const *dbs, ctl_audit_src *srcs, size_t n, uint64_t limit)
{
    cg_audit_mkey keys[CTL_MAX_DBS];
    if (n > CTL_MAX_DBS)
        return ctl_fail("at most %d --audit-db at once", CTL_MAX_DBS);
    for (size_t i = 0; i < n; i++)
        if (advance(&srcs[i], dbs[i], &keys[i]) != CTL_OK)
            return CTL_ERROR;
    uint64_t out = 0;
    int i;
    while ((limit == 0 || out < limit) && (i = cg_audit_merge_pick(keys, n)) >= 0) {
        ctl_audit_jsonl(&srcs[i], dbs[i]);
        out++;
        if (advance(&srcs[i], dbs[i], &keys[i]) != CTL_OK)
            return CTL_ERROR;
    }
    return CTL_OK;
}
