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

int cg_pstore_open(const char *path, int flags, cg_pstore **out,
                   const char **error_r) __attribute__((warn_unused_result));
void cg_pstore_close(cg_pstore *s);
struct cg_db *cg_pstore_db(cg_pstore *s);

/* *changed: whether another connection committed since the last call
 * (PRAGMA data_version). 0, or CG_E_DB when the version cannot be read
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
