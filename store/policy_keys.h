/* policy_keys.h — the policy database's content-signing keys, signed-only
 * path patterns and remote peers (SPEC sections 6, 7, 9). Each edit is one
 * transaction with its policy_log row. Patterns and domains are validated
 * by the caller (cpmgatectl), which knows the ACL syntax; this layer
 * refuses only what the schema would. */
#ifndef CG_POLICY_KEYS_H
#define CG_POLICY_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/policy_store.h"

struct evp_pkey_st;

/* The manifest algorithm a key serves, from its type: EC on P-256 ->
 * "ecdsa-p256-sha256", Ed25519 -> "ed25519", RSA of at least 2048 bits ->
 * "rsa-pss-sha256"; NULL for any other key. */
const char *cg_pkey_alg(const struct evp_pkey_st *key);
/* Parses one PEM public key (SubjectPublicKeyInfo) and returns its
 * algorithm; *key_out (optional) receives the EVP_PKEY (caller frees). */
int cg_pkey_from_pem(const char *pem, size_t len, const char **alg_out,
                     struct evp_pkey_st **key_out, const char **error_r)
    __attribute__((warn_unused_result));

/* ---- keys --------------------------------------------------------------- */

typedef struct cg_pkeys_key {
    int64_t id;
    const char *key_id, *principal, *alg, *pem, *created;
} cg_pkeys_key;
typedef int (*cg_pkeys_key_cb)(void *ctx, const cg_pkeys_key *k);

/* Adds pem (a public key) as key_id for principal; the algorithm is
 * detected. CG_E_NOTFOUND (principal), CG_E_EXISTS (key_id), CG_E_INVAL
 * (not a usable public key). *alg_out (optional): the algorithm. */
int cg_pkeys_key_add(cg_pstore *s, const char *principal, const char *key_id,
                     const char *pem, const char **alg_out,
                     const char **error_r) __attribute__((warn_unused_result));
int cg_pkeys_key_remove(cg_pstore *s, const char *key_id, const char **error_r)
    __attribute__((warn_unused_result));
/* key_id NULL: all keys by key_id; else that one (CG_E_NOTFOUND). */
int cg_pkeys_key_list(cg_pstore *s, const char *key_id, cg_pkeys_key_cb cb,
                      void *ctx, const char **error_r) __attribute__((warn_unused_result));

/* ---- signed-only paths -------------------------------------------------- */

typedef int (*cg_pkeys_pattern_cb)(void *ctx, const char *pattern,
                                   const char *created);
int cg_pkeys_require_signed_add(cg_pstore *s, const char *pattern,
                                const char **error_r) __attribute__((warn_unused_result));
int cg_pkeys_require_signed_remove(cg_pstore *s, const char *pattern,
                                   const char **error_r) __attribute__((warn_unused_result));
int cg_pkeys_require_signed_list(cg_pstore *s, cg_pkeys_pattern_cb cb,
                                 void *ctx, const char **error_r)
    __attribute__((warn_unused_result));

/* ---- peers -------------------------------------------------------------- */

typedef struct cg_pkeys_peer {
    const char *domain, *principal, *auth, *created;
} cg_pkeys_peer;
typedef int (*cg_pkeys_peer_cb)(void *ctx, const cg_pkeys_peer *p);
/* auth: "required" | "optional". */
int cg_pkeys_peer_add(cg_pstore *s, const char *domain, const char *principal,
                      const char *auth, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pkeys_peer_remove(cg_pstore *s, const char *domain, const char **error_r)
    __attribute__((warn_unused_result));
int cg_pkeys_peer_list(cg_pstore *s, cg_pkeys_peer_cb cb, void *ctx,
                       const char **error_r) __attribute__((warn_unused_result));

#endif
