/* acl.c — white/black-list decisions (SPEC section 4).
 *
 * Rules are compiled once per snapshot into buckets by subject (each
 * principal, each group, everyone) and service, each bucket split into deny
 * and allow lists sorted by rule id, and indexed by literal prefix. A
 * decision looks only into the buckets that apply to the principal, finds
 * the rules whose literal prefix the name starts with by hash, and
 * matches the rest with a bit-set NFA over the pattern's elements, so that
 * no pattern/name pair can take more than O(len(name) * len(pattern)/64)
 * steps whatever the wildcards. Deny wins; no match is deny. The decision
 * path allocates nothing and takes no lock. */
#include "policy/acl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

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
    uint8_t subject_kind; /* 0 principal, 1 group, 2 everyone */
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
     * groups, np+ng everyone; service 0 = '*', 1 = imap, 2 = http */
    bucket *buckets;
    size_t nprincipals, ngroups;
    uint32_t *pool; /* storage of every bucket's index lists */
    pentry *index;
    size_t index_mask;
    uint32_t *index_pool;
    uint16_t *lens_pool;
    uint32_t max_prefix;
};

struct cg_acl_builder {
    rule *rules;
    size_t n, cap;
    bool failed;
};

/* ---- rights and services ------------------------------------------ */

static const struct {
    const char *name;
    unsigned bit;
} right_names[] = {
    { "list", CG_RIGHT_LIST },     { "read", CG_RIGHT_READ },     { "write", CG_RIGHT_WRITE },
    { "create", CG_RIGHT_CREATE }, { "delete", CG_RIGHT_DELETE },
};

int cg_rights_parse(const char *text, unsigned *out, const char **error_r)
{
    static _Thread_local char why[160];
    unsigned bits = 0;
    const char *p = text;
    if (!text || !*text) {
        *error_r = "empty rights";
        return CG_E_INVAL;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && *p == ' ') {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        bool found = false;
        if (n == 3 && strncmp(p, "all", 3) == 0) {
            bits |= CG_RIGHT_ALL;
            found = true;
        }
        for (size_t i = 0; !found && i < CG_ARRAY_LEN(right_names); i++) {
            if (strlen(right_names[i].name) == n && strncmp(p, right_names[i].name, n) == 0) {
                bits |= right_names[i].bit;
                found = true;
            }
        }
        if (!found) {
            snprintf(why, sizeof why, "unknown right '%.*s' (list, read, write, create, delete, all)",
                     (int)(n > 40 ? 40 : n), p);
            *error_r = why;
            return CG_E_INVAL;
        }
        if (!end)
            break;
        p = end + 1;
        if (!*p) {
            *error_r = "empty right after ','";
            return CG_E_INVAL;
        }
    }
    *out = bits;
    return 0;
}

void cg_rights_format(unsigned rights, char out[48])
{
    if ((rights & CG_RIGHT_ALL) == CG_RIGHT_ALL) {
        strcpy(out, "all");
        return;
    }
    out[0] = '\0';
    for (size_t i = 0; i < CG_ARRAY_LEN(right_names); i++) {
        if (!(rights & right_names[i].bit))
            continue;
        if (out[0])
            strcat(out, ",");
        strcat(out, right_names[i].name);
    }
}

const char *cg_right_name(unsigned right)
{
    for (size_t i = 0; i < CG_ARRAY_LEN(right_names); i++)
        if (right_names[i].bit == right)
            return right_names[i].name;
    return "unknown";
}

int cg_service_parse(const char *text, int *out)
{
    if (!text)
        return CG_E_INVAL;
    if (strcmp(text, "imap") == 0)
        *out = CG_SVC_IMAP;
    else if (strcmp(text, "http") == 0)
        *out = CG_SVC_HTTP;
    else if (strcmp(text, "*") == 0)
        *out = 0;
    else
        return CG_E_INVAL;
    return 0;
}

/* ---- patterns --------------------------------------------------------- */

/* A leading INBOX in any case means INBOX (RFC 3501 5.1), when what
 * follows it cannot continue a longer name ("Inboxes" stays as it is). */
static bool inbox_prefix(const char *s, size_t len)
{
    if (len < 5 || strncasecmp(s, "INBOX", 5) != 0)
        return false;
    return len == 5 || !isalnum((unsigned char)s[5]);
}

