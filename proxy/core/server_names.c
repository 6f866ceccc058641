/* proxy/core/server_names.c — the server_names value of an HTTP listener
 * as configuration knows it: its syntax, its items, and its default (the
 * certificate's DNS and IP names, read once at load). Matching a request
 * against it is the HTTP gateway's (proxy/http/host.c). */
#include "proxy/core/server_names.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/cg_error.h"

/* Appends ", item" (or "item" first) to the malloc'd list *out. */
static int list_add(char **out, size_t *len, const char *item, size_t il)
{
    size_t need = *len + (*len ? 2 : 0) + il + 1;
    char *n = realloc(*out, need);
    if (!n)
        return CG_E_NOMEM;
    if (*len) {
        memcpy(n + *len, ", ", 2);
        *len += 2;
    }
    memcpy(n + *len, item, il);
    *len += il;
    n[*len] = '\0';
    *out = n;
    return 0;
}

char *cg_server_names_of_cert(const char *path, const char **error_r)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        *error_r = "cannot read the certificate for its names";
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) {
        *error_r = "the certificate is not PEM";
        return NULL;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *out = NULL;
    size_t len = 0;
    int rc = 0;
    for (int i = 0; gens && rc == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const char *d = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            size_t dl = (size_t)ASN1_STRING_length(g->d.dNSName);
            /* a name with bytes no Host can hold is skipped, not trusted */
            const char *why;
            char tmp[CG_HOST_MAX + 1];
            if (dl == 0 || dl >= sizeof tmp || memchr(d, '\0', dl))
                continue;
            memcpy(tmp, d, dl);
            tmp[dl] = '\0';
            if (cg_server_names_check(tmp, &why) == 0 && strcmp(tmp, "*") != 0)
                rc = list_add(&out, &len, tmp, dl);
        } else if (g->type == GEN_IPADD) {
            char a[INET6_ADDRSTRLEN];
            int n = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *b = ASN1_STRING_get0_data(g->d.iPAddress);
            if ((n == 4 && inet_ntop(AF_INET, b, a, sizeof a)) ||
                (n == 16 && inet_ntop(AF_INET6, b, a, sizeof a)))
                rc = list_add(&out, &len, a, strlen(a));
        }
    }
    GENERAL_NAMES_free(gens);
    X509_free(x);
    if (rc < 0 || !out) {
        free(out);
        *error_r = rc < 0 ? "out of memory" : "the certificate names no DNS or IP host";
        return NULL;
    }
    return out;
}

bool cg_host_is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

/* A DNS name (RFC 1123 labels), "*." allowed in front. */
static bool dns_name_ok(const char *s, size_t n)
{
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_') || ++label > 63)
            return false;
    }
    return label > 0;
}

/* The next comma-separated, space-trimmed item of *p, or false at the end. */
bool cg_server_names_next(const char **p, const char **item, size_t *il)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (!*s)
        return false;
    const char *e = s;
    while (*e && *e != ',')
        e++;
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = s;
    *il = (size_t)(e - s);
    return true;
}

int cg_server_names_check(const char *list, const char **error_r)
{
    const char *p = list, *it;
    size_t il;
    int n = 0;
    while (cg_server_names_next(&p, &it, &il)) {
        char tmp[CG_HOST_MAX + 1];
        n++;
        if (il == 1 && it[0] == '*') {
            if (strcmp(list, "*") != 0) {
                *error_r = "'*' (every name) stands alone";
                return CG_E_INVAL;
            }
            continue;
        }
        if (il >= sizeof tmp) {
            *error_r = "a name is too long";
            return CG_E_INVAL;
        }
        memcpy(tmp, it, il);
        tmp[il] = '\0';
        if (!cg_host_is_ip(tmp) && !dns_name_ok(tmp, il)) {
            *error_r = "expected '*' or a list of host names and IP addresses";
            return CG_E_INVAL;
        }
    }
    if (n == 0) {
        *error_r = "empty list";
        return CG_E_INVAL;
    }
    return 0;
}

bool cg_host_name(const char *v, size_t len, const char **name, size_t *nlen)
{
    const char *port;
    if (len > 0 && v[0] == '[') {
        const char *end = memchr(v, ']', len);
        if (!end)
            return false;
        *name = v + 1;
        *nlen = (size_t)(end - v - 1);
        port = end + 1;
        if (port < v + len && *port != ':')
            return false;
    } else {
        const char *colon = memchr(v, ':', len);
        *name = v;
        *nlen = colon ? (size_t)(colon - v) : len;
        port = colon ? colon : v + len;
    }
    for (const char *q = port < v + len ? port + 1 : port; q < v + len; q++)
        if (*q < '0' || *q > '9')
            return false;
    if (*nlen > 1 && (*name)[*nlen - 1] == '.')
        (*nlen)--; /* "example.com." is the same name, absolute */
    return *nlen > 0 && *nlen <= CG_HOST_MAX;
}
