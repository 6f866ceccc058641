/* proxy/imap/mutf7.c — strict modified UTF-7 for IMAP mailbox names (RFC 3501
 * 5.1.3): "&" shifts to modified base64 of UTF-16BE ("," for "/"), "-"
 * ends the shift, "&-" is "&". Anything with a second spelling is refused,
 * so "INBOX/&AGE-" can never be judged as a different name than Dovecot
 * opens. */
#include "proxy/imap/mutf7.h"

#include <stdint.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == ',') return 63;
    return -1;
}

static int put_utf8(uint32_t cp, char *out, size_t cap, size_t *o)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 0x3f)); n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); b[3] = (uint8_t)(0x80 | (cp & 0x3f)); n = 4;
    }
    if (*o + n >= cap)
        return CG_E_LIMIT;
    for (size_t i = 0; i < n; i++)
        out[(*o)++] = (char)b[i];
    return 0;
}

int cg_mutf7_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    bool prev_shift = false; /* the last thing was an encoded run */
    if (cap == 0)
        return CG_E_LIMIT;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        if (ch < 0x20 || ch > 0x7e)
            return CG_E_PARSE;
        if (ch != '&') {
            if (o + 1 >= cap)
                return CG_E_LIMIT;
            out[o++] = (char)ch;
            i++;
            prev_shift = false;
            continue;
        }
        i++;
        if (i < len && in[i] == '-') { /* "&-" is "&" */
            if (o + 1 >= cap)
                return CG_E_LIMIT;
            out[o++] = '&';
            i++;
            prev_shift = false;
            continue;
        }
        /* Two adjacent runs ("&AOQ-&AOQ-") must be one: refuse. */
        if (prev_shift)
            return CG_E_PARSE;
        uint32_t bits = 0, high = 0;
        int nbits = 0;
        size_t nchars = 0;
        for (;;) {
            if (i >= len)
                return CG_E_PARSE; /* unterminated shift */
            unsigned char c2 = (unsigned char)in[i++];
            if (c2 == '-')
                break;
            int v = b64val(c2);
            if (v < 0)
                return CG_E_PARSE;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            nchars++;
            if (nbits >= 16) {
                nbits -= 16;
                uint32_t u = (bits >> nbits) & 0xffff;
                bits &= (1u << nbits) - 1;
                if (high) {
                    if (u < 0xdc00 || u > 0xdfff)
                        return CG_E_PARSE;
                    uint32_t cp = 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00);
                    high = 0;
                    int r = put_utf8(cp, out, cap, &o);
                    if (r < 0)
                        return r;
                } else if (u >= 0xd800 && u <= 0xdbff) {
                    high = u;
                } else if (u >= 0xdc00 && u <= 0xdfff) {
                    return CG_E_PARSE;
                } else {
                    /* Printable ASCII must represent itself; NUL is never
                     * a name character. */
                    if (u == 0 || (u >= 0x20 && u <= 0x7e))
                        return CG_E_PARSE;
                    int r = put_utf8(u, out, cap, &o);
                    if (r < 0)
                        return r;
                }
            }
        }
        /* Empty run, dangling high surrogate, leftover >= 6 bits or
         * non-zero pad bits: not the canonical encoding. */
        if (nchars == 0 || high || nbits >= 6 || bits != 0)
            return CG_E_PARSE;
        prev_shift = true;
    }
    out[o] = '\0';
    return (int)o;
}

static int flush_run(uint16_t *u, size_t nu, char *out, size_t cap, size_t *o)
{
    uint32_t bits = 0;
    int nbits = 0;
    if (*o + 1 >= cap) return CG_E_LIMIT;
    out[(*o)++] = '&';
    for (size_t k = 0; k < nu; k++) {
        bits = (bits << 16) | u[k];
        nbits += 16;
        while (nbits >= 6) {
            nbits -= 6;
            if (*o + 1 >= cap) return CG_E_LIMIT;
            out[(*o)++] = b64[(bits >> nbits) & 0x3f];
        }
        bits &= (1u << nbits) - 1;
    }
    if (nbits > 0) {
        if (*o + 1 >= cap) return CG_E_LIMIT;
        out[(*o)++] = b64[(bits << (6 - nbits)) & 0x3f];
    }
    if (*o + 1 >= cap) return CG_E_LIMIT;
    out[(*o)++] = '-';
    return 0;
}

int cg_mutf7_encode(const char *in, size_t len, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    uint16_t run[512];
    size_t nrun = 0;
    if (cap == 0)
        return CG_E_LIMIT;
    while (i < len) {
        int32_t cp = cg_utf8_next(s, len, &i);
        if (cp <= 0)
            return CG_E_PARSE;
        if (cp >= 0x20 && cp <= 0x7e) {
            if (nrun) {
                int r = flush_run(run, nrun, out, cap, &o);
                if (r < 0) return r;
                nrun = 0;
            }
            if (o + 2 >= cap) return CG_E_LIMIT;
            out[o++] = (char)cp;
            if (cp == '&')
                out[o++] = '-';
            continue;
        }
        if (cp >= 0x10000) {
            uint32_t v = (uint32_t)cp - 0x10000;
            run[nrun++] = (uint16_t)(0xd800 + (v >> 10));
            run[nrun++] = (uint16_t)(0xdc00 + (v & 0x3ff));
        } else {
            run[nrun++] = (uint16_t)cp;
        }
        if (nrun + 2 > sizeof run / sizeof run[0])
            return CG_E_LIMIT; /* names are short; the run stays bounded */
    }
    if (nrun) {
        int r = flush_run(run, nrun, out, cap, &o);
        if (r < 0) return r;
    }
    out[o] = '\0';
    return (int)o;
}
