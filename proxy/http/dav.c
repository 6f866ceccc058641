/* proxy/http/dav.c — URL rewriting for Destination and If, and the PROPFIND
 * multistatus filter. The ACL judges decoded paths; URLs in headers and
 * bodies are brought to that same form here so no second spelling of a
 * path can slip past it. */
#include "proxy/http/dav.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "common/cg_error.h"
#include "proxy/http/http.h" /* CG_HTTP_MULTISTATUS_MAX */
#include "proxy/http/path.h"
#include "policy/xml_safe.h"

cg_http_dav_url cg_http_dav_url_path(const char *url, size_t len, const char *host,
                                     size_t hostlen, bool https, const char **path,
                                     size_t *plen)
{
    if (len > 0 && url[0] == '/') {
        *path = url;
        *plen = len;
        return CG_HTTP_DAV_URL_OURS;
    }
    size_t skip = 0;
    bool is_https = false;
    if (len > 8 && strncasecmp(url, "https://", 8) == 0) {
        skip = 8;
        is_https = true;
    } else if (len > 7 && strncasecmp(url, "http://", 7) == 0) {
        skip = 7;
    } else {
        return CG_HTTP_DAV_URL_MALFORMED;
    }
    size_t e = skip;
    while (e < len && url[e] != '/' && url[e] != '?' && url[e] != '#')
        e++;
    /* the authority decides, not the scheme: behind a TLS-offloading
     * client (stunnel) an https listener is named http://, and either way
     * the URL resolves to a path on this gateway, which the ACL judges */
    (void)is_https;
    (void)https;
    if (e - skip != hostlen || strncasecmp(url + skip, host, hostlen) != 0)
        return CG_HTTP_DAV_URL_OTHER_HOST;
    if (e == len) {
        *path = "/";
        *plen = 1;
        return CG_HTTP_DAV_URL_OURS;
    }
    if (url[e] != '/')
        return CG_HTTP_DAV_URL_MALFORMED;
    *path = url + e;
    *plen = len - e;
    return CG_HTTP_DAV_URL_OURS;
}

cg_http_dav_url cg_http_dav_url_canon(const char *url, size_t len, const char *host,
                                      size_t hostlen, bool https, char *decoded,
                                      size_t dcap, char *out, size_t cap, size_t *outlen)
{
    const char *p;
    size_t pl;
    cg_http_dav_url r = cg_http_dav_url_path(url, len, host, hostlen, https, &p, &pl);
    if (r != CG_HTTP_DAV_URL_OURS)
        return r;
    /* a query or fragment has no place in a resource URL here */
    if (memchr(p, '?', pl) || memchr(p, '#', pl))
        return CG_HTTP_DAV_URL_MALFORMED;
    char local[CG_HTTP_PATH_MAX + 1];
    if (!decoded) {
        decoded = local;
        dcap = sizeof local;
    }
    size_t dl;
    const char *why;
    int rc = cg_http_path_normalize(p, pl, decoded, dcap, &dl, out, cap, outlen, &why);
    /* too long (CG_E_LIMIT) stays apart from malformed: the caller says which */
    return rc == CG_E_LIMIT ? CG_HTTP_DAV_URL_TOO_LONG
           : rc < 0         ? CG_HTTP_DAV_URL_MALFORMED
                            : CG_HTTP_DAV_URL_OURS;
}

