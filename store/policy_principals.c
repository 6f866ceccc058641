/* store/policy_principals.c — the principal and group edits of
 * cpmgatectl (add, enable/disable, remove, membership, list), each one
 * transaction with its policy_log row. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_store.h"
#include "store/policy_store_impl.h"

/* ---- principals --------------------------------------------------------------- */

int cg_pstore_principal_add(cg_pstore *s, const char *name, const char *kind,
                            const char *mailbox, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (!kind)
        kind = "user";
    if (!cg_ps_name_ok(name))
        return cg_ps_bad_name("principal", name, error_r);
    if (strcmp(kind, "user") != 0 && strcmp(kind, "server") != 0) {
        *error_r = cg_say("invalid kind '%.64s': user or server", kind);
        return CG_E_INVAL;
    }
    if (mailbox && !cg_ps_name_ok(mailbox))
        return cg_ps_bad_name("mailbox", mailbox, error_r);
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    char t[CG_TIME_LEN], detail[600];
    rc = cg_ps_done(s, cg_ps_prep(s, error_r,
                      "INSERT INTO principal (name, kind, mailbox, enabled, created) "
                      "VALUES (?1, ?2, ?3, 1, ?4)", "tttt", name, kind, mailbox, cg_ps_now(t)),
              NULL, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = cg_say("principal '%.200s' already exists", name);
    /* one principal per IMAP login: a mailbox that is another principal's
     * login would make LOGIN (and the master login made for it) ambiguous */
    int64_t n = 0;
    bool found;
    const char *login = mailbox ? mailbox : name;
    if (rc == 0)
        rc = cg_ps_one_int(s, cg_ps_prep(s, error_r, "SELECT count(*) FROM principal "
                                         "WHERE coalesce(mailbox, name) = ?1", "t", login),
                     &n, &found, error_r);
    if (rc == 0 && n > 1) {
        *error_r = cg_say("IMAP login '%.200s' already belongs to another principal", login);
        rc = CG_E_EXISTS;
    }
    snprintf(detail, sizeof detail, "%s kind=%s%s%s", name, kind, mailbox ? " mailbox=" : "",
             mailbox ? mailbox : "");
    return cg_ps_finish(s, rc, "principal add", detail, error_r);
}

int cg_pstore_principal_set_enabled(cg_pstore *s, const char *name, bool enabled,
                                    const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int changes = 0;
    rc = cg_ps_done(s, cg_ps_prep(s, error_r, "UPDATE principal SET enabled = ?1 WHERE name = ?2", "it",
                      (int64_t)enabled, name),
              &changes, error_r);
    if (rc == 0 && changes == 0) {
        *error_r = cg_say("unknown principal '%.200s'", name);
        rc = CG_E_NOTFOUND;
    }
    return cg_ps_finish(s, rc, enabled ? "principal enable" : "principal disable", name, error_r);
}

int cg_pstore_principal_remove(cg_pstore *s, const char *name, bool force,
                               const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int64_t id = 0, nrules = 0, npeers = 0;
    bool found;
    rc = cg_ps_principal_id(s, name, &id, error_r);
    if (rc == 0)
        rc = cg_ps_one_int(s, cg_ps_prep(s, error_r, "SELECT count(*) FROM acl_rule WHERE subject = ?1",
                             "t", name), &nrules, &found, error_r);
    if (rc == 0)
        rc = cg_ps_one_int(s, cg_ps_prep(s, error_r, "SELECT count(*) FROM peer WHERE principal_id = ?1",
                             "i", id), &npeers, &found, error_r);
    if (rc == 0 && (nrules || npeers) && !force) {
        *error_r = cg_say("principal '%.200s' is named by %lld ACL rule(s) and %lld peer(s); "
                       "remove them first or use --force", name, (long long)nrules,
                       (long long)npeers);
        rc = CG_E_EXISTS;
    }
    /* --force: the rules and peers go in the same transaction, so no rule
     * is ever left naming a principal that a later add could recreate */
    if (rc == 0 && nrules)
        rc = cg_ps_done(s, cg_ps_prep(s, error_r, "DELETE FROM acl_rule WHERE subject = ?1", "t", name),
                  NULL, error_r);
    if (rc == 0 && npeers)
        rc = cg_ps_done(s, cg_ps_prep(s, error_r, "DELETE FROM peer WHERE principal_id = ?1", "i", id),
                  NULL, error_r);
    if (rc == 0)
        rc = cg_ps_done(s, cg_ps_prep(s, error_r, "DELETE FROM principal WHERE id = ?1", "i", id), NULL,
                  error_r);
    char detail[400];
    snprintf(detail, sizeof detail, "%s%s (%lld rule(s), %lld peer(s) removed)", name,
             force ? " --force" : "", (long long)nrules, (long long)npeers);
    return cg_ps_finish(s, rc, "principal remove", detail, error_r);
}

typedef struct principal_rows {
    cg_pstore_principal_cb cb;
    void *ctx;
    int n;
} principal_rows;

static int principal_row(cg_ps_row *st, void *arg)
{
    principal_rows *l = arg;
    cg_pstore_principal p = {
        .id = cg_ps_col_int(st, 0),
        .name = cg_ps_col_text(st, 1),
        .kind = cg_ps_col_text(st, 2),
        .mailbox = cg_ps_col_text(st, 3),
        .enabled = cg_ps_col_int(st, 4) != 0,
        .created = cg_ps_col_text(st, 5),
    };
    l->n++;
    return l->cb(l->ctx, &p);
}

int cg_pstore_principal_list(cg_pstore *s, const char *name, cg_pstore_principal_cb cb,
                             void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    principal_rows l = { cb, ctx, 0 };
    int rc = cg_ps_rows(s, cg_ps_prep(s, error_r,
                                      "SELECT id, name, kind, mailbox, enabled, created "
                                      "FROM principal WHERE ?1 IS NULL OR name = ?1 "
                                      "ORDER BY name", "t", name),
                        principal_row, &l, error_r);
    if (rc == 0 && name && l.n == 0) {
        *error_r = cg_say("unknown principal '%.200s'", name);
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

/* ---- groups ---------------------------------------------------------------------- */

int cg_pstore_group_add(cg_pstore *s, const char *group, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (!cg_ps_name_ok(group))
        return cg_ps_bad_name("group", group, error_r);
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    char t[CG_TIME_LEN];
    rc = cg_ps_done(s, cg_ps_prep(s, error_r, "INSERT INTO grp (name, created) VALUES (?1, ?2)", "tt",
                      group, cg_ps_now(t)), NULL, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = cg_say("group '%.200s' already exists", group);
    return cg_ps_finish(s, rc, "group add", group, error_r);
}

int cg_pstore_group_member(cg_pstore *s, const char *group, const char *principal, bool add,
                           const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int64_t gid = 0, pid = 0;
    int changes = 0;
    rc = cg_ps_group_id(s, group, &gid, error_r);
    if (rc == 0)
        rc = cg_ps_principal_id(s, principal, &pid, error_r);
    if (rc == 0)
        rc = cg_ps_done(s, add ? cg_ps_prep(s, error_r, "INSERT INTO grp_member (group_id, principal_id) "
                                            "VALUES (?1, ?2)", "ii", gid, pid)
                         : cg_ps_prep(s, error_r, "DELETE FROM grp_member WHERE group_id = ?1 AND "
                                            "principal_id = ?2", "ii", gid, pid),
                  &changes, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = cg_say("'%.200s' is already a member of '%.200s'", principal, group);
    else if (rc == 0 && changes == 0) {
        *error_r = cg_say("'%.200s' is not a member of '%.200s'", principal, group);
        rc = CG_E_NOTFOUND;
    }
    char detail[600];
    snprintf(detail, sizeof detail, "%s %s", group, principal);
    return cg_ps_finish(s, rc, add ? "group member-add" : "group member-remove", detail, error_r);
}

typedef struct group_rows {
    cg_pstore_group_cb cb;
    void *ctx;
} group_rows;

static int group_row(cg_ps_row *st, void *arg)
{
    const group_rows *l = arg;
    return l->cb(l->ctx, cg_ps_col_text(st, 0), cg_ps_col_text(st, 1));
}

int cg_pstore_group_list(cg_pstore *s, cg_pstore_group_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    group_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT g.name, p.name FROM grp g "
                                    "LEFT JOIN grp_member m ON m.group_id = g.id "
                                    "LEFT JOIN principal p ON p.id = m.principal_id "
                                    "ORDER BY g.name, p.name", ""),
                      group_row, &l, error_r);
}
