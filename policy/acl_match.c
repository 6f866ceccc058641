/* policy/acl_match.c — the decision path of the white/black-list (SPEC
 * section 4): matching a name against compiled rules and deciding.
 *
 * A decision looks only into the buckets that apply to the principal, finds
 * the rules whose literal prefix the name starts with by hash (acl_impl.h),
 * and matches the rest with a bit-set NFA over the pattern's elements, so
 * that no pattern/name pair can take more than
 * O(len(name) * len(pattern)/64) steps whatever the wildcards. Deny wins;
 * no match is deny. The decision path allocates nothing and takes no lock. */
#include "policy/acl.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "common/cg_remote.h"
#include "policy/acl_impl.h"

/* ---- matching --------------------------------------------------------- */


/* Expands ${user} into literal elements; returns the element count, or 0
 * when the expansion does not fit (the rule then cannot match). */
static uint32_t expand(const rule *r, const subject_ctx *m, uint16_t *out)
{
    uint32_t n = 0;
    if (!m->user_ok)
        return 0;
    for (uint32_t i = 0; i < r->nelems; i++) {
        if (r->elems[i] != E_USER) {
            if (n >= MAX_STATES)
                return 0;
            out[n++] = r->elems[i];
            continue;
        }
        if (n + m->ulen > MAX_STATES)
            return 0;
        /* what ${user} expands to is literal, even '*' or '%' */
        for (size_t k = 0; k < m->ulen; k++)
            out[n++] = (unsigned char)m->user[k];
    }
    return n;
}

/* Adds every state reachable by letting wildcards match nothing. */
static void closure(uint64_t *st, const uint16_t *el, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if ((st[i >> 6] >> (i & 63) & 1) && el[i] >= E_STAR)
            st[(i + 1) >> 6] |= UINT64_C(1) << ((i + 1) & 63);
    }
}

/* Runs the NFA of el[0..n) over s[from..len); st holds the states reached
 * before position `from`. Returns false when no state is left. */
static bool run(uint64_t *st, const uint16_t *el, uint32_t n, const subject_ctx *m, const char *s,
                size_t from, size_t len)
{
    uint32_t words = (n + 1 + 63) / 64;
    uint64_t next[WORDS];
    for (size_t i = from; i < len; i++) {
        unsigned char c = res_at(m, s, i);
        memset(next, 0, words * sizeof *next);
        bool any = false;
        for (uint32_t w = 0; w < words; w++) {
            uint64_t bits = st[w];
            while (bits) {
                uint32_t k = (uint32_t)__builtin_ctzll(bits) + w * 64;
                bits &= bits - 1;
                if (k >= n)
                    continue;
                uint16_t e = el[k];
                if (e == E_STAR || (e == E_PCT && c != (unsigned char)m->delim)) {
                    next[k >> 6] |= UINT64_C(1) << (k & 63);
                    any = true;
                } else if (e == c) {
                    next[(k + 1) >> 6] |= UINT64_C(1) << ((k + 1) & 63);
                    any = true;
                }
            }
        }
        if (!any)
            return false;
        closure(next, el, n);
        memcpy(st, next, words * sizeof *next);
    }
    return true;
}

static bool prefix_ok(const rule *r, const subject_ctx *m, const char *s, size_t len)
{
    if (len < r->prefix)
        return false;
    for (uint32_t i = 0; i < r->prefix; i++)
        if (r->elems[i] != res_at(m, s, i))
            return false;
    return true;
}

/* Matches the literal-and-${user} head after the prefix; returns the
 * position in s after it, or -1. */
static long head_ok(const rule *r, const subject_ctx *m, const char *s, size_t len)
{
    size_t pos = r->prefix;
    for (uint32_t i = r->prefix; i < r->head; i++) {
        uint16_t e = r->elems[i];
        if (e == E_USER) {
            if (!m->user_ok || m->ulen == 0 || len - pos < m->ulen)
                return -1;
            /* compared as the NFA would: literal bytes against the name */
            for (size_t k = 0; k < m->ulen; k++, pos++)
                if (res_at(m, s, pos) != (unsigned char)m->user[k])
                    return -1;
        } else {
            if (pos >= len || res_at(m, s, pos) != e)
                return -1;
            pos++;
        }
    }
    return (long)pos;
}

/* The rule's elements for this subject: as compiled, or with ${user}
 * expanded into buf (MAX_STATES); NULL when the expansion does not fit. */
static inline const uint16_t *elements(const rule *r, const subject_ctx *m, uint16_t *buf,
                                       uint32_t *n)
{
    if (!r->has_user) {
        *n = r->nelems;
        return r->elems;
    }
    *n = expand(r, m, buf);
    return *n ? buf : NULL;
}

