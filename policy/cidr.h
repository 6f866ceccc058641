/* policy/cidr.h — networks (a.b.c.d/n, x::y/n): parse, format, match.
 * Pure; shared by the snapshot, identity lookups and cpmgatectl. */
#ifndef CG_CIDR_H
#define CG_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* CIDR parsing and matching, shared with cpmgatectl's validation.
 * Accepts "a.b.c.d/n", "x::y/n" and a bare address (full length);
 * canonical writes the normalised text form (host bits must be zero). */
typedef struct cg_cidr {
    uint8_t family; /* 4 or 6 */
    uint8_t prefix;
    uint8_t addr[16];
} cg_cidr;
int cg_cidr_parse(const char *text, cg_cidr *out, const char **error_r)
    __attribute__((warn_unused_result));
void cg_cidr_format(const cg_cidr *c, char out[64]);
/* Whether sa is in the network (an IPv4-mapped IPv6 address counts as
 * its IPv4 address). */
bool cg_cidr_match(const cg_cidr *c, const struct sockaddr *sa)
    __attribute__((warn_unused_result));
/* Whether a 16-byte IPv6 address is an IPv4-mapped one (::ffff:a.b.c.d). */
bool cg_cidr_v4mapped(const uint8_t a[16]);

#endif
