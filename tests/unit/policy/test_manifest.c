/* tests/unit/policy/test_manifest.c — policy/manifest.c: the three algorithms, wrong key,
 * another principal's key, a signature replayed for another path, size or
 * hash, and hostile XML (billion laughs, external entity, 100 MB, deep
 * nesting, invalid base64, DOCTYPE) refused without harm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include "common/cg_base64.h"
#include "common/cg_error.h"
#include "policy/manifest.h"
#include "store/policy_keys.h"
#include "store/policy_rules.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/unit/unit_util.h"

static const uint8_t HASH[32] = { 0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
                                  0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
                                  0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                  0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55 };

static EVP_PKEY *keygen(int alg)
{
    switch (alg) {
    case CG_MALG_ECDSA_P256_SHA256: return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case CG_MALG_ED25519: return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    default: return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    }
}

static EVP_PKEY *keys[4], *other[4];

static int setup(void **state)
{
    for (int a = 1; a <= 3; a++) {
        keys[a] = keygen(a);
        other[a] = keygen(a);
        if (!keys[a] || !other[a])
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    for (int a = 1; a <= 3; a++) {
        EVP_PKEY_free(keys[a]);
        EVP_PKEY_free(other[a]);
    }
    return 0;
}

static char *sign(int alg, const char *path, uint64_t size)
{
    char *xml = NULL;
    const char *err = NULL;
    assert_int_equal(cg_manifest_sign(keys[alg], "k1", path, size, HASH, &xml, &err), 0);
    return xml;
}

/* Parses xml and checks its item for path with key as owner 7. */
static int check(const char *xml, const char *path, EVP_PKEY *key, uint32_t owner,
                 const char **err)
{
    cg_manifest *m = NULL;
    int rc = cg_manifest_parse(xml, strlen(xml), &m, err);
    if (rc < 0)
        return rc;
    const cg_manifest_item *it = cg_manifest_find_item(m, path);
    cg_pubkey pk = { .key_id = "k1", .alg = cg_pkey_alg(key), .evp = key, .principal_idx = owner };
    rc = it ? cg_manifest_check_with_key(it, &pk, 7, err) : CG_E_NOTFOUND;
    cg_manifest_free(m);
    return rc;
}

static void test_signed_bytes(void **state)
{
    char out[256];
    size_t n = cg_manifest_signed_bytes("/a b/c", 42, "00ff", out, sizeof out);
    assert_string_equal(out, "cpmgate-manifest-v1\n/a b/c\n42\n00ff\n");
    assert_int_equal(n, strlen(out));
    assert_int_equal(cg_manifest_signed_bytes("/a", 1, "00", out, 10), 0);
}

static void test_three_algorithms(void **state)
{
    static const char *names[] = { NULL, "ecdsa-p256-sha256", "ed25519", "rsa-pss-sha256" };
    for (int a = 1; a <= 3; a++) {
        char *xml = sign(a, "/content/a b.txt", 1234);
        assert_non_null(strstr(xml, names[a]));
        const char *err = NULL;
        assert_int_equal(check(xml, "/content/a b.txt", keys[a], 7, &err), 0);
        /* wrong key of the same kind */
        assert_int_equal(check(xml, "/content/a b.txt", other[a], 7, &err), CG_E_AUTH);
        assert_non_null(strstr(err, "signature is invalid"));
        /* the right key, registered for another principal */
        assert_int_equal(check(xml, "/content/a b.txt", keys[a], 8, &err), CG_E_AUTH);
        assert_non_null(strstr(err, "another principal"));
        /* a key of another algorithm than the item says */
        assert_int_equal(check(xml, "/content/a b.txt", keys[a % 3 + 1], 7, &err), CG_E_AUTH);
        free(xml);
    }
}

