/* ctl_group.c — `cpmgatectl group` (SPEC section 9): groups of principals,
 * named as "@group" in ACL subjects. add, member-add, member-remove, list. */
#include <stdio.h>
#include <string.h>

#include "policy/ctl/ctl.h"
#include "common/cg_error.h"

typedef struct group_list {
    ctl_list l;
    json_object *members; /* --json: the current group's array */
    size_t nmembers;
    char last[512];       /* the group whose members are being printed */
} group_list;

/* Rows arrive ordered by group, then member; one output entry per group. */
static int print_row(void *c, const char *group, const char *member)
{
    group_list *g = c;
    bool same = g->l.n && strcmp(g->last, group) == 0;
    if (!same) {
        if (g->l.arr) {
            json_object *o = ctl_jobj();
            ctl_jset(o, "name", ctl_jstr(group));
            ctl_jset(o, "members", ctl_jarr());
            ctl_jset(g->l.arr, NULL, o);
            /* borrowed from the array, which owns it (after a failed
             * allocation nothing is printed, so only safety matters) */
            size_t n = json_object_array_length(g->l.arr);
            json_object_object_get_ex(n ? json_object_array_get_idx(g->l.arr, n - 1) : NULL,
                                      "members", &g->members);
        } else {
            printf("%s%s\t", g->l.n ? "\n" : "", group);
        }
        snprintf(g->last, sizeof g->last, "%s", group);
        g->l.n++;
        g->nmembers = 0;
    }
    if (member) {
        if (g->l.arr)
            ctl_jset(g->members, NULL, ctl_jstr(member));
        else
            printf("%s%s", g->nmembers ? "," : "", member);
        g->nmembers++;
    }
    return 0;
}

int ctl_group_list(ctl_ctx *ctx, const ctl_args *a)
{
    group_list g = { .members = NULL };
    if (ctl_list_begin(&g.l, ctx) != CTL_OK)
        return CTL_ERROR;
    int rc = cg_pstore_group_list(ctx->store, print_row, &g, &g.l.err);
    if (!g.l.arr && g.l.n)
        putchar('\n');
    return ctl_list_end(&g.l, rc, NULL);
}

/* add, member-add, member-remove */
int ctl_group_edit(ctl_ctx *ctx, const ctl_args *a)
{
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    if (strcmp(a->sub, "add") == 0)
        rc = cg_pstore_group_add(ctx->store, a->pos[0], &err);
    else
        rc = cg_pstore_group_member(ctx->store, a->pos[0], a->pos[1],
                                    strcmp(a->sub, "member-add") == 0, &err);
    return rc < 0 ? ctl_fail("%s", err ? err : cg_strerror(rc)) : CTL_OK;
}
