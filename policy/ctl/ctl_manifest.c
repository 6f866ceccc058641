/* ctl_manifest.c — `cpmgatectl manifest create | verify` (SPEC sections 6
 * and 9): lets users sign an upload without writing code, and check a
 * manifest offline against the file and a public key.
 *   create --key PRIV.pem --key-id ID --path P --file F
 *          prints the base64 manifest (the Content-Manifest header value)
 *   verify --file F --manifest M [--path P] [--pub PUB.pem] [--principal NAME]
 *          M is a file holding the manifest (base64 or XML), or the base64
 *          text itself; the key is --pub, or else looked up by the item's
 *          key id in the policy database (-d / $CPMGATE_DB), which also
 *          names its principal (--principal checks it is that one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "policy/ctl/ctl.h"
#include "policy/manifest.h"
#include "store/policy_keys.h"
#include "common/cg_base64.h"
#include "common/cg_error.h"
#include "common/cg_util.h"

#define MAX_PEM 65536

/* Size and SHA-256 of a file, streamed. */
static int hash_file(const char *path, uint64_t *size, uint8_t sha[32])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CG_E_IO;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    uint64_t n = 0;
    static unsigned char buf[65536];
    size_t r;
    while (ok && (r = fread(buf, 1, sizeof buf, f)) > 0) {
        ok = EVP_DigestUpdate(c, buf, r);
        n += r;
    }
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, sha, NULL);
    fclose(f);
    EVP_MD_CTX_free(c);
    *size = n;
    return ok ? 0 : CG_E_IO;
}

int ctl_manifest_create(ctl_ctx *ctx, const ctl_args *a)
{
    const char *keyf = ctl_opt(a, "--key");
    const char *kid = ctl_opt(a, "--key-id");
    const char *path = ctl_opt(a, "--path");
    const char *file = ctl_opt(a, "--file");
    if (!keyf || !kid || !path || !file)
        return ctl_usage(a);
    const char *err = NULL;
    if (cg_manifest_path_check(path, &err) < 0)
        return ctl_fail("--path '%s': %s", path, err);
    FILE *kf = fopen(keyf, "rb");
    EVP_PKEY *k = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
    if (kf)
        fclose(kf);
    if (!k)
        return ctl_fail("%s: not a readable PEM private key", keyf);
    uint64_t size;
    uint8_t sha[32];
    if (hash_file(file, &size, sha) < 0) {
        EVP_PKEY_free(k);
        return ctl_fail("%s: cannot read", file);
    }
    char *xml = NULL;
    int rc = cg_manifest_sign(k, kid, path, size, sha, &xml, &err);
    EVP_PKEY_free(k);
    if (rc < 0)
        return ctl_fail("manifest create: %s", err ? err : cg_strerror(rc));
    /* what we print must parse as the gateway will parse it */
    cg_manifest *m = NULL;
    if (cg_manifest_parse(xml, strlen(xml), &m, &err) < 0) {
        free(xml);
        return ctl_fail("manifest create: made an invalid manifest: %s", err);
    }
    cg_manifest_free(m);
    size_t cap = CG_B64_ENCLEN(strlen(xml));
    char *b64 = malloc(cap);
    if (!b64) {
        free(xml);
        return ctl_fail("out of memory");
    }
    cg_b64_encode((const uint8_t *)xml, strlen(xml), b64, cap);
    printf("%s\n", b64);
    free(b64);
    free(xml);
    return CTL_OK;
}

