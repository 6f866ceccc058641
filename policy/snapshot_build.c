/* policy/snapshot_build.c — builds the immutable policy snapshot from the
 * policy store in one read transaction: principals, credential indexes,
 * groups, compiled ACL, keys, signed-only paths, peers; every string in the
 * snapshot's own arena. References, publication and lookups are in
 * snapshot.c. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "policy/acl.h"
#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "store/policy_keys.h"
#include "store/policy_store.h"
#include "policy/snapshot_impl.h"

/* ---- string arena: every string of a snapshot lives and dies with it ---- */

struct cg_snap_block {
    cg_snap_block *next;
    size_t used, cap;
    char data[];
};

static void *arena_alloc(cg_snapshot *s, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    cg_snap_block *b = s->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 16000 ? n : 16000;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = s->arena;
        b->used = 0;
        b->cap = cap;
        s->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static const char *arena_str(cg_snapshot *s, const char *t)
{
    if (!t)
        return NULL;
    size_t n = strlen(t) + 1;
    char *p = arena_alloc(s, n);
    if (p)
        memcpy(p, t, n);
    return p;
}

static void arena_free(cg_snap_block *b)
{
    while (b) {
        cg_snap_block *next = b->next;
        /* PSK keys and HA1s live here: leave nothing behind in freed memory */
        OPENSSL_cleanse(b->data, b->used);
        free(b);
        b = next;
    }
}

/* ---- growing arrays while building ----------------------------------------- */

/* Room for element n of arr, whose storage is cap bytes: the growth rule of
 * common/cg_buf.h (doubling from 16 elements). 0 or CG_E_NOMEM. */
#define PUSH(arr, n, cap)                                                              \
    (cg_buf_grow((void **)&(arr), &(cap), ((n) + 1) * sizeof *(arr), 16 * sizeof *(arr), \
                 SIZE_MAX) ? 0 : CG_E_NOMEM)

typedef struct pending_rule {
    int64_t id;
    bool deny;
    const char *subject, *service, *pattern;
    unsigned rights;
} pending_rule;

typedef struct build_ctx {
    cg_snapshot *s;
    /* bytes of storage behind each growing array (PUSH) */
    size_t cap_p, cap_g, cap_gid, cap_c, cap_n, cap_k, cap_a, cap_d, cap_pub, cap_rs, cap_peer, cap_m, cap_runs,
        cap_r;
    uint32_t (*members)[2]; /* (pidx, gidx) */
    size_t nmembers;
    pending_rule *rules;
    size_t nrules;
    const char *error; /* sentence of a callback's failure */
} build_ctx;

static int nomem(build_ctx *b)
{
    b->error = "out of memory building the policy snapshot";
    return CG_E_NOMEM;
}

static int cmp_gid(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* principals and groups arrive ORDER BY id: id -> index by binary search */
static bool gidx_of(const cg_snapshot *s, int64_t id, uint32_t *out)
{
    const int64_t *g = cg_snap_find(&id, s->group_ids, s->ngroups, sizeof id, cmp_gid);
    if (g)
        *out = (uint32_t)(g - s->group_ids);
    return g != NULL;
}

/* ---- visitor ------------------------------------------------------------------ */

static int v_principal(void *ctx, int64_t id, const char *name, const char *kind,
                       const char *mailbox, bool enabled)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    if (PUSH(s->principals, s->nprincipals, b->cap_p) < 0)
        return nomem(b);
    cg_principal *p = &s->principals[s->nprincipals];
    *p = (cg_principal){
        .id = id,
        .idx = (uint32_t)s->nprincipals,
        .name = arena_str(s, name),
        .mailbox = arena_str(s, mailbox && *mailbox ? mailbox : name),
        .enabled = enabled,
        .is_server = kind && strcmp(kind, "server") == 0,
    };
    if (!p->name || !p->mailbox)
        return nomem(b);
    s->nprincipals++;
    return 0;
}

static int v_credential(void *ctx, int64_t id, int64_t principal_id, const char *type,
                        const char *value, const uint8_t *secret, size_t secret_len,
                        const char *ha1_md5, const char *ha1_sha256)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    uint32_t pidx;
    if (!type || !value || !cg_snap_pidx_of(s, principal_id, &pidx))
        return 0;
    /* a row this program cannot use grants nothing: skip it, say so */
    if (strcmp(type, "cert") == 0) {
        if (PUSH(s->certs, s->ncerts, b->cap_c) < 0)
            return nomem(b);
        cg_snap_cert *c = &s->certs[s->ncerts];
        if (strlen(value) != 64 || cg_hex_decode(value, c->fpr, sizeof c->fpr) != 32) {
            cg_warn("policy: credential %lld: bad certificate fingerprint, ignored", (long long)id);
            return 0;
        }
        c->pidx = pidx;
        s->ncerts++;
    } else if (strcmp(type, "cert-name") == 0) {
        if (PUSH(s->names, s->nnames, b->cap_n) < 0)
            return nomem(b);
        s->names[s->nnames] = (cg_snap_name){ arena_str(s, value), pidx };
        if (!s->names[s->nnames].name)
            return nomem(b);
        s->nnames++;
    } else if (strcmp(type, "psk") == 0) {
        if (!secret || secret_len < 16 || secret_len > 64) {
            cg_warn("policy: credential %lld: PSK key of %zu bytes, ignored", (long long)id,
                    secret_len);
            return 0;
        }
        if (PUSH(s->psks, s->npsks, b->cap_k) < 0)
            return nomem(b);
        uint8_t *key = arena_alloc(s, secret_len);
        const char *ident = arena_str(s, value);
        if (!key || !ident)
            return nomem(b);
        memcpy(key, secret, secret_len);
        s->psks[s->npsks++] = (cg_snap_psk){ ident, strlen(ident), key, secret_len, pidx };
    } else if (strcmp(type, "address") == 0) {
        cg_cidr c;
        const char *err = NULL;
        if (cg_cidr_parse(value, &c, &err) < 0) {
            cg_warn("policy: credential %lld: %s, ignored", (long long)id, err);
            return 0;
        }
        if (PUSH(s->addrs, s->naddrs, b->cap_a) < 0)
            return nomem(b);
        s->addrs[s->naddrs++] = (cg_snap_addr){ c, pidx };
    } else if (strcmp(type, "digest") == 0) {
        if (PUSH(s->digests, s->ndigests, b->cap_d) < 0)
            return nomem(b);
        cg_snap_digest *d = &s->digests[s->ndigests];
        *d = (cg_snap_digest){ pidx, arena_str(s, value), arena_str(s, ha1_md5),
                               arena_str(s, ha1_sha256) };
        if (!d->realm || (ha1_md5 && !d->ha1_md5) || (ha1_sha256 && !d->ha1_sha256))
            return nomem(b);
        s->ndigests++;
    }
    return 0;
}

