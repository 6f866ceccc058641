/* store/audit_canon.c — canonical JSON of an audit record, its strict parser,
 * the SHA-256 chain step and checkpoint signatures (SPEC section 5).
 * Pure functions: no I/O except loading key files. */
#include "store/audit_canon.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/cg_error.h"
#include "common/cg_buf.h"
#include "common/cg_util.h"

/* ---- encoding ----------------------------------------------------------- */

/* The record's fields after seq and time, in canon order: S a string (null
 * when NULL), N a number (null when negative), C the connection id (null
 * when 0). The encoder and the parser both walk this one list. */
#define CANON_FIELDS(S, N, C)                                                      \
    S(txid) S(request_id) C(conn_id) S(listener) S(client) S(principal) S(method)  \
    S(tls_version) S(tls_cipher) S(service) S(operation) S(resource) S(decision)   \
    N(rule_id) S(result) N(bytes_in) N(bytes_out) S(content_sha256) S(key_id)      \
    S(validation) S(reason)
/* Appended after reason, each only when not null (see audit_canon.h). */
#define CANON_OPTIONAL(O) O(node) O(originator) O(origin_txid)

/* Bytes a canon string carries as they are: printable ASCII but '"' and
 * '\\'. */
static const bool plain[256] = {
    [0x20 ... 0x21] = true, /* '"' is 0x22 */
    [0x23 ... 0x5b] = true, /* '\\' is 0x5c */
    [0x5d ... 0x7e] = true,
};

/* The JSON text for the byte at s[at], which is not plain: its escape,
 * the whole UTF-8 sequence it begins, or U+FFFD for a byte that begins no
 * strict UTF-8 (one each). Writes at most 6 bytes per input byte into out;
 * returns their count and sets *used to the input bytes taken. */
static size_t special(const unsigned char *s, size_t len, size_t at, char out[8], size_t *used)
{
    unsigned c = s[at];
    const char *esc = NULL;
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    default: break;
    }
    *used = 1;
    if (esc) {
        memcpy(out, esc, 2);
        return 2;
    }
    if (c < 0x20) {
        static const char hex[] = "0123456789abcdef";
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    size_t next = at;
    if (cg_utf8_next(s, len, &next) < 0) {
        memcpy(out, "\xef\xbf\xbd", 3);
        return 3;
    }
    *used = next - at; /* 2 to 4 bytes, copied as they are */
    memcpy(out, s + at, *used);
    return *used;
}

/* ,"key": and a JSON string, or null. Where the worst case (6 bytes out
 * per byte in) fits, it is written straight into the storage; otherwise
 * piece by piece through cg_buf, which fails exactly when the text does
 * not fit. */
static void put_str(cg_buf *b, const char *key, size_t klen, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    const unsigned char *u = (const unsigned char *)s;
    if (!b->max && !b->failed && b->cap - 1 - b->len >= klen + 6 * len + 6) {
        char *o = b->p + b->len;
        memcpy(o, key, klen);
        o += klen;
        if (!s) {
            memcpy(o, "null", 4);
            o += 4;
        } else {
            *o++ = '"';
            for (size_t i = 0; i < len;) {
                size_t run = i;
                while (i < len && plain[u[i]])
                    i++;
                memcpy(o, u + run, i - run);
                o += i - run;
                if (i < len) {
                    size_t used;
                    o += special(u, len, i, o, &used);
                    i += used;
                }
            }
            *o++ = '"';
        }
        *o = '\0';
        b->len = (size_t)(o - b->p);
        return;
    }
    cg_buf_add(b, key, klen);
    if (!s) {
        cg_buf_add(b, "null", 4);
        return;
    }
    cg_buf_add(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        size_t run = i;
        while (i < len && plain[u[i]])
            i++;
        cg_buf_add(b, u + run, i - run);
        if (i < len) {
            char out[8];
            size_t used, n = special(u, len, i, out, &used);
            cg_buf_add(b, out, n);
            i += used;
        }
    }
    cg_buf_add(b, "\"", 1);
}

