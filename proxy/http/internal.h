/* proxy/http/internal.h — internal to the HTTP gateway (proxy/http/request.c, proxy/http/auth.c,
 * proxy/http/head.c): request-level authentication, the rights table, and the
 * rewriting of heads toward the backend. Not for other modules. */
#ifndef CG_HTTP_INT_H
#define CG_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/core/conn.h"
#include "proxy/http/parse.h"
#include "policy/snapshot.h"

/* ---- proxy/http/auth.c ---- */

typedef struct cg_http_auth {
    int status;               /* 0: *who resolved (maybe NULL or disabled);
                                 401 (challenge) or 400 */
    bool stale;               /* 401 with stale=true (Digest) */
    const char *detail;       /* one sentence for the answer */
    const char *reason;       /* for the log and audit only, NULL: detail;
                                 what the client must not learn (whether
                                 the user exists) goes here, never above */
    const cg_principal *who;
    const char *method;       /* cert | psk | address | digest | saml, or NULL */
    char principal[CG_NAME_MAX + 1]; /* the claimed or proven name, "" when none */
} cg_http_auth;

/* Who sent this request: the connection's identity (cert, psk, address)
 * when there is one, else Digest or SAML in Authorization, as the
 * listener's auth allows. */
void cg_http_authenticate(const cg_conn_info *ci, const cg_http_parser *req,
                          const char *method, const cg_snapshot *snap,
                          cg_http_auth *out);

/* The WWW-Authenticate lines of a 401 (SPEC 4: Digest SHA-256, Digest MD5,
 * SAML, for the methods the listener enables). Returns the length. */
size_t cg_http_challenges(const cg_listener_cfg *l, bool stale, char *out,
                          size_t cap);

/* ---- proxy/http/head.c ---- */

const char *cg_http_reason(int status);
extern const char cg_http_allow[]; /* the Allow list of a 405 */

/* Rights per method (SPEC 4): src on the request path, dst on a COPY/MOVE
 * Destination; subtree for operations that act on a whole collection.
 * false for methods outside the table. */
bool cg_http_method_rights(const char *method, unsigned *src, unsigned *dst,
                           bool *subtree);

/* Fields that never cross the gateway: hop-by-hop ones (RFC 9110 7.6.1),
 * those named in Connection, framing we redo; toward the backend also
 * client-sent identity and forwarding fields, credentials, Expect,
 * Host, Destination and If (sent rewritten). */
bool cg_http_drop_field(const cg_http_parser *p, cg_http_span name,
                        const char *principal_header, bool request);

typedef struct cg_http_fwd {
    const char *method, *canon;  /* canonical target path */
    const char *host;            /* the Host value the backend gets */
    const char *query;           /* NULL: none */
    size_t query_len;
    const char *destination;     /* rewritten, or NULL */
    const char *if_value;        /* rewritten, or NULL */
    const char *client_addr;
    bool tls;
    const char *principal_header; /* NULL: none */
    const char *principal;
} cg_http_fwd;

/* The request head the backend gets. 0 or CG_E_LIMIT (cap too small). */
int cg_http_build_request(const cg_http_parser *req, const cg_http_fwd *f,
                          char *out, size_t cap, size_t *len);

/* A bounded output buffer: an overflow is remembered, never written. */
typedef struct cg_obuf {
    char *b;
    size_t len, cap;
    bool over;
} cg_obuf;

static inline void cg_ob_add(cg_obuf *o, const void *d, size_t n)
{
    if (o->over || o->len + n > o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->b + o->len, d, n);
    o->len += n;
}

static inline void cg_ob_str(cg_obuf *o, const char *s)
{
    cg_ob_add(o, s, strlen(s));
}

#endif
