/* ctl_principal.c — `cpmgatectl init` and `cpmgatectl principal` (SPEC
 * section 9): create or migrate the policy database; add, list, show,
 * enable, disable and remove principals. Every edit is one store call, one
 * transaction with its policy_log row. */
#include <stdio.h>
#include <string.h>

#include "policy/ctl/ctl.h"
#include "policy/ctl/ctl_cred.h"
#include "common/cg_error.h"

/* ---- init --------------------------------------------------------------------- */

int ctl_init(ctl_ctx *ctx, const ctl_args *a)
{
    int rc = ctl_open_store(ctx, true);
    if (rc != CTL_OK)
        return rc;
    printf("policy database %s is ready\n", cg_pstore_label(ctx->store));
    return CTL_OK;
}

/* ---- principal ------------------------------------------------------------------ */

static const char *mailbox_of(const cg_pstore_principal *p)
{
    return p->mailbox ? p->mailbox : p->name;
}

static json_object *json_principal(const cg_pstore_principal *p)
{
    json_object *o = ctl_jobj();
    ctl_jset(o, "id", ctl_jint(p->id));
    ctl_jset(o, "name", ctl_jstr(p->name));
    ctl_jset(o, "kind", ctl_jstr(p->kind));
    ctl_jset(o, "mailbox", ctl_jstr(mailbox_of(p)));
    ctl_jset(o, "enabled", ctl_jbool(p->enabled));
    ctl_jset(o, "created", ctl_jstr(p->created));
    return o;
}

static int print_principal(void *c, const cg_pstore_principal *p)
{
    ctl_list *l = c;
    if (l->arr)
        ctl_jset(l->arr, NULL, json_principal(p));
    else
        printf("%s\t%s\t%s\t%s\t%s\n", p->name, p->kind, mailbox_of(p),
               p->enabled ? "enabled" : "disabled", p->created);
    return 0;
}

int ctl_principal_list(ctl_ctx *ctx, const ctl_args *a)
{
    ctl_list l;
    if (ctl_list_begin(&l, ctx) != CTL_OK)
        return CTL_ERROR;
    int rc = cg_pstore_principal_list(ctx->store, NULL, print_principal, &l, &l.err);
    return ctl_list_end(&l, rc, NULL);
}

/* show: the principal, its credentials (never a key or HA1) and groups */
typedef struct show_ctx {
    const char *name;
    bool json, found;
    json_object *obj;  /* --json: the principal */
    json_object *list; /* --json: the array being filled, borrowed from obj */
} show_ctx;

static int show_principal(void *c, const cg_pstore_principal *p)
{
    show_ctx *sc = c;
    if (sc->found)
        return 0;
    sc->found = true;
    if (sc->json)
        sc->obj = json_principal(p);
    else
        printf("name\t%s\nkind\t%s\nmailbox\t%s\nstate\t%s\ncreated\t%s\n", p->name, p->kind,
               mailbox_of(p), p->enabled ? "enabled" : "disabled", p->created);
    return 0;
}

static int show_cred(void *c, const cg_pstore_cred *cr)
{
    show_ctx *sc = c;
    if (sc->json) {
        ctl_jset(sc->list, NULL, ctl_json_cred(cr));
    } else {
        printf("credential\t");
        ctl_text_cred(cr);
    }
    return 0;
}

static int show_group(void *c, const char *group, const char *member)
{
    show_ctx *sc = c;
    if (!member || strcmp(member, sc->name) != 0)
        return 0;
    if (sc->json)
        ctl_jset(sc->list, NULL, ctl_jstr(group));
    else
        printf("group\t%s\n", group);
    return 0;
}

int ctl_principal_show(ctl_ctx *ctx, const ctl_args *a)
{
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *name = a->pos[0];
    show_ctx sc = { .name = name, .json = ctx->json };
    const char *err = NULL;
    /* the principal first: an unknown one prints nothing */
    rc = cg_pstore_principal_list(ctx->store, name, show_principal, &sc, &err);
    if (rc == 0 && !sc.found)
        rc = CG_E_NOTFOUND;
    if (rc == 0 && sc.json) {
        ctl_jset(sc.obj, "credentials", ctl_jarr());
        json_object_object_get_ex(sc.obj, "credentials", &sc.list);
    }
    if (rc == 0)
        rc = cg_pstore_cred_list(ctx->store, name, show_cred, &sc, &err);
    if (rc == 0 && sc.json) {
        ctl_jset(sc.obj, "groups", ctl_jarr());
        json_object_object_get_ex(sc.obj, "groups", &sc.list);
    }
    if (rc == 0)
        rc = cg_pstore_group_list(ctx->store, show_group, &sc, &err);
    if (rc < 0) {
        json_object_put(sc.obj);
        return ctl_fail("%s", err ? err : cg_strerror(rc));
    }
    return sc.json ? ctl_json_print(sc.obj) : CTL_OK;
}

int ctl_principal_add(ctl_ctx *ctx, const ctl_args *a)
{
    const char *kind = ctl_opt(a, "--kind");
    if (kind && strcmp(kind, "user") != 0 && strcmp(kind, "server") != 0)
        return ctl_usage(a);
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    rc = cg_pstore_principal_add(ctx->store, a->pos[0], kind ? kind : "user",
                                 ctl_opt(a, "--mailbox"), &err);
    return rc < 0 ? ctl_fail("%s", err ? err : cg_strerror(rc)) : CTL_OK;
}

/* enable, disable, remove */
int ctl_principal_edit(ctl_ctx *ctx, const ctl_args *a)
{
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    if (strcmp(a->sub, "remove") == 0)
        rc = cg_pstore_principal_remove(ctx->store, a->pos[0], ctl_flag(a, "--force"), &err);
    else
        rc = cg_pstore_principal_set_enabled(ctx->store, a->pos[0],
                                             strcmp(a->sub, "enable") == 0, &err);
    return rc < 0 ? ctl_fail("%s", err ? err : cg_strerror(rc)) : CTL_OK;
}