/* Compiles text into elements; elems may be NULL to only validate. */
static int compile(const char *text, uint16_t *elems, uint32_t *n_out, const char **error_r)
{
    size_t len = strlen(text);
    if (len == 0) {
        *error_r = "empty pattern";
        return CG_E_INVAL;
    }
    if (len > MAX_PATTERN) {
        *error_r = "pattern longer than 1024 bytes";
        return CG_E_INVAL;
    }
    bool inbox = inbox_prefix(text, len);
    uint32_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        uint16_t e;
        if (c < 0x20 || c == 0x7f) {
            *error_r = "control character in pattern";
            return CG_E_INVAL;
        }
        if (c == '*') {
            e = E_STAR;
        } else if (c == '%') {
            e = E_PCT;
        } else if (c == '$' && i + 1 < len && text[i + 1] == '{') {
            const char *close = memchr(text + i + 2, '}', len - i - 2);
            if (!close) {
                *error_r = "unbalanced '${' in pattern";
                return CG_E_INVAL;
            }
            size_t vlen = (size_t)(close - (text + i + 2));
            if (vlen != 4 || strncmp(text + i + 2, "user", 4) != 0) {
                *error_r = "unknown variable in pattern (only ${user})";
                return CG_E_INVAL;
            }
            e = E_USER;
            i += 6; /* "${user}" is 7 bytes */
        } else {
            e = (uint16_t)(inbox && i < 5 ? toupper(c) : c);
        }
        if (elems)
            elems[n] = e;
        n++;
    }
    *n_out = n;
    return 0;
}

int cg_acl_pattern_check(const char *pattern, const char **error_r)
{
    uint32_t n;
    const char *dummy;
    return compile(pattern, NULL, &n, error_r ? error_r : &dummy);
}

/* ---- matching --------------------------------------------------------- */

typedef struct subject_ctx {
    const char *user;
    size_t ulen;
    char delim;
    bool user_ok;   /* the ${user} expansion fits */
    bool res_inbox; /* the name starts with INBOX in some case */
} subject_ctx;

static inline unsigned char res_at(const subject_ctx *m, const char *s, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    return m->res_inbox && i < 5 ? (unsigned char)toupper(c) : c;
}

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

static bool match(const rule *r, const subject_ctx *m, const char *s, size_t len)
{
    if (!prefix_ok(r, m, s, len))
        return false;
    if (r->kind != M_GENERAL) {
        long pos = r->head == r->prefix ? (long)r->prefix : head_ok(r, m, s, len);
        return pos >= 0 && (r->kind == M_HEAD_STAR || (size_t)pos == len);
    }
    uint16_t buf[MAX_STATES];
    const uint16_t *el = r->elems;
    uint32_t n = r->nelems;
    if (r->has_user) {
        n = expand(r, m, buf);
        if (n == 0)
            return false;
        el = buf;
    }
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
    const uint16_t *el = r->elems;
    uint32_t n = r->nelems;
    if (r->has_user) {
        n = expand(r, m, buf);
        if (n == 0)
            return;
        el = buf;
    }
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

/* ---- the prefix index ----------------------------------------------- */

#define FNV_BASIS UINT64_C(0xcbf29ce484222325)
#define FNV_PRIME UINT64_C(0x100000001b3)

static inline size_t slot_of(uint64_t h, uint32_t bk_id, uint32_t len, size_t mask)
{
    uint64_t x = h ^ ((uint64_t)bk_id << 20) ^ len;
    x ^= x >> 29;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 32;
    return (size_t)x & mask;
}

static const pentry *probe(const cg_acl *acl, uint32_t bk_id, uint32_t len, uint64_t h)
{
    for (size_t i = slot_of(h, bk_id, len, acl->index_mask);; i = (i + 1) & acl->index_mask) {
        const pentry *e = &acl->index[i];
        if (!e->used)
            return NULL;
        if (e->hash == h && e->bucket == bk_id && e->len == len)
            return e;
    }
}

typedef struct ikey {
    uint32_t bucket, len;
    uint64_t hash;
    uint32_t rule;
} ikey;

static int cmp_ikey(const void *a, const void *b)
{
    const ikey *x = a, *y = b;
    if (x->bucket != y->bucket)
        return x->bucket < y->bucket ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static size_t bucket_index(const cg_acl *acl, const rule *r)
{
    size_t subj = r->subject_kind == 0   ? r->subject_idx
                  : r->subject_kind == 1 ? acl->nprincipals + r->subject_idx
                                         : acl->nprincipals + acl->ngroups;
    return subj * 3 + (size_t)r->info.service;
}

static int build_index(cg_acl *acl)
{
    size_t n = acl->nrules;
    ikey *keys = calloc(n ? n : 1, sizeof *keys);
    acl->index_pool = calloc(n ? n : 1, sizeof *acl->index_pool);
    acl->lens_pool = calloc(n ? n : 1, sizeof *acl->lens_pool);
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    acl->index = calloc(cap, sizeof *acl->index);
    acl->index_mask = cap - 1;
    if (!keys || !acl->index_pool || !acl->lens_pool || !acl->index) {
        free(keys);
        return CG_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const rule *r = &acl->rules[i];
        uint64_t h = FNV_BASIS;
        for (uint32_t k = 0; k < r->prefix; k++)
            h = (h ^ r->elems[k]) * FNV_PRIME;
        keys[i] = (ikey){ (uint32_t)bucket_index(acl, r), r->prefix, h, (uint32_t)i };
        if (r->prefix > acl->max_prefix)
            acl->max_prefix = r->prefix;
    }
    if (n)
        qsort(keys, n, sizeof *keys, cmp_ikey);
    size_t nlens = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && keys[j].bucket == keys[i].bucket && keys[j].len == keys[i].len &&
               keys[j].hash == keys[i].hash) {
            acl->index_pool[j] = keys[j].rule;
            j++;
        }
        size_t slot = slot_of(keys[i].hash, keys[i].bucket, keys[i].len, acl->index_mask);
        while (acl->index[slot].used)
            slot = (slot + 1) & acl->index_mask;
        acl->index[slot] = (pentry){ keys[i].hash, keys[i].bucket, keys[i].len, (uint32_t)i,
                                     (uint32_t)(j - i), true };
        /* distinct lengths per bucket, ascending (keys are sorted) */
        bucket *bk = &acl->buckets[keys[i].bucket];
        if (bk->nlens == 0 || bk->lens[bk->nlens - 1] != keys[i].len) {
            if (bk->nlens == 0)
                bk->lens = &acl->lens_pool[nlens];
            acl->lens_pool[nlens++] = (uint16_t)keys[i].len;
            bk->nlens++;
        }
        i = j;
    }
    free(keys);
    return 0;
}