static int v_group(void *ctx, int64_t id, const char *name)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    if (PUSH(s->group_names, s->ngroups, b->cap_g) < 0 ||
        PUSH(s->group_ids, s->ngroups, b->cap_gid) < 0)
        return nomem(b);
    s->group_names[s->ngroups] = arena_str(s, name);
    s->group_ids[s->ngroups] = id;
    if (!s->group_names[s->ngroups])
        return nomem(b);
    s->ngroups++;
    return 0;
}

static int v_member(void *ctx, int64_t group_id, int64_t principal_id)
{
    build_ctx *b = ctx;
    uint32_t g, p;
    if (!gidx_of(b->s, group_id, &g) || !cg_snap_pidx_of(b->s, principal_id, &p))
        return 0;
    if (PUSH(b->members, b->nmembers, b->cap_m) < 0)
        return nomem(b);
    b->members[b->nmembers][0] = p;
    b->members[b->nmembers][1] = g;
    b->nmembers++;
    return 0;
}

/* Rules are compiled once everything else is loaded (subjects resolve
 * against the finished principal and group tables). */
static int v_rule(void *ctx, int64_t id, const char *effect, const char *subject,
                  const char *service, const char *pattern, unsigned rights)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    if (PUSH(b->rules, b->nrules, b->cap_r) < 0)
        return nomem(b);
    pending_rule *r = &b->rules[b->nrules];
    /* anything that is not "allow" is treated as a deny: a rule we cannot
     * read must fail the snapshot rather than open anything */
    *r = (pending_rule){ id, !effect || strcmp(effect, "allow") != 0, arena_str(s, subject),
                         arena_str(s, service), arena_str(s, pattern), rights };
    if (!r->subject || !r->service || !r->pattern)
        return nomem(b);
    b->nrules++;
    return 0;
}