static bool match(const rule *r, const subject_ctx *m, const char *s, size_t len)
{
    if (!prefix_ok(r, m, s, len))
        return false;
    if (r->kind != M_GENERAL) {
        long pos = r->head == r->prefix ? (long)r->prefix : head_ok(r, m, s, len);
        return pos >= 0 && (r->kind == M_HEAD_STAR || (size_t)pos == len);
    }
    uint16_t buf[MAX_STATES];
    uint32_t n;
    const uint16_t *el = elements(r, m, buf, &n);
    if (!el)
        return false;
    uint64_t st[WORDS];
    memset(st, 0, ((n + 1 + 63) / 64) * sizeof *st);
    st[r->prefix >> 6] = UINT64_C(1) << (r->prefix & 63);
    closure(st, el, n);
    if (!run(st, el, n, m, s, r->prefix, len))
        return false;
    return st[n >> 6] >> (n & 63) & 1;
}

/* After s: could some longer name (s followed by anything) match, and
 * would every one of them match? */
static void match_below(const rule *r, const subject_ctx *m, const char *s, size_t len,
                        bool *some, bool *all)
{
    *some = *all = false;
    uint16_t buf[MAX_STATES];
    uint32_t n;
    const uint16_t *el = elements(r, m, buf, &n);
    if (!el)
        return;
    uint64_t st[WORDS] = { 0 };
    st[0] = 1;
    closure(st, el, n);
    if (!run(st, el, n, m, s, 0, len))
        return;
    for (uint32_t k = 0; k <= n; k++) {
        if (!(st[k >> 6] >> (k & 63) & 1))
            continue;
        if (k < n)
            *some = true;
        /* all names below: from k on only wildcards, one of them '*' */
        bool star = false, only_wild = true;
        for (uint32_t j = k; j < n && only_wild; j++) {
            only_wild = el[j] >= E_STAR;
            star |= el[j] == E_STAR;
        }
        if (k < n && only_wild && star)
            *all = true;
    }
}


/* ---- deciding --------------------------------------------------------- */

#define MAX_SUBJECTS 260

/* The subjects whose rules apply to p: itself, its groups, everyone; when
 * p acts for a remote user (SPEC 7), also "user@domain" and "*@domain".
 * Returns the count; *everyone is the position of the everyone subject. */
static size_t subjects_of(const cg_acl *acl, const cg_principal *p, const char *originator,
                          size_t out[MAX_SUBJECTS], size_t *everyone)
{
    size_t n = 0;
    if (p->idx < acl->nprincipals)
        out[n++] = p->idx;
    for (uint32_t g = 0; g < p->ngroups && n < MAX_SUBJECTS - 3; g++)
        if (p->groups[g] < acl->ngroups)
            out[n++] = acl->nprincipals + p->groups[g];
    *everyone = n;
    out[n++] = acl->nprincipals + acl->ngroups;
    const char *at = originator ? strchr(originator, '@') : NULL;
    if (at && acl->nremote) {
        size_t base = acl->nprincipals + acl->ngroups + 1;
        int i = cg_acl__remote_index(acl, originator);
        if (i >= 0)
            out[n++] = base + (size_t)i;
        char any[CG_REMOTE_USER_MAX + 2];
        if ((size_t)snprintf(any, sizeof any, "*%s", at) < sizeof any &&
            (i = cg_acl__remote_index(acl, any)) >= 0)
            out[n++] = base + (size_t)i;
    }
    return n;
}

/* Acting for a remote user, the allows of everyone ("*": every local
 * principal) grant nothing: a catch-all such as "allow * imap INBOX*"
 * would otherwise open the whole shared mailbox to every remote user.
 * Its denies still apply, as a deny anywhere does. */
static bool allow_counts(const subject_ctx *m, size_t b, size_t everyone)
{
    return !m->remote || b / 2 != everyone;
}

/* Bucket i of 2*n: subject i/2, for service '*' (even) or the service. */
static const bucket *bucket_of(const cg_acl *acl, const size_t *subj, size_t i, int service)
{
    return &acl->buckets[subj[i / 2] * 3 + (i % 2 ? (size_t)service : 0)];
}

/* ${user} is the mailbox (IMAP) or the name of the principal, or the
 * remote user's address when the principal acts for one. */
static void init_ctx(subject_ctx *m, const cg_principal *p, const char *originator,
                     int service, const char *res, size_t len, char delim)
{
    m->remote = originator != NULL;
    m->user = originator                               ? originator
              : service == CG_SVC_IMAP && p->mailbox ? p->mailbox
                                                     : p->name;
    m->ulen = strlen(m->user);
    m->user_ok = m->ulen <= MAX_USER;
    m->delim = delim;
    m->res_inbox = service == CG_SVC_IMAP && len >= 5 && strncasecmp(res, "INBOX", 5) == 0 &&
                   (len == 5 || res[5] == delim);
}

cg_decision cg_acl_decide(const cg_acl *acl, const cg_principal *p, int service, unsigned right,
                          const char *resource, size_t len, char delim)
{
    return cg_acl_decide_as(acl, p, NULL, service, right, resource, len, delim);
}

bool cg_acl_subtree_clear(const cg_acl *acl, const cg_principal *p, int service, unsigned right,
                          const char *prefix, size_t len, char delim, int64_t *rule_id)
{
    return cg_acl_subtree_clear_as(acl, p, NULL, service, right, prefix, len, delim, rule_id);
}