/* ---- building --------------------------------------------------------- */

cg_acl_builder *cg_acl_builder_new(void)
{
    return calloc(1, sizeof(cg_acl_builder));
}

static void free_rule(rule *r)
{
    free(r->elems);
    free((char *)r->info.subject);
    free((char *)r->info.pattern);
}

int cg_acl_builder_add(cg_acl_builder *b, int64_t id, bool deny, const char *subject, int service,
                       const char *pattern, unsigned rights, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (!subject || !*subject || !pattern || (rights & ~(unsigned)CG_RIGHT_ALL) || !rights ||
        (service != 0 && service != CG_SVC_IMAP && service != CG_SVC_HTTP)) {
        *error_r = "invalid rule";
        return CG_E_INVAL;
    }
    uint32_t n;
    int rc = compile(pattern, NULL, &n, error_r);
    if (rc < 0)
        return rc;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        rule *nr = realloc(b->rules, cap * sizeof *nr);
        if (!nr) {
            *error_r = "out of memory";
            return CG_E_NOMEM;
        }
        b->rules = nr;
        b->cap = cap;
    }
    rule *r = &b->rules[b->n];
    memset(r, 0, sizeof *r);
    r->elems = malloc(n * sizeof *r->elems);
    r->info.subject = strdup(subject);
    r->info.pattern = strdup(pattern);
    if (!r->elems || !r->info.subject || !r->info.pattern) {
        free_rule(r);
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    compile(pattern, r->elems, &r->nelems, error_r);
    r->info.id = id;
    r->info.deny = deny;
    r->info.service = service;
    r->info.rights = rights;
    while (r->prefix < r->nelems && r->elems[r->prefix] < E_STAR)
        r->prefix++;
    r->head = r->prefix;
    while (r->head < r->nelems && (r->elems[r->head] < E_STAR || r->elems[r->head] == E_USER))
        r->head++;
    for (uint32_t i = 0; i < r->nelems; i++)
        r->has_user |= r->elems[i] == E_USER;
    if (r->head == r->nelems)
        r->kind = M_EXACT;
    else if (r->head + 1 == r->nelems && r->elems[r->head] == E_STAR)
        r->kind = M_HEAD_STAR;
    else
        r->kind = M_GENERAL;
    b->n++;
    return 0;
}

static int cmp_rule(const void *a, const void *b)
{
    const rule *x = a, *y = b;
    return x->info.id < y->info.id ? -1 : x->info.id > y->info.id;
}

