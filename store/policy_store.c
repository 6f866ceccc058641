/* store/policy_store.c — the policy store (see policy_store.h): open and
 * migrate a SQLite file (a PostgreSQL URL goes to policy_store_pg.c),
 * notice commits by other connections (PRAGMA data_version; PostgreSQL's
 * notifications), load everything in one read transaction, transactions
 * and the change log, and the name helpers every edit uses
 * (policy_store_impl.h). Statements: policy_sql.c. The edits themselves:
 * policy_principals.c (principals, groups), policy_creds.c (credentials),
 * policy_rules.c, policy_keys.c. */
#include <ctype.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_backend.h"
#include "store/policy_schema.h"
#include "store/policy_store.h"
#include "store/policy_store_impl.h"

struct cg_db *cg_pstore_db(cg_pstore *s)
{
    return s ? s->db : NULL;
}

bool cg_pstore_is_pg(const cg_pstore *s)
{
    return s && s->pg;
}

const char *cg_pstore_label(const cg_pstore *s)
{
    return s->label;
}

bool cg_pstore_up(cg_pstore *s)
{
    return atomic_load(&s->up);
}

const char *cg_ps_now(char buf[CG_TIME_LEN])
{
    cg_time_rfc3339(cg_time_now_usec(), buf);
    return buf;
}

/* ---- open, watch ------------------------------------------------------------ */

bool cg_pstore_url(const char *name)
{
    if (!name)
        return false;
    if (strncmp(name, "postgresql://", 13) == 0 || strncmp(name, "postgres://", 11) == 0)
        return true;
    /* libpq's "keyword=value ..." form: a keyword first */
    size_t k = strspn(name, "abcdefghijklmnopqrstuvwxyz_");
    return k > 0 && name[k + strspn(name + k, " \t")] == '=';
}

static int lite_open(cg_pstore *s, const char *path, int flags, const char **error_r)
{
    int dbf = s->readonly ? CG_DB_READONLY : (flags & CG_PSTORE_CREATE) ? CG_DB_CREATE : 0;
    int rc = cg_db_open(path, dbf, &s->db, error_r);
    if (rc == 0 && !s->readonly)
        rc = cg_db_migrate(s->db, cg_policy_migrations, CG_ARRAY_LEN(cg_policy_migrations),
                           error_r);
    if (rc == 0 && s->readonly) {
        /* the gateway must not start on a file cpmgatectl never set up */
        int64_t v = 0;
        rc = cg_db_pragma_int(s->db, "user_version", &v, error_r);
        if (rc == 0 && v != (int64_t)CG_ARRAY_LEN(cg_policy_migrations)) {
            *error_r = v == 0 ? cg_say("%s is not an initialised policy database (cpmgatectl init)", path)
                              : cg_say("%s has policy schema version %lld, this program needs %zu",
                                    path, (long long)v, CG_ARRAY_LEN(cg_policy_migrations));
            rc = CG_E_INVAL;
        }
    }
    if (rc == 0)
        rc = cg_db_pragma_int(s->db, "data_version", &s->data_version, error_r);
    return rc;
}

int cg_pstore_open(const char *path, int flags, cg_pstore **out, const char **error_r)
{
    return cg_pstore_open_auth(path, NULL, flags, out, error_r);
}

