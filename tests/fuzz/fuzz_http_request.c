/* fuzz_http_request — libFuzzer target for the HTTP request path: the
 * strict parser (proxy/http/parse.c), target normalisation
 * (proxy/http/path.c) and the ACL decision on the result. Invariants:
 * an accepted head has a target and a framing; a normalised path is
 * absolute, has no dot or empty segments, and its canonical form
 * normalises to itself; a path below the denied /pub/secret is never
 * allowed, however it was spelled. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/acl.h"
#include "proxy/http/parse.h"
#include "proxy/http/path.h"
#include "policy/snapshot.h"

static cg_acl *acl;
static cg_principal who = {.id = 1, .idx = 0, .name = "alice", .mailbox = "alice",
                           .enabled = true};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *err = NULL;
    cg_acl_builder *b = cg_acl_builder_new();
    if (!b || cg_acl_builder_add(b, 1, false, "*", CG_SVC_HTTP, "/pub/*", CG_RIGHT_ALL, &err) < 0 ||
        cg_acl_builder_add(b, 2, true, "*", CG_SVC_HTTP, "/pub/secret*", CG_RIGHT_ALL, &err) < 0)
        abort();
    acl = cg_acl_build(b, &who, 1, NULL, 0, &err);
    if (!acl)
        abort();
    return 0;
}

static void check_path(const char *t, size_t n)
{
    size_t pl, ql, dl, cl;
    const char *q, *why = NULL;
    if (cg_http_target_split(t, n, &pl, &q, &ql) < 0)
        return;
    static char dec[CG_HTTP_PATH_MAX + 1], can[3 * CG_HTTP_PATH_MAX + 1];
    if (pl > CG_HTTP_PATH_MAX)
        return;
    if (cg_http_path_normalize(t, pl, dec, sizeof dec, &dl, can, sizeof can, &cl, &why) < 0) {
        if (!why)
            abort(); /* every refusal names its reason */
        return;
    }
    if (dl != strlen(dec) || dec[0] != '/' || strstr(dec, "//") || strstr(dec, "/./") ||
        strstr(dec, "/../") || memchr(dec, '\\', dl))
        abort();
    if ((dl >= 2 && strcmp(dec + dl - 2, "/.") == 0) || (dl >= 3 && strcmp(dec + dl - 3, "/..") == 0))
        abort();
    static char dec2[CG_HTTP_PATH_MAX + 1], can2[3 * CG_HTTP_PATH_MAX + 1];
    size_t dl2, cl2;
    if (cl <= CG_HTTP_PATH_MAX) {
        if (cg_http_path_normalize(can, cl, dec2, sizeof dec2, &dl2, can2, sizeof can2, &cl2,
                                   &why) < 0 ||
            strcmp(dec, dec2) != 0 || strcmp(can, can2) != 0)
            abort(); /* what is forwarded means what was judged */
    }
    cg_decision d = cg_acl_decide(acl, &who, CG_SVC_HTTP, CG_RIGHT_READ, dec, dl, '/');
    if (strncmp(dec, "/pub/secret", 11) == 0 && d.allow)
        abort();
}

static void count(void *ctx, const uint8_t *buf, size_t len)
{
    (void)buf;
    *(size_t *)ctx += len;
}

/* The response side (framing backend answers): whatever the bytes, the
 * parser ends in a state the gateway can act on, and a body never
 * exceeds its Content-Length. */
static void fuzz_response(const uint8_t *data, size_t size, size_t step, bool head_req)
{
    cg_http_parser p;
    if (cg_http_parser_init(&p, false, 4096, 32, 4096) < 0)
        return;
    size_t body = 0, off = 0, used;
    p.no_body = head_req;
    p.on_body = count;
    p.ctx = &body;
    const char *why = NULL;
    cg_http_feed r = CG_HTTP_MORE;
    while (off < size && r == CG_HTTP_MORE) {
        size_t k = size - off < step ? size - off : step;
        r = cg_http_feed_head(&p, data + off, k, &used, &why);
        off += used;
    }
    if (r == CG_HTTP_DONE) {
        if (head_req && p.head.framing != CG_HTTP_BODY_NONE)
            abort();
        while (off < size && !p.complete) {
            size_t k = size - off < step ? size - off : step;
            r = cg_http_feed_body(&p, data + off, k, &used, &why);
            if (r == CG_HTTP_REFUSED)
                break;
            off += used;
            if (used == 0 && !p.complete)
                break;
        }
        if (p.head.framing == CG_HTTP_BODY_LENGTH && body > p.head.content_length)
            abort();
        (void)cg_http_finish(&p, &why); /* the outcome does not matter here */
    } else if (r == CG_HTTP_REFUSED && !why) {
        abort();
    }
    cg_http_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* the first byte picks how the bytes are split: the answer must not
     * depend on it */
    size_t step = (size_t)(data[0] % 16) + 1;
    bool response = data[0] & 0x80, head_req = data[0] & 0x40;
    data++, size--;
    if (response) {
        fuzz_response(data, size, step, head_req);
        return 0;
    }
    cg_http_parser p;
    if (cg_http_parser_init(&p, true, 4096, 32, 2048) < 0)
        return 0;
    size_t off = 0, used;
    const char *why = NULL;
    cg_http_feed r = CG_HTTP_MORE;
    while (off < size && r == CG_HTTP_MORE) {
        size_t k = size - off < step ? size - off : step;
        r = cg_http_feed_head(&p, data + off, k, &used, &why);
        off += used;
    }
    if (r == CG_HTTP_DONE) {
        if (p.head.path.len == 0 || p.head.major != 1)
            abort();
        if (p.head.form == CG_HTTP_ORIGIN || p.head.form == CG_HTTP_ABSOLUTE)
            check_path(cg_http_str(&p, p.head.path), p.head.path.len);
        while (off < size && !p.complete) {
            size_t k = size - off < step ? size - off : step;
            r = cg_http_feed_body(&p, data + off, k, &used, &why);
            if (r == CG_HTTP_REFUSED)
                break;
            off += used;
            if (used == 0 && !p.complete)
                break;
        }
    } else if (r == CG_HTTP_REFUSED && !why) {
        abort();
    }
    /* the path normaliser on its own, on the raw bytes */
    check_path((const char *)data, size < 2048 ? size : 2048);
    cg_http_parser_free(&p);
    return 0;
}
