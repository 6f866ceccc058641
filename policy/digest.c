/* digest.c — HTTP Digest (RFC 7616) for the HTTP gateway: strict parsing
 * of the credentials, stateless nonces, verification against the stored
 * HA1, and a bounded process-wide nonce-count table against replay. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/cg_base64.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/digest.h"
#include "policy/identity.h"

/* 8-byte time, 8 random bytes (clients challenged in the same second get
 * different nonces, so their nonce-counts never collide), 32-byte HMAC */
#define NONCE_RAW 48
#define MAX_PARAMS 24
#define MAX_VALUE 1024

/* ---- hashing ------------------------------------------------------------ */

static const EVP_MD *alg_md(int alg)
{
    return alg == CG_DIGEST_SHA256 ? EVP_sha256() : alg == CG_DIGEST_MD5 ? EVP_md5() : NULL;
}

static const char *alg_name(int alg)
{
    return alg == CG_DIGEST_SHA256 ? "SHA-256" : "MD5";
}

/* hex(H(parts[0] ":" parts[1] ":" ...)) */
static int hash_join(int alg, const char *const *parts, size_t n, char out[65])
{
    const EVP_MD *md = alg_md(alg);
    if (!md)
        return CG_E_INVAL;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    int ok = c && EVP_DigestInit_ex(c, md, NULL);
    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0)
            ok = EVP_DigestUpdate(c, ":", 1);
        ok = ok && EVP_DigestUpdate(c, parts[i], strlen(parts[i]));
    }
    ok = ok && EVP_DigestFinal_ex(c, h, &hl);
    EVP_MD_CTX_free(c);
    if (!ok)
        return CG_E_CRYPTO;
    cg_hex_encode(h, hl, out);
    return 0;
}

int cg_digest_ha1(int alg, const char *username, const char *realm,
                  const char *password, char out[65])
{
    const char *p[] = { username, realm, password };
    return hash_join(alg, p, 3, out);
}

int cg_digest_response(int alg, const char *ha1_hex, const char *nonce,
                       const char *nc, const char *cnonce, const char *method,
                       const char *uri, char out[65])
{
    char ha2[65], ha1[65];
    size_t want = alg == CG_DIGEST_SHA256 ? 64 : 32;
    if (!ha1_hex || strlen(ha1_hex) != want)
        return CG_E_INVAL;
    /* stored HA1 may be written in either case; the hash input is lowercase */
    for (size_t i = 0; i <= want; i++)
        ha1[i] = (char)(ha1_hex[i] >= 'A' && ha1_hex[i] <= 'F' ? ha1_hex[i] + 32 : ha1_hex[i]);
    const char *a2[] = { method, uri };
    int rc = hash_join(alg, a2, 2, ha2);
    if (rc < 0)
        return rc;
    const char *r[] = { ha1, nonce, nc, cnonce, "auth", ha2 };
    return hash_join(alg, r, 6, out);
}

/* ---- nonces ------------------------------------------------------------- */

/* HMAC-SHA256(secret, time || random || realm) */
static void nonce_mac(const cg_digest_ctx *ctx, const uint8_t head[16], uint8_t mac[32])
{
    uint8_t msg[16 + 256];
    size_t rl = strlen(ctx->realm);
    if (rl > 256)
        rl = 256;
    memcpy(msg, head, 16);
    memcpy(msg + 16, ctx->realm, rl);
    unsigned ml = 32;
    HMAC(EVP_sha256(), ctx->secret, sizeof ctx->secret, msg, 16 + rl, mac, &ml);
}

void cg_digest_nonce(const cg_digest_ctx *ctx, int64_t now, char out[CG_DIGEST_NONCE_LEN])
{
    uint8_t raw[NONCE_RAW];
    uint64_t t = (uint64_t)now;
    for (int i = 0; i < 8; i++)
        raw[i] = (uint8_t)(t >> (56 - 8 * i));
    if (cg_random(raw + 8, 8) < 0)
        memset(raw + 8, 0, 8); /* still authentic; only less distinct */
    nonce_mac(ctx, raw, raw + 16);
    cg_b64url_encode(raw, sizeof raw, out, CG_DIGEST_NONCE_LEN);
}

/* 0 and *ts for one of our nonces, CG_E_AUTH for anything else. */
static int nonce_check(const cg_digest_ctx *ctx, const char *nonce, int64_t *ts,
                       uint8_t key[16])
{
    uint8_t raw[NONCE_RAW + 3], mac[32];
    if (cg_b64url_decode(nonce, strlen(nonce), raw, sizeof raw) != NONCE_RAW)
        return CG_E_AUTH;
    nonce_mac(ctx, raw, mac);
    if (!cg_ct_equal(mac, raw + 16, 32))
        return CG_E_AUTH;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = t << 8 | raw[i];
    *ts = (int64_t)t;
    memcpy(key, raw + 16, 16);
    return 0;
}