static int v_pubkey(void *ctx, int64_t id, const char *key_id, int64_t principal_id,
                    const char *alg, const char *pem)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    uint32_t pidx;
    if (!key_id || !pem || !cg_snap_pidx_of(s, principal_id, &pidx))
        return 0;
    const char *found = NULL, *err = NULL;
    EVP_PKEY *k = NULL;
    if (cg_pkey_from_pem(pem, strlen(pem), &found, &k, &err) < 0 || !alg ||
        strcmp(found, alg) != 0) {
        cg_warn("policy: key '%s': %s, ignored", key_id, err ? err : "algorithm does not match");
        EVP_PKEY_free(k);
        return 0;
    }
    if (PUSH(s->pubkeys, s->npubkeys, b->cap_pub) < 0) {
        EVP_PKEY_free(k);
        return nomem(b);
    }
    cg_pubkey *pk = &s->pubkeys[s->npubkeys];
    *pk = (cg_pubkey){ arena_str(s, key_id), arena_str(s, alg), arena_str(s, pem), pidx, k };
    s->npubkeys++; /* counted now so the key is freed whatever happens next */
    if (!pk->key_id || !pk->alg || !pk->pem)
        return nomem(b);
    return 0;
}

static int v_require_signed(void *ctx, const char *pattern)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    if (!pattern)
        return 0;
    if (PUSH(s->require_signed, s->nrequire_signed, b->cap_rs) < 0)
        return nomem(b);
    if (!(s->require_signed[s->nrequire_signed] = arena_str(s, pattern)))
        return nomem(b);
    s->nrequire_signed++;
    return 0;
}

static int v_peer(void *ctx, const char *domain, int64_t principal_id, const char *auth)
{
    build_ctx *b = ctx;
    cg_snapshot *s = b->s;
    uint32_t pidx;
    if (!domain || !cg_snap_pidx_of(s, principal_id, &pidx))
        return 0;
    if (PUSH(s->peers, s->npeers, b->cap_peer) < 0)
        return nomem(b);
    /* only "optional" relaxes: anything else requires authentication */
    s->peers[s->npeers] = (cg_peer){ arena_str(s, domain), pidx,
                                     !auth || strcmp(auth, "optional") != 0 };
    if (!s->peers[s->npeers].domain)
        return nomem(b);
    s->npeers++;
    return 0;
}

/* ---- sorting ------------------------------------------------------------------- */

/* qsort must not see a NULL base, even for zero elements */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}
/* by_name and by_mailbox hold principal indexes: compared through the
 * snapshot (qsort_r's context) */
static int cmp_by_name(const void *a, const void *b, void *ctx)
{
    const cg_snapshot *s = ctx;
    return strcmp(s->principals[*(const uint32_t *)a].name,
                  s->principals[*(const uint32_t *)b].name);
}

