/* store/policy_store_impl.h — what the policy store's edits share inside
 * store/: statements with arguments on either backend (policy_sql.c),
 * the end of an edit (log row, commit or rollback), name checks and
 * lookups by name (policy_store.c). SQL is written once, with ?N
 * placeholders and RETURNING, in the dialect SQLite and PostgreSQL share.
 * Not for callers outside store/. */
#ifndef CG_POLICY_STORE_IMPL_H
#define CG_POLICY_STORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cg_util.h"
#include "store/policy_store.h"

/* A statement with its arguments bound (SQLite) or already run
 * (PostgreSQL); a row of its result. */
typedef struct cg_ps_stmt cg_ps_stmt;
typedef struct cg_ps_row cg_ps_row;

/* The most arguments a statement takes. */
#define CG_PS_MAXARGS 12

/* One argument: type 't' text (t NULL: SQL NULL), 'i' int64, 'b' blob
 * (b NULL: SQL NULL). */
typedef struct cg_ps_arg {
    char type;
    const char *t;
    int64_t i;
    const void *b;
    size_t n;
} cg_ps_arg;

/* Prepares sql and binds the arguments described by types: 't' text (NULL
 * binds NULL), 'i' int64, 'b' blob (pointer, size_t). NULL (and
 * *error_r) on failure; cg_ps_done, cg_ps_one_int and cg_ps_rows accept
 * that NULL. */
cg_ps_stmt *cg_ps_prep(cg_pstore *s, const char **error_r, const char *sql,
                       const char *types, ...);
/* The same with the arguments in an array of n. */
cg_ps_stmt *cg_ps_prepa(cg_pstore *s, const char **error_r, const char *sql, int n,
                        const cg_ps_arg *args);
/* Runs a statement that returns no rows and frees it: 0, CG_E_EXISTS on
 * a constraint (the caller replaces the sentence to say which),
 * CG_E_BUSY or CG_E_DB. *changes (may be NULL): rows changed. */
int cg_ps_done(cg_pstore *s, cg_ps_stmt *st, int *changes, const char **error_r)
    __attribute__((warn_unused_result));
/* One integer from a one-row query (or INSERT ... RETURNING id); *found
 * false when no row. Errors as cg_ps_done. */
int cg_ps_one_int(cg_pstore *s, cg_ps_stmt *st, int64_t *v, bool *found,
                  const char **error_r) __attribute__((warn_unused_result));

/* Column i of a row: text (NULL for SQL NULL), integer, blob (NULL for
 * SQL NULL; valid during the row callback). */
const char *cg_ps_col_text(const cg_ps_row *r, int i);
int64_t cg_ps_col_int(const cg_ps_row *r, int i);
const uint8_t *cg_ps_col_blob(cg_ps_row *r, int i, size_t *len);

/* Runs st (from cg_ps_prep: NULL gives CG_E_DB) and calls row(r, arg)
 * for every row until it returns non-zero, which is then returned;
 * frees st. CG_E_DB with *error_r when a step fails. */
typedef int (*cg_ps_row_fn)(cg_ps_row *r, void *arg);
int cg_ps_rows(cg_pstore *s, cg_ps_stmt *st, cg_ps_row_fn row, void *arg,
               const char **error_r) __attribute__((warn_unused_result));
/* A query without arguments over a table of any size, inside a read
 * transaction (PostgreSQL reads it through a cursor, in batches). */
int cg_ps_each(cg_pstore *s, const char *sql, cg_ps_row_fn row, void *arg,
               const char **error_r) __attribute__((warn_unused_result));

/* A read transaction: one committed state for several queries. */
int cg_ps_read_begin(cg_pstore *s, const char **error_r) __attribute__((warn_unused_result));
int cg_ps_read_end(cg_pstore *s, int rc, const char **error_r)
    __attribute__((warn_unused_result));

/* ?N placeholders written as PostgreSQL's $N, outside quoted literals;
 * out has room for strlen(sql) + 1 bytes. */
void cg_ps_dollar(const char *sql, char *out);

/* The time now, RFC 3339, in buf. */
const char *cg_ps_now(char buf[CG_TIME_LEN]);

/* Begins an edit (BEGIN IMMEDIATE; on PostgreSQL a transaction holding
 * the store's edit lock); a NULL *error_r is pointed at scratch first,
 * so the edit can always say why. */
int cg_ps_begin(cg_pstore *s, const char ***error_r) __attribute__((warn_unused_result));
/* Finishes an edit begun with cg_ps_begin: log row and commit when rc
 * is 0, else rollback. Returns the outcome. */
int cg_ps_finish(cg_pstore *s, int rc, const char *operation, const char *detail,
                 const char **error_r) __attribute__((warn_unused_result));

/* Printable, no spaces, 1..max bytes. */
bool cg_ps_plain_text(const char *t, size_t max);
/* A principal name, IMAP login or group name (see policy_store.c). */
bool cg_ps_name_ok(const char *name);
/* CG_E_INVAL with the sentence that says what a name may be. */
int cg_ps_bad_name(const char *what, const char *name, const char **error_r)
    __attribute__((warn_unused_result));
/* The id of a named principal or group: CG_E_NOTFOUND with a sentence
 * naming what is unknown. */
int cg_ps_principal_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
    __attribute__((warn_unused_result));
int cg_ps_group_id(cg_pstore *s, const char *name, int64_t *id, const char **error_r)
    __attribute__((warn_unused_result));

#endif
