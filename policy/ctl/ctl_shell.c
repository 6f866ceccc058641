/* policy/ctl/ctl_shell.c — cpmgatectl at the shell, read from the command
 * table: a command's --help (its forms, then each option with its value,
 * which comes from the rows' usage text). */
#include <stdio.h>
#include <string.h>

#include "policy/ctl/ctl.h"

/* ---- the words of one usage form -------------------------------------------- */

typedef enum { W_END, W_POS, W_OPT, W_VALUE } word_kind;

/* Walks one form ("NAME cert --file CERT.pem | --fingerprint HEX"):
 * brackets are dropped, an option of the row that takes a value is
 * followed by its value, and a '|' between positionals makes the next
 * one another choice for the same position. */
typedef struct form_scan {
    const ctl_cmd *row;
    const char *p, *end;
    int pos;          /* index of the last positional, -1 before any */
    bool alt;         /* a '|' came since the last word */
    bool value_next;  /* the last word was an option that takes a value */
} form_scan;

static bool takes_value(const ctl_cmd *row, const char *w, size_t n)
{
    for (size_t i = 0; row->opts && row->opts[i]; i++)
        if (strlen(row->opts[i]) == n && strncmp(row->opts[i], w, n) == 0)
            return true;
    return false;
}

static word_kind scan_next(form_scan *sc, const char **w, size_t *n)
{
    for (;;) {
        while (sc->p < sc->end && *sc->p == ' ')
            sc->p++;
        if (sc->p >= sc->end)
            return W_END;
        const char *s = sc->p;
        while (sc->p < sc->end && *sc->p != ' ')
            sc->p++;
        size_t len = (size_t)(sc->p - s);
        while (len && *s == '[') {
            s++;
            len--;
        }
        while (len && s[len - 1] == ']')
            len--;
        if (!len)
            continue;
        if (len == 1 && *s == '|') {
            sc->alt = true;
            continue;
        }
        *w = s;
        *n = len;
        if (sc->value_next) {
            sc->value_next = false;
            return W_VALUE;
        }
        sc->value_next = len > 2 && strncmp(s, "--", 2) == 0 && takes_value(sc->row, s, len);
        if (len > 2 && strncmp(s, "--", 2) == 0) {
            sc->alt = false;
            return W_OPT;
        }
        if (!sc->alt || sc->pos < 0)
            sc->pos++;
        sc->alt = false;
        return W_POS;
    }
}

/* The row's forms one by one: *form and *len, false after the last. */
static bool next_form(const ctl_cmd *row, const char **form, size_t *len)
{
    const char *u = *form ? *form + *len + ((*form)[*len] == '\n') : row->usage;
    if (*form && !(*form)[*len])
        return false;
    *form = u;
    *len = strcspn(u, "\n");
    return true;
}

static form_scan scan_of(const ctl_cmd *row, const char *form, size_t len)
{
    return (form_scan){ .row = row, .p = form, .end = form + len, .pos = -1 };
}

/* The value option opt shows in the row's forms ("CERT.pem"); NULL if none. */
static const char *value_of(const ctl_cmd *row, const char *opt, size_t *vn)
{
    size_t on = strlen(opt);
    const char *form = NULL, *w;
    size_t len = 0, n;
    while (next_form(row, &form, &len)) {
        form_scan sc = scan_of(row, form, len);
        bool after = false;
        for (word_kind k; (k = scan_next(&sc, &w, &n)) != W_END;) {
            if (k == W_VALUE && after) {
                *vn = n;
                return w;
            }
            after = k == W_OPT && n == on && strncmp(w, opt, n) == 0;
        }
    }
    return NULL;
}

/* Whether a form names the option (--json is in the text, not the row). */
static bool form_names(const char *form, size_t len, const char *opt)
{
    size_t on = strlen(opt);
    for (const char *p = form; p + on <= form + len; p++)
        if (strncmp(p, opt, on) == 0 && (p + on == form + len || strchr(" ]", p[on])))
            return true;
    return false;
}

/* ---- --help ------------------------------------------------------------------ */

void ctl_help(const ctl_cmd *row)
{
    ctl_print_forms(stdout, row, 1, row->family);
    puts("options:");
    for (size_t i = 0; row->opts && row->opts[i]; i++) {
        size_t vn = 5;
        const char *v = value_of(row, row->opts[i], &vn);
        printf("  %s %.*s\n", row->opts[i], (int)vn, v ? v : "VALUE");
    }
    for (size_t i = 0; row->flags && row->flags[i]; i++)
        printf("  %s\n", row->flags[i]);
    if (form_names(row->usage, strlen(row->usage), "--json"))
        puts("  --json");
    puts("  -h, --help");
}
