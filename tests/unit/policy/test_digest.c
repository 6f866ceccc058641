/* tests/unit/policy/test_digest.c — policy/digest.c: RFC 7616 section 3.9.1 vectors, the
 * whole verification with our own nonces, replay, stale, eviction and
 * malformed credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <stdlib.h>
#include <unistd.h>

#include "common/cg_error.h"
#include "policy/digest.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/unit/unit_util.h"

#define REALM "http-auth@example.org"
#define NOW 1800000000

/* RFC 7616 3.9.1: Mufasa / "Circle of Life" */
static void test_rfc7616_vectors(void **state)
{
    static const struct {
        int alg;
        const char *response;
    } v[] = {
        { CG_DIGEST_SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1" },
        { CG_DIGEST_MD5, "8ca523f5e9506fed4657c9700eebdbec" },
    };
    for (size_t i = 0; i < 2; i++) {
        char ha1[65], r[65];
        assert_int_equal(cg_digest_ha1(v[i].alg, "Mufasa", REALM, "Circle of Life", ha1), 0);
        assert_int_equal(cg_digest_response(v[i].alg, ha1,
                                            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                                            "00000001",
                                            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                                            "GET", "/dir/index.html", r),
                         0);
        assert_string_equal(r, v[i].response);
    }
}

static cg_digest_ctx ctx(void)
{
    cg_digest_ctx c = { .realm = REALM, .nonce_lifetime = 300 };
    memset(c.secret, 0x5a, sizeof c.secret);
    return c;
}

/* the stored HA1 table: only Mufasa, both algorithms */
static const char *lookup(void *l, const char *user, const char *realm, const char *alg)
{
    static char md5[65], sha[65];
    (void)l;
    if (strcmp(user, "Mufasa") != 0 || strcmp(realm, REALM) != 0)
        return NULL;
    cg_digest_ha1(CG_DIGEST_MD5, "Mufasa", REALM, "Circle of Life", md5);
    cg_digest_ha1(CG_DIGEST_SHA256, "Mufasa", REALM, "Circle of Life", sha);
    return strcmp(alg, "MD5") == 0 ? md5 : sha;
}

/* A client's Authorization value for nonce/nc. */
static void client(char *out, size_t cap, int alg, const char *user, const char *password,
                   const char *nonce, const char *nc, const char *method, const char *uri)
{
    char ha1[65], r[65];
    cg_digest_ha1(alg, user, REALM, password, ha1);
    cg_digest_response(alg, ha1, nonce, nc, "0a4f113b", method, uri, r);
    snprintf(out, cap,
             "Digest username=\"%s\", realm=\"" REALM "\", uri=\"%s\", algorithm=%s, "
             "nonce=\"%s\", nc=%s, cnonce=\"0a4f113b\", qop=auth, response=\"%s\"",
             user, uri, alg == CG_DIGEST_MD5 ? "MD5" : "SHA-256", nonce, nc, r);
}

static int verify(const cg_digest_ctx *c, const char *h, const char *method,
                  const char *target, int64_t now)
{
    const char *err = NULL;
    int rc = cg_digest_verify_at(c, h, method, target, now, lookup, NULL, &err);
    if (rc != 0)
        assert_non_null(err);
    return rc;
}

static void test_success_both_algorithms(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    int algs[] = { CG_DIGEST_SHA256, CG_DIGEST_MD5 };
    for (size_t i = 0; i < 2; i++) {
        char nonce[CG_DIGEST_NONCE_LEN], h[1024];
        cg_digest_nonce(&c, NOW, nonce);
        client(h, sizeof h, algs[i], "Mufasa", "Circle of Life", nonce, "00000001", "GET",
               "/dir/index.html");
        assert_int_equal(verify(&c, h, "GET", "/dir/index.html", NOW + 5), 0);
    }
}

static void test_algorithm_absent_means_md5(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    char nonce[CG_DIGEST_NONCE_LEN], h[1024], ha1[65], r[65];
    cg_digest_nonce(&c, NOW, nonce);
    cg_digest_ha1(CG_DIGEST_MD5, "Mufasa", REALM, "Circle of Life", ha1);
    cg_digest_response(CG_DIGEST_MD5, ha1, nonce, "00000001", "abc", "PUT", "/x", r);
    snprintf(h, sizeof h,
             "Digest username=\"Mufasa\",realm=\"" REALM "\",uri=\"/x\",nonce=\"%s\","
             "nc=00000001,cnonce=\"abc\",qop=\"auth\",response=\"%s\"", nonce, r);
    assert_int_equal(verify(&c, h, "PUT", "/x", NOW), 0);
}

static void test_failures(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    char nonce[CG_DIGEST_NONCE_LEN], h[1024];
    cg_digest_nonce(&c, NOW, nonce);
    /* wrong password */
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "wrong", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* unknown user */
    client(h, sizeof h, CG_DIGEST_SHA256, "Scar", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* uri is not the request target: a response for /a does not open /b */
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/b", NOW), CG_E_AUTH);
    /* another method than the one the response was computed for */
    assert_int_equal(verify(&c, h, "DELETE", "/a", NOW), CG_E_AUTH);
    /* a nonce of another gateway (other secret) */
    cg_digest_ctx other = ctx();
    other.secret[0] ^= 1;
    char forged[CG_DIGEST_NONCE_LEN];
    cg_digest_nonce(&other, NOW, forged);
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", forged, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* a nonce with a changed timestamp (made fresh by hand) */
    char moved[CG_DIGEST_NONCE_LEN];
    memcpy(moved, nonce, sizeof moved);
    moved[5] = moved[5] == 'A' ? 'B' : 'A';
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", moved, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* a valid request succeeds after all of these */
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), 0);
}

