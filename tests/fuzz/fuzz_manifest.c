/* fuzz_manifest — libFuzzer target for content-manifest parsing
 * (policy/manifest.c): the raw XML path and the base64 header path, and
 * for every manifest that parses, the item lookups and a signature check
 * with a fixed Ed25519 key (which must fail: the fuzzer cannot sign). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <openssl/evp.h>

#include "policy/manifest.h"

static EVP_PKEY *key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    xmlInitParser();
    static const uint8_t raw[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, sizeof raw);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cg_manifest *m = NULL;
    const char *err = NULL;
    /* first byte picks the entry point, so both are explored */
    int b64 = size > 0 && (data[0] & 1);
    int rc = b64 ? cg_manifest_parse_b64((const char *)data + 1, size - 1, &m, &err)
                 : cg_manifest_parse(data, size, &m, &err);
    if ((rc < 0) != (m == NULL))
        abort(); /* a manifest exactly when the parse succeeded */
    if (!m) {
        if (!err)
            abort(); /* every refusal names its reason */
        return 0;
    }
    size_t n = cg_manifest_nitems(m);
    if (n == 0 || n > CG_MANIFEST_MAX_ITEMS)
        abort();
    for (size_t i = 0; i < n; i++) {
        const cg_manifest_item *it = cg_manifest_item_at(m, i);
        if (cg_manifest_find_item(m, it->path) != it)
            abort(); /* one item per path */
        if (cg_manifest_path_check(it->path, NULL) != 0 || it->siglen == 0 ||
            it->siglen > CG_MANIFEST_MAX_SIG)
            abort();
        if (key && it->alg == CG_MALG_ED25519 &&
            cg_manifest_verify_item(it, key, "ed25519", NULL) == 0)
            abort(); /* a forged signature was accepted */
    }
    cg_manifest_free(m);
    return 0;
}
