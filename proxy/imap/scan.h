/* proxy/imap/scan.h — the server side of IMAP as a pure scanner fed bytes: it
 * finds where each response ends, through literals of any size, without
 * holding them (FETCH bodies stream through), and classifies each
 * response from its first bytes so the gateway can hold and filter the
 * few it must (LIST, LSUB, STATUS, CAPABILITY, tagged OK [CAPABILITY]). */
#ifndef CG_IMAP_SCAN_H
#define CG_IMAP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cg_imaps_kind {
    CG_IMAPS_TAGGED = 1,
    CG_IMAPS_UNTAGGED,
    CG_IMAPS_CONT,        /* "+ ..." */
};

enum cg_imaps_ev {
    CG_IMAPS_EV_NONE = 0, /* input consumed */
    CG_IMAPS_EV_HEAD,     /* a response starts: cg_imaps_head(); data/len
                           * are its first bytes (to forward or hold) */
    CG_IMAPS_EV_DATA,     /* the next bytes of the response (literal: they
                           * are literal contents) */
    CG_IMAPS_EV_END,      /* the response ended with the last DATA/HEAD */
    CG_IMAPS_EV_ERROR,    /* unparseable (literal size overflow): close */
};

typedef struct cg_imaps_event {
    int type;
    const uint8_t *data;
    size_t len;
    bool literal;
    const char *error;
} cg_imaps_event;

typedef struct cg_imaps_head {
    int kind;
    char tag[64];     /* tagged: the tag */
    char word[32];    /* uppercased: tagged OK/NO/BAD; untagged: the
                       * response name (OK, CAPABILITY, LIST, FETCH, ...) */
    bool has_number;  /* "* 12 FETCH": number 12, word FETCH */
    uint32_t number;
    bool complete;    /* the head holds the whole response */
} cg_imaps_head;

typedef struct cg_imaps cg_imaps;

cg_imaps *cg_imaps_new(void);
void cg_imaps_free(cg_imaps *s);
size_t cg_imaps_feed(cg_imaps *s, const uint8_t *buf, size_t len,
                     cg_imaps_event *ev);
const cg_imaps_head *cg_imaps_head_of(const cg_imaps *s);
/* True between responses. */
bool cg_imaps_between(const cg_imaps *s);

#endif