static void builder_free(cg_acl_builder *b)
{
    for (size_t i = 0; i < b->n; i++)
        free_rule(&b->rules[i]);
    free(b->rules);
    free(b);
}

cg_acl *cg_acl_build(cg_acl_builder *b, const cg_principal *principals, size_t np,
                     const char *const *groups, size_t ng, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    cg_acl *acl = calloc(1, sizeof *acl);
    if (!acl || b->failed) {
        free(acl);
        builder_free(b);
        *error_r = "out of memory";
        return NULL;
    }
    if (b->n)
        qsort(b->rules, b->n, sizeof *b->rules, cmp_rule);
    /* resolve subjects; rules naming nobody that exists grant nothing */
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++) {
        rule *r = &b->rules[i];
        const char *s = r->info.subject;
        bool ok = false;
        if (strcmp(s, "*") == 0) {
            r->subject_kind = 2;
            ok = true;
        } else if (s[0] == '@') {
            for (size_t g = 0; g < ng; g++)
                if (strcmp(groups[g], s + 1) == 0) {
                    r->subject_kind = 1;
                    r->subject_idx = (uint32_t)g;
                    ok = true;
                    break;
                }
        } else {
            for (size_t p = 0; p < np; p++)
                if (strcmp(principals[p].name, s) == 0) {
                    r->subject_kind = 0;
                    r->subject_idx = (uint32_t)p;
                    ok = true;
                    break;
                }
        }
        if (!ok) {
            free_rule(r);
            continue;
        }
        b->rules[kept++] = *r;
    }
    acl->rules = b->rules;
    acl->nrules = kept;
    b->rules = NULL;
    b->n = 0;
    builder_free(b);
    acl->nprincipals = np;
    acl->ngroups = ng;
    size_t nb = (np + ng + 1) * 3;
    acl->buckets = calloc(nb, sizeof *acl->buckets);
    acl->pool = calloc(kept ? kept : 1, sizeof *acl->pool);
    if (!acl->buckets || !acl->pool) {
        cg_acl_free(acl);
        *error_r = "out of memory";
        return NULL;
    }
    /* count, then place (rules are already in id order) */
    for (size_t i = 0; i < kept; i++) {
        const rule *r = &acl->rules[i];
        size_t subj = r->subject_kind == 0 ? r->subject_idx
                      : r->subject_kind == 1 ? np + r->subject_idx
                                             : np + ng;
        bucket *bk = &acl->buckets[subj * 3 + (size_t)r->info.service];
        if (r->info.deny)
            bk->ndeny++;
        else
            bk->nallow++;
    }
    uint32_t *p = acl->pool;
    for (size_t i = 0; i < nb; i++) {
        bucket *bk = &acl->buckets[i];
        bk->deny = p;
        p += bk->ndeny;
        bk->allow = p;
        p += bk->nallow;
        bk->ndeny = bk->nallow = 0;
    }
    for (size_t i = 0; i < kept; i++) {
        const rule *r = &acl->rules[i];
        size_t subj = r->subject_kind == 0 ? r->subject_idx
                      : r->subject_kind == 1 ? np + r->subject_idx
                                             : np + ng;
        bucket *bk = &acl->buckets[subj * 3 + (size_t)r->info.service];
        if (r->info.deny)
            bk->deny[bk->ndeny++] = (uint32_t)i;
        else
            bk->allow[bk->nallow++] = (uint32_t)i;
    }
    if (build_index(acl) < 0) {
        cg_acl_free(acl);
        *error_r = "out of memory";
        return NULL;
    }
    return acl;
}

void cg_acl_free(cg_acl *acl)
{
    if (!acl)
        return;
    for (size_t i = 0; i < acl->nrules; i++)
        free_rule(&acl->rules[i]);
    free(acl->rules);
    free(acl->buckets);
    free(acl->pool);
    free(acl->index);
    free(acl->index_pool);
    free(acl->lens_pool);
    free(acl);
}

