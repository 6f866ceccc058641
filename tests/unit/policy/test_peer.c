/* tests/unit/policy/test_peer.c — policy/peer.c against a snapshot built
 * from a real policy database: a server principal bound to a required
 * peer only by its certificate, to an optional one by any credential; the
 * originator it may act for (its own peer's domain only, in one spelling),
 * and the refusals for a user principal, an unbound server principal,
 * another domain and a malformed address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "policy/peer.h"
#include "store/policy_keys.h"
#include "store/policy_store.h"
#include "tests/unit/unit_util.h"

static char dir[256], db_path[300];
static cg_snapshot *snap;

/* gw-b bound to b.example (required), gw-c to c.example and d.example
 * (optional), gw-x to none; alice a user */
static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cg-peer-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/policy.db", dir);
    cg_pstore *ps = NULL;
    const char *err = NULL;
    int rc = cg_pstore_open(db_path, CG_PSTORE_CREATE, &ps, &err);
    static const char *const principals[][3] = {
        { "gw-b", "server", "interop" }, { "gw-c", "server", NULL },
        { "gw-x", "server", NULL },      { "alice", "user", NULL },
    };
    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = cg_pstore_principal_add(ps, principals[i][0], principals[i][1], principals[i][2],
                                     &err);
    static const char *const peers[][3] = {
        { "b.example", "gw-b", "required" },
        { "c.example", "gw-c", "optional" },
        { "d.example", "gw-c", "optional" },
    };
    for (size_t i = 0; rc == 0 && i < 3; i++)
        rc = cg_pkeys_peer_add(ps, peers[i][0], peers[i][1], peers[i][2], &err);
    if (rc == 0)
        rc = cg_snapshot_build(ps, &snap, &err);
    if (rc != 0)
        fail_msg("setup: %d %s", rc, err ? err : "");
    cg_pstore_close(ps);
    return 0;
}

static int teardown(void **state)
{
    cg_snapshot_release(snap);
    tu_remove_db_dir(db_path, dir);
    return 0;
}

static const cg_principal *who(const char *name)
{
    const cg_principal *p = cg_snapshot_principal_by_name(snap, name);
    assert_non_null(p);
    return p;
}

static void test_admission_follows_the_peer_auth(void **state)
{
    assert_int_equal(cg_peer_admit(snap, who("gw-b"), true), CG_PEER_OK);
    assert_int_equal(cg_peer_admit(snap, who("gw-b"), false), CG_PEER_CERT_REQUIRED);
    assert_int_equal(cg_peer_admit(snap, who("gw-c"), false), CG_PEER_OK);
    assert_int_equal(cg_peer_admit(snap, who("gw-x"), false), CG_PEER_OK); /* bound to none */
    assert_int_equal(cg_peer_admit(snap, who("alice"), false), CG_PEER_OK);
    assert_string_equal(cg_peer_of(snap, who("gw-b"))->domain, "b.example");
    assert_string_equal(cg_peer_of(snap, who("gw-c"))->domain, "c.example");
    assert_null(cg_peer_of(snap, who("gw-x")));
    assert_int_equal(cg_snapshot_npeers(snap), 3);
    assert_string_equal(cg_snapshot_peer_at(snap, 2)->domain, "d.example");
    assert_null(cg_snapshot_peer_at(snap, 3));
}

static void test_originator(void **state)
{
    static const struct {
        const char *p, *in;
        bool by_cert;
        cg_peer_verdict want;
        const char *spelled, *peer;
    } t[] = {
        { "gw-b", "alice@b.example", true, CG_PEER_OK, "alice@b.example", "b.example" },
        { "gw-b", "alice@B.EXAMPLE", true, CG_PEER_OK, "alice@b.example", "b.example" },
        { "gw-b", "alice@b.example", false, CG_PEER_CERT_REQUIRED, NULL, NULL },
        { "gw-b", "alice@c.example", true, CG_PEER_OTHER_DOMAIN, NULL, NULL },
        { "gw-b", "alice@a.example", true, CG_PEER_OTHER_DOMAIN, NULL, NULL },
        { "gw-b", "alice", true, CG_PEER_BAD_NAME, NULL, NULL },
        { "gw-b", "*@b.example", true, CG_PEER_BAD_NAME, NULL, NULL },
        { "gw-c", "bob@c.example", false, CG_PEER_OK, "bob@c.example", "c.example" },
        { "gw-c", "bob@d.example", false, CG_PEER_OK, "bob@d.example", "d.example" },
        { "gw-x", "bob@b.example", true, CG_PEER_NO_PEER, NULL, NULL },
        { "alice", "bob@b.example", true, CG_PEER_NOT_SERVER, NULL, NULL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[CG_REMOTE_USER_MAX + 1];
        const cg_peer *peer = (const cg_peer *)1;
        cg_peer_verdict v = cg_peer_originator(snap, who(t[i].p), t[i].by_cert, t[i].in,
                                               strlen(t[i].in), out, &peer);
        if (v != t[i].want)
            fail_msg("case %zu: verdict %d (%s), want %d", i, v, cg_peer_verdict_text(v),
                     t[i].want);
        if (t[i].spelled) {
            assert_string_equal(out, t[i].spelled);
            assert_non_null(peer);
            assert_string_equal(peer->domain, t[i].peer);
        } else {
            assert_null(peer);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission_follows_the_peer_auth),
        cmocka_unit_test(test_originator),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
