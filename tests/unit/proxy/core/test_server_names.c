/* tests/unit/proxy/core/test_server_names.c — proxy/core/server_names.c:
 * the host of a Host value or authority, and server_names lists checked
 * as the configuration checks them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/core/server_names.h"

static void test_host_name_of_a_host_value(void **state)
{
    (void)state;
    static const struct {
        const char *in, *name; /* name NULL: refused */
    } t[] = {
        {"localhost", "localhost"},
        {"localhost:8443", "localhost"},
        {"Example.COM.", "Example.COM"},
        {"[::1]:443", "::1"},
        {"[::1]", "::1"},
        {"127.0.0.1:1", "127.0.0.1"},
        {"", NULL},
        {":443", NULL},
        {"[::1", NULL},
        {"[::1]x", NULL},
        {"host:44x", NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const char *n;
        size_t nl;
        bool ok = cg_host_name(t[i].in, strlen(t[i].in), &n, &nl);
        if (ok != (t[i].name != NULL))
            fail_msg("%s: %d", t[i].in, ok);
        if (ok && (nl != strlen(t[i].name) || memcmp(n, t[i].name, nl) != 0))
            fail_msg("%s: got %.*s", t[i].in, (int)nl, n);
    }
}

static void test_server_names_lists(void **state)
{
    (void)state;
    const char *why;
    static const struct {
        const char *list;
        bool ok;
    } t[] = {
        {"*", true},
        {"localhost, 127.0.0.1, ::1", true},
        {"*.example.com,gw.example.com", true},
        {"localhost, *", false},
        {"", false},
        {" , ", false},
        {"bad name", false},
        {"a..b", false},
        {"[::1]", false},
        {"ex*mple.com", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if ((cg_server_names_check(t[i].list, &why) == 0) != t[i].ok)
            fail_msg("'%s'", t[i].list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_name_of_a_host_value),
        cmocka_unit_test(test_server_names_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
