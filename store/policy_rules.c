/* store/policy_rules.c — ACL rule edits: add (subject checked), remove,
 * list; each edit one transaction with its policy_log row. */
#include "store/policy_rules.h"

#include <stdio.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_remote.h"
#include "common/cg_util.h"
#include "store/policy_store_impl.h"

static bool text_ok(const char *t)
{
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int cg_pstore_rule_add(cg_pstore *s, bool deny, const char *subject, const char *service,
                       const char *pattern, unsigned rights, const char *comment,
                       int64_t *id_out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (strcmp(service, "imap") != 0 && strcmp(service, "http") != 0 && strcmp(service, "*") != 0) {
        *error_r = cg_say("unknown service (imap, http or *): '%.200s'", service);
        return CG_E_INVAL;
    }
    if (rights == 0 || rights >= 32) {
        *error_r = "invalid rights";
        return CG_E_INVAL;
    }
    if (!*pattern || !text_ok(pattern) || (comment && !text_ok(comment))) {
        *error_r = "pattern and comment must be non-empty text without control characters";
        return CG_E_INVAL;
    }
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int64_t subject_id;
    char remote[CG_REMOTE_USER_MAX + 1];
    if (strcmp(subject, "*") != 0)
        rc = subject[0] == '@' ? cg_ps_group_id(s, subject + 1, &subject_id, error_r)
                               : cg_ps_principal_id(s, subject, &subject_id, error_r);
    /* SPEC 7: a remote user (user@DOMAIN, *@DOMAIN) is no principal of
     * this store; the name of a local principal stays that principal */
    if (rc == CG_E_NOTFOUND && subject[0] != '@' &&
        cg_remote_user(subject, strlen(subject), true, remote, sizeof remote, NULL)) {
        subject = remote;
        rc = 0;
    }
    char t[CG_TIME_LEN];
    int64_t id = 0;
    bool found;
    if (rc == 0)
        rc = cg_ps_one_int(s, cg_ps_prep(s, error_r,
                                         "INSERT INTO acl_rule (effect, subject, service, pattern, "
                                         "rights, comment, created) "
                                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                                         "ttttitt", deny ? "deny" : "allow", subject, service,
                                         pattern, (int64_t)rights, comment, cg_ps_now(t)),
                           &id, &found, error_r);
    char detail[1400];
    snprintf(detail, sizeof detail, "id=%lld %s %s %s %.1000s rights=%u", (long long)id,
             deny ? "deny" : "allow", subject, service, pattern, rights);
    rc = cg_ps_finish(s, rc, "acl add", detail, error_r);
    if (rc == 0 && id_out)
        *id_out = id;
    return rc;
}

int cg_pstore_rule_remove(cg_pstore *s, int64_t id, const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int changes = 0;
    rc = cg_ps_done(s, cg_ps_prep(s, error_r, "DELETE FROM acl_rule WHERE id = ?1", "i", id),
                    &changes, error_r);
    if (rc == 0 && changes == 0) {
        *error_r = cg_say("no rule %lld", (long long)id);
        rc = CG_E_NOTFOUND;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "id=%lld", (long long)id);
    return cg_ps_finish(s, rc, "acl remove", detail, error_r);
}

typedef struct rule_rows {
    cg_pstore_rule_cb cb;
    void *ctx;
} rule_rows;

static int rule_row(cg_ps_row *st, void *arg)
{
    const rule_rows *l = arg;
    cg_pstore_rule r = {
        .id = cg_ps_col_int(st, 0),
        .deny = strcmp(cg_ps_col_text(st, 1), "deny") == 0,
        .subject = cg_ps_col_text(st, 2),
        .service = cg_ps_col_text(st, 3),
        .pattern = cg_ps_col_text(st, 4),
        .rights = (unsigned)cg_ps_col_int(st, 5),
        .comment = cg_ps_col_text(st, 6),
        .created = cg_ps_col_text(st, 7),
    };
    return l->cb(l->ctx, &r);
}

int cg_pstore_rule_list(cg_pstore *s, const char *subject, const char *service,
                        cg_pstore_rule_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    rule_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT id, effect, subject, service, pattern, rights, "
                                    "comment, created FROM acl_rule "
                                    "WHERE (?1 IS NULL OR subject = ?1) AND "
                                    "(?2 IS NULL OR service = ?2) ORDER BY id", "tt",
                                    subject, service),
                      rule_row, &l, error_r);
}
