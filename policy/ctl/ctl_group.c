/* ctl_group.c — `cpmgatectl group` (SPEC section 9): groups of principals,
 * named as "@group" in ACL subjects. add, member-add, member-remove, list. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "cg_error.h"

static const char synopsis[] =
    "group add G | member-add G NAME | member-remove G NAME | list [--json]";

typedef struct list_ctx {
    bool json;
    size_t ngroups, nmembers;
    char last[512]; /* the group whose members are being printed */
} list_ctx;

/* Rows arrive ordered by group, then member; one output entry per group. */
static int print_row(void *c, const char *group, const char *member)
{
    list_ctx *l = c;
    bool same = l->ngroups && strcmp(l->last, group) == 0;
    if (!same) {
        if (l->json) {
            fputs(l->ngroups ? "]}," : "", stdout);
            fputs("{\"name\":", stdout);
            ctl_json_str(stdout, group);
            fputs(",\"members\":[", stdout);
        } else {
            printf("%s%s\t", l->ngroups ? "\n" : "", group);
        }
        snprintf(l->last, sizeof l->last, "%s", group);
        l->ngroups++;
        l->nmembers = 0;
    }
    if (member) {
        if (l->json) {
            fputs(l->nmembers ? "," : "", stdout);
            ctl_json_str(stdout, member);
        } else {
            printf("%s%s", l->nmembers ? "," : "", member);
        }
        l->nmembers++;
    }
    return 0;
}

int ctl_group(ctl_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || !ctl_opts_known(argc, argv, NULL, NULL))
        return ctl_usage(synopsis);
    const char *sub = ctl_pos(argc, argv, 0, NULL, NULL);
    const char *g = ctl_pos(argc, argv, 1, NULL, NULL);
    const char *name = ctl_pos(argc, argv, 2, NULL, NULL);
    bool extra = ctl_pos(argc, argv, 3, NULL, NULL) != NULL;
    bool list = strcmp(sub, "list") == 0, add = strcmp(sub, "add") == 0;
    bool madd = strcmp(sub, "member-add") == 0, mrem = strcmp(sub, "member-remove") == 0;
    if (extra || (list && g) || (add && (!g || name)) || ((madd || mrem) && (!g || !name)) ||
        (!list && !add && !madd && !mrem))
        return ctl_usage(synopsis);
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    int r;
    if (list) {
        list_ctx l = { .json = ctx->json };
        if (l.json)
            fputs("[", stdout);
        r = cg_pstore_group_list(ctx->store, print_row, &l, &err);
        if (l.json)
            fputs(l.ngroups ? "]}]\n" : "]\n", stdout);
        else if (l.ngroups)
            putchar('\n');
    } else if (add) {
        r = cg_pstore_group_add(ctx->store, g, &err);
    } else {
        r = cg_pstore_group_member(ctx->store, g, name, madd, &err);
    }
    if (r < 0)
        return ctl_fail("%s", err ? err : cg_strerror(r));
    return CTL_OK;
}