static unsigned lifetime(const cg_digest_ctx *ctx)
{
    return ctx->nonce_lifetime ? ctx->nonce_lifetime : CG_DIGEST_NONCE_LIFETIME;
}

/* ---- challenges --------------------------------------------------------- */

/* RFC 7230 quoted-string body: '"' and '\\' escaped; false if it does
 * not fit or holds a byte a quoted-string cannot carry. */
static bool quote(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f || n + 3 > cap)
            return false;
        if (c == '"' || c == '\\')
            out[n++] = '\\';
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

size_t cg_digest_challenge(const cg_digest_ctx *ctx, int alg, bool stale,
                           int64_t now, char *out, size_t cap)
{
    char nonce[CG_DIGEST_NONCE_LEN], realm[256], opq[128], op[160] = "";
    cg_digest_nonce(ctx, now, nonce);
    if (!ctx->realm || !quote(ctx->realm, realm, sizeof realm) ||
        (ctx->opaque && !quote(ctx->opaque, opq, sizeof opq))) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    if (ctx->opaque)
        snprintf(op, sizeof op, ", opaque=\"%s\"", opq);
    int n = snprintf(out, cap, "Digest realm=\"%s\", qop=\"auth\", algorithm=%s, nonce=\"%s\"%s%s",
                     realm, alg_name(alg), nonce, op, stale ? ", stale=true" : "");
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

size_t cg_digest_challenges(const cg_digest_ctx *ctx, bool stale, int64_t now,
                            char *out, size_t cap)
{
    char a[CG_DIGEST_CHALLENGE_MAX], b[CG_DIGEST_CHALLENGE_MAX];
    if (!cg_digest_challenge(ctx, CG_DIGEST_SHA256, stale, now, a, sizeof a) ||
        !cg_digest_challenge(ctx, CG_DIGEST_MD5, stale, now, b, sizeof b))
        return 0;
    int n = snprintf(out, cap, "WWW-Authenticate: %s\r\nWWW-Authenticate: %s\r\n", a, b);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* ---- parsing (RFC 7235 section 2.1 auth-param, RFC 7230 3.2.6) --------- */

typedef struct dparams {
    const char *username, *realm, *nonce, *uri, *response, *algorithm,
        *cnonce, *opaque, *qop, *nc, *userhash;
    bool username_ext;
    char buf[CG_DIGEST_MAX_HEADER + 1];
} dparams;

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parses the params after "Digest". Values are unquoted into d->buf. */
static int parse_params(const char *header, dparams *d, const char **error_r)
{
    size_t hl = strlen(header);
    if (hl > CG_DIGEST_MAX_HEADER) {
        *error_r = "Digest credentials too long";
        return CG_E_AUTH;
    }
    if (strncasecmp(header, "Digest", 6) != 0 || (header[6] != ' ' && header[6] != '\t')) {
        *error_r = "not Digest credentials";
        return CG_E_AUTH;
    }
    static const struct { const char *name; size_t off; } known[] = {
        { "username", offsetof(dparams, username) }, { "realm", offsetof(dparams, realm) },
        { "nonce", offsetof(dparams, nonce) },       { "uri", offsetof(dparams, uri) },
        { "response", offsetof(dparams, response) }, { "algorithm", offsetof(dparams, algorithm) },
        { "cnonce", offsetof(dparams, cnonce) },     { "opaque", offsetof(dparams, opaque) },
        { "qop", offsetof(dparams, qop) },           { "nc", offsetof(dparams, nc) },
        { "userhash", offsetof(dparams, userhash) },
    };
    const char *p = skip_ows(header + 6);
    char *w = d->buf, *wend = d->buf + sizeof d->buf;
    unsigned count = 0;
    for (;;) {
        const char *ns = p;
        while (cg_is_tchar((unsigned char)*p))
            p++;
        size_t nl = (size_t)(p - ns);
        if (nl == 0 || ++count > MAX_PARAMS) {
            *error_r = nl ? "too many Digest parameters" : "malformed Digest parameter";
            return CG_E_AUTH;
        }
        p = skip_ows(p);
        if (*p++ != '=') {
            *error_r = "malformed Digest parameter";
            return CG_E_AUTH;
        }
        p = skip_ows(p);
        char *val = w;
        if (*p == '"') {
            p++;
            while (*p != '"') {
                unsigned char c = (unsigned char)*p;
                if (c == '\\') {
                    c = (unsigned char)*++p;
                    if (c == '\0' || (c < 0x20 && c != '\t') || c == 0x7f)
                        goto bad_value;
                } else if (c == '\0' || (c < 0x20 && c != '\t') || c == 0x7f) {
                    goto bad_value;
                }
                if (w >= wend - 1)
                    goto bad_value;
                *w++ = (char)c;
                p++;
            }
            p++;
        } else {
            while (cg_is_tchar((unsigned char)*p)) {
                if (w >= wend - 1)
                    goto bad_value;
                *w++ = *p++;
            }
            if (w == val)
                goto bad_value;
        }
        *w++ = '\0';
        if ((size_t)(w - val) > MAX_VALUE)
            goto bad_value;
        if (nl == 9 && strncasecmp(ns, "username*", 9) == 0)
            d->username_ext = true;
        for (size_t k = 0; k < CG_ARRAY_LEN(known); k++) {
            if (strlen(known[k].name) == nl && strncasecmp(ns, known[k].name, nl) == 0) {
                const char **slot = (const char **)((char *)d + known[k].off);
                if (*slot) {
                    *error_r = "duplicate Digest parameter";
                    return CG_E_AUTH;
                }
                *slot = val;
            }
        }
        /* unknown parameters are ignored (RFC 7616 section 3.4) */
        p = skip_ows(p);
        if (*p == '\0')
            return 0;
        if (*p++ != ',') {
            *error_r = "malformed Digest parameter list";
            return CG_E_AUTH;
        }
        p = skip_ows(p);
    }
bad_value:
    *error_r = "malformed Digest parameter value";
    return CG_E_AUTH;
}

/* ---- replay table ------------------------------------------------------- */

#define SHARDS 16
#define SHARD_SLOTS (CG_DIGEST_REPLAY_SLOTS / SHARDS)

typedef struct slot {
    uint8_t key[16]; /* first half of the nonce's MAC: unique per nonce */
    int64_t ts;
    uint32_t nc;
    bool used;
} slot;

static struct shard {
    pthread_mutex_t mu;
    int64_t watermark; /* newest timestamp ever evicted: older is stale */
    bool have_watermark;
    slot slots[SHARD_SLOTS];
} shards[SHARDS] = {
#define SH { PTHREAD_MUTEX_INITIALIZER, 0, false, { { { 0 }, 0, 0, false } } }
    SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH, SH,
#undef SH
};

void cg_digest_replay_reset(void)
{
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].mu);
        memset(shards[i].slots, 0, sizeof shards[i].slots);
        shards[i].have_watermark = false;
        shards[i].watermark = 0;
        pthread_mutex_unlock(&shards[i].mu);
    }
}

