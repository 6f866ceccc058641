/* policy_store.c — the SQLite policy store (see policy_store.h): open and
 * migrate, notice commits by other connections (PRAGMA data_version), load
 * everything in one read transaction, and the principal, credential and
 * group edits of cpmgatectl, each one transaction with its policy_log row. */
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

struct cg_pstore {
    cg_db *db;
    bool readonly;
    int64_t data_version;
};

static _Thread_local char msg[512];

__attribute__((format(printf, 1, 2)))
static const char *say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return msg;
}

static sqlite3 *H(cg_pstore *s)
{
    return cg_db_handle(s->db);
}

static const char *dberr(cg_pstore *s)
{
    return say("policy database: %s", sqlite3_errmsg(H(s)));
}

struct cg_db *cg_pstore_db(cg_pstore *s)
{
    return s ? s->db : NULL;
}

/* ---- statements ----------------------------------------------------------- */

/* Prepares sql and binds the arguments described by types: 't' text (NULL
 * binds NULL), 'i' int64, 'b' blob (pointer, size_t). */
static sqlite3_stmt *prep(cg_pstore *s, const char **error_r, const char *sql,
                          const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(H(s), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = dberr(s);
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
static int done(cg_pstore *s, sqlite3_stmt *st, int *changes, const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_DONE) {
        if (changes)
            *changes = sqlite3_changes(H(s));
        return 0;
    }
    *error_r = dberr(s);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return CG_E_EXISTS;
    return (r & 0xff) == SQLITE_BUSY ? CG_E_BUSY : CG_E_DB;
}

/* One integer from a one-row query; *found false when no row. */
static int one_int(cg_pstore *s, sqlite3_stmt *st, int64_t *v, bool *found,
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
        *error_r = dberr(s);
        return CG_E_DB;
    }
    return 0;
}

