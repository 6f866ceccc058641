/* tests/unit/proxy/core/test_tls_tickets.c — ticket keys: one key per
 * rotation period and secret, the period readable back from the key name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/core/tls_tickets.h"

static const uint8_t S1[32] = { 1 }, S2[32] = { 2 };

static void test_same_period_same_key(void **state)
{
    (void)state;
    cg_ticket_key a, b;
    assert_int_equal(cg_tickets_derive(S1, 500, &a), 0);
    assert_int_equal(cg_tickets_derive(S1, 500, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_period_and_secret_change_the_key(void **state)
{
    (void)state;
    cg_ticket_key a, next, other;
    assert_int_equal(cg_tickets_derive(S1, 500, &a), 0);
    assert_int_equal(cg_tickets_derive(S1, 501, &next), 0);
    assert_int_equal(cg_tickets_derive(S2, 500, &other), 0);
    assert_memory_not_equal(a.aes, next.aes, sizeof a.aes);
    assert_memory_not_equal(a.hmac, next.hmac, sizeof a.hmac);
    assert_memory_not_equal(a.aes, other.aes, sizeof a.aes);
    assert_memory_not_equal(a.name + 8, other.name + 8, 8);
    assert_memory_not_equal(a.aes, a.hmac, sizeof a.aes);
}

static void test_name_carries_the_period(void **state)
{
    (void)state;
    cg_ticket_key k;
    assert_int_equal(cg_tickets_derive(S1, 0x0102030405060708ULL, &k), 0);
    static const uint8_t want[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_memory_equal(k.name, want, 8);
    assert_int_equal(cg_tickets_period(CG_TICKET_ROTATE_S * 7 + 5), 7);
    assert_int_equal(cg_tickets_period(CG_TICKET_ROTATE_S * 8), 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_period_same_key),
        cmocka_unit_test(test_period_and_secret_change_the_key),
        cmocka_unit_test(test_name_carries_the_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
