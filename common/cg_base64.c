/* cg_base64.c — strict Base64 / base64url (see cg_base64.h). The alphabet
 * check and the canonical-form check are ours; the arithmetic is OpenSSL's
 * EVP_EncodeBlock / EVP_DecodeBlock. */
#include <string.h>

#include <openssl/evp.h>

#include "common/cg_base64.h"
#include "common/cg_error.h"

size_t cg_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    if (cap < CG_B64_ENCLEN(len) || len > (size_t)1 << 30)
        return 0;
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

size_t cg_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = cg_b64_encode(in, len, out, cap);
    if (n == 0 && len > 0)
        return 0;
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return n;
}

/* 0..63, or -1 for a character outside the alphabet. */
static int b64_val(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decodes the canonical standard form in[0..len) (already checked), in
 * chunks through a stack buffer: EVP_DecodeBlock also writes the bytes of
 * the padding, which need not fit in out. */
static int decode_checked(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t pad = 0;
    if (len >= 1 && in[len - 1] == '=')
        pad++;
    if (len >= 2 && in[len - 2] == '=')
        pad++;
    if (len / 4 * 3 - pad > cap)
        return CG_E_LIMIT;
    uint8_t tmp[384];
    size_t done = 0;
    for (size_t off = 0; off < len; off += 512) {
        size_t chunk = len - off < 512 ? len - off : 512;
        int r = EVP_DecodeBlock(tmp, (const unsigned char *)in + off, (int)chunk);
        if (r < 0)
            return CG_E_PARSE;
        size_t take = (size_t)r;
        if (off + chunk == len)
            take -= pad;
        memcpy(out + done, tmp, take);
        done += take;
    }
    return (int)done;
}

static int check_form(const char *in, size_t len, int url)
{
    size_t data = len;
    if (!url) {
        if (len % 4 != 0)
            return CG_E_PARSE;
        if (data && in[data - 1] == '=')
            data--;
        if (data && in[data - 1] == '=')
            data--;
        if (len - data == 2 && data % 4 != 2)
            return CG_E_PARSE;
        if (len - data == 1 && data % 4 != 3)
            return CG_E_PARSE;
    } else if (len % 4 == 1) {
        return CG_E_PARSE;
    }
    for (size_t i = 0; i < data; i++)
        if (b64_val((unsigned char)in[i], url) < 0)
            return CG_E_PARSE;
    /* the bits below the last full byte must be zero (canonical form) */
    size_t rem = data % 4;
    if (rem == 2 && (b64_val((unsigned char)in[data - 1], url) & 0x0f))
        return CG_E_PARSE;
    if (rem == 3 && (b64_val((unsigned char)in[data - 1], url) & 0x03))
        return CG_E_PARSE;
    return 0;
}

int cg_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (check_form(in, len, 0) < 0)
        return CG_E_PARSE;
    return decode_checked(in, len, out, cap);
}

int cg_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (check_form(in, len, 1) < 0 || len > 4096)
        return len > 4096 ? CG_E_LIMIT : CG_E_PARSE;
    char buf[4100];
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        buf[n++] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        buf[n++] = '=';
    return decode_checked(buf, n, out, cap);
}
