/* proxy/imap/parser.c — incremental IMAP command parser (see proxy/imap/parser.h).
 * One byte-driven state machine; the only copies are of token data into
 * one buffer of max_line bytes, so a command costs no allocation and a
 * streamed APPEND literal is never held. */
#include "proxy/imap/parser.h"

#include "common/cg_buf.h"
#include "common/cg_util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum st {
    ST_START,      /* before the first byte of a command */
    ST_BETWEEN,    /* between tokens */
    ST_ATOM,
    ST_QUOTED,
    ST_QUOTED_ESC,
    ST_LIT_TILDE,  /* "~" seen: "{" makes a literal8, else an atom */
    ST_LIT_NUM,    /* "{" digits */
    ST_LIT_CLOSE,  /* "+" seen, "}" must follow */
    ST_LIT_CR,     /* "}" seen, CRLF must follow */
    ST_LIT_LF,
    ST_LIT_KEEP,   /* copying literal bytes */
    ST_LIT_STREAM, /* streaming literal bytes */
    ST_LIT_DISCARD,/* skipping a refused non-synchronising literal */
    ST_LF,         /* CR at end of line seen */
    ST_SKIP,       /* after an error: drop the rest of the line */
    ST_DONE,       /* a command was reported; reset on the next byte */
};

struct cg_imapp {
    cg_imapp_limits lim;
    int st;
    uint8_t *buf;          /* token data, NUL after each token; grows
                            * on demand up to max_line + 1 bytes */
    size_t used, cap, maxcap;
    cg_imapp_tok *tok;
    size_t ntok, tokcap;
    unsigned depth;
    bool sp;               /* a space since the last token */
    size_t rawline;        /* bytes of the current line (not literal data) */
    /* literal being read */
    uint64_t lit_n, lit_left;
    bool lit_plus, lit8, lit_digits;
    const char *pending_err; /* error to report once the line is skipped */
    char tag[64];
};

cg_imapp *cg_imapp_new(const cg_imapp_limits *lim)
{
    cg_imapp *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->lim = *lim;
    if (p->lim.max_line < 64)
        p->lim.max_line = 64;
    if (p->lim.max_tokens < 8)
        p->lim.max_tokens = 8;
    if (p->lim.max_depth == 0)
        p->lim.max_depth = 16;
    if (p->lim.max_depth > 200)
        p->lim.max_depth = 200;
    /* small at first: an idle session costs little */
    p->maxcap = p->lim.max_line + 1;
    p->cap = p->maxcap < 512 ? p->maxcap : 512;
    p->tokcap = p->lim.max_tokens < 32 ? p->lim.max_tokens : 32;
    p->buf = malloc(p->cap);
    p->tok = calloc(p->tokcap, sizeof *p->tok);
    if (!p->buf || !p->tok) {
        cg_imapp_free(p);
        return NULL;
    }
    return p;
}

void cg_imapp_free(cg_imapp *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p->tok);
    free(p);
}

void cg_imapp_reset(cg_imapp *p)
{
    p->st = ST_START;
    p->used = 0;
    p->ntok = 0;
    p->depth = 0;
    p->sp = false;
    p->rawline = 0;
    p->tag[0] = '\0';
    p->pending_err = NULL;
}

size_t cg_imapp_ntok(const cg_imapp *p) { return p->ntok; }
const cg_imapp_tok *cg_imapp_tok_at(const cg_imapp *p, size_t i)
{
    return i < p->ntok ? &p->tok[i] : NULL;
}
const char *cg_imapp_data(const cg_imapp *p, const cg_imapp_tok *t)
{
    return (const char *)p->buf + t->off;
}
const char *cg_imapp_tag(const cg_imapp *p)
{
    return p->tag[0] ? p->tag : NULL;
}
bool cg_imapp_idle(const cg_imapp *p)
{
    return p->st == ST_START || p->st == ST_DONE;
}
bool cg_imapp_is_string(const cg_imapp_tok *t)
{
    return t->type == CG_IMAPP_ATOM || t->type == CG_IMAPP_QUOTED ||
           (t->type == CG_IMAPP_LITERAL && !t->streamed);
}

