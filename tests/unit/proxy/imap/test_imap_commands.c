/* tests/unit/proxy/imap/test_imap_commands.c — the command table
 * (proxy/imap/commands.c) and the capability allow-list it drives
 * (proxy/imap/filter.c), checked row by row: every row is one the code
 * that runs it can follow, and every capability names commands that are
 * rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/imap/internal.h"

static bool single_right(unsigned r)
{
    return r && (r & (r - 1)) == 0 && (r & ~(unsigned)CG_RIGHT_ALL) == 0;
}

static void test_every_row_is_consistent(void **state)
{
    for (size_t i = 0; i < cg_imap_ncommands; i++) {
        const cg_imap_cmd *c = &cg_imap_commands[i];
        /* the name as begin_command folds it: upper case, at most 15 */
        assert_true(strlen(c->name) > 0 && strlen(c->name) <= 15);
        for (const char *p = c->name; *p; p++)
            assert_false(*p >= 'a' && *p <= 'z');
        /* one row a name: the first would hide the second */
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(cg_imap_commands[k].name, c->name);
        assert_ptr_equal(cg_imap_cmd_find(c->name), c);
        /* valid somewhere; answered by the gateway before login */
        assert_true(c->states & (CG_IMAP_NOTAUTH | CG_IMAP_AUTH));
        assert_int_equal(c->states & ~(CG_IMAP_NOTAUTH | CG_IMAP_AUTH), 0);
        assert_int_equal(c->pre != NULL, (c->states & CG_IMAP_NOTAUTH) != 0);
        if (c->flags & CG_IMAP_BEFORE_TLS)
            assert_true(c->states & CG_IMAP_NOTAUTH);
        if (c->run)
            assert_true(c->states & CG_IMAP_AUTH);
        /* rights are CG_RIGHT_* bits */
        assert_int_equal(c->selected & ~(unsigned)CG_RIGHT_ALL, 0);
        /* mailbox arguments: one right each, distinct arguments, none a
         * pattern too, and listed without gaps; a row with its own
         * handler judges nothing by the generic path */
        size_t n = 0;
        while (n < sizeof c->mbox / sizeof c->mbox[0] && c->mbox[n].right)
            n++;
        for (size_t k = n; k < sizeof c->mbox / sizeof c->mbox[0]; k++)
            assert_int_equal(c->mbox[k].right, 0);
        for (size_t k = 0; k < n; k++) {
            assert_true(single_right(c->mbox[k].right));
            assert_true(c->mbox[k].arg < 8);
            assert_int_equal(c->patterns & (1u << c->mbox[k].arg), 0);
            for (size_t m = 0; m < k; m++)
                assert_int_not_equal(c->mbox[m].arg, c->mbox[k].arg);
        }
        if (n)
            assert_null(c->run);
        /* at most what one command may rewrite (imap_repl) */
        assert_true(n <= sizeof ((imap_repl *)0)->at / sizeof ((imap_repl *)0)->at[0]);
        /* SELECT's kind keeps the name of its first mailbox */
        if (c->kind == K_SELECT)
            assert_true(n >= 1);
        /* answers filtered by a mailbox come with a mailbox or a pattern */
        if (c->answer == ANS_LIST)
            assert_true(c->patterns != 0);
        if (c->answer == ANS_STATUS)
            assert_true(n >= 1);
    }
}

/* UID goes only with the rows that allow it. */
static void test_uid_finds_only_rows_that_allow_it(void **state)
{
    assert_ptr_equal(cg_imap_cmd_find("UID FETCH"), cg_imap_cmd_find("FETCH"));
    assert_ptr_equal(cg_imap_cmd_find("UID MOVE"), cg_imap_cmd_find("MOVE"));
    assert_non_null(cg_imap_cmd_find("SELECT"));
    assert_null(cg_imap_cmd_find("UID SELECT"));
    assert_null(cg_imap_cmd_find("UID"));
    assert_null(cg_imap_cmd_find("fetch")); /* begin_command folds case first */
    assert_null(cg_imap_cmd_find("GETACL"));
}

/* The index by name finds every row as itself, and nothing that only
 * shares a row's hash slot or prefix. */
