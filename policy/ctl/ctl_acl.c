/* ctl_acl.c — `cpmgatectl acl` and `cpmgatectl check` (SPEC sections 4, 9):
 * white/black-list rules, and the explained decision for one request. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl.h"
#include "cg_error.h"
#include "cg_util.h"
#include "../acl.h"
#include "../snapshot.h"
#include "../../store/policy_rules.h"

static const char acl_synopsis[] =
    "acl allow|deny SUBJECT SERVICE PATTERN RIGHTS [--comment TEXT] | "
    "acl list [--subject S] [--service S] [--json] | acl remove ID";
static const char check_synopsis[] =
    "check PRINCIPAL SERVICE RIGHT RESOURCE [--delimiter C]";

typedef struct list_ctx {
    bool json;
    size_t n;
} list_ctx;

static int print_rule(void *c, const cg_pstore_rule *r)
{
    list_ctx *l = c;
    char rights[48];
    cg_rights_format(r->rights, rights);
    if (l->json) {
        printf("%s{\"id\":%" PRId64 ",\"effect\":\"%s\",\"subject\":", l->n ? "," : "", r->id,
               r->deny ? "deny" : "allow");
        ctl_json_str(stdout, r->subject);
        fputs(",\"service\":", stdout);
        ctl_json_str(stdout, r->service);
        fputs(",\"pattern\":", stdout);
        ctl_json_str(stdout, r->pattern);
        printf(",\"rights\":\"%s\",\"comment\":", rights);
        ctl_json_str(stdout, r->comment);
        fputs(",\"created\":", stdout);
        ctl_json_str(stdout, r->created);
        fputs("}", stdout);
    } else {
        printf("%" PRId64 "\t%s\t%s\t%s\t%s\t%s%s%s\n", r->id, r->deny ? "deny" : "allow",
               r->subject, r->service, r->pattern, rights, r->comment ? "\t# " : "",
               r->comment ? r->comment : "");
    }
    l->n++;
    return 0;
}

int ctl_acl(ctl_ctx *ctx, int argc, char **argv)
{
    static const char *const opts[] = { "--comment", "--subject", "--service", NULL };
    if (argc < 2 || !ctl_opts_known(argc, argv, opts, NULL))
        return ctl_usage(acl_synopsis);
    const char *sub = ctl_pos(argc, argv, 0, opts, NULL);
    bool bad = false;
    const char *err = NULL;
    if (strcmp(sub, "allow") == 0 || strcmp(sub, "deny") == 0) {
        const char *subject = ctl_pos(argc, argv, 1, opts, NULL);
        const char *service = ctl_pos(argc, argv, 2, opts, NULL);
        const char *pattern = ctl_pos(argc, argv, 3, opts, NULL);
        const char *rights_text = ctl_pos(argc, argv, 4, opts, NULL);
        const char *comment = ctl_opt(argc, argv, "--comment", &bad);
        if (!rights_text || ctl_pos(argc, argv, 5, opts, NULL) || bad ||
            ctl_opt(argc, argv, "--subject", NULL) || ctl_opt(argc, argv, "--service", NULL))
            return ctl_usage(acl_synopsis);
        int svc;
        if (cg_service_parse(service, &svc) < 0)
            return ctl_fail("unknown service '%s' (imap, http or *)", service);
        unsigned rights;
        if (cg_rights_parse(rights_text, &rights, &err) < 0)
            return ctl_fail("%s", err);
        if (cg_acl_pattern_check(pattern, &err) < 0)
            return ctl_fail("pattern '%s': %s", pattern, err);
        if (strcmp(subject, "*") != 0 && strcmp(subject, "@") == 0)
            return ctl_fail("empty group name in subject");
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        int64_t id;
        if (cg_pstore_rule_add(ctx->store, strcmp(sub, "deny") == 0, subject, service, pattern,
                               rights, comment, &id, &err) < 0)
            return ctl_fail("%s", err ? err : "cannot add the rule");
        printf("%" PRId64 "\n", id);
        return CTL_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (ctl_pos(argc, argv, 1, opts, NULL) || ctl_opt(argc, argv, "--comment", NULL))
            return ctl_usage(acl_synopsis);
        const char *subject = ctl_opt(argc, argv, "--subject", &bad);
        const char *service = ctl_opt(argc, argv, "--service", &bad);
        if (bad)
            return ctl_usage(acl_synopsis);
        if (service) {
            int svc;
            if (cg_service_parse(service, &svc) < 0)
                return ctl_fail("unknown service '%s' (imap, http or *)", service);
        }
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        list_ctx l = { .json = ctx->json };
        if (l.json)
            fputs("[", stdout);
        int rc = cg_pstore_rule_list(ctx->store, subject, service, print_rule, &l, &err);
        if (l.json)
            fputs("]\n", stdout);
        return rc < 0 ? ctl_fail("%s", err ? err : "cannot list rules") : CTL_OK;
    }
    if (strcmp(sub, "remove") == 0) {
        const char *idtext = ctl_pos(argc, argv, 1, opts, NULL);
        uint64_t id;
        if (!idtext || ctl_pos(argc, argv, 2, opts, NULL))
            return ctl_usage(acl_synopsis);
        if (cg_parse_u64(idtext, 1, INT64_MAX, &id) < 0)
            return ctl_fail("bad rule id '%s'", idtext);
        if (ctl_open_store(ctx, false) != CTL_OK)
            return CTL_ERROR;
        if (cg_pstore_rule_remove(ctx->store, (int64_t)id, &err) < 0)
            return ctl_fail("%s", err ? err : "cannot remove the rule");
        return CTL_OK;
    }
    return ctl_usage(acl_synopsis);
}

/* The gateways normalise a leading INBOX in any case to "INBOX" before
 * they ask; so does check, so that it explains what a session would see. */
