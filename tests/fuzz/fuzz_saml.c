/* fuzz_saml — libFuzzer target for SAML assertion verification
 * (policy/saml.c): hostile XML through the DOCTYPE guard, libxml2, the
 * structure checks and xmlsec's signature processing. The IdP key is made
 * at start, so nothing the fuzzer writes can carry a valid signature:
 * any acceptance is a bug. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "policy/saml.h"

static cg_saml_verifier *verifier;

/* A self-signed P-256 certificate as PEM (the test IdP). */
static char *make_cert(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    char *out = NULL;
    if (k && x && X509_set_version(x, 2) && ASN1_INTEGER_set(X509_get_serialNumber(x), 1) &&
        X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) && X509_set_pubkey(x, k) &&
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"fuzz-idp", -1, -1, 0) &&
        X509_set_issuer_name(x, X509_get_subject_name(x)) && X509_sign(x, k, EVP_sha256())) {
        BIO *b = BIO_new(BIO_s_mem());
        char *data;
        if (b && PEM_write_bio_X509(b, x)) {
            long n = BIO_get_mem_data(b, &data);
            out = malloc((size_t)n + 1); /* the BIO's data is not NUL-terminated */
            if (out) {
                memcpy(out, data, (size_t)n);
                out[n] = '\0';
            }
        }
        BIO_free(b);
    }
    X509_free(x);
    EVP_PKEY_free(k);
    return out;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    xmlInitParser();
    if (cg_saml_global_init(NULL) < 0)
        abort();
    char *pem = make_cert();
    cg_saml_params p = { .idp_cert_pem = pem, .issuer = "https://idp.example.com/",
                         .audience = "https://gw.example.com/", .clock_skew = 60 };
    if (!pem || cg_saml_verifier_new(&p, &verifier, NULL) < 0)
        abort();
    free(pem);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cg_saml_result res;
    const char *err = NULL;
    int rc = size > 0 && (data[0] & 1)
                 ? cg_saml_verify_b64(verifier, (const char *)data + 1, size - 1, 1800000000,
                                      &res, &err)
                 : cg_saml_verify_xml(verifier, (const char *)data, size, 1800000000, &res, &err);
    if (rc == 0 || !err)
        abort(); /* accepted without a valid signature, or refused without a reason */
    return 0;
}
