/* cpmgatectl — the administrator's tool for the policy database and the
 * audit log (SPEC section 9). Every command is one row of the table below:
 * adding a command is adding a row, and the usage text comes from it. */
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "policy/ctl/ctl.h"

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })

#define SHOW_OPTS "--audit-db", "--txid", "--principal", "--since", "--until", "--decision", \
                  "--limit"
#define SHOW_FILTERS "[--txid T] [--principal P] [--since TIME] [--until TIME] " \
                     "[--decision allow|deny|error] [--limit N]"

#define BACKUP_OPTS "--config", "--audit-db", "--content-db", "--key"
#define BACKUP_OPTS_USAGE "[--config FILE] [--audit-db FILE] [--content-db FILE] [--key PUB.pem]"

static const ctl_cmd commands[] = {
    /* family, name, usage (a line per form), handler, min and max positionals,
     * options with a value, flags */
    { "init", NULL, "", ctl_init, 0, 0, NULL, NULL },
    { "principal", "add", "NAME [--kind user|server] [--mailbox LOGIN]", ctl_principal_add,
      1, 1, L("--kind", "--mailbox"), NULL },
    { "principal", "list", "[--json]", ctl_principal_list, 0, 0, NULL, NULL },
    { "principal", "show", "NAME [--json]", ctl_principal_show, 1, 1, NULL, NULL },
    { "principal", "enable|disable", "NAME", ctl_principal_edit, 1, 1, NULL, NULL },
    { "principal", "remove", "NAME [--force]", ctl_principal_edit, 1, 1, NULL, L("--force") },
    { "cred", "add",
      "NAME cert --file CERT.pem | --fingerprint HEX\n"
      "NAME cert-name email:A | dns:D | uri:U | cn:C\n"
      "NAME psk --identity ID [--key HEX]\n"
      "NAME address CIDR\n"
      "NAME digest --realm REALM --password-file F",
      ctl_cred_add, 2, 3,
      L("--file", "--fingerprint", "--identity", "--key", "--realm", "--password-file"), NULL },
    { "cred", "list", "NAME [--json]", ctl_cred_list, 1, 1, NULL, NULL },
    { "cred", "remove", "NAME ID", ctl_cred_remove, 2, 2, NULL, NULL },
    { "group", "add", "G", ctl_group_edit, 1, 1, NULL, NULL },
    { "group", "member-add|member-remove", "G NAME", ctl_group_edit, 2, 2, NULL, NULL },
    { "group", "list", "[--json]", ctl_group_list, 0, 0, NULL, NULL },
    { "acl", "allow|deny", "SUBJECT SERVICE PATTERN RIGHTS [--comment TEXT]", ctl_acl_add,
      4, 4, L("--comment"), NULL },
    { "acl", "list", "[--subject S] [--service S] [--json]", ctl_acl_list, 0, 0,
      L("--subject", "--service"), NULL },
    { "acl", "remove", "ID", ctl_acl_remove, 1, 1, NULL, NULL },
    { "check", NULL, "PRINCIPAL SERVICE RIGHT RESOURCE [--delimiter C]\n"
      "USER@DOMAIN SERVICE RIGHT RESOURCE [--via SERVER] [--delimiter C]", ctl_check, 4, 4,
      L("--delimiter", "--via"), NULL },
    { "key", "add", "NAME --id KEYID --file PUB.pem", ctl_key_add, 1, 1, L("--id", "--file"),
      NULL },
    { "key", "list", "[--json]", ctl_keys_list, 0, 0, NULL, NULL },
    { "key", "remove", "KEYID", ctl_key_remove, 1, 1, NULL, NULL },
    { "require-signed", "add|remove", "PATTERN", ctl_signed_edit, 1, 1, NULL, NULL },
    { "require-signed", "list", "[--json]", ctl_keys_list, 0, 0, NULL, NULL },
    { "manifest", "create", "--key PRIV.pem --key-id ID --path PATH --file FILE",
      ctl_manifest_create, 0, 0, L("--key", "--key-id", "--path", "--file"), NULL },
    { "manifest", "verify",
      "--file FILE --manifest M [--path PATH] [--pub PUB.pem] [--principal NAME] [--json]",
      ctl_manifest_verify, 0, 0, L("--file", "--manifest", "--path", "--pub", "--principal"),
      NULL },
    { "peer", "add", "DOMAIN --principal NAME --auth required|optional", ctl_peer_add, 1, 1,
      L("--principal", "--auth"), NULL },
    { "peer", "list", "[--metrics URL] [--json]", ctl_peer_list, 0, 0, L("--metrics"), NULL },
    { "peer", "remove", "DOMAIN", ctl_peer_remove, 1, 1, NULL, NULL },
    { "audit", "keygen", "--out FILE", ctl_audit_keygen, 0, 0, L("--out"), NULL },
    { "audit", "verify", "--audit-db FILE [--audit-db FILE]... [--key PUB.pem] [--json]",
      ctl_audit_verify, 0, 0,
      L("--audit-db", "--key"), NULL },
    { "audit", "show", "--audit-db FILE " SHOW_FILTERS " [--json]", ctl_audit_show, 0, 0,
      L(SHOW_OPTS), NULL },
    { "audit", "export", "--audit-db FILE --format jsonl " SHOW_FILTERS " [--from-seq N]\n"
      "--audit-db FILE --format jsonl --follow [--from-seq N]\n"
      "--audit-db FILE --audit-db FILE... --format jsonl --merge " SHOW_FILTERS,
      ctl_audit_show, 0, 0, L(SHOW_OPTS, "--format", "--from-seq"), L("--follow", "--merge") },
    { "audit", "rotate", "--audit-db FILE [--audit-key PRIV.pem]", ctl_audit_rotate, 0, 0,
      L("--audit-db", "--audit-key"), NULL },
    { "backup", NULL, "DIR " BACKUP_OPTS_USAGE, ctl_backup, 1, 1, L(BACKUP_OPTS), NULL },
    { "restore", NULL, "DIR " BACKUP_OPTS_USAGE, ctl_restore, 1, 1, L(BACKUP_OPTS), NULL },
    { "copy", NULL, "FROM TO [--replace]", ctl_copy, 2, 2, NULL, L("--replace") },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static bool family_known(const char *name, size_t before)
{
    for (size_t r = 0; r < before; r++)
        if (strcmp(commands[r].family, name) == 0)
            return true;
    return false;
}

/* The families from the table, wrapped at 72 columns. */
static void usage(FILE *f)
{
    fputs("usage: cpmgatectl [-d POLICY_DB] COMMAND ...\ncommands:", f);
    size_t col = 9;
    for (size_t r = 0; r < NCOMMANDS; r++) {
        if (family_known(commands[r].family, r))
            continue;
        bool last = true;
        for (size_t k = r + 1; k < NCOMMANDS && last; k++)
            last = family_known(commands[k].family, r + 1);
        size_t n = strlen(commands[r].family) + !last;
        if (col + 1 + n > 72) {
            fputs("\n         ", f);
            col = 9;
        }
        fprintf(f, " %s%s", commands[r].family, last ? "" : ",");
        col += 1 + n;
    }
    fputs(" (each prints its usage with --help)\n", f);
}

int main(int argc, char **argv)
{
    ctl_ctx ctx = { .db_path = getenv("CPMGATE_DB") };
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
            ctx.db_path = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return CTL_OK;
        } else {
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    if (strcmp(argv[i], "__complete") == 0) /* for the bash completion; not in the usage */
        return ctl_complete(commands, NCOMMANDS, argc - i - 1, argv + i + 1);
    if (!family_known(argv[i], NCOMMANDS)) {
        fprintf(stderr, "cpmgatectl: unknown command '%s'\n", argv[i]);
        usage(stderr);
        return CTL_USAGE;
    }
    /* --json may stand anywhere after the command. */
    for (int j = i; j < argc; j++)
        if (strcmp(argv[j], "--json") == 0)
            ctx.json = true;
    xmlInitParser();
    int rc = ctl_dispatch(&ctx, commands, NCOMMANDS, argc - i, argv + i);
    if (ctx.store)
        cg_pstore_close(ctx.store);
    xmlCleanupParser();
    return rc;
}