static void test_rsa_pss_parameters(void **state)
{
    /* the signature is RSA-PSS with MGF1-SHA256 and a 32-byte salt: an
     * independent verifier with those parameters accepts it */
    char *xml = sign(CG_MALG_RSA_PSS_SHA256, "/x", 5);
    cg_manifest *m;
    assert_int_equal(cg_manifest_parse(xml, strlen(xml), &m, NULL), 0);
    const cg_manifest_item *it = cg_manifest_item_at(m, 0);
    char msg[128];
    size_t ml = cg_manifest_signed_bytes("/x", 5, it->sha256_hex, msg, sizeof msg);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc;
    assert_int_equal(EVP_DigestVerifyInit(c, &pc, EVP_sha256(), NULL, keys[3]), 1);
    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 32);
    EVP_PKEY_CTX_set_rsa_mgf1_md(pc, EVP_sha256());
    assert_int_equal(EVP_DigestVerify(c, it->sig, it->siglen, (unsigned char *)msg, ml), 1);
    EVP_MD_CTX_free(c);
    cg_manifest_free(m);
    free(xml);
}

/* Replaces the first from with to in xml (new string). */
static char *edit(const char *xml, const char *from, const char *to)
{
    const char *at = strstr(xml, from);
    assert_non_null(at);
    size_t n = strlen(xml) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - xml), xml, to, at + strlen(from));
    return out;
}

static void test_no_replay_for_another_path_size_or_hash(void **state)
{
    for (int a = 1; a <= 3; a++) {
        char *xml = sign(a, "/content/report.pdf", 1000);
        const char *err = NULL;
        char *p = edit(xml, "path=\"/content/report.pdf\"", "path=\"/content/other.pdf\"");
        assert_int_equal(check(p, "/content/other.pdf", keys[a], 7, &err), CG_E_AUTH);
        char *s = edit(xml, "size=\"1000\"", "size=\"1001\"");
        assert_int_equal(check(s, "/content/report.pdf", keys[a], 7, &err), CG_E_AUTH);
        char *h = edit(xml, "sha256=\"e3", "sha256=\"e4");
        assert_int_equal(check(h, "/content/report.pdf", keys[a], 7, &err), CG_E_AUTH);
        /* and the item names only its own path */
        assert_int_equal(check(xml, "/content/other.pdf", keys[a], 7, &err), CG_E_NOTFOUND);
        free(p), free(s), free(h), free(xml);
    }
}

static void test_b64_and_items(void **state)
{
    char *xml = sign(CG_MALG_ED25519, "/a", 0);
    char b64[4096];
    cg_b64_encode((const uint8_t *)xml, strlen(xml), b64, sizeof b64);
    cg_manifest *m;
    const char *err;
    assert_int_equal(cg_manifest_parse_b64(b64, strlen(b64), &m, &err), 0);
    assert_int_equal(cg_manifest_nitems(m), 1);
    const cg_manifest_item *it = cg_manifest_item_at(m, 0);
    assert_string_equal(it->path, "/a");
    assert_int_equal(it->size, 0);
    assert_string_equal(it->key_id, "k1");
    assert_int_equal(it->alg, CG_MALG_ED25519);
    assert_int_equal(it->siglen, 64);
    assert_ptr_equal(cg_manifest_find_item(m, "/a"), it);
    cg_manifest_free(m);
    b64[5] = '*';
    assert_int_equal(cg_manifest_parse_b64(b64, strlen(b64), &m, &err), CG_E_PARSE);
    assert_non_null(strstr(err, "base64"));
    free(xml);
}

#define ITEM(path, sig)                                                                 \
    "<item path=\"" path "\" size=\"1\" sha256=\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4" \
    "649b934ca495991b7852b855\" key-id=\"k1\" alg=\"ed25519\">" sig "</item>"
#define SIG "QUJDRA=="
#define MAN(items) "<manifest xmlns=\"urn:cpmgate:manifest:1\">" items "</manifest>"

