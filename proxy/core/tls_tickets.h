/* proxy/core/tls_tickets.h — TLS session tickets and resumption for a
 * listener's context (see tls_tickets.c): keys derived per rotation period
 * from a secret made with the context, the previous period still accepted. */
#ifndef CG_TLS_TICKETS_H
#define CG_TLS_TICKETS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

/* A key encrypts tickets for this long; the next period still accepts it. */
#define CG_TICKET_ROTATE_S 3600

typedef struct cg_ticket_key {
    uint64_t period;
    uint8_t name[16]; /* the period (8 bytes, big-endian), then 8 derived */
    uint8_t aes[32];
    uint8_t hmac[32];
} cg_ticket_key;

/* Turns tickets on for ctx with a fresh random secret. 0 or CG_E_*. */
int cg_tickets_enable(SSL_CTX *ctx, const char **error_r) __attribute__((warn_unused_result));
/* The rotation period of a time. */
uint64_t cg_tickets_period(time_t now);
/* The key of a period from a 32-byte secret. 0 or CG_E_CRYPTO. */
int cg_tickets_derive(const uint8_t *secret, uint64_t period, cg_ticket_key *k)
    __attribute__((warn_unused_result));

#endif