/* RFC 3501 ATOM-CHAR, relaxed as servers are: "%" and "*" (LIST
 * patterns), "\" (flags), "[" "]" "<" ">" (FETCH sections) are allowed;
 * "(" ")" "{" DQUOTE SP and controls end or break an atom. */
static bool atom_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
           c != '"';
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool tag_ok(const char *s, size_t len)
{
    if (len == 0 || len >= 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (!atom_char(c) || c == '%' || c == '*' || c == '\\' || c == '+')
            return false;
    }
    return true;
}

static int fail(cg_imapp *p, cg_imapp_event *ev, const char *msg, int next)
{
    ev->type = CG_IMAPP_EV_ERROR;
    ev->error = msg;
    ev->fatal = false;
    p->st = next;
    return 1;
}

static int fatal(cg_imapp *p, cg_imapp_event *ev, const char *msg)
{
    ev->type = CG_IMAPP_EV_ERROR;
    ev->error = msg;
    ev->fatal = true;
    p->st = ST_SKIP;
    return 1;
}

/* Room for need more bytes of token data, growing the buffer up to its
 * limit; false past the limit (or without memory). */
static bool room(cg_imapp *p, size_t need)
{
    return cg_buf_grow((void **)&p->buf, &p->cap, p->used + need, p->cap, p->maxcap);
}

/* Starts a token; false when a limit is hit. */
static bool tok_begin(cg_imapp *p, int type)
{
    if (p->ntok >= p->lim.max_tokens || !room(p, 2))
        return false;
    if (p->ntok == p->tokcap) {
        size_t bytes = p->tokcap * sizeof *p->tok;
        if (!cg_buf_grow((void **)&p->tok, &bytes, (p->ntok + 1) * sizeof *p->tok, bytes,
                         p->lim.max_tokens * sizeof *p->tok))
            return false;
        p->tokcap = bytes / sizeof *p->tok;
    }
    cg_imapp_tok *t = &p->tok[p->ntok++];
    memset(t, 0, sizeof *t);
    t->type = (uint8_t)type;
    t->depth = (uint8_t)p->depth;
    t->sp_before = p->sp;
    t->off = (uint32_t)p->used;
    p->sp = false;
    return true;
}

static bool tok_put(cg_imapp *p, uint8_t c)
{
    if (!room(p, 2))
        return false;
    p->buf[p->used++] = c;
    p->tok[p->ntok - 1].len++;
    return true;
}

static void tok_end(cg_imapp *p)
{
    p->buf[p->used++] = '\0'; /* room reserved by tok_put's +2 */
}

/* The tag once the first token is complete. */
static bool take_tag(cg_imapp *p)
{
    if (p->ntok != 1 || p->tag[0])
        return true;
    const cg_imapp_tok *t = &p->tok[0];
    const char *s = (const char *)p->buf + t->off;
    if (p->lim.server) {
        if (t->type == CG_IMAPP_ATOM && t->len < sizeof p->tag) {
            memcpy(p->tag, s, t->len + 1);
            return true;
        }
        return false;
    }
    if (t->type != CG_IMAPP_ATOM || !tag_ok(s, t->len))
        return false;
    memcpy(p->tag, s, t->len + 1);
    return true;
}

/* Does the literal now starting stream (an APPEND message, RFC 3501
 * 6.3.11 / RFC 3502)? Tokens: tag APPEND mailbox [flags] [date] literal. */
static bool literal_streams(const cg_imapp *p)
{
    if (p->lim.server || p->depth != 0 || p->ntok < 3)
        return false;
    const cg_imapp_tok *c = &p->tok[1];
    return c->type == CG_IMAPP_ATOM && c->len == 6 &&
           strncasecmp((const char *)p->buf + c->off, "APPEND", 6) == 0;
}

/* End of the line at depth 0 completes the command. */
static int line_end(cg_imapp *p, cg_imapp_event *ev)
{
    if (p->depth != 0)
        return fail(p, ev, "unclosed list", ST_START);
    if (!p->lim.server && p->ntok < 2)
        return fail(p, ev, p->ntok == 0 ? "missing tag" : "missing command",
                    ST_START);
    if (!take_tag(p))
        return fail(p, ev, "invalid tag", ST_START);
    ev->type = CG_IMAPP_EV_COMMAND;
    p->st = ST_DONE;
    return 1;
}