static int cmp_by_mailbox(const void *a, const void *b, void *ctx)
{
    const cg_snapshot *s = ctx;
    return strcmp(s->principals[*(const uint32_t *)a].mailbox,
                  s->principals[*(const uint32_t *)b].mailbox);
}
static int cmp_member(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* ---- build -------------------------------------------------------------------- */

void cg_snap_free(cg_snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->npubkeys; i++)
        EVP_PKEY_free(s->pubkeys[i].evp);
    if (s->acl)
        cg_acl_free(s->acl);
    if (s->nprincipals)
        free((void *)s->principals[0].groups);
    free(s->principals);
    free(s->by_name);
    free(s->by_mailbox);
    free(s->group_names);
    free(s->group_ids);
    free(s->certs);
    free(s->names);
    free(s->psks);
    free(s->addrs);
    free(s->addr_runs);
    free(s->digests);
    free(s->pubkeys);
    free(s->require_signed);
    free(s->peers);
    arena_free(s->arena);
    free(s);
}

static int index_principals(cg_snapshot *s, build_ctx *b)
{
    size_t n = s->nprincipals;
    s->by_name = malloc((n ? n : 1) * sizeof *s->by_name);
    s->by_mailbox = malloc((n ? n : 1) * sizeof *s->by_mailbox);
    uint32_t *all = malloc((b->nmembers ? b->nmembers : 1) * sizeof *all);
    if (!s->by_name || !s->by_mailbox || !all) {
        free(all);
        return nomem(b);
    }
    for (size_t i = 0; i < n; i++)
        s->by_name[i] = s->by_mailbox[i] = (uint32_t)i;
    /* group lists: one array for all, each principal points into it (the
     * first principal's pointer owns it, see cg_snap_free) */
    sort(b->members, b->nmembers, sizeof *b->members, cmp_member);
    for (size_t i = 0; i < b->nmembers; i++)
        all[i] = b->members[i][1];
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        s->principals[i].groups = all + j;
        while (j < b->nmembers && b->members[j][0] == i)
            j++;
        s->principals[i].ngroups = (uint32_t)(all + j - s->principals[i].groups);
    }
    if (n == 0)
        free(all);
    if (n > 1) {
        qsort_r(s->by_name, n, sizeof *s->by_name, cmp_by_name, s);
        qsort_r(s->by_mailbox, n, sizeof *s->by_mailbox, cmp_by_mailbox, s);
    }
    return 0;
}

static void sort_indexes(cg_snapshot *s)
{
    sort(s->certs, s->ncerts, sizeof *s->certs, cg_snap_cmp_cert);
    sort(s->names, s->nnames, sizeof *s->names, cg_snap_cmp_name);
    sort(s->psks, s->npsks, sizeof *s->psks, cg_snap_cmp_psk);
    sort(s->addrs, s->naddrs, sizeof *s->addrs, cg_snap_cmp_addr);
    sort(s->digests, s->ndigests, sizeof *s->digests, cg_snap_cmp_digest);
    sort(s->pubkeys, s->npubkeys, sizeof *s->pubkeys, cg_snap_cmp_pubkey);
    sort(s->peers, s->npeers, sizeof *s->peers, cg_snap_cmp_peer);
}

/* Splits the sorted addresses into runs of one (family, prefix). The
 * store keeps networks unique; the same network twice (a hand edit) would
 * make the answer depend on the sort, so neither entry is kept. */
static int index_addresses(cg_snapshot *s, build_ctx *b)
{
    size_t w = 0;
    for (size_t i = 0; i < s->naddrs;) {
        size_t j = i + 1;
        while (j < s->naddrs && cg_snap_cmp_addr(&s->addrs[i], &s->addrs[j]) == 0)
            j++;
        if (j - i == 1) {
            s->addrs[w++] = s->addrs[i];
        } else {
            char text[64];
            cg_cidr_format(&s->addrs[i].cidr, text);
            cg_warn("policy: address %s is registered %zu times, ignored", text, j - i);
        }
        i = j;
    }
    s->naddrs = w;
    for (size_t i = 0; i < s->naddrs; i++) {
        const cg_cidr *c = &s->addrs[i].cidr, *prev = i ? &s->addrs[i - 1].cidr : NULL;
        if (!prev || prev->prefix != c->prefix || prev->family != c->family) {
            if (PUSH(s->addr_runs, s->naddr_runs, b->cap_runs) < 0)
                return nomem(b);
            s->addr_runs[s->naddr_runs++] = (cg_snap_addr_run){ i, 0 };
        }
        s->addr_runs[s->naddr_runs - 1].count++;
    }
    return 0;
}

