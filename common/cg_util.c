/* cg_util.c — see cg_util.h. */
#include "common/cg_util.h"
#include "common/cg_error.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cg_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int cg_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool cg_is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int32_t cg_utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    uint32_t cp;
    size_t n;
    if (c < 0x80) { (*i)++; return c; }
    if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; n = 1; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; n = 2; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; n = 3; }
    else return -1;
    if (len - *i <= n)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        unsigned char cc = s[*i + k];
        if ((cc & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (cc & 0x3f);
    }
    /* overlongs ("%C0%AE" is the classic ".." bypass), surrogates, and
     * anything above U+10FFFF */
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += n + 1;
    return (int32_t)cp;
}

bool cg_utf8_valid(const void *in, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (cg_utf8_next(in, len, &i) <= 0)
            return false;
    }
    return true;
}

int cg_hex_decode(const char *in, uint8_t *out, size_t outcap)
{
    size_t n = strlen(in);
    if (n == 0 || n % 2 != 0 || n / 2 > outcap)
        return CG_E_INVAL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = cg_hexval(in[2 * i]), lo = cg_hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CG_E_INVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

bool cg_strlcpy(char *dst, const char *src, size_t cap)
{
    if (cap == 0)
        return false;
    size_t n = strlen(src);
    bool fits = n < cap;
    if (!fits)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

int cg_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return CG_E_INVAL;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return CG_E_INVAL;
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CG_E_INVAL;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return CG_E_INVAL;
    *out = v;
    return 0;
}

void cg_time_rfc3339(int64_t usec, char out[CG_TIME_LEN])
{
    /* four-digit years only: the text has a fixed length */
    if (usec < 0)
        usec = 0;
    if (usec > CG_TIME_USEC_MAX)
        usec = CG_TIME_USEC_MAX;
    time_t sec = (time_t)(usec / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, CG_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    long us = (long)(usec % 1000000);
    out[n++] = '.';
    for (int i = 5; i >= 0; i--) {
        out[n + (size_t)i] = (char)('0' + us % 10);
        us /= 10;
    }
    n += 6;
    out[n++] = 'Z';
    out[n] = '\0';
}

int64_t cg_time_now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t cg_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cg_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : CG_E_CRYPTO;
}

bool cg_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

