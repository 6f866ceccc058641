/* store/policy_cache.c — the verified copy of a loaded policy
 * (policy_cache.h): recording the store's visitor calls, replaying them,
 * and the integrity-checked file. */
#include "store/policy_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"

static const char magic[] = "cpmgate-policy-cache-v1\n";
#define MAGIC_LEN (sizeof magic - 1)
#define HEAD_LEN (MAGIC_LEN + 32 + 8)
#define CACHE_MAX ((size_t)1 << 34) /* 16 GiB: far beyond any policy */
#define NO_STR 0xffffffffu

struct cg_pcache {
    cg_buf body;
};

/* Every callback of the store's visitor is recorded below: one more must
 * be added there too, or the copy would silently lack what it carries. */
_Static_assert(sizeof(cg_pstore_visitor) == 8 * sizeof(int (*)(void)),
               "a new cg_pstore_visitor callback needs its entry in the policy cache");

/* ---- recording ------------------------------------------------------------ */

static void put_i64(cg_buf *b, int64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)((uint64_t)v >> (8 * i));
    cg_buf_add(b, x, 8);
}

static void put_blob(cg_buf *b, const void *p, size_t n, bool null)
{
    uint8_t x[4];
    uint32_t len = null ? NO_STR : (uint32_t)n;
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(len >> (8 * i));
    cg_buf_add(b, x, 4);
    if (!null)
        cg_buf_add(b, p, n);
}

static void put_str(cg_buf *b, const char *s) { put_blob(b, s, s ? strlen(s) : 0, !s); }

static void tag(cg_buf *b, char t) { cg_buf_add(b, &t, 1); }

#define REC(ctx) (&((cg_pcache *)(ctx))->body)
#define DONE(ctx) (REC(ctx)->failed ? CG_E_NOMEM : 0)

static int r_principal(void *ctx, int64_t id, const char *name, const char *kind,
                       const char *mailbox, bool enabled)
{
    cg_buf *b = REC(ctx);
    tag(b, 'P'); put_i64(b, id); put_str(b, name); put_str(b, kind); put_str(b, mailbox);
    put_i64(b, enabled);
    return DONE(ctx);
}

static int r_credential(void *ctx, int64_t id, int64_t principal_id, const char *type,
                        const char *value, const uint8_t *secret, size_t secret_len,
                        const char *ha1_md5, const char *ha1_sha256)
{
    cg_buf *b = REC(ctx);
    tag(b, 'C'); put_i64(b, id); put_i64(b, principal_id); put_str(b, type); put_str(b, value);
    put_blob(b, secret, secret_len, !secret); put_str(b, ha1_md5); put_str(b, ha1_sha256);
    return DONE(ctx);
}

static int r_group(void *ctx, int64_t id, const char *name)
{
    cg_buf *b = REC(ctx);
    tag(b, 'G'); put_i64(b, id); put_str(b, name);
    return DONE(ctx);
}

static int r_member(void *ctx, int64_t group_id, int64_t principal_id)
{
    cg_buf *b = REC(ctx);
    tag(b, 'M'); put_i64(b, group_id); put_i64(b, principal_id);
    return DONE(ctx);
}

static int r_rule(void *ctx, int64_t id, const char *effect, const char *subject,
                  const char *service, const char *pattern, unsigned rights)
{
    cg_buf *b = REC(ctx);
    tag(b, 'R'); put_i64(b, id); put_str(b, effect); put_str(b, subject); put_str(b, service);
    put_str(b, pattern); put_i64(b, rights);
    return DONE(ctx);
}

static int r_pubkey(void *ctx, int64_t id, const char *key_id, int64_t principal_id,
                    const char *alg, const char *pem)
{
    cg_buf *b = REC(ctx);
    tag(b, 'K'); put_i64(b, id); put_str(b, key_id); put_i64(b, principal_id); put_str(b, alg);
    put_str(b, pem);
    return DONE(ctx);
}

static int r_require_signed(void *ctx, const char *pattern)
{
    cg_buf *b = REC(ctx);
    tag(b, 'S'); put_str(b, pattern);
    return DONE(ctx);
}

static int r_peer(void *ctx, const char *domain, int64_t principal_id, const char *auth)
{
    cg_buf *b = REC(ctx);
    tag(b, 'E'); put_str(b, domain); put_i64(b, principal_id); put_str(b, auth);
    return DONE(ctx);
}