static void normalise_inbox(char *res, char delim)
{
    if (strncasecmp(res, "INBOX", 5) == 0 && (res[5] == '\0' || res[5] == delim))
        memcpy(res, "INBOX", 5);
}

static void print_rule_ref(const cg_acl *acl, int64_t id)
{
    const cg_acl_rule_info *r = cg_acl_rule(acl, id);
    if (!r) {
        printf(" rule %" PRId64 "\n", id);
        return;
    }
    char rights[48];
    cg_rights_format(r->rights, rights);
    printf(" rule %" PRId64 ": %s %s %s %s %s\n", id, r->deny ? "deny" : "allow", r->subject,
           r->service == CG_SVC_IMAP ? "imap" : r->service == CG_SVC_HTTP ? "http" : "*",
           r->pattern, rights);
}

int ctl_check(ctl_ctx *ctx, int argc, char **argv)
{
    static const char *const opts[] = { "--delimiter", NULL };
    if (!ctl_opts_known(argc, argv, opts, NULL))
        return ctl_usage(check_synopsis);
    const char *who = ctl_pos(argc, argv, 0, opts, NULL);
    const char *service = ctl_pos(argc, argv, 1, opts, NULL);
    const char *right_text = ctl_pos(argc, argv, 2, opts, NULL);
    const char *resource = ctl_pos(argc, argv, 3, opts, NULL);
    bool bad = false;
    const char *delim_text = ctl_opt(argc, argv, "--delimiter", &bad);
    if (!resource || ctl_pos(argc, argv, 4, opts, NULL) || bad)
        return ctl_usage(check_synopsis);
    int svc;
    if (cg_service_parse(service, &svc) < 0 || svc == 0)
        return ctl_fail("unknown service '%s' (imap or http)", service);
    unsigned right;
    const char *err = NULL;
    if (cg_rights_parse(right_text, &right, &err) < 0 || (right & (right - 1)) != 0)
        return ctl_fail("unknown right '%s' (one of list, read, write, create, delete)", right_text);
    if (delim_text && strlen(delim_text) != 1)
        return ctl_fail("--delimiter takes one character");
    char delim = delim_text ? delim_text[0] : '/';
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    cg_snapshot *snap;
    if (cg_snapshot_build(ctx->store, &snap, &err) < 0)
        return ctl_fail("cannot read the policy: %s", err ? err : "error");
    const cg_principal *p = cg_snapshot_principal_by_name(snap, who);
    if (!p) {
        cg_snapshot_release(snap);
        return ctl_fail("unknown principal '%s'", who);
    }
    size_t len = strlen(resource);
    char *res = strdup(resource);
    if (!res) {
        cg_snapshot_release(snap);
        return ctl_fail("out of memory");
    }
    if (svc == CG_SVC_IMAP)
        normalise_inbox(res, delim);
    const cg_acl *acl = cg_snapshot_acl(snap);
    cg_decision d = cg_acl_decide(acl, p, svc, right, res, len, delim);
    if (!p->enabled)
        printf("deny: principal %s is disabled\n", p->name);
    else if (d.rule_id == 0)
        printf("deny: no rule matched\n");
    else {
        fputs(d.allow ? "allow:" : "deny:", stdout);
        print_rule_ref(acl, d.rule_id);
    }
    free(res);
    cg_snapshot_release(snap);
    return d.allow ? CTL_OK : CTL_DENY;
}
