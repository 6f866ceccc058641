/* store/policy_copy.c — a whole policy from one store into another
 * (SQLite to PostgreSQL and back): every table read in one read
 * transaction of the source, written with its ids in one transaction of
 * the target together with its policy_log row. */
#include <stdio.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_backend.h"
#include "store/policy_store_impl.h"

/* The policy tables in an order their references allow: columns, and the
 * type of each ('i' integer, 't' text, 'b' blob). */
static const struct table {
    const char *name, *cols, *types;
    bool ids; /* an id column the target's counter must pass */
} tables[] = {
    { "principal", "id, name, kind, mailbox, enabled, created", "itttit", true },
    { "credential", "id, principal_id, type, value, secret, ha1_md5, ha1_sha256, created",
      "iittbttt", true },
    { "grp", "id, name, created", "itt", true },
    { "grp_member", "group_id, principal_id", "ii", false },
    { "acl_rule", "id, effect, subject, service, pattern, rights, comment, created",
      "ittttitt", true },
    { "pubkey", "id, key_id, principal_id, alg, pem, created", "itittt", true },
    { "require_signed", "pattern, created", "tt", false },
    { "peer", "domain, principal_id, auth, created", "titt", false },
};

typedef struct copy_row {
    cg_pstore *to;
    const struct table *t;
    const char *insert;
    const char **error_r;
    int64_t n;
} copy_row;

static int one_row(cg_ps_row *r, void *arg)
{
    copy_row *c = arg;
    cg_ps_arg a[CG_PS_MAXARGS];
    int n = 0;
    for (const char *ty = c->t->types; *ty; ty++) {
        a[n] = (cg_ps_arg){ .type = *ty };
        if (*ty == 'i')
            a[n].i = cg_ps_col_int(r, n);
        else if (*ty == 't')
            a[n].t = cg_ps_col_text(r, n);
        else
            a[n].b = cg_ps_col_blob(r, n, &a[n].n);
        n++;
    }
    c->n++;
    return cg_ps_done(c->to, cg_ps_prepa(c->to, c->error_r, c->insert, n, a), NULL, c->error_r);
}

static int copy_table(cg_pstore *from, cg_pstore *to, const struct table *t, int64_t *count,
                      const char **error_r)
{
    char select[300], insert[400], marks[64] = "";
    for (int n = 0; t->types[n]; n++) {
        size_t at = strlen(marks);
        snprintf(marks + at, sizeof marks - at, "%s?%d", n ? ", " : "", n + 1);
    }
    snprintf(select, sizeof select, "SELECT %s FROM %s ORDER BY 1", t->cols, t->name);
    snprintf(insert, sizeof insert, "INSERT INTO %s (%s) VALUES (%s)", t->name, t->cols, marks);
    copy_row c = { to, t, insert, error_r, 0 };
    int rc = cg_ps_each(from, select, one_row, &c, error_r);
    *count = c.n;
    if (rc == 0 && t->ids && to->pg) {
        /* the next id the target hands out follows the copied ones */
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT setval(pg_get_serial_sequence('%s', 'id'), "
                 "coalesce(max(id), 0) + 1, false) FROM %s", t->name, t->name);
        rc = cg_ps_done(to, cg_ps_prep(to, error_r, sql, ""), NULL, error_r);
    }
    return rc;
}

/* Whether the target holds a policy already. */
static int target_empty(cg_pstore *to, bool replace, const char **error_r)
{
    int rc = 0;
    if (replace) {
        for (size_t i = CG_ARRAY_LEN(tables); rc == 0 && i-- > 0;) {
            char sql[64];
            snprintf(sql, sizeof sql, "DELETE FROM %s", tables[i].name);
            rc = cg_ps_done(to, cg_ps_prep(to, error_r, sql, ""), NULL, error_r);
        }
        return rc;
    }
    int64_t n = 0;
    bool found;
    rc = cg_ps_one_int(to, cg_ps_prep(to, error_r,
                                      "SELECT (SELECT count(*) FROM principal) + "
                                      "(SELECT count(*) FROM grp) + "
                                      "(SELECT count(*) FROM acl_rule) + "
                                      "(SELECT count(*) FROM require_signed)", ""),
                       &n, &found, error_r);
    if (rc == 0 && n > 0) {
        *error_r = cg_say("%s holds a policy already: copy into an empty database, or "
                          "replace its policy with --replace", to->label);
        rc = CG_E_EXISTS;
    }
    return rc;
}

int cg_pstore_copy(cg_pstore *from, cg_pstore *to, bool replace, char *summary, size_t cap,
                   const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_ps_begin(to, &error_r);
    if (rc < 0)
        return rc;
    rc = target_empty(to, replace, error_r);
    if (rc == 0)
        rc = cg_ps_read_begin(from, error_r);
    bool reading = rc == 0;
    int64_t n[CG_ARRAY_LEN(tables)] = { 0 };
    for (size_t i = 0; rc == 0 && i < CG_ARRAY_LEN(tables); i++)
        rc = copy_table(from, to, &tables[i], &n[i], error_r);
    if (reading)
        rc = cg_ps_read_end(from, rc, error_r);
    snprintf(summary, cap, "%lld principals, %lld credentials, %lld groups, %lld rules, "
             "%lld keys, %lld signed patterns, %lld peers",
             (long long)n[0], (long long)n[1], (long long)n[2], (long long)n[4],
             (long long)n[5], (long long)n[6], (long long)n[7]);
    char detail[1200];
    snprintf(detail, sizeof detail, "from %.500s%s: %s", from->label,
             replace ? " (replacing)" : "", summary);
    return cg_ps_finish(to, rc, "policy copy", detail, error_r);
}