cg_http_dav_url cg_http_dav_rewrite_if(const char *in, size_t len, const char *host,
                                       size_t hostlen, bool https, char *out, size_t cap,
                                       size_t *outlen)
{
    size_t o = 0, i = 0;
    int depth = 0;
    if (cap == 0)
        return CG_HTTP_DAV_URL_TOO_LONG;
    while (i < len) {
        char ch = in[i];
        if (ch == '(') {
            depth++;
        } else if (ch == ')') {
            if (--depth < 0)
                return CG_HTTP_DAV_URL_MALFORMED;
        } else if (ch == '<' && depth == 0) {
            const char *end = memchr(in + i + 1, '>', len - i - 1);
            if (!end)
                return CG_HTTP_DAV_URL_MALFORMED;
            size_t ul = (size_t)(end - (in + i + 1)), cl;
            if (o + 3 * ul + 3 > cap)
                return CG_HTTP_DAV_URL_TOO_LONG;
            out[o++] = '<';
            cg_http_dav_url r = cg_http_dav_url_canon(in + i + 1, ul, host, hostlen, https,
                                                      NULL, 0, out + o, cap - o, &cl);
            if (r != CG_HTTP_DAV_URL_OURS)
                return r;
            o += cl;
            out[o++] = '>';
            i += ul + 2;
            continue;
        }
        if (o + 1 >= cap)
            return CG_HTTP_DAV_URL_TOO_LONG;
        out[o++] = ch;
        i++;
    }
    if (depth != 0)
        return CG_HTTP_DAV_URL_MALFORMED;
    out[o] = '\0';
    *outlen = o;
    return CG_HTTP_DAV_URL_OURS;
}

static bool is_dav(xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, "DAV:") == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

int cg_http_dav_filter(const char *xml, size_t len, const char *host,
                       size_t hostlen, bool https, cg_http_dav_keep_fn keep,
                       void *ctx, const char *href_prefix, size_t href_prefix_len,
                       char **out, size_t *outlen, size_t *removed)
{
    *removed = 0;
    /* the backend's answer is as untrusted as a client's body: one nginx
     * misconfiguration or a file served as a multistatus away */
    static const cg_xml_limits limits = {
        .what = "multistatus answer",
        .max_bytes = CG_HTTP_MULTISTATUS_MAX,
        .max_depth = CG_HTTP_MULTISTATUS_MAX_DEPTH,
    };
    xmlDoc *doc = NULL;
    const char *why;
    if (cg_xml_parse_untrusted(xml, len, &limits, &doc, &why) < 0)
        return CG_E_PARSE;
    int rc = CG_E_PARSE;
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_dav(root, "multistatus"))
        goto done;
    for (xmlNode *n = root->children, *next; n; n = next) {
        next = n->next;
        if (!is_dav(n, "response"))
            continue;
        bool ok = true;
        int hrefs = 0;
        for (xmlNode *h = n->children; h; h = h->next) {
            if (!is_dav(h, "href"))
                continue;
            hrefs++;
            xmlChar *t = xmlNodeGetContent(h);
            const char *s = t ? (const char *)t : "";
            size_t sl = strlen(s);
            char *dec = malloc(sl + 1), *can = malloc(3 * sl + 1 + href_prefix_len);
            size_t cl;
            if (!dec || !can) {
                free(dec);
                free(can);
                xmlFree(t);
                rc = CG_E_NOMEM;
                goto done;
            }
            cg_http_dav_url r = cg_http_dav_url_canon(s, sl, host, hostlen, https, dec, sl + 1,
                                                      can, 3 * sl + 1, &cl);
            if (r != CG_HTTP_DAV_URL_OURS || !keep(ctx, dec, strlen(dec)))
                ok = false;
            if (ok && href_prefix) {
                /* the href as the client addresses it: prefix first */
                memmove(can + href_prefix_len, can, cl + 1);
                memcpy(can, href_prefix, href_prefix_len);
                xmlNodeSetContent(h, NULL);
                xmlNodeAddContent(h, (const xmlChar *)can);
            }
            free(dec);
            free(can);
            xmlFree(t);
        }
        if (!ok || hrefs == 0) {
            xmlUnlinkNode(n);
            xmlFreeNode(n);
            (*removed)++;
        }
    }
    xmlChar *buf = NULL;
    int bl = 0;
    xmlDocDumpMemoryEnc(doc, &buf, &bl, "utf-8");
    if (!buf) {
        rc = CG_E_NOMEM;
        goto done;
    }
    *out = malloc((size_t)bl + 1);
    if (!*out) {
        xmlFree(buf);
        rc = CG_E_NOMEM;
        goto done;
    }
    memcpy(*out, buf, (size_t)bl);
    (*out)[bl] = '\0';
    *outlen = (size_t)bl;
    xmlFree(buf);
    rc = 0;
done:
    xmlFreeDoc(doc);
    return rc;
}
