/* store/policy_sql.c — the policy store's statements on either backend
 * (policy_store_impl.h): arguments bound to a prepared SQLite statement,
 * or sent with the statement to PostgreSQL (?N written as $N); rows read
 * through one accessor; outcomes mapped to CG_E_* codes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "common/cg_error.h"
#include "store/policy_backend.h"
#include "store/policy_store_impl.h"

/* PostgreSQL type oids of the arguments (catalog/pg_type.h) */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

#define FETCH_ROWS 20000
#define FETCH_SQL "FETCH 20000 FROM cg_each"

struct cg_ps_stmt {
    sqlite3_stmt *lite;
    PGresult *pg; /* run already; may be an error result */
};

struct cg_ps_row {
    sqlite3_stmt *lite;
    PGresult *pg;
    int row;
    unsigned char *blob; /* PostgreSQL: the last bytea decoded */
};

void cg_ps_dollar(const char *sql, char *out)
{
    bool quoted = false;
    for (; *sql; sql++, out++) {
        if (*sql == '\'')
            quoted = !quoted;
        *out = !quoted && *sql == '?' && sql[1] >= '0' && sql[1] <= '9' ? '$' : *sql;
    }
    *out = '\0';
}

static const char *lite_err(cg_pstore *s)
{
    return cg_say("policy database: %s", sqlite3_errmsg(cg_db_handle(s->db)));
}

static cg_ps_stmt *lite_prep(cg_pstore *s, const char **error_r, const char *sql, int n,
                             const cg_ps_arg *a)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(cg_db_handle(s->db), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = lite_err(s);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (a[i].type == 'i')
            sqlite3_bind_int64(st, i + 1, a[i].i);
        else if (a[i].type == 't' && a[i].t)
            sqlite3_bind_text(st, i + 1, a[i].t, -1, SQLITE_TRANSIENT);
        else if (a[i].type == 'b' && a[i].b)
            sqlite3_bind_blob(st, i + 1, a[i].b, (int)a[i].n, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, i + 1);
    }
    cg_ps_stmt *out = calloc(1, sizeof *out);
    if (!out) {
        sqlite3_finalize(st);
        *error_r = "out of memory";
        return NULL;
    }
    out->lite = st;
    return out;
}

static cg_ps_stmt *pg_prep(cg_pstore *s, const char **error_r, const char *sql, int n,
                           const cg_ps_arg *a)
{
    const char *vals[CG_PS_MAXARGS];
    int lens[CG_PS_MAXARGS], fmts[CG_PS_MAXARGS];
    Oid types[CG_PS_MAXARGS];
    char ints[CG_PS_MAXARGS][24];
    for (int i = 0; i < n; i++) {
        lens[i] = 0;
        fmts[i] = 0;
        if (a[i].type == 'i') {
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)a[i].i);
            vals[i] = ints[i];
            types[i] = OID_INT8;
        } else if (a[i].type == 't') {
            vals[i] = a[i].t;
            types[i] = OID_TEXT;
        } else {
            vals[i] = a[i].b;
            lens[i] = (int)a[i].n;
            fmts[i] = 1;
            types[i] = OID_BYTEA;
        }
    }
    size_t len = strlen(sql);
    char *text = malloc(len + 1);
    cg_ps_stmt *out = calloc(1, sizeof *out);
    if (!text || !out) {
        free(text);
        free(out);
        *error_r = "out of memory";
        return NULL;
    }
    cg_ps_dollar(sql, text);
    out->pg = PQexecParams(s->pg, text, n, types, vals, lens, fmts, 0);
    free(text);
    if (!out->pg) {
        *error_r = cg_pspg_error(s);
        free(out);
        return NULL;
    }
    return out;
}

cg_ps_stmt *cg_ps_prepa(cg_pstore *s, const char **error_r, const char *sql, int n,
                        const cg_ps_arg *args)
{
    if (n > CG_PS_MAXARGS) {
        *error_r = "too many statement arguments";
        return NULL;
    }
    return s->pg ? pg_prep(s, error_r, sql, n, args) : lite_prep(s, error_r, sql, n, args);
}

