/* ctl_cred.c — `cpmgatectl cred` (SPEC sections 2 and 9): register, list
 * and remove a principal's credentials. Input is checked and normalised
 * here (certificate -> SHA-256 fingerprint, canonical CIDR, hex keys,
 * Digest HA1s); a generated PSK key is printed once and never again. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "policy/ctl/ctl.h"
#include "policy/ctl/ctl_cred.h"
#include "policy/cidr.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

#define MAX_FILE 65536

/* ---- output ------------------------------------------------------------------ */

json_object *ctl_json_cred(const cg_pstore_cred *c)
{
    json_object *o = ctl_jobj();
    ctl_jset(o, "id", ctl_jint(c->id));
    ctl_jset(o, "type", ctl_jstr(c->type));
    ctl_jset(o, "value", ctl_jstr(c->value));
    ctl_jset(o, "created", ctl_jstr(c->created));
    if (c->secret_len)
        ctl_jset(o, "key_bytes", ctl_juint(c->secret_len));
    return o;
}

void ctl_text_cred(const cg_pstore_cred *c)
{
    printf("%lld\t%s\t%s\t%s", (long long)c->id, c->type, c->value, c->created);
    if (c->secret_len)
        printf("\t%zu-byte key", c->secret_len);
    putchar('\n');
}

static int print_cred(void *ctx, const cg_pstore_cred *c)
{
    ctl_list *l = ctx;
    if (l->arr)
        ctl_jset(l->arr, NULL, ctl_json_cred(c));
    else
        ctl_text_cred(c);
    return 0;
}

static int no_principal(void *ctx, const cg_pstore_principal *p)
{
    return 0;
}

/* ---- input ------------------------------------------------------------------- */

/* SHA-256 over the DER of the certificate in a PEM file. */
static int cert_fingerprint(const char *path, char hex[65])
{
    size_t len = 0;
    const char *why = NULL;
    char *pem = ctl_slurp(path, MAX_FILE, &len, &why);
    if (!pem)
        return ctl_fail("%s: %s", path, why);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    if (!x)
        return ctl_fail("%s: not a PEM certificate (-----BEGIN CERTIFICATE-----)", path);
    uint8_t md[32];
    unsigned mdlen = 0;
    int ok = X509_digest(x, EVP_sha256(), md, &mdlen);
    X509_free(x);
    if (!ok || mdlen != 32)
        return ctl_fail("%s: cannot compute the certificate fingerprint", path);
    cg_hex_encode(md, 32, hex);
    return CTL_OK;
}

/* 64 hex digits, either case, optionally in openssl's AB:CD:... form. */
static int parse_fingerprint(const char *in, char hex[65])
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':' && p != in && p[1] && (p - in) % 3 == 2)
            continue;
        if (!isxdigit((unsigned char)*p) || n >= 64)
            return ctl_fail("fingerprint must be 64 hex digits (SHA-256 of the certificate)");
        hex[n++] = (char)tolower((unsigned char)*p);
    }
    if (n != 64)
        return ctl_fail("fingerprint must be 64 hex digits (SHA-256 of the certificate)");
    hex[64] = '\0';
    return CTL_OK;
}

static void hex_digest(const EVP_MD *md, const char *a, const char *b, const char *c,
                       char *out)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    /* RFC 7616 3.4.2: A1 = username ":" realm ":" passwd */
    if (x && EVP_DigestInit_ex(x, md, NULL) && EVP_DigestUpdate(x, a, strlen(a)) &&
        EVP_DigestUpdate(x, ":", 1) && EVP_DigestUpdate(x, b, strlen(b)) &&
        EVP_DigestUpdate(x, ":", 1) && EVP_DigestUpdate(x, c, strlen(c)) &&
        EVP_DigestFinal_ex(x, d, &dl))
        cg_hex_encode(d, dl, out);
    else
        out[0] = '\0';
    EVP_MD_CTX_free(x);
    OPENSSL_cleanse(d, sizeof d);
}

/* ---- cred add ----------------------------------------------------------------- */

