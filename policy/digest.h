/* digest.h — HTTP Digest access authentication (RFC 7616), server side:
 * challenges, strict parsing of "Authorization: Digest ...", verification
 * against the stored HA1, stateless nonces (time + HMAC of a server
 * secret) and nonce-count replay refusal. Pure: no I/O. */
#ifndef CG_DIGEST_H
#define CG_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/snapshot.h"

enum cg_digest_alg { CG_DIGEST_MD5 = 1, CG_DIGEST_SHA256 = 2 };

/* Default nonce lifetime (seconds): older nonces are answered stale=true. */
#define CG_DIGEST_NONCE_LIFETIME 300
/* Longest Authorization header value accepted (bytes). */
#define CG_DIGEST_MAX_HEADER 4096
/* A challenge value (after "WWW-Authenticate: ") fits in this. */
#define CG_DIGEST_CHALLENGE_MAX 512

/* One per HTTP listener. The secret binds nonces to this gateway: fill it
 * with cg_random at start (nonces then die with the process, which only
 * makes clients retry with stale=true). */
typedef struct cg_digest_ctx {
    const char *realm;          /* the listener's digest_realm */
    uint8_t secret[32];
    unsigned nonce_lifetime;    /* seconds; 0 means CG_DIGEST_NONCE_LIFETIME */
    const char *opaque;         /* optional; echoed and checked when set */
} cg_digest_ctx;

/* One challenge value, e.g. for WWW-Authenticate:
 *   Digest realm="R", qop="auth", algorithm=SHA-256, nonce="N"[, opaque="O"][, stale=true]
 * now: seconds since the epoch (the nonce's timestamp). Returns the length
 * written (without NUL), or 0 when cap is too small. */
size_t cg_digest_challenge(const cg_digest_ctx *ctx, int alg, bool stale,
                           int64_t now, char *out, size_t cap);

/* Both challenges as header lines, SHA-256 first, then MD5 (SPEC 4):
 *   "WWW-Authenticate: Digest ...SHA-256...\r\nWWW-Authenticate: Digest ...MD5...\r\n"
 * Returns the length written, 0 when cap is too small. */
size_t cg_digest_challenges(const cg_digest_ctx *ctx, bool stale, int64_t now,
                            char *out, size_t cap);

/* Verifies an Authorization header value ("Digest username=..."):
 * parameters, realm, uri == target (the request-target exactly as sent),
 * nonce authenticity, response (constant-time), then freshness and the
 * nonce-count. The username is the principal's name.
 *   0            *who is the authenticated, enabled principal
 *   CG_E_AUTH    refused (bad syntax, wrong response, unknown user,
 *                disabled principal — *who set then —, replayed nc):
 *                answer 401 with fresh challenges
 *   CG_E_AGAIN   the response was right but the nonce is stale (too old,
 *                or evicted from the replay table): answer 401 with
 *                stale=true so the client retries without asking the user
 * error_r: one sentence for the log and audit record (never echoes the
 * response or the HA1). */
int cg_digest_verify(const cg_digest_ctx *ctx, const char *header,
                     const char *method, const char *target,
                     const cg_snapshot *snap, const cg_principal **who,
                     const char **error_r) __attribute__((warn_unused_result));

/* The same with the clock and the HA1 lookup given (unit tests; a
 * gateway uses cg_digest_verify). lookup returns the hex HA1 of username
 * for (realm, alg name "MD5"/"SHA-256") or NULL. */
typedef const char *(*cg_digest_ha1_fn)(void *lctx, const char *username,
                                        const char *realm, const char *alg);
int cg_digest_verify_at(const cg_digest_ctx *ctx, const char *header,
                        const char *method, const char *target, int64_t now,
                        cg_digest_ha1_fn lookup, void *lctx,
                        const char **error_r) __attribute__((warn_unused_result));

/* A fresh nonce for time now: base64url of 8-byte big-endian time, 8
 * random bytes and HMAC-SHA256(secret, time || random || realm), 64
 * characters. */
#define CG_DIGEST_NONCE_LEN 72
void cg_digest_nonce(const cg_digest_ctx *ctx, int64_t now,
                     char out[CG_DIGEST_NONCE_LEN]);

/* RFC 7616 3.4.1 response for qop=auth, lowercase hex into out (65 bytes).
 * ha1_hex is H(username:realm:password). Returns 0 or CG_E_INVAL. */
int cg_digest_response(int alg, const char *ha1_hex, const char *nonce,
                       const char *nc, const char *cnonce, const char *method,
                       const char *uri, char out[65]);

/* HA1 = H(username ":" realm ":" password) as lowercase hex (65 bytes),
 * for cpmgatectl cred add ... digest. */
int cg_digest_ha1(int alg, const char *username, const char *realm,
                  const char *password, char out[65]);

/* The replay table (process-wide, CG_DIGEST_REPLAY_SLOTS entries in
 * shards, each behind its own mutex held for a few hundred ns). When full,
 * the oldest nonce is evicted and every nonce not newer than it is then
 * answered stale: a used nonce is never accepted again after eviction. */
#define CG_DIGEST_REPLAY_SLOTS 4096
void cg_digest_replay_reset(void); /* tests */

#endif
