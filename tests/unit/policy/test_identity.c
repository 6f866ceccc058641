/* tests/unit/policy/test_identity.c — policy/identity.c against a snapshot built from a real
 * policy database: certificate by fingerprint and by each kind of name,
 * PSK identity and key, source address (longest prefix, IPv6, v4-mapped),
 * Digest HA1 per realm and algorithm, and a disabled principal found as
 * disabled rather than not found. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/identity.h"
#include "store/policy_store.h"
#include "policy/snapshot.h"
#include "tests/unit/unit_util.h"

static char dir[256], db_path[300];
static cg_snapshot *snap;

static const uint8_t alice_key[20] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 };
static const uint8_t bob_key[32] = { 0xb0 };
static uint8_t fpr_alice[32], fpr_bob[32];

static void ok(int rc, const char *what, const char *err)
{
    if (rc != 0)
        fail_msg("%s: %d %s", what, rc, err ? err : "");
}

static void cred(cg_pstore *ps, const char *who, const char *type, const char *value,
                 const uint8_t *key, size_t keylen, const char *md5, const char *sha)
{
    const char *err = NULL;
    ok(cg_pstore_cred_add(ps, who, type, value, key, keylen, md5, sha, NULL, &err), value, err);
}

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-identity-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/policy.db", dir);
    cg_pstore *ps = NULL;
    const char *err = NULL;
    ok(cg_pstore_open(db_path, CG_PSTORE_CREATE, &ps, &err), "open", err);
    ok(cg_pstore_principal_add(ps, "alice", "user", NULL, &err), "alice", err);
    ok(cg_pstore_principal_add(ps, "bob", "user", "bob.mail", &err), "bob", err);
    ok(cg_pstore_principal_add(ps, "carol", "server", NULL, &err), "carol", err);
    ok(cg_pstore_principal_add(ps, "mallory", "user", NULL, &err), "mallory", err);

    memset(fpr_alice, 0xa1, sizeof fpr_alice);
    memset(fpr_bob, 0xb0, sizeof fpr_bob);
    char hex[65];
    cg_hex_encode(fpr_alice, 32, hex);
    cred(ps, "alice", "cert", hex, NULL, 0, NULL, NULL);
    cg_hex_encode(fpr_bob, 32, hex);
    cred(ps, "bob", "cert", hex, NULL, 0, NULL, NULL);
    cred(ps, "alice", "cert-name", "email:alice@example.com", NULL, 0, NULL, NULL);
    cred(ps, "carol", "cert-name", "dns:carol.example.com", NULL, 0, NULL, NULL);
    cred(ps, "carol", "cert-name", "uri:https://carol.example.com/id", NULL, 0, NULL, NULL);
    cred(ps, "bob", "cert-name", "cn:Bob Example", NULL, 0, NULL, NULL);
    cred(ps, "alice", "psk", "alice-phone", alice_key, sizeof alice_key, NULL, NULL);
    cred(ps, "bob", "psk", "bob", bob_key, sizeof bob_key, NULL, NULL);
    cred(ps, "alice", "address", "10.0.0.0/8", NULL, 0, NULL, NULL);
    cred(ps, "bob", "address", "10.1.0.0/16", NULL, 0, NULL, NULL);
    cred(ps, "carol", "address", "10.1.2.3/32", NULL, 0, NULL, NULL);
    cred(ps, "carol", "address", "2001:db8::/32", NULL, 0, NULL, NULL);
    cred(ps, "mallory", "address", "192.0.2.0/24", NULL, 0, NULL, NULL);
    cred(ps, "carol", "address", "172.16.0.0/12", NULL, 0, NULL, NULL);
    cred(ps, "bob", "address", "172.20.0.0/14", NULL, 0, NULL, NULL);
    cred(ps, "alice", "address", "172.20.128.0/17", NULL, 0, NULL, NULL);
    cred(ps, "bob", "address", "2001:db8:aa::/48", NULL, 0, NULL, NULL);
    cred(ps, "alice", "address", "2001:db8:aa:1::7", NULL, 0, NULL, NULL);
    cred(ps, "alice", "digest", "realm-a", NULL, 0, "0123456789abcdef0123456789abcdef",
         "00000000000000000000000000000000000000000000000000000000000000aa");
    cred(ps, "alice", "digest", "realm-b", NULL, 0, "fedcba9876543210fedcba9876543210",
         "00000000000000000000000000000000000000000000000000000000000000bb");
    cred(ps, "bob", "digest", "realm-a", NULL, 0, "11111111111111111111111111111111",
         "1111111111111111111111111111111111111111111111111111111111111111");
    ok(cg_pstore_principal_set_enabled(ps, "mallory", false, &err), "disable", err);
    ok(cg_snapshot_build(ps, &snap, &err), "build", err);
    cg_pstore_close(ps);
    return 0;
}

static int teardown(void **state)
{
    cg_snapshot_release(snap);
    tu_remove_db_dir(db_path, dir);
    return 0;
}

static const char *name_of(const cg_principal *p)
{
    return p ? p->name : "(none)";
}

static void test_cert_fingerprint_then_names(void **state)
{
    uint8_t unknown[32] = { 0 };
    const char *no_names[] = { NULL };
    assert_string_equal(name_of(cg_identity_by_cert(snap, fpr_alice, no_names, 0)), "alice");
    assert_string_equal(name_of(cg_identity_by_cert(snap, fpr_bob, NULL, 0)), "bob");
    assert_null(cg_identity_by_cert(snap, unknown, NULL, 0));
    /* the fingerprint wins over a name that belongs to someone else */
    const char *alice_names[] = { "email:alice@example.com" };
    assert_string_equal(name_of(cg_identity_by_cert(snap, fpr_bob, alice_names, 1)), "bob");

    static const struct {
        const char *name, *who;
    } names[] = {
        { "email:alice@example.com", "alice" },
        { "email:Alice@example.com", NULL },     /* mailbox part is exact */
        { "dns:carol.example.com", "carol" },
        { "dns:CAROL.Example.COM", "carol" },    /* host names: RFC 4343 */
        { "uri:https://carol.example.com/id", "carol" },
        { "uri:https://carol.example.com/ID", NULL },
        { "cn:Bob Example", "bob" },
        { "cn:bob example", NULL },
        { "email:carol.example.com", NULL },     /* the kind is part of the name */
        { "dns:alice@example.com", NULL },
        { "cn:", NULL },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *one[] = { names[i].name };
        const cg_principal *p = cg_identity_by_cert(snap, unknown, one, 1);
        if (names[i].who ? !p || strcmp(p->name, names[i].who) != 0 : p != NULL)
            fail_msg("%s -> %s, want %s", names[i].name, name_of(p),
                     names[i].who ? names[i].who : "(none)");
    }
    /* unregistered names beside a registered one do not matter */
    const char *several[] = { "email:nobody@example.com", "dns:carol.example.com",
                              "uri:https://carol.example.com/id" };
    assert_string_equal(name_of(cg_identity_by_cert(snap, unknown, several, 3)), "carol");
}