int ctl_cred_add(ctl_ctx *ctx, const ctl_args *a)
{
    const char *name = a->pos[0], *type = a->pos[1], *value = a->pos[2];
    const char *file = ctl_opt(a, "--file");
    const char *fpr = ctl_opt(a, "--fingerprint");
    const char *ident = ctl_opt(a, "--identity");
    const char *keyhex = ctl_opt(a, "--key");
    const char *realm = ctl_opt(a, "--realm");
    const char *pwfile = ctl_opt(a, "--password-file");
    bool cert = strcmp(type, "cert") == 0, psk = strcmp(type, "psk") == 0,
         digest = strcmp(type, "digest") == 0, addr = strcmp(type, "address") == 0,
         cname = strcmp(type, "cert-name") == 0;
    /* each type takes exactly its own arguments */
    if ((!cert && !psk && !digest && !addr && !cname) ||
        ((file || fpr) && !cert) || (cert && !file == !fpr) ||
        ((ident || keyhex) && !psk) || (psk && !ident) ||
        ((realm || pwfile) && !digest) || (digest && (!realm || !pwfile)) ||
        ((addr || cname) != (value != NULL)))
        return ctl_usage(a);

    char hex[65], cidr_text[64], md5[33] = "", sha256[65] = "";
    uint8_t key[64];
    size_t keylen = 0;
    bool generated = false;
    const char *stored = value;
    int rc = CTL_OK;
    if (cert) {
        rc = file ? cert_fingerprint(file, hex) : parse_fingerprint(fpr, hex);
        stored = hex;
    } else if (addr) {
        cg_cidr c;
        const char *err = NULL;
        if (cg_cidr_parse(value, &c, &err) < 0)
            return ctl_fail("'%s': %s", value, err);
        cg_cidr_format(&c, cidr_text);
        stored = cidr_text;
    } else if (psk) {
        stored = ident;
        if (keyhex) {
            size_t n = strlen(keyhex);
            if (n == 0 || n % 2 || strspn(keyhex, "0123456789abcdefABCDEF") != n)
                return ctl_fail("PSK key is not valid hex (an even number of 0-9, a-f)");
            if (n / 2 < 16 || n / 2 > 64)
                return ctl_fail("PSK key must be 16 to 64 bytes, got %zu", n / 2);
            int k = cg_hex_decode(keyhex, key, sizeof key);
            if (k < 16)
                return ctl_fail("PSK key is not valid hex");
            keylen = (size_t)k;
        } else {
            /* SPEC 9: 32 bytes from the CSPRNG, shown once */
            if (cg_random(key, 32) < 0)
                return ctl_fail("cannot generate a key: random number generator failed");
            keylen = 32;
            generated = true;
        }
    } else if (digest) {
        size_t len = 0;
        const char *why = NULL;
        char *pw = ctl_slurp(pwfile, MAX_FILE, &len, &why);
        if (!pw)
            return ctl_fail("%s: %s", pwfile, why);
        pw[strcspn(pw, "\r\n")] = '\0'; /* the first line, without its newline */
        if (!*pw)
            rc = ctl_fail("%s: the first line (the password) is empty", pwfile);
        if (rc == CTL_OK) {
            hex_digest(EVP_md5(), name, realm, pw, md5);
            hex_digest(EVP_sha256(), name, realm, pw, sha256);
            if (!md5[0] || !sha256[0])
                rc = ctl_fail("cannot compute the Digest HA1");
        }
        OPENSSL_cleanse(pw, len);
        free(pw);
        stored = realm;
    }
    if (rc != CTL_OK)
        return rc;
    rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    int64_t id = 0;
    int r = cg_pstore_cred_add(ctx->store, name, type, stored, psk ? key : NULL, keylen,
                               digest ? md5 : NULL, digest ? sha256 : NULL, &id, &err);
    if (r < 0) {
        OPENSSL_cleanse(key, sizeof key);
        return ctl_fail("%s", err ? err : cg_strerror(r));
    }
    printf("%lld\n", (long long)id);
    if (generated) {
        char out[65];
        cg_hex_encode(key, keylen, out);
        printf("%s\n", out);
        OPENSSL_cleanse(out, sizeof out);
    }
    OPENSSL_cleanse(key, sizeof key);
    return CTL_OK;
}

int ctl_cred_list(ctl_ctx *ctx, const ctl_args *a)
{
    ctl_list l;
    if (ctl_list_begin(&l, ctx) != CTL_OK)
        return CTL_ERROR;
    /* unknown principal: one line on stderr and nothing on stdout */
    int rc = cg_pstore_principal_list(ctx->store, a->pos[0], no_principal, NULL, &l.err);
    if (rc == 0)
        rc = cg_pstore_cred_list(ctx->store, a->pos[0], print_cred, &l, &l.err);
    return ctl_list_end(&l, rc, NULL);
}

int ctl_cred_remove(ctl_ctx *ctx, const ctl_args *a)
{
    uint64_t id = 0;
    if (cg_parse_u64(a->pos[1], 1, INT64_MAX, &id) < 0)
        return ctl_fail("invalid credential id '%s' (see cred list %s)", a->pos[1], a->pos[0]);
    int rc = ctl_open_store(ctx, false);
    if (rc != CTL_OK)
        return rc;
    const char *err = NULL;
    rc = cg_pstore_cred_remove(ctx->store, a->pos[0], (int64_t)id, &err);
    return rc < 0 ? ctl_fail("%s", err ? err : cg_strerror(rc)) : CTL_OK;
}
