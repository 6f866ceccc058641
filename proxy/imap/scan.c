/* proxy/imap/scan.c — IMAP server response scanner (see proxy/imap/scan.h). A response
 * ends at a LF outside a quoted string; "{n}" CRLF outside a quoted string
 * announces n bytes to skip in bulk. After a status word (OK, NO, BAD,
 * BYE, PREAUTH) and in continuations the rest is resp-text, where "{5}"
 * is plain text: echoing a mailbox name such as "x{5}" in an error can
 * therefore never shift the response boundaries the filters rely on. */
#include "proxy/imap/scan.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_CAP 1024

enum lex {
    L_NORMAL,
    L_QUOTED,
    L_QESC,
    L_BRACE,     /* "{" digits */
    L_BRACE_END, /* "}" seen: CR or LF must follow */
    L_BRACE_LF,  /* "}" CR seen */
    L_TEXT,      /* resp-text: only LF matters */
    L_LITERAL,
};

struct cg_imaps {
    int lex;
    bool in_head;       /* collecting the first bytes of a response */
    bool started;       /* a response has begun */
    bool pending_end;
    uint8_t head[HEAD_CAP];
    size_t headlen;
    cg_imaps_head h;
    uint64_t lit_n, lit_left;
    bool lit_digits;
    /* words of the first line, for classification and text mode */
    unsigned nwords;
    char words[3][64];
    size_t wlen;
    bool inword;
};

cg_imaps *cg_imaps_new(void)
{
    cg_imaps *s = calloc(1, sizeof *s);
    if (s)
        s->in_head = true;
    return s;
}

void cg_imaps_free(cg_imaps *s) { free(s); }
const cg_imaps_head *cg_imaps_head_of(const cg_imaps *s) { return &s->h; }
bool cg_imaps_between(const cg_imaps *s)
{
    return !s->started && !s->pending_end;
}

static void next_response(cg_imaps *s)
{
    s->lex = L_NORMAL;
    s->in_head = true;
    s->started = false;
    s->headlen = 0;
    s->nwords = 0;
    s->wlen = 0;
    s->inword = false;
}

static bool is_status(const char *w)
{
    return !strcmp(w, "OK") || !strcmp(w, "NO") || !strcmp(w, "BAD") ||
           !strcmp(w, "BYE") || !strcmp(w, "PREAUTH");
}

/* A word of the first line ended: after the status word the rest of the
 * line is resp-text. */
static void word_done(cg_imaps *s)
{
    if (s->nwords < 3)
        s->words[s->nwords][s->wlen] = '\0';
    s->nwords++;
    s->inword = false;
    s->wlen = 0;
    if (s->nwords == 1 && !strcmp(s->words[0], "+"))
        s->lex = L_TEXT;
    if (s->nwords == 2 && is_status(s->words[1]))
        s->lex = L_TEXT;
}

static void track_word(cg_imaps *s, uint8_t c)
{
    if (s->nwords >= 3)
        return;
    if (c == ' ' || c == '\r' || c == '\n' || c == '(' || c == '[') {
        if (s->inword)
            word_done(s);
        return;
    }
    s->inword = true;
    if (s->wlen < 63)
        s->words[s->nwords][s->wlen++] = (char)toupper(c);
}

static void classify(cg_imaps *s)
{
    cg_imaps_head *h = &s->h;
    if (s->inword && s->nwords < 3)
        s->words[s->nwords][s->wlen] = '\0';
    unsigned n = s->nwords + (s->inword ? 1 : 0);
    memset(h, 0, sizeof *h);
    const char *w0 = n > 0 ? s->words[0] : "";
    const char *w1 = n > 1 ? s->words[1] : "";
    const char *w2 = n > 2 ? s->words[2] : "";
    if (!strcmp(w0, "+")) {
        h->kind = CG_IMAPS_CONT;
    } else if (!strcmp(w0, "*")) {
        h->kind = CG_IMAPS_UNTAGGED;
        if (w1[0] && strspn(w1, "0123456789") == strlen(w1) &&
            strlen(w1) <= 9) {
            h->has_number = true;
            h->number = (uint32_t)strtoul(w1, NULL, 10);
            snprintf(h->word, sizeof h->word, "%.31s", w2);
        } else {
            snprintf(h->word, sizeof h->word, "%.31s", w1);
        }
    } else {
        h->kind = CG_IMAPS_TAGGED;
        /* The tag as the server sent it (words[] are uppercased). */
        size_t tl = 0;
        while (tl < s->headlen && tl < sizeof h->tag - 1 && s->head[tl] != ' ')
            tl++;
        memcpy(h->tag, s->head, tl);
        h->tag[tl] = '\0';
        snprintf(h->word, sizeof h->word, "%.31s", w1);
    }
}

/* What one byte did to the lexer. */
typedef enum lex_step {
    LEX_MORE,      /* nothing to report */
    LEX_END,       /* the response's last line ended */
    LEX_LITERAL,   /* a literal header {n} completed: n bytes follow */
    LEX_OVERFLOW,  /* the literal's size does not fit */
} lex_step;

