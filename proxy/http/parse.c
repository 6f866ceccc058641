/* proxy/http/parse.c — strict HTTP/1.1 heads and streamed bodies over llhttp.
 * llhttp 8.1 even in strict mode accepts obs-fold, bare LF, HTTP/0.9,
 * absolute-form and CONNECT targets: those are refused here, before llhttp
 * sees the head, together with the framing ambiguities that make request
 * smuggling possible (RFC 9112 6.1, 6.3; RFC 9110 5.5). */
#include "proxy/http/parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cg_error.h"
#include "common/cg_util.h"

/* The bytes are refused: the status to answer is kept in the parser, not
 * returned (the checks below return true or, through this, false). */
static bool refuse(cg_http_parser *p, int status)
{
    p->refused_status = status;
    return false;
}

static cg_http_feed refused(cg_http_parser *p, int status)
{
    refuse(p, status);
    return CG_HTTP_REFUSED;
}

static cg_http_parser *of(llhttp_t *ll)
{
    return (cg_http_parser *)ll->data;
}

static uint32_t off_of(cg_http_parser *p, const char *at)
{
    return (uint32_t)((const uint8_t *)at - p->buf);
}

static int cb_fail(cg_http_parser *p, int status, const char *reason)
{
    p->cb_error = status;
    p->cb_reason = reason;
    return -1;
}

static int on_method(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    p->head.method_name = (cg_http_span){off_of(p, at), (uint32_t)n};
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    p->head.target = (cg_http_span){off_of(p, at), (uint32_t)n};
    return 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    p->head.reason = (cg_http_span){off_of(p, at), (uint32_t)n};
    return 0;
}

static int on_field(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    if (p->head_done)
        return 0; /* trailer fields: dropped, never forwarded */
    if (p->in_field) {
        /* continuation of the same name (only across feeds) */
        p->hdrs[p->head.nheaders - 1].name.len += (uint32_t)n;
        return 0;
    }
    if (p->head.nheaders >= p->max_headers)
        return cb_fail(p, 431, "too many header fields");
    cg_http_header *h = &p->hdrs[p->head.nheaders++];
    h->name = (cg_http_span){off_of(p, at), (uint32_t)n};
    h->value = (cg_http_span){off_of(p, at) + (uint32_t)n, 0};
    p->in_value = false;
    p->in_field = true;
    return 0;
}

static int on_value(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    if (p->head_done)
        return 0; /* trailer fields: dropped, never forwarded */
    if (p->head.nheaders == 0)
        return cb_fail(p, 400, "header value without a name");
    cg_http_header *h = &p->hdrs[p->head.nheaders - 1];
    if (p->in_value) {
        /* a second value callback is obs-fold (RFC 9112 5.2), already
         * refused by the raw scan; refuse it here too */
        if (off_of(p, at) != h->value.off + h->value.len)
            return cb_fail(p, 400, "folded header value");
        h->value.len += (uint32_t)n;
    } else {
        h->value = (cg_http_span){off_of(p, at), (uint32_t)n};
        p->in_value = true;
    }
    return 0;
}

static int on_value_complete(llhttp_t *ll)
{
    cg_http_parser *p = of(ll);
    if (p->head_done)
        return 0; /* trailer fields: dropped, never forwarded */
    cg_http_header *h = &p->hdrs[p->head.nheaders - 1];
    while (h->value.len > 0 && (p->buf[h->value.off + h->value.len - 1] == ' ' ||
                                p->buf[h->value.off + h->value.len - 1] == '\t'))
        h->value.len--;
    p->in_value = false;
    return 0;
}

static int on_field_complete(llhttp_t *ll)
{
    of(ll)->in_value = false;
    of(ll)->in_field = false;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    cg_http_parser *p = of(ll);
    p->head_done = true;
    /* A response to HEAD has no body whatever its headers say
     * (RFC 9110 9.3.2); llhttp handles 1xx/204/304 itself. */
    return p->no_body ? 1 : 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    cg_http_parser *p = of(ll);
    if (p->on_body)
        p->on_body(p->ctx, (const uint8_t *)at, n);
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    cg_http_parser *p = of(ll);
    p->complete = true;
    /* stop at the message boundary: what follows is the next message */
    return HPE_PAUSED;
}