/* Decimal as printf's %llu / %lld writes it, without printf's machinery
 * (a few numbers per record). */
static void put_u64(cg_buf *b, uint64_t v, bool null)
{
    if (null) {
        cg_buf_str(b, "null");
        return;
    }
    char d[20]; /* UINT64_MAX has 20 digits */
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    cg_buf_add(b, d + i, sizeof d - i);
}

static void put_i64(cg_buf *b, int64_t v, bool null)
{
    if (!null && v < 0) {
        cg_buf_add(b, "-", 1);
        put_u64(b, (uint64_t)0 - (uint64_t)v, false);
        return;
    }
    put_u64(b, (uint64_t)v, null);
}

int cg_audit_canon(char *out, size_t cap, uint64_t seq, const char *time,
                   const cg_audit_rec *r)
{
    cg_buf b;
    cg_buf_init_fixed(&b, out, cap);
    cg_buf_str(&b, "{\"seq\":");
    put_u64(&b, seq, false);
#define KEY(name) ",\"" #name "\":", sizeof ",\"" #name "\":" - 1
    put_str(&b, KEY(time), time);
#define S(name) put_str(&b, KEY(name), r->name);
#define N(name) cg_buf_add(&b, KEY(name)); put_i64(&b, r->name, r->name < 0);
#define C(name) cg_buf_add(&b, KEY(name)); put_u64(&b, r->name, r->name == 0);
    CANON_FIELDS(S, N, C)
#undef S
#undef N
#undef C
#define O(name) if (r->name) put_str(&b, KEY(name), r->name);
    CANON_OPTIONAL(O)
#undef O
#undef KEY
    cg_buf_add(&b, "}", 1);
    if (b.failed)
        return CG_E_LIMIT;
    return (int)b.len;
}

/* ---- strict parser ------------------------------------------------------ */

typedef struct rbuf {
    const char *p, *end;
    char *o, *oend;
} rbuf;

static bool lit(rbuf *r, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, s, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* A JSON string (or null) into the output arena; *out NULL for null. */
static bool get_str(rbuf *r, const char **out)
{
    if (lit(r, "null")) {
        *out = NULL;
        return true;
    }
    if (!lit(r, "\""))
        return false;
    char *start = r->o;
    while (r->p < r->end && *r->p != '"') {
        if (r->o + 4 >= r->oend)
            return false;
        unsigned char c = (unsigned char)*r->p;
        if (c < 0x20)
            return false;
        if (c != '\\') {
            *r->o++ = (char)c;
            r->p++;
            continue;
        }
        if (r->end - r->p < 2)
            return false;
        char e = r->p[1];
        r->p += 2;
        switch (e) {
        case '"': *r->o++ = '"'; break;
        case '\\': *r->o++ = '\\'; break;
        case '/': *r->o++ = '/'; break;
        case 'b': *r->o++ = '\b'; break;
        case 'f': *r->o++ = '\f'; break;
        case 'n': *r->o++ = '\n'; break;
        case 'r': *r->o++ = '\r'; break;
        case 't': *r->o++ = '\t'; break;
        case 'u': {
            if (r->end - r->p < 4)
                return false;
            int v = 0;
            for (int i = 0; i < 4; i++) {
                int h = cg_hexval((unsigned char)r->p[i]);
                if (h < 0)
                    return false;
                v = v << 4 | h;
            }
            r->p += 4;
            /* Only what the encoder writes: control characters. Anything
             * else is not canonical and fails the re-encode comparison. */
            if (v == 0 || v >= 0x80)
                return false;
            *r->o++ = (char)v;
            break;
        }
        default:
            return false;
        }
    }
    if (!lit(r, "\""))
        return false;
    *r->o++ = '\0';
    *out = start;
    return true;
}

static bool get_num(rbuf *r, int64_t *out, bool *null)
{
    *null = false;
    if (lit(r, "null")) {
        *null = true;
        return true;
    }
    bool neg = lit(r, "-");
    uint64_t v = 0;
    int digits = 0;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*r->p++ - '0');
        digits++;
    }
    if (digits == 0)
        return false;
    if (neg)
        *out = -(int64_t)v;
    else
        *out = (int64_t)v;
    return true;
}

