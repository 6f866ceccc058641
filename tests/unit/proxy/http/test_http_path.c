/* tests/unit/proxy/http/test_http_path.c — request-target normalisation (SPEC section 4): what
 * the ACL judges and what nginx is sent, and the path-bypass table: every
 * attempt to reach /secret through a path that looks like something else
 * either normalises to a path under /secret (so the ACL judges it as
 * such) or is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "proxy/http/path.h"

typedef struct ncase {
    const char *in;
    const char *decoded;   /* NULL: refused */
    const char *canon;
} ncase;

static const ncase cases[] = {
    {"/", "/", "/"},
    {"/a/b", "/a/b", "/a/b"},
    {"/a/b/", "/a/b/", "/a/b/"},
    {"//a///b", "/a/b", "/a/b"},
    {"/a/./b", "/a/b", "/a/b"},
    {"/a/b/..", "/a/", "/a/"},
    {"/a/b/.", "/a/b/", "/a/b/"},
    {"/a/b/../c", "/a/c", "/a/c"},
    {"/a b", "/a b", "/a%20b"},
    {"/a%20b/x", "/a b/x", "/a%20b/x"},
    {"/%61", "/a", "/a"},
    {"/~user/x-y_z.txt", "/~user/x-y_z.txt", "/~user/x-y_z.txt"},
    {"/a!$&'()*+,;=", "/a!$&'()*+,;=", "/a!$&'()*+,;="},
    {"/a:b@c", "/a:b@c", "/a%3Ab%40c"},
    {"/%c3%a9t%C3%A9", "/\xc3\xa9t\xc3\xa9", "/%C3%A9t%C3%A9"},
    {"/%252e", "/%2e", "/%252e"},
    {"/%f0%9f%98%80", "/\xf0\x9f\x98\x80", "/%F0%9F%98%80"},
    {"/a/...", "/a/...", "/a/..."},
    {"/a/..;/b", "/a/..;/b", "/a/..;/b"},
    {"", NULL, NULL},
    {"a/b", NULL, NULL},
    {"/%", NULL, NULL},
    {"/%4", NULL, NULL},
    {"/%zz", NULL, NULL},
    {"/a%2fb", NULL, NULL},
    {"/a%2Fb", NULL, NULL},
    {"/a\\b", NULL, NULL},
    {"/a%5cb", NULL, NULL},
    {"/a%00b", NULL, NULL},
    {"/a%0ab", NULL, NULL},
    {"/a%0d%0aX: y", NULL, NULL},
    {"/a%7f", NULL, NULL},
    {"/a%09", NULL, NULL},
    {"/..", NULL, NULL},
    {"/a/../..", NULL, NULL},
    {"/%ff", NULL, NULL},
    {"/%c0%ae", NULL, NULL},
    {"/%ed%a0%80", NULL, NULL},
    {"/%f4%90%80%80", NULL, NULL},
    {"/%e2%82", NULL, NULL},
};

static void test_normalise_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ncase *c = &cases[i];
        size_t n = strlen(c->in);
        char dec[256], can[768];
        size_t dl = 0, cl = 0;
        const char *why = NULL;
        int r = cg_http_path_normalize(c->in, n, dec, sizeof dec, &dl, can,
                                       sizeof can, &cl, &why);
        if (!c->decoded) {
            if (r == 0)
                fail_msg("case %zu \"%s\" accepted as \"%s\"", i, c->in, dec);
            assert_non_null(why);
            continue;
        }
        if (r != 0)
            fail_msg("case %zu \"%s\" refused: %s", i, c->in, why);
        assert_string_equal(dec, c->decoded);
        assert_int_equal(dl, strlen(c->decoded));
        assert_string_equal(can, c->canon);
        assert_int_equal(cl, strlen(c->canon));
        /* the canonical form is a fixed point: normalising what is
         * forwarded gives the same path again */
        char dec2[256], can2[768];
        size_t dl2, cl2;
        assert_int_equal(cg_http_path_normalize(can, cl, dec2, sizeof dec2, &dl2,
                                                can2, sizeof can2, &cl2, &why), 0);
        assert_string_equal(dec2, dec);
        assert_string_equal(can2, can);
    }
}

/* 40 attempts to reach /secret/ (denied) while looking like /public/. A
 * result is safe when it is refused, or when it names /secret (or below)
 * so the ACL denies it; it is a bypass when it is accepted as a path
 * outside /secret while the canonical form nginx gets resolves to the
 * secret file. Since nginx applies no decoding beyond one %XX pass and
 * the canonical form is a fixed point, "decoded outside /secret" means
 * nginx is outside it too; each case below says which outcome it has. */
typedef struct bcase {
    const char *in;
    int expect; /* 0 refused, 1 judged as /secret..., 2 harmless other path */
} bcase;

