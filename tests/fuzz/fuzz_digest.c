/* fuzz_digest — libFuzzer target for the Digest credentials parser and
 * verifier (policy/digest.c). The nonce secret is random per run, so no
 * input can carry a nonce of ours: any acceptance is a bug, and every
 * refusal must name its reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_util.h"
#include "policy/digest.h"

static cg_digest_ctx ctx = { .realm = "fuzz@cpmgate", .opaque = NULL };

static const char *lookup(void *l, const char *user, const char *realm, const char *alg)
{
    (void)l, (void)realm;
    static char h[65];
    cg_digest_ha1(strcmp(alg, "MD5") == 0 ? CG_DIGEST_MD5 : CG_DIGEST_SHA256, user, realm,
                  "pw", h);
    return h;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return cg_random(ctx.secret, sizeof ctx.secret) == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char hdr[CG_DIGEST_MAX_HEADER + 64];
    if (size >= sizeof hdr)
        size = sizeof hdr - 1;
    memcpy(hdr, data, size);
    hdr[size] = '\0';
    const char *err = NULL;
    int rc = cg_digest_verify_at(&ctx, hdr, "GET", "/a", 1800000000, lookup, NULL, &err);
    if (rc == 0 || !err)
        abort();
    return 0;
}
