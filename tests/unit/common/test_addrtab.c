/* tests/unit/common/test_addrtab.c — common/cg_addrtab.c: one counter per address prefix,
 * never shared and never reset by a hash collision; IPv6 counted per /64;
 * a full table refuses new keys; the caller's extra bytes per entry, seen
 * and changed by a visitor, never shared by colliding keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "common/cg_addrtab.h"
#include "common/cg_error.h"

static cg_addrkey v4(uint32_t host_order)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(host_order);
    cg_addrkey k;
    assert_int_equal(cg_addrkey_of((const struct sockaddr *)&sin, &k), 0);
    return k;
}

static cg_addrkey v6(const char *text)
{
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
    assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
    cg_addrkey k;
    assert_int_equal(cg_addrkey_of((const struct sockaddr *)&sin6, &k), 0);
    return k;
}

/* 20,000 addresses share 4,096 buckets: many collide, none loses its
 * count (a table of slots overwritten on collision resets an attacker's
 * failures by a login from a colliding address). */
static void test_collisions_never_share_or_reset_a_count(void **state)
{
    cg_addrtab *t = cg_addrtab_new(65536);
    unsigned n;
    for (uint32_t i = 0; i < 20000; i++) {
        cg_addrkey k = v4(0x0a000000u + i);
        assert_int_equal(cg_addrtab_count(t, &k, 7, 1 + (i % 3), &n), 0);
    }
    for (uint32_t i = 0; i < 20000; i++) {
        cg_addrkey k = v4(0x0a000000u + i);
        assert_int_equal(cg_addrtab_count(t, &k, 7, 0, &n), 0);
        assert_int_equal(n, 1 + (i % 3));
    }
    assert_int_equal(cg_addrtab_size(t), 20000);
    cg_addrtab_free(t);
}

static void test_ipv6_counts_per_64_and_v4_mapped_as_v4(void **state)
{
    cg_addrtab *t = cg_addrtab_new(16);
    unsigned n;
    cg_addrkey a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
               c = v6("2001:db8:1:3::1");
    assert_int_equal(cg_addrtab_count(t, &a, 1, 1, &n), 0);
    assert_int_equal(cg_addrtab_count(t, &b, 1, 1, &n), 0);
    assert_int_equal(n, 2); /* the same /64 */
    assert_int_equal(cg_addrtab_count(t, &c, 1, 1, &n), 0);
    assert_int_equal(n, 1); /* the next /64 */
    cg_addrkey m = v6("::ffff:192.0.2.7"), p = v4(0xc0000207u);
    assert_memory_equal(&m, &p, sizeof m);
    cg_addrtab_free(t);
}

static void test_take_put_holds_at_most_max(void **state)
{
    cg_addrtab *t = cg_addrtab_new(16);
    cg_addrkey k = v4(0x7f000001u), o = v4(0x7f000002u);
    assert_int_equal(cg_addrtab_take(t, &k, 2), 0);
    assert_int_equal(cg_addrtab_take(t, &k, 2), 0);
    assert_int_equal(cg_addrtab_take(t, &k, 2), CG_E_LIMIT);
    assert_int_equal(cg_addrtab_take(t, &o, 2), 0); /* another address */
    cg_addrtab_put(t, &k);
    assert_int_equal(cg_addrtab_take(t, &k, 2), 0);
    cg_addrtab_put(t, &k);
    cg_addrtab_put(t, &k);
    cg_addrtab_put(t, &o);
    assert_int_equal(cg_addrtab_size(t), 0); /* a key lives while it counts */
    cg_addrtab_put(t, &o);                   /* one too many: harmless */
    cg_addrtab_free(t);
}

