/* policy_keys.c — content-signing keys, signed-only patterns and peers in
 * the policy database (see policy_keys.h). Every edit: BEGIN IMMEDIATE,
 * the change, its policy_log row, COMMIT — or nothing. */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/db.h"
#include "store/policy_keys.h"

static _Thread_local char msg[512];

/* "policy database: <SQLite's sentence>", valid until the next call */
static const char *dberr(sqlite3 *h)
{
    snprintf(msg, sizeof msg, "policy database: %s", sqlite3_errmsg(h));
    return msg;
}

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

/* ---- small SQL helpers ---------------------------------------------------- */

static sqlite3 *H(cg_pstore *s)
{
    return cg_db_handle(cg_pstore_db(s));
}

/* Runs sql with text parameters (NULL-terminated list); SQLITE_DONE -> 0,
 * constraint -> CG_E_EXISTS, else CG_E_DB. *changes: rows changed. */
static int run(cg_pstore *s, const char *sql, const char *const *params, int *changes,
               const char **error_r)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(H(s), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = dberr(H(s));
        return CG_E_DB;
    }
    for (int i = 0; params && params[i]; i++)
        sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT);
    int r = sqlite3_step(st);
    sqlite3_finalize(st);
    if (r == SQLITE_DONE) {
        if (changes)
            *changes = sqlite3_changes(H(s));
        return 0;
    }
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return CG_E_EXISTS;
    *error_r = dberr(H(s));
    return CG_E_DB;
}

/* One whole edit: the statement, a check of what it did, the log row. */
typedef struct edit {
    const char *sql;
    const char *const *params;
    const char *operation, *detail;
    const char *on_exists, *on_none; /* sentences; on_none: 0 rows changed */
} edit;

static int apply(cg_pstore *s, const edit *e, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int changes = 0;
    rc = run(s, e->sql, e->params, &changes, error_r);
    /* the sentences live in the caller's frame: copy them to msg */
    if (rc == CG_E_EXISTS) {
        cg_strlcpy(msg, e->on_exists ? e->on_exists : "already exists", sizeof msg);
        *error_r = msg;
    } else if (rc == 0 && changes == 0) {
        rc = CG_E_NOTFOUND;
        cg_strlcpy(msg, e->on_none ? e->on_none : "not found", sizeof msg);
        *error_r = msg;
    }
    if (rc == 0)
        rc = cg_pstore_log_change(s, e->operation, e->detail, error_r);
    if (rc == 0)
        rc = cg_pstore_commit(s, error_r);
    if (rc < 0)
        cg_pstore_rollback(s);
    return rc;
}

static const char *now_text(char buf[CG_TIME_LEN])
{
    cg_time_rfc3339(cg_time_now_usec(), buf);
    return buf;
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
    const char *params[] = { key_id, alg, canon, now_text(t), principal, NULL };
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

int cg_pkeys_key_list(cg_pstore *s, const char *key_id, cg_pkeys_key_cb cb,
                      void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = NULL;
    const char *sql =
        "SELECT k.id, k.key_id, p.name, k.alg, k.pem, k.created FROM pubkey k "
        "JOIN principal p ON p.id = k.principal_id "
        "WHERE ?1 IS NULL OR k.key_id = ?1 ORDER BY k.key_id";
    if (sqlite3_prepare_v2(H(s), sql, -1, &st, NULL) != SQLITE_OK) {
        *error_r = dberr(H(s));
        return CG_E_DB;
    }
    if (key_id)
        sqlite3_bind_text(st, 1, key_id, -1, SQLITE_TRANSIENT);
    int r, rc = 0, n = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cg_pkeys_key k = {
            sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3),
            (const char *)sqlite3_column_text(st, 4), (const char *)sqlite3_column_text(st, 5),
        };
        n++;
        if ((rc = cb(ctx, &k)) != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(H(s));
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    if (rc == 0 && key_id && n == 0) {
        snprintf(msg, sizeof msg, "unknown key id '%s'", key_id);
        *error_r = msg;
        rc = CG_E_NOTFOUND;
    }
    return rc;
}

/* ---- signed-only paths ---------------------------------------------------- */

int cg_pkeys_require_signed_add(cg_pstore *s, const char *pattern, const char **error_r)
{
    char t[CG_TIME_LEN], exists[300];
    snprintf(exists, sizeof exists, "pattern '%s' is already signed-only", pattern);
    const char *params[] = { pattern, now_text(t), NULL };
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

int cg_pkeys_require_signed_list(cg_pstore *s, cg_pkeys_pattern_cb cb, void *ctx,
                                 const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(H(s), "SELECT pattern, created FROM require_signed ORDER BY pattern",
                           -1, &st, NULL) != SQLITE_OK) {
        *error_r = dberr(H(s));
        return CG_E_DB;
    }
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = cb(ctx, (const char *)sqlite3_column_text(st, 0),
                     (const char *)sqlite3_column_text(st, 1))) != 0)
            break;
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(H(s));
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
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
    const char *params[] = { domain, auth, now_text(t), principal, NULL };
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

int cg_pkeys_peer_list(cg_pstore *s, cg_pkeys_peer_cb cb, void *ctx, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(H(s),
                           "SELECT r.domain, p.name, r.auth, r.created FROM peer r "
                           "JOIN principal p ON p.id = r.principal_id ORDER BY r.domain",
                           -1, &st, NULL) != SQLITE_OK) {
        *error_r = dberr(H(s));
        return CG_E_DB;
    }
    int r, rc = 0;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        cg_pkeys_peer p = { (const char *)sqlite3_column_text(st, 0),
                            (const char *)sqlite3_column_text(st, 1),
                            (const char *)sqlite3_column_text(st, 2),
                            (const char *)sqlite3_column_text(st, 3) };
        if ((rc = cb(ctx, &p)) != 0)
            break;
    }
    if (rc == 0 && r != SQLITE_DONE) {
        *error_r = dberr(H(s));
        rc = CG_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}
