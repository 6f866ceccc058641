/* store/policy_backend.h — the policy store's handle and what its two
 * backends do differently: SQLite (store/db.h) or PostgreSQL (libpq,
 * store/policy_store_pg.c). Only for store/policy_*.c. */
#ifndef CG_POLICY_BACKEND_H
#define CG_POLICY_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/db.h"
#include "store/policy_store.h"

struct pg_conn; /* libpq's PGconn */

/* The advisory lock every edit holds on PostgreSQL, as BEGIN IMMEDIATE
 * does on SQLite: edits are one at a time. */
#define CG_PSPG_EDIT_LOCK "1667327346"

struct cg_pstore {
    cg_db *db;             /* SQLite; NULL for PostgreSQL */
    struct pg_conn *pg;    /* PostgreSQL; NULL for SQLite */
    char *conninfo;        /* PostgreSQL: what reconnects use */
    char *password;        /* PostgreSQL: from the configuration, or NULL */
    char *label;           /* the database as messages name it (no password) */
    bool readonly;
    int64_t data_version;  /* SQLite */
    atomic_bool changed;   /* PostgreSQL: a notification arrived */
    atomic_bool up;        /* the last use of the store succeeded */
};

/* PostgreSQL: connects (conninfo: a postgresql:// URL or key=value
 * string), checks or applies the migrations, as cg_pstore_open does for
 * a file. */
int cg_pspg_open(cg_pstore *s, const char *conninfo, const char *password, int flags,
                 const char **error_r)
    __attribute__((warn_unused_result));
void cg_pspg_close(cg_pstore *s);
/* One command without arguments or rows ("BEGIN", "COMMIT"). */
int cg_pspg_exec(cg_pstore *s, const char *sql, const char **error_r)
    __attribute__((warn_unused_result));
/* ROLLBACK; a failure leaves nothing to undo. */
void cg_pspg_rollback(cg_pstore *s);
/* The sentence for the connection's last error; marks the store down when
 * the connection is gone. */
const char *cg_pspg_error(cg_pstore *s);

#endif
