/* proxy/http/head.c — the heads the HTTP gateway writes: status reasons, the
 * rights each method needs, which fields never cross the gateway, and the
 * request head rewritten for the backend. Pure: no sockets. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "policy/acl.h"
#include "common/cg_error.h"
#include "common/cg_util.h"
#include "proxy/http/internal.h"

const char *cg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 207: return "Multi-Status";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

const char cg_http_allow[] = "OPTIONS, GET, HEAD, PUT, POST, PATCH, DELETE, MKCOL, "
                            "COPY, MOVE, PROPFIND, PROPPATCH, LOCK, UNLOCK";

/* Rights per method (SPEC section 4); src for the request path, dst for a
 * COPY/MOVE Destination. Returns false for methods outside the table. */
bool cg_http_method_rights(const char *m, unsigned *src, unsigned *dst, bool *subtree)
{
    static const struct {
        const char *name;
        unsigned src, dst;
        bool subtree;
    } t[] = {
        {"GET", CG_RIGHT_READ, 0, false},
        {"HEAD", CG_RIGHT_READ, 0, false},
        {"PUT", CG_RIGHT_WRITE, 0, false},
        {"POST", CG_RIGHT_WRITE, 0, false},
        {"PATCH", CG_RIGHT_WRITE, 0, false},
        {"PROPPATCH", CG_RIGHT_WRITE, 0, false},
        {"LOCK", CG_RIGHT_WRITE, 0, false},
        {"UNLOCK", CG_RIGHT_WRITE, 0, false},
        {"MKCOL", CG_RIGHT_CREATE, 0, false},
        {"DELETE", CG_RIGHT_DELETE, 0, true},
        {"PROPFIND", CG_RIGHT_LIST, 0, false},
        {"COPY", CG_RIGHT_READ, CG_RIGHT_WRITE, true},
        {"MOVE", CG_RIGHT_READ | CG_RIGHT_DELETE, CG_RIGHT_WRITE, true},
        {"OPTIONS", 0, 0, false},
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(t); i++) {
        if (strcmp(m, t[i].name) == 0) {
            *src = t[i].src;
            *dst = t[i].dst;
            *subtree = t[i].subtree;
            return true;
        }
    }
    return false;
}

/* A field name and its length, so a list is checked by length first (a
 * few fields per message, each against every name of the lists). */
typedef struct field_name {
    const char *s;
    size_t n;
} field_name;
#define FN(x) { x, sizeof x - 1 }

static bool name_in(const cg_http_parser *p, cg_http_span name, const field_name *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].n == name.len && strncasecmp(cg_http_str(p, name), l[i].s, l[i].n) == 0)
            return true;
    return false;
}

bool cg_http_drop_field(const cg_http_parser *p, cg_http_span name,
                        const char *principal_header, bool request)
{
    static const field_name drop[] = {
        FN("connection"), FN("keep-alive"), FN("proxy-connection"), FN("te"), FN("trailer"),
        FN("transfer-encoding"), FN("upgrade"), FN("content-length"),
        FN("proxy-authorization"), FN("proxy-authenticate"),
    };
    static const field_name drop_req[] = {
        FN("authorization"), FN("expect"), FN("forwarded"), FN("x-real-ip"),
        FN("x-authenticated-principal"), FN("destination"), FN("if"), FN("x-transaction-id"),
        FN("host"),
        /* SPEC 7: read by originator.c only, never the backend's (a
         * routed request gets this gateway's own, route.c) */
        FN("cpm-originator"), FN("cpm-transaction-id"),
    };
    static const field_name drop_resp[] = { FN("x-transaction-id") };
    if (name_in(p, name, drop, CG_ARRAY_LEN(drop)))
        return true;
    if (request) {
        if (name_in(p, name, drop_req, CG_ARRAY_LEN(drop_req)))
            return true;
        if (name.len >= 12 && strncasecmp(cg_http_str(p, name), "x-forwarded-", 12) == 0)
            return true;
        if (principal_header && cg_http_span_eq(p, name, principal_header))
            return true;
    } else if (name_in(p, name, drop_resp, CG_ARRAY_LEN(drop_resp))) {
        return true;
    }
    /* RFC 9110 7.6.1: fields named in Connection are hop-by-hop too */
    const cg_http_header *conn = cg_http_header_get(p, "connection", NULL);
    for (size_t i = 0; conn && i < p->head.nheaders; i++) {
        const cg_http_header *h = &p->head.headers[i];
        if (!cg_http_span_eq(p, h->name, "connection"))
            continue;
        char nm[64];
        if (name.len >= sizeof nm)
            continue;
        memcpy(nm, cg_http_str(p, name), name.len);
        nm[name.len] = '\0';
        if (cg_http_list_has(cg_http_str(p, h->value), h->value.len, nm))
            return true;
    }
    return false;
}