cg_ps_stmt *cg_ps_prep(cg_pstore *s, const char **error_r, const char *sql, const char *types,
                       ...)
{
    cg_ps_arg a[CG_PS_MAXARGS] = { { 0 } };
    int n = 0;
    va_list ap;
    va_start(ap, types);
    for (; types[n] && n < CG_PS_MAXARGS; n++) {
        a[n].type = types[n];
        if (types[n] == 't') {
            a[n].t = va_arg(ap, const char *);
        } else if (types[n] == 'i') {
            a[n].i = va_arg(ap, int64_t);
        } else {
            a[n].b = va_arg(ap, const void *);
            a[n].n = va_arg(ap, size_t);
        }
    }
    va_end(ap);
    if (types[n]) {
        *error_r = "too many statement arguments";
        return NULL;
    }
    return cg_ps_prepa(s, error_r, sql, n, a);
}

static void stmt_free(cg_ps_stmt *st)
{
    sqlite3_finalize(st->lite);
    PQclear(st->pg);
    free(st);
}

/* SQLite: the code for a failed step. */
static int lite_code(int r)
{
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return CG_E_EXISTS;
    return (r & 0xff) == SQLITE_BUSY ? CG_E_BUSY : CG_E_DB;
}

/* PostgreSQL: 0 for a result that succeeded, else the code and sentence. */
static int pg_outcome(cg_pstore *s, const PGresult *r, const char **error_r)
{
    ExecStatusType t = PQresultStatus(r);
    if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK)
        return 0;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    *error_r = msg ? cg_say("policy database: %s", msg) : cg_pspg_error(s);
    if (state && strncmp(state, "23", 2) == 0)
        return CG_E_EXISTS;
    if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
        return CG_E_BUSY;
    return CG_E_DB;
}

int cg_ps_done(cg_pstore *s, cg_ps_stmt *st, int *changes, const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int rc = 0;
    if (st->pg) {
        rc = pg_outcome(s, st->pg, error_r);
        if (rc == 0 && changes)
            *changes = atoi(PQcmdTuples(st->pg));
    } else {
        int r = sqlite3_step(st->lite);
        if (r == SQLITE_DONE) {
            if (changes)
                *changes = sqlite3_changes(cg_db_handle(s->db));
        } else {
            *error_r = lite_err(s);
            rc = lite_code(r);
        }
    }
    stmt_free(st);
    return rc;
}

/* ---- rows ----------------------------------------------------------------- */

const char *cg_ps_col_text(const cg_ps_row *r, int i)
{
    if (r->lite)
        return (const char *)sqlite3_column_text(r->lite, i);
    return PQgetisnull(r->pg, r->row, i) ? NULL : PQgetvalue(r->pg, r->row, i);
}

int64_t cg_ps_col_int(const cg_ps_row *r, int i)
{
    if (r->lite)
        return sqlite3_column_int64(r->lite, i);
    return PQgetisnull(r->pg, r->row, i) ? 0 : strtoll(PQgetvalue(r->pg, r->row, i), NULL, 10);
}

const uint8_t *cg_ps_col_blob(cg_ps_row *r, int i, size_t *len)
{
    *len = 0;
    if (r->lite) {
        const uint8_t *b = sqlite3_column_blob(r->lite, i);
        if (b)
            *len = (size_t)sqlite3_column_bytes(r->lite, i);
        return b;
    }
    if (PQgetisnull(r->pg, r->row, i))
        return NULL;
    PQfreemem(r->blob);
    r->blob = PQunescapeBytea((const unsigned char *)PQgetvalue(r->pg, r->row, i), len);
    return r->blob;
}

