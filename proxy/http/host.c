/* proxy/http/host.c — the names an HTTP listener serves (server_names, by
 * default its certificate's DNS and IP names: proxy/core/server_names.c)
 * and the matching of a request's Host, absolute-form authority and SNI
 * against them. */
#include "proxy/http/host.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "proxy/core/server_names.h"

bool cg_http_same_host(const char *a, size_t al, const char *b, size_t bl)
{
    char sa[CG_HOST_MAX + 1], sb[CG_HOST_MAX + 1];
    if (al >= sizeof sa || bl >= sizeof sb)
        return false;
    memcpy(sa, a, al);
    sa[al] = '\0';
    memcpy(sb, b, bl);
    sb[bl] = '\0';
    unsigned char xa[16], xb[16];
    if (inet_pton(AF_INET6, sa, xa) == 1)
        return inet_pton(AF_INET6, sb, xb) == 1 && memcmp(xa, xb, 16) == 0;
    if (inet_pton(AF_INET, sa, xa) == 1)
        return inet_pton(AF_INET, sb, xb) == 1 && memcmp(xa, xb, 4) == 0;
    return al == bl && strncasecmp(sa, sb, al) == 0;
}

bool cg_http_name_served(const char *list, const char *name, size_t nlen, const char **as,
                         size_t *aslen)
{
    const char *p = list, *it, *dummy;
    size_t il, dl;
    if (!as) {
        as = &dummy;
        aslen = &dl;
    }
    *as = name;
    *aslen = nlen;
    while (cg_server_names_next(&p, &it, &il)) {
        if (il == 1 && it[0] == '*')
            return true;
        if (il > 2 && it[0] == '*' && it[1] == '.') {
            /* "*.example.com": exactly one label before ".example.com" */
            size_t sl = il - 1;
            if (nlen > sl && strncasecmp(name + nlen - sl, it + 1, sl) == 0 &&
                !memchr(name, '.', nlen - sl) && !memchr(name, ':', nlen))
                return true;
            continue;
        }
        if (cg_http_same_host(it, il, name, nlen)) {
            *as = it;
            *aslen = il;
            return true;
        }
    }
    return false;
}

bool cg_http_first_name(const char **list, const char **name, size_t *nlen)
{
    while (cg_server_names_next(list, name, nlen))
        if ((*name)[0] != '*')
            return true;
    return false;
}

size_t cg_http_host_format(const char *name, size_t nlen, char *out, size_t cap)
{
    bool v6 = memchr(name, ':', nlen) != NULL;
    int n = snprintf(out, cap, v6 ? "[%.*s]" : "%.*s", (int)nlen, name);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    for (char *c = out; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    return (size_t)n;
}