static void test_index_finds_every_row(void **state)
{
    (void)state;
    for (size_t i = 0; i < cg_imap_ncommands; i++)
        assert_ptr_equal(cg_imap_cmd_find(cg_imap_commands[i].name), &cg_imap_commands[i]);
    assert_null(cg_imap_cmd_find(""));
    assert_null(cg_imap_cmd_find("FETCHX"));
    assert_null(cg_imap_cmd_find("FETC"));
    assert_null(cg_imap_cmd_find("FLAGS")); /* an untagged answer, not a command */
}

/* The rows the policy rests on (SPEC 4), as the table states them. */
static void test_rows_state_the_rights_of_the_spec(void **state)
{
    const cg_imap_cmd *c = cg_imap_cmd_find("RENAME");
    assert_non_null(c);
    assert_int_equal(c->mbox[0].right, CG_RIGHT_DELETE);
    assert_true(c->mbox[0].subtree);
    assert_int_equal(c->mbox[1].right, CG_RIGHT_CREATE);
    assert_true(c->mbox[1].subtree);
    c = cg_imap_cmd_find("MOVE");
    assert_int_equal(c->selected, CG_RIGHT_READ | CG_RIGHT_DELETE);
    assert_int_equal(c->mbox[0].arg, 1);
    assert_int_equal(c->mbox[0].right, CG_RIGHT_WRITE);
    c = cg_imap_cmd_find("APPEND");
    assert_int_equal(c->mbox[0].right, CG_RIGHT_WRITE);
    c = cg_imap_cmd_find("LIST");
    assert_int_equal(c->patterns, 0x3);
    assert_int_equal(c->mbox[0].right, 0);
}

static void test_every_capability_names_rows(void **state)
{
    for (size_t i = 0; i < cg_imap_ncaps; i++) {
        const cg_imap_cap *cap = &cg_imap_caps[i];
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(cg_imap_caps[k].name, cap->name);
        for (const char *const *cmd = cap->commands; *cmd; cmd++)
            assert_non_null(cg_imap_cmd_find(*cmd));
        size_t n = strlen(cap->name);
        if (cap->name[n - 1] == '=') /* a family: a member is offered */
            assert_true(cg_imap_cap_offered("THREAD=REFERENCES", 17) ==
                        (strcmp(cap->name, "THREAD=") == 0));
        else
            assert_true(cg_imap_cap_offered(cap->name, n));
    }
}

/* What brings a command the table does not have is never offered. */
static void test_capabilities_without_rows_are_not_offered(void **state)
{
    static const char *const removed[][2] = {
        { "NOTIFY", "NOTIFY" },         { "URLAUTH", "GENURLAUTH" },
        { "URLAUTH=BASIC", "URLFETCH" }, { "COMPRESS=DEFLATE", "COMPRESS" },
        { "METADATA", "GETMETADATA" },   { "ACL", "GETACL" },
        { "QUOTA", "GETQUOTA" },
    };
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) {
        assert_false(cg_imap_cap_offered(removed[i][0], strlen(removed[i][0])));
        assert_null(cg_imap_cmd_find(removed[i][1]));
    }
    /* CATENATE extends APPEND with parts read by URL, which no row judges */
    assert_false(cg_imap_cap_offered("CATENATE", 8));
    /* the backend's own STARTTLS and AUTH= are never passed on: the
     * gateway offers its own before login */
    assert_false(cg_imap_cap_offered("STARTTLS", 8));
    assert_false(cg_imap_cap_offered("AUTH=PLAIN", 10));
    /* case does not matter, a prefix is not a name */
    assert_true(cg_imap_cap_offered("literal+", 8));
    assert_false(cg_imap_cap_offered("LITERAL", 7));
    assert_false(cg_imap_cap_offered("THREAD=", 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_is_consistent),
        cmocka_unit_test(test_uid_finds_only_rows_that_allow_it),
        cmocka_unit_test(test_index_finds_every_row),
        cmocka_unit_test(test_rows_state_the_rights_of_the_spec),
        cmocka_unit_test(test_every_capability_names_rows),
        cmocka_unit_test(test_capabilities_without_rows_are_not_offered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
