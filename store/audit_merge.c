/* store/audit_merge.c — the interleaving order of records from several
 * audit databases (see audit_merge.h). */
#include "store/audit_merge.h"

#include <string.h>

int cg_audit_merge_cmp(const cg_audit_mkey *a, const cg_audit_mkey *b)
{
    /* the stored time has one fixed width, so text order is time order */
    int c = strcmp(a->time, b->time);
    if (c)
        return c;
    if (!a->node != !b->node)
        return a->node ? 1 : -1;
    if (a->node && (c = strcmp(a->node, b->node)) != 0)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int cg_audit_merge_pick(const cg_audit_mkey *heads, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++)
        if (heads[i].live && (best < 0 || cg_audit_merge_cmp(&heads[i], &heads[best]) < 0))
            best = (int)i;
    return best;
}
