/* ctl_key.c — `cpmgatectl key`, `require-signed` and `peer` (SPEC section
 * 9): content-signing keys of principals, signed-only path patterns, and
 * remote CPM environments. Input is validated here (key ids as manifests
 * carry them, ACL pattern syntax, host names); the store keeps it. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "../acl.h"
#include "../../store/policy_keys.h"
#include "cg_error.h"

#define MAX_PEM 65536

/* ---- shared helpers ------------------------------------------------------- */

/* Reads a whole small file, NUL-terminated; NULL with errno-free message. */
static char *slurp(const char *path, size_t max, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = "cannot open";
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > max) {
        free(buf);
        *why = err ? "cannot read" : "too large";
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

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

/* ---- key ------------------------------------------------------------------ */

static const char key_synopsis[] =
    "key add NAME --id KEYID --file PUB.pem | list [--json] | remove KEYID";

static int print_key(void *c, const cg_pkeys_key *k)
{
    ctl_ctx *ctx = c;
    if (ctx->json) {
        static bool first = true;
        fputs(first ? "" : ",", stdout);
        first = false;
        fputs("{\"key_id\":", stdout);
        ctl_json_str(stdout, k->key_id);
        fputs(",\"principal\":", stdout);
        ctl_json_str(stdout, k->principal);
        fputs(",\"alg\":", stdout);
        ctl_json_str(stdout, k->alg);
        fputs(",\"created\":", stdout);
        ctl_json_str(stdout, k->created);
        fputs(",\"pem\":", stdout);
        ctl_json_str(stdout, k->pem);
        fputs("}", stdout);
    } else {
        printf("%s\t%s\t%s\t%s\n", k->key_id, k->principal, k->alg, k->created);
    }
    return 0;
}

int ctl_key(ctl_ctx *ctx, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub)
        return ctl_usage(key_synopsis);
    argc--, argv++;
    const char *err = NULL;
    if (strcmp(sub, "add") == 0) {
        static const char *const opts[] = { "--id", "--file", NULL };
        bool bad = false;
        const char *id = ctl_opt(argc, argv, "--id", &bad);
        const char *file = ctl_opt(argc, argv, "--file", &bad);
        const char *name = ctl_pos(argc, argv, 0, opts, NULL);
        if (!ctl_opts_known(argc, argv, opts, NULL) || bad || !id || !file || !name ||
            ctl_pos(argc, argv, 1, opts, NULL))
            return ctl_usage(key_synopsis);
        if (!key_id_ok(id))
            return ctl_fail("key id '%s': use 1-128 characters of A-Z a-z 0-9 . _ : @ -", id);
        const char *why;
        size_t len;
        char *pem = slurp(file, MAX_PEM, &len, &why);
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
        const char *alg = NULL;
        int rc = cg_pkeys_key_add(ctx->store, name, id, pem, &alg, &err);
        free(pem);
        if (rc < 0)
            return ctl_fail("key add: %s", err ? err : cg_strerror(rc));
        printf("key %s (%s) added for %s\n", id, alg, name);
        return CTL_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (!ctl_opts_known(argc, argv, NULL, NULL) || ctl_pos(argc, argv, 0, NULL, NULL))
            return ctl_usage(key_synopsis);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        if (ctx->json)
            fputs("[", stdout);
        int rc = cg_pkeys_key_list(ctx->store, NULL, print_key, ctx, &err);
        if (ctx->json)
            fputs("]\n", stdout);
        return rc < 0 ? ctl_fail("key list: %s", err) : CTL_OK;
    }
    if (strcmp(sub, "remove") == 0) {
        const char *id = ctl_pos(argc, argv, 0, NULL, NULL);
        if (!ctl_opts_known(argc, argv, NULL, NULL) || !id || ctl_pos(argc, argv, 1, NULL, NULL))
            return ctl_usage(key_synopsis);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        int rc = cg_pkeys_key_remove(ctx->store, id, &err);
        return rc < 0 ? ctl_fail("key remove: %s", err) : CTL_OK;
    }
    return ctl_usage(key_synopsis);
}

/* ---- require-signed ------------------------------------------------------- */

static const char rs_synopsis[] =
    "require-signed add PATTERN | list [--json] | remove PATTERN";

static int print_pattern(void *c, const char *pattern, const char *created)
{
    ctl_ctx *ctx = c;
    if (ctx->json) {
        static bool first = true;
        fputs(first ? "{\"pattern\":" : ",{\"pattern\":", stdout);
        first = false;
        ctl_json_str(stdout, pattern);
        fputs(",\"created\":", stdout);
        ctl_json_str(stdout, created);
        fputs("}", stdout);
    } else {
        printf("%s\n", pattern);
    }
    return 0;
}

