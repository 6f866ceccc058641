/* tests/unit/proxy/http/test_http_dav.c — WebDAV URL handling (SPEC section 4): Destination and
 * If URLs for this host reduced to canonical paths, other hosts told
 * apart (502), lock tokens left alone; the multistatus filter removes
 * exactly the responses keep() refuses and refuses a DOCTYPE and nesting
 * past CG_HTTP_MULTISTATUS_MAX_DEPTH. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "proxy/http/dav.h"
#include "proxy/http/path.h"

#define HOST "gw.example:8443"

static void test_url_canon(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        bool https;
        cg_http_dav_url rc;
        const char *canon;
    } t[] = {
        {"https://gw.example:8443/a/b%20c", true, CG_HTTP_DAV_URL_OURS, "/a/b%20c"},
        {"https://GW.example:8443/a/./x/../b", true, CG_HTTP_DAV_URL_OURS, "/a/b"},
        {"/a/%2e%2e/b", true, CG_HTTP_DAV_URL_OURS, "/b"},
        {"https://gw.example:8443", true, CG_HTTP_DAV_URL_OURS, "/"},
        {"https://evil.example/a", true, CG_HTTP_DAV_URL_OTHER_HOST, NULL},
        {"https://gw.example:9999/a", true, CG_HTTP_DAV_URL_OTHER_HOST, NULL},
        {"http://gw.example:8443/a", true, CG_HTTP_DAV_URL_OURS, "/a"},
        {"https://gw.example:8443/a%2fb", true, CG_HTTP_DAV_URL_MALFORMED, NULL},
        {"https://gw.example:8443/../a", true, CG_HTTP_DAV_URL_MALFORMED, NULL},
        {"https://gw.example:8443/a?q", true, CG_HTTP_DAV_URL_MALFORMED, NULL},
        {"ftp://gw.example:8443/a", true, CG_HTTP_DAV_URL_MALFORMED, NULL},
        {"a/b", true, CG_HTTP_DAV_URL_MALFORMED, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char dec[256], out[768];
        size_t ol = 0;
        cg_http_dav_url rc = cg_http_dav_url_canon(t[i].url, strlen(t[i].url), HOST,
                                                   strlen(HOST), t[i].https, dec, sizeof dec,
                                                   out, sizeof out, &ol);
        if (rc != t[i].rc)
            fail_msg("%s: rc %d", t[i].url, (int)rc);
        if (t[i].canon) {
            assert_int_equal(ol, strlen(t[i].canon));
            assert_string_equal(out, t[i].canon);
        }
    }
}

static void test_if_rewrite(void **state)
{
    (void)state;
    const char *in = "<https://gw.example:8443/a/%2e/b> (<opaquelocktoken:1234> [\"etag\"]) "
                     "(Not <DAV:no-lock>)";
    char out[1024];
    size_t ol;
    assert_int_equal(cg_http_dav_rewrite_if(in, strlen(in), HOST, strlen(HOST), true, out,
                                            sizeof out, &ol), CG_HTTP_DAV_URL_OURS);
    assert_string_equal(out, "</a/b> (<opaquelocktoken:1234> [\"etag\"]) (Not <DAV:no-lock>)");
    in = "<https://evil.example/a> (<opaquelocktoken:1>)";
    assert_int_equal(cg_http_dav_rewrite_if(in, strlen(in), HOST, strlen(HOST), true, out,
                                            sizeof out, &ol), CG_HTTP_DAV_URL_OTHER_HOST);
    in = "(<opaquelocktoken:1>";
    assert_int_equal(cg_http_dav_rewrite_if(in, strlen(in), HOST, strlen(HOST), true, out,
                                            sizeof out, &ol), CG_HTTP_DAV_URL_MALFORMED);
    in = "<https://gw.example:8443/a";
    assert_int_equal(cg_http_dav_rewrite_if(in, strlen(in), HOST, strlen(HOST), true, out,
                                            sizeof out, &ol), CG_HTTP_DAV_URL_MALFORMED);
}

/* Paths past CG_HTTP_PATH_MAX are too long, not malformed; a buffer
 * smaller than the rewrite needs is refused, never written past (each is
 * allocated at exactly the size passed, so ASan sees a single byte over). */
