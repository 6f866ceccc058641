/* proxy/http/dav.h — the WebDAV parts of the HTTP gateway (SPEC section 4):
 * URLs in Destination and If headers made to mean on the backend what
 * they meant to the client, and PROPFIND Depth: 1 answers filtered to
 * what the principal may list. Pure: no sockets. */
#ifndef CG_HTTP_DAV_H
#define CG_HTTP_DAV_H

#include <stdbool.h>
#include <stddef.h>

/* What a URL from a Destination header or an If resource tag is, for this
 * gateway: a path of its own, another server's (the caller answers 502,
 * RFC 4918 9.8.5), too long, or malformed. Not an error code: each is an
 * answer the caller gives. */
typedef enum cg_http_dav_url {
    CG_HTTP_DAV_URL_OURS,        /* a path on this gateway (written) */
    CG_HTTP_DAV_URL_OTHER_HOST,  /* names another server */
    CG_HTTP_DAV_URL_TOO_LONG,    /* a path past CG_HTTP_PATH_MAX, or out too small */
    CG_HTTP_DAV_URL_MALFORMED,
} cg_http_dav_url;

/* A URL for this gateway's authority (the request's Host value; http or
 * https alike) reduced to its path: (*path, *plen) when OURS. A bare
 * absolute path is taken as is. `https` is the listener's scheme (kept for
 * callers; the authority decides). Never TOO_LONG. */
cg_http_dav_url cg_http_dav_url_path(const char *url, size_t len, const char *host,
                                     size_t hostlen, bool https, const char **path,
                                     size_t *plen) __attribute__((warn_unused_result));

/* Normalises a URL as above to the canonical path (proxy/http/path.h); out has
 * room for 3*len+1 (cap is its size). decoded (dcap bytes, may be NULL)
 * receives the decoded path the ACL judges. */
cg_http_dav_url cg_http_dav_url_canon(const char *url, size_t len, const char *host,
                                      size_t hostlen, bool https, char *decoded,
                                      size_t dcap, char *out, size_t cap, size_t *outlen)
    __attribute__((warn_unused_result));

/* Rewrites an If header (RFC 4918 10.4): every resource tag <URL> outside
 * parentheses becomes <canonical path>; lists inside parentheses (state
 * tokens, entity tags) are copied unchanged. cap is out's size; 3*len+64
 * always suffices. OURS when every tag names this gateway; else what the
 * first tag that does not is (TOO_LONG also when out is too small). */
cg_http_dav_url cg_http_dav_rewrite_if(const char *in, size_t len, const char *host,
                                       size_t hostlen, bool https, char *out, size_t cap,
                                       size_t *outlen) __attribute__((warn_unused_result));

/* Filters a multistatus body (RFC 4918 13): each DAV:response whose
 * DAV:href keep() refuses (called with the decoded, normalised path) is
 * removed; an href that does not normalise is removed too. With
 * href_prefix (href_prefix_len bytes, no '/' at its end), every href kept
 * becomes the prefix and its canonical path (a remote environment's
 * answer made this gateway's paths, SPEC section 7). Parsed with
 * cg_xml_parse_untrusted (no DTD, no entities, no network, at most
 * CG_HTTP_MULTISTATUS_MAX bytes and CG_HTTP_MULTISTATUS_MAX_DEPTH levels).
 * On success *out is a malloc'd document (caller frees). Returns 0 or
 * CG_E_PARSE / CG_E_NOMEM. *removed counts the removed elements. */
#define CG_HTTP_MULTISTATUS_MAX_DEPTH 32
typedef bool (*cg_http_dav_keep_fn)(void *ctx, const char *path, size_t len);
int cg_http_dav_filter(const char *xml, size_t len, const char *host,
                       size_t hostlen, bool https, cg_http_dav_keep_fn keep,
                       void *ctx, const char *href_prefix, size_t href_prefix_len,
                       char **out, size_t *outlen, size_t *removed);

#endif
