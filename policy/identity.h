/* identity.h — who is this: TLS identity or source address -> principal,
 * from a snapshot. Pure lookups: no I/O, no allocation, no locks.
 * A disabled principal is returned as found; callers refuse it, so the
 * refusal can say "disabled" in the log and audit record. */
#ifndef CG_IDENTITY_H
#define CG_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy/snapshot.h"

/* A certificate: its SHA-256 fingerprint over the DER, and its names as
 * "email:..", "dns:..", "uri:.." (subjectAltName) and "cn:.." (subject).
 * A registered fingerprint decides; else the names must all lead to the
 * same principal (names of two principals identify no one), and "cn:"
 * names count only when no subjectAltName is given. */
const cg_principal *cg_identity_by_cert(const cg_snapshot *s,
                                        const uint8_t fpr[32],
                                        const char *const *names,
                                        size_t nnames);

/* A PSK identity: principal and key, or NULL when unknown. */
const cg_principal *cg_identity_by_psk(const cg_snapshot *s,
                                       const char *identity, size_t idlen,
                                       const uint8_t **key, size_t *keylen);

/* Source address (AF_INET / AF_INET6, v4-mapped v6 treated as v4):
 * the principal of the longest matching registered CIDR, or NULL. */
const cg_principal *cg_identity_by_address(const cg_snapshot *s,
                                           const struct sockaddr *sa);

/* Digest: the stored HA1 (hex) of principal for realm; alg "MD5" or
 * "SHA-256". NULL when none. */
const char *cg_identity_digest_ha1(const cg_snapshot *s,
                                   const cg_principal *p, const char *realm,
                                   const char *alg);

#endif
