/* cg_util.h — small helpers every layer needs: hex, bounded copies,
 * number parsing, time stamps, random bytes. No allocation. */
#ifndef CG_UTIL_H
#define CG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void cg_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decode hex (either case, no separators) into out; returns bytes or a
 * negative CG_E_ code if the input is not exactly even hex or too long. */
int cg_hex_decode(const char *in, uint8_t *out, size_t outcap);
/* One hex digit's value, or -1. */
int cg_hexval(int c);

/* An RFC 9110 token character (method names, header names, parameters). */
bool cg_is_tchar(unsigned char c);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. cg_utf8_next returns the code point at *i and moves *i past
 * it, or -1; cg_utf8_valid also refuses NUL, which no caller accepts. */
int32_t cg_utf8_next(const unsigned char *s, size_t len, size_t *i);
bool cg_utf8_valid(const void *s, size_t len);

/* Copy at most cap-1 bytes and terminate; returns false when truncated. */
bool cg_strlcpy(char *dst, const char *src, size_t cap);

/* Strict decimal parse of the whole string into [min, max]. */
int cg_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* RFC 3339 UTC with microseconds: "2026-12-02T10:00:00.123456Z" (28 bytes). */
#define CG_TIME_LEN 28
/* 9999-12-31T23:59:59.999999Z: later (and negative) times are written as
 * this (and 1970-01-01T00:00:00.000000Z). */
#define CG_TIME_USEC_MAX 253402300799999999LL
void cg_time_rfc3339(int64_t usec_since_epoch, char out[CG_TIME_LEN]);
int64_t cg_time_now_usec(void);
/* Monotonic milliseconds. */
uint64_t cg_mono_ms(void);

/* CSPRNG bytes (OpenSSL); returns 0 or CG_E_CRYPTO. */
int cg_random(void *buf, size_t len) __attribute__((warn_unused_result));

/* Constant-time comparison. */
bool cg_ct_equal(const void *a, const void *b, size_t len);

#endif
