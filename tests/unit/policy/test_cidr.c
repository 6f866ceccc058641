/* tests/unit/policy/test_cidr.c — policy/cidr.c, the CIDR parser and matcher, table-driven:
 * what is accepted and its canonical form, what is refused (junk, prefix
 * too long, leading zeros, host bits), and matching of IPv4, IPv6 and
 * v4-mapped IPv6 addresses at prefix boundaries. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/cg_error.h"
#include "policy/cidr.h"

static const struct {
    const char *in, *canonical; /* canonical NULL: refused */
} parse_cases[] = {
    { "10.0.0.0/8", "10.0.0.0/8" },
    { "10.1.2.3", "10.1.2.3/32" },
    { "0.0.0.0/0", "0.0.0.0/0" },
    { "192.168.1.128/25", "192.168.1.128/25" },
    { "127.0.0.1/32", "127.0.0.1/32" },
    { "2001:db8::/32", "2001:db8::/32" },
    { "2001:DB8:0:0::/48", "2001:db8::/48" },
    { "::1", "::1/128" },
    { "::/0", "::/0" },
    { "fe80::/10", "fe80::/10" },
    { "::ffff:10.0.0.0/104", "10.0.0.0/8" }, /* v4-mapped is the IPv4 network */
    { "::ffff:192.0.2.1", "192.0.2.1/32" },
    { "10.0.0.0/33", NULL },
    { "10.0.0.0/", NULL },
    { "10.0.0.0/-1", NULL },
    { "10.0.0.0/+8", NULL },
    { "10.0.0.0/08", NULL },
    { "10.0.0.0/8/8", NULL },
    { "10.0.0.0/8 ", NULL },
    { " 10.0.0.0/8", NULL },
    { "1.2.3", NULL },
    { "1.2.3.4.5", NULL },
    { "256.0.0.0/8", NULL },
    { "010.0.0.0/8", NULL },
    { "10.0.0.1/8", NULL },   /* host bits */
    { "10.128.0.0/9", "10.128.0.0/9" },
    { "10.192.0.0/9", NULL }, /* host bit just below the prefix */
    { "2001:db8::1/64", NULL },
    { "2001:db8::/129", NULL },
    { "2001:db8:::/64", NULL },
    { "2001:db8::g/64", NULL },
    { "", NULL },
    { "/8", NULL },
    { "localhost", NULL },
    { "10.0.0.0/1000", NULL },
};

static void test_parse_table(void **state)
{
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        cg_cidr c;
        const char *err = NULL;
        int rc = cg_cidr_parse(parse_cases[i].in, &c, &err);
        if (parse_cases[i].canonical) {
            if (rc != 0)
                fail_msg("'%s' refused: %s", parse_cases[i].in, err);
            char out[64];
            cg_cidr_format(&c, out);
            if (strcmp(out, parse_cases[i].canonical) != 0)
                fail_msg("'%s' -> '%s', want '%s'", parse_cases[i].in, out,
                         parse_cases[i].canonical);
        } else {
            if (rc != CG_E_INVAL)
                fail_msg("'%s' accepted, want refusal", parse_cases[i].in);
            assert_non_null(err);
            assert_non_null(strstr(err, "malformed CIDR"));
        }
    }
}

static void test_parse_null(void **state)
{
    cg_cidr c;
    const char *err = NULL;
    assert_int_equal(cg_cidr_parse(NULL, &c, &err), CG_E_INVAL);
}

static struct sockaddr_storage addr_of(const char *text)
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
    return ss;
}

static const struct {
    const char *cidr, *addr;
    int match;
} match_cases[] = {
    { "10.0.0.0/8", "10.255.255.255", 1 },
    { "10.0.0.0/8", "11.0.0.0", 0 },
    { "10.0.0.0/8", "9.255.255.255", 0 },
    { "127.0.0.4/30", "127.0.0.4", 1 },
    { "127.0.0.4/30", "127.0.0.7", 1 },
    { "127.0.0.4/30", "127.0.0.8", 0 },
    { "127.0.0.4/30", "127.0.0.3", 0 },
    { "192.168.1.128/25", "192.168.1.127", 0 },
    { "192.168.1.128/25", "192.168.1.200", 1 },
    { "0.0.0.0/0", "203.0.113.9", 1 },
    { "0.0.0.0/0", "::1", 0 },               /* IPv4 rule, IPv6 client */
    { "10.1.2.3", "10.1.2.3", 1 },
    { "10.1.2.3", "10.1.2.4", 0 },
    { "10.0.0.0/8", "::ffff:10.9.8.7", 1 },  /* dual-stack listener */
    { "10.0.0.0/8", "::ffff:11.0.0.1", 0 },
    { "::ffff:10.0.0.0/104", "10.3.3.3", 1 },
    { "2001:db8::/32", "2001:db8:ffff::1", 1 },
    { "2001:db8::/32", "2001:db9::1", 0 },
    { "2001:db8::/33", "2001:db8:8000::", 0 },
    { "2001:db8::/33", "2001:db8:7fff::", 1 },
    { "::1", "::1", 1 },
    { "::1", "::2", 0 },
    { "::/0", "2001:db8::1", 1 },
    { "::/0", "10.0.0.1", 0 },               /* IPv6 rule, IPv4 client */
    { "::/0", "::ffff:10.0.0.1", 0 },        /* a v4-mapped client is IPv4 */
};

static void test_match_table(void **state)
{
    for (size_t i = 0; i < sizeof match_cases / sizeof match_cases[0]; i++) {
        cg_cidr c;
        const char *err = NULL;
        assert_int_equal(cg_cidr_parse(match_cases[i].cidr, &c, &err), 0);
        struct sockaddr_storage ss = addr_of(match_cases[i].addr);
        int m = cg_cidr_match(&c, (const struct sockaddr *)&ss);
        if (m != match_cases[i].match)
            fail_msg("%s vs %s: %d, want %d", match_cases[i].cidr, match_cases[i].addr, m,
                     match_cases[i].match);
    }
}

static void test_match_other_family(void **state)
{
    cg_cidr c;
    assert_int_equal(cg_cidr_parse("0.0.0.0/0", &c, NULL), 0);
    struct sockaddr sa = { .sa_family = AF_UNIX };
    assert_int_equal(cg_cidr_match(&c, &sa), 0);
    assert_int_equal(cg_cidr_match(&c, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_null),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_match_other_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
