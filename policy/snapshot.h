/* snapshot.h — the immutable policy snapshot: principals, credential
 * indexes, groups, compiled ACL, keys, signed-only paths, peers. Built from
 * the policy store in one read transaction, published with an atomic
 * pointer swap; readers take a reference and never lock. */
#ifndef CG_SNAPSHOT_H
#define CG_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cg_pstore;
struct cg_acl;

typedef struct cg_principal {
    int64_t id;
    uint32_t idx;        /* 0..n-1 within this snapshot */
    const char *name;
    const char *mailbox; /* IMAP login: the mailbox column, else name */
    bool enabled;
    bool is_server;      /* kind = server */
    const uint32_t *groups; /* group indexes, sorted */
    uint32_t ngroups;
} cg_principal;

typedef struct cg_snapshot cg_snapshot;

/* Builds a snapshot from the store. error_r: one sentence. */
int cg_snapshot_build(struct cg_pstore *store, cg_snapshot **out,
                      const char **error_r) __attribute__((warn_unused_result));

/* Builds a snapshot from another source of the same calls, e.g. a
 * recorded policy (store/policy_cache.h): load calls v's callbacks with
 * ctx as cg_pstore_load would. */
struct cg_pstore_visitor;
typedef int (*cg_snapshot_loader)(void *src, const struct cg_pstore_visitor *v, void *ctx,
                                  const char **error_r);
int cg_snapshot_build_with(cg_snapshot_loader load, void *src, cg_snapshot **out,
                           const char **error_r) __attribute__((warn_unused_result));

/* Reference counting (atomic). A snapshot is freed at its last release. */
cg_snapshot *cg_snapshot_ref(cg_snapshot *s);
void cg_snapshot_release(cg_snapshot *s);

/* The process-wide current snapshot: publish swaps it in (taking over the
 * caller's reference); acquire returns a new reference, NULL before the
 * first publish. */
void cg_snapshot_publish(cg_snapshot *s);
cg_snapshot *cg_snapshot_acquire(void);

/* For the gateway's 200 ms timer, on its read-only store: when another
 * connection committed (PRAGMA data_version), builds and publishes a new
 * snapshot. 0 with *published telling whether it did, or a negative code
 * (*published false; the old snapshot stays in force; a build that met a
 * busy database is retried next call). */
int cg_snapshot_reload_if_changed(struct cg_pstore *ro_store, bool *published,
                                  const char **error_r) __attribute__((warn_unused_result));
/* The same, with building(arg, true) before a build and building(arg,
 * false) after it (not around the mere poll): the gateway shows a rebuild
 * in progress in its metrics. */
int cg_snapshot_reload_if_changed_cb(struct cg_pstore *ro_store,
                                     void (*building)(void *arg, bool on), void *arg,
                                     bool *published, const char **error_r)
    __attribute__((warn_unused_result));

/* Monotonic generation number of this snapshot (1, 2, ...). */
uint64_t cg_snapshot_generation(const cg_snapshot *s);

/* Lookups (no allocation, no I/O). */
size_t cg_snapshot_nprincipals(const cg_snapshot *s);
const cg_principal *cg_snapshot_principal(const cg_snapshot *s, uint32_t idx);
const cg_principal *cg_snapshot_principal_by_name(const cg_snapshot *s,
                                                  const char *name);
const cg_principal *cg_snapshot_principal_by_mailbox(const cg_snapshot *s,
                                                     const char *login);
/* By the store's id, the identity a connection carries across snapshots
 * (a name is for display: ids are never reused, names may be). NULL when
 * no principal of this snapshot has it. */
const cg_principal *cg_snapshot_principal_by_id(const cg_snapshot *s, int64_t id);
size_t cg_snapshot_ngroups(const cg_snapshot *s);
const char *cg_snapshot_group_name(const cg_snapshot *s, uint32_t gidx);
const struct cg_acl *cg_snapshot_acl(const cg_snapshot *s);

/* Content-manifest keys: NULL when key_id is unknown. */
typedef struct cg_pubkey {
    const char *key_id;
    const char *alg;   /* ecdsa-p256-sha256 | ed25519 | rsa-pss-sha256 */
    const char *pem;
    uint32_t principal_idx;
    void *evp;         /* EVP_PKEY *, parsed when the snapshot is built */
} cg_pubkey;
const cg_pubkey *cg_snapshot_pubkey(const cg_snapshot *s, const char *key_id);

/* Signed-only patterns (HTTP path patterns, ACL pattern syntax). */
size_t cg_snapshot_nrequire_signed(const cg_snapshot *s);
const char *cg_snapshot_require_signed(const cg_snapshot *s, size_t i);

typedef struct cg_peer {
    const char *domain;
    uint32_t principal_idx;
    bool auth_required;
} cg_peer;
const cg_peer *cg_snapshot_peer(const cg_snapshot *s, const char *domain);

#endif
