/* store/policy_keys.c — content-signing keys, signed-only patterns and
 * peers in the policy database (see policy_keys.h). Every edit: BEGIN
 * IMMEDIATE, the change, its policy_log row, COMMIT — or nothing. */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_keys.h"
#include "store/policy_store_impl.h"

/* ---- key types ------------------------------------------------------------ */

const char *cg_pkey_alg(const EVP_PKEY *key)
{
    if (!key)
        return NULL;
    if (EVP_PKEY_is_a(key, "ED25519"))
        return "ed25519";
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                           sizeof group, &gl) != 1)
            return NULL;
        return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0
                   ? "ecdsa-p256-sha256" : NULL;
    }
    /* plain RSA keys only: an RSA-PSS key carries its own parameter
     * restrictions, which we would have to honour or ignore */
    if (EVP_PKEY_is_a(key, "RSA"))
        return EVP_PKEY_get_bits(key) >= 2048 ? "rsa-pss-sha256" : NULL;
    return NULL;
}

int cg_pkey_from_pem(const char *pem, size_t len, const char **alg_out,
                     EVP_PKEY **key_out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (key_out)
        *key_out = NULL;
    if (len > 1 << 16) {
        *error_r = "public key file too large";
        return CG_E_INVAL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!k) {
        *error_r = "not a PEM public key (-----BEGIN PUBLIC KEY-----)";
        return CG_E_INVAL;
    }
    const char *alg = cg_pkey_alg(k);
    if (!alg) {
        EVP_PKEY_free(k);
        *error_r = "key type not supported: use EC P-256, Ed25519 or RSA of 2048 bits or more";
        return CG_E_INVAL;
    }
    if (alg_out)
        *alg_out = alg;
    if (key_out)
        *key_out = k;
    else
        EVP_PKEY_free(k);
    return 0;
}

/* The canonical PEM of a key (what is stored), NUL-terminated in out. */
static int canonical_pem(EVP_PKEY *k, char *out, size_t cap)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = bio && PEM_write_bio_PUBKEY(bio, k) == 1 ? BIO_get_mem_data(bio, &data) : -1;
    int rc = n > 0 && (size_t)n < cap ? 0 : CG_E_LIMIT;
    if (rc == 0) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(bio);
    return rc;
}

/* ---- one edit ------------------------------------------------------------ */

/* One whole edit: the statement (text parameters, a NULL-terminated list),
 * a check of what it did, the log row. */
typedef struct edit {
    const char *sql;
    const char *const *params;
    const char *operation, *detail;
    const char *on_exists, *on_none; /* sentences; on_none: 0 rows changed */
} edit;

static int apply(cg_pstore *s, const edit *e, const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    cg_ps_arg args[CG_PS_MAXARGS];
    int n = 0;
    for (; e->params[n] && n < CG_PS_MAXARGS; n++)
        args[n] = (cg_ps_arg){ .type = 't', .t = e->params[n] };
    int changes = 0;
    rc = cg_ps_done(s, cg_ps_prepa(s, error_r, e->sql, n, args), &changes, error_r);
    /* the sentences live in the caller's frame: copied by cg_ps_say */
    if (rc == CG_E_EXISTS) {
        *error_r = cg_say("%s", e->on_exists ? e->on_exists : "already exists");
    } else if (rc == 0 && changes == 0) {
        rc = CG_E_NOTFOUND;
        *error_r = cg_say("%s", e->on_none ? e->on_none : "not found");
    }
    return cg_ps_finish(s, rc, e->operation, e->detail, error_r);
}

/* ---- keys ----------------------------------------------------------------- */

int cg_pkeys_key_add(cg_pstore *s, const char *principal, const char *key_id,
                     const char *pem, const char **alg_out, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    const char *alg;
    EVP_PKEY *k;
    int rc = cg_pkey_from_pem(pem, strlen(pem), &alg, &k, error_r);
    if (rc < 0)
        return rc;
    char canon[8192];
    rc = canonical_pem(k, canon, sizeof canon);
    EVP_PKEY_free(k);
    if (rc < 0) {
        *error_r = "public key too large";
        return rc;
    }
    char t[CG_TIME_LEN], detail[400], exists[300], none[300];
    snprintf(detail, sizeof detail, "key %s (%s) for %s", key_id, alg, principal);
    snprintf(exists, sizeof exists, "key id '%s' already exists", key_id);
    snprintf(none, sizeof none, "unknown principal '%s'", principal);
    const char *params[] = { key_id, alg, canon, cg_ps_now(t), principal, NULL };
    edit e = {
        "INSERT INTO pubkey (key_id, principal_id, alg, pem, created) "
        "SELECT ?1, id, ?2, ?3, ?4 FROM principal WHERE name = ?5",
        params, "key add", detail, exists, none,
    };
    rc = apply(s, &e, error_r);
    if (rc == 0 && alg_out)
        *alg_out = alg;
    return rc;
}

int cg_pkeys_key_remove(cg_pstore *s, const char *key_id, const char **error_r)
{
    char detail[300], none[300];
    snprintf(detail, sizeof detail, "key %s", key_id);
    snprintf(none, sizeof none, "unknown key id '%s'", key_id);
    const char *params[] = { key_id, NULL };
    edit e = { "DELETE FROM pubkey WHERE key_id = ?1", params, "key remove", detail,
               NULL, none };
    return apply(s, &e, error_r);
}