static lex_step lex_byte(cg_imaps *s, uint8_t c)
{
    if (s->nwords < 3 && s->lex != L_QUOTED && s->lex != L_QESC)
        track_word(s, c);
    switch (s->lex) {
    case L_TEXT:
        return c == '\n' ? LEX_END : LEX_MORE;
    case L_QUOTED:
        if (c == '\\') s->lex = L_QESC;
        else if (c == '"') s->lex = L_NORMAL;
        else if (c == '\n') return LEX_END; /* malformed: the line still ends */
        return LEX_MORE;
    case L_QESC:
        s->lex = L_QUOTED;
        return c == '\n' ? LEX_END : LEX_MORE;
    case L_BRACE:
        if (c >= '0' && c <= '9') {
            if (s->lit_n > (UINT64_MAX / 4 - 9) / 10)
                return LEX_OVERFLOW;
            s->lit_n = s->lit_n * 10 + (uint64_t)(c - '0');
            s->lit_digits = true;
            return LEX_MORE;
        }
        if (c == '}' && s->lit_digits) { s->lex = L_BRACE_END; return LEX_MORE; }
        s->lex = L_NORMAL;
        break; /* not a literal after all: look at c normally */
    case L_BRACE_END:
        if (c == '\r') { s->lex = L_BRACE_LF; return LEX_MORE; }
        if (c == '\n') { s->lex = L_LITERAL; s->lit_left = s->lit_n; return LEX_LITERAL; }
        s->lex = L_NORMAL;
        break;
    case L_BRACE_LF:
        if (c == '\n') { s->lex = L_LITERAL; s->lit_left = s->lit_n; return LEX_LITERAL; }
        s->lex = L_NORMAL;
        break;
    default:
        break;
    }
    if (c == '"') { s->lex = L_QUOTED; return LEX_MORE; }
    if (c == '{') {
        s->lex = L_BRACE;
        s->lit_n = 0;
        s->lit_digits = false;
        return LEX_MORE;
    }
    return c == '\n' ? LEX_END : LEX_MORE;
}

/* From i, the first byte lex_byte would act on in the state s is in once
 * the response is classified (len: none): in text only LF, in a quoted
 * string a backslash, a quote or LF, elsewhere a quote, a brace or LF.
 * The words after the third (or in resp-text) classify nothing. */
static size_t skip_plain(const cg_imaps *s, const uint8_t *buf, size_t i, size_t len)
{
    if (s->lex == L_TEXT) {
        const uint8_t *lf = memchr(buf + i, '\n', len - i);
        return lf ? (size_t)(lf - buf) : len;
    }
    if (s->lex == L_NORMAL) {
        while (i < len && buf[i] != '"' && buf[i] != '{' && buf[i] != '\n')
            i++;
    } else if (s->lex == L_QUOTED) {
        while (i < len && buf[i] != '"' && buf[i] != '\\' && buf[i] != '\n')
            i++;
    }
    return i;
}

/* The head ends (full, or at step r): classified, reported. */
static size_t head_event(cg_imaps *s, cg_imaps_event *ev, lex_step r, size_t i)
{
    classify(s);
    s->h.complete = r == LEX_END;
    s->in_head = false;
    if (r == LEX_END)
        s->pending_end = true;
    if (r == LEX_LITERAL && s->lit_left == 0)
        s->lex = L_NORMAL;
    ev->type = CG_IMAPS_EV_HEAD;
    ev->data = s->head;
    ev->len = s->headlen;
    return i;
}

size_t cg_imaps_feed(cg_imaps *s, const uint8_t *buf, size_t len,
                     cg_imaps_event *ev)
{
    memset(ev, 0, sizeof *ev);
    if (s->pending_end) {
        s->pending_end = false;
        next_response(s);
        ev->type = CG_IMAPS_EV_END;
        return 0;
    }
    if (s->lex == L_LITERAL) {
        if (s->lit_left == 0) {
            s->lex = L_NORMAL;
        } else {
            size_t n = len;
            if (n > s->lit_left)
                n = (size_t)s->lit_left;
            if (n == 0)
                return 0;
            s->lit_left -= n;
            if (s->lit_left == 0)
                s->lex = L_NORMAL;
            ev->type = CG_IMAPS_EV_DATA;
            ev->data = buf;
            ev->len = n;
            ev->literal = true;
            return n;
        }
    }
    size_t i = 0;
    while (i < len) {
        if (s->nwords >= 3 || s->lex == L_TEXT) {
            /* the response is classified already: the bytes no state
             * looks at pass in bulk (FETCH envelopes, resp-text) */
            size_t j = skip_plain(s, buf, i, len);
            if (s->in_head) {
                if (j - i > HEAD_CAP - s->headlen)
                    j = i + (HEAD_CAP - s->headlen);
                memcpy(s->head + s->headlen, buf + i, j - i);
                s->headlen += j - i;
            }
            i = j;
            if (s->in_head && s->headlen == HEAD_CAP)
                return head_event(s, ev, LEX_MORE, i);
            if (i == len)
                break;
        }
        uint8_t c = buf[i++];
        s->started = true;
        lex_step r = lex_byte(s, c);
        if (r == LEX_OVERFLOW) {
            ev->type = CG_IMAPS_EV_ERROR;
            ev->error = "literal size overflows";
            return i;
        }
        if (s->in_head) {
            s->head[s->headlen++] = c;
            if (r == LEX_MORE && s->headlen < HEAD_CAP)
                continue;
            return head_event(s, ev, r, i);
        }
        if (r == LEX_MORE)
            continue;
        if (r == LEX_END)
            s->pending_end = true;
        if (r == LEX_LITERAL && s->lit_left == 0)
            s->lex = L_NORMAL;
        break;
    }
    if (i == 0 || s->in_head)
        return i; /* bytes taken into the head: no event yet */
    ev->type = CG_IMAPS_EV_DATA;
    ev->data = buf;
    ev->len = i;
    return i;
}