static void test_cert_names_of_two_principals_identify_no_one(void **state)
{
    uint8_t unknown[32] = { 0 };
    /* in either order: listing order must not pick the principal */
    const char *ab[] = { "email:alice@example.com", "dns:carol.example.com" };
    const char *ba[] = { "dns:carol.example.com", "email:alice@example.com" };
    assert_null(cg_identity_by_cert(snap, unknown, ab, 2));
    assert_null(cg_identity_by_cert(snap, unknown, ba, 2));
    /* two names of one principal still identify it */
    const char *same[] = { "dns:carol.example.com", "email:nobody@example.com",
                           "uri:https://carol.example.com/id" };
    assert_string_equal(name_of(cg_identity_by_cert(snap, unknown, same, 3)), "carol");
    /* a registered fingerprint names this very certificate: it decides */
    assert_string_equal(name_of(cg_identity_by_cert(snap, fpr_bob, ab, 2)), "bob");
}

static void test_cert_cn_counts_only_without_subject_alt_names(void **state)
{
    uint8_t unknown[32] = { 0 };
    /* a certificate naming email:nobody and CN "Bob Example" is not bob */
    const char *san_and_cn[] = { "email:nobody@example.com", "cn:Bob Example" };
    assert_null(cg_identity_by_cert(snap, unknown, san_and_cn, 2));
    /* alice by SAN and bob by CN: the CN does not count, the SAN decides */
    const char *alice_and_cn[] = { "cn:Bob Example", "email:alice@example.com" };
    assert_string_equal(name_of(cg_identity_by_cert(snap, unknown, alice_and_cn, 2)), "alice");
    /* without subjectAltNames the CN identifies */
    const char *cn_only[] = { "cn:Bob Example" };
    assert_string_equal(name_of(cg_identity_by_cert(snap, unknown, cn_only, 1)), "bob");
}

static void test_psk_identity_and_key(void **state)
{
    const uint8_t *key = NULL;
    size_t len = 0;
    const cg_principal *p = cg_identity_by_psk(snap, "alice-phone", 11, &key, &len);
    assert_string_equal(name_of(p), "alice");
    assert_int_equal(len, sizeof alice_key);
    assert_memory_equal(key, alice_key, sizeof alice_key);
    p = cg_identity_by_psk(snap, "bob", 3, &key, &len);
    assert_string_equal(name_of(p), "bob");
    assert_int_equal(len, 32);
    assert_memory_equal(key, bob_key, 32);
    /* the length is the identity's: "bob" is not a prefix match */
    assert_string_equal(name_of(cg_identity_by_psk(snap, "bobby", 3, &key, &len)), "bob");
    assert_null(cg_identity_by_psk(snap, "bobby", 5, &key, &len));
    assert_null(key);
    assert_int_equal(len, 0);
    assert_null(cg_identity_by_psk(snap, "bo", 2, &key, &len));
    assert_null(cg_identity_by_psk(snap, "alice-phone", 10, &key, &len));
    assert_null(cg_identity_by_psk(snap, "", 0, &key, &len));
}

static const cg_principal *by_addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    return cg_identity_by_address(snap, (const struct sockaddr *)&ss);
}

