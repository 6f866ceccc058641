/* tests/unit/proxy/core/test_deadline.c — proxy/core/deadline.c: entries come
 * out earliest first, a moved entry takes its new place (earlier or later),
 * a removed one never comes out, thousands keep the order, and the timer
 * fires them in order on a real loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <uv.h>

#include "common/cg_util.h"
#include "proxy/core/deadline.h"

typedef struct item {
    cg_deadline dl;
    int id;
} item;

static int fired[64];
static size_t nfired;

static void record(cg_deadline *d)
{
    item *it = (item *)((char *)d - offsetof(item, dl));
    if (nfired < CG_ARRAY_LEN(fired))
        fired[nfired++] = it->id;
}

static uv_loop_t loop;
static cg_deadline_heap heap;

static int setup(void **state)
{
    (void)state;
    nfired = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    cg_deadline_heap_init(&heap, &loop, record);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cg_deadline_heap_close(&heap);
    uv_run(&loop, UV_RUN_DEFAULT);
    cg_deadline_heap_free(&heap);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

/* Takes every entry out, earliest first, writing their ids. */
static size_t drain(int *ids, size_t cap)
{
    size_t n = 0;
    cg_deadline *d;
    while ((d = cg_deadline_next(&heap)) != NULL) {
        item *it = (item *)((char *)d - offsetof(item, dl));
        if (n < cap)
            ids[n] = it->id;
        n++;
        cg_deadline_remove(&heap, d);
        assert_int_equal(d->at, 0);
    }
    return n;
}

static void test_earliest_first(void **state)
{
    (void)state;
    item it[5] = { { .id = 0 }, { .id = 1 }, { .id = 2 }, { .id = 3 }, { .id = 4 } };
    const uint64_t at[5] = { 500, 100, 400, 200, 300 };
    for (size_t i = 0; i < CG_ARRAY_LEN(it); i++)
        assert_int_equal(cg_deadline_set(&heap, &it[i].dl, at[i]), 0);
    int ids[5];
    assert_int_equal(drain(ids, CG_ARRAY_LEN(ids)), 5);
    const int want[5] = { 1, 3, 4, 2, 0 };
    assert_memory_equal(ids, want, sizeof want);
}

static void test_move_earlier_and_later(void **state)
{
    (void)state;
    item a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };
    assert_int_equal(cg_deadline_set(&heap, &a.dl, 100), 0);
    assert_int_equal(cg_deadline_set(&heap, &b.dl, 200), 0);
    assert_int_equal(cg_deadline_set(&heap, &c.dl, 300), 0);
    assert_int_equal(cg_deadline_set(&heap, &c.dl, 50), 0);  /* earlier: first */
    assert_int_equal(cg_deadline_set(&heap, &a.dl, 250), 0); /* later: after b */
    assert_ptr_equal(cg_deadline_next(&heap), &c.dl);
    int ids[3];
    assert_int_equal(drain(ids, CG_ARRAY_LEN(ids)), 3);
    const int want[3] = { 3, 2, 1 };
    assert_memory_equal(ids, want, sizeof want);
}

static void test_removed_never_comes_out(void **state)
{
    (void)state;
    item it[4] = { { .id = 0 }, { .id = 1 }, { .id = 2 }, { .id = 3 } };
    for (size_t i = 0; i < CG_ARRAY_LEN(it); i++)
        assert_int_equal(cg_deadline_set(&heap, &it[i].dl, 10 * (i + 1)), 0);
    cg_deadline_remove(&heap, &it[0].dl); /* the earliest */
    cg_deadline_remove(&heap, &it[2].dl); /* one in the middle */
    cg_deadline_remove(&heap, &it[2].dl); /* twice: nothing */
    assert_int_equal(cg_deadline_set(&heap, &it[3].dl, 0), 0); /* 0: removes */
    assert_int_equal(it[0].dl.at, 0);
    assert_int_equal(it[3].dl.at, 0);
    int ids[4];
    assert_int_equal(drain(ids, CG_ARRAY_LEN(ids)), 1);
    assert_int_equal(ids[0], 1);
    assert_null(cg_deadline_next(&heap));
}

static void test_many_entries_keep_order(void **state)
{
    (void)state;
    enum { N = 5000 };
    item *it = calloc(N, sizeof *it);
    assert_non_null(it);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        it[i].id = i;
        assert_int_equal(cg_deadline_set(&heap, &it[i].dl, 1 + (x >> 8) % 100000), 0);
    }
    /* move every third, remove every seventh */
    for (int i = 0; i < N; i += 3)
        assert_int_equal(cg_deadline_set(&heap, &it[i].dl, 1 + (uint64_t)(N - i) * 17), 0);
    size_t removed = 0;
    for (int i = 0; i < N; i += 7, removed++)
        cg_deadline_remove(&heap, &it[i].dl);
    uint64_t last = 0;
    size_t n = 0;
    cg_deadline *d;
    while ((d = cg_deadline_next(&heap)) != NULL) {
        item *e = (item *)((char *)d - offsetof(item, dl));
        assert_true(d->at >= last);
        assert_true(e->id % 7 != 0);
        last = d->at;
        cg_deadline_remove(&heap, d);
        n++;
    }
    assert_int_equal(n, N - removed);
    free(it);
}

static void test_timer_fires_in_order(void **state)
{
    (void)state;
    item it[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };
    uint64_t now = uv_now(&loop);
    assert_int_equal(cg_deadline_set(&heap, &it[0].dl, now + 30), 0);
    assert_int_equal(cg_deadline_set(&heap, &it[1].dl, now + 10), 0);
    assert_int_equal(cg_deadline_set(&heap, &it[2].dl, now + 20), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the timer is stopped */
    assert_int_equal(nfired, 3);
    const int want[3] = { 1, 2, 0 };
    assert_memory_equal(fired, want, sizeof want);
    assert_null(cg_deadline_next(&heap));
    assert_int_equal(it[0].dl.at, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_earliest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_earlier_and_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_never_comes_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_entries_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_fires_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