static void test_replay_refused(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    char nonce[CG_DIGEST_NONCE_LEN], h[1024];
    cg_digest_nonce(&c, NOW, nonce);
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000002", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), 0);
    /* the very same request again */
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* a lower count */
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    /* the next count is fine */
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000003", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW + 1), 0);
    /* and another nonce has its own count */
    char n2[CG_DIGEST_NONCE_LEN];
    cg_digest_nonce(&c, NOW, n2);
    assert_string_not_equal(n2, nonce);
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", n2, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), 0);
}

static void test_stale(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    char nonce[CG_DIGEST_NONCE_LEN], h[1024];
    cg_digest_nonce(&c, NOW, nonce);
    client(h, sizeof h, CG_DIGEST_MD5, "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW + 300), 0);
    client(h, sizeof h, CG_DIGEST_MD5, "Mufasa", "Circle of Life", nonce, "00000002", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW + 301), CG_E_AGAIN);
    /* stale is only said for a right response (RFC 7616 3.3) */
    client(h, sizeof h, CG_DIGEST_MD5, "Mufasa", "wrong", nonce, "00000003", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW + 301), CG_E_AUTH);
}

static void test_evicted_nonce_is_stale_never_fresh(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    static char first[1024];
    char h[1024];
    /* twice the table's size, each nonce used once, time moving on */
    int n = 2 * CG_DIGEST_REPLAY_SLOTS, stale = 0;
    for (int i = 0; i < n; i++) {
        char nonce[CG_DIGEST_NONCE_LEN];
        int64_t t = NOW + i / 32;
        cg_digest_nonce(&c, t, nonce);
        client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001",
               "GET", "/a");
        if (i == 0)
            memcpy(first, h, sizeof first);
        int rc = verify(&c, h, "GET", "/a", NOW + n / 32);
        assert_true(rc == 0 || rc == CG_E_AGAIN);
        stale += rc == CG_E_AGAIN;
    }
    /* the first nonce was evicted: replaying it is answered stale */
    assert_int_equal(verify(&c, first, "GET", "/a", NOW + n / 32), CG_E_AGAIN);
    /* a nonce newer than everything evicted is accepted */
    char nonce[CG_DIGEST_NONCE_LEN];
    cg_digest_nonce(&c, NOW + n / 32 + 1, nonce);
    client(h, sizeof h, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW + n / 32 + 1), 0);
    (void)stale;
}