static void test_address_longest_prefix(void **state)
{
    static const struct {
        const char *addr, *who;
    } cases[] = {
        { "10.9.9.9", "alice" },       /* /8 */
        { "10.1.9.9", "bob" },         /* /16 beats /8 */
        { "10.1.2.3", "carol" },       /* /32 beats both */
        { "10.1.2.4", "bob" },
        { "::ffff:10.1.2.3", "carol" },/* v4-mapped is IPv4 */
        { "::ffff:10.2.0.1", "alice" },
        { "2001:db8:1::5", "carol" },
        { "2001:db9::5", NULL },
        { "11.0.0.1", NULL },
        { "172.16.0.1", "carol" },      /* /12 */
        { "172.31.255.255", "carol" },
        { "172.32.0.0", NULL },
        { "172.20.0.1", "bob" },        /* /14 inside the /12 */
        { "172.23.255.255", "bob" },
        { "172.24.0.0", "carol" },
        { "172.20.128.5", "alice" },    /* /17 inside the /14 */
        { "172.20.127.255", "bob" },
        { "2001:db8:aa:ffff::1", "bob" },
        { "2001:db8:aa:1::7", "alice" },/* /128 inside the /48 inside the /32 */
        { "2001:db8:aa:1::8", "bob" },
        { "2001:db8:ab::1", "carol" },
        { "::1", NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cg_principal *p = by_addr(cases[i].addr);
        if (cases[i].who ? !p || strcmp(p->name, cases[i].who) != 0 : p != NULL)
            fail_msg("%s -> %s, want %s", cases[i].addr, name_of(p),
                     cases[i].who ? cases[i].who : "(none)");
    }
}

static void test_digest_ha1(void **state)
{
    const cg_principal *alice = cg_snapshot_principal_by_name(snap, "alice");
    const cg_principal *bob = cg_snapshot_principal_by_name(snap, "bob");
    const cg_principal *carol = cg_snapshot_principal_by_name(snap, "carol");
    assert_non_null(alice);
    assert_string_equal(cg_identity_digest_ha1(snap, alice, "realm-a", "MD5"),
                        "0123456789abcdef0123456789abcdef");
    assert_string_equal(cg_identity_digest_ha1(snap, alice, "realm-a", "SHA-256"),
                        "00000000000000000000000000000000000000000000000000000000000000aa");
    assert_string_equal(cg_identity_digest_ha1(snap, alice, "realm-b", "md5"),
                        "fedcba9876543210fedcba9876543210");
    assert_string_equal(cg_identity_digest_ha1(snap, bob, "realm-a", "MD5"),
                        "11111111111111111111111111111111");
    assert_null(cg_identity_digest_ha1(snap, bob, "realm-b", "MD5"));
    assert_null(cg_identity_digest_ha1(snap, carol, "realm-a", "MD5"));
    assert_null(cg_identity_digest_ha1(snap, alice, "realm-A", "MD5"));
    assert_null(cg_identity_digest_ha1(snap, alice, "realm-a", "SHA-512-256"));
    assert_null(cg_identity_digest_ha1(snap, alice, "realm-a", NULL));
}

static void test_disabled_principal_is_found_disabled(void **state)
{
    const cg_principal *m = by_addr("192.0.2.77");
    assert_non_null(m);
    assert_string_equal(m->name, "mallory");
    assert_false(m->enabled);
    const cg_principal *a = cg_snapshot_principal_by_name(snap, "alice");
    assert_true(a->enabled);
    assert_false(a->is_server);
    assert_true(cg_snapshot_principal_by_name(snap, "carol")->is_server);
}

static void test_names_and_mailboxes(void **state)
{
    assert_int_equal(cg_snapshot_nprincipals(snap), 4);
    const cg_principal *b = cg_snapshot_principal_by_name(snap, "bob");
    assert_non_null(b);
    assert_string_equal(b->mailbox, "bob.mail");
    assert_ptr_equal(cg_snapshot_principal_by_mailbox(snap, "bob.mail"), b);
    assert_null(cg_snapshot_principal_by_mailbox(snap, "bob"));
    /* no mailbox column: the name is the login */
    assert_string_equal(cg_snapshot_principal_by_mailbox(snap, "alice")->name, "alice");
    assert_null(cg_snapshot_principal_by_name(snap, "Alice"));
    assert_null(cg_snapshot_principal_by_name(snap, "nobody"));
    for (uint32_t i = 0; i < cg_snapshot_nprincipals(snap); i++)
        assert_int_equal(cg_snapshot_principal(snap, i)->idx, i);
    assert_null(cg_snapshot_principal(snap, 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_fingerprint_then_names),
        cmocka_unit_test(test_cert_names_of_two_principals_identify_no_one),
        cmocka_unit_test(test_cert_cn_counts_only_without_subject_alt_names),
        cmocka_unit_test(test_psk_identity_and_key),
        cmocka_unit_test(test_address_longest_prefix),
        cmocka_unit_test(test_digest_ha1),
        cmocka_unit_test(test_disabled_principal_is_found_disabled),
        cmocka_unit_test(test_names_and_mailboxes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