/* One set of callbacks for every parser (llhttp keeps a pointer to it):
 * request and response parsers each use the ones that apply. */
static const llhttp_settings_t g_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_header_field_complete = on_field_complete,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int cg_http_parser_init(cg_http_parser *p, bool request,
                        size_t max_header_bytes, size_t max_headers,
                        size_t max_line)
{
    memset(p, 0, sizeof *p);
    p->request = request;
    p->max_header_bytes = max_header_bytes ? max_header_bytes : 16384;
    p->max_headers = max_headers ? max_headers : 100;
    p->max_line = max_line ? max_line : 8192;
    p->initialized = true;
    cg_http_parser_reset(p);
    return 0;
}

void cg_http_parser_free(cg_http_parser *p)
{
    free(p->buf);
    free(p->hdrs);
    p->buf = NULL;
    p->hdrs = NULL;
}

void cg_http_parser_reset(cg_http_parser *p)
{
    llhttp_init(&p->ll, p->request ? HTTP_REQUEST : HTTP_RESPONSE,
                &g_settings);
    p->ll.data = p;
    p->len = p->scanned = 0;
    memset(&p->head, 0, sizeof p->head);
    p->head.headers = p->hdrs;
    p->head.request = p->request;
    p->in_value = p->head_done = p->complete = p->no_body = p->line_done = p->in_field = false;
    p->cb_error = 0;
    p->cb_reason = NULL;
}

/* RFC 9112 3: method SP request-target SP HTTP-version, single spaces,
 * a token method, a target without whitespace. */
static bool request_line_ok(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && cg_is_tchar(b[i]))
        i++;
    if (i == 0 || i >= n || b[i] != ' ')
        return false;
    size_t t = ++i;
    while (i < n && b[i] > ' ' && b[i] != 0x7F)
        i++;
    if (i == t || i >= n || b[i] != ' ')
        return false;
    i++;
    return n - i == 8 && memcmp(b + i, "HTTP/", 5) == 0 && b[i + 5] >= '0' &&
           b[i + 5] <= '9' && b[i + 6] == '.' && b[i + 7] >= '0' && b[i + 7] <= '9';
}

/* The raw checks on a complete head (buf[0..n), n includes the final
 * CRLF CRLF): every line ends in CRLF (no bare CR or LF, RFC 9112 2.2),
 * no NUL or other control byte, no obs-fold (5.2), header names are
 * tokens directly followed by ':' (no whitespace before the colon, 5.1). */
/* The bytes that end a run of line text: CR, LF, and the ones refused
 * in it (NUL, controls but HT, DEL). A table: one load and test a byte. */
