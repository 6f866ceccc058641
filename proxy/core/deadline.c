/* proxy/core/deadline.c — the min-heap of deadlines and its one timer
 * (proxy/core/deadline.h). */
#include "proxy/core/deadline.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/cg_buf.h"
#include "common/cg_error.h"

#define HEAP_FIRST 256 /* entries of the first array */

static void swap(cg_deadline_heap *h, uint32_t a, uint32_t b)
{
    cg_deadline *t = h->v[a];
    h->v[a] = h->v[b];
    h->v[b] = t;
    h->v[a]->idx = a;
    h->v[b]->idx = b;
}

static void up(cg_deadline_heap *h, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->v[parent]->at <= h->v[i]->at)
            break;
        swap(h, i, parent);
        i = parent;
    }
}

static void down(cg_deadline_heap *h, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l]->at < h->v[m]->at)
            m = l;
        if (r < h->n && h->v[r]->at < h->v[m]->at)
            m = r;
        if (m == i)
            break;
        swap(h, i, m);
        i = m;
    }
}

static void take_out(cg_deadline_heap *h, cg_deadline *d)
{
    if (!d->at)
        return;
    uint32_t i = d->idx, last = (uint32_t)--h->n;
    if (i != last) {
        swap(h, i, last);
        down(h, i);
        up(h, i);
    }
    d->at = 0;
}

static void timer_cb(uv_timer_t *t);

/* The timer is armed for the earliest entry; re-armed only when that
 * changed. */
static void rearm(cg_deadline_heap *h)
{
    if (!h->n) {
        if (h->timer_at)
            uv_timer_stop(&h->timer);
        h->timer_at = 0;
        return;
    }
    uint64_t top = h->v[0]->at;
    if (h->timer_at == top)
        return;
    uint64_t now = uv_now(h->timer.loop);
    uv_timer_start(&h->timer, timer_cb, top > now ? top - now : 0, 0);
    h->timer_at = top;
}

static void timer_cb(uv_timer_t *t)
{
    cg_deadline_heap *h = t->data;
    uint64_t now = uv_now(t->loop);
    h->timer_at = 0;
    /* bounded: an entry set again for "now" waits for the next round */
    for (size_t budget = h->n; budget && h->n && h->v[0]->at <= now; budget--) {
        cg_deadline *d = h->v[0];
        take_out(h, d);
        h->fire(d); /* may free what holds d */
    }
    rearm(h);
}

void cg_deadline_heap_init(cg_deadline_heap *h, uv_loop_t *loop, cg_deadline_fire_fn fire)
{
    *h = (cg_deadline_heap){ .fire = fire };
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
}

void cg_deadline_heap_close(cg_deadline_heap *h)
{
    uv_close((uv_handle_t *)&h->timer, NULL);
}

void cg_deadline_heap_free(cg_deadline_heap *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->v[i]->at = 0;
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

int cg_deadline_set(cg_deadline_heap *h, cg_deadline *d, uint64_t at)
{
    if (!at) {
        cg_deadline_remove(h, d);
        return 0;
    }
    if (d->at) {
        uint64_t was = d->at;
        d->at = at;
        if (at < was)
            up(h, d->idx);
        else
            down(h, d->idx);
    } else {
        size_t bytes = h->cap * sizeof *h->v;
        if (h->n == h->cap) {
            if (!cg_buf_grow((void **)&h->v, &bytes, (h->n + 1) * sizeof *h->v,
                             HEAP_FIRST * sizeof *h->v, UINT32_MAX * sizeof *h->v))
                return CG_E_NOMEM;
            h->cap = bytes / sizeof *h->v;
        }
        d->at = at;
        d->idx = (uint32_t)h->n;
        h->v[h->n++] = d;
        up(h, d->idx);
    }
    rearm(h);
    return 0;
}

void cg_deadline_remove(cg_deadline_heap *h, cg_deadline *d)
{
    take_out(h, d);
    rearm(h);
}

cg_deadline *cg_deadline_next(const cg_deadline_heap *h)
{
    return h->n ? h->v[0] : NULL;
}
