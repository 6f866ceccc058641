/* identity.c — who is this (SPEC section 2): certificate fingerprint or
 * names, PSK identity, source address and Digest HA1 -> principal, looked
 * up in a snapshot's sorted indexes; and the strict CIDR parser shared with
 * cpmgatectl. Lookups never allocate. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "policy/identity.h"
#include "policy/snapshot_impl.h"

/* IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2) */
static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* ---- certificates ------------------------------------------------------------- */

int cg_snap_name_cmp(const char *a, const char *b)
{
    if (strncmp(a, "dns:", 4) == 0 && strncmp(b, "dns:", 4) == 0)
        return strcasecmp(a + 4, b + 4);
    return strcmp(a, b);
}

static const cg_principal *cert_fpr(const cg_snapshot *s, const uint8_t fpr[32])
{
    cg_snap_cert key;
    memcpy(key.fpr, fpr, 32);
    const cg_snap_cert *c = cg_snap_find(&key, s->certs, s->ncerts, sizeof key, cg_snap_cmp_cert);
    return c ? &s->principals[c->pidx] : NULL;
}

static const cg_principal *cert_name(const cg_snapshot *s, const char *name)
{
    cg_snap_name key = { .name = name };
    const cg_snap_name *n = cg_snap_find(&key, s->names, s->nnames, sizeof key, cg_snap_cmp_name);
    return n ? &s->principals[n->pidx] : NULL;
}

/* The fingerprint names this very certificate, so it decides. Otherwise
 * every name is looked up, in no order that matters: names that map to two
 * principals identify no one (as an address registered twice identifies
 * no one), whatever order the certificate lists them in. The subject CN
 * counts only when there is no subjectAltName among the names. */
const cg_principal *cg_identity_by_cert(const cg_snapshot *s, const uint8_t fpr[32],
                                        const char *const *names, size_t nnames)
{
    if (!s)
        return NULL;
    const cg_principal *p = fpr ? cert_fpr(s, fpr) : NULL;
    if (p || !names)
        return p;
    bool has_san = false;
    for (size_t i = 0; i < nnames; i++)
        if (names[i] && strncmp(names[i], "cn:", 3) != 0)
            has_san = true;
    for (size_t i = 0; i < nnames; i++) {
        if (!names[i] || (has_san && strncmp(names[i], "cn:", 3) == 0))
            continue;
        const cg_principal *q = cert_name(s, names[i]);
        if (q && p && q != p)
            return NULL;
        if (q)
            p = q;
    }
    return p;
}

/* ---- PSK ---------------------------------------------------------------------- */

const cg_principal *cg_identity_by_psk(const cg_snapshot *s, const char *identity,
                                       size_t idlen, const uint8_t **key, size_t *keylen)
{
    if (key)
        *key = NULL;
    if (keylen)
        *keylen = 0;
    if (!s || !identity)
        return NULL;
    cg_snap_psk k = { .identity = identity, .idlen = idlen };
    const cg_snap_psk *found = cg_snap_find(&k, s->psks, s->npsks, sizeof k, cg_snap_cmp_psk);
    if (!found)
        return NULL;
    if (key)
        *key = found->key;
    if (keylen)
        *keylen = found->keylen;
    return &s->principals[found->pidx];
}

/* ---- addresses ---------------------------------------------------------------- */

const cg_principal *cg_identity_by_address(const cg_snapshot *s, const struct sockaddr *sa)
{
    if (!s || !sa)
        return NULL;
    cg_snap_addr key = { .cidr = { 0 } };
    const uint8_t *a;
    if (sa->sa_family == AF_INET) {
        key.cidr.family = 4;
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        /* a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d */
        key.cidr.family = memcmp(a, v4mapped, 12) == 0 ? 4 : 6;
        if (key.cidr.family == 4)
            a += 12;
    } else {
        return NULL;
    }
    size_t len = key.cidr.family == 4 ? 4 : 16;
    /* runs are ordered longest prefix first: the first hit is the most
     * specific network; each run is searched with the address masked to
     * its prefix */
    for (size_t r = 0; r < s->naddr_runs; r++) {
        const cg_snap_addr_run *run = &s->addr_runs[r];
        const cg_cidr *c = &s->addrs[run->start].cidr;
        if (c->family != key.cidr.family)
            continue;
        key.cidr.prefix = c->prefix;
        memset(key.cidr.addr, 0, sizeof key.cidr.addr);
        unsigned full = c->prefix / 8, rest = c->prefix % 8;
        memcpy(key.cidr.addr, a, full < len ? full : len);
        if (rest && full < len)
            key.cidr.addr[full] = (uint8_t)(a[full] & (0xff << (8 - rest)));
        const cg_snap_addr *hit = cg_snap_find(&key, s->addrs + run->start, run->count,
                                               sizeof key, cg_snap_cmp_addr);
        if (hit)
            return &s->principals[hit->pidx];
    }
    return NULL;
}

/* ---- Digest ------------------------------------------------------------------- */

const char *cg_identity_digest_ha1(const cg_snapshot *s, const cg_principal *p,
                                   const char *realm, const char *alg)
{
    if (!s || !p || !realm || p->idx >= s->nprincipals || &s->principals[p->idx] != p)
        return NULL;
    bool sha256 = alg && strcasecmp(alg, "SHA-256") == 0;
    if (!sha256 && (!alg || strcasecmp(alg, "MD5") != 0))
        return NULL;
    cg_snap_digest key = { .pidx = p->idx, .realm = realm };
    const cg_snap_digest *d = cg_snap_find(&key, s->digests, s->ndigests, sizeof key,
                                           cg_snap_cmp_digest);
    return !d ? NULL : sha256 ? d->ha1_sha256 : d->ha1_md5;
}

/* ---- CIDR --------------------------------------------------------------------- */

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
    if (v6 && prefix >= 96 && memcmp(out->addr, v4mapped, 12) == 0) {
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

int cg_cidr_match(const cg_cidr *c, const struct sockaddr *sa)
{
    if (!c || !sa)
        return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return c->family == 4 && prefix_equal((const uint8_t *)&in->sin_addr, c->addr, c->prefix);
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        /* a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d */
        if (memcmp(a, v4mapped, 12) == 0)
            return c->family == 4 && prefix_equal(a + 12, c->addr, c->prefix);
        return c->family == 6 && prefix_equal(a, c->addr, c->prefix);
    }
    return 0;
}
