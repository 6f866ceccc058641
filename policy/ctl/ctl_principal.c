/* ctl_principal.c — `cpmgatectl init` and `cpmgatectl principal` (SPEC
 * section 9): create or migrate the policy database; add, list, show,
 * enable, disable and remove principals. Every edit is one store call, one
 * transaction with its policy_log row. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "ctl_cred.h"
#include "cg_error.h"

/* ---- init --------------------------------------------------------------------- */

int ctl_init(ctl_ctx *ctx, int argc, char **argv)
{
    static const char synopsis[] =
        "init   (creates the policy database mode 0600, or migrates an existing one)";
    if (!ctl_opts_known(argc, argv, NULL, NULL))
        return ctl_usage(synopsis);
    if (ctl_pos(argc, argv, 0, NULL, NULL))
        return ctl_usage(synopsis);
    int rc = ctl_open_store(ctx, true);
    if (rc != CTL_OK)
        return rc;
    printf("policy database %s is ready\n", ctx->db_path);
    return CTL_OK;
}

/* ---- principal ------------------------------------------------------------------ */

static const char synopsis[] =
    "principal add NAME [--kind user|server] [--mailbox LOGIN]\n"
    "       cpmgatectl principal list [--json] | show NAME [--json] | disable NAME | enable NAME\n"
    "       cpmgatectl principal remove NAME [--force]";

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx;

static void json_principal(const cg_pstore_principal *p)
{
    printf("{\"id\":%lld,\"name\":", (long long)p->id);
    ctl_json_str(stdout, p->name);
    fputs(",\"kind\":", stdout);
    ctl_json_str(stdout, p->kind);
    fputs(",\"mailbox\":", stdout);
    ctl_json_str(stdout, p->mailbox ? p->mailbox : p->name);
    printf(",\"enabled\":%s,\"created\":", p->enabled ? "true" : "false");
    ctl_json_str(stdout, p->created);
}

static int print_principal(void *c, const cg_pstore_principal *p)
{
    list_ctx *l = c;
    if (l->json) {
        fputs(l->n ? "," : "", stdout);
        json_principal(p);
        fputs("}", stdout);
    } else {
        printf("%s\t%s\t%s\t%s\t%s\n", p->name, p->kind, p->mailbox ? p->mailbox : p->name,
               p->enabled ? "enabled" : "disabled", p->created);
    }
    l->n++;
    return 0;
}

static int cmd_list(ctl_ctx *ctx)
{
    list_ctx l = { .json = ctx->json };
    const char *err = NULL;
    if (l.json)
        fputs("[", stdout);
    int rc = cg_pstore_principal_list(ctx->store, NULL, print_principal, &l, &err);
    if (rc < 0)
        return ctl_fail("%s", err ? err : cg_strerror(rc));
    if (l.json)
        fputs("]\n", stdout);
    return CTL_OK;
}

/* show: the principal, its credentials (never a key or HA1) and groups */
typedef struct show_ctx {
    bool json;
    const char *name;
    size_t n;
    cg_pstore_principal p;
    char buf[4][512];
} show_ctx;

static int keep_principal(void *c, const cg_pstore_principal *p)
{
    show_ctx *sc = c;
    sc->p = *p;
    const char *src[4] = { p->name, p->kind, p->mailbox, p->created };
    const char **dst[4] = { &sc->p.name, &sc->p.kind, &sc->p.mailbox, &sc->p.created };
    for (int i = 0; i < 4; i++) {
        if (src[i]) {
            snprintf(sc->buf[i], sizeof sc->buf[i], "%s", src[i]);
            *dst[i] = sc->buf[i];
        }
    }
    return 0;
}

static int show_cred(void *c, const cg_pstore_cred *cr)
{
    show_ctx *sc = c;
    if (sc->json) {
        fputs(sc->n ? "," : "", stdout);
        ctl_json_cred(cr);
    } else {
        printf("credential\t");
        ctl_text_cred(cr);
    }
    sc->n++;
    return 0;
}

