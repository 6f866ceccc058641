/* policy/acl_impl.h — the inside of a compiled ACL, shared by the builder
 * (acl.c: rights, pattern compilation, buckets and the prefix index) and
 * the decision path (acl_match.c: matching and deciding) only. */
#ifndef CG_ACL_IMPL_H
#define CG_ACL_IMPL_H

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>

#include "policy/acl.h"

/* Pattern elements: a literal byte (0..255), or one of these. */
enum { E_STAR = 256, E_PCT = 257, E_USER = 258 };

#define MAX_PATTERN 1024   /* bytes of a pattern's text */
#define MAX_USER 256       /* bytes of a ${user} expansion */
#define MAX_STATES (MAX_PATTERN + 8 * MAX_USER)
#define WORDS ((MAX_STATES + 1 + 63) / 64)

enum match_kind {
    M_EXACT,     /* literal (and ${user}) only */
    M_HEAD_STAR, /* literal (and ${user}) then a single '*' */
    M_GENERAL,
};

typedef struct rule {
    cg_acl_rule_info info;
    uint16_t *elems;
    uint32_t nelems;
    uint32_t prefix;   /* leading literal elements */
    uint32_t head;     /* leading literal and ${user} elements */
    uint8_t kind;
    bool has_user;
    uint8_t subject_kind; /* 0 principal, 1 group, 2 everyone, 3 remote user */
    uint32_t subject_idx;
} rule;

typedef struct bucket {
    uint32_t *deny, *allow; /* rule indexes, by id */
    uint32_t ndeny, nallow;
    uint16_t *lens;         /* distinct literal-prefix lengths, ascending */
    uint32_t nlens;
} bucket;

/* The prefix index: (bucket, prefix length, prefix hash) -> the rules of
 * that bucket with exactly that literal prefix, by id. A decision probes it
 * once per prefix length its buckets hold, instead of scanning rules. The
 * bucket and length are compared exactly and the prefix bytes again by
 * prefix_ok, so a hash collision can never apply another subject's rule. */
typedef struct pentry {
    uint64_t hash;
    uint32_t bucket;
    uint32_t len;
    uint32_t first, count; /* into index_pool */
    bool used;
} pentry;

struct cg_acl {
    rule *rules;   /* sorted by id */
    size_t nrules;
    /* buckets[subject][service]: subject 0..np-1 principals, np..np+ng-1
     * groups, np+ng everyone, then the remote subjects (SPEC 7);
     * service 0 = '*', 1 = imap, 2 = http */
    bucket *buckets;
    size_t nprincipals, ngroups;
    const char **remote; /* "user@domain" and "*@domain", sorted, distinct
                          * (the rules' own subject strings) */
    size_t nremote;
    uint32_t *pool; /* storage of every bucket's index lists */
    pentry *index;
    size_t index_mask;
    uint32_t *index_pool;
    uint16_t *lens_pool;
    uint32_t max_prefix;
};

/* The prefix index's hash of a rule's literal prefix (and of a name's). */
#define FNV_BASIS UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static inline size_t cg_acl__slot_of(uint64_t h, uint32_t bk_id, uint32_t len, size_t mask)
{
    uint64_t x = h ^ ((uint64_t)bk_id << 20) ^ len;
    x ^= x >> 29;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 32;
    return (size_t)x & mask;
}

static inline const pentry *cg_acl__probe(const cg_acl *acl, uint32_t bk_id, uint32_t len,
                                          uint64_t h)
{
    for (size_t i = cg_acl__slot_of(h, bk_id, len, acl->index_mask);;
         i = (i + 1) & acl->index_mask) {
        const pentry *e = &acl->index[i];
        if (!e->used)
            return NULL;
        if (e->hash == h && e->bucket == bk_id && e->len == len)
            return e;
    }
}

/* What a match knows of the principal and the name. */
typedef struct subject_ctx {
    const char *user;
    size_t ulen;
    char delim;
    bool user_ok;   /* the ${user} expansion fits */
    bool res_inbox; /* the name starts with INBOX in some case */
    bool remote;    /* the principal acts for a remote user (SPEC 7) */
} subject_ctx;

static inline unsigned char res_at(const subject_ctx *m, const char *s, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    return m->res_inbox && i < 5 ? (unsigned char)toupper(c) : c;
}

/* The index of a remote subject ("user@domain", "*@domain") among
 * acl->remote, or -1 when no rule names it. */
int cg_acl__remote_index(const cg_acl *acl, const char *subject)
    __attribute__((warn_unused_result));

/* Compiles a pattern's text into elements (at most MAX_PATTERN); elems may
 * be NULL to only validate. 0 or CG_E_INVAL with *error_r. */
int cg_acl__compile(const char *text, uint16_t *elems, uint32_t *n_out, const char **error_r)
    __attribute__((warn_unused_result));

#endif
