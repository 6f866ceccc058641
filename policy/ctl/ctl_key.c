/* ctl_key.c — `cpmgatectl key`, `require-signed` and `peer add|remove`
 * (SPEC section 9): content-signing keys of principals, signed-only path
 * patterns, and remote CPM environments (`peer list`, which also reads the
 * gateway's counters, is ctl_peer.c). Input is validated here (key ids as manifests
 * carry them, ACL pattern syntax, host names); the store keeps it. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ctl/ctl.h"
#include "policy/acl.h"
#include "store/policy_keys.h"
#include "common/cg_error.h"
#include "common/cg_remote.h"

#define MAX_PEM 65536

/* Key ids travel in manifests: the schema's alphabet and length. */
static bool key_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("._:@-", id[i]))
            return false;
    return true;
}

/* A store call's result: quiet on success, else "what: why" on stderr. */
static int done(int rc, const char *what, const char *sub, const char *err)
{
    if (rc >= 0)
        return CTL_OK;
    return ctl_fail("%s%s%s: %s", what, sub ? " " : "", sub ? sub : "",
                    err ? err : cg_strerror(rc));
}

/* ---- key ------------------------------------------------------------------ */

static int print_key(void *c, const cg_pkeys_key *k)
{
    static const char *const keys[] = { "key_id", "principal", "alg", "created", "pem" };
    const char *vals[] = { k->key_id, k->principal, k->alg, k->created, k->pem };
    ctl_list_strings(c, sizeof keys / sizeof keys[0], keys, vals, 4);
    return 0;
}

/* key add NAME --id KEYID --file PUB.pem */
int ctl_key_add(ctl_ctx *ctx, const ctl_args *a)
{
    const char *name = a->pos[0], *id = ctl_opt(a, "--id"), *file = ctl_opt(a, "--file");
    if (!id || !file)
        return ctl_usage(a);
    if (!key_id_ok(id))
        return ctl_fail("key id '%s': use 1-128 characters of A-Z a-z 0-9 . _ : @ -", id);
    const char *why;
    size_t len;
    char *pem = ctl_slurp(file, MAX_PEM, &len, &why);
    if (!pem)
        return ctl_fail("%s: %s", file, why);
    if (strlen(pem) != len) {
        free(pem);
        return ctl_fail("%s: not a PEM public key", file);
    }
    if (ctl_open_store(ctx, false) != CTL_OK) {
        free(pem);
        return CTL_ERROR;
    }
    const char *alg = NULL, *err = NULL;
    int rc = cg_pkeys_key_add(ctx->store, name, id, pem, &alg, &err);
    free(pem);
    if (rc < 0)
        return done(rc, "key add", NULL, err);
    printf("key %s (%s) added for %s\n", id, alg, name);
    return CTL_OK;
}

int ctl_key_remove(ctl_ctx *ctx, const ctl_args *a)
{
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    const char *err = NULL;
    return done(cg_pkeys_key_remove(ctx->store, a->pos[0], &err), "key remove", NULL, err);
}

/* ---- require-signed ------------------------------------------------------- */

static int print_pattern(void *c, const char *pattern, const char *created)
{
    static const char *const keys[] = { "pattern", "created" };
    const char *vals[] = { pattern, created };
    ctl_list_strings(c, sizeof keys / sizeof keys[0], keys, vals, 1);
    return 0;
}

/* require-signed add|remove PATTERN */
int ctl_signed_edit(ctl_ctx *ctx, const ctl_args *a)
{
    const char *pattern = a->pos[0], *err = NULL;
    bool add = strcmp(a->sub, "add") == 0;
    if (add) {
        /* an HTTP path pattern in the ACL's syntax (SPEC 4) */
        if (pattern[0] != '/' && strcmp(pattern, "*") != 0)
            return ctl_fail("pattern '%s': an HTTP path pattern starts with /", pattern);
        if (cg_acl_pattern_check(pattern, &err) < 0)
            return ctl_fail("pattern '%s': %s", pattern, err ? err : "invalid");
    }
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    int rc = add ? cg_pkeys_require_signed_add(ctx->store, pattern, &err)
                 : cg_pkeys_require_signed_remove(ctx->store, pattern, &err);
    return done(rc, "require-signed", a->sub, err);
}

/* ---- peer ----------------------------------------------------------------- */

/* A DNS name (RFC 1123 labels), lowercased into d, and the store opened
 * for the change; false with the error printed when either fails. */
static bool peer_begin(ctl_ctx *ctx, const char *in, char d[256])
{
    bool ok = cg_remote_domain(in, strlen(in), d, 256);
    if (!ok)
        ctl_fail("peer '%s': not a domain name", in);
    return ok && ctl_open_store(ctx, false) == CTL_OK;
}

/* peer add DOMAIN --principal NAME --auth required|optional */
int ctl_peer_add(ctl_ctx *ctx, const ctl_args *a)
{
    const char *principal = ctl_opt(a, "--principal"), *auth = ctl_opt(a, "--auth");
    if (!principal || !auth ||
        (strcmp(auth, "required") != 0 && strcmp(auth, "optional") != 0))
        return ctl_usage(a);
    char d[256];
    if (!peer_begin(ctx, a->pos[0], d))
        return CTL_ERROR;
    const char *err = NULL;
    return done(cg_pkeys_peer_add(ctx->store, d, principal, auth, &err), "peer add", NULL, err);
}

int ctl_peer_remove(ctl_ctx *ctx, const ctl_args *a)
{
    char d[256];
    if (!peer_begin(ctx, a->pos[0], d))
        return CTL_ERROR;
    const char *err = NULL;
    return done(cg_pkeys_peer_remove(ctx->store, d, &err), "peer remove", NULL, err);
}

/* ---- the three lists ------------------------------------------------------ */

/* key list, require-signed list: the row's family says which (peer list
 * is ctl_peer.c's: it also reads the gateway's counters) */
int ctl_keys_list(ctl_ctx *ctx, const ctl_args *a)
{
    ctl_list l;
    if (ctl_list_begin(&l, ctx) != CTL_OK)
        return CTL_ERROR;
    const char *family = a->cmd->family;
    int rc;
    if (strcmp(family, "key") == 0)
        rc = cg_pkeys_key_list(ctx->store, NULL, print_key, &l, &l.err);
    else
        rc = cg_pkeys_require_signed_list(ctx->store, print_pattern, &l, &l.err);
    char what[64];
    snprintf(what, sizeof what, "%s list", family);
    return ctl_list_end(&l, rc, what);
}