int ctl_require_signed(ctl_ctx *ctx, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub)
        return ctl_usage(rs_synopsis);
    argc--, argv++;
    const char *err = NULL;
    if (strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) {
        const char *pattern = ctl_pos(argc, argv, 0, NULL, NULL);
        if (!ctl_opts_known(argc, argv, NULL, NULL) || !pattern ||
            ctl_pos(argc, argv, 1, NULL, NULL))
            return ctl_usage(rs_synopsis);
        bool add = strcmp(sub, "add") == 0;
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
        return rc < 0 ? ctl_fail("require-signed %s: %s", sub, err) : CTL_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (!ctl_opts_known(argc, argv, NULL, NULL) || ctl_pos(argc, argv, 0, NULL, NULL))
            return ctl_usage(rs_synopsis);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        if (ctx->json)
            fputs("[", stdout);
        int rc = cg_pkeys_require_signed_list(ctx->store, print_pattern, ctx, &err);
        if (ctx->json)
            fputs("]\n", stdout);
        return rc < 0 ? ctl_fail("require-signed list: %s", err) : CTL_OK;
    }
    return ctl_usage(rs_synopsis);
}

/* ---- peer ----------------------------------------------------------------- */

static const char peer_synopsis[] =
    "peer add DOMAIN --principal NAME --auth required|optional | list [--json] | remove DOMAIN";

/* A DNS name (RFC 1123 labels), lowercased in place. */
static bool domain_ok(char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[n - 1] == '.')
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = d[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || d[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        d[i] = (char)tolower((unsigned char)c);
        label++;
    }
    return true;
}

static int print_peer(void *c, const cg_pkeys_peer *p)
{
    ctl_ctx *ctx = c;
    if (ctx->json) {
        static bool first = true;
        fputs(first ? "{\"domain\":" : ",{\"domain\":", stdout);
        first = false;
        ctl_json_str(stdout, p->domain);
        fputs(",\"principal\":", stdout);
        ctl_json_str(stdout, p->principal);
        fputs(",\"auth\":", stdout);
        ctl_json_str(stdout, p->auth);
        fputs(",\"created\":", stdout);
        ctl_json_str(stdout, p->created);
        fputs("}", stdout);
    } else {
        printf("%s\t%s\t%s\n", p->domain, p->principal, p->auth);
    }
    return 0;
}

int ctl_peer(ctl_ctx *ctx, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub)
        return ctl_usage(peer_synopsis);
    argc--, argv++;
    const char *err = NULL;
    if (strcmp(sub, "add") == 0) {
        static const char *const opts[] = { "--principal", "--auth", NULL };
        bool bad = false;
        const char *principal = ctl_opt(argc, argv, "--principal", &bad);
        const char *auth = ctl_opt(argc, argv, "--auth", &bad);
        const char *domain = ctl_pos(argc, argv, 0, opts, NULL);
        if (!ctl_opts_known(argc, argv, opts, NULL) || bad || !principal || !auth || !domain ||
            ctl_pos(argc, argv, 1, opts, NULL))
            return ctl_usage(peer_synopsis);
        if (strcmp(auth, "required") != 0 && strcmp(auth, "optional") != 0)
            return ctl_usage(peer_synopsis);
        char d[256];
        if (strlen(domain) >= sizeof d || (snprintf(d, sizeof d, "%s", domain), !domain_ok(d)))
            return ctl_fail("peer '%s': not a domain name", domain);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        int rc = cg_pkeys_peer_add(ctx->store, d, principal, auth, &err);
        return rc < 0 ? ctl_fail("peer add: %s", err) : CTL_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (!ctl_opts_known(argc, argv, NULL, NULL) || ctl_pos(argc, argv, 0, NULL, NULL))
            return ctl_usage(peer_synopsis);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        if (ctx->json)
            fputs("[", stdout);
        int rc = cg_pkeys_peer_list(ctx->store, print_peer, ctx, &err);
        if (ctx->json)
            fputs("]\n", stdout);
        return rc < 0 ? ctl_fail("peer list: %s", err) : CTL_OK;
    }
    if (strcmp(sub, "remove") == 0) {
        const char *domain = ctl_pos(argc, argv, 0, NULL, NULL);
        if (!ctl_opts_known(argc, argv, NULL, NULL) || !domain ||
            ctl_pos(argc, argv, 1, NULL, NULL))
            return ctl_usage(peer_synopsis);
        char d[256];
        if (strlen(domain) >= sizeof d || (snprintf(d, sizeof d, "%s", domain), !domain_ok(d)))
            return ctl_fail("peer '%s': not a domain name", domain);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        int rc = cg_pkeys_peer_remove(ctx->store, d, &err);
        return rc < 0 ? ctl_fail("peer remove: %s", err) : CTL_OK;
    }
    return ctl_usage(peer_synopsis);
}