void cg_http_put_field(cg_buf *b, const cg_http_parser *p, const cg_http_header *h)
{
    cg_buf_add(b, cg_http_str(p, h->name), h->name.len);
    cg_buf_str(b, ": ");
    cg_buf_add(b, cg_http_str(p, h->value), h->value.len);
    cg_buf_str(b, "\r\n");
}

/* The request head as the backend gets it: canonical target, the Host
 * the gateway chose (never the client's field), the
 * client's end-to-end fields minus those above, rewritten Destination and
 * If, the gateway's own X-Forwarded-For/-Proto and principal header, and
 * the framing the gateway itself sends (Content-Length as received, or
 * chunked re-encoded). */
int cg_http_build_request(const cg_http_parser *p, const cg_http_fwd *f, char *out,
                          size_t cap, size_t *len)
{
    cg_buf o;
    cg_buf_init_fixed(&o, out, cap);
    cg_buf_str(&o, f->method);
    cg_buf_str(&o, " ");
    cg_buf_str(&o, f->canon);
    if (f->query) {
        cg_buf_str(&o, "?");
        cg_buf_add(&o, f->query, f->query_len);
    }
    cg_buf_str(&o, " HTTP/1.1\r\nHost: ");
    cg_buf_str(&o, f->host);
    cg_buf_str(&o, "\r\n");
    for (size_t i = 0; i < p->head.nheaders; i++) {
        const cg_http_header *h = &p->head.headers[i];
        if (cg_http_drop_field(p, h->name, f->principal_header, true))
            continue;
        cg_http_put_field(&o, p, h);
    }
    if (f->destination) {
        cg_buf_str(&o, "Destination: ");
        cg_buf_str(&o, f->destination);
        cg_buf_str(&o, "\r\n");
    }
    if (f->if_value) {
        cg_buf_str(&o, "If: ");
        cg_buf_str(&o, f->if_value);
        cg_buf_str(&o, "\r\n");
    }
    cg_buf_str(&o, "X-Forwarded-For: ");
    cg_buf_str(&o, f->client_addr);
    cg_buf_str(&o, f->tls ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
    if (f->principal_header && f->principal && f->principal[0]) {
        cg_buf_str(&o, f->principal_header);
        cg_buf_str(&o, ": ");
        cg_buf_str(&o, f->principal);
        cg_buf_str(&o, "\r\n");
    }
    if (f->originator) {
        cg_buf_str(&o, "CPM-Originator: ");
        cg_buf_str(&o, f->originator);
        cg_buf_str(&o, "\r\nCPM-Transaction-Id: ");
        cg_buf_str(&o, f->txid);
        cg_buf_str(&o, "\r\n");
    }
    if (p->head.framing == CG_HTTP_BODY_LENGTH) {
        cg_buf_fmt(&o, "Content-Length: %" PRIu64 "\r\n", p->head.content_length);
    } else if (p->head.framing == CG_HTTP_BODY_CHUNKED) {
        cg_buf_str(&o, "Transfer-Encoding: chunked\r\n");
    } else if (strcmp(f->method, "PUT") == 0 || strcmp(f->method, "POST") == 0 ||
               strcmp(f->method, "PATCH") == 0) {
        /* nginx answers 411 to a PUT without a length */
        cg_buf_str(&o, "Content-Length: 0\r\n");
    }
    cg_buf_str(&o, "\r\n");
    if (o.failed)
        return CG_E_LIMIT;
    *len = o.len;
    return 0;
}