static const bool line_stop[256] = {
    [0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1,
    [0x07] = 1, [0x08] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1,
    [0x0f] = 1, [0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1,
    [0x16] = 1, [0x17] = 1, [0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1,
    [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [0x7f] = 1,
};

static bool raw_check(cg_http_parser *p, size_t n, const char **reason)
{
    const uint8_t *b = p->buf;
    size_t line = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && !line_stop[b[e]])
            e++;
        while (e < n && b[e] != '\r' && b[e] != '\n') {
            if (b[e] == 0) {
                *reason = "NUL in the message head";
                return refuse(p, p->request ? 400 : 502);
            }
            if ((b[e] < 0x20 && b[e] != '\t') || b[e] == 0x7F) {
                *reason = "control character in the message head";
                return refuse(p, p->request ? 400 : 502);
            }
            e++;
        }
        if (e + 1 >= n || b[e] != '\r' || b[e + 1] != '\n') {
            *reason = "bare CR or LF in the message head";
            return refuse(p, p->request ? 400 : 502);
        }
        size_t ll = e - i;
        if (line == 0) {
            if (p->request && ll > p->max_line) {
                *reason = "request line too long";
                return refuse(p, 414);
            }
            if (p->request && !request_line_ok(b + i, ll)) {
                *reason = "malformed request line";
                return refuse(p, 400);
            }
        } else if (ll > 0) {
            if (b[i] == ' ' || b[i] == '\t') {
                *reason = "obsolete line folding in a header";
                return refuse(p, p->request ? 400 : 502);
            }
            size_t k = i;
            while (k < e && cg_is_tchar(b[k]))
                k++;
            if (k == i || k == e || b[k] != ':') {
                *reason = k < e && (b[k] == ' ' || b[k] == '\t')
                              ? "whitespace before the colon of a header"
                              : "malformed header line";
                return refuse(p, p->request ? 400 : 502);
            }
        }
        line++;
        i = e + 2;
    }
    return true;
}

bool cg_http_span_eq(const cg_http_parser *p, cg_http_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(cg_http_str(p, s), lit, n) == 0;
}

const cg_http_header *cg_http_header_get(const cg_http_parser *p,
                                         const char *name, size_t *count)
{
    const cg_http_header *first = NULL;
    size_t c = 0;
    for (size_t i = 0; i < p->head.nheaders; i++) {
        if (cg_http_span_eq(p, p->head.headers[i].name, name)) {
            if (!first)
                first = &p->head.headers[i];
            c++;
        }
    }
    if (count)
        *count = c;
    return first;
}

bool cg_http_list_has(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0)
            return true;
    }
    return false;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Host value syntax (RFC 3986 authority without userinfo): reg-name or
 * IP literal, optional port. No '@', '/', whitespace. */
static bool host_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(cg_is_tchar(c) || c == ':' || c == '[' || c == ']') || c == '@' ||
            c == '/' || c == '\\' || c == '%' || c == '#' || c == '?')
            return false;
    }
    return true;
}

/* Framing (RFC 9112 6.1-6.3): exactly one of no body, one well-formed
 * Content-Length, or a Transfer-Encoding that is exactly "chunked". Any
 * combination, repetition or other coding is refused: two parsers that
 * disagree on where a request ends is the whole of request smuggling. */
static bool framing_check(cg_http_parser *p, const char **reason)
{
    size_t ncl, nte;
    const cg_http_header *cl = cg_http_header_get(p, "content-length", &ncl);
    const cg_http_header *te = cg_http_header_get(p, "transfer-encoding", &nte);
    int bad = p->request ? 400 : 502;
    cg_http_head *h = &p->head;
    if (ncl && nte) {
        *reason = "both Content-Length and Transfer-Encoding";
        return refuse(p, bad);
    }
    if (ncl > 1) {
        *reason = "more than one Content-Length";
        return refuse(p, bad);
    }
    if (nte > 1) {
        *reason = "more than one Transfer-Encoding";
        return refuse(p, bad);
    }
    if (ncl) {
        if (!all_digits(cg_http_str(p, cl->value), cl->value.len)) {
            *reason = "malformed Content-Length";
            return refuse(p, bad);
        }
        uint64_t v = 0;
        for (size_t i = 0; i < cl->value.len; i++)
            v = v * 10 + (uint64_t)(cg_http_str(p, cl->value)[i] - '0');
        h->content_length = v;
        h->framing = v ? CG_HTTP_BODY_LENGTH : CG_HTTP_BODY_NONE;
    } else if (nte) {
        if (!cg_http_span_eq(p, te->value, "chunked")) {
            *reason = "Transfer-Encoding other than chunked";
            return refuse(p, bad);
        }
        if (h->major == 1 && h->minor == 0 && p->request) {
            *reason = "Transfer-Encoding in an HTTP/1.0 request";
            return refuse(p, 400);
        }
        h->framing = CG_HTTP_BODY_CHUNKED;
    } else {
        h->framing = p->request ? CG_HTTP_BODY_NONE : CG_HTTP_BODY_EOF;
    }
    if (!p->request) {
        int st = h->status;
        if (p->no_body || (st >= 100 && st < 200) || st == 204 || st == 304)
            h->framing = CG_HTTP_BODY_NONE;
    }
    return true;
}

