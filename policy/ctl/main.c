/* cpmgatectl — the administrator's tool for the policy database and the
 * audit log (SPEC section 9). Dispatches to one file per command family. */
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "ctl.h"

static const struct {
    const char *name;
    ctl_family_fn fn;
} families[] = {
    { "init", ctl_init },
    { "principal", ctl_principal },
    { "cred", ctl_cred },
    { "group", ctl_group },
    { "acl", ctl_acl },
    { "check", ctl_check },
    { "key", ctl_key },
    { "require-signed", ctl_require_signed },
    { "manifest", ctl_manifest },
    { "peer", ctl_peer },
    { "audit", ctl_audit },
};

static const char usage[] =
    "usage: cpmgatectl [-d POLICY_DB] COMMAND ...\n"
    "commands: init, principal, cred, group, acl, check, key, require-signed,\n"
    "          manifest, peer, audit (each prints its usage without arguments)\n";

int main(int argc, char **argv)
{
    ctl_ctx ctx = { .db_path = getenv("CPMGATE_DB") };
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            ctx.db_path = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return CTL_OK;
        } else {
            fputs(usage, stderr);
            return CTL_USAGE;
        }
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return CTL_USAGE;
    }
    /* --json may stand anywhere after the command. */
    for (int j = i; j < argc; j++)
        if (strcmp(argv[j], "--json") == 0)
            ctx.json = true;
    xmlInitParser();
    int rc = CTL_USAGE;
    bool found = false;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (strcmp(argv[i], families[f].name) == 0) {
            rc = families[f].fn(&ctx, argc - i, argv + i);
            found = true;
            break;
        }
    }
    if (!found)
        fprintf(stderr, "cpmgatectl: unknown command '%s'\n%s", argv[i], usage);
    if (ctx.store)
        cg_pstore_close(ctx.store);
    xmlCleanupParser();
    return rc;
}
