/* saml.h — SAML 2.0 bearer assertions for "Authorization: SAML <base64>"
 * (SPEC section 2): XML-DSig checked by xmlsec with the configured IdP
 * certificate only, then issuer, audience, time window and bearer subject
 * confirmation; the NameID names the principal. Verified assertions are
 * cached per thread until they expire. */
#ifndef CG_SAML_H
#define CG_SAML_H

#include <stddef.h>
#include <stdint.h>

#include "policy/snapshot.h"

/* Largest decoded assertion accepted (bytes). */
#define CG_SAML_MAX_XML 65536
#define CG_SAML_NAME_MAX 256
/* Deepest element nesting accepted (the Signature reaches level 6). */
#define CG_SAML_MAX_DEPTH 16

/* Once per process, from main, after xmlInitParser() and before any
 * worker thread starts: initialises xmlsec and its OpenSSL backend.
 * Safe to call again (does nothing). */
int cg_saml_global_init(const char **error_r) __attribute__((warn_unused_result));
void cg_saml_global_shutdown(void);

/* Plain parameters (the [saml] section of the configuration). The IdP
 * certificate is given as PEM text, or else as a path to a PEM file. */
typedef struct cg_saml_params {
    const char *idp_cert_pem;   /* PEM text, or NULL */
    const char *idp_cert_path;  /* used when idp_cert_pem is NULL */
    const char *issuer;         /* Issuer must equal this exactly */
    const char *audience;       /* an Audience must equal this exactly */
    unsigned clock_skew;        /* seconds allowed either way */
} cg_saml_params;

/* Immutable once made; shared by all workers (each verification works on
 * its own copy of the key). A new configuration makes a new verifier. */
typedef struct cg_saml_verifier cg_saml_verifier;
int cg_saml_verifier_new(const cg_saml_params *p, cg_saml_verifier **out,
                         const char **error_r) __attribute__((warn_unused_result));
void cg_saml_verifier_free(cg_saml_verifier *v);

typedef struct cg_saml_result {
    char name_id[CG_SAML_NAME_MAX]; /* the NameID: the principal's name */
    int64_t expires;   /* unix seconds: earliest NotOnOrAfter */
} cg_saml_result;

/* Verifies one Assertion (the XML bytes) at time now (unix seconds).
 * 0, or CG_E_AUTH with one sentence naming the first check that failed.
 * No cache. */
int cg_saml_verify_xml(const cg_saml_verifier *v, const char *xml, size_t len,
                       int64_t now, cg_saml_result *out, const char **error_r)
    __attribute__((warn_unused_result));
/* The same for the base64 text after "SAML " (strict base64). */
int cg_saml_verify_b64(const cg_saml_verifier *v, const char *b64, size_t len,
                       int64_t now, cg_saml_result *out, const char **error_r)
    __attribute__((warn_unused_result));

/* What the HTTP gateway calls: credentials = the header value after
 * "SAML ". Uses the per-thread cache (keyed by the SHA-256 of the base64
 * text and the verifier; an entry lives until the assertion's expiry),
 * then looks the NameID up in snap. 0 with *who (enabled), or CG_E_AUTH
 * (*who set when the principal exists but is disabled). */
int cg_saml_authenticate(const cg_saml_verifier *v, const char *b64,
                         size_t len, const cg_snapshot *snap,
                         const cg_principal **who, const char **error_r)
    __attribute__((warn_unused_result));

/* Entries in the per-thread verified-assertion cache. */
#define CG_SAML_CACHE_SLOTS 64
void cg_saml_cache_clear(void); /* this thread's; tests */
/* Verifications this thread answered from its cache (metrics, tests). */
uint64_t cg_saml_cache_hits(void);

#endif
