/* saml_check — runs cg_saml_verify_xml (or _b64) on one file, for the SAML
 * integration tests: prints "ok NAMEID EXPIRES" and exits 0, or prints
 * "refused: REASON" and exits 1; 2 on bad usage.
 * usage: saml_check --cert IDP.pem --issuer I --audience A [--skew N]
 *                   [--now UNIXTIME] [--b64] [--db POLICY_DB] FILE
 * With --db (base64 input), runs what the gateway runs twice:
 * cg_saml_authenticate against a snapshot of that policy database, and
 * prints "ok PRINCIPAL" or "ok PRINCIPAL cached" per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>

#include "common/cg_util.h"
#include "store/policy_store.h"
#include "policy/saml.h"
#include "policy/snapshot.h"

static int authenticate(cg_saml_verifier *v, const char *db, const char *b64, size_t n)
{
    const char *err = NULL;
    cg_pstore *ps;
    cg_snapshot *snap;
    if (cg_pstore_open(db, CG_PSTORE_READONLY, &ps, &err) < 0 ||
        cg_snapshot_build(ps, &snap, &err) < 0) {
        printf("policy: %s\n", err ? err : "?");
        return 2;
    }
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        uint64_t hits = cg_saml_cache_hits();
        const cg_principal *who = NULL;
        rc = cg_saml_authenticate(v, b64, n, snap, &who, &err);
        if (rc == 0)
            printf("ok %s%s\n", who->name, cg_saml_cache_hits() > hits ? " cached" : "");
        else
            printf("refused: %s\n", err ? err : "?");
    }
    cg_snapshot_release(snap);
    cg_pstore_close(ps);
    cg_saml_verifier_free(v);
    cg_saml_global_shutdown();
    xmlCleanupParser();
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    cg_saml_params p = { 0 };
    const char *file = NULL, *db = NULL;
    uint64_t now = (uint64_t)time(NULL), skew = 0;
    int b64 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--b64") == 0) {
            b64 = 1;
        } else if (val && strcmp(a, "--cert") == 0) {
            p.idp_cert_path = val, i++;
        } else if (val && strcmp(a, "--db") == 0) {
            db = val, i++;
            b64 = 1;
        } else if (val && strcmp(a, "--issuer") == 0) {
            p.issuer = val, i++;
        } else if (val && strcmp(a, "--audience") == 0) {
            p.audience = val, i++;
        } else if (val && strcmp(a, "--skew") == 0) {
            if (cg_parse_u64(val, 0, 86400, &skew) < 0)
                return 2;
            i++;
        } else if (val && strcmp(a, "--now") == 0) {
            if (cg_parse_u64(val, 0, UINT32_MAX * 4ull, &now) < 0)
                return 2;
            i++;
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "saml_check: bad argument %s\n", a);
            return 2;
        }
    }
    if (!file || !p.idp_cert_path || !p.issuer || !p.audience)
        return 2;
    p.clock_skew = (unsigned)skew;
    FILE *f = fopen(file, "rb");
    if (!f)
        return 2;
    static char buf[4 * CG_SAML_MAX_XML];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (b64 && n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    xmlInitParser();
    const char *err = NULL;
    if (cg_saml_global_init(&err) < 0) {
        printf("init: %s\n", err);
        return 2;
    }
    cg_saml_verifier *v;
    if (cg_saml_verifier_new(&p, &v, &err) < 0) {
        printf("verifier: %s\n", err);
        return 2;
    }
    if (db)
        return authenticate(v, db, buf, n);
    cg_saml_result res;
    int rc = b64 ? cg_saml_verify_b64(v, buf, n, (int64_t)now, &res, &err)
                 : cg_saml_verify_xml(v, buf, n, (int64_t)now, &res, &err);
    if (rc == 0)
        printf("ok %s %lld\n", res.name_id, (long long)res.expires);
    else
        printf("refused: %s\n", err ? err : "?");
    cg_saml_verifier_free(v);
    cg_saml_global_shutdown();
    xmlCleanupParser();
    return rc == 0 ? 0 : 1;
}