static const bcase bypass[] = {
    {"/public/../secret/a.txt", 1},
    {"/public/%2e%2e/secret/a.txt", 1},
    {"/public/%2E%2E/secret/a.txt", 1},
    {"/public/.%2e/secret/a.txt", 1},
    {"/public/%2e./secret/a.txt", 1},
    {"/public/./../secret/a.txt", 1},
    {"//secret/a.txt", 1},
    {"/./secret/a.txt", 1},
    {"/%73ecret/a.txt", 1},
    {"/%73%65%63%72%65%74/a.txt", 1},
    {"/secret//a.txt", 1},
    {"/secret/./a.txt", 1},
    {"/public/x/../../secret/a.txt", 1},
    {"/public///..//secret/a.txt", 1},
    {"/secret/a.txt/.", 1},
    {"/secret/", 1},
    {"/secret/x/..", 1},
    {"/public/..%2fsecret/a.txt", 0},
    {"/public/..%2Fsecret/a.txt", 0},
    {"/public%2f..%2fsecret/a.txt", 0},
    {"/public/..\\secret/a.txt", 0},
    {"/public/..%5csecret/a.txt", 0},
    {"/public/..%5Csecret/a.txt", 0},
    {"/secret%00/a.txt", 0},
    {"/public/a.txt%00/../../secret/a.txt", 0},
    {"/public/%c0%ae%c0%ae/secret/a.txt", 0},
    {"/public/%e0%80%ae%e0%80%ae/secret/a.txt", 0},
    {"/public/%c0%af../secret/a.txt", 0},
    {"/public/%c1%9c../secret/a.txt", 0},
    {"/../secret/a.txt", 0},
    {"/public/../../secret/a.txt", 0},
    {"/%2e%2e/secret/a.txt", 0},
    {"/public/%0d%0a/../secret", 0},
    {"/public/%09/../../secret", 0},
    {"/public/%252e%252e/secret/a.txt", 2},
    {"/public/%25%32%65%25%32%65/secret/a.txt", 2},
    {"/public/..;/secret/a.txt", 2},
    {"/public/.../secret/a.txt", 2},
    {"/public/. ./secret/a.txt", 2},
    {"/public/%2e%2e%20/secret/a.txt", 2},
};

static void test_bypass_table(void **state)
{
    (void)state;
    assert_true(sizeof bypass / sizeof bypass[0] >= 30);
    for (size_t i = 0; i < sizeof bypass / sizeof bypass[0]; i++) {
        const char *in = bypass[i].in;
        char dec[256], can[768];
        size_t dl, cl;
        const char *why;
        int r = cg_http_path_normalize(in, strlen(in), dec, sizeof dec, &dl,
                                       can, sizeof can, &cl, &why);
        switch (bypass[i].expect) {
        case 0:
            if (r == 0)
                fail_msg("bypass %zu \"%s\" accepted as \"%s\"", i, in, dec);
            break;
        case 1:
            if (r != 0)
                fail_msg("bypass %zu \"%s\" refused: %s", i, in, why);
            if (strncmp(dec, "/secret/", 8) != 0)
                fail_msg("bypass %zu \"%s\" judged as \"%s\"", i, in, dec);
            if (strncmp(can, "/secret/", 8) != 0)
                fail_msg("bypass %zu \"%s\" forwarded as \"%s\"", i, in, can);
            break;
        case 2:
            if (r != 0)
                fail_msg("bypass %zu \"%s\" refused: %s", i, in, why);
            /* stays below /public: both judged and forwarded */
            if (strncmp(dec, "/public/", 8) != 0 || strncmp(can, "/public/", 8) != 0)
                fail_msg("bypass %zu \"%s\" -> \"%s\" / \"%s\"", i, in, dec, can);
            break;
        }
    }
}

static void test_split_query(void **state)
{
    (void)state;
    size_t pl, ql;
    const char *q;
    const char *t = "/a/b?x=1&y=%2F";
    assert_int_equal(cg_http_target_split(t, strlen(t), &pl, &q, &ql), 0);
    assert_int_equal(pl, 4);
    assert_int_equal(ql, strlen("x=1&y=%2F"));
    assert_memory_equal(q, "x=1&y=%2F", ql);
    t = "/a";
    assert_int_equal(cg_http_target_split(t, strlen(t), &pl, &q, &ql), 0);
    assert_null(q);
    assert_int_equal(pl, 2);
    t = "/a#frag";
    assert_int_equal(cg_http_target_split(t, strlen(t), &pl, &q, &ql), CG_E_INVAL);
}

static void test_limits(void **state)
{
    (void)state;
    static char big[CG_HTTP_PATH_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[0] = '/';
    static char dec[sizeof big], can[3 * sizeof big];
    size_t dl, cl;
    const char *why;
    assert_int_equal(cg_http_path_normalize(big, sizeof big - 1, dec, sizeof dec, &dl,
                                            can, sizeof can, &cl, &why), CG_E_LIMIT);
    /* too small output buffers are refused, not overrun */
    assert_int_equal(cg_http_path_normalize("/abc", 4, dec, 4, &dl, can, sizeof can,
                                            &cl, &why), CG_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise_table),
        cmocka_unit_test(test_bypass_table),
        cmocka_unit_test(test_split_query),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