int cg_audit_canon_parse(const char *canon, size_t len, cg_audit_parsed *out)
{
    rbuf r = { canon, canon + len, out->buf, out->buf + sizeof out->buf };
    cg_audit_rec *rec = &out->rec;
    cg_audit_rec_init(rec);
    int64_t v;
    bool null;
    if (!lit(&r, "{\"seq\":") || !get_num(&r, &v, &null) || null || v < 1)
        return CG_E_PARSE;
    out->seq = (uint64_t)v;
    if (!lit(&r, ",\"time\":") || !get_str(&r, &out->time) || !out->time)
        return CG_E_PARSE;
#define S(name)                                                                    \
    if (!lit(&r, ",\"" #name "\":") || !get_str(&r, &rec->name))                   \
        return CG_E_PARSE;
#define N(name)                                                                    \
    if (!lit(&r, ",\"" #name "\":") || !get_num(&r, &v, &null))                    \
        return CG_E_PARSE;                                                         \
    rec->name = null ? -1 : v;
#define C(name)                                                                    \
    if (!lit(&r, ",\"" #name "\":") || !get_num(&r, &v, &null))                    \
        return CG_E_PARSE;                                                         \
    rec->name = null ? 0 : (uint64_t)v;
    CANON_FIELDS(S, N, C)
#undef S
#undef N
#undef C
#define O(name)                                                                    \
    if (lit(&r, ",\"" #name "\":") && (!get_str(&r, &rec->name) || !rec->name))   \
        return CG_E_PARSE;
    CANON_OPTIONAL(O)
#undef O
    if (!lit(&r, "}") || r.p != r.end)
        return CG_E_PARSE;
    return 0;
}

/* ---- chain and signatures ----------------------------------------------- */

/* SHA-256 fetched from the provider once: EVP_sha256() in every
 * EVP_DigestInit_ex fetches it again, a good part of hashing one record.
 * Kept for the process's life. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    (void)pthread_once(&g_sha256_once, sha256_fetch);
    return g_sha256 ? g_sha256 : EVP_sha256();
}

void cg_audit_chain_hash_in(EVP_MD_CTX *c, const uint8_t prev[CG_AUDIT_HASH_LEN],
                            const char *canon, size_t len, uint8_t out[CG_AUDIT_HASH_LEN])
{
    unsigned n = 0;
    if (!c || !EVP_DigestInit_ex(c, sha256(), NULL) ||
        !EVP_DigestUpdate(c, prev, CG_AUDIT_HASH_LEN) ||
        !EVP_DigestUpdate(c, canon, len) || !EVP_DigestFinal_ex(c, out, &n))
        memset(out, 0, CG_AUDIT_HASH_LEN); /* never matches a real chain */
}

void cg_audit_chain_hash(const uint8_t prev[CG_AUDIT_HASH_LEN],
                         const char *canon, size_t len,
                         uint8_t out[CG_AUDIT_HASH_LEN])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    cg_audit_chain_hash_in(c, prev, canon, len, out);
    EVP_MD_CTX_free(c);
}

size_t cg_audit_checkpoint_msg(uint64_t seq, const uint8_t hash[CG_AUDIT_HASH_LEN],
                               const char *node, char out[CG_AUDIT_CKPT_MSG_MAX])
{
    char hex[2 * CG_AUDIT_HASH_LEN + 1];
    cg_hex_encode(hash, CG_AUDIT_HASH_LEN, hex);
    int n;
    if (node)
        n = snprintf(out, CG_AUDIT_CKPT_MSG_MAX, "cpmgate-audit-checkpoint-v2\n%llu\n%s\n%.*s",
                     (unsigned long long)seq, hex, CG_AUDIT_NODE_MAX, node);
    else
        n = snprintf(out, CG_AUDIT_CKPT_MSG_MAX, "cpmgate-audit-checkpoint-v1\n%llu\n%s",
                     (unsigned long long)seq, hex);
    return (size_t)n;
}

bool cg_audit_node_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CG_AUDIT_NODE_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static bool key_ok(EVP_PKEY *k, const char **error_r)
{
    if (EVP_PKEY_is_a(k, "ED25519"))
        return true;
    if (EVP_PKEY_is_a(k, "EC")) {
        char curve[64] = "";
        size_t n = 0;
        if (EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof curve, &n) &&
            (strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0))
            return true;
    }
    *error_r = "the audit key must be Ed25519 or ECDSA P-256";
    return false;
}

/* The end of loading a key: none (a sentence) when k is NULL, else the
 * key's type checked; *out takes k on success. */
static int key_loaded(EVP_PKEY *k, const char *none, EVP_PKEY **out, const char **error_r)
{
    if (!k) {
        *error_r = none;
        return CG_E_CRYPTO;
    }
    if (!key_ok(k, error_r)) {
        EVP_PKEY_free(k);
        return CG_E_CRYPTO;
    }
    *out = k;
    return 0;
}

int cg_audit_key_load_private(const char *path, EVP_PKEY **out, const char **error_r)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        *error_r = "cannot open the audit key file";
        return CG_E_IO;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return key_loaded(k, "the audit key file holds no PEM private key", out, error_r);
}

int cg_audit_key_load_public(const char *path, EVP_PKEY **out, const char **error_r)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        *error_r = "cannot open the key file";
        return CG_E_IO;
    }
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (!k) {
        rewind(f);
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    }
    fclose(f);
    return key_loaded(k, "the key file holds no PEM public key", out, error_r);
}

int cg_audit_key_from_pem(const char *pem, EVP_PKEY **out)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    if (!b)
        return CG_E_NOMEM;
    EVP_PKEY *k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    const char *err;
    if (!k || !key_ok(k, &err)) {
        EVP_PKEY_free(k);
        return CG_E_CRYPTO;
    }
    *out = k;
    return 0;
}

int cg_audit_key_fingerprint(EVP_PKEY *key, char out[65])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    if (n <= 0)
        return CG_E_CRYPTO;
    uint8_t md[32];
    unsigned mdlen = 0;
    int ok = EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok)
        return CG_E_CRYPTO;
    cg_hex_encode(md, 32, out);
    return 0;
}

char *cg_audit_key_public_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PUBKEY(b, key)) {
        BIO_free(b);
        return NULL;
    }
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
    BIO_free(b);
    return s;
}

/* Ed25519 is PureEdDSA (no digest); ECDSA P-256 signs SHA-256. */
static const EVP_MD *sig_md(EVP_PKEY *key)
{
    return EVP_PKEY_is_a(key, "ED25519") ? NULL : EVP_sha256();
}

int cg_audit_sign(EVP_PKEY *key, const char *msg, size_t len, uint8_t *sig,
                  size_t *siglen)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int rc = CG_E_CRYPTO;
    if (c && EVP_DigestSignInit(c, NULL, sig_md(key), NULL, key) == 1 &&
        EVP_DigestSign(c, sig, siglen, (const unsigned char *)msg, len) == 1)
        rc = 0;
    EVP_MD_CTX_free(c);
    return rc;
}

bool cg_audit_sig_ok(EVP_PKEY *key, const char *msg, size_t len,
                     const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestVerifyInit(c, NULL, sig_md(key), NULL, key) == 1 &&
              EVP_DigestVerify(c, sig, siglen, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}
