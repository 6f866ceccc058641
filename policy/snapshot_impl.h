/* policy/snapshot_impl.h — the inside of a policy snapshot, shared by the
 * builder (snapshot_build.c) and the lookups (snapshot.c, identity.c)
 * only. Every index is a sorted array searched with bsearch-style loops:
 * no allocation, no locks. */
#ifndef CG_SNAPSHOT_IMPL_H
#define CG_SNAPSHOT_IMPL_H

#include <stdatomic.h>

#include "policy/cidr.h"
#include "policy/snapshot.h"

typedef struct cg_snap_cert {
    uint8_t fpr[32];
    uint32_t pidx;
} cg_snap_cert;

typedef struct cg_snap_name {
    const char *name; /* "email:..", "dns:..", "uri:..", "cn:.." */
    uint32_t pidx;
} cg_snap_name;

typedef struct cg_snap_psk {
    const char *identity;
    size_t idlen;
    const uint8_t *key;
    size_t keylen;
    uint32_t pidx;
} cg_snap_psk;

typedef struct cg_snap_addr {
    cg_cidr cidr;
    uint32_t pidx;
} cg_snap_addr;

/* A run of addrs with one (family, prefix), sorted by network address:
 * a lookup masks the client address once per run and searches it. */
typedef struct cg_snap_addr_run {
    size_t start, count;
} cg_snap_addr_run;

typedef struct cg_snap_digest {
    uint32_t pidx;
    const char *realm, *ha1_md5, *ha1_sha256;
} cg_snap_digest;

typedef struct cg_snap_block cg_snap_block; /* string arena */

struct cg_snapshot {
    atomic_uint refs;
    uint64_t generation;
    cg_snap_block *arena;

    cg_principal *principals; /* by id; principals[i].idx == i */
    size_t nprincipals;
    uint32_t *by_name, *by_mailbox; /* principal indexes, sorted */

    const char **group_names; /* by id; group index = position */
    int64_t *group_ids;
    size_t ngroups;

    cg_snap_cert *certs;
    size_t ncerts;
    cg_snap_name *names; /* sorted with cg_snap_name_cmp */
    size_t nnames;
    cg_snap_psk *psks;
    size_t npsks;
    cg_snap_addr *addrs; /* longest prefix first, then by address */
    size_t naddrs;
    cg_snap_addr_run *addr_runs;
    size_t naddr_runs;
    cg_snap_digest *digests; /* by (pidx, realm) */
    size_t ndigests;

    cg_pubkey *pubkeys; /* by key_id */
    size_t npubkeys;
    const char **require_signed;
    size_t nrequire_signed;
    cg_peer *peers; /* by domain, case-insensitive */
    size_t npeers;

    struct cg_acl *acl;
};

/* Certificate names compare exactly, except that the host name of a dns:
 * name is case-insensitive (RFC 4343). */
int cg_snap_name_cmp(const char *a, const char *b) __attribute__((warn_unused_result));

/* The orders the indexes are sorted in; a lookup passes a key of the
 * element's own type with the compared fields filled in. */
int cg_snap_cmp_cert(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_name(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_psk(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_digest(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_addr(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_pubkey(const void *a, const void *b) __attribute__((warn_unused_result));
int cg_snap_cmp_peer(const void *a, const void *b) __attribute__((warn_unused_result));
/* bsearch that accepts an empty (NULL) array */
void *cg_snap_find(const void *key, const void *base, size_t n, size_t size,
                   int (*cmp)(const void *, const void *));

/* The index of the principal with this id (principals are sorted by id). */
bool cg_snap_pidx_of(const cg_snapshot *s, int64_t id, uint32_t *out);

/* Frees a snapshot and everything it owns (its last reference is gone, or
 * it was never published). */
void cg_snap_free(cg_snapshot *s);

#endif
