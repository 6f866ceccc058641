/* proxy/core/tls_tickets.c — TLS session ticket keys of a listener's context:
 * one random secret per SSL_CTX (so per configuration: a new certificate,
 * CA or CRL builds a new context, and tickets issued before it no longer
 * resume), from which the key of each rotation period is derived with
 * HMAC-SHA256. Every worker shares the context, so a ticket one worker
 * issued resumes on any other; the current period's key encrypts, the
 * previous period's still decrypts (and the ticket is renewed). No state
 * changes after the context is made: no lock on the handshake path. */
#include "proxy/core/tls_tickets.h"

#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "common/cg_error.h"

#define SECRET_LEN 32

static int g_idx = -1;

static void free_secret(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr) {
        OPENSSL_cleanse(ptr, SECRET_LEN);
        OPENSSL_free(ptr);
    }
}

int cg_tickets_derive(const uint8_t *secret, uint64_t period, cg_ticket_key *k)
{
    uint8_t msg[9];
    uint8_t out[32];
    unsigned int len = 0;
    for (int i = 0; i < 8; i++)
        msg[1 + i] = (uint8_t)(period >> (56 - 8 * i));
    static const char labels[3] = { 'n', 'a', 'h' }; /* name, AES key, HMAC key */
    uint8_t *dst[3] = { k->name, k->aes, k->hmac };
    size_t dlen[3] = { sizeof k->name - 8, sizeof k->aes, sizeof k->hmac };
    for (int i = 0; i < 3; i++) {
        msg[0] = (uint8_t)labels[i];
        if (!HMAC(EVP_sha256(), secret, SECRET_LEN, msg, sizeof msg, out, &len) || len != 32)
            return CG_E_CRYPTO;
        memcpy(i == 0 ? dst[i] + 8 : dst[i], out, dlen[i]);
    }
    memcpy(k->name, msg + 1, 8); /* the period, readable back from a ticket */
    k->period = period;
    OPENSSL_cleanse(out, sizeof out);
    return 0;
}

uint64_t cg_tickets_period(time_t now)
{
    return (uint64_t)now / CG_TICKET_ROTATE_S;
}

/* This thread's keys of the last periods asked for: a derivation is two
 * HMACs, once per period and thread rather than per handshake. */
static __thread struct {
    uint8_t secret[SECRET_LEN]; /* the bytes, not the address: a new context's
                                 * secret may come at a freed one's place */
    cg_ticket_key k[2];
    bool have[2];
} t_cache;

static const cg_ticket_key *key_for(const uint8_t *secret, uint64_t period)
{
    if (CRYPTO_memcmp(t_cache.secret, secret, SECRET_LEN) != 0) {
        OPENSSL_cleanse(&t_cache, sizeof t_cache);
        memcpy(t_cache.secret, secret, SECRET_LEN);
    }
    unsigned slot = (unsigned)(period & 1);
    if (!t_cache.have[slot] || t_cache.k[slot].period != period) {
        if (cg_tickets_derive(secret, period, &t_cache.k[slot]) < 0)
            return NULL;
        t_cache.have[slot] = true;
    }
    return &t_cache.k[slot];
}

static int set_mac(EVP_MAC_CTX *hctx, const cg_ticket_key *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket key callback: 1 with the key set up, 2 (decrypt) when
 * the ticket is of the previous period and should be renewed, 0 when it is
 * not ours or too old (a full handshake follows), -1 on failure. */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const uint8_t *secret = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_idx);
    uint64_t now = cg_tickets_period(time(NULL));
    if (!secret)
        return enc ? -1 : 0;
    if (enc) {
        const cg_ticket_key *k = key_for(secret, now);
        if (!k || RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || !set_mac(hctx, k))
            return -1;
        memcpy(name, k->name, sizeof k->name);
        return 1;
    }
    uint64_t period = 0;
    for (int i = 0; i < 8; i++)
        period = period << 8 | name[i];
    if (period != now && period + 1 != now)
        return 0;
    const cg_ticket_key *k = key_for(secret, period);
    if (!k || CRYPTO_memcmp(name, k->name, sizeof k->name) != 0)
        return 0;
    if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || !set_mac(hctx, k))
        return -1;
    return period == now ? 1 : 2;
}

int cg_tickets_enable(SSL_CTX *ctx, const char **error_r)
{
    if (g_idx < 0) {
        /* first context of the process: made on the main thread */
        g_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_secret);
        if (g_idx < 0) {
            *error_r = "cannot set up TLS session tickets";
            return CG_E_TLS;
        }
    }
    uint8_t *secret = OPENSSL_malloc(SECRET_LEN);
    if (!secret || RAND_bytes(secret, SECRET_LEN) != 1 ||
        !SSL_CTX_set_ex_data(ctx, g_idx, secret)) {
        OPENSSL_free(secret);
        *error_r = "cannot make the TLS session ticket secret";
        return CG_E_CRYPTO;
    }
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 1);
    /* a ticket lives as long as its key is accepted */
    SSL_CTX_set_timeout(ctx, 2 * CG_TICKET_ROTATE_S);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
        *error_r = "cannot set up TLS session tickets";
        return CG_E_TLS;
    }
    return 0;
}
