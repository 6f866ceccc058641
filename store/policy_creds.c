/* store/policy_creds.c — the credential edits of cpmgatectl (add with the
 * checks the schema cannot make, remove, list), each one transaction with
 * its policy_log row. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "store/policy_store.h"
#include "store/policy_store_impl.h"

/* ---- credentials ---------------------------------------------------------------- */

static bool hex_lower(const char *t, size_t len)
{
    if (!t || strlen(t) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)t[i]) && !(t[i] >= 'a' && t[i] <= 'f'))
            return false;
    return true;
}

/* What the schema cannot check. CIDRs are canonicalised by the caller
 * (policy/cidr.h's cg_cidr_parse); here only their alphabet. */
static int cred_check(const char *type, const char *value, const uint8_t *secret,
                      size_t secret_len, const char *md5, const char *sha256,
                      const char **error_r)
{
    if (!type) {
        *error_r = "no credential type";
        return CG_E_INVAL;
    }
    if (strcmp(type, "cert") == 0) {
        if (!hex_lower(value, 64)) {
            *error_r = "certificate fingerprint must be 64 lowercase hex characters (SHA-256)";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "cert-name") == 0) {
        static const char *const pfx[] = { "email:", "dns:", "uri:", "cn:" };
        bool ok = false;
        for (size_t i = 0; value && i < CG_ARRAY_LEN(pfx); i++)
            if (strncmp(value, pfx[i], strlen(pfx[i])) == 0 && value[strlen(pfx[i])])
                ok = true;
        for (const char *p = value; ok && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                ok = false;
        if (!ok || strlen(value) > 1024) {
            *error_r = "certificate name must be email:A, dns:D, uri:U or cn:C";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "psk") == 0) {
        if (!cg_ps_plain_text(value, 128)) {
            *error_r = "PSK identity must be 1-128 printable characters without spaces";
            return CG_E_INVAL;
        }
        if (!secret || secret_len < 16 || secret_len > 64) {
            *error_r = "PSK key must be 16 to 64 bytes";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "address") == 0) {
        if (!value || !*value || strlen(value) > 64 ||
            strspn(value, "0123456789abcdefABCDEF.:/") != strlen(value)) {
            *error_r = "malformed CIDR";
            return CG_E_INVAL;
        }
    } else if (strcmp(type, "digest") == 0) {
        if (!value || !*value || strlen(value) > 255 || strpbrk(value, "\"\\")) {
            *error_r = "digest realm must be 1-255 characters without \" or \\";
            return CG_E_INVAL;
        }
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                *error_r = "digest realm must not contain control characters";
                return CG_E_INVAL;
            }
        if (!hex_lower(md5, 32) || !hex_lower(sha256, 64)) {
            *error_r = "digest HA1 must be lowercase hex (32 for MD5, 64 for SHA-256)";
            return CG_E_INVAL;
        }
    } else {
        *error_r = cg_say("unknown credential type '%.64s': cert, cert-name, psk, address or digest",
                       type);
        return CG_E_INVAL;
    }
    return 0;
}

int cg_pstore_cred_add(cg_pstore *s, const char *principal, const char *type,
                       const char *value, const uint8_t *secret, size_t secret_len,
                       const char *ha1_md5, const char *ha1_sha256, int64_t *id_out,
                       const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int rc = cred_check(type, value, secret, secret_len, ha1_md5, ha1_sha256, error_r);
    if (rc < 0)
        return rc;
    bool psk = strcmp(type, "psk") == 0, digest = strcmp(type, "digest") == 0;
    /* host names compare case-insensitively (RFC 4343): one stored form,
     * so the unique index also refuses "dns:A.example" beside "dns:a.example" */
    char lowered[1100];
    if (strcmp(type, "cert-name") == 0 && strncmp(value, "dns:", 4) == 0) {
        cg_strlcpy(lowered, value, sizeof lowered);
        for (char *p = lowered + 4; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        value = lowered;
    }
    rc = cg_pstore_begin(s, error_r);
    if (rc < 0)
        return rc;
    int64_t pid = 0;
    rc = cg_ps_principal_id(s, principal, &pid, error_r);
    char t[CG_TIME_LEN];
    int64_t id = 0;
    bool found;
    if (rc == 0)
        rc = cg_ps_one_int(s, cg_ps_prep(s, error_r,
                          "INSERT INTO credential (principal_id, type, value, secret, ha1_md5, "
                          "ha1_sha256, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                          "ittbttt", pid, type, value, psk ? (const void *)secret : NULL,
                          psk ? secret_len : (size_t)0, digest ? ha1_md5 : NULL,
                          digest ? ha1_sha256 : NULL, cg_ps_now(t)),
                  &id, &found, error_r);
    if (rc == CG_E_EXISTS)
        *error_r = digest ? cg_say("principal '%.200s' already has a digest credential for realm '%.200s'",
                                principal, value)
                 : psk ? cg_say("PSK identity '%.200s' is already registered", value)
                       : cg_say("%s credential '%.200s' is already registered", type, value);
    /* the log names the credential, never its secret */
    char detail[1500];
    snprintf(detail, sizeof detail, "%s %s %s (id %lld)", principal, type, value, (long long)id);
    rc = cg_ps_finish(s, rc, "cred add", detail, error_r);
    if (rc == 0 && id_out)
        *id_out = id;
    return rc;
}

int cg_pstore_cred_remove(cg_pstore *s, const char *principal, int64_t id,
                          const char **error_r)
{
    int rc = cg_ps_begin(s, &error_r);
    if (rc < 0)
        return rc;
    int64_t pid = 0;
    int changes = 0;
    rc = cg_ps_principal_id(s, principal, &pid, error_r);
    if (rc == 0)
        rc = cg_ps_done(s, cg_ps_prep(s, error_r, "DELETE FROM credential WHERE id = ?1 AND principal_id = ?2",
                          "ii", id, pid), &changes, error_r);
    if (rc == 0 && changes == 0) {
        *error_r = cg_say("principal '%.200s' has no credential %lld", principal, (long long)id);
        rc = CG_E_NOTFOUND;
    }
    char detail[300];
    snprintf(detail, sizeof detail, "%s id %lld", principal, (long long)id);
    return cg_ps_finish(s, rc, "cred remove", detail, error_r);
}

typedef struct cred_rows {
    cg_pstore_cred_cb cb;
    void *ctx;
} cred_rows;

static int cred_row(cg_ps_row *st, void *arg)
{
    const cred_rows *l = arg;
    cg_pstore_cred c = {
        .id = cg_ps_col_int(st, 0),
        .principal_id = cg_ps_col_int(st, 1),
        .type = cg_ps_col_text(st, 2),
        .value = cg_ps_col_text(st, 3),
        .created = cg_ps_col_text(st, 4),
        .secret_len = (size_t)cg_ps_col_int(st, 5),
    };
    return l->cb(l->ctx, &c);
}

int cg_pstore_cred_list(cg_pstore *s, const char *principal, cg_pstore_cred_cb cb, void *ctx,
                        const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    int64_t pid = 0;
    int rc = cg_ps_principal_id(s, principal, &pid, error_r);
    if (rc < 0)
        return rc;
    cred_rows l = { cb, ctx };
    return cg_ps_rows(s, cg_ps_prep(s, error_r,
                                    "SELECT id, principal_id, type, value, created, "
                                    "length(secret) FROM credential WHERE principal_id = ?1 "
                                    "ORDER BY id", "i", pid),
                      cred_row, &l, error_r);
}