/* Target forms (RFC 9112 3.2): origin-form; "*" for OPTIONS only;
 * absolute-form only for this host (the Host header), reduced to its
 * path; authority-form (CONNECT) never: this is no forward proxy. */
static bool target_check(cg_http_parser *p, const char **reason)
{
    cg_http_head *h = &p->head;
    const char *t = cg_http_str(p, h->target);
    size_t n = h->target.len;
    if (h->method == HTTP_CONNECT) {
        *reason = "CONNECT (authority-form) is not served";
        return refuse(p, 400);
    }
    if (n > 0 && t[0] == '/') {
        h->form = CG_HTTP_ORIGIN;
        h->path = h->target;
        return true;
    }
    if (n == 1 && t[0] == '*') {
        if (h->method != HTTP_OPTIONS) {
            *reason = "asterisk-form target outside OPTIONS";
            return refuse(p, 400);
        }
        h->form = CG_HTTP_ASTERISK;
        h->path = h->target;
        return true;
    }
    size_t skip = 0;
    if (n > 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (n > 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    if (!skip) {
        *reason = "request target is neither origin-form nor absolute-form";
        return refuse(p, 400);
    }
    size_t a = skip, e = a;
    while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#')
        e++;
    const char *host = cg_http_str(p, h->host);
    if (e - a != h->host.len || strncasecmp(t + a, host, e - a) != 0) {
        *reason = "absolute-form target for another host";
        return refuse(p, 400);
    }
    h->form = CG_HTTP_ABSOLUTE;
    h->authority = (cg_http_span){h->target.off + (uint32_t)a, (uint32_t)(e - a)};
    if (e == n || t[e] != '/') {
        *reason = "absolute-form target without a path";
        return refuse(p, 400);
    }
    h->path = (cg_http_span){h->target.off + (uint32_t)e, (uint32_t)(n - e)};
    return true;
}

static bool head_semantics(cg_http_parser *p, const char **reason)
{
    cg_http_head *h = &p->head;
    h->major = llhttp_get_http_major(&p->ll);
    h->minor = llhttp_get_http_minor(&p->ll);
    if (h->major != 1 || h->minor > 1) {
        /* HTTP/0.9 has no head at all; 2.0 is not spoken here */
        *reason = "HTTP version other than 1.0 or 1.1";
        return refuse(p, h->major == 0 || !p->request ? (p->request ? 400 : 502) : 505);
    }
    if (p->request) {
        h->method = llhttp_get_method(&p->ll);
        size_t nhost;
        const cg_http_header *host = cg_http_header_get(p, "host", &nhost);
        /* RFC 9112 3.2: 400 for a missing (1.1) or repeated Host */
        if (nhost > 1 || (nhost == 0 && h->minor == 1)) {
            *reason = nhost ? "more than one Host header" : "no Host header";
            return refuse(p, 400);
        }
        if (host) {
            if (!host_ok(cg_http_str(p, host->value), host->value.len)) {
                *reason = "malformed Host header";
                return refuse(p, 400);
            }
            h->host = host->value;
        }
        if (!target_check(p, reason))
            return false;
    } else {
        h->status = llhttp_get_status_code(&p->ll);
    }
    return framing_check(p, reason);
}

static bool make_buffers(cg_http_parser *p)
{
    p->buf = malloc(p->max_header_bytes + 1);
    p->hdrs = calloc(p->max_headers, sizeof *p->hdrs);
    if (!p->buf || !p->hdrs) {
        cg_http_parser_free(p);
        return false;
    }
    p->head.headers = p->hdrs;
    return true;
}

cg_http_feed cg_http_feed_head(cg_http_parser *p, const uint8_t *buf, size_t len,
                               size_t *used, const char **reason)
{
    *used = 0;
    if (!p->buf && !make_buffers(p)) {
        *reason = "out of memory";
        return refused(p, 503);
    }
    size_t i = 0;
    /* RFC 9112 2.2: ignore empty lines before a request line */
    if (p->request) {
        while (p->len == 0 && i < len && (buf[i] == '\r' || buf[i] == '\n'))
            i++;
    }
    /* copy up to the end of the head (CRLF CRLF) or the limit, a line at
     * a time (memchr and one copy, not a test per byte) */
    size_t end = 0;
    while (i < len) {
        if (p->len >= p->max_header_bytes) {
            *used = i;
            *reason = "request head too large";
            return refused(p, p->request ? 431 : 502);
        }
        size_t avail = len - i, room = p->max_header_bytes - p->len;
        if (avail > room)
            avail = room;
        const uint8_t *nl = memchr(buf + i, '\n', avail);
        size_t take = nl ? (size_t)(nl - (buf + i)) + 1 : avail;
        size_t text = nl ? take - 1 : take; /* bytes before the LF */
        if (p->request && !p->line_done && p->len + text > p->max_line) {
            /* refused at the byte that makes the line too long */
            *used = i + (p->max_line + 1 - p->len);
            *reason = "request line too long";
            return refused(p, 414);
        }
        memcpy(p->buf + p->len, buf + i, take);
        p->len += take;
        i += take;
        if (!nl)
            continue;
        p->line_done = true;
        if (p->len >= 2 && p->buf[p->len - 2] != '\r') {
            *used = i;
            *reason = "bare LF in the message head";
            return refused(p, p->request ? 400 : 502);
        }
        if (p->len >= 4 && memcmp(p->buf + p->len - 4, "\r\n\r\n", 4) == 0) {
            end = p->len;
            break;
        }
    }
    *used = i;
    if (!end)
        return CG_HTTP_MORE;
    if (!raw_check(p, end, reason))
        return CG_HTTP_REFUSED;
    llhttp_errno_t e = llhttp_execute(&p->ll, (const char *)p->buf, end);
    if (p->cb_error) {
        *reason = p->cb_reason;
        return refused(p, p->cb_error);
    }
    if (e == HPE_INVALID_METHOD && p->request) {
        /* a well-formed token llhttp does not know: the method is not
         * served (405 with Allow), rather than a malformed request */
        *reason = "method not allowed";
        return refused(p, 405);
    }
    if ((e != HPE_OK && e != HPE_PAUSED) || !p->head_done) {
        *reason = llhttp_get_error_reason(&p->ll);
        if (!*reason)
            *reason = llhttp_errno_name(e);
        return refused(p, p->request ? 400 : 502);
    }
    if (e == HPE_PAUSED)
        llhttp_resume(&p->ll);
    if (!head_semantics(p, reason))
        return CG_HTTP_REFUSED;
    p->head.keep_alive = llhttp_should_keep_alive(&p->ll) != 0;
    if (p->head.framing == CG_HTTP_BODY_NONE)
        p->complete = true;
    return CG_HTTP_DONE;
}

cg_http_feed cg_http_feed_body(cg_http_parser *p, const uint8_t *buf, size_t len,
                               size_t *used, const char **reason)
{
    *used = 0;
    if (p->complete)
        return CG_HTTP_DONE;
    if (len == 0)
        return CG_HTTP_MORE;
    llhttp_errno_t e = llhttp_execute(&p->ll, (const char *)buf, len);
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&p->ll);
        *used = pos ? (size_t)((const uint8_t *)pos - buf) : len;
        llhttp_resume(&p->ll);
        return p->complete ? CG_HTTP_DONE : CG_HTTP_MORE;
    }
    if (e != HPE_OK) {
        *reason = llhttp_get_error_reason(&p->ll);
        if (!*reason)
            *reason = "malformed message body";
        return refused(p, p->request ? 400 : 502);
    }
    *used = len;
    return p->complete ? CG_HTTP_DONE : CG_HTTP_MORE;
}

cg_http_feed cg_http_finish(cg_http_parser *p, const char **reason)
{
    if (p->complete)
        return CG_HTTP_DONE;
    if (p->head_done && p->head.framing == CG_HTTP_BODY_EOF) {
        p->complete = true;
        return CG_HTTP_DONE;
    }
    *reason = "connection closed before the end of the message";
    return refused(p, p->request ? 400 : 502);
}
