/* proxy/http/path.c — request-target normalisation for the HTTP gateway: one
 * decoding, one set of refusals, one canonical encoding, so that the path
 * the ACL judges and the path nginx serves cannot differ (SPEC section 4). */
#include "proxy/http/path.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

int cg_http_target_split(const char *target, size_t len, size_t *path_len,
                         const char **query, size_t *query_len)
{
    if (memchr(target, '#', len))
        return CG_E_INVAL;
    const char *q = memchr(target, '?', len);
    if (!q) {
        *path_len = len;
        *query = NULL;
        *query_len = 0;
        return 0;
    }
    *path_len = (size_t)(q - target);
    *query = q + 1;
    *query_len = len - *path_len - 1;
    return 0;
}

static bool literal_ok(unsigned char ch)
{
    if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
        (ch >= '0' && ch <= '9'))
        return true;
    return strchr("-._~/!$&'()*+,;=", ch) != NULL && ch != '\0';
}

size_t cg_http_path_encode(const char *decoded, size_t len, char *out,
                           size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)decoded[i];
        if (literal_ok(ch)) {
            if (o + 1 >= cap)
                return 0;
            out[o++] = (char)ch;
        } else {
            if (o + 3 >= cap)
                return 0;
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    if (o >= cap)
        return 0;
    out[o] = '\0';
    return o;
}

int cg_http_path_normalize(const char *path, size_t len, char *decoded,
                           size_t dcap, size_t *dlen, char *canon, size_t ccap,
                           size_t *clen, const char **error_r)
{
    const char *dummy;
    if (!error_r)
        error_r = &dummy;
    if (len == 0 || path[0] != '/') {
        *error_r = "the path does not start with '/'";
        return CG_E_INVAL;
    }
    if (len > CG_HTTP_PATH_MAX) {
        *error_r = "the path is too long";
        return CG_E_LIMIT;
    }
    if (dcap < len + 1 || ccap < 3 * len + 1)
        return CG_E_INVAL;

    /* 1. Percent-decode into decoded[], refusing what must not appear in
     * a path. Segment boundaries are literal '/' only. */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)path[i];
        bool encoded = false;
        if (ch == '%') {
            int hi = i + 2 < len ? cg_hexval((unsigned char)path[i + 1]) : -1;
            int lo = i + 2 < len ? cg_hexval((unsigned char)path[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *error_r = "malformed percent-encoding in the path";
                return CG_E_INVAL;
            }
            ch = (unsigned char)(hi << 4 | lo);
            i += 2;
            encoded = true;
        }
        if (ch == '/' && encoded) {
            *error_r = "encoded '/' in the path";
            return CG_E_INVAL;
        }
        if (ch == '\\') {
            *error_r = "'\\' in the path";
            return CG_E_INVAL;
        }
        if (ch == 0) {
            *error_r = "NUL in the path";
            return CG_E_INVAL;
        }
        if (ch < 0x20 || ch == 0x7F) {
            *error_r = "control character in the path";
            return CG_E_INVAL;
        }
        decoded[n++] = (char)ch;
    }
    if (!cg_utf8_valid(decoded, n)) {
        *error_r = "invalid UTF-8 in the path";
        return CG_E_INVAL;
    }

    /* 2. Remove dot segments and merge slashes in place: the output never
     * runs ahead of the input. out always starts with '/'. */
    size_t o = 1, i = 0;
    bool trailing = false;
    while (i < n) {
        while (i < n && decoded[i] == '/')
            i++;
        if (i >= n) {
            trailing = true;
            break;
        }
        size_t s = i;
        while (i < n && decoded[i] != '/')
            i++;
        size_t sl = i - s;
        bool last = i >= n;
        if (sl == 1 && decoded[s] == '.') {
            trailing = last;
            continue;
        }
        if (sl == 2 && decoded[s] == '.' && decoded[s + 1] == '.') {
            if (o <= 1) {
                *error_r = "the path climbs above the root";
                return CG_E_INVAL;
            }
            /* drop the previous segment: out is "/a/b/" -> "/a/" */
            o--; /* the '/' after the previous segment */
            while (o > 0 && decoded[o - 1] != '/')
                o--;
            trailing = last;
            continue;
        }
        memmove(decoded + o, decoded + s, sl);
        o += sl;
        decoded[o++] = '/';
        trailing = false;
    }
    /* out now ends with '/' after each kept segment; drop the last one
     * unless the path names a collection. */
    if (o > 1 && !trailing)
        o--;
    decoded[0] = '/';
    decoded[o] = '\0';
    *dlen = o;

    size_t cl = cg_http_path_encode(decoded, o, canon, ccap);
    if (cl == 0) {
        *error_r = "the path is too long";
        return CG_E_LIMIT;
    }
    *clen = cl;
    return 0;
}
