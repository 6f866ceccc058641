/* policy_store.h — the policy database behind one interface: open, load a
 * snapshot through a visitor, notice committed changes, and the edits that
 * cpmgatectl makes. Only this layer speaks SQL, so another backend
 * (PostgreSQL, LISTEN/NOTIFY) can slot in beside SQLite.
 * Every edit runs in one transaction together with its policy_log row. */
#ifndef CG_POLICY_STORE_H
#define CG_POLICY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest principal (and group) name the store accepts, in bytes:
 * every buffer that holds one is CG_NAME_MAX + 1. */
#define CG_NAME_MAX 255

typedef struct cg_pstore cg_pstore;
struct cg_db;

enum cg_pstore_open_flags {
    CG_PSTORE_READONLY = 1, /* the gateway's watcher/loader */
    CG_PSTORE_CREATE = 2,   /* cpmgatectl init */
};

/* path: a SQLite file, or a PostgreSQL database (a postgresql:// or
 * postgres:// URL, or a libpq "key=value ..." string); see
 * cg_pstore_url. The password comes from libpq's own places
 * (PGPASSWORD, PGPASSFILE, ~/.pgpass) or cg_pstore_set_password_file. */
int cg_pstore_open(const char *path, int flags, cg_pstore **out,
                   const char **error_r) __attribute__((warn_unused_result));
/* The same with a PostgreSQL password (policy_db_password_file); NULL:
 * libpq's own places. Ignored for a file. */
int cg_pstore_open_auth(const char *path, const char *password, int flags, cg_pstore **out,
                        const char **error_r) __attribute__((warn_unused_result));
void cg_pstore_close(cg_pstore *s);
/* The SQLite handle; NULL for PostgreSQL. */
struct cg_db *cg_pstore_db(cg_pstore *s);
/* Whether a policy_db value names a PostgreSQL database. */
bool cg_pstore_url(const char *name);
bool cg_pstore_is_pg(const cg_pstore *s);
/* The database as messages may name it: a file's path, or the URL with
 * any password replaced by "xxx". */
const char *cg_pstore_label(const cg_pstore *s);
/* Whether the last use of the store succeeded (a SQLite file is always
 * up; PostgreSQL is down from a lost connection until a reconnect). */
bool cg_pstore_up(cg_pstore *s);
/* A policy_db value fit for a message: a password in a URL's user part,
 * its query (password=) or a key=value string becomes "xxx". */
void cg_pstore_redact(const char *in, char *out, size_t cap);

/* Copies the whole policy of from into to (either backend), ids kept, in
 * one transaction of to with its policy_log row. The target must hold no
 * policy unless replace, which removes what it holds in the same
 * transaction (CG_E_EXISTS otherwise). summary: what was copied. */
int cg_pstore_copy(cg_pstore *from, cg_pstore *to, bool replace, char *summary, size_t cap,
                   const char **error_r) __attribute__((warn_unused_result));

/* ---- PostgreSQL: reconnecting and notifications ------------------------ */

/* A new connection for a store that lost its own (the watcher's thread):
 * 0 (the next cg_pstore_poll_changed reports a change, so everything is
 * reloaded), or CG_E_UNAVAIL / CG_E_DB with the sentence. A no-op on a
 * file. */
int cg_pstore_reconnect(cg_pstore *s, const char **error_r)
    __attribute__((warn_unused_result));
/* Makes the next cg_pstore_poll_changed report a change; any thread. */
void cg_pstore_mark_changed(cg_pstore *s);

/* A second connection that LISTENs for the store's notifications, read
 * without blocking (its socket is watched by an event loop). Opening
 * blocks (connect); the rest is for one thread at a time. */