/* After the literal header's LF: keep, stream or refuse. */
static int literal_begin(cg_imapp *p, cg_imapp_event *ev)
{
    bool sync = !p->lim.server && !p->lit_plus;
    uint64_t n = p->lit_n;
    uint64_t nonsync_max = p->lim.max_nonsync ? p->lim.max_nonsync
                                              : p->lim.max_literal;
    p->rawline = 0;
    if (!take_tag(p))
        return fail(p, ev, "invalid tag", sync ? ST_START : ST_SKIP);
    if (literal_streams(p)) {
        if (n > p->lim.max_literal || (!sync && n > nonsync_max)) {
            if (sync)
                return fail(p, ev, "literal too large", ST_START);
            return fatal(p, ev, "non-synchronising literal too large");
        }
        if (!tok_begin(p, CG_IMAPP_LITERAL))
            return sync ? fail(p, ev, "command too long", ST_START)
                        : fatal(p, ev, "command too long");
        cg_imapp_tok *t = &p->tok[p->ntok - 1];
        t->streamed = true;
        t->literal8 = p->lit8;
        t->lit_size = n;
        tok_end(p);
        p->lit_left = n;
        p->st = ST_LIT_STREAM;
        ev->type = CG_IMAPP_EV_STREAM_START;
        ev->lit_size = n;
        ev->lit_sync = sync;
        ev->lit8 = p->lit8;
        return 1;
    }
    if (p->lit8)
        return sync ? fail(p, ev, "literal8 outside APPEND", ST_START)
                    : fatal(p, ev, "literal8 outside APPEND");
    if (n + 2 > p->maxcap - p->used || !room(p, (size_t)n + 2) ||
        !tok_begin(p, CG_IMAPP_LITERAL)) {
        if (sync)
            return fail(p, ev, "literal too large", ST_START);
        if (n > nonsync_max || n > p->lim.max_literal)
            return fatal(p, ev, "non-synchronising literal too large");
        /* The client sends it anyway: skip it, then the line. */
        p->lit_left = n;
        p->pending_err = "literal too large";
        p->st = ST_LIT_DISCARD;
        return 0;
    }
    p->tok[p->ntok - 1].literal8 = false;
    p->lit_left = n;
    p->st = ST_LIT_KEEP;
    if (n == 0) {
        tok_end(p);
        p->st = ST_BETWEEN;
    }
    if (sync) {
        ev->type = CG_IMAPP_EV_LITERAL;
        ev->lit_size = n;
        ev->lit_sync = true;
        return 1;
    }
    if (!p->lim.server && n > nonsync_max)
        return fatal(p, ev, "non-synchronising literal too large");
    return 0;
}

