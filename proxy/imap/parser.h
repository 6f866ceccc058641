/* proxy/imap/parser.h — the client side of IMAP (RFC 3501 section 9, RFC 7888
 * literals) as a pure parser object fed bytes: tags, atoms, quoted strings
 * with escapes, literals {n} {n+} ~{n}, nested lists. No sockets, one
 * allocation at creation, limits as fields. A command is reported as a
 * token list the gateway judges and re-serialises; APPEND message literals
 * stream through as data events instead of being kept. */
#ifndef CG_IMAP_PARSER_H
#define CG_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cg_imapp_tok_type {
    CG_IMAPP_ATOM = 1,     /* also NIL, numbers, sequence sets, \Flags */
    CG_IMAPP_QUOTED,       /* data unescaped */
    CG_IMAPP_LITERAL,      /* data as sent; empty when streamed */
    CG_IMAPP_LIST_OPEN,
    CG_IMAPP_LIST_CLOSE,
};

typedef struct cg_imapp_tok {
    uint8_t type;
    uint8_t depth;        /* lists around the token (0 = top level) */
    bool sp_before;       /* a space preceded it: kept for re-serialising */
    bool literal8;        /* ~{n} (RFC 3516) */
    bool streamed;        /* literal passed through as STREAM_DATA */
    uint32_t off, len;    /* data in cg_imapp_data(), NUL-terminated */
    uint64_t lit_size;    /* streamed literal: its size */
} cg_imapp_tok;

enum cg_imapp_ev {
    CG_IMAPP_EV_NONE = 0,     /* input consumed, no event: feed more */
    CG_IMAPP_EV_COMMAND,      /* a complete command: tokens 0..ntok */
    CG_IMAPP_EV_LITERAL,      /* synchronising {n} of a kept literal was
                               * announced: answer "+ ..." to get it, or
                               * refuse and cg_imapp_reset() */
    CG_IMAPP_EV_STREAM_START, /* a literal that streams (APPEND message):
                               * ev.lit_size / lit_sync / lit8; the tokens
                               * before it are available */
    CG_IMAPP_EV_STREAM_DATA,  /* ev.data/ev.len: literal bytes (in input) */
    CG_IMAPP_EV_STREAM_END,
    CG_IMAPP_EV_ERROR,        /* ev.error; ev.fatal: cannot resynchronise
                               * (close the connection); else the rest of
                               * the command is skipped */
};

typedef struct cg_imapp_event {
    int type;
    const uint8_t *data;
    size_t len;
    const char *error;
    bool fatal;
    uint64_t lit_size;
    bool lit_sync, lit8;
} cg_imapp_event;

typedef struct cg_imapp_limits {
    size_t max_line;       /* command text including kept literals */
    uint64_t max_literal;  /* a streamed literal */
    uint64_t max_nonsync;  /* LITERAL- (RFC 7888): 4096; 0 = max_literal */
    unsigned max_depth;    /* list nesting */
    unsigned max_tokens;
    bool server;           /* parse a server response: tag "*" or "+",
                            * literals neither wait nor stream */
} cg_imapp_limits;

typedef struct cg_imapp cg_imapp;

cg_imapp *cg_imapp_new(const cg_imapp_limits *lim);
void cg_imapp_free(cg_imapp *p);
/* Forget the current command (a refused synchronising literal: the client
 * will not send it) and wait for a new one. */
void cg_imapp_reset(cg_imapp *p);
/* Consumes bytes up to and including the next event; returns the number
 * consumed (all of len with EV_NONE). Tokens stay valid until the next
 * call. */
size_t cg_imapp_feed(cg_imapp *p, const uint8_t *buf, size_t len,
                     cg_imapp_event *ev);

/* The current command's tokens and their data. */
size_t cg_imapp_ntok(const cg_imapp *p);
const cg_imapp_tok *cg_imapp_tok_at(const cg_imapp *p, size_t i);
const char *cg_imapp_data(const cg_imapp *p, const cg_imapp_tok *t);
/* The tag of the current command once known (else NULL). */
const char *cg_imapp_tag(const cg_imapp *p);
/* True when the parser is at the start of a command (nothing pending). */
bool cg_imapp_idle(const cg_imapp *p);

/* Is t an atom, quoted string or kept literal ("astring")? */
bool cg_imapp_is_string(const cg_imapp_tok *t);

#endif