static int show_group(void *c, const char *group, const char *member)
{
    show_ctx *sc = c;
    if (!member || strcmp(member, sc->name) != 0)
        return 0;
    if (sc->json) {
        fputs(sc->n ? "," : "", stdout);
        ctl_json_str(stdout, group);
    } else {
        printf("group\t%s\n", group);
    }
    sc->n++;
    return 0;
}

static int cmd_show(ctl_ctx *ctx, const char *name)
{
    show_ctx sc = { .json = ctx->json, .name = name };
    const char *err = NULL;
    int rc = cg_pstore_principal_list(ctx->store, name, keep_principal, &sc, &err);
    if (rc < 0)
        return ctl_fail("%s", err ? err : cg_strerror(rc));
    if (sc.json) {
        json_principal(&sc.p);
        fputs(",\"credentials\":[", stdout);
    } else {
        printf("name\t%s\nkind\t%s\nmailbox\t%s\nstate\t%s\ncreated\t%s\n", sc.p.name, sc.p.kind,
               sc.p.mailbox ? sc.p.mailbox : sc.p.name, sc.p.enabled ? "enabled" : "disabled",
               sc.p.created);
    }
    rc = cg_pstore_cred_list(ctx->store, name, show_cred, &sc, &err);
    if (rc == 0) {
        if (sc.json)
            fputs("],\"groups\":[", stdout);
        sc.n = 0;
        rc = cg_pstore_group_list(ctx->store, show_group, &sc, &err);
    }
    if (sc.json)
        fputs("]}\n", stdout);
    if (rc < 0)
        return ctl_fail("%s", err ? err : cg_strerror(rc));
    return CTL_OK;
}

int ctl_principal(ctl_ctx *ctx, int argc, char **argv)
{
    static const char *const opts[] = { "--kind", "--mailbox", NULL };
    static const char *const flags[] = { "--force", NULL };
    if (argc < 2 || !ctl_opts_known(argc, argv, opts, flags))
        return ctl_usage(synopsis);
    const char *sub = ctl_pos(argc, argv, 0, opts, flags);
    const char *name = ctl_pos(argc, argv, 1, opts, flags);
    bool extra = ctl_pos(argc, argv, 2, opts, flags) != NULL;
    bool bad = false;
    const char *kind = ctl_opt(argc, argv, "--kind", &bad);
    const char *mailbox = ctl_opt(argc, argv, "--mailbox", &bad);
    bool force = ctl_flag(argc, argv, "--force");
    if (!sub || bad || extra)
        return ctl_usage(synopsis);
    bool is_add = strcmp(sub, "add") == 0, is_list = strcmp(sub, "list") == 0,
         is_remove = strcmp(sub, "remove") == 0;
    /* options only where they mean something */
    if ((!is_add && (kind || mailbox)) || (!is_remove && force))
        return ctl_usage(synopsis);
    if (is_list ? name != NULL : name == NULL)
        return ctl_usage(synopsis);
    if (!is_add && !is_list && !is_remove && strcmp(sub, "show") != 0 &&
        strcmp(sub, "enable") != 0 && strcmp(sub, "disable") != 0)
        return ctl_usage(synopsis);
    if (kind && strcmp(kind, "user") != 0 && strcmp(kind, "server") != 0)
        return ctl_usage(synopsis);
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    if (is_list)
        return cmd_list(ctx);
    if (strcmp(sub, "show") == 0)
        return cmd_show(ctx, name);
    const char *err = NULL;
    if (is_add)
        rc = cg_pstore_principal_add(ctx->store, name, kind ? kind : "user", mailbox, &err);
    else if (is_remove)
        rc = cg_pstore_principal_remove(ctx->store, name, force, &err);
    else
        rc = cg_pstore_principal_set_enabled(ctx->store, name, strcmp(sub, "enable") == 0, &err);
    if (rc < 0)
        return ctl_fail("%s", err ? err : cg_strerror(rc));
    return CTL_OK;
}