int cg_pstore_open_auth(const char *path, const char *password, int flags, cg_pstore **out,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *out = NULL;
    cg_pstore *s = calloc(1, sizeof *s);
    if (!s) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    s->readonly = flags & CG_PSTORE_READONLY;
    atomic_init(&s->changed, false);
    atomic_init(&s->up, true);
    int rc;
    if (cg_pstore_url(path)) {
        rc = cg_pspg_open(s, path, password, flags, error_r);
    } else {
        s->label = strdup(path);
        rc = s->label ? lite_open(s, path, flags, error_r) : CG_E_NOMEM;
    }
    if (rc < 0) {
        cg_pstore_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cg_pstore_close(cg_pstore *s)
{
    if (!s)
        return;
    cg_db_close(s->db);
    cg_pspg_close(s);
    free(s->label);
    free(s);
}

/* data_version moves only for commits of other connections (ENVIRONMENT.md
 * "SQLite change watching"), which is exactly what the gateway wants. */
int cg_pstore_poll_changed(cg_pstore *s, bool *changed, const char **error_r)
{
    int64_t v;
    *changed = false;
    if (s->pg) {
        *changed = atomic_exchange(&s->changed, false);
        return 0;
    }
    if (cg_db_pragma_int(s->db, "data_version", &v, error_r) < 0)
        return CG_E_DB;
    *changed = v != s->data_version;
    s->data_version = v;
    return 0;
}

/* ---- load ------------------------------------------------------------------- */

/* Runs one SELECT of the load and calls row() per row; row returns
 * non-zero to stop. */
typedef int (*row_fn)(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx);

typedef struct load_rows {
    row_fn row;
    const cg_pstore_visitor *v;
    void *ctx;
} load_rows;

static int load_row(cg_ps_row *st, void *arg)
{
    const load_rows *l = arg;
    return l->row(st, l->v, l->ctx);
}

static int each_row(cg_pstore *s, const char *sql, row_fn row, const cg_pstore_visitor *v,
                    void *ctx, const char **error_r)
{
    load_rows l = { row, v, ctx };
    return cg_ps_each(s, sql, load_row, &l, error_r);
}

static int row_principal(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->principal(ctx, cg_ps_col_int(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
                        cg_ps_col_text(st, 3), cg_ps_col_int(st, 4) != 0);
}

static int row_credential(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    size_t slen;
    const uint8_t *secret = cg_ps_col_blob(st, 4, &slen);
    return v->credential(ctx, cg_ps_col_int(st, 0), cg_ps_col_int(st, 1),
                         cg_ps_col_text(st, 2), cg_ps_col_text(st, 3), secret, secret ? slen : 0,
                         cg_ps_col_text(st, 5), cg_ps_col_text(st, 6));
}

static int row_group(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->group(ctx, cg_ps_col_int(st, 0), cg_ps_col_text(st, 1));
}

static int row_member(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->member(ctx, cg_ps_col_int(st, 0), cg_ps_col_int(st, 1));
}

static int row_rule(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->rule(ctx, cg_ps_col_int(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
                   cg_ps_col_text(st, 3), cg_ps_col_text(st, 4), (unsigned)cg_ps_col_int(st, 5));
}

static int row_pubkey(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->pubkey(ctx, cg_ps_col_int(st, 0), cg_ps_col_text(st, 1),
                     cg_ps_col_int(st, 2), cg_ps_col_text(st, 3), cg_ps_col_text(st, 4));
}

static int row_require_signed(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->require_signed(ctx, cg_ps_col_text(st, 0));
}

static int row_peer(cg_ps_row *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->peer(ctx, cg_ps_col_text(st, 0), cg_ps_col_int(st, 1), cg_ps_col_text(st, 2));
}

int cg_pstore_load(cg_pstore *s, const cg_pstore_visitor *v, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    const struct {
        bool on;
        const char *sql;
        row_fn row;
    } parts[] = {
        { v->principal != NULL,
          "SELECT id, name, kind, mailbox, enabled FROM principal ORDER BY id", row_principal },
        { v->credential != NULL,
          "SELECT id, principal_id, type, value, secret, ha1_md5, ha1_sha256 "
          "FROM credential ORDER BY id", row_credential },
        { v->group != NULL, "SELECT id, name FROM grp ORDER BY id", row_group },
        { v->member != NULL,
          "SELECT group_id, principal_id FROM grp_member ORDER BY group_id, principal_id",
          row_member },
        { v->rule != NULL,
          "SELECT id, effect, subject, service, pattern, rights FROM acl_rule ORDER BY id",
          row_rule },
        { v->pubkey != NULL,
          "SELECT id, key_id, principal_id, alg, pem FROM pubkey ORDER BY id", row_pubkey },
        { v->require_signed != NULL,
          "SELECT pattern FROM require_signed ORDER BY pattern", row_require_signed },
        { v->peer != NULL,
          "SELECT domain, principal_id, auth FROM peer ORDER BY domain", row_peer },
    };
    /* one read transaction: the snapshot sees one committed state, never
     * half of an edit */
    int rc = cg_ps_read_begin(s, error_r);
    for (size_t i = 0; rc == 0 && i < CG_ARRAY_LEN(parts); i++) {
        if (parts[i].on)
            rc = each_row(s, parts[i].sql, parts[i].row, v, ctx, error_r);
    }
    return cg_ps_read_end(s, rc, error_r);
}

typedef struct log_rows {
    cg_pstore_log_cb cb;
    void *ctx;
} log_rows;

static int log_row(cg_ps_row *st, void *arg)
{
    const log_rows *l = arg;
    return l->cb(l->ctx, cg_ps_col_int(st, 0), cg_ps_col_text(st, 1),
                 cg_ps_col_text(st, 2), cg_ps_col_text(st, 3), cg_ps_col_text(st, 4));
}

int cg_pstore_log_since(cg_pstore *s, int64_t after, cg_pstore_log_cb cb, void *ctx,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    log_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT seq, time, actor, operation, detail FROM policy_log "
                                    "WHERE seq > ?1 ORDER BY seq", "i", after),
                      log_row, &l, error_r);
}

/* ---- transactions and the change log ------------------------------------------ */

int cg_pstore_begin(cg_pstore *s, const char **error_r)
{
    if (s->readonly) {
        *error_r = "policy database is open read-only";
        return CG_E_INVAL;
    }
    if (s->pg)
        return cg_pspg_exec(s, "BEGIN; SELECT pg_advisory_xact_lock(" CG_PSPG_EDIT_LOCK ")",
                            error_r);
    return cg_db_begin(s->db, error_r);
}

int cg_pstore_commit(cg_pstore *s, const char **error_r)
{
    return s->pg ? cg_pspg_exec(s, "COMMIT", error_r) : cg_db_commit(s->db, error_r);
}

void cg_pstore_rollback(cg_pstore *s)
{
    if (s->pg)
        cg_pspg_rollback(s);
    else
        cg_db_rollback(s->db);
}

int cg_pstore_log_change(cg_pstore *s, const char *operation, const char *detail,
                         const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    char actor[64];
    struct passwd *pw = getpwuid(geteuid());
    if (pw && pw->pw_name)
        cg_strlcpy(actor, pw->pw_name, sizeof actor);
    else
        snprintf(actor, sizeof actor, "uid %u", (unsigned)geteuid());
    char t[CG_TIME_LEN];
    return cg_ps_done(s, cg_ps_prep(s, error_r,
                        "INSERT INTO policy_log (time, actor, operation, detail) "
                        "VALUES (?1, ?2, ?3, ?4)", "tttt",
                        cg_ps_now(t), actor, operation, detail),
                NULL, error_r);
}

int cg_ps_begin(cg_pstore *s, const char ***error_r)
{
    static _Thread_local const char *scratch;
    if (!*error_r)
        *error_r = &scratch;
    return cg_pstore_begin(s, *error_r);
}

/* Finishes an edit begun with cg_ps_begin: log row and commit when rc
 * is 0, else rollback. */
int cg_ps_finish(cg_pstore *s, int rc, const char *operation, const char *detail,
                  const char **error_r)
{
    if (rc == 0)
        rc = cg_pstore_log_change(s, operation, detail, error_r);
    if (rc == 0)
        rc = cg_pstore_commit(s, error_r);
    if (rc < 0)
        cg_pstore_rollback(s);
    return rc;
}

/* ---- validation ----------------------------------------------------------------- */

/* Printable, no spaces: names end up in logs, audit records, IMAP logins,
 * Digest usernames and ACL patterns (${user}). */
bool cg_ps_plain_text(const char *t, size_t max)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A principal name or IMAP login. '@' first would read as a group and '*'
 * as everyone in an ACL subject; '*' anywhere is Dovecot's master-user
 * separator (a login "victim*gw" is a master login attempt), and '%', '"'
 * and '\\' would be wildcards or quoting when substituted for ${user}. */
bool cg_ps_name_ok(const char *name)
{
    return cg_ps_plain_text(name, CG_NAME_MAX) && name[0] != '@' && !strpbrk(name, "*%\"\\/");
}

int cg_ps_bad_name(const char *what, const char *name, const char **error_r)
{
    *error_r = cg_say("invalid %s name '%.64s': 1-255 printable characters, no spaces, "
                   "not starting with @, none of * %% \" \\ /", what, name ? name : "");
    return CG_E_INVAL;
}

/* The id of a named principal or group: CG_E_NOTFOUND with a sentence
 * naming what is unknown. */
static int id_of(cg_pstore *s, bool group, const char *name, int64_t *id, const char **error_r)
{
    bool found = false;
    int rc = cg_ps_one_int(s, cg_ps_prep(s, error_r, group ? "SELECT id FROM grp WHERE name = ?1"
                                               : "SELECT id FROM principal WHERE name = ?1",
                             "t", name),
                     id, &found, error_r);
    if (rc == 0 && !found) {
        *error_r = cg_say("unknown %s '%.200s'", group ? "group" : "principal", name);
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

int cg_ps_principal_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
{
    return id_of(s, false, name, id, error_r);
}

int cg_ps_group_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
{
    return id_of(s, true, name, id, error_r);
}

