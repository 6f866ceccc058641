/* policy/acl.c — building the white/black-list (SPEC section 4): rights
 * and service names, pattern compilation, and the compiled form.
 *
 * Rules are compiled once per snapshot into buckets by subject (each
 * principal, each group, everyone) and service, each bucket split into deny
 * and allow lists sorted by rule id, and indexed by literal prefix (the
 * prefix index below). Matching and deciding are in acl_match.c. */
#include "policy/acl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_remote.h"
#include "common/cg_util.h"
#include "policy/acl_impl.h"

struct cg_acl_builder {
    rule *rules;
    size_t n, cap; /* cap: bytes behind rules */
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
int cg_acl__compile(const char *text, uint16_t *elems, uint32_t *n_out, const char **error_r)
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
    return cg_acl__compile(pattern, NULL, &n, error_r ? error_r : &dummy);
}


/* ---- the prefix index ----------------------------------------------- */


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
                  : r->subject_kind == 2 ? acl->nprincipals + acl->ngroups
                                         : acl->nprincipals + acl->ngroups + 1 + r->subject_idx;
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
        size_t slot = cg_acl__slot_of(keys[i].hash, keys[i].bucket, keys[i].len, acl->index_mask);
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
    int rc = cg_acl__compile(pattern, NULL, &n, error_r);
    if (rc < 0)
        return rc;
    if (!cg_buf_grow((void **)&b->rules, &b->cap, (b->n + 1) * sizeof *b->rules,
                     64 * sizeof *b->rules, SIZE_MAX)) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
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
    rc = cg_acl__compile(pattern, r->elems, &r->nelems, error_r); /* validated above */
    if (rc < 0) {
        free_rule(r);
        return rc;
    }
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The distinct remote subjects, sorted; each remote rule gets its index. */
static int index_remote(cg_acl *acl)
{
    size_t n = 0;
    for (size_t i = 0; i < acl->nrules; i++)
        n += acl->rules[i].subject_kind == 3;
    acl->remote = calloc(n ? n : 1, sizeof *acl->remote);
    if (!acl->remote)
        return CG_E_NOMEM;
    for (size_t i = 0; i < acl->nrules; i++)
        if (acl->rules[i].subject_kind == 3)
            acl->remote[acl->nremote++] = acl->rules[i].info.subject;
    if (acl->nremote)
        qsort(acl->remote, acl->nremote, sizeof *acl->remote, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < acl->nremote; i++)
        if (kept == 0 || strcmp(acl->remote[kept - 1], acl->remote[i]) != 0)
            acl->remote[kept++] = acl->remote[i];
    acl->nremote = kept;
    for (size_t i = 0; i < acl->nrules; i++) {
        rule *r = &acl->rules[i];
        if (r->subject_kind != 3)
            continue;
        const char **hit = bsearch(&r->info.subject, acl->remote, acl->nremote,
                                   sizeof *acl->remote, cmp_str);
        r->subject_idx = (uint32_t)(hit - acl->remote);
    }
    return 0;
}

int cg_acl__remote_index(const cg_acl *acl, const char *subject)
{
    const char **hit = acl->nremote ? bsearch(&subject, acl->remote, acl->nremote,
                                              sizeof *acl->remote, cmp_str)
                                    : NULL;
    return hit ? (int)(hit - acl->remote) : -1;
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
            /* not a local principal: a remote user or a whole remote
             * domain (SPEC 7), in its one spelling */
            char norm[CG_REMOTE_USER_MAX + 1];
            if (!ok && cg_remote_user(s, strlen(s), true, norm, sizeof norm, NULL)) {
                memcpy((char *)s, norm, strlen(s)); /* only the domain's case differs */
                r->subject_kind = 3;
                ok = true;
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
    if (index_remote(acl) < 0) {
        cg_acl_free(acl);
        *error_r = "out of memory";
        return NULL;
    }
    size_t nb = (np + ng + 1 + acl->nremote) * 3;
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
        bucket *bk = &acl->buckets[bucket_index(acl, r)];
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
        bucket *bk = &acl->buckets[bucket_index(acl, r)];
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
    free(acl->remote);
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