static void test_long_paths_are_limited_within_the_given_size(void **state)
{
    (void)state;
    size_t n = CG_HTTP_PATH_MAX + 10;
    char *url = malloc(n + 1);
    assert_non_null(url);
    url[0] = '/';
    memset(url + 1, ':', n - 1);
    url[n] = '\0';
    size_t dcap = CG_HTTP_PATH_MAX + 1, cap = 3 * CG_HTTP_PATH_MAX + 1, ol;
    char *dec = malloc(dcap), *out = malloc(cap);
    assert_non_null(dec);
    assert_non_null(out);
    assert_int_equal(cg_http_dav_url_canon(url, n, HOST, strlen(HOST), true, dec, dcap, out,
                                           cap, &ol), CG_HTTP_DAV_URL_TOO_LONG);
    /* at the limit, ':' grows threefold and still fits its own array */
    assert_int_equal(cg_http_dav_url_canon(url, CG_HTTP_PATH_MAX, HOST, strlen(HOST), true,
                                           dec, dcap, out, cap, &ol), CG_HTTP_DAV_URL_OURS);
    assert_int_equal(ol, 1 + 3 * (CG_HTTP_PATH_MAX - 1));
    free(out);

    char in[64 + 3 * 40];
    snprintf(in, sizeof in, "<https://gw.example:8443/%s> (<urn:uuid:1>)",
             "::::::::::::::::::::::::::::::::::::::::");
    for (size_t small = 1; small < 3 * strlen(in) + 64; small++) {
        char *o = malloc(small);
        assert_non_null(o);
        cg_http_dav_url rc = cg_http_dav_rewrite_if(in, strlen(in), HOST, strlen(HOST), true, o,
                                                    small, &ol);
        if (rc == CG_HTTP_DAV_URL_OURS)
            assert_true(ol < small);
        else
            assert_int_equal(rc, CG_HTTP_DAV_URL_TOO_LONG);
        free(o);
    }
    char *big = malloc(n + 16), *o = malloc(3 * (n + 16) + 64);
    assert_non_null(big);
    assert_non_null(o);
    int bl = snprintf(big, n + 16, "<%s>", url);
    assert_int_equal(cg_http_dav_rewrite_if(big, (size_t)bl, HOST, strlen(HOST), true, o,
                                            3 * (n + 16) + 64, &ol), CG_HTTP_DAV_URL_TOO_LONG);
    free(big);
    free(o);
    free(dec);
    free(url);
}

static bool keep_public(void *ctx, const char *path, size_t len)
{
    (*(int *)ctx)++;
    return len >= 3 && strncmp(path, "/d/", 3) == 0 && strstr(path, "secret") == NULL;
}

#define MS_HEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
#define RESP(h) "<D:response><D:href>" h "</D:href><D:propstat><D:status>HTTP/1.1 200 OK" \
                "</D:status></D:propstat></D:response>"

static void test_filter(void **state)
{
    (void)state;
    const char *xml = MS_HEAD "<D:multistatus xmlns:D=\"DAV:\">" RESP("/d/") RESP("/d/pub/")
        RESP("/d/secret/") RESP("https://gw.example:8443/d/%73ecret.txt") RESP("/d/%2e%2e/x")
        RESP("https://other.example/d/a") "</D:multistatus>";
    char *out = NULL;
    size_t ol = 0, removed = 0;
    int calls = 0;
    assert_int_equal(cg_http_dav_filter(xml, strlen(xml), HOST, strlen(HOST), true,
                                        keep_public, &calls, NULL, 0, &out, &ol, &removed), 0);
    assert_int_equal(removed, 4);
    assert_non_null(strstr(out, "<D:href>/d/</D:href>"));
    assert_non_null(strstr(out, "<D:href>/d/pub/</D:href>"));
    assert_null(strstr(out, "secret"));
    assert_null(strstr(out, "other.example"));
    assert_null(strstr(out, "/x<"));
    free(out);

    /* a remote environment's answer: each href kept gets the route's
     * prefix, so the client addresses it through this gateway */
    out = NULL;
    assert_int_equal(cg_http_dav_filter(xml, strlen(xml), HOST, strlen(HOST), true,
                                        keep_public, &calls, "/remote/b.example", 17, &out, &ol,
                                        &removed), 0);
    assert_int_equal(removed, 4);
    assert_non_null(strstr(out, "<D:href>/remote/b.example/d/</D:href>"));
    assert_non_null(strstr(out, "<D:href>/remote/b.example/d/pub/</D:href>"));
    assert_null(strstr(out, "<D:href>/d/"));
    free(out);

    /* a DOCTYPE (entities, external DTD) is refused outright */
    const char *evil = "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY e \"x\">]>"
                       "<D:multistatus xmlns:D=\"DAV:\">" RESP("/d/&e;") "</D:multistatus>";
    out = NULL;
    assert_true(cg_http_dav_filter(evil, strlen(evil), HOST, strlen(HOST), true, keep_public,
                                   &calls, NULL, 0, &out, &ol, &removed) < 0);
    assert_null(out);
    /* nesting past the bound (a prop value is the backend's to choose) */
    char deep[4096];
    size_t dn = (size_t)snprintf(deep, sizeof deep, "<D:multistatus xmlns:D=\"DAV:\">");
    for (int i = 0; i < CG_HTTP_MULTISTATUS_MAX_DEPTH; i++)
        dn += (size_t)snprintf(deep + dn, sizeof deep - dn, "<D:x>");
    for (int i = 0; i < CG_HTTP_MULTISTATUS_MAX_DEPTH; i++)
        dn += (size_t)snprintf(deep + dn, sizeof deep - dn, "</D:x>");
    dn += (size_t)snprintf(deep + dn, sizeof deep - dn, "</D:multistatus>");
    assert_true(dn < sizeof deep);
    assert_true(cg_http_dav_filter(deep, dn, HOST, strlen(HOST), true, keep_public, &calls, NULL, 0,
                                   &out, &ol, &removed) < 0);
    assert_null(out);
    /* not a multistatus, or not XML */
    const char *other = "<x/>";
    assert_true(cg_http_dav_filter(other, strlen(other), HOST, strlen(HOST), true, keep_public,
                                   &calls, NULL, 0, &out, &ol, &removed) < 0);
    assert_true(cg_http_dav_filter("<<", 2, HOST, strlen(HOST), true, keep_public, &calls, NULL, 0,
                                   &out, &ol, &removed) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_canon),
        cmocka_unit_test(test_if_rewrite),
        cmocka_unit_test(test_long_paths_are_limited_within_the_given_size),
        cmocka_unit_test(test_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