cg_decision cg_acl_decide_as(const cg_acl *acl, const cg_principal *p, const char *originator,
                             int service, unsigned right, const char *resource, size_t len,
                             char delim)
{
    cg_decision d = { false, 0 };
    if (!acl || !p || !p->enabled || (service != CG_SVC_IMAP && service != CG_SVC_HTTP))
        return d;
    subject_ctx m;
    init_ctx(&m, p, originator, service, resource, len, delim);
    int64_t deny_id = 0, allow_id = 0;
    /* hashes of the name's prefixes, as far as any rule's prefix reaches */
    uint64_t ph[MAX_PATTERN + 1];
    size_t reach = len < acl->max_prefix ? len : acl->max_prefix;
    ph[0] = FNV_BASIS;
    for (size_t i = 0; i < reach; i++)
        ph[i + 1] = (ph[i] ^ res_at(&m, resource, i)) * FNV_PRIME;
    size_t subj[MAX_SUBJECTS], everyone;
    size_t nb = 2 * subjects_of(acl, p, originator, subj, &everyone);
    for (size_t b = 0; b < nb; b++) {
        bool allows = allow_counts(&m, b, everyone);
        uint32_t bi = (uint32_t)(subj[b / 2] * 3 + (b % 2 ? (size_t)service : 0));
        const bucket *bk = &acl->buckets[bi];
        for (uint32_t l = 0; l < bk->nlens && bk->lens[l] <= reach; l++) {
            const pentry *e = cg_acl__probe(acl, bi, bk->lens[l], ph[bk->lens[l]]);
            if (!e)
                continue;
            for (uint32_t k = 0; k < e->count; k++) {
                const rule *r = &acl->rules[acl->index_pool[e->first + k]];
                if (!(r->info.rights & right))
                    continue;
                if (r->info.deny) {
                    if ((deny_id == 0 || r->info.id < deny_id) && match(r, &m, resource, len))
                        deny_id = r->info.id;
                } else if (allows && deny_id == 0 && (allow_id == 0 || r->info.id < allow_id) &&
                           match(r, &m, resource, len)) {
                    allow_id = r->info.id;
                }
            }
        }
    }
    if (deny_id) {
        d.rule_id = deny_id;
        return d;
    }
    d.allow = allow_id != 0;
    d.rule_id = allow_id;
    return d;
}

bool cg_acl_subtree_clear_as(const cg_acl *acl, const cg_principal *p, const char *originator,
                             int service, unsigned right, const char *prefix, size_t len,
                             char delim, int64_t *rule_id)
{
    int64_t dummy;
    if (!rule_id)
        rule_id = &dummy;
    *rule_id = 0;
    if (!acl || !p || !p->enabled || len + 1 > MAX_PATTERN * 8)
        return false;
    /* names below the target: prefix + delim + anything */
    char below[MAX_PATTERN * 8 + 2];
    size_t n = len;
    memcpy(below, prefix, len);
    if (n == 0 || below[n - 1] != delim)
        below[n++] = delim;
    subject_ctx m;
    init_ctx(&m, p, originator, service, below, n, delim);
    bool clear = true;
    size_t subj[MAX_SUBJECTS], everyone;
    size_t nb = 2 * subjects_of(acl, p, originator, subj, &everyone);
    for (size_t b = 0; b < nb; b++) {
        const bucket *bk = bucket_of(acl, subj, b, service);
        uint32_t nk = bk->ndeny + (allow_counts(&m, b, everyone) ? bk->nallow : 0);
        for (uint32_t k = 0; k < nk; k++) {
            bool is_deny = k < bk->ndeny;
            const rule *r = &acl->rules[is_deny ? bk->deny[k] : bk->allow[k - bk->ndeny]];
            if (!(r->info.rights & right))
                continue;
            bool some, all;
            match_below(r, &m, below, n, &some, &all);
            /* a deny that could match below, or an allow that would judge
             * part of the subtree differently from the rest */
            if (some && (is_deny || !all)) {
                if (clear || r->info.id < *rule_id)
                    *rule_id = r->info.id;
                clear = false;
            }
        }
    }
    return clear;
}

int cg_acl_glob(const char *pattern, const char *user, const char *name, size_t len, char delim,
                bool *matched)
{
    rule r;
    memset(&r, 0, sizeof r);
    uint16_t elems[MAX_PATTERN];
    const char *err;
    *matched = false;
    int rc = cg_acl__compile(pattern, elems, &r.nelems, &err);
    if (rc < 0)
        return rc;
    r.elems = elems;
    for (uint32_t i = 0; i < r.nelems; i++)
        r.has_user |= elems[i] == E_USER;
    r.kind = M_GENERAL;
    subject_ctx m = { .user = user ? user : "", .ulen = user ? strlen(user) : 0, .delim = delim };
    m.user_ok = user && m.ulen <= MAX_USER;
    *matched = match(&r, &m, name, len);
    return 0;
}