/* Compiles the rules. An allow rule that does not compile grants nothing
 * and is skipped with a warning; a deny rule that does not compile fails
 * the build, so the previous snapshot (with that deny in force) stays. */
static int compile_acl(cg_snapshot *s, build_ctx *b, const char **error_r)
{
    cg_acl_builder *ab = cg_acl_builder_new();
    if (!ab)
        return nomem(b);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < b->nrules; i++) {
        const pending_rule *r = &b->rules[i];
        int svc = 0;
        const char *err = NULL;
        if (cg_service_parse(r->service, &svc) < 0) {
            err = "unknown service";
            rc = CG_E_INVAL;
        } else {
            rc = cg_acl_builder_add(ab, r->id, r->deny, r->subject, svc, r->pattern, r->rights,
                                    &err);
        }
        if (rc < 0 && !r->deny) {
            cg_warn("policy: allow rule %lld cannot be compiled (%s), ignored", (long long)r->id,
                    err ? err : cg_strerror(rc));
            rc = 0;
        } else if (rc < 0) {
            *error_r = cg_say("deny rule %lld cannot be compiled: %s", (long long)r->id,
                           err ? err : cg_strerror(rc));
        }
    }
    if (rc < 0) {
        /* the builder is consumed only by cg_acl_build */
        const char *ignored;
        cg_acl_free(cg_acl_build(ab, s->principals, s->nprincipals,
                                 (const char *const *)s->group_names, s->ngroups, &ignored));
        return rc;
    }
    const char *err = NULL;
    s->acl = cg_acl_build(ab, s->principals, s->nprincipals,
                          (const char *const *)s->group_names, s->ngroups, &err);
    if (!s->acl) {
        *error_r = cg_say("cannot compile the ACL: %s", err ? err : "unknown error");
        return CG_E_INVAL;
    }
    return 0;
}

static atomic_uint_fast64_t built_generations;

static int load_store(void *src, const cg_pstore_visitor *v, void *ctx, const char **error_r)
{
    return cg_pstore_load(src, v, ctx, error_r);
}

int cg_snapshot_build(struct cg_pstore *store, cg_snapshot **out, const char **error_r)
{
    return cg_snapshot_build_with(load_store, store, out, error_r);
}

int cg_snapshot_build_with(cg_snapshot_loader load, void *src, cg_snapshot **out,
                           const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *out = NULL;
    cg_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        *error_r = "out of memory building the policy snapshot";
        return CG_E_NOMEM;
    }
    atomic_init(&s->refs, 1);
    build_ctx b = { .s = s };
    static const cg_pstore_visitor v = {
        .principal = v_principal,
        .credential = v_credential,
        .group = v_group,
        .member = v_member,
        .rule = v_rule,
        .pubkey = v_pubkey,
        .require_signed = v_require_signed,
        .peer = v_peer,
    };
    const char *err = NULL;
    int rc = load(src, &v, &b, &err);
    if (rc < 0)
        *error_r = cg_say("cannot read the policy: %s", b.error ? b.error : err ? err : "?");
    if (rc == 0)
        rc = index_principals(s, &b);
    if (rc == 0) {
        sort_indexes(s);
        rc = index_addresses(s, &b);
    }
    if (rc == 0)
        rc = compile_acl(s, &b, error_r);
    if (rc < 0 && b.error)
        *error_r = b.error;
    free(b.members);
    free(b.rules);
    if (rc < 0) {
        cg_snap_free(s);
        return rc;
    }
    s->generation = atomic_fetch_add(&built_generations, 1) + 1;
    *out = s;
    return 0;
}

