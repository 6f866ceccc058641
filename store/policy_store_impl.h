/* store/policy_store_impl.h — what the policy store's edits share inside
 * store/ (policy_store.c defines it): statements with bound arguments,
 * the end of an edit (log row, commit or rollback), name checks and
 * lookups by name. Not for callers outside store/. */
#ifndef CG_POLICY_STORE_IMPL_H
#define CG_POLICY_STORE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "common/cg_util.h"
#include "store/policy_store.h"

/* The store's SQLite handle, and its last error as a sentence. */
sqlite3 *cg_ps_sqlite(cg_pstore *s);
const char *cg_ps_dberr(cg_pstore *s);

/* Prepares sql and binds the arguments described by types: 't' text (NULL
 * binds NULL), 'i' int64, 'b' blob (pointer, size_t). NULL (and
 * *error_r) on failure; cg_ps_done and cg_ps_one_int accept that NULL. */
sqlite3_stmt *cg_ps_prep(cg_pstore *s, const char **error_r, const char *sql,
                         const char *types, ...);
/* Steps a statement that returns no rows and finalizes it: 0, CG_E_EXISTS
 * on a constraint (the caller replaces the sentence to say which),
 * CG_E_BUSY or CG_E_DB. *changes (may be NULL): rows changed. */
int cg_ps_done(cg_pstore *s, sqlite3_stmt *st, int *changes, const char **error_r)
    __attribute__((warn_unused_result));
/* One integer from a one-row query; *found false when no row. */
int cg_ps_one_int(cg_pstore *s, sqlite3_stmt *st, int64_t *v, bool *found,
                  const char **error_r) __attribute__((warn_unused_result));
/* Column i of a row as text (NULL for SQL NULL). */
const char *cg_ps_col_text(sqlite3_stmt *st, int i);
/* The time now, RFC 3339, in buf. */
const char *cg_ps_now(char buf[CG_TIME_LEN]);

/* Steps st (from cg_ps_prep: NULL gives CG_E_DB) and calls row(st, arg)
 * for every row until it returns non-zero, which is then returned;
 * finalizes. CG_E_DB with *error_r when a step fails. */
typedef int (*cg_ps_row_fn)(sqlite3_stmt *st, void *arg);
int cg_ps_rows(cg_pstore *s, sqlite3_stmt *st, cg_ps_row_fn row, void *arg,
               const char **error_r) __attribute__((warn_unused_result));

/* Begins an edit (BEGIN IMMEDIATE); a NULL *error_r is pointed at scratch
 * first, so the edit can always say why. */
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
