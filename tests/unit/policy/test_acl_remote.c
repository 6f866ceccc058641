/* tests/unit/policy/test_acl_remote.c — policy/acl.c and acl_match.c for
 * remote users (SPEC 7): subjects "user@DOMAIN" and "*@DOMAIN", the server
 * principal's own rules, everyone's denies but not its allows, ${user} as
 * the remote address, a local principal's name winning over the remote
 * reading, and the subtree check acting for a remote user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "policy/acl.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint32_t g_gw[] = { 0 }; /* gw-b in peers */
static cg_principal people[] = {
    { .id = 1, .idx = 0, .name = "gw-b", .mailbox = "interop", .enabled = true,
      .is_server = true, .groups = g_gw, .ngroups = 1 },
    { .id = 2, .idx = 1, .name = "alice", .mailbox = "alice", .enabled = true },
    { .id = 3, .idx = 2, .name = "carol@b.example", .mailbox = "carol", .enabled = true },
};
static const char *const groups[] = { "peers" };

/* the rules, in the form cg_acl_rule explains them */
static const cg_acl_rule_info rules[] = {
    { 10, false, "alice@b.example", CG_SVC_IMAP, "Shared/alice/*", CG_RIGHT_ALL },
    { 11, false, "*@B.Example", CG_SVC_IMAP, "Shared/all/*", CG_RIGHT_READ },
    { 12, true, "bob@b.example", CG_SVC_IMAP, "Shared/all/secret*", CG_RIGHT_READ },
    { 13, false, "*", CG_SVC_IMAP, "*", CG_RIGHT_LIST | CG_RIGHT_READ }, /* local catch-all */
    { 14, true, "*", CG_SVC_IMAP, "Shared/all/frozen", CG_RIGHT_READ },
    { 15, false, "gw-b", CG_SVC_IMAP, "Shared/gw", CG_RIGHT_READ },
    { 16, false, "@peers", CG_SVC_IMAP, "Shared/peers", CG_RIGHT_READ },
    { 17, false, "*@b.example", CG_SVC_HTTP, "/users/${user}/*", CG_RIGHT_ALL },
    { 18, false, "carol@b.example", CG_SVC_IMAP, "Shared/carol", CG_RIGHT_READ },
    { 19, true, "alice@b.example", CG_SVC_IMAP, "Shared/alice/x/private", CG_RIGHT_DELETE },
    { 20, false, "x@c.example", CG_SVC_IMAP, "Shared/c", CG_RIGHT_READ },
    { 21, false, "*", CG_SVC_IMAP, "Shared/open/pub*", CG_RIGHT_WRITE },
};

static cg_acl *build(void)
{
    cg_acl_builder *b = cg_acl_builder_new();
    assert_non_null(b);
    for (size_t i = 0; i < LEN(rules); i++) {
        const char *err = NULL;
        if (cg_acl_builder_add(b, rules[i].id, rules[i].deny, rules[i].subject, rules[i].service,
                               rules[i].pattern, rules[i].rights, &err) < 0)
            fail_msg("rule %lld: %s", (long long)rules[i].id, err);
    }
    const char *err = NULL;
    cg_acl *acl = cg_acl_build(b, people, LEN(people), groups, LEN(groups), &err);
    assert_non_null(acl);
    return acl;
}

