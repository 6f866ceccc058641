/* identity.c — who is this (SPEC section 2): certificate fingerprint or
 * names, PSK identity, source address and Digest HA1 -> principal, looked
 * up in a snapshot's sorted indexes (the networks are policy/cidr.c's).
 * Lookups never allocate. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "policy/cidr.h"
#include "policy/identity.h"
#include "policy/snapshot_impl.h"

/* ---- certificates ------------------------------------------------------------- */

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
        key.cidr.family = cg_cidr_v4mapped(a) ? 4 : 6;
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