static void test_window_restarts_and_full_table_refuses_new_keys(void **state)
{
    cg_addrtab *t = cg_addrtab_new(4);
    unsigned n;
    for (uint32_t i = 0; i < 4; i++) {
        cg_addrkey k = v4(i + 1);
        assert_int_equal(cg_addrtab_count(t, &k, 1, 3, &n), 0);
    }
    cg_addrkey fifth = v4(99), first = v4(1);
    assert_int_equal(cg_addrtab_count(t, &fifth, 1, 1, &n), CG_E_LIMIT);
    assert_int_equal(cg_addrtab_count(t, &first, 1, 1, &n), 0);
    assert_int_equal(n, 4); /* a known key still counts */
    /* the next window: counts restart, and past keys make room */
    assert_int_equal(cg_addrtab_count(t, &first, 2, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(cg_addrtab_count(t, &fifth, 2, 1, &n), 0);
    assert_int_equal(n, 1);
    cg_addrtab_free(t);
}

/* A visitor that stamps its key's number into the extra bytes, checks the
 * stamp of a known key, and forgets the entry when asked. */
typedef struct stamp {
    uint32_t want;   /* the key's number */
    bool made;       /* out */
    bool forget;
    unsigned calls;
} stamp;

static bool on_stamp(cg_addrtab_ent *e, bool made, void *arg)
{
    stamp *s = arg;
    uint32_t *x = e->extra;
    s->made = made;
    s->calls++;
    if (made) {
        assert_int_equal(*x, 0); /* zeroed when made */
        assert_int_equal(e->count, 0);
        assert_int_equal(e->window, 5);
        *x = s->want;
    } else {
        assert_int_equal(*x, s->want); /* its own bytes, never another key's */
    }
    e->count++;
    return !s->forget;
}

/* 10,000 keys in 4,096 buckets: each entry keeps its own extra bytes and
 * count; a visitor that returns false forgets the key, which is made anew
 * (zeroed) on the next visit. */
static void test_visit_keeps_extra_bytes_per_key(void **state)
{
    cg_addrtab *t = cg_addrtab_new_extra(65536, sizeof(uint32_t) * 4);
    for (uint32_t i = 0; i < 10000; i++) {
        cg_addrkey k = v4(0x0a000000u + i);
        stamp s = { .want = i + 1 };
        assert_int_equal(cg_addrtab_visit(t, &k, 5, on_stamp, &s), 0);
        assert_true(s.made);
    }
    for (uint32_t i = 0; i < 10000; i++) {
        cg_addrkey k = v4(0x0a000000u + i);
        stamp s = { .want = i + 1, .forget = i % 2 == 1 };
        assert_int_equal(cg_addrtab_visit(t, &k, 9, on_stamp, &s), 0);
        assert_false(s.made);
    }
    assert_int_equal(cg_addrtab_size(t), 5000);
    cg_addrkey odd = v4(0x0a000001u);
    stamp s = { .want = 77 };
    assert_int_equal(cg_addrtab_visit(t, &odd, 5, on_stamp, &s), 0);
    assert_true(s.made); /* forgotten, made again, zeroed */
    cg_addrtab_free(t);
}

static bool count_and_forget_odd(cg_addrtab_ent *e, bool made, void *arg)
{
    unsigned *seen = arg;
    (*seen)++;
    assert_false(made);
    return *(const uint32_t *)e->extra % 2 == 0;
}

/* each() sees every entry once and forgets those its visitor drops; a new
 * key that finds the table full is refused without calling the visitor. */
static void test_each_forgets_and_full_table_refuses_visit(void **state)
{
    cg_addrtab *t = cg_addrtab_new_extra(8, sizeof(uint32_t));
    for (uint32_t i = 0; i < 8; i++) {
        cg_addrkey k = v4(i + 1);
        stamp s = { .want = i };
        assert_int_equal(cg_addrtab_visit(t, &k, 5, on_stamp, &s), 0);
    }
    cg_addrkey ninth = v4(100);
    stamp s = { .want = 1 };
    assert_int_equal(cg_addrtab_visit(t, &ninth, 5, on_stamp, &s), CG_E_LIMIT);
    assert_int_equal(s.calls, 0);
    unsigned seen = 0;
    cg_addrtab_each(t, count_and_forget_odd, &seen);
    assert_int_equal(seen, 8);
    assert_int_equal(cg_addrtab_size(t), 4);
    assert_int_equal(cg_addrtab_visit(t, &ninth, 5, on_stamp, &s), 0); /* room again */
    assert_int_equal(s.calls, 1);
    cg_addrtab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collisions_never_share_or_reset_a_count),
        cmocka_unit_test(test_ipv6_counts_per_64_and_v4_mapped_as_v4),
        cmocka_unit_test(test_take_put_holds_at_most_max),
        cmocka_unit_test(test_window_restarts_and_full_table_refuses_new_keys),
        cmocka_unit_test(test_visit_keeps_extra_bytes_per_key),
        cmocka_unit_test(test_each_forgets_and_full_table_refuses_visit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