static void test_malformed(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    char nonce[CG_DIGEST_NONCE_LEN];
    cg_digest_nonce(&c, NOW, nonce);
    char good[1024];
    client(good, sizeof good, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001",
           "GET", "/a");
    static char big[CG_DIGEST_MAX_HEADER + 64];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "Digest username=\"", 17);
    const char *cases[] = {
        "",
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "Digest",
        "Digest ",
        "Digestusername=\"Mufasa\"",
        "Digest username=\"Mufasa\" realm=\"" REALM "\"",       /* missing comma */
        "Digest username=\"Mufasa, realm=\"x\"",                 /* unterminated */
        "Digest username=\"Mufasa\", username=\"Mufasa\"",       /* duplicate */
        "Digest username=, realm=\"x\"",                          /* empty token */
        "Digest username=\"Mu\x01" "fasa\"",                      /* control char */
        "Digest =\"x\"",
        "Digest username=\"Mufasa\",,realm=\"x\"",
        big,
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(verify(&c, cases[i], "GET", "/a", NOW), CG_E_AUTH);
    /* the good header with one parameter altered in each way */
    struct { const char *from, *to; } edits[] = {
        { "qop=auth", "qop=auth-int" },
        { "algorithm=SHA-256", "algorithm=SHA-512-256" },
        { "algorithm=SHA-256", "algorithm=SHA-256-sess" },
        { "nc=00000001", "nc=1" },
        { "nc=00000001", "nc=0000000g" },
        { "nc=00000001", "nc=00000000" },
        { "username=\"Mufasa\"", "username*=UTF-8''Mufasa" },
        { "realm=\"" REALM "\"", "realm=\"other\"" },
        { ", cnonce=\"0a4f113b\"", "" },
        { ", qop=auth", "" },
        { "qop=auth", "qop=auth, userhash=true" },
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char h[1200];
        const char *at = strstr(good, edits[i].from);
        assert_non_null(at);
        snprintf(h, sizeof h, "%.*s%s%s", (int)(at - good), good, edits[i].to,
                 at + strlen(edits[i].from));
        assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH);
    }
    /* escapes in quoted strings are honoured: \"M\ufasa\" is Mufasa */
    char h[1200];
    const char *at = strstr(good, "\"Mufasa\"");
    snprintf(h, sizeof h, "%.*s\"M\\ufasa\"%s", (int)(at - good), good, at + 8);
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), 0);
}

static void test_challenges(void **state)
{
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    c.opaque = "FQhe";
    char out[1200];
    size_t n = cg_digest_challenges(&c, false, NOW, out, sizeof out);
    assert_true(n > 0);
    char *sha = strstr(out, "algorithm=SHA-256"), *md5 = strstr(out, "algorithm=MD5");
    assert_non_null(sha);
    assert_non_null(md5);
    assert_true(sha < md5);
    assert_non_null(strstr(out, "WWW-Authenticate: Digest realm=\"" REALM "\", qop=\"auth\""));
    assert_null(strstr(out, "stale"));
    n = cg_digest_challenges(&c, true, NOW, out, sizeof out);
    assert_non_null(strstr(out, "stale=true"));
    assert_int_equal(cg_digest_challenges(&c, false, NOW, out, 100), 0);
    /* a realm with a quote is written as a quoted-string */
    cg_digest_ctx qc = ctx();
    qc.realm = "a \"b\" \\c";
    assert_true(cg_digest_challenge(&qc, CG_DIGEST_MD5, false, NOW, out, sizeof out) > 0);
    assert_non_null(strstr(out, "realm=\"a \\\"b\\\" \\\\c\", qop"));
    qc.realm = "bad\r\nX-Injected: 1";
    assert_int_equal(cg_digest_challenge(&qc, CG_DIGEST_MD5, false, NOW, out, sizeof out), 0);
    /* the nonce from a challenge verifies (opaque echoed) */
    char one[CG_DIGEST_CHALLENGE_MAX];
    assert_true(cg_digest_challenge(&c, CG_DIGEST_SHA256, false, NOW, one, sizeof one) > 0);
    const char *q = strstr(one, "nonce=\"") + 7;
    char nonce[CG_DIGEST_NONCE_LEN] = { 0 };
    memcpy(nonce, q, strcspn(q, "\""));
    char h[1200];
    client(h, sizeof h - 40, CG_DIGEST_SHA256, "Mufasa", "Circle of Life", nonce, "00000001",
           "GET", "/a");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), CG_E_AUTH); /* opaque missing */
    strcat(h, ", opaque=\"FQhe\"");
    assert_int_equal(verify(&c, h, "GET", "/a", NOW), 0);
}

