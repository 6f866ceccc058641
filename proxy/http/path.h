/* proxy/http/path.h — HTTP request-target normalisation (SPEC section 4). Pure:
 * one target in, (decoded path the ACL judges, canonical encoding that is
 * forwarded) out, or a refusal (400). The backend sees exactly what was
 * checked: both outputs name the same path. */
#ifndef CG_HTTP_PATH_H
#define CG_HTTP_PATH_H

#include <stddef.h>

/* Longest decoded path accepted (bytes); longer targets are refused. */
#define CG_HTTP_PATH_MAX 4096

/* Splits an origin-form target "/path?query" into its path and query.
 * The query is forwarded unchanged (after the '?') and is NOT part of the
 * resource the ACL judges: nginx serves files by path alone. A '#'
 * anywhere is refused (a fragment never belongs in a request, RFC 9112
 * 3.2). Returns 0 or CG_E_INVAL. */
int cg_http_target_split(const char *target, size_t len, size_t *path_len,
                         const char **query, size_t *query_len);

/* Normalises the path part of a target (it must start with '/'):
 *  - full percent-decoding (a malformed %XX is refused);
 *  - refused: encoded '/' (it would hide a segment boundary from the ACL),
 *    '\' encoded or not (Windows-style separators on some backends), NUL,
 *    any control character (0x00-0x1F, 0x7F), invalid or overlong UTF-8,
 *    surrogates; and a ".." that climbs above the root;
 *  - dot segments removed (RFC 3986 5.2.4, after decoding, so "%2e%2e" is
 *    ".."), empty segments merged ("//" -> "/"); a trailing '/' is kept
 *    (collections) and a path ending in "." or ".." ends with '/'.
 * decoded: NUL-terminated, cap at least len+1 (decoding never grows).
 * canon: the canonical encoding of decoded: ALPHA DIGIT "-._~", '/', and
 * the sub-delims "!$&'()*+,;=" literal, every other byte "%XX" uppercase;
 * NUL-terminated, cap at least 3*len+1.
 * Returns 0, CG_E_INVAL (with *error_r: one sentence, no input echoed) or
 * CG_E_LIMIT (too long). */
int cg_http_path_normalize(const char *path, size_t len, char *decoded,
                           size_t dcap, size_t *dlen, char *canon, size_t ccap,
                           size_t *clen, const char **error_r);

/* Canonical encoding of an already decoded, normalised path (used for
 * hrefs). Returns the length, or 0 when cap is too small. */
size_t cg_http_path_encode(const char *decoded, size_t len, char *out,
                           size_t cap);

#endif
