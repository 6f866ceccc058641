/* saml_check — runs cg_saml_verify_xml (or _b64) on one file, for the SAML
 * integration tests: prints "ok NAMEID EXPIRES" and exits 0, or prints
 * "refused: REASON" and exits 1; 2 on bad usage.
 * usage: saml_check --cert IDP.pem --issuer I --audience A [--skew N]
 *                   [--now UNIXTIME] [--b64] FILE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>

#include "cg_util.h"
#include "saml.h"

int main(int argc, char **argv)
{
    cg_saml_params p = { 0 };
    const char *file = NULL;
    uint64_t now = (uint64_t)time(NULL), skew = 0;
    int b64 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--b64") == 0) {
            b64 = 1;
        } else if (val && strcmp(a, "--cert") == 0) {
            p.idp_cert_path = val, i++;
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
