/* tests/unit/proxy/core/test_conn_info.c — proxy/core/conn_info.c's strings
 * of a connection (cg_conn_info_set, _drop, _clear): each is the
 * connection's own copy, "" when there is none; and what a connection holds
 * of its own while idle stays small (cg_conn and its info, the part of an
 * idle connection's memory that is the gateway's rather than OpenSSL's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_error.h"
#include "proxy/core/conn.h"
#include "proxy/core/conn_internal.h"

static void test_set_keeps_a_copy_of_its_own(void **state)
{
    (void)state;
    cg_conn_info ci;
    memset(&ci, 0, sizeof ci);
    cg_conn_info_clear(&ci);
    char name[] = "mail.example";
    assert_int_equal(cg_conn_info_set(&ci.sni, name), 0);
    assert_ptr_not_equal(ci.sni, name);
    name[0] = 'X'; /* the source may change or go: the copy stays */
    assert_string_equal(ci.sni, "mail.example");
    /* set again: the old copy is freed (ASan: no leak), the new one read */
    assert_int_equal(cg_conn_info_set(&ci.sni, "other.example"), 0);
    assert_string_equal(ci.sni, "other.example");
    cg_conn_info_clear(&ci);
    assert_string_equal(ci.sni, "");
}

static void test_none_reads_as_empty(void **state)
{
    (void)state;
    cg_conn_info ci;
    memset(&ci, 0, sizeof ci);
    cg_conn_info_clear(&ci); /* a zeroed info made ready */
    assert_non_null(ci.sni);
    assert_non_null(ci.principal);
    assert_string_equal(ci.sni, "");
    assert_string_equal(ci.principal, "");
    assert_int_equal(cg_conn_info_set(&ci.principal, "alice"), 0);
    assert_int_equal(cg_conn_info_set(&ci.principal, NULL), 0);
    assert_string_equal(ci.principal, "");
    assert_int_equal(cg_conn_info_set(&ci.principal, "alice"), 0);
    cg_conn_info_drop(&ci.principal);
    assert_string_equal(ci.principal, "");
    assert_int_equal(cg_conn_info_set(&ci.sni, ""), 0);
    assert_string_equal(ci.sni, "");
    cg_conn_info_clear(&ci);
    cg_conn_info_clear(&ci); /* twice: nothing left to free */
}

/* An idle connection's own state (tests/bench/README.md "Idle memory"):
 * no fixed text arrays of 256 bytes, no addresses kept for rare uses. Was
 * 1680 bytes (info 1184). */
static void test_an_idle_connection_holds_little_of_its_own(void **state)
{
    (void)state;
    assert_true(sizeof(cg_conn_info) <= 448);
    assert_true(sizeof(struct cg_conn) <= 640);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_keeps_a_copy_of_its_own),
        cmocka_unit_test(test_none_reads_as_empty),
        cmocka_unit_test(test_an_idle_connection_holds_little_of_its_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
