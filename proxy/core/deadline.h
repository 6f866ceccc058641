/* proxy/core/deadline.h — the deadlines of many objects on one uv timer: a
 * min-heap keyed by the time each is due (ms on the loop's clock) and one
 * timer armed for the earliest. A worker keeps one for all its connections
 * (one timer per worker, not per connection: an idle connection costs a
 * cg_deadline, not a uv_timer_t). An object embeds a cg_deadline and finds
 * itself back from it in the fire callback (offsetof). */
#ifndef CG_DEADLINE_H
#define CG_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct cg_deadline {
    uint64_t at;  /* the time it is in the heap for; 0: not in the heap */
    uint32_t idx; /* its position in the heap */
} cg_deadline;

/* Called from the timer for an entry that came due, already out of the
 * heap; it may set the entry again or free the object holding it. */
typedef void (*cg_deadline_fire_fn)(cg_deadline *d);

typedef struct cg_deadline_heap {
    cg_deadline **v;
    size_t n, cap;
    uv_timer_t timer;
    uint64_t timer_at; /* what the timer is armed for, 0: stopped */
    cg_deadline_fire_fn fire;
} cg_deadline_heap;

/* The timer is initialised on loop; the array grows on the first set. */
void cg_deadline_heap_init(cg_deadline_heap *h, uv_loop_t *loop, cg_deadline_fire_fn fire);
/* Starts closing the timer (on the loop's thread, before the loop's last run). */
void cg_deadline_heap_close(cg_deadline_heap *h);
/* Frees the array (after the loop ended); entries still in it are dropped. */
void cg_deadline_heap_free(cg_deadline_heap *h);

/* Puts d in the heap due at `at` (> 0), or moves it there (earlier or
 * later) when it already is in; the timer follows. CG_E_NOMEM when the
 * heap cannot grow (d is then not in the heap). */
int cg_deadline_set(cg_deadline_heap *h, cg_deadline *d, uint64_t at)
    __attribute__((warn_unused_result));
/* Takes d out of the heap (nothing when it is not in); the timer follows. */
void cg_deadline_remove(cg_deadline_heap *h, cg_deadline *d);
/* The earliest entry, NULL when the heap is empty. */
cg_deadline *cg_deadline_next(const cg_deadline_heap *h);

#endif