static void test_remote_subjects(void **state)
{
    (void)state;
    cg_acl *acl = build();
    struct {
        const char *originator; /* NULL: gw-b as itself */
        int service;
        unsigned right;
        const char *res;
        bool allow;
        int64_t rule;
    } t[] = {
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/alice/a", true, 10 },
        { "bob@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/alice/a", false, 0 },
        /* the domain's rule, stored as *@B.Example, for every user of it */
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/x", true, 11 },
        { "bob@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/x", true, 11 },
        { "bob@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/secret1", false, 12 },
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/secret1", true, 11 },
        /* a user of another domain gets nothing of b.example's */
        { "alice@c.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/x", false, 0 },
        { "x@c.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/c", true, 20 },
        /* everyone's allow is for local principals; its deny is for all */
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "INBOX", false, 0 },
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/all/frozen", false, 14 },
        { NULL, CG_SVC_IMAP, CG_RIGHT_READ, "INBOX", true, 13 },
        /* the server principal's and its groups' rules bound its users too */
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/gw", true, 15 },
        { "alice@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/peers", true, 16 },
        /* ${user} is the remote address */
        { "alice@b.example", CG_SVC_HTTP, CG_RIGHT_WRITE, "/users/alice@b.example/f", true, 17 },
        { "alice@b.example", CG_SVC_HTTP, CG_RIGHT_WRITE, "/users/bob@b.example/f", false, 0 },
        { NULL, CG_SVC_HTTP, CG_RIGHT_WRITE, "/users/gw-b/f", false, 0 },
        /* a local principal's name is that principal, not a remote user */
        { "carol@b.example", CG_SVC_IMAP, CG_RIGHT_READ, "Shared/carol", false, 0 },
    };
    for (size_t i = 0; i < LEN(t); i++) {
        cg_decision d = cg_acl_decide_as(acl, &people[0], t[i].originator, t[i].service,
                                         t[i].right, t[i].res, strlen(t[i].res), '/');
        if (d.allow != t[i].allow || d.rule_id != t[i].rule)
            fail_msg("case %zu: got %d rule %lld, want %d rule %lld", i, d.allow,
                     (long long)d.rule_id, t[i].allow, (long long)t[i].rule);
    }
    /* carol@b.example the local principal has rule 18 (and the catch-all) */
    cg_decision d = cg_acl_decide(acl, &people[2], CG_SVC_IMAP, CG_RIGHT_READ, "Shared/carol",
                                  12, '/');
    assert_true(d.allow);
    d = cg_acl_decide(acl, &people[2], CG_SVC_HTTP, CG_RIGHT_READ, "/x", 2, '/');
    assert_false(d.allow);
    /* the stored subject is in its one spelling */
    const cg_acl_rule_info *ri = cg_acl_rule(acl, 11);
    assert_non_null(ri);
    assert_string_equal(ri->subject, "*@b.example");
    cg_acl_free(acl);
}

static void test_remote_subtree(void **state)
{
    (void)state;
    cg_acl *acl = build();
    int64_t rid = 0;
    assert_false(cg_acl_subtree_clear_as(acl, &people[0], "alice@b.example", CG_SVC_IMAP,
                                         CG_RIGHT_DELETE, "Shared/alice/x", 14, '/', &rid));
    assert_int_equal(rid, 19);
    assert_true(cg_acl_subtree_clear_as(acl, &people[0], "alice@b.example", CG_SVC_IMAP,
                                        CG_RIGHT_DELETE, "Shared/alice/y", 14, '/', &rid));
    /* everyone's narrower allow judges part of the subtree for gw-b as
     * itself, but grants its remote users nothing, so not for them */
    assert_false(cg_acl_subtree_clear(acl, &people[0], CG_SVC_IMAP, CG_RIGHT_WRITE,
                                      "Shared/open", 11, '/', &rid));
    assert_int_equal(rid, 21);
    assert_true(cg_acl_subtree_clear_as(acl, &people[0], "bob@b.example", CG_SVC_IMAP,
                                        CG_RIGHT_WRITE, "Shared/open", 11, '/', &rid));
    cg_acl_free(acl);
}

static void test_unresolved_subjects(void **state)
{
    (void)state;
    /* neither a principal, a group nor a remote form: grants nothing */
    cg_acl_builder *b = cg_acl_builder_new();
    const char *err = NULL;
    assert_int_equal(cg_acl_builder_add(b, 1, false, "nobody", CG_SVC_IMAP, "*", CG_RIGHT_ALL,
                                        &err), 0);
    assert_int_equal(cg_acl_builder_add(b, 2, false, "a@-bad-", CG_SVC_IMAP, "*", CG_RIGHT_ALL,
                                        &err), 0);
    assert_int_equal(cg_acl_builder_add(b, 3, false, "a*b@b.example", CG_SVC_IMAP, "*",
                                        CG_RIGHT_ALL, &err), 0);
    cg_acl *acl = cg_acl_build(b, people, LEN(people), groups, LEN(groups), &err);
    assert_non_null(acl);
    assert_null(cg_acl_rule(acl, 1));
    assert_null(cg_acl_rule(acl, 2));
    assert_null(cg_acl_rule(acl, 3));
    cg_decision d = cg_acl_decide_as(acl, &people[0], "a*b@b.example", CG_SVC_IMAP,
                                     CG_RIGHT_READ, "x", 1, '/');
    assert_false(d.allow);
    cg_acl_free(acl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_subjects),
        cmocka_unit_test(test_remote_subtree),
        cmocka_unit_test(test_unresolved_subjects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
