/* proxy/imap/judge.c — mailbox names and the ACL: a mailbox argument
 * decoded to the name the ACL judges and the wire form that is forwarded,
 * one right judged on a name or on the selected mailbox, the principal
 * looked up afresh in the current snapshot at every command. */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_util.h"
#include "proxy/imap/mutf7.h"

/* ---- mailbox names (SPEC section 4) -------------------------------------- */

/* Decodes a mailbox argument to the UTF-8 name the ACL judges (INBOX in
 * any case, also before the delimiter, is INBOX) and the wire form that
 * is forwarded (canonical modified UTF-7, or UTF-8 once UTF8=ACCEPT is
 * enabled). False when the name is not valid. */
bool cg_imap_mailbox_decode(const imap_sess *s, const char *raw, size_t len,
                            char *name, size_t namecap, char *wire,
                            size_t wirecap)
{
    if (strlen(raw) != len || len >= namecap)
        return false;
    if (s->utf8) {
        if (!cg_utf8_valid(raw, len))
            return false;
        memcpy(name, raw, len + 1);
    } else if (cg_mutf7_decode(raw, len, name, namecap) < 0) {
        return false;
    }
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20)
            return false;
    size_t nl = strlen(name);
    if (nl >= 5 && strncasecmp(name, "INBOX", 5) == 0 &&
        (nl == 5 || name[5] == s->delim))
        memcpy(name, "INBOX", 5);
    if (s->utf8) {
        if (nl >= wirecap)
            return false;
        memcpy(wire, name, nl + 1);
        return true;
    }
    return cg_mutf7_encode(name, nl, wire, wirecap) >= 0;
}

/* ---- policy -------------------------------------------------------------- */

/* The name the ACL judges: on a routed listener (SPEC section 7) the
 * remote domain's mailboxes are "DOMAIN:NAME", so no rule written for a
 * local mailbox ever reaches a remote one. Into out (cap: its sizeof);
 * false when it does not fit. */
static bool judged_name(const imap_sess *s, const char *name, char *out, size_t cap,
                        size_t *len)
{
    const cg_route_cfg *r = s->route;
    int n = r ? snprintf(out, cap, "%s:%s", r->domain, name) : snprintf(out, cap, "%s", name);
    if (n < 0 || (size_t)n >= cap)
        return false;
    *len = (size_t)n;
    return true;
}

cg_decision cg_imap_decide(const imap_judge *j, const imap_sess *s, unsigned right,
                           const char *name)
{
    char full[ROUTED_NAME_MAX];
    size_t len;
    if (!judged_name(s, name, full, sizeof full, &len))
        return (cg_decision){ .allow = false };
    return cg_acl_decide_as(cg_snapshot_acl(j->snap), j->p,
                            s->originator[0] ? s->originator : NULL, CG_SVC_IMAP, right,
                            full, len, s->delim);
}

/* The ACL's refusal of right on name (by rule): the wire answer, the log
 * line, the audit record. */
static void refuse_denied(cg_conn *c, imap_sess *s, unsigned right, const char *name,
                          int64_t rule)
{
    char shown[NAME_MAX_ + 64];
    cg_imap_text_name(name, shown, sizeof shown);
    cg_imap_refuse(c, s, "NO", "NOPERM", name, rule, "%s denied on \"%s\"",
                   cg_right_name(right), shown);
}

/* Judges one right on one name; refuses on the wire when denied. */
bool cg_imap_need(cg_conn *c, imap_sess *s, const imap_judge *j, unsigned right,
                  const char *name, bool subtree)
{
    cg_decision d = cg_imap_decide(j, s, right, name);
    int64_t rule = d.rule_id;
    bool ok = d.allow;
    char full[ROUTED_NAME_MAX];
    size_t len;
    if (ok && subtree)
        ok = judged_name(s, name, full, sizeof full, &len) &&
             cg_acl_subtree_clear_as(cg_snapshot_acl(j->snap), j->p,
                                     s->originator[0] ? s->originator : NULL, CG_SVC_IMAP,
                                     right, full, len, s->delim, &rule);
    if (!ok) {
        refuse_denied(c, s, right, name, rule);
        return false;
    }
    s->rule_id = rule;
    return true;
}
/* The mailbox argument i, decoded; refuses with BAD when absent/invalid. */
bool cg_imap_arg_mailbox(cg_conn *c, imap_sess *s, size_t i, char *name,
                         char *wire)
{
    size_t len;
    const char *raw = cg_imap_tok_str(s, i, &len);
    if (!raw) {
        cg_imap_refuse(c, s, "BAD", NULL, NULL, 0, "missing mailbox name");
        return false;
    }
    if (!cg_imap_mailbox_decode(s, raw, len, name, NAME_MAX_, wire, NAME_MAX_)) {
        /* well-formed syntax naming no possible mailbox (invalid modified
         * UTF-7, a control character): NO, as Dovecot answers it; BAD
         * would tell the client its command was malformed */
        cg_imap_refuse(c, s, "NO", NULL, NULL, 0, "invalid mailbox name");
        return false;
    }
    return true;
}

unsigned cg_imap_selected_denied(const imap_judge *j, const imap_sess *s, unsigned rights,
                                 int64_t *rule)
{
    *rule = 0;
    if (!s->has_selected)
        return 0; /* the backend answers "No mailbox selected" */
    for (unsigned r = 1; r <= CG_RIGHT_DELETE; r <<= 1) {
        if (!(rights & r))
            continue;
        cg_decision d = cg_imap_decide(j, s, r, s->selected);
        *rule = d.rule_id;
        if (!d.allow)
            return r;
    }
    return 0;
}

bool cg_imap_need_selected(cg_conn *c, imap_sess *s, const imap_judge *j,
                           unsigned rights)
{
    if (!s->has_selected)
        return true;
    snprintf(s->resource, sizeof s->resource, "%s", s->selected);
    int64_t rule;
    unsigned denied = cg_imap_selected_denied(j, s, rights, &rule);
    if (denied) {
        refuse_denied(c, s, denied, s->selected, rule);
        return false;
    }
    s->rule_id = rule;
    return true;
}
/* The principal as the current snapshot sees it, at every command (SPEC
 * 4: policy changes reach running sessions): NULL, or why it may no
 * longer act (j holds nothing then). */
static const char *judge_take(const imap_sess *s, imap_judge *j)
{
    j->snap = cg_snapshot_acquire();
    j->p = j->snap ? cg_snapshot_principal_by_id(j->snap, s->principal_id) : NULL;
    const char *why = NULL;
    if (!j->p || !j->p->enabled)
        why = "principal disabled or removed";
    else if (!cg_imap_remote_still(j->snap, j->p, s))
        why = "peer no longer allows this session"; /* SPEC 7 */
    if (why && j->snap)
        cg_snapshot_release(j->snap);
    if (why)
        j->snap = NULL;
    return why;
}

bool cg_imap_judge_try(const imap_sess *s, imap_judge *j)
{
    return judge_take(s, j) == NULL;
}

bool cg_imap_judge_acquire(cg_conn *c, imap_sess *s, imap_judge *j)
{
    const char *why = judge_take(s, j);
    if (!why)
        return true;
    /* a peer removed or made stricter ends its sessions too */
    imap_txid id;
    cg_imap_txid(c, s, &id);
    cg_imap_send(c, s, "* BYE [AUTHORIZATIONFAILED] %s (txid %s)", why, id.s);
    cg_imap_audit(c, s, s->op[0] ? s->op : "command", NULL, "deny", 0, "BYE", why);
    s->state = S_CLOSED;
    cg_conn_close(c, why);
    return false;
}
