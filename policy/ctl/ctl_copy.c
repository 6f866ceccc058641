/* ctl_copy.c — `cpmgatectl copy FROM TO`: the whole policy of one store
 * into another, SQLite files and PostgreSQL databases alike (ids kept, one
 * transaction on the target with its policy_log row). The target is set
 * up (migrated) first, as init would. */
#include <stdio.h>

#include "common/cg_error.h"
#include "policy/ctl/ctl.h"

int ctl_copy(ctl_ctx *ctx, const ctl_args *a)
{
    (void)ctx;
    cg_pstore *from = NULL, *to = NULL;
    int rc = ctl_store_open(a->pos[0], false, &from);
    if (rc == CTL_OK)
        rc = ctl_store_open(a->pos[1], true, &to);
    if (rc == CTL_OK) {
        char summary[300];
        const char *err = NULL;
        if (cg_pstore_copy(from, to, ctl_flag(a, "--replace"), summary, sizeof summary,
                           &err) < 0)
            rc = ctl_fail("copy into %s: %s", cg_pstore_label(to), err ? err : "failed");
        else
            printf("copied %s from %s to %s\n", summary, cg_pstore_label(from),
                   cg_pstore_label(to));
    }
    cg_pstore_close(from);
    cg_pstore_close(to);
    return rc;
}
