/* ctl_acl.c — `cpmgatectl acl` and `cpmgatectl check` (SPEC sections 4, 9):
 * white/black-list rules, and the explained decision for one request. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/ctl/ctl.h"
#include "common/cg_error.h"
#include "common/cg_remote.h"
#include "common/cg_util.h"
#include "policy/acl.h"
#include "policy/peer.h"
#include "policy/snapshot.h"
#include "store/policy_rules.h"

static int print_rule(void *c, const cg_pstore_rule *r)
{
    ctl_list *l = c;
    char rights[48];
    cg_rights_format(r->rights, rights);
    const char *effect = r->deny ? "deny" : "allow";
    if (l->arr) {
        json_object *o = ctl_jobj();
        ctl_jset(o, "id", ctl_jint(r->id));
        ctl_jset(o, "effect", ctl_jstr(effect));
        ctl_jset(o, "subject", ctl_jstr(r->subject));
        ctl_jset(o, "service", ctl_jstr(r->service));
        ctl_jset(o, "pattern", ctl_jstr(r->pattern));
        ctl_jset(o, "rights", ctl_jstr(rights));
        ctl_jset(o, "comment", ctl_jstr(r->comment));
        ctl_jset(o, "created", ctl_jstr(r->created));
        ctl_jset(l->arr, NULL, o);
    } else {
        printf("%" PRId64 "\t%s\t%s\t%s\t%s\t%s%s%s\n", r->id, effect, r->subject, r->service,
               r->pattern, rights, r->comment ? "\t# " : "", r->comment ? r->comment : "");
    }
    return 0;
}

static bool service_ok(const char *service)
{
    int svc;
    return cg_service_parse(service, &svc) == 0;
}

/* acl allow|deny SUBJECT SERVICE PATTERN RIGHTS [--comment TEXT] */
int ctl_acl_add(ctl_ctx *ctx, const ctl_args *a)
{
    const char *subject = a->pos[0], *service = a->pos[1], *pattern = a->pos[2];
    const char *err = NULL;
    if (!service_ok(service))
        return ctl_fail("unknown service '%s' (imap, http or *)", service);
    unsigned rights;
    if (cg_rights_parse(a->pos[3], &rights, &err) < 0)
        return ctl_fail("%s", err);
    if (cg_acl_pattern_check(pattern, &err) < 0)
        return ctl_fail("pattern '%s': %s", pattern, err);
    if (strcmp(subject, "@") == 0)
        return ctl_fail("empty group name in subject");
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    int64_t id;
    if (cg_pstore_rule_add(ctx->store, strcmp(a->sub, "deny") == 0, subject, service, pattern,
                           rights, ctl_opt(a, "--comment"), &id, &err) < 0)
        return ctl_fail("%s", err ? err : "cannot add the rule");
    printf("%" PRId64 "\n", id);
    return CTL_OK;
}

int ctl_acl_list(ctl_ctx *ctx, const ctl_args *a)
{
    const char *service = ctl_opt(a, "--service");
    if (service && !service_ok(service))
        return ctl_fail("unknown service '%s' (imap, http or *)", service);
    ctl_list l;
    if (ctl_list_begin(&l, ctx) != CTL_OK)
        return CTL_ERROR;
    int rc = cg_pstore_rule_list(ctx->store, ctl_opt(a, "--subject"), service, print_rule, &l,
                                 &l.err);
    return ctl_list_end(&l, rc, NULL);
}

int ctl_acl_remove(ctl_ctx *ctx, const ctl_args *a)
{
    uint64_t id;
    if (cg_parse_u64(a->pos[0], 1, INT64_MAX, &id) < 0)
        return ctl_fail("bad rule id '%s'", a->pos[0]);
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    const char *err = NULL;
    if (cg_pstore_rule_remove(ctx->store, (int64_t)id, &err) < 0)
        return ctl_fail("%s", err ? err : "cannot remove the rule");
    return CTL_OK;
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

/* SPEC 7: a remote user "user@DOMAIN" is judged as the server principal
 * of DOMAIN's peer acting for them (--via names that principal, and must
 * be it). CTL_OK with *p and the address in its one spelling in out;
 * CTL_ERROR printed when there is no such peer or principal. */
static int remote_subject(const cg_snapshot *snap, const char *who, const char *via,
                          char out[CG_REMOTE_USER_MAX + 1], const cg_principal **p)
{
    size_t at;
    *p = NULL;
    if (!cg_remote_user(who, strlen(who), false, out, CG_REMOTE_USER_MAX + 1, &at))
        return ctl_fail("unknown principal '%s' (nor a remote user@DOMAIN)", who);
    const cg_peer *peer = cg_snapshot_peer(snap, out + at + 1);
    if (!peer)
        return ctl_fail("unknown principal '%s', and no peer for %s", who, out + at + 1);
    const cg_principal *server = cg_snapshot_principal(snap, peer->principal_idx);
    if (via && (!server || strcmp(server->name, via) != 0))
        return ctl_fail("%s is not the server principal of the peer %s", via, peer->domain);
    *p = server;
    return server ? CTL_OK : CTL_ERROR;
}

int ctl_check(ctl_ctx *ctx, const ctl_args *a)
{
    const char *who = a->pos[0], *service = a->pos[1], *right_text = a->pos[2];
    const char *resource = a->pos[3];
    const char *delim_text = ctl_opt(a, "--delimiter");
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
    char remote[CG_REMOTE_USER_MAX + 1];
    const char *originator = NULL;
    const char *via = ctl_opt(a, "--via");
    if (!p && strchr(who, '@')) {
        if (remote_subject(snap, who, via, remote, &p) != CTL_OK) {
            cg_snapshot_release(snap);
            return CTL_ERROR;
        }
        originator = remote;
    }
    if (!p || (via && !originator)) {
        cg_snapshot_release(snap);
        return p ? ctl_fail("--via is for a remote user (user@DOMAIN)")
                 : ctl_fail("unknown principal '%s'", who);
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
    cg_decision d = cg_acl_decide_as(acl, p, originator, svc, right, res, len, delim);
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