typedef struct cg_pslisten cg_pslisten;
int cg_pslisten_open(cg_pstore *s, cg_pslisten **out, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pslisten_fd(const cg_pslisten *l);
/* Reads what the socket has: *notified when the policy changed (the store
 * then reports a change), CG_E_DB when the connection is lost (the store
 * is then down until cg_pstore_reconnect). */
int cg_pslisten_read(cg_pslisten *l, bool *notified, const char **error_r)
    __attribute__((warn_unused_result));
void cg_pslisten_close(cg_pslisten *l);

/* *changed: whether another connection committed since the last call
 * (PRAGMA data_version; on PostgreSQL, whether a notification arrived or
 * a reconnect happened). 0, or CG_E_DB when the version cannot be read
 * (*changed false; error_r, which may be NULL, says why). */
int cg_pstore_poll_changed(cg_pstore *s, bool *changed, const char **error_r)
    __attribute__((warn_unused_result));

/* Reads the whole policy inside one read transaction. A callback that
 * returns non-zero stops the load with that code. */
typedef struct cg_pstore_visitor {
    int (*principal)(void *ctx, int64_t id, const char *name, const char *kind,
                     const char *mailbox, bool enabled);
    int (*credential)(void *ctx, int64_t id, int64_t principal_id,
                      const char *type, const char *value,
                      const uint8_t *secret, size_t secret_len,
                      const char *ha1_md5, const char *ha1_sha256);
    int (*group)(void *ctx, int64_t id, const char *name);
    int (*member)(void *ctx, int64_t group_id, int64_t principal_id);
    int (*rule)(void *ctx, int64_t id, const char *effect, const char *subject,
                const char *service, const char *pattern, unsigned rights);
    int (*pubkey)(void *ctx, int64_t id, const char *key_id,
                  int64_t principal_id, const char *alg, const char *pem);
    int (*require_signed)(void *ctx, const char *pattern);
    int (*peer)(void *ctx, const char *domain, int64_t principal_id,
                const char *auth);
} cg_pstore_visitor;

int cg_pstore_load(cg_pstore *s, const cg_pstore_visitor *v, void *ctx,
                   const char **error_r) __attribute__((warn_unused_result));

/* policy_log rows with seq > after, in order (the gateway copies them into
 * the audit chain). */
typedef int (*cg_pstore_log_cb)(void *ctx, int64_t seq, const char *time,
                                const char *actor, const char *operation,
                                const char *detail);
int cg_pstore_log_since(cg_pstore *s, int64_t after, cg_pstore_log_cb cb,
                        void *ctx, const char **error_r) __attribute__((warn_unused_result));

/* Inside an open transaction: append the policy_log row for this change.
 * actor is the OS user running cpmgatectl. */
int cg_pstore_log_change(cg_pstore *s, const char *operation,
                         const char *detail, const char **error_r)
    __attribute__((warn_unused_result));

/* Transactions for edits (BEGIN IMMEDIATE ... COMMIT). */
int cg_pstore_begin(cg_pstore *s, const char **error_r) __attribute__((warn_unused_result));
int cg_pstore_commit(cg_pstore *s, const char **error_r) __attribute__((warn_unused_result));
void cg_pstore_rollback(cg_pstore *s);

/* ---- principals, credentials, groups (edits for cpmgatectl) ---------- */
/* Each function below is one whole change: it opens its own transaction,
 * writes its policy_log row, and commits, or changes nothing. */

typedef struct cg_pstore_principal {
    int64_t id;
    const char *name, *kind, *mailbox, *created;
    bool enabled;
} cg_pstore_principal;

int cg_pstore_principal_add(cg_pstore *s, const char *name, const char *kind,
                            const char *mailbox, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pstore_principal_set_enabled(cg_pstore *s, const char *name,
                                    bool enabled, const char **error_r)
    __attribute__((warn_unused_result));
/* Refused (CG_E_EXISTS) while rules name the principal, unless force,
 * which removes those rules in the same transaction. */
int cg_pstore_principal_remove(cg_pstore *s, const char *name, bool force,
                               const char **error_r) __attribute__((warn_unused_result));
typedef int (*cg_pstore_principal_cb)(void *ctx, const cg_pstore_principal *p);
/* name NULL: all, by name; else only that one (CG_E_NOTFOUND if none). */
int cg_pstore_principal_list(cg_pstore *s, const char *name,
                             cg_pstore_principal_cb cb, void *ctx,
                             const char **error_r) __attribute__((warn_unused_result));

typedef struct cg_pstore_cred {
    int64_t id, principal_id;
    const char *type, *value, *created;
    size_t secret_len; /* psk key length; the key itself is never listed */
} cg_pstore_cred;

/* type/value as in the schema; secret: psk key; ha1_*: digest. */
int cg_pstore_cred_add(cg_pstore *s, const char *principal, const char *type,
                       const char *value, const uint8_t *secret,
                       size_t secret_len, const char *ha1_md5,
                       const char *ha1_sha256, int64_t *id_out,
                       const char **error_r) __attribute__((warn_unused_result));
int cg_pstore_cred_remove(cg_pstore *s, const char *principal, int64_t id,
                          const char **error_r) __attribute__((warn_unused_result));
typedef int (*cg_pstore_cred_cb)(void *ctx, const cg_pstore_cred *c);
int cg_pstore_cred_list(cg_pstore *s, const char *principal,
                        cg_pstore_cred_cb cb, void *ctx, const char **error_r)
    __attribute__((warn_unused_result));

int cg_pstore_group_add(cg_pstore *s, const char *group, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pstore_group_member(cg_pstore *s, const char *group,
                           const char *principal, bool add,
                           const char **error_r) __attribute__((warn_unused_result));
/* One call per (group, member); member NULL for a group with none. */
typedef int (*cg_pstore_group_cb)(void *ctx, const char *group,
                                  const char *member);
int cg_pstore_group_list(cg_pstore *s, cg_pstore_group_cb cb, void *ctx,
                         const char **error_r) __attribute__((warn_unused_result));

#endif
