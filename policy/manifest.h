/* manifest.h — content-validation manifests (SPEC section 6): hardened
 * parsing (libxml2, no network, no DTD, no entities, size/item/depth
 * limits), validation against policy/manifest.xsd, signature checks with
 * the keys of the policy snapshot, and signing for cpmgatectl. */
#ifndef CG_MANIFEST_H
#define CG_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/snapshot.h"

#define CG_MANIFEST_MAX_BYTES 65536 /* the XML */
#define CG_MANIFEST_MAX_ITEMS 100
#define CG_MANIFEST_MAX_DEPTH 4
#define CG_MANIFEST_MAX_PATH 4096
#define CG_MANIFEST_MAX_SIG 768     /* decoded signature bytes */

enum cg_manifest_alg {
    CG_MALG_ECDSA_P256_SHA256 = 1,
    CG_MALG_ED25519 = 2,
    CG_MALG_RSA_PSS_SHA256 = 3,
};
/* "ecdsa-p256-sha256" | "ed25519" | "rsa-pss-sha256" <-> enum; 0 unknown. */
int cg_manifest_alg_parse(const char *name) __attribute__((warn_unused_result));
const char *cg_manifest_alg_name(int alg);

typedef struct cg_manifest_item {
    const char *path;       /* as in the manifest: decoded, normalised */
    uint64_t size;
    char sha256_hex[65];    /* lowercase */
    uint8_t sha256[32];
    const char *key_id;
    int alg;                /* enum cg_manifest_alg */
    const uint8_t *sig;
    size_t siglen;
} cg_manifest_item;

typedef struct cg_manifest cg_manifest;

/* Parses and validates the XML. Refused with CG_E_PARSE (not well-formed,
 * DOCTYPE, not valid against the schema, bad base64, a path that is not
 * normalised, two items for one path) or CG_E_LIMIT (size, items, depth);
 * error_r names the reason. The schema is compiled once per process. */
int cg_manifest_parse(const void *xml, size_t len, cg_manifest **out,
                      const char **error_r) __attribute__((warn_unused_result));
/* The same for the base64 of the XML (the Content-Manifest header). */
int cg_manifest_parse_b64(const char *b64, size_t len, cg_manifest **out,
                          const char **error_r) __attribute__((warn_unused_result));
void cg_manifest_free(cg_manifest *m);

size_t cg_manifest_nitems(const cg_manifest *m);
const cg_manifest_item *cg_manifest_item_at(const cg_manifest *m, size_t i);
/* The item that names path (exactly one can: duplicates are refused at
 * parse time), or NULL. */
const cg_manifest_item *cg_manifest_find_item(const cg_manifest *m,
                                              const char *path);

/* The bytes a signature covers:
 *   "cpmgate-manifest-v1\n" path "\n" size "\n" sha256_hex "\n"
 * Returns the length, or 0 when cap is too small. */
size_t cg_manifest_signed_bytes(const char *path, uint64_t size,
                                const char *sha256_hex, char *out, size_t cap);

/* A path as items must carry it: starts with "/", valid UTF-8, no control
 * characters, no empty, "." or ".." segment (a trailing "/" is allowed
 * only for "/" itself). 0 or CG_E_INVAL. */
int cg_manifest_path_check(const char *path, const char **error_r)
    __attribute__((warn_unused_result));

/* Checks one item's signature with key (an EVP_PKEY * of algorithm
 * key_alg): 0, CG_E_AUTH (wrong signature, algorithm not the key's). */
int cg_manifest_verify_item(const cg_manifest_item *item, void *evp_pkey,
                            const char *key_alg, const char **error_r)
    __attribute__((warn_unused_result));

/* The gateway's check: the item's key exists in snap, belongs to the
 * uploader (a key signs only for its own principal), has the item's
 * algorithm, and the signature is good. 0 or CG_E_AUTH. */
int cg_manifest_check_item(const cg_manifest_item *item, const cg_snapshot *snap,
                           const cg_principal *uploader, const char **error_r)
    __attribute__((warn_unused_result));
/* The same with the key given (cpmgatectl, tests): key->principal_idx
 * must equal uploader_idx. The algorithm of a key: cg_pkey_alg in
 * store/policy_keys.h. */
int cg_manifest_check_with_key(const cg_manifest_item *item, const cg_pubkey *key,
                               uint32_t uploader_idx, const char **error_r)
    __attribute__((warn_unused_result));

/* What the HTTP gateway needs in one call, before the body arrives:
 * parses the base64 manifest (Content-Manifest header, or a decoupled
 * manifest's body), takes the one item for path (the normalised request
 * path) and checks its signature by a key of the uploader. On 0, *out
 * holds the signed size, hash and key id: the gateway then compares them
 * with the body it hashed (self-contained upload), or hands them to
 * cg_content_mark_validated (decoupled). Errors, each with a sentence for
 * the 422 answer: CG_E_PARSE / CG_E_LIMIT (manifest refused),
 * CG_E_NOTFOUND (no item names path), CG_E_AUTH (key or signature). */
typedef struct cg_manifest_claim {
    uint64_t size;
    uint8_t sha256[32];
    char key_id[129];
} cg_manifest_claim;
int cg_manifest_accept(const char *b64, size_t len, const char *path,
                       const cg_snapshot *snap, const cg_principal *uploader,
                       cg_manifest_claim *out, const char **error_r)
    __attribute__((warn_unused_result));

/* Signs one item with a private key (EVP_PKEY *) and writes the whole
 * manifest XML, NUL-terminated, into a malloc'd *xml_out. The algorithm
 * follows from the key (EC P-256, Ed25519, RSA). */
int cg_manifest_sign(void *evp_priv, const char *key_id, const char *path,
                     uint64_t size, const uint8_t sha256[32], char **xml_out,
                     const char **error_r) __attribute__((warn_unused_result));

/* The schema text compiled into the program (policy/manifest.xsd). */
const char *cg_manifest_schema(void);

#endif