static void test_hostile_and_invalid(void **state)
{
    static const struct {
        const char *xml;
        int rc;
        const char *why;
    } cases[] = {
        { MAN(ITEM("/a", SIG)), 0, NULL },
        /* billion laughs */
        { "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY a \"aaaaaaaaaa\">"
          "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
          "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">]>"
          MAN(ITEM("/&e;", SIG)), CG_E_PARSE, "DOCTYPE" },
        /* external entity */
        { "<!DOCTYPE m [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>" MAN(ITEM("/&x;", SIG)),
          CG_E_PARSE, "DOCTYPE" },
        /* external DTD */
        { "<!DOCTYPE manifest SYSTEM \"http://127.0.0.1:1/x.dtd\">" MAN(ITEM("/a", SIG)),
          CG_E_PARSE, "DOCTYPE" },
        /* a reference to an entity (none can be declared) */
        { MAN(ITEM("/&x;", SIG)), CG_E_PARSE, "entities" },
        { MAN(ITEM("/a", SIG)) "<", CG_E_PARSE, "well-formed" },
        { "", CG_E_PARSE, "well-formed" },
        /* depth: an element inside an item */
        { MAN("<item path=\"/a\" size=\"1\" sha256=\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\" "
              "key-id=\"k1\" alg=\"ed25519\"><x><y><z>QUJDRA==</z></y></x></item>"),
          CG_E_LIMIT, "deeper" },
        /* invalid base64 in the signature */
        { MAN(ITEM("/a", "QUJD!A==")), CG_E_PARSE, "schema" },
        { MAN(ITEM("/a", "QUJDRA=")), CG_E_PARSE, "schema" },
        { MAN(ITEM("/a", "QUJD RA==")), CG_E_PARSE, "schema" },
        /* pad bits set: the schema's pattern passes it, the decoder does not */
        { MAN(ITEM("/a", "QUJDRB==")), CG_E_PARSE, "base64" },
        /* schema: namespace, attributes, values */
        { "<manifest>" ITEM("/a", SIG) "</manifest>", CG_E_PARSE, "schema" },
        { MAN(""), CG_E_PARSE, "schema" },
        { MAN("<item path=\"/a\" size=\"1\" key-id=\"k1\" alg=\"ed25519\">" SIG "</item>"),
          CG_E_PARSE, "schema" },
        { MAN("<item path=\"/a\" size=\"01\" sha256=\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\" "
              "key-id=\"k1\" alg=\"ed25519\">" SIG "</item>"), CG_E_PARSE, "schema" },
        { MAN("<item path=\"/a\" size=\"1\" sha256=\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\" "
              "key-id=\"k1\" alg=\"ed25519\">" SIG "</item>"), CG_E_PARSE, "schema" },
        { MAN("<item path=\"/a\" size=\"1\" sha256=\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\" "
              "key-id=\"k1\" alg=\"rsa-sha1\">" SIG "</item>"), CG_E_PARSE, "schema" },
        { MAN(ITEM("a", SIG)), CG_E_PARSE, "schema" },
        { MAN(ITEM("/a", SIG) "<other/>"), CG_E_PARSE, "schema" },
        /* paths that are not normalised, or one path twice */
        { MAN(ITEM("/a/../b", SIG)), CG_E_PARSE, "normalised" },
        { MAN(ITEM("/a//b", SIG)), CG_E_PARSE, "normalised" },
        { MAN(ITEM("/a/./b", SIG)), CG_E_PARSE, "normalised" },
        { MAN(ITEM("/a&#10;b", SIG)), CG_E_PARSE, "schema" },
        { MAN(ITEM("/a&#9;b", SIG)), CG_E_PARSE, "control" },
        { MAN(ITEM("/a", SIG) ITEM("/a", SIG)), CG_E_PARSE, "two items" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cg_manifest *m = NULL;
        const char *err = NULL;
        int rc = cg_manifest_parse(cases[i].xml, strlen(cases[i].xml), &m, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, want %d (%s)", i, rc, cases[i].rc, err ? err : "");
        if (cases[i].why && (!err || !strstr(err, cases[i].why)))
            fail_msg("case %zu: reason '%s' lacks '%s'", i, err ? err : "", cases[i].why);
        for (const char *q = err; q && *q; q++)
            if ((unsigned char)*q < 0x20)
                fail_msg("case %zu: reason has a control character", i);
        if (rc == 0)
            assert_non_null(m);
        else
            assert_null(m);
        cg_manifest_free(m);
    }
}

static void test_limits(void **state)
{
    const char *err;
    cg_manifest *m;
    /* 100 MB: refused by size before any parsing */
    size_t big = 100u << 20;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    memcpy(huge, "<manifest xmlns=\"urn:cpmgate:manifest:1\">", 41);
    assert_int_equal(cg_manifest_parse(huge, big, &m, &err), CG_E_LIMIT);
    assert_non_null(strstr(err, "64 KiB"));
    free(huge);
    /* deep nesting within 64 KiB: libxml2's own depth limit or ours */
    static char deep[65536];
    size_t n = 0;
    n += (size_t)sprintf(deep, "<manifest xmlns=\"urn:cpmgate:manifest:1\">");
    while (n + 8 < 60000)
        n += (size_t)sprintf(deep + n, "<a>");
    assert_int_not_equal(cg_manifest_parse(deep, n, &m, &err), 0);
    n = (size_t)sprintf(deep, "<manifest xmlns=\"urn:cpmgate:manifest:1\">");
    for (int i = 0; i < 20; i++)
        n += (size_t)sprintf(deep + n, "<a>");
    for (int i = 0; i < 20; i++)
        n += (size_t)sprintf(deep + n, "</a>");
    n += (size_t)sprintf(deep + n, "</manifest>");
    assert_int_equal(cg_manifest_parse(deep, n, &m, &err), CG_E_LIMIT);
    assert_non_null(strstr(err, "deeper"));
    /* 100 items are fine, 101 are not */
    static char many[65536];
    for (int count = 100; count <= 101; count++) {
        n = (size_t)sprintf(many, "<manifest xmlns=\"urn:cpmgate:manifest:1\">");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(many + n,
                                 "<item path=\"/f%d\" size=\"1\" sha256=\"e3b0c44298fc1c149afbf4c8996fb924"
                                 "27ae41e4649b934ca495991b7852b855\" key-id=\"k\" alg=\"ed25519\">QUJDRA==</item>", i);
        n += (size_t)sprintf(many + n, "</manifest>");
        assert_true(n <= 65536);
        int rc = cg_manifest_parse(many, n, &m, &err);
        if (count == 100) {
            assert_int_equal(rc, 0);
            assert_int_equal(cg_manifest_nitems(m), 100);
            assert_non_null(cg_manifest_find_item(m, "/f99"));
            cg_manifest_free(m);
        } else {
            assert_int_equal(rc, CG_E_LIMIT);
            assert_non_null(strstr(err, "100 items"));
        }
    }
}

static void test_sign_refuses_bad_input(void **state)
{
    char *xml;
    const char *err;
    assert_int_equal(cg_manifest_sign(keys[1], "k1", "relative", 1, HASH, &xml, &err), CG_E_INVAL);
    assert_int_equal(cg_manifest_sign(keys[1], "k1", "/a/../b", 1, HASH, &xml, &err), CG_E_INVAL);
    assert_int_equal(cg_manifest_sign(keys[1], "bad id", "/a", 1, HASH, &xml, &err), CG_E_INVAL);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_int_equal(cg_manifest_sign(p384, "k1", "/a", 1, HASH, &xml, &err), CG_E_INVAL);
    EVP_PKEY_free(p384);
    /* names with XML specials survive the round trip */
    assert_int_equal(cg_manifest_sign(keys[2], "k1", "/a&b<\"c\">", 1, HASH, &xml, &err), 0);
    assert_int_equal(check(xml, "/a&b<\"c\">", keys[2], 7, &err), 0);
    free(xml);
}

static void test_schema_is_the_shipped_file(void **state)
{
    const char *root = getenv("CG_SOURCE_ROOT");
    if (!root)
        skip();
    char path[4096];
    snprintf(path, sizeof path, "%s/policy/manifest.xsd", root);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, cg_manifest_schema());
}

