/* common/cg_buf.c — the one output buffer and the one growth rule (cg_buf.h). */
#include "common/cg_buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cg_buf_grow(void **buf, size_t *cap, size_t need, size_t first, size_t max)
{
    if (need <= *cap)
        return true;
    if (need > max)
        return false;
    size_t nc = *cap ? *cap : (first ? first : CG_BUF_FIRST);
    while (nc < need)
        nc = nc > max / 2 ? max : nc * 2;
    if (nc > max)
        nc = max;
    void *n = realloc(*buf, nc);
    if (!n)
        return false;
    *buf = n;
    *cap = nc;
    return true;
}

void cg_buf_init_fixed(cg_buf *b, void *storage, size_t size)
{
    *b = (cg_buf){ .p = storage, .cap = size };
    if (size)
        b->p[0] = '\0';
    else
        b->failed = true;
}

void cg_buf_init(cg_buf *b, size_t max)
{
    *b = (cg_buf){ .max = max };
}

void cg_buf_free(cg_buf *b)
{
    if (b->max)
        free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void cg_buf_reset(cg_buf *b)
{
    b->len = 0;
    b->failed = false;
    if (b->cap)
        b->p[0] = '\0';
}

bool cg_buf_reserve(cg_buf *b, size_t n)
{
    if (b->failed)
        return false;
    /* content + n + the NUL, without overflow */
    if (n < b->cap && b->len < b->cap - n)
        return true;
    if (b->max && n <= SIZE_MAX - 1 - b->len &&
        cg_buf_grow((void **)&b->p, &b->cap, b->len + n + 1, CG_BUF_FIRST, b->max))
        return true;
    b->failed = true;
    return false;
}

void cg_buf_add(cg_buf *b, const void *d, size_t n)
{
    if (!cg_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cg_buf_str(cg_buf *b, const char *s)
{
    cg_buf_add(b, s, strlen(s));
}

void cg_buf_vfmt(cg_buf *b, const char *fmt, va_list ap)
{
    if (b->failed)
        return;
    va_list again;
    va_copy(again, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        b->failed = true;
    } else if ((size_t)n < room) {
        b->len += (size_t)n;
    } else if (cg_buf_reserve(b, (size_t)n)) {
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, again);
        b->len += (size_t)n;
    }
    if (b->cap)
        b->p[b->len] = '\0'; /* a refused write leaves the old content whole */
    va_end(again);
}

void cg_buf_fmt(cg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cg_buf_vfmt(b, fmt, ap);
    va_end(ap);
}

void cg_buf_consume(cg_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->cap)
        b->p[b->len] = '\0';
}