size_t cg_imapp_feed(cg_imapp *p, const uint8_t *buf, size_t len,
                     cg_imapp_event *ev)
{
    size_t i = 0;
    memset(ev, 0, sizeof *ev);
    if (p->st == ST_DONE)
        cg_imapp_reset(p);
    while (i < len) {
        /* Literal bodies move in bulk. */
        if (p->st == ST_LIT_STREAM) {
            if (p->lit_left == 0) {
                p->st = ST_BETWEEN;
                ev->type = CG_IMAPP_EV_STREAM_END;
                return i;
            }
            size_t n = len - i;
            if (n > p->lit_left)
                n = (size_t)p->lit_left;
            p->lit_left -= n;
            ev->type = CG_IMAPP_EV_STREAM_DATA;
            ev->data = buf + i;
            ev->len = n;
            return i + n;
        }
        if (p->st == ST_LIT_KEEP || p->st == ST_LIT_DISCARD) {
            size_t n = len - i;
            if (n > p->lit_left)
                n = (size_t)p->lit_left;
            if (p->st == ST_LIT_KEEP) {
                memcpy(p->buf + p->used, buf + i, n);
                p->used += n;
                p->tok[p->ntok - 1].len += (uint32_t)n;
            }
            p->lit_left -= n;
            i += n;
            if (p->lit_left == 0) {
                if (p->st == ST_LIT_KEEP) {
                    tok_end(p);
                    p->st = ST_BETWEEN;
                } else {
                    p->st = ST_SKIP;
                }
            }
            continue;
        }
        uint8_t c = buf[i++];
        if (++p->rawline > p->lim.max_line && p->st != ST_SKIP &&
            p->st != ST_START) {
            fail(p, ev, "line too long", ST_SKIP);
            return i;
        }
        switch (p->st) {
        case ST_START:
            if (c == '\r' || c == '\n')
                continue; /* empty lines between commands are ignored */
            cg_imapp_reset(p);
            p->rawline = 1;
            p->st = ST_BETWEEN;
            /* fall through */
        case ST_BETWEEN:
            if (c == ' ') {
                if (p->sp || p->ntok == 0)
                    { if (fail(p, ev, "unexpected space", ST_SKIP)) return i; }
                p->sp = true;
                continue;
            }
            if (p->ntok > 0 && !p->sp) {
                /* Tokens are separated by a space, except after "(" and
                 * before ")" and around FETCH section lists
                 * ("BODY[HEADER.FIELDS (A)]"): allow ")" after anything,
                 * anything after "(", and an atom glued to ")". */
                const cg_imapp_tok *last = &p->tok[p->ntok - 1];
                bool ok = c == ')' || c == '\r' || c == '\n' ||
                          last->type == CG_IMAPP_LIST_OPEN ||
                          (last->type == CG_IMAPP_LIST_CLOSE && atom_char(c)) ||
                          (c == '(' && last->type == CG_IMAPP_ATOM);
                if (!ok) {
                    fail(p, ev, "missing space", ST_SKIP);
                    return i;
                }
            }
            if (p->ntok == 1 && !take_tag(p)) {
                fail(p, ev, "invalid tag", ST_SKIP);
                return i;
            }
            if (c == '\r') { p->st = ST_LF; continue; }
            if (c == '\n') { line_end(p, ev); return i; }
            if (c == '(') {
                if (p->ntok < 2 && !p->lim.server) {
                    fail(p, ev, "missing command", ST_SKIP);
                    return i;
                }
                if (p->depth >= p->lim.max_depth) {
                    fail(p, ev, "lists nested too deeply", ST_SKIP);
                    return i;
                }
                if (!tok_begin(p, CG_IMAPP_LIST_OPEN)) {
                    fail(p, ev, "command too long", ST_SKIP);
                    return i;
                }
                tok_end(p);
                p->depth++;
                continue;
            }
            if (c == ')') {
                if (p->depth == 0) {
                    fail(p, ev, "unexpected ')'", ST_SKIP);
                    return i;
                }
                p->depth--;
                if (!tok_begin(p, CG_IMAPP_LIST_CLOSE)) {
                    fail(p, ev, "command too long", ST_SKIP);
                    return i;
                }
                tok_end(p);
                continue;
            }
            if (c == '"') {
                if (!tok_begin(p, CG_IMAPP_QUOTED)) {
                    fail(p, ev, "command too long", ST_SKIP);
                    return i;
                }
                p->st = ST_QUOTED;
                continue;
            }
            /* "~" begins a literal8 only when "{" follows (RFC 3516);
             * otherwise it is an atom character ("LIST "" ~foo"), decided
             * in ST_LIT_TILDE once the next byte is seen */
            if (c == '{' || (c == '~' && (p->ntok >= 2 || p->lim.server))) {
                if (p->ntok < 2 && !p->lim.server) {
                    fail(p, ev, "literal before the command name", ST_SKIP);
                    return i;
                }
                p->lit8 = c == '~';
                p->lit_n = 0;
                p->lit_plus = false;
                p->lit_digits = false;
                p->st = c == '~' ? ST_LIT_TILDE : ST_LIT_NUM;
                continue;
            }
            if (!atom_char(c)) {
                fail(p, ev, c >= 0x80 ? "8-bit character outside a string"
                                      : "invalid character", ST_SKIP);
                return i;
            }
            if (!tok_begin(p, CG_IMAPP_ATOM) || !tok_put(p, c)) {
                fail(p, ev, "command too long", ST_SKIP);
                return i;
            }
            p->st = ST_ATOM;
            continue;
        case ST_ATOM:
            if (atom_char(c)) {
                if (!tok_put(p, c)) {
                    fail(p, ev, "command too long", ST_SKIP);
                    return i;
                }
                continue;
            }
            tok_end(p);
            if (c == '{' || c == '"' || (c < 0x20 && c != '\r' && c != '\n') ||
                c >= 0x7f) {
                fail(p, ev, "invalid character in atom", ST_SKIP);
                return i;
            }
            p->st = ST_BETWEEN;
            i--; /* the delimiter is handled between tokens */
            p->rawline--;
            continue;
        case ST_QUOTED:
            if (c == '"') {
                tok_end(p);
                p->st = ST_BETWEEN;
                continue;
            }
            if (c == '\\') { p->st = ST_QUOTED_ESC; continue; }
            if (c == '\r' || c == '\n' || c == 0) {
                /* RFC 3501: a quoted string has no CR, LF or NUL. */
                if (c == '\n') {
                    fail(p, ev, "unterminated quoted string", ST_START);
                    return i;
                }
                fail(p, ev, "invalid character in quoted string", ST_SKIP);
                return i;
            }
            if (!tok_put(p, c)) {
                fail(p, ev, "command too long", ST_SKIP);
                return i;
            }
            continue;
        case ST_QUOTED_ESC:
            if (c != '"' && c != '\\') {
                fail(p, ev, "invalid escape in quoted string", ST_SKIP);
                return i;
            }
            if (!tok_put(p, c)) {
                fail(p, ev, "command too long", ST_SKIP);
                return i;
            }
            p->st = ST_QUOTED;
            continue;
        case ST_LIT_TILDE:
            if (c != '{') {
                /* not a literal8: an atom that starts with "~" */
                if (!tok_begin(p, CG_IMAPP_ATOM) || !tok_put(p, '~')) {
                    fail(p, ev, "command too long", ST_SKIP);
                    return i;
                }
                p->st = ST_ATOM;
                i--; /* c continues (or ends) the atom */
                p->rawline--;
                continue;
            }
            p->st = ST_LIT_NUM;
            continue;
        case ST_LIT_NUM:
            if (c >= '0' && c <= '9') {
                if (p->lit_n > (UINT64_MAX - 9) / 10) {
                    fail(p, ev, "literal size overflows", ST_SKIP);
                    return i;
                }
                p->lit_n = p->lit_n * 10 + (uint64_t)(c - '0');
                p->lit_digits = true;
                continue;
            }
            if (!p->lit_digits) {
                fail(p, ev, "invalid literal", ST_SKIP);
                return i;
            }
            if (c == '+') { p->lit_plus = true; p->st = ST_LIT_CLOSE; continue; }
            if (c == '}') { p->st = ST_LIT_CR; continue; }
            fail(p, ev, "invalid literal", ST_SKIP);
            return i;
        case ST_LIT_CLOSE:
            if (c != '}') {
                fail(p, ev, "invalid literal", ST_SKIP);
                return i;
            }
            p->st = ST_LIT_CR;
            continue;
        case ST_LIT_CR:
            if (c == '\r') { p->st = ST_LIT_LF; continue; }
            /* a bare LF ends the header too */
            /* fall through */
        case ST_LIT_LF:
            if (c != '\n') {
                fail(p, ev, "literal must end the line", ST_SKIP);
                return i;
            }
            if (literal_begin(p, ev))
                return i;
            continue;
        case ST_LF:
            if (c != '\n') {
                fail(p, ev, "CR without LF", ST_SKIP);
                return i;
            }
            line_end(p, ev);
            return i;
        case ST_SKIP:
            if (c == '\n') {
                p->st = ST_START;
                if (p->pending_err) {
                    ev->type = CG_IMAPP_EV_ERROR;
                    ev->error = p->pending_err;
                    p->pending_err = NULL;
                    return i;
                }
                /* an error already reported: the next command starts */
            }
            continue;
        default:
            break;
        }
    }
    if (p->st == ST_LIT_STREAM && p->lit_left == 0) {
        p->st = ST_BETWEEN;
        ev->type = CG_IMAPP_EV_STREAM_END;
    }
    return i;
}