static char *pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    /* memcpy, not strndup: the BIO's data is not NUL-terminated */
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

/* The gateway's path: keys registered with cg_pkeys_key_add, loaded into
 * a snapshot, cg_manifest_check_item with the uploading principal. */
static void test_with_snapshot(void **state)
{
    char dir[512], db[600];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-manifest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/policy.db", dir);
    cg_pstore *ps;
    const char *err = NULL, *alg = NULL;
    assert_int_equal(cg_pstore_open(db, CG_PSTORE_CREATE, &ps, &err), 0);
    assert_int_equal(cg_pstore_principal_add(ps, "alice", "user", NULL, &err), 0);
    assert_int_equal(cg_pstore_principal_add(ps, "bob", "user", NULL, &err), 0);
    /* a policy as a gateway has one: with a rule */
    int64_t rid;
    assert_int_equal(cg_pstore_rule_add(ps, false, "*", "http", "/*", 2, NULL, &rid, &err), 0);
    static const char *ids[] = { NULL, "alice-ec", "alice-ed", "alice-rsa" };
    for (int a = 1; a <= 3; a++) {
        char *pem = pub_pem(keys[a]);
        assert_int_equal(cg_pkeys_key_add(ps, "alice", ids[a], pem, &alg, &err), 0);
        assert_string_equal(alg, cg_manifest_alg_name(a));
        free(pem);
    }
    char *pem = pub_pem(other[2]);
    assert_int_equal(cg_pkeys_key_add(ps, "bob", "bob-ed", pem, &alg, &err), 0);
    free(pem);
    cg_snapshot *snap;
    assert_int_equal(cg_snapshot_build(ps, &snap, &err), 0);
    const cg_principal *alice = cg_snapshot_principal_by_name(snap, "alice");
    const cg_principal *bob = cg_snapshot_principal_by_name(snap, "bob");
    assert_non_null(alice);
    assert_non_null(bob);
    for (int a = 1; a <= 3; a++) {
        char *xml = NULL;
        assert_int_equal(cg_manifest_sign(keys[a], ids[a], "/c/x", 9, HASH, &xml, &err), 0);
        cg_manifest *m;
        assert_int_equal(cg_manifest_parse(xml, strlen(xml), &m, &err), 0);
        const cg_manifest_item *it = cg_manifest_find_item(m, "/c/x");
        assert_int_equal(cg_manifest_check_item(it, snap, alice, &err), 0);
        /* bob uploading content signed with alice's key */
        assert_int_equal(cg_manifest_check_item(it, snap, bob, &err), CG_E_AUTH);
        assert_non_null(strstr(err, "another principal"));
        cg_manifest_free(m);
        free(xml);
    }
    /* the one-call form the gateway uses, from the base64 header value */
    {
        char *x = NULL;
        assert_int_equal(cg_manifest_sign(keys[1], ids[1], "/c/y", 77, HASH, &x, &err), 0);
        char b64[4096];
        size_t bl = cg_b64_encode((const uint8_t *)x, strlen(x), b64, sizeof b64);
        cg_manifest_claim claim;
        assert_int_equal(cg_manifest_accept(b64, bl, "/c/y", snap, alice, &claim, &err), 0);
        assert_int_equal(claim.size, 77);
        assert_memory_equal(claim.sha256, HASH, 32);
        assert_string_equal(claim.key_id, "alice-ec");
        assert_int_equal(cg_manifest_accept(b64, bl, "/c/z", snap, alice, &claim, &err),
                         CG_E_NOTFOUND);
        assert_int_equal(cg_manifest_accept(b64, bl, "/c/y", snap, bob, &claim, &err), CG_E_AUTH);
        assert_int_equal(claim.size, 0);
        assert_int_equal(cg_manifest_accept(b64, bl - 1, "/c/y", snap, alice, &claim, &err),
                         CG_E_PARSE);
        free(x);
    }
    /* bob's key, alice's key id claimed: the signature does not verify */
    char *xml = NULL;
    assert_int_equal(cg_manifest_sign(other[2], "alice-ed", "/c/x", 9, HASH, &xml, &err), 0);
    assert_int_equal(check(xml, "/c/x", keys[2], 7, &err), CG_E_AUTH);
    free(xml);
    /* an unknown key id */
    assert_int_equal(cg_manifest_sign(keys[2], "nobody", "/c/x", 9, HASH, &xml, &err), 0);
    cg_manifest *m;
    assert_int_equal(cg_manifest_parse(xml, strlen(xml), &m, &err), 0);
    assert_int_equal(cg_manifest_check_item(cg_manifest_item_at(m, 0), snap, alice, &err), CG_E_AUTH);
    assert_non_null(strstr(err, "unknown key"));
    cg_manifest_free(m);
    free(xml);
    cg_snapshot_release(snap);
    cg_pstore_close(ps);
    tu_remove_db(db);
    rmdir(dir);
}

int main(void)
{
    xmlInitParser();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_bytes),
        cmocka_unit_test(test_three_algorithms),
        cmocka_unit_test(test_rsa_pss_parameters),
        cmocka_unit_test(test_no_replay_for_another_path_size_or_hash),
        cmocka_unit_test(test_b64_and_items),
        cmocka_unit_test(test_hostile_and_invalid),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_sign_refuses_bad_input),
        cmocka_unit_test(test_schema_is_the_shipped_file),
        cmocka_unit_test(test_with_snapshot),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    xmlCleanupParser();
    return rc;
}
