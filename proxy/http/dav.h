/* proxy/http/dav.h — the WebDAV parts of the HTTP gateway (SPEC section 4):
 * URLs in Destination and If headers made to mean on the backend what
 * they meant to the client, and PROPFIND Depth: 1 answers filtered to
 * what the principal may list. Pure: no sockets. */
#ifndef CG_HTTP_DAV_H
#define CG_HTTP_DAV_H

#include <stdbool.h>
#include <stddef.h>

/* A URL from a Destination header or an If resource tag, for this
 * gateway's authority (the request's Host value; http or https alike):
 * reduced to its path. A bare absolute path is taken as is. Returns 0
 * with (*path, *plen), 1 when the URL names another host (the caller
 * answers 502, RFC 4918 9.8.5), CG_E_INVAL when malformed. `https` is
 * the listener's scheme (kept for callers; the authority decides). */
int cg_http_dav_url_path(const char *url, size_t len, const char *host,
                         size_t hostlen, bool https, const char **path,
                         size_t *plen);

/* Normalises a URL as above to the canonical path (proxy/http/path.h); out has
 * room for 3*len+1 (cap is its size). Returns 0, 1 (other host),
 * CG_E_LIMIT (the path is longer than CG_HTTP_PATH_MAX) or CG_E_INVAL.
 * decoded (dcap bytes, may be NULL) receives the decoded path the ACL
 * judges. */
int cg_http_dav_url_canon(const char *url, size_t len, const char *host,
                          size_t hostlen, bool https, char *decoded,
                          size_t dcap, char *out, size_t cap, size_t *outlen);

/* Rewrites an If header (RFC 4918 10.4): every resource tag <URL> outside
 * parentheses becomes <canonical path>; lists inside parentheses (state
 * tokens, entity tags) are copied unchanged. cap is out's size; 3*len+64
 * always suffices. Returns 0, 1 (a tag names another host), CG_E_LIMIT (a
 * tag's path is too long, or out is too small) or CG_E_INVAL. */
int cg_http_dav_rewrite_if(const char *in, size_t len, const char *host,
                           size_t hostlen, bool https, char *out, size_t cap,
                           size_t *outlen);

/* Filters a multistatus body (RFC 4918 13): each DAV:response whose
 * DAV:href keep() refuses (called with the decoded, normalised path) is
 * removed; an href that does not normalise is removed too. Parsed with
 * cg_xml_parse_untrusted (no DTD, no entities, no network, at most
 * CG_HTTP_MULTISTATUS_MAX bytes and CG_HTTP_MULTISTATUS_MAX_DEPTH levels).
 * On success *out is a malloc'd document (caller frees). Returns 0 or
 * CG_E_PARSE / CG_E_NOMEM. *removed counts the removed elements. */
#define CG_HTTP_MULTISTATUS_MAX_DEPTH 32
typedef bool (*cg_http_dav_keep_fn)(void *ctx, const char *path, size_t len);
int cg_http_dav_filter(const char *xml, size_t len, const char *host,
                       size_t hostlen, bool https, cg_http_dav_keep_fn keep,
                       void *ctx, char **out, size_t *outlen, size_t *removed);

#endif
