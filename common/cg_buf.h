/* common/cg_buf.h — the one output buffer and the one growth rule.
 *
 * A cg_buf is either fixed (storage the caller owns, its sizeof passed in)
 * or growing (heap, doubling from CG_BUF_FIRST up to a bound). Every add
 * either lands whole or sets `failed` and writes nothing, so a writer adds
 * freely and checks once at the end. The bytes are always followed by a NUL
 * (capacity is size - 1 bytes of content), so text can be read as a string. */
#ifndef CG_BUF_H
#define CG_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* The first allocation of a growing buffer (and of cg_buf_grow callers
 * that have no better first size). */
#define CG_BUF_FIRST 256

/* The growth rule: grows *buf (of *cap bytes, NULL when 0) to hold need
 * bytes; the capacity doubles from first, never past max. false past max
 * or without memory (*buf and *cap unchanged then). */
bool cg_buf_grow(void **buf, size_t *cap, size_t need, size_t first, size_t max)
    __attribute__((warn_unused_result));

typedef struct cg_buf {
    char *p;
    size_t len;     /* bytes of content (a NUL follows them) */
    size_t cap;     /* bytes of storage */
    size_t max;     /* growing: the bound on cap; fixed: 0 */
    bool failed;    /* an add did not fit (bound or memory): nothing of it was written */
} cg_buf;

/* Fixed: writes go to storage (size bytes, pass its sizeof); never grows. */
void cg_buf_init_fixed(cg_buf *b, void *storage, size_t size);
/* Growing: no storage until the first add; cap never exceeds max. */
void cg_buf_init(cg_buf *b, size_t max);
void cg_buf_free(cg_buf *b);
/* Empties the buffer (keeps its storage) and clears `failed`. */
void cg_buf_reset(cg_buf *b);

/* Room for n more bytes of content; false (and `failed`) when not. */
bool cg_buf_reserve(cg_buf *b, size_t n);
void cg_buf_add(cg_buf *b, const void *d, size_t n);
void cg_buf_str(cg_buf *b, const char *s);
void cg_buf_fmt(cg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cg_buf_vfmt(cg_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drops the first n bytes (n <= len). */
void cg_buf_consume(cg_buf *b, size_t n);

#endif