/* cg_digest_verify against a real snapshot: the HA1 stored by the policy
 * store for the principal, a disabled principal refused. */
static void test_with_snapshot(void **state)
{
    char dir[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-digest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    char db[600];
    snprintf(db, sizeof db, "%s/policy.db", dir);
    cg_pstore *ps;
    const char *err = NULL;
    assert_int_equal(cg_pstore_open(db, CG_PSTORE_CREATE, &ps, &err), 0);
    char md5[65], sha[65];
    const char *users[] = { "Mufasa", "Scar" };
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cg_pstore_principal_add(ps, users[i], "user", NULL, &err), 0);
        cg_digest_ha1(CG_DIGEST_MD5, users[i], REALM, "Circle of Life", md5);
        cg_digest_ha1(CG_DIGEST_SHA256, users[i], REALM, "Circle of Life", sha);
        int64_t id;
        assert_int_equal(cg_pstore_cred_add(ps, users[i], "digest", REALM, NULL, 0, md5, sha,
                                            &id, &err), 0);
    }
    assert_int_equal(cg_pstore_principal_set_enabled(ps, "Scar", false, &err), 0);
    /* a policy as a gateway has one: with a rule */
    int64_t rid;
    assert_int_equal(cg_pstore_rule_add(ps, false, "*", "http", "/*", 2, NULL, &rid, &err), 0);
    cg_snapshot *snap;
    assert_int_equal(cg_snapshot_build(ps, &snap, &err), 0);
    cg_digest_replay_reset();
    cg_digest_ctx c = ctx();
    int64_t now = (int64_t)time(NULL);
    int algs[] = { CG_DIGEST_SHA256, CG_DIGEST_MD5 };
    for (int i = 0; i < 2; i++) {
        char nonce[CG_DIGEST_NONCE_LEN], h[1024];
        const cg_principal *who = NULL;
        cg_digest_nonce(&c, now, nonce);
        client(h, sizeof h, algs[i], "Mufasa", "Circle of Life", nonce, "00000001", "GET", "/a");
        assert_int_equal(cg_digest_verify(&c, h, "GET", "/a", snap, &who, &err), 0);
        assert_non_null(who);
        assert_string_equal(who->name, "Mufasa");
        /* replayed */
        assert_int_equal(cg_digest_verify(&c, h, "GET", "/a", snap, &who, &err), CG_E_AUTH);
        client(h, sizeof h, algs[i], "Mufasa", "wrong", nonce, "00000002", "GET", "/a");
        assert_int_equal(cg_digest_verify(&c, h, "GET", "/a", snap, &who, &err), CG_E_AUTH);
        /* a disabled principal: right password, refused, named */
        client(h, sizeof h, algs[i], "Scar", "Circle of Life", nonce, "00000003", "GET", "/a");
        assert_int_equal(cg_digest_verify(&c, h, "GET", "/a", snap, &who, &err), CG_E_AUTH);
        assert_non_null(who);
        assert_string_equal(who->name, "Scar");
        assert_non_null(strstr(err, "disabled"));
    }
    cg_snapshot_release(snap);
    cg_pstore_close(ps);
    tu_remove_db(db);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7616_vectors),
        cmocka_unit_test(test_success_both_algorithms),
        cmocka_unit_test(test_algorithm_absent_means_md5),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_replay_refused),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_evicted_nonce_is_stale_never_fresh),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_challenges),
        cmocka_unit_test(test_with_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
