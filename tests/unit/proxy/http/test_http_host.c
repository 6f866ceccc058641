/* tests/unit/proxy/http/test_http_host.c — proxy/http/host.c: server_names
 * lists matched (wildcards, IP spellings) and the Host written for the
 * backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/http/host.h"

static void test_names_served(void **state)
{
    (void)state;
    const char *list = "localhost, 127.0.0.1, ::1, *.example.com";
    static const struct {
        const char *name;
        bool served;
    } t[] = {
        {"localhost", true},     {"LOCALHOST", true},       {"127.0.0.1", true},
        {"0:0::1", true},        {"a.example.com", true},   {"A.Example.Com", true},
        {"example.com", false},  {"a.b.example.com", false}, {"evil.example", false},
        {"127.0.0.2", false},    {"localhost.evil", false}, {"xexample.com", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (cg_http_name_served(list, t[i].name, strlen(t[i].name), NULL, NULL) != t[i].served)
            fail_msg("%s", t[i].name);
    assert_true(cg_http_name_served("*", "anything.at.all", 15, NULL, NULL));
    /* the backend gets the list's spelling of an exact match */
    const char *as;
    size_t al;
    assert_true(cg_http_name_served(list, "0:0::1", 6, &as, &al));
    assert_int_equal(al, 3);
    assert_memory_equal(as, "::1", 3);
    assert_true(cg_http_name_served(list, "B.example.com", 13, &as, &al));
    assert_int_equal(al, 13);
    assert_memory_equal(as, "B.example.com", 13);
    assert_true(cg_http_same_host("::1", 3, "0::1", 4));
    assert_false(cg_http_same_host("::1", 3, "localhost", 9));
}

static void test_host_for_the_backend(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(cg_http_host_format("::1", 3, out, sizeof out), 5);
    assert_string_equal(out, "[::1]");
    assert_int_equal(cg_http_host_format("LocalHost", 9, out, sizeof out), 9);
    assert_string_equal(out, "localhost");
    assert_int_equal(cg_http_host_format("a-very-long-name.example", 24, out, sizeof out), 0);
    const char *list = "*.example.com, gw.example.com", *n;
    size_t nl;
    assert_true(cg_http_first_name(&list, &n, &nl));
    assert_int_equal(nl, 14);
    assert_memory_equal(n, "gw.example.com", nl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_served),
        cmocka_unit_test(test_host_for_the_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
