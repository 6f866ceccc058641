/* audit_canon.h — the pure parts of the audit log (SPEC section 5): the
 * canonical JSON of a record, the hash chain step, checkpoint signatures,
 * and the verifier that proves an audit database intact or names the first
 * record that breaks it. Used by the writer, cpmgatectl and the tests. */
#ifndef CG_AUDIT_CANON_H
#define CG_AUDIT_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/audit.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;

#define CG_AUDIT_HASH_LEN 32
/* Longest canon: every string field at its slot cap, each byte escaped. */
#define CG_AUDIT_CANON_MAX 16384

/* Canon JSON of r with the writer's seq and time: compact, the keys of
 * SPEC 5 in that order, absent values null, strings JSON-escaped UTF-8
 * (invalid UTF-8 becomes U+FFFD so the text is always valid). After
 * "reason" come "node", "originator" and "origin_txid" in that order, each
 * only when not null: a record without them has the canon (and the hash)
 * it had before they existed. Returns the length (out is NUL-terminated)
 * or CG_E_LIMIT when cap is too small. */
int cg_audit_canon(char *out, size_t cap, uint64_t seq, const char *time,
                   const cg_audit_rec *r);

/* A canon parsed back into fields; strings point into buf. */
typedef struct cg_audit_parsed {
    uint64_t seq;
    const char *time;
    cg_audit_rec rec;
    char buf[CG_AUDIT_CANON_MAX];
} cg_audit_parsed;

/* Strict parse of a canon (keys in order, no whitespace; the trailing
 * node, originator, origin_txid each optional, in order, never null). 0 or
 * CG_E_PARSE. Callers that need "is canonical" re-encode and compare. */
int cg_audit_canon_parse(const char *canon, size_t len, cg_audit_parsed *out)
    __attribute__((warn_unused_result));

/* hash = SHA-256(prev || canon) (OpenSSL's EVP: SHA-NI where the CPU has
 * it). */
void cg_audit_chain_hash(const uint8_t prev[CG_AUDIT_HASH_LEN],
                         const char *canon, size_t len,
                         uint8_t out[CG_AUDIT_HASH_LEN]);
/* The same in a context the caller keeps (EVP_MD_CTX_new), so a writer
 * hashing record after record allocates nothing per record. */
void cg_audit_chain_hash_in(EVP_MD_CTX *c, const uint8_t prev[CG_AUDIT_HASH_LEN],
                            const char *canon, size_t len, uint8_t out[CG_AUDIT_HASH_LEN]);

/* The signed checkpoint text: without a node (checkpoints written before
 * node ids, and those of a gateway with none)
 * "cpmgate-audit-checkpoint-v1\n" seq "\n" hex(hash); with one
 * "cpmgate-audit-checkpoint-v2\n" seq "\n" hex(hash) "\n" node, so the
 * node is signed too. node must pass cg_audit_node_ok. Returns length. */
#define CG_AUDIT_CKPT_MSG_MAX 192
size_t cg_audit_checkpoint_msg(uint64_t seq, const uint8_t hash[CG_AUDIT_HASH_LEN],
                               const char *node, char out[CG_AUDIT_CKPT_MSG_MAX]);

/* Keys: Ed25519 (PureEdDSA) or ECDSA P-256 with SHA-256. */
int cg_audit_key_load_private(const char *path, EVP_PKEY **out, const char **error_r)
    __attribute__((warn_unused_result));
/* Accepts a public key PEM, or a private key PEM (its public half). */
int cg_audit_key_load_public(const char *path, EVP_PKEY **out, const char **error_r)
    __attribute__((warn_unused_result));
int cg_audit_key_from_pem(const char *pem, EVP_PKEY **out) __attribute__((warn_unused_result));
/* Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (65 bytes). */
int cg_audit_key_fingerprint(EVP_PKEY *key, char out[65]);
/* The public key as PEM, malloc'd. */
char *cg_audit_key_public_pem(EVP_PKEY *key);

int cg_audit_sign(EVP_PKEY *key, const char *msg, size_t len, uint8_t *sig,
                  size_t *siglen /* in: cap, out: length */);
bool cg_audit_sig_ok(EVP_PKEY *key, const char *msg, size_t len,
                     const uint8_t *sig, size_t siglen);

/* ---- verification of a whole audit database ---------------------------- */

typedef struct cg_audit_verify_result {
    bool intact;
    uint64_t records, checkpoints, first_seq, last_seq;
    uint64_t last_checkpoint_seq;  /* 0: none */
    uint64_t broken_seq;           /* when !intact */
    char what[512];                /* when !intact: how it broke */
    char node[CG_AUDIT_NODE_MAX + 1]; /* the node of the last record read, "" none */
    char notes[768];               /* what the verdict cannot say */
} cg_audit_verify_result;

/* Recomputes the chain from the file's genesis (meta prev_hash / first_seq)
 * and checks every checkpoint against it. With key, every checkpoint must
 * carry a valid signature by that key; without, signatures are checked
 * against the keys stored in the file (self-consistency only). Returns 0
 * when the verdict is in res (intact or not), negative when the file could
 * not be read at all. */
int cg_audit_verify_db(const char *path, EVP_PKEY *key,
                       cg_audit_verify_result *res, const char **error_r)
    __attribute__((warn_unused_result));

#endif