typedef struct key_rows {
    cg_pkeys_key_cb cb;
    void *ctx;
    int n;
} key_rows;

static int key_row(cg_ps_row *st, void *arg)
{
    key_rows *l = arg;
    cg_pkeys_key k = {
        cg_ps_col_int(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
        cg_ps_col_text(st, 3),       cg_ps_col_text(st, 4), cg_ps_col_text(st, 5),
    };
    l->n++;
    return l->cb(l->ctx, &k);
}

int cg_pkeys_key_list(cg_pstore *s, const char *key_id, cg_pkeys_key_cb cb,
                      void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    key_rows l = { cb, ctx, 0 };
    int rc = cg_ps_rows(s, cg_ps_prep(s, error_r,
                                      "SELECT k.id, k.key_id, p.name, k.alg, k.pem, k.created "
                                      "FROM pubkey k JOIN principal p ON p.id = k.principal_id "
                                      "WHERE ?1 IS NULL OR k.key_id = ?1 ORDER BY k.key_id",
                                      "t", key_id),
                        key_row, &l, error_r);
    if (rc == 0 && key_id && l.n == 0) {
        *error_r = cg_say("unknown key id '%s'", key_id);
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

/* ---- signed-only paths ---------------------------------------------------- */

int cg_pkeys_require_signed_add(cg_pstore *s, const char *pattern, const char **error_r)
{
    char t[CG_TIME_LEN], exists[300];
    snprintf(exists, sizeof exists, "pattern '%s' is already signed-only", pattern);
    const char *params[] = { pattern, cg_ps_now(t), NULL };
    edit e = { "INSERT INTO require_signed (pattern, created) VALUES (?1, ?2)", params,
               "require-signed add", pattern, exists, NULL };
    return apply(s, &e, error_r);
}

int cg_pkeys_require_signed_remove(cg_pstore *s, const char *pattern, const char **error_r)
{
    char none[300];
    snprintf(none, sizeof none, "pattern '%s' is not signed-only", pattern);
    const char *params[] = { pattern, NULL };
    edit e = { "DELETE FROM require_signed WHERE pattern = ?1", params,
               "require-signed remove", pattern, NULL, none };
    return apply(s, &e, error_r);
}

typedef struct pattern_rows {
    cg_pkeys_pattern_cb cb;
    void *ctx;
} pattern_rows;

static int pattern_row(cg_ps_row *st, void *arg)
{
    const pattern_rows *l = arg;
    return l->cb(l->ctx, cg_ps_col_text(st, 0), cg_ps_col_text(st, 1));
}

int cg_pkeys_require_signed_list(cg_pstore *s, cg_pkeys_pattern_cb cb, void *ctx,
                                 const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    pattern_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT pattern, created FROM require_signed "
                                    "ORDER BY pattern", ""),
                      pattern_row, &l, error_r);
}

/* ---- peers ---------------------------------------------------------------- */

int cg_pkeys_peer_add(cg_pstore *s, const char *domain, const char *principal,
                      const char *auth, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (strcmp(auth, "required") != 0 && strcmp(auth, "optional") != 0) {
        *error_r = "peer auth must be required or optional";
        return CG_E_INVAL;
    }
    char t[CG_TIME_LEN], detail[400], exists[300], none[300];
    snprintf(detail, sizeof detail, "peer %s principal %s auth %s", domain, principal, auth);
    snprintf(exists, sizeof exists, "peer '%s' already exists", domain);
    snprintf(none, sizeof none, "unknown principal '%s'", principal);
    const char *params[] = { domain, auth, cg_ps_now(t), principal, NULL };
    edit e = { "INSERT INTO peer (domain, principal_id, auth, created) "
               "SELECT ?1, id, ?2, ?3 FROM principal WHERE name = ?4",
               params, "peer add", detail, exists, none };
    return apply(s, &e, error_r);
}

int cg_pkeys_peer_remove(cg_pstore *s, const char *domain, const char **error_r)
{
    char detail[300], none[300];
    snprintf(detail, sizeof detail, "peer %s", domain);
    snprintf(none, sizeof none, "unknown peer '%s'", domain);
    const char *params[] = { domain, NULL };
    edit e = { "DELETE FROM peer WHERE domain = ?1", params, "peer remove", detail, NULL, none };
    return apply(s, &e, error_r);
}

typedef struct peer_rows {
    cg_pkeys_peer_cb cb;
    void *ctx;
} peer_rows;

static int peer_row(cg_ps_row *st, void *arg)
{
    const peer_rows *l = arg;
    cg_pkeys_peer p = { cg_ps_col_text(st, 0), cg_ps_col_text(st, 1), cg_ps_col_text(st, 2),
                        cg_ps_col_text(st, 3) };
    return l->cb(l->ctx, &p);
}

int cg_pkeys_peer_list(cg_pstore *s, cg_pkeys_peer_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    peer_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT r.domain, p.name, r.auth, r.created FROM peer r "
                                    "JOIN principal p ON p.id = r.principal_id "
                                    "ORDER BY r.domain", ""),
                      peer_row, &l, error_r);
}