static const char *now_text(char buf[CG_TIME_LEN])
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
            *error_r = v == 0 ? say("%s is not an initialised policy database (cpmgatectl init)", path)
                              : say("%s has policy schema version %lld, this program needs %zu",
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
int cg_pstore_poll_changed(cg_pstore *s)
{
    int64_t v;
    if (cg_db_pragma_int(s->db, "data_version", &v, NULL) < 0)
        return CG_E_DB;
    if (v == s->data_version)
        return 0;
    s->data_version = v;
    return 1;
}

/* ---- load ------------------------------------------------------------------- */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Runs one SELECT and calls row() per row; row returns non-zero to stop. */
typedef int (*row_fn)(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx);

static int each_row(cg_pstore *s, const char *sql, row_fn row, const cg_pstore_visitor *v,
                    void *ctx, const char **error_r)
{
    sqlite3_stmt *st = prep(s, error_r, sql, "");
    if (!st)
        return CG_E_DB;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        rc = row(st, v, ctx);
        if (rc != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

static int row_principal(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->principal(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2),
                        col_text(st, 3), sqlite3_column_int(st, 4) != 0);
}

static int row_credential(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    const uint8_t *secret = sqlite3_column_blob(st, 4);
    size_t slen = (size_t)sqlite3_column_bytes(st, 4);
    return v->credential(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                         col_text(st, 2), col_text(st, 3), secret, secret ? slen : 0,
                         col_text(st, 5), col_text(st, 6));
}

static int row_group(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->group(ctx, sqlite3_column_int64(st, 0), col_text(st, 1));
}

static int row_member(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->member(ctx, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
}

static int row_rule(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->rule(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2),
                   col_text(st, 3), col_text(st, 4), (unsigned)sqlite3_column_int(st, 5));
}

static int row_pubkey(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->pubkey(ctx, sqlite3_column_int64(st, 0), col_text(st, 1),
                     sqlite3_column_int64(st, 2), col_text(st, 3), col_text(st, 4));
}

static int row_require_signed(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->require_signed(ctx, col_text(st, 0));
}

static int row_peer(sqlite3_stmt *st, const cg_pstore_visitor *v, void *ctx)
{
    return v->peer(ctx, col_text(st, 0), sqlite3_column_int64(st, 1), col_text(st, 2));
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

int cg_pstore_log_since(cg_pstore *s, int64_t after, cg_pstore_log_cb cb, void *ctx,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = prep(s, error_r,
                            "SELECT seq, time, actor, operation, detail FROM policy_log "
                            "WHERE seq > ?1 ORDER BY seq", "i", after);
    if (!st)
        return CG_E_DB;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        rc = cb(ctx, sqlite3_column_int64(st, 0), col_text(st, 1), col_text(st, 2),
                col_text(st, 3), col_text(st, 4));
        if (rc != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
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
    return done(s, prep(s, error_r,
                        "INSERT INTO policy_log (time, actor, operation, detail) "
                        "VALUES (?1, ?2, ?3, ?4)", "tttt",
                        now_text(t), actor, operation, detail),
                NULL, error_r);
}

/* Finishes an edit begun with cg_pstore_begin: log row and commit when rc
 * is 0, else rollback. */
static int finish(cg_pstore *s, int rc, const char *operation, const char *detail,
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
static bool plain_text(const char *t, size_t max)
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
static bool name_ok(const char *name)
{
    return plain_text(name, CG_NAME_MAX) && name[0] != '@' && !strpbrk(name, "*%\"\\/");
}

static int bad_name(const char *what, const char *name, const char **error_r)
{
    *error_r = say("invalid %s name '%.64s': 1-255 printable characters, no spaces, "
                   "not starting with @, none of * %% \" \\ /", what, name ? name : "");
    return CG_E_INVAL;
}

/* The id of a named principal or group: CG_E_NOTFOUND with a sentence
 * naming what is unknown. */
static int id_of(cg_pstore *s, bool group, const char *name, int64_t *id, const char **error_r)
{
    bool found = false;
    int rc = one_int(s, prep(s, error_r, group ? "SELECT id FROM grp WHERE name = ?1"
                                               : "SELECT id FROM principal WHERE name = ?1",
                             "t", name),
                     id, &found, error_r);
    if (rc == 0 && !found) {
        *error_r = say("unknown %s '%.200s'", group ? "group" : "principal", name);
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

static int principal_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
{
    return id_of(s, false, name, id, error_r);
}

static int group_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
{
    return id_of(s, true, name, id, error_r);
}

/* ---- principals --------------------------------------------------------------- */

int cg_pstore_principal_add(cg_pstore *s, const char *name, const char *kind,
                            const char *mailbox, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (!kind)
        kind = "user";
    if (!name_ok(name))
        return bad_name("principal", name, error_r);
    if (strcmp(kind, "user") != 0 && strcmp(kind, "server") != 0) {
        *error_r = say("invalid kind '%.64s': user or server", kind);
        return CG_E_INVAL;
    }
    if (mailbox && !name_ok(mailbox))
        return bad_name("mailbox", mailbox, error_r);
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    char t[CG_TIME_LEN], detail[600];
    rc = done(s, prep(s, error_r,
                      "INSERT INTO principal (name, kind, mailbox, enabled, created) "
                      "VALUES (?1, ?2, ?3, 1, ?4)", "tttt", name, kind, mailbox, now_text(t)),
              NULL, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = say("principal '%.200s' already exists", name);
    /* one principal per IMAP login: a mailbox that is another principal's
     * login would make LOGIN (and the master login made for it) ambiguous */
    int64_t n = 0;
    bool found;
    const char *login = mailbox ? mailbox : name;
    if (rc == 0)
        rc = one_int(s, prep(s, error_r, "SELECT count(*) FROM principal "
                                         "WHERE coalesce(mailbox, name) = ?1", "t", login),
                     &n, &found, error_r);
    if (rc == 0 && n > 1) {
        *error_r = say("IMAP login '%.200s' already belongs to another principal", login);
        rc = CG_E_EXISTS;
    }
    snprintf(detail, sizeof detail, "%s kind=%s%s%s", name, kind, mailbox ? " mailbox=" : "",
             mailbox ? mailbox : "");
    return finish(s, rc, "principal add", detail, error_r);
}

int cg_pstore_principal_set_enabled(cg_pstore *s, const char *name, bool enabled,
                                    const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int changes = 0;
    rc = done(s, prep(s, error_r, "UPDATE principal SET enabled = ?1 WHERE name = ?2", "it",
                      (int64_t)enabled, name),
              &changes, error_r);
    if (rc == 0 && changes == 0) {
        *error_r = say("unknown principal '%.200s'", name);
        rc = CG_E_NOTFOUND;
    }
    return finish(s, rc, enabled ? "principal enable" : "principal disable", name, error_r);
}

int cg_pstore_principal_remove(cg_pstore *s, const char *name, bool force,
                               const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int64_t id = 0, nrules = 0, npeers = 0;
    bool found;
    rc = principal_id(s, name, &id, error_r);
    if (rc == 0)
        rc = one_int(s, prep(s, error_r, "SELECT count(*) FROM acl_rule WHERE subject = ?1",
                             "t", name), &nrules, &found, error_r);
    if (rc == 0)
        rc = one_int(s, prep(s, error_r, "SELECT count(*) FROM peer WHERE principal_id = ?1",
                             "i", id), &npeers, &found, error_r);
    if (rc == 0 && (nrules || npeers) && !force) {
        *error_r = say("principal '%.200s' is named by %lld ACL rule(s) and %lld peer(s); "
                       "remove them first or use --force", name, (long long)nrules,
                       (long long)npeers);
        rc = CG_E_EXISTS;
    }
    /* --force: the rules and peers go in the same transaction, so no rule
     * is ever left naming a principal that a later add could recreate */
    if (rc == 0 && nrules)
        rc = done(s, prep(s, error_r, "DELETE FROM acl_rule WHERE subject = ?1", "t", name),
                  NULL, error_r);
    if (rc == 0 && npeers)
        rc = done(s, prep(s, error_r, "DELETE FROM peer WHERE principal_id = ?1", "i", id),
                  NULL, error_r);
    if (rc == 0)
        rc = done(s, prep(s, error_r, "DELETE FROM principal WHERE id = ?1", "i", id), NULL,
                  error_r);
    char detail[400];
    snprintf(detail, sizeof detail, "%s%s (%lld rule(s), %lld peer(s) removed)", name,
             force ? " --force" : "", (long long)nrules, (long long)npeers);
    return finish(s, rc, "principal remove", detail, error_r);
}

int cg_pstore_principal_list(cg_pstore *s, const char *name, cg_pstore_principal_cb cb,
                             void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = prep(s, error_r,
                            "SELECT id, name, kind, mailbox, enabled, created FROM principal "
                            "WHERE ?1 IS NULL OR name = ?1 ORDER BY name", "t", name);
    if (!st)
        return CG_E_DB;
    int r, rc = 0, n = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cg_pstore_principal p = {
            .id = sqlite3_column_int64(st, 0),
            .name = col_text(st, 1),
            .kind = col_text(st, 2),
            .mailbox = col_text(st, 3),
            .enabled = sqlite3_column_int(st, 4) != 0,
            .created = col_text(st, 5),
        };
        n++;
        if ((rc = cb(ctx, &p)) != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    if (rc == 0 && name && n == 0) {
        *error_r = say("unknown principal '%.200s'", name);
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

/* ---- credentials ---------------------------------------------------------------- */

static bool hex_lower(const char *t, size_t len)
{
    if (!t || strlen(t) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)t[i]) && !(t[i] >= 'a' && t[i] <= 'f'))
            return false;
    return true;
}

/* What the schema cannot check. CIDRs are canonicalised by the caller
 * (policy/identity.h's cg_cidr_parse); here only their alphabet. */
static int cred_check(const char *type, const char *value, const uint8_t *secret,
                      size_t secret_len, const char *md5, const char *sha256,
                      const char **error_r)
{
    if (!type) {
        *error_r = "no credential type";
        return CG_E_INVAL;
    }
    if (strcmp(type, "cert") == 0) {
        if (!hex_lower(value, 64)) {
            *error_r = "certificate fingerprint must be 64 lowercase hex characters (SHA-256)";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "cert-name") == 0) {
        static const char *const pfx[] = { "email:", "dns:", "uri:", "cn:" };
        bool ok = false;
        for (size_t i = 0; value && i < CG_ARRAY_LEN(pfx); i++)
            if (strncmp(value, pfx[i], strlen(pfx[i])) == 0 && value[strlen(pfx[i])])
                ok = true;
        for (const char *p = value; ok && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                ok = false;
        if (!ok || strlen(value) > 1024) {
            *error_r = "certificate name must be email:A, dns:D, uri:U or cn:C";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "psk") == 0) {
        if (!plain_text(value, 128)) {
            *error_r = "PSK identity must be 1-128 printable characters without spaces";
            return CG_E_INVAL;
        }
        if (!secret || secret_len < 16 || secret_len > 64) {
            *error_r = "PSK key must be 16 to 64 bytes";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "address") == 0) {
        if (!value || !*value || strlen(value) > 64 ||
            strspn(value, "0123456789abcdefABCDEF.:/") != strlen(value)) {
            *error_r = "malformed CIDR";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "digest") == 0) {
        if (!value || !*value || strlen(value) > 255 || strpbrk(value, "\"\\")) {
            *error_r = "digest realm must be 1-255 characters without \" or \\";
            return CG_E_INVAL;
        }
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                *error_r = "digest realm must not contain control characters";
                return CG_E_INVAL;
            }
        if (!hex_lower(md5, 32) || !hex_lower(sha256, 64)) {
            *error_r = "digest HA1 must be lowercase hex (32 for MD5, 64 for SHA-256)";
            return CG_E_INVAL;
        }
    } else {
        *error_r = say("unknown credential type '%.64s': cert, cert-name, psk, address or digest",
                       type);
        return CG_E_INVAL;
    }
    return 0;
}

int cg_pstore_cred_add(cg_pstore *s, const char *principal, const char *type,
                       const char *value, const uint8_t *secret, size_t secret_len,
                       const char *ha1_md5, const char *ha1_sha256, int64_t *id_out,
                       const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cred_check(type, value, secret, secret_len, ha1_md5, ha1_sha256, error_r);
    if (rc < 0)
        return rc;
    bool psk = strcmp(type, "psk") == 0, digest = strcmp(type, "digest") == 0;
    /* host names compare case-insensitively (RFC 4343): one stored form,
     * so the unique index also refuses "dns:A.example" beside "dns:a.example" */
    char lowered[1100];
    if (strcmp(type, "cert-name") == 0 && strncmp(value, "dns:", 4) == 0) {
        cg_strlcpy(lowered, value, sizeof lowered);
        for (char *p = lowered + 4; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        value = lowered;
    }
    rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int64_t pid = 0;
    rc = principal_id(s, principal, &pid, error_r);
    char t[CG_TIME_LEN];
    if (rc == 0)
        rc = done(s, prep(s, error_r,
                          "INSERT INTO credential (principal_id, type, value, secret, ha1_md5, "
                          "ha1_sha256, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", "ittbttt",
                          pid, type, value, psk ? (const void *)secret : NULL,
                          psk ? secret_len : (size_t)0, digest ? ha1_md5 : NULL,
                          digest ? ha1_sha256 : NULL, now_text(t)),
                  NULL, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = digest ? say("principal '%.200s' already has a digest credential for realm '%.200s'",
                                principal, value)
                 : psk ? say("PSK identity '%.200s' is already registered", value)
                       : say("%s credential '%.200s' is already registered", type, value);
    int64_t id = rc == 0 ? sqlite3_last_insert_rowid(H(s)) : 0;
    /* the log names the credential, never its secret */
    char detail[1500];
    snprintf(detail, sizeof detail, "%s %s %s (id %lld)", principal, type, value, (long long)id);
    rc = finish(s, rc, "cred add", detail, error_r);
    if (rc == 0 && id_out)
        *id_out = id;
    return rc;
}

int cg_pstore_cred_remove(cg_pstore *s, const char *principal, int64_t id,
                          const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int64_t pid = 0;
    int changes = 0;
    rc = principal_id(s, principal, &pid, error_r);
    if (rc == 0)
        rc = done(s, prep(s, error_r, "DELETE FROM credential WHERE id = ?1 AND principal_id = ?2",
                          "ii", id, pid), &changes, error_r);
    if (rc == 0 && changes == 0) {
        *error_r = say("principal '%.200s' has no credential %lld", principal, (long long)id);
        rc = CG_E_NOTFOUND;
    }
    char detail[300];
    snprintf(detail, sizeof detail, "%s id %lld", principal, (long long)id);
    return finish(s, rc, "cred remove", detail, error_r);
}

int cg_pstore_cred_list(cg_pstore *s, const char *principal, cg_pstore_cred_cb cb, void *ctx,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int64_t pid = 0;
    int rc = principal_id(s, principal, &pid, error_r);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = prep(s, error_r,
                            "SELECT id, principal_id, type, value, created, length(secret) "
                            "FROM credential WHERE principal_id = ?1 ORDER BY id", "i", pid);
    if (!st)
        return CG_E_DB;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cg_pstore_cred c = {
            .id = sqlite3_column_int64(st, 0),
            .principal_id = sqlite3_column_int64(st, 1),
            .type = col_text(st, 2),
            .value = col_text(st, 3),
            .created = col_text(st, 4),
            .secret_len = (size_t)sqlite3_column_int64(st, 5),
        };
        if ((rc = cb(ctx, &c)) != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- groups ---------------------------------------------------------------------- */

int cg_pstore_group_add(cg_pstore *s, const char *group, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (!name_ok(group))
        return bad_name("group", group, error_r);
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    char t[CG_TIME_LEN];
    rc = done(s, prep(s, error_r, "INSERT INTO grp (name, created) VALUES (?1, ?2)", "tt",
                      group, now_text(t)), NULL, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = say("group '%.200s' already exists", group);
    return finish(s, rc, "group add", group, error_r);
}

int cg_pstore_group_member(cg_pstore *s, const char *group, const char *principal, bool add,
                           const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int64_t gid = 0, pid = 0;
    int changes = 0;
    rc = group_id(s, group, &gid, error_r);
    if (rc == 0)
        rc = principal_id(s, principal, &pid, error_r);
    if (rc == 0)
        rc = done(s, add ? prep(s, error_r, "INSERT INTO grp_member (group_id, principal_id) "
                                            "VALUES (?1, ?2)", "ii", gid, pid)
                         : prep(s, error_r, "DELETE FROM grp_member WHERE group_id = ?1 AND "
                                            "principal_id = ?2", "ii", gid, pid),
                  &changes, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = say("'%.200s' is already a member of '%.200s'", principal, group);
    else if (rc == 0 && changes == 0) {
        *error_r = say("'%.200s' is not a member of '%.200s'", principal, group);
        rc = CG_E_NOTFOUND;
    }
    char detail[600];
    snprintf(detail, sizeof detail, "%s %s", group, principal);
    return finish(s, rc, add ? "group member-add" : "group member-remove", detail, error_r);
}

int cg_pstore_group_list(cg_pstore *s, cg_pstore_group_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = prep(s, error_r,
                            "SELECT g.name, p.name FROM grp g "
                            "LEFT JOIN grp_member m ON m.group_id = g.id "
                            "LEFT JOIN principal p ON p.id = m.principal_id "
                            "ORDER BY g.name, p.name", "");
    if (!st)
        return CG_E_DB;
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = cb(ctx, col_text(st, 0), col_text(st, 1))) != 0)
            break;
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(s);
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}