const cg_acl_rule_info *cg_acl_rule(const cg_acl *acl, int64_t id)
{
    size_t lo = 0, hi = acl ? acl->nrules : 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int64_t m = acl->rules[mid].info.id;
        if (m == id)
            return &acl->rules[mid].info;
        if (m < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- deciding --------------------------------------------------------- */

#define MAX_SUBJECTS 258

/* The subjects whose rules apply to p: itself, its groups, everyone. */
static size_t subjects_of(const cg_acl *acl, const cg_principal *p, size_t out[MAX_SUBJECTS])
{
    size_t n = 0;
    if (p->idx < acl->nprincipals)
        out[n++] = p->idx;
    for (uint32_t g = 0; g < p->ngroups && n < MAX_SUBJECTS - 1; g++)
        if (p->groups[g] < acl->ngroups)
            out[n++] = acl->nprincipals + p->groups[g];
    out[n++] = acl->nprincipals + acl->ngroups;
    return n;
}

/* Bucket i of 2*n: subject i/2, for service '*' (even) or the service. */
static const bucket *bucket_of(const cg_acl *acl, const size_t *subj, size_t i, int service)
{
    return &acl->buckets[subj[i / 2] * 3 + (i % 2 ? (size_t)service : 0)];
}

static void init_ctx(subject_ctx *m, const cg_principal *p, int service, const char *res,
                     size_t len, char delim)
{
    m->user = service == CG_SVC_IMAP && p->mailbox ? p->mailbox : p->name;
    m->ulen = strlen(m->user);
    m->user_ok = m->ulen <= MAX_USER;
    m->delim = delim;
    m->res_inbox = service == CG_SVC_IMAP && len >= 5 && strncasecmp(res, "INBOX", 5) == 0 &&
                   (len == 5 || res[5] == delim);
}

cg_decision cg_acl_decide(const cg_acl *acl, const cg_principal *p, int service, unsigned right,
                          const char *resource, size_t len, char delim)
{
    cg_decision d = { false, 0 };
    if (!acl || !p || !p->enabled || (service != CG_SVC_IMAP && service != CG_SVC_HTTP))
        return d;
    subject_ctx m;
    init_ctx(&m, p, service, resource, len, delim);
    int64_t deny_id = 0, allow_id = 0;
    /* hashes of the name's prefixes, as far as any rule's prefix reaches */
    uint64_t ph[MAX_PATTERN + 1];
    size_t reach = len < acl->max_prefix ? len : acl->max_prefix;
    ph[0] = FNV_BASIS;
    for (size_t i = 0; i < reach; i++)
        ph[i + 1] = (ph[i] ^ res_at(&m, resource, i)) * FNV_PRIME;
    size_t subj[MAX_SUBJECTS];
    size_t nb = 2 * subjects_of(acl, p, subj);
    for (size_t b = 0; b < nb; b++) {
        uint32_t bi = (uint32_t)(subj[b / 2] * 3 + (b % 2 ? (size_t)service : 0));
        const bucket *bk = &acl->buckets[bi];
        for (uint32_t l = 0; l < bk->nlens && bk->lens[l] <= reach; l++) {
            const pentry *e = probe(acl, bi, bk->lens[l], ph[bk->lens[l]]);
            if (!e)
                continue;
            for (uint32_t k = 0; k < e->count; k++) {
                const rule *r = &acl->rules[acl->index_pool[e->first + k]];
                if (!(r->info.rights & right))
                    continue;
                if (r->info.deny) {
                    if ((deny_id == 0 || r->info.id < deny_id) && match(r, &m, resource, len))
                        deny_id = r->info.id;
                } else if (deny_id == 0 && (allow_id == 0 || r->info.id < allow_id) &&
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

bool cg_acl_subtree_clear(const cg_acl *acl, const cg_principal *p, int service, unsigned right,
                          const char *prefix, size_t len, char delim, int64_t *rule_id)
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
    init_ctx(&m, p, service, below, n, delim);
    bool clear = true;
    size_t subj[MAX_SUBJECTS];
    size_t nb = 2 * subjects_of(acl, p, subj);
    for (size_t b = 0; b < nb; b++) {
        const bucket *bk = bucket_of(acl, subj, b, service);
        for (uint32_t k = 0; k < bk->ndeny + bk->nallow; k++) {
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

int cg_acl_glob(const char *pattern, const char *user, const char *name, size_t len, char delim)
{
    rule r;
    memset(&r, 0, sizeof r);
    uint16_t elems[MAX_PATTERN];
    const char *err;
    int rc = compile(pattern, elems, &r.nelems, &err);
    if (rc < 0)
        return rc;
    r.elems = elems;
    for (uint32_t i = 0; i < r.nelems; i++)
        r.has_user |= elems[i] == E_USER;
    r.kind = M_GENERAL;
    subject_ctx m = { .user = user ? user : "", .ulen = user ? strlen(user) : 0, .delim = delim };
    m.user_ok = user && m.ulen <= MAX_USER;
    return match(&r, &m, name, len) ? 1 : 0;
}