int cg_pcache_record(cg_pstore *s, cg_pcache **out, const char **error_r)
{
    static const cg_pstore_visitor rec = {
        .principal = r_principal, .credential = r_credential, .group = r_group,
        .member = r_member, .rule = r_rule, .pubkey = r_pubkey,
        .require_signed = r_require_signed, .peer = r_peer,
    };
    cg_pcache *c = calloc(1, sizeof *c);
    if (!c) {
        *error_r = "out of memory";
        return CG_E_NOMEM;
    }
    cg_buf_init(&c->body, CACHE_MAX);
    int rc = cg_pstore_load(s, &rec, c, error_r);
    if (rc == CG_E_NOMEM)
        *error_r = "out of memory recording the policy";
    if (rc < 0) {
        cg_pcache_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cg_pcache_free(cg_pcache *c)
{
    if (!c)
        return;
    cg_buf_free(&c->body);
    free(c);
}

/* ---- replay --------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static int64_t get_i64(rd *r)
{
    if (r->end - r->p < 8) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return (int64_t)v;
}

/* The strings of one entry, copied out of the record to be NUL-terminated
 * (an entry has at most six), freed after its callback. */
typedef struct strs {
    char *s[6];
    int n;
} strs;

static const uint8_t *get_blob(rd *r, size_t *len)
{
    if (r->end - r->p < 4) {
        r->bad = true;
        return NULL;
    }
    uint32_t n = 0;
    for (int i = 0; i < 4; i++)
        n |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    if (n == NO_STR) {
        *len = 0;
        return NULL;
    }
    if ((size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    *len = n;
    return at;
}

static const char *get_str(rd *r, strs *k)
{
    size_t n;
    const uint8_t *at = get_blob(r, &n);
    if (!at || r->bad)
        return NULL;
    if (memchr(at, 0, n) || k->n >= 6) {
        r->bad = true;
        return NULL;
    }
    char *s = malloc(n + 1);
    if (!s) {
        r->bad = true;
        return NULL;
    }
    memcpy(s, at, n);
    s[n] = '\0';
    k->s[k->n++] = s;
    return s;
}

static void strs_free(strs *k)
{
    for (int i = 0; i < k->n; i++)
        free(k->s[i]);
    k->n = 0;
}

/* One entry into v; 0, the callback's code, or CG_E_PARSE. */
static int replay_one(rd *r, const cg_pstore_visitor *v, void *ctx, strs *k)
{
    char t = (char)*r->p++;
    int64_t a, b2;
    const char *s1, *s2, *s3, *s4;
    size_t n;
    const uint8_t *blob;
    switch (t) {
    case 'P':
        a = get_i64(r); s1 = get_str(r, k); s2 = get_str(r, k); s3 = get_str(r, k);
        b2 = get_i64(r);
        return r->bad ? CG_E_PARSE : v->principal ? v->principal(ctx, a, s1, s2, s3, b2 != 0) : 0;
    case 'C':
        a = get_i64(r); b2 = get_i64(r); s1 = get_str(r, k); s2 = get_str(r, k);
        blob = get_blob(r, &n); s3 = get_str(r, k); s4 = get_str(r, k);
        return r->bad ? CG_E_PARSE
               : v->credential ? v->credential(ctx, a, b2, s1, s2, blob, n, s3, s4) : 0;
    case 'G':
        a = get_i64(r); s1 = get_str(r, k);
        return r->bad ? CG_E_PARSE : v->group ? v->group(ctx, a, s1) : 0;
    case 'M':
        a = get_i64(r); b2 = get_i64(r);
        return r->bad ? CG_E_PARSE : v->member ? v->member(ctx, a, b2) : 0;
    case 'R': {
        a = get_i64(r); s1 = get_str(r, k); s2 = get_str(r, k); s3 = get_str(r, k);
        s4 = get_str(r, k);
        int64_t rights = get_i64(r);
        return r->bad ? CG_E_PARSE
               : v->rule ? v->rule(ctx, a, s1, s2, s3, s4, (unsigned)rights) : 0;
    }
    case 'K':
        a = get_i64(r); s1 = get_str(r, k); b2 = get_i64(r); s2 = get_str(r, k);
        s3 = get_str(r, k);
        return r->bad ? CG_E_PARSE : v->pubkey ? v->pubkey(ctx, a, s1, b2, s2, s3) : 0;
    case 'S':
        s1 = get_str(r, k);
        return r->bad ? CG_E_PARSE : v->require_signed ? v->require_signed(ctx, s1) : 0;
    case 'E':
        s1 = get_str(r, k); a = get_i64(r); s2 = get_str(r, k);
        return r->bad ? CG_E_PARSE : v->peer ? v->peer(ctx, s1, a, s2) : 0;
    default:
        return CG_E_PARSE;
    }
}

int cg_pcache_replay(void *src, const cg_pstore_visitor *v, void *ctx, const char **error_r)
{
    const cg_pcache *c = src;
    rd r = { (const uint8_t *)c->body.p, (const uint8_t *)c->body.p + c->body.len, false };
    strs k = { .n = 0 };
    int rc = 0;
    while (rc == 0 && r.p < r.end) {
        rc = replay_one(&r, v, ctx, &k);
        strs_free(&k);
    }
    if (rc == CG_E_PARSE)
        *error_r = "the policy cache holds a malformed entry";
    return rc;
}

/* ---- the file ------------------------------------------------------------- */

static int digest(const void *p, size_t n, uint8_t out[32])
{
    unsigned len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 ? 0 : CG_E_CRYPTO;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

int cg_pcache_write(const cg_pcache *c, const char *path, const char **error_r)
{
    uint8_t head[HEAD_LEN];
    memcpy(head, magic, MAGIC_LEN);
    if (digest(c->body.p ? c->body.p : "", c->body.len, head + MAGIC_LEN) < 0) {
        *error_r = "cannot compute the digest of the policy cache";
        return CG_E_CRYPTO;
    }
    for (int i = 0; i < 8; i++)
        head[MAGIC_LEN + 32 + i] = (uint8_t)((uint64_t)c->body.len >> (8 * i));
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        *error_r = "policy cache path too long";
        return CG_E_INVAL;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        *error_r = cg_say("cannot create %s: %s", tmp, strerror(errno));
        return CG_E_IO;
    }
    bool ok = write_all(fd, head, sizeof head) && write_all(fd, c->body.p, c->body.len) &&
              fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        *error_r = cg_say("cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return CG_E_IO;
    }
    if (cg_db_fsync_dir_of(path) < 0) {
        *error_r = cg_say("cannot fsync the directory of %s", path);
        return CG_E_IO;
    }
    return 0;
}

int cg_pcache_read(const char *path, cg_pcache **out, int64_t *written_r, const char **error_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error_r = cg_say("cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? CG_E_NOTFOUND : CG_E_IO;
    }
    struct stat st;
    uint8_t head[HEAD_LEN];
    ssize_t got = fstat(fd, &st) == 0 ? read(fd, head, sizeof head) : -1;
    uint64_t len = 0;
    for (int i = 0; got == (ssize_t)sizeof head && i < 8; i++)
        len |= (uint64_t)head[MAGIC_LEN + 32 + i] << (8 * i);
    if (got != (ssize_t)sizeof head || memcmp(head, magic, MAGIC_LEN) != 0 ||
        (uint64_t)st.st_size != HEAD_LEN + len || len > CACHE_MAX) {
        close(fd);
        *error_r = cg_say("%s is not a whole cpmgate policy cache", path);
        return CG_E_PARSE;
    }
    cg_pcache *c = calloc(1, sizeof *c);
    if (c)
        cg_buf_init(&c->body, CACHE_MAX);
    if (!c || !cg_buf_reserve(&c->body, (size_t)len)) {
        close(fd);
        cg_pcache_free(c);
        *error_r = "out of memory reading the policy cache";
        return CG_E_NOMEM;
    }
    size_t have = 0;
    while (have < len) {
        ssize_t n = read(fd, c->body.p + have, (size_t)len - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    c->body.len = have;
    uint8_t md[32];
    if (have != len || digest(c->body.p ? c->body.p : "", have, md) < 0 ||
        memcmp(md, head + MAGIC_LEN, 32) != 0) {
        cg_pcache_free(c);
        *error_r = cg_say("%s does not match its digest (damaged): not used", path);
        return CG_E_PARSE;
    }
    if (written_r)
        *written_r = (int64_t)st.st_mtime;
    *out = c;
    return 0;
}