/* The manifest given as a file (base64 or XML) or as base64 text. */
static int load_manifest(const char *arg, cg_manifest **m, const char **err)
{
    struct stat st;
    if (stat(arg, &st) != 0)
        return cg_manifest_parse_b64(arg, strlen(arg), m, err);
    if (!S_ISREG(st.st_mode) || st.st_size > 2 * CG_MANIFEST_MAX_BYTES) {
        *err = "manifest file too large or not a regular file";
        return CG_E_LIMIT;
    }
    FILE *f = fopen(arg, "rb");
    if (!f) {
        *err = "cannot open the manifest file";
        return CG_E_IO;
    }
    static char buf[2 * CG_MANIFEST_MAX_BYTES + 1];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    size_t s = 0;
    while (s < n && (buf[s] == ' ' || buf[s] == '\n' || buf[s] == '\r' || buf[s] == '\t'))
        s++;
    if (s < n && buf[s] == '<')
        return cg_manifest_parse(buf, n, m, err);
    while (n > s && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    return cg_manifest_parse_b64(buf + s, n - s, m, err);
}

typedef struct found_key {
    char principal[256];
    char alg[32];
    char *pem;
} found_key;

static int take_key(void *c, const cg_pkeys_key *k)
{
    found_key *f = c;
    cg_strlcpy(f->principal, k->principal, sizeof f->principal);
    cg_strlcpy(f->alg, k->alg, sizeof f->alg);
    f->pem = strdup(k->pem);
    return 0;
}

int ctl_manifest_verify(ctl_ctx *ctx, const ctl_args *a)
{
    const char *file = ctl_opt(a, "--file");
    const char *marg = ctl_opt(a, "--manifest");
    const char *path = ctl_opt(a, "--path");
    const char *pubf = ctl_opt(a, "--pub");
    const char *who = ctl_opt(a, "--principal");
    if (!file || !marg)
        return ctl_usage(a);
    if (!pubf && (!ctx->db_path || !*ctx->db_path))
        return ctl_fail("manifest verify needs --pub PUB.pem or a policy database (-d)");
    if (pubf && who)
        return ctl_fail("--principal needs the policy database, not --pub");
    const char *err = NULL;
    cg_manifest *m = NULL;
    if (load_manifest(marg, &m, &err) < 0)
        return ctl_fail("manifest refused: %s", err);
    int rc = CTL_ERROR;
    EVP_PKEY *key = NULL;
    found_key fk = { "", "", NULL };
    const cg_manifest_item *it = path ? cg_manifest_find_item(m, path)
                               : cg_manifest_nitems(m) == 1 ? cg_manifest_item_at(m, 0) : NULL;
    if (!it) {
        rc = path ? ctl_fail("manifest has no item for %s", path)
                  : ctl_fail("manifest has %zu items: give --path", cg_manifest_nitems(m));
        goto out;
    }
    uint64_t size;
    uint8_t sha[32];
    if (hash_file(file, &size, sha) < 0) {
        rc = ctl_fail("%s: cannot read", file);
        goto out;
    }
    if (size != it->size) {
        rc = ctl_fail("%s: size %llu, the manifest says %llu", file, (unsigned long long)size,
                      (unsigned long long)it->size);
        goto out;
    }
    if (!cg_ct_equal(sha, it->sha256, 32)) {
        rc = ctl_fail("%s: SHA-256 differs from the manifest's", file);
        goto out;
    }
    const char *alg = NULL;
    if (pubf) {
        size_t n = 0;
        const char *why = NULL;
        char *pem = ctl_slurp(pubf, MAX_PEM, &n, &why);
        int k = pem ? cg_pkey_from_pem(pem, n, &alg, &key, &err) : CG_E_IO;
        free(pem);
        if (k < 0) {
            rc = ctl_fail("%s: %s", pubf, pem ? err : why);
            goto out;
        }
    } else {
        if (ctl_open_store(ctx, false) != CTL_OK)
            goto out;
        if (cg_pkeys_key_list(ctx->store, it->key_id, take_key, &fk, &err) < 0 || !fk.pem) {
            rc = ctl_fail("key %s: %s", it->key_id, err ? err : "not found");
            goto out;
        }
        if (who && strcmp(who, fk.principal) != 0) {
            rc = ctl_fail("key %s belongs to %s, not %s", it->key_id, fk.principal, who);
            goto out;
        }
        if (cg_pkey_from_pem(fk.pem, strlen(fk.pem), &alg, &key, &err) < 0) {
            rc = ctl_fail("key %s: %s", it->key_id, err);
            goto out;
        }
    }
    if (cg_manifest_verify_item(it, key, alg, &err) < 0) {
        rc = ctl_fail("%s: %s", it->path, err);
        goto out;
    }
    rc = CTL_OK;
    if (ctx->json) {
        json_object *o = ctl_jobj();
        ctl_jset(o, "valid", ctl_jbool(true));
        ctl_jset(o, "path", ctl_jstr(it->path));
        ctl_jset(o, "size", ctl_juint(it->size));
        ctl_jset(o, "sha256", ctl_jstr(it->sha256_hex));
        ctl_jset(o, "key_id", ctl_jstr(it->key_id));
        ctl_jset(o, "alg", ctl_jstr(alg));
        ctl_jset(o, "principal", ctl_jstr(fk.principal[0] ? fk.principal : NULL));
        rc = ctl_json_print(o);
    } else {
        printf("valid: %s (%llu bytes, sha256 %s) signed with %s (%s)%s%s\n", it->path,
               (unsigned long long)it->size, it->sha256_hex, it->key_id, alg,
               fk.principal[0] ? " of " : "", fk.principal);
    }
out:
    EVP_PKEY_free(key);
    free(fk.pem);
    cg_manifest_free(m);
    return rc;
}