/* Every row of a PostgreSQL result; 0 or what row() returned. */
static int pg_each_row(PGresult *res, cg_ps_row_fn row, void *arg)
{
    cg_ps_row r = { .pg = res };
    int rc = 0;
    int n = PQntuples(res);
    for (r.row = 0; rc == 0 && r.row < n; r.row++)
        rc = row(&r, arg);
    PQfreemem(r.blob);
    return rc;
}

int cg_ps_rows(cg_pstore *s, cg_ps_stmt *st, cg_ps_row_fn row, void *arg,
               const char **error_r)
{
    if (!st)
        return CG_E_DB;
    int rc = 0;
    if (st->pg) {
        rc = pg_outcome(s, st->pg, error_r);
        if (rc == 0)
            rc = pg_each_row(st->pg, row, arg);
    } else {
        cg_ps_row r = { .lite = st->lite };
        int step;
        while ((step = sqlite3_step(st->lite)) == SQLITE_ROW) {
            rc = row(&r, arg);
            if (rc != 0)
                break;
        }
        if (rc == 0 && step != SQLITE_DONE) {
            *error_r = lite_err(s);
            rc = lite_code(step);
        }
    }
    stmt_free(st);
    return rc;
}

/* PostgreSQL: a cursor, fetched in batches, so a million rules never sit
 * in memory twice. */
static int pg_each(cg_pstore *s, const char *sql, cg_ps_row_fn row, void *arg,
                   const char **error_r)
{
    static const char head[] = "DECLARE cg_each NO SCROLL CURSOR FOR ";
    size_t cap = sizeof head + strlen(sql);
    char *declare = malloc(cap);
    if (declare)
        snprintf(declare, cap, "%s%s", head, sql);
    else {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    int rc = cg_pspg_exec(s, declare, error_r);
    free(declare);
    while (rc == 0) {
        PGresult *res = PQexec(s->pg, FETCH_SQL);
        if (!res) {
            *error_r = cg_pspg_error(s);
            return CG_E_DB;
        }
        rc = pg_outcome(s, res, error_r);
        bool last = rc == 0 && PQntuples(res) < FETCH_ROWS;
        if (rc == 0)
            rc = pg_each_row(res, row, arg);
        PQclear(res);
        if (last)
            break;
    }
    if (rc == 0)
        rc = cg_pspg_exec(s, "CLOSE cg_each", error_r);
    return rc;
}

int cg_ps_each(cg_pstore *s, const char *sql, cg_ps_row_fn row, void *arg,
               const char **error_r)
{
    if (s->pg)
        return pg_each(s, sql, row, arg, error_r);
    return cg_ps_rows(s, cg_ps_prep(s, error_r, sql, ""), row, arg, error_r);
}

int cg_ps_read_begin(cg_pstore *s, const char **error_r)
{
    if (s->pg)
        return cg_pspg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", error_r);
    return cg_db_begin_read(s->db, error_r);
}

int cg_ps_read_end(cg_pstore *s, int rc, const char **error_r)
{
    if (rc == 0)
        return s->pg ? cg_pspg_exec(s, "COMMIT", error_r) : cg_db_commit(s->db, error_r);
    if (s->pg)
        cg_pspg_rollback(s);
    else
        cg_db_rollback(s->db);
    return rc;
}

/* The first column of the first row; stops there (SQLite makes all of
 * an INSERT ... RETURNING's changes in its first step). */
typedef struct first {
    int64_t v;
    bool found;
} first;

static int first_int(cg_ps_row *r, void *arg)
{
    first *f = arg;
    f->v = cg_ps_col_int(r, 0);
    f->found = true;
    return 1;
}

int cg_ps_one_int(cg_pstore *s, cg_ps_stmt *st, int64_t *v, bool *found,
                  const char **error_r)
{
    first f = { 0, false };
    int rc = cg_ps_rows(s, st, first_int, &f, error_r);
    *found = f.found;
    if (f.found)
        *v = f.v;
    return rc == 1 ? 0 : rc;
}
