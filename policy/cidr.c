/* policy/cidr.c — networks as a principal's source-address credential
 * (SPEC section 2): the strict parser cpmgatectl validates with, the
 * canonical text form, and matching a client address. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/cg_error.h"
#include "policy/cidr.h"

bool cg_cidr_v4mapped(const uint8_t a[16])
{
    /* IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2) */
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    return memcmp(a, v4mapped, sizeof v4mapped) == 0;
}

/* Strict: inet_pton forms only (no "10.1", no octal "010.0.0.1"), a decimal
 * prefix without sign or leading zeros, no host bits set — an entry that
 * does not say exactly what it covers is refused, never guessed at. */
int cg_cidr_parse(const char *text, cg_cidr *out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    memset(out, 0, sizeof *out);
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = text ? strchr(text, '/') : NULL;
    size_t alen = text ? (slash ? (size_t)(slash - text) : strlen(text)) : 0;
    if (alen == 0 || alen >= sizeof addr) {
        *error_r = "malformed CIDR: no address";
        return CG_E_INVAL;
    }
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    bool v6 = strchr(addr, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, out->addr) != 1) {
        *error_r = v6 ? "malformed CIDR: not an IPv6 address" : "malformed CIDR: not an IPv4 address (a.b.c.d)";
        return CG_E_INVAL;
    }
    unsigned max = v6 ? 128 : 32, prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        if (n == 0 || n > 3 || strspn(p, "0123456789") != n || (n > 1 && p[0] == '0')) {
            *error_r = "malformed CIDR: the prefix length must be a decimal number";
            return CG_E_INVAL;
        }
        prefix = 0;
        for (size_t i = 0; i < n; i++)
            prefix = prefix * 10 + (unsigned)(p[i] - '0');
        if (prefix > max) {
            *error_r = v6 ? "malformed CIDR: IPv6 prefix length above 128"
                          : "malformed CIDR: IPv4 prefix length above 32";
            return CG_E_INVAL;
        }
    }
    out->family = v6 ? 6 : 4;
    out->prefix = (uint8_t)prefix;
    /* host bits must be zero: "10.0.0.1/8" is a typo for something */
    size_t bytes = v6 ? 16 : 4;
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = prefix >= (i + 1) * 8 ? 8 : prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
        uint8_t mask = keep ? (uint8_t)(0xff << (8 - keep)) : 0;
        if (out->addr[i] & (uint8_t)~mask) {
            *error_r = "malformed CIDR: host bits are set below the prefix length";
            return CG_E_INVAL;
        }
    }
    /* ::ffff:a.b.c.d/96+n is the IPv4 network a.b.c.d/n: one form, so a
     * duplicate cannot hide behind the other spelling */
    if (v6 && prefix >= 96 && cg_cidr_v4mapped(out->addr)) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = 4;
        out->prefix = (uint8_t)(prefix - 96);
    }
    return 0;
}

void cg_cidr_format(const cg_cidr *c, char out[64])
{
    char a[INET6_ADDRSTRLEN] = "?";
    inet_ntop(c->family == 6 ? AF_INET6 : AF_INET, c->addr, a, sizeof a);
    snprintf(out, 64, "%s/%u", a, (unsigned)c->prefix);
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool cg_cidr_match(const cg_cidr *c, const struct sockaddr *sa)
{
    if (!c || !sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return c->family == 4 && prefix_equal((const uint8_t *)&in->sin_addr, c->addr, c->prefix);
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        /* a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d */
        if (cg_cidr_v4mapped(a))
            return c->family == 4 && prefix_equal(a + 12, c->addr, c->prefix);
        return c->family == 6 && prefix_equal(a, c->addr, c->prefix);
    }
    return false;
}