/* Records nc for the nonce: 0 when it is higher than any seen, CG_E_AUTH on
 * a replay, CG_E_AGAIN when the nonce may have been evicted (stale). */
static int replay_check(const uint8_t key[16], int64_t ts, uint32_t nc)
{
    struct shard *sh = &shards[key[0] % SHARDS];
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    slot *hit = NULL, *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < SHARD_SLOTS; i++) {
        slot *s = &sh->slots[i];
        if (!s->used) {
            if (!free_slot)
                free_slot = s;
        } else if (memcmp(s->key, key, 16) == 0) {
            hit = s;
            break;
        } else if (!oldest || s->ts < oldest->ts) {
            oldest = s;
        }
    }
    slot *victim = free_slot ? free_slot : oldest;
    if (hit) {
        if (nc <= hit->nc)
            rc = CG_E_AUTH;
        else
            hit->nc = nc;
    } else if (sh->have_watermark && ts <= sh->watermark) {
        rc = CG_E_AGAIN; /* might have been used and evicted: refuse reuse */
    } else {
        if (victim->used) {
            if (!sh->have_watermark || victim->ts > sh->watermark)
                sh->watermark = victim->ts;
            sh->have_watermark = true;
        }
        if (sh->have_watermark && ts <= sh->watermark) {
            rc = CG_E_AGAIN;
            victim->used = false;
        } else {
            memcpy(victim->key, key, 16);
            victim->ts = ts;
            victim->nc = nc;
            victim->used = true;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- verification ------------------------------------------------------- */

static int parse_nc(const char *s, uint32_t *out)
{
    if (!s || strlen(s) != 8)
        return CG_E_AUTH;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return CG_E_AUTH;
        v = v << 4 | (uint32_t)d;
    }
    if (v == 0)
        return CG_E_AUTH;
    *out = v;
    return 0;
}

int cg_digest_verify_at(const cg_digest_ctx *ctx, const char *header,
                        const char *method, const char *target, int64_t now,
                        cg_digest_ha1_fn lookup, void *lctx,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    *error_r = NULL;
    if (!ctx || !ctx->realm || !method) {
        *error_r = "Digest is not configured (no realm)";
        return CG_E_AUTH;
    }
    dparams d;
    memset(&d, 0, offsetof(dparams, buf));
    if (!header || parse_params(header, &d, error_r) < 0)
        return CG_E_AUTH;
    if (d.username_ext || (d.userhash && strcasecmp(d.userhash, "false") != 0)) {
        *error_r = "Digest username* and userhash are not supported";
        return CG_E_AUTH;
    }
    if (!d.username || !d.realm || !d.nonce || !d.uri || !d.response || !d.cnonce ||
        !d.qop || !d.nc) {
        *error_r = "Digest credentials lack a required parameter (qop=auth needs nc and cnonce)";
        return CG_E_AUTH;
    }
    int alg;
    if (!d.algorithm || strcasecmp(d.algorithm, "MD5") == 0)
        alg = CG_DIGEST_MD5; /* RFC 7616 3.3: absent means MD5 */
    else if (strcasecmp(d.algorithm, "SHA-256") == 0)
        alg = CG_DIGEST_SHA256;
    else {
        *error_r = "unsupported Digest algorithm";
        return CG_E_AUTH;
    }
    if (strcmp(d.qop, "auth") != 0) {
        *error_r = "unsupported Digest qop (only auth)";
        return CG_E_AUTH;
    }
    if (strcmp(d.realm, ctx->realm) != 0) {
        *error_r = "Digest realm does not match";
        return CG_E_AUTH;
    }
    /* RFC 7616 3.4.6: the uri must name the request target, else a
     * response captured for one resource would open another */
    if (!target || strcmp(d.uri, target) != 0) {
        *error_r = "Digest uri does not match the request target";
        return CG_E_AUTH;
    }
    if (ctx->opaque && (!d.opaque || strcmp(d.opaque, ctx->opaque) != 0)) {
        *error_r = "Digest opaque does not match";
        return CG_E_AUTH;
    }
    uint32_t nc;
    if (parse_nc(d.nc, &nc) < 0) {
        *error_r = "malformed Digest nc";
        return CG_E_AUTH;
    }
    int64_t ts;
    uint8_t key[16];
    if (nonce_check(ctx, d.nonce, &ts, key) < 0) {
        *error_r = "Digest nonce was not issued here";
        return CG_E_AUTH;
    }
    size_t rlen = alg == CG_DIGEST_SHA256 ? 64 : 32;
    /* an unknown user costs the same work as a known one */
    static const char zero_ha1[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    const char *ha1 = lookup ? lookup(lctx, d.username, d.realm, alg_name(alg)) : NULL;
    bool known = ha1 != NULL && strlen(ha1) == rlen;
    char expect[65];
    int rc = cg_digest_response(alg, known ? ha1 : zero_ha1 + (64 - rlen), d.nonce, d.nc,
                                d.cnonce, method, d.uri, expect);
    if (rc < 0) {
        *error_r = "Digest computation failed";
        return CG_E_AUTH;
    }
    char got[65];
    size_t gl = strlen(d.response);
    bool match = gl == rlen;
    for (size_t i = 0; match && i < rlen; i++)
        got[i] = (char)(d.response[i] >= 'A' && d.response[i] <= 'F' ? d.response[i] + 32
                                                                     : d.response[i]);
    match = match && cg_ct_equal(got, expect, rlen) && known;
    if (!match) {
        *error_r = known ? "Digest response is wrong" : "unknown Digest user or realm";
        return CG_E_AUTH;
    }
    /* RFC 7616 3.3: stale only when the response itself was right */
    if (now - ts > (int64_t)lifetime(ctx) || ts - now > 60) {
        *error_r = "Digest nonce is stale";
        return CG_E_AGAIN;
    }
    rc = replay_check(key, ts, nc);
    if (rc == CG_E_AUTH) {
        *error_r = "Digest nonce count replayed";
        return CG_E_AUTH;
    }
    if (rc == CG_E_AGAIN) {
        *error_r = "Digest nonce evicted from the replay table";
        return CG_E_AGAIN;
    }
    return 0;
}

typedef struct snap_lookup {
    const cg_snapshot *snap;
    const cg_principal *who;
} snap_lookup;

static const char *snapshot_ha1(void *lctx, const char *username, const char *realm,
                                const char *alg)
{
    snap_lookup *l = lctx;
    l->who = cg_snapshot_principal_by_name(l->snap, username);
    return l->who ? cg_identity_digest_ha1(l->snap, l->who, realm, alg) : NULL;
}

int cg_digest_verify(const cg_digest_ctx *ctx, const char *header,
                     const char *method, const char *target,
                     const cg_snapshot *snap, const cg_principal **who,
                     const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    snap_lookup l = { snap, NULL };
    *who = NULL;
    int rc = cg_digest_verify_at(ctx, header, method, target, (int64_t)time(NULL),
                                 snapshot_ha1, &l, error_r);
    if (rc < 0)
        return rc;
    *who = l.who;
    if (!l.who->enabled) {
        *error_r = "principal is disabled";
        return CG_E_AUTH;
    }
    return 0;
}
