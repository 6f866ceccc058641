/* proxy/http/parse.h — HTTP/1.1 message parsing for the gateway, both
 * directions: llhttp (strict mode) plus the checks llhttp 8.1 misses, so
 * that an ambiguous request never reaches the backend (request smuggling,
 * RFC 9112 sections 2.2, 5, 6). Pure: fed bytes, no sockets.
 *
 * A head is buffered whole (bounded by max_header_bytes), checked raw,
 * then parsed; headers are spans into that buffer. A body is streamed:
 * each feed hands decoded body bytes to on_body and says when the message
 * ended. */
#ifndef CG_HTTP_PARSE_H
#define CG_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

typedef struct cg_http_span {
    uint32_t off, len;
} cg_http_span;

typedef struct cg_http_header {
    cg_http_span name, value; /* value without surrounding whitespace */
} cg_http_header;

enum cg_http_framing {
    CG_HTTP_BODY_NONE = 0,     /* no body (or HEAD/1xx/204/304 response) */
    CG_HTTP_BODY_LENGTH = 1,   /* Content-Length */
    CG_HTTP_BODY_CHUNKED = 2,  /* Transfer-Encoding: chunked */
    CG_HTTP_BODY_EOF = 3,      /* response delimited by close */
};

enum cg_http_target_form {
    CG_HTTP_ORIGIN = 1,        /* "/path?query" */
    CG_HTTP_ASTERISK = 2,      /* "*" (OPTIONS only) */
    CG_HTTP_ABSOLUTE = 3,      /* "http://this-host/path", reduced to path */
};

/* What a parsed head says. Spans index cg_http_parser.buf. */
typedef struct cg_http_head {
    bool request;
    int method;                /* llhttp_method_t (requests) */
    cg_http_span method_name;
    cg_http_span target;       /* as sent */
    cg_http_span path;         /* origin-form part of target (path?query) */
    int form;                  /* enum cg_http_target_form */
    int major, minor;
    int status;                /* responses */
    cg_http_span reason;
    cg_http_header *headers;
    size_t nheaders;
    int framing;               /* enum cg_http_framing */
    uint64_t content_length;
    bool keep_alive;           /* llhttp_should_keep_alive after the head */
    cg_http_span host;         /* the Host header value (requests) */
    cg_http_span authority;    /* absolute-form: the target's authority
                                * (equal to Host, or refused) */
} cg_http_head;

typedef void (*cg_http_body_fn)(void *ctx, const uint8_t *buf, size_t len);

typedef struct cg_http_parser {
    llhttp_t ll;
    bool request;
    size_t max_header_bytes, max_headers, max_line;
    bool initialized;          /* cg_http_parser_init ran */
    uint8_t *buf;              /* the head, max_header_bytes + 1; made at
                                * the first byte (an idle connection
                                * holds none) */
    size_t len;                /* bytes of the head buffered */
    size_t scanned;            /* how far the terminator search got */
    cg_http_header *hdrs;      /* max_headers entries */
    cg_http_head head;
    bool in_value, in_field;   /* inside a value / a name (span extend) */
    bool head_done, complete, no_body, line_done;
    int cb_error;              /* set by a callback: status to answer */
    int refused_status;        /* after CG_HTTP_REFUSED: the status to
                                * answer (400, 405, 414, 431, 503, 505;
                                * 502 for a response) */
    const char *cb_reason;
    cg_http_body_fn on_body;
    void *ctx;
} cg_http_parser;

/* Request parser (request = true) or response parser. max_line bounds
 * the request line (414), max_header_bytes the whole head and
 * max_headers the header count (431). Returns 0; the buffers are made
 * by the first cg_http_feed_head (503 there without memory). */
int cg_http_parser_init(cg_http_parser *p, bool request,
                        size_t max_header_bytes, size_t max_headers,
                        size_t max_line);
void cg_http_parser_free(cg_http_parser *p);
/* Ready for the next message (keeps buffers and limits). For a response
 * to HEAD set no_body afterwards (p->no_body = true). */
void cg_http_parser_reset(cg_http_parser *p);

/* How feeding a parser ended: its own type, not an error code. */
typedef enum cg_http_feed {
    CG_HTTP_MORE,      /* every byte given was taken; more are needed */
    CG_HTTP_DONE,      /* the head (or the message) is complete */
    CG_HTTP_REFUSED,   /* not acceptable: p->refused_status is the status
                        * to answer, *reason one sentence */
} cg_http_feed;

/* Feeds head bytes. *used: bytes taken from buf (the rest belongs to the
 * body or the next message). DONE when the head is complete and valid
 * (p->head filled), MORE when more is needed (all of buf used), or
 * REFUSED (400, 405, 414, 431, 505 for requests; 502 for a response; 503
 * without memory for the head buffer). */
cg_http_feed cg_http_feed_head(cg_http_parser *p, const uint8_t *buf, size_t len,
                               size_t *used, const char **reason)
    __attribute__((warn_unused_result));

/* Feeds body bytes after a complete head. Decoded body bytes go to
 * on_body(ctx, ...). *used: bytes taken (stops at the end of the
 * message). DONE when the message is complete, MORE when more is needed,
 * or REFUSED (400 / 502). */
cg_http_feed cg_http_feed_body(cg_http_parser *p, const uint8_t *buf, size_t len,
                               size_t *used, const char **reason)
    __attribute__((warn_unused_result));
/* The peer closed: DONE ends a close-delimited body, else REFUSED. */
cg_http_feed cg_http_finish(cg_http_parser *p, const char **reason)
    __attribute__((warn_unused_result));

/* Helpers over a parsed head. */
static inline const char *cg_http_str(const cg_http_parser *p, cg_http_span s)
{
    return (const char *)p->buf + s.off;
}
bool cg_http_span_eq(const cg_http_parser *p, cg_http_span s, const char *lit);
/* The first header named name (case-insensitive) or NULL; *count (may be
 * NULL) how many there are. */
const cg_http_header *cg_http_header_get(const cg_http_parser *p,
                                         const char *name, size_t *count);
/* true when a comma-separated header value lists token (case-insensitive). */
bool cg_http_list_has(const char *v, size_t len, const char *token);

#endif
