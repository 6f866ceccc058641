/* proxy/core/tls.h — OpenSSL contexts for listeners and upstreams, and one TLS
 * endpoint driven without sockets: ciphertext is fed in, plaintext comes out
 * through callbacks, plaintext written produces ciphertext to send. The
 * endpoint's BIO reads straight from the caller's buffer and writes into a
 * buffer that is freed whenever it drains, so an idle connection holds no
 * TLS buffers (with SSL_MODE_RELEASE_BUFFERS).
 *
 * Upstream pinning: pin_sha256 is the SHA-256 of the backend certificate's
 * DER-encoded SubjectPublicKeyInfo (as in HPKP, RFC 7469), so a renewed
 * certificate with the same key keeps matching:
 *   openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin \
 *     -outform DER | openssl dgst -sha256 */
#ifndef CG_TLS_H
#define CG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proxy/core/config.h"

/* Once per process, before any context: the secret behind dummy PSK keys
 * and the ex_data index. */
int cg_tls_global_init(const char **error_r)
    __attribute__((warn_unused_result));

/* Server context for a listener (tls != none). error_r: one sentence. */
int cg_tls_server_ctx_new(const cg_listener_cfg *l, SSL_CTX **out,
                          const char **error_r)
    __attribute__((warn_unused_result));
/* Client context for an upstream with tls = yes. */
int cg_tls_client_ctx_new(const cg_upstream_cfg *u, SSL_CTX **out,
                          const char **error_r)
    __attribute__((warn_unused_result));

/* The notAfter of ctx's own certificate in Unix seconds; CG_E_NOTFOUND
 * when ctx has none. */
int cg_tls_ctx_not_after(SSL_CTX *ctx, int64_t *out)
    __attribute__((warn_unused_result));

typedef struct cg_tls cg_tls;

/* Where processing the fed ciphertext stands: a protocol outcome, never an
 * error (errors are negative CG_E_* codes beside it). */
enum cg_tls_flow {
    CG_TLS_CONTINUE, /* everything fed was processed: more ciphertext wanted */
    CG_TLS_STOP,     /* a callback stopped processing (refused, closing) */
    CG_TLS_EOF,      /* close_notify received: the peer's orderly end */
};

typedef struct cg_tls_cbs {
    /* Handshake completed. CG_TLS_STOP stops processing (refused). */
    enum cg_tls_flow (*on_handshake)(void *ctx);
    /* Plaintext received. CG_TLS_STOP stops processing. */
    enum cg_tls_flow (*on_data)(void *ctx, const uint8_t *buf, size_t len);
} cg_tls_cbs;

/* server: accept side; else connect side with host (SNI and name check
 * when the context verifies; may be NULL) and the pin to check (NULL:
 * none). plainbuf: scratch for SSL_read output (per loop). */
cg_tls *cg_tls_new(SSL_CTX *ctx, bool server, const char *host,
                   const uint8_t *pin_sha256, const cg_tls_cbs *cbs,
                   void *cbctx, uint8_t *plainbuf, size_t plaincap);
void cg_tls_free(cg_tls *t);

/* Feeds ciphertext; drives the handshake and drains SSL_read until it
 * wants more. Returns 0 with where it stopped in *flow, or CG_E_TLS
 * (fatal: an alert may be waiting in the output) or CG_E_NOMEM. */
int cg_tls_feed(cg_tls *t, const uint8_t *in, size_t len, enum cg_tls_flow *flow)
    __attribute__((warn_unused_result));
/* Starts the handshake (client: sends ClientHello). 0 or CG_E_TLS. */
int cg_tls_start(cg_tls *t) __attribute__((warn_unused_result));
/* Encrypts plaintext (after the handshake). 0 or CG_E_TLS. */
int cg_tls_write(cg_tls *t, const void *buf, size_t len) __attribute__((warn_unused_result));
/* Queues close_notify. */
void cg_tls_shutdown(cg_tls *t);

/* Ciphertext to send: pointer and length, then consume what was sent. */
size_t cg_tls_out(cg_tls *t, const uint8_t **p);
void cg_tls_out_consume(cg_tls *t, size_t n);

bool cg_tls_established(const cg_tls *t);
SSL *cg_tls_ssl(cg_tls *t);
/* The last error, one sentence (for logs). */
const char *cg_tls_error(const cg_tls *t);

/* After the handshake: the PSK identity used ("" when none). */
const char *cg_tls_psk_identity(const cg_tls *t);
/* Peer certificate: SHA-256 of the DER and names (email:, dns:, uri:
 * subjectAltNames; cn: the subject CN, only when there is no
 * subjectAltName) written into namebuf; returns the number of names (0 when
 * they do not all fit), CG_E_NOTFOUND without a peer certificate, or
 * CG_E_CRYPTO when it cannot be hashed. */
int cg_tls_peer_cert(cg_tls *t, uint8_t fpr[32], char *namebuf,
                     size_t namecap, const char **names, size_t maxnames)
    __attribute__((warn_unused_result));

#endif
