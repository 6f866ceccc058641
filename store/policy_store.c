/* store/policy_store.c — the SQLite policy store (see policy_store.h): open
 * and migrate, notice commits by other connections (PRAGMA data_version),
 * load everything in one read transaction, transactions and the change
 * log, and the statement and name helpers every edit uses
 * (policy_store_impl.h). The edits themselves: policy_principals.c
 * (principals, groups), policy_creds.c (credentials). */
#include <ctype.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"
#include "store/policy_schema.h"
#include "store/policy_store.h"
#include "store/policy_store_impl.h"

struct cg_pstore {
    cg_db *db;
    bool readonly;
    int64_t data_version;
};

sqlite3 *cg_ps_sqlite(cg_pstore *s)
{
    return cg_db_handle(s->db);
}

const char *cg_ps_dberr(cg_pstore *s)
{
    return cg_say("policy database: %s", sqlite3_errmsg(cg_ps_sqlite(s)));
}

struct cg_db *cg_pstore_db(cg_pstore *s)
{
    return s ? s->db : NULL;
}

/* ---- statements ----------------------------------------------------------- */

/* Prepares sql and binds the arguments described by types: 't' text (NULL
 * binds NULL), 'i' int64, 'b' blob (pointer, size_t). */
sqlite3_stmt *cg_ps_prep(cg_pstore *s, const char **error_r, const char *sql,
                          const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cg_ps_sqlite(s), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = cg_ps_dberr(s);
        return NULL;
    }
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 't') {
            const char *t = va_arg(ap, const char *);
            if (t)
                sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        } else if (types[i] == 'i') {
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            if (p)
                sqlite3_bind_blob(st, i + 1, p, (int)n, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        }
    }
    va_end(ap);
    return st;
}

/* Steps a statement that returns no rows and finalizes it: 0, CG_E_EXISTS
 * on a constraint (the caller replaces the sentence to say which), or
 * CG_E_DB. *changes: rows changed. */
int cg_ps_done(cg_pstore *s, sqlite3_stmt *st, int *changes, const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_DONE) {
        if (changes)
            *changes = sqlite3_changes(cg_ps_sqlite(s));
        return 0;
    }
    *error_r = cg_ps_dberr(s);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return CG_E_EXISTS;
    return (r & 0xff) == SQLITE_BUSY ? CG_E_BUSY : CG_E_DB;
}

/* One integer from a one-row query; *found false when no row. */
int cg_ps_one_int(cg_pstore *s, sqlite3_stmt *st, int64_t *v, bool *found,
                   const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int r = sqlite3_step(st);
    *found = r == SQLITE_ROW;
    if (*found)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE) {
        *error_r = cg_ps_dberr(s);
        return CG_E_DB;
    }
    return 0;
}

const char *cg_ps_now(char buf[CG_TIME_LEN])
{
    cg_time_rfc3339(cg_time_now_usec(), buf);
    return buf;
}

/* ---- open, watch ------------------------------------------------------------ */

int cg_pstore_open(const char *path, int flags, cg_pstore **out, const char **error_r)
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
    free(s);
}

/* data_version moves only for commits of other connections (ENVIRONMENT.md
 * "SQLite change watching"), which is exactly what the gateway wants. */
int cg_pstore_poll_changed(cg_pstore *s, bool *changed, const char **error_r)
{
    int64_t v;
    *changed = false;
    if (cg_db_pragma_int(s->db, "data_version", &v, error_r) < 0)
        return CG_E_DB;
    *changed = v != s->data_version;
    s->data_version = v;
    return 0;
}

/* ---- load ------------------------------------------------------------------- */

const char *cg_ps_col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

int cg_ps_rows(cg_pstore *s, sqlite3_stmt *st, cg_ps_row_fn row, void *arg,
               const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        rc = row(st, arg);
        if (rc != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = cg_ps_dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs one SELECT of the load and calls row() per row; row returns
 * non-zero to stop. */
typedef int (*row_fn)(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx);

typedef struct load_rows {
    row_fn row;
    const cg_pstore_visitor *v;
    void *ctx;
} load_rows;

static int load_row(sqlite3_stmt *st, void *arg)
{
    const load_rows *l = arg;
    return l->row(st, l->v, l->ctx);
}

static int each_row(cg_pstore *s, const char *sql, row_fn row, const cg_pstore_visitor *v,
                    void *ctx, const char **error_r)
{
    load_rows l = { row, v, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r, sql, ""), load_row, &l, error_r);
}

static int row_principal(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->principal(ctx, sqlite3_column_int64(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
                        cg_ps_col_text(st, 3), sqlite3_column_int(st, 4) != 0);
}

static int row_credential(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    const uint8_t *secret = sqlite3_column_blob(st, 4);
    size_t slen = (size_t)sqlite3_column_bytes(st, 4);
    return v->credential(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                         cg_ps_col_text(st, 2), cg_ps_col_text(st, 3), secret, secret ? slen : 0,
                         cg_ps_col_text(st, 5), cg_ps_col_text(st, 6));
}

static int row_group(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->group(ctx, sqlite3_column_int64(st, 0), cg_ps_col_text(st, 1));
}

static int row_member(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->member(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
}

static int row_rule(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->rule(ctx, sqlite3_column_int64(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
                   cg_ps_col_text(st, 3), cg_ps_col_text(st, 4), (unsigned)sqlite3_column_int(st, 5));
}

static int row_pubkey(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->pubkey(ctx, sqlite3_column_int64(st, 0), cg_ps_col_text(st, 1),
                     sqlite3_column_int64(st, 2), cg_ps_col_text(st, 3), cg_ps_col_text(st, 4));
}

static int row_require_signed(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->require_signed(ctx, cg_ps_col_text(st, 0));
}

static int row_peer(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->peer(ctx, cg_ps_col_text(st, 0), sqlite3_column_int64(st, 1), cg_ps_col_text(st, 2));
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
    int rc = cg_db_begin_read(s->db, error_r);
    for (size_t i = 0; rc == 0 && i < CG_ARRAY_LEN(parts); i++) {
        if (parts[i].on)
            rc = each_row(s, parts[i].sql, parts[i].row, v, ctx, error_r);
    }
    if (rc == 0)
        rc = cg_db_commit(s->db, error_r);
    else
        cg_db_rollback(s->db);
    return rc;
}

typedef struct log_rows {
    cg_pstore_log_cb cb;
    void *ctx;
} log_rows;

static int log_row(sqlite3_stmt *st, void *arg)
{
    const log_rows *l = arg;
    return l->cb(l->ctx, sqlite3_column_int64(st, 0), cg_ps_col_text(st, 1),
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
    return cg_db_begin(s->db, error_r);
}

int cg_pstore_commit(cg_pstore *s, const char **error_r)
{
    return cg_db_commit(s->db, error_r);
}

void cg_pstore_rollback(cg_pstore *s)
{
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

