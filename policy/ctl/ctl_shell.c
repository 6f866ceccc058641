/* policy/ctl/ctl_shell.c — cpmgatectl at the shell, read from the command
 * table: a command's --help (its forms, then each option with its value)
 * and the words bash completion offers (cpmgatectl __complete WORD...).
 * Option values and literal positionals ("cert", "user|server") come from
 * the rows' usage text, so completion follows the table as help does. */
#include <stdint.h>
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

/* ---- completion -------------------------------------------------------------- */

typedef struct offer {
    const char *cur;  /* the word under the cursor */
    bool files;       /* "::files" printed */
} offer;

/* The '|' choices of [p, end) one by one: *k is the length of the one at
 * *p; false after the last. */
static bool next_choice(const char **p, const char *end, size_t *k)
{
    if (*k != SIZE_MAX)
        *p += *k + 1;
    if (*p >= end)
        return false;
    const char *bar = memchr(*p, '|', (size_t)(end - *p));
    *k = (size_t)((bar ? bar : end) - *p);
    return true;
}

/* Each choice of w that starts with the word under the cursor. */
static void offer_words(offer *o, const char *w, size_t n)
{
    size_t cn = strlen(o->cur), k = SIZE_MAX;
    for (const char *p = w; next_choice(&p, w + n, &k);)
        if (k >= cn && strncmp(p, o->cur, cn) == 0)
            printf("%.*s\n", (int)k, p);
}

/* A literal word of the usage ("cert", "user|server", "jsonl"), not a
 * placeholder ("NAME", "CERT.pem", "email:A"). */
static bool is_literal(const char *w, size_t n)
{
    if (!n || w[0] < 'a' || w[0] > 'z')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= '0' && w[i] <= '9') || w[i] == '-' ||
              w[i] == '|'))
            return false;
    return true;
}

/* A placeholder that names a local file ("FILE", "PUB.pem", "DIR"). */
static bool is_file(const char *w, size_t n)
{
    static const char *const names[] = { "FILE", "F", "M", "DIR" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncmp(names[i], w, n) == 0)
            return true;
    return memchr(w, '.', n) != NULL;
}

/* What may stand where usage word w stands. */
static void offer_value(offer *o, const char *w, size_t n)
{
    if (is_literal(w, n)) {
        offer_words(o, w, n);
    } else if (is_file(w, n) && !o->files) {
        puts("::files");
        o->files = true;
    }
}

/* Whether the positionals given so far fit the form: a literal position
 * takes only its own words. */
static bool form_fits(const ctl_cmd *row, const char *form, size_t len, char **pos, int npos)
{
    form_scan sc = scan_of(row, form, len);
    const char *w;
    size_t n;
    for (word_kind k; (k = scan_next(&sc, &w, &n)) != W_END;) {
        if (k != W_POS || sc.pos >= npos || !is_literal(w, n))
            continue;
        bool any = false;
        size_t c = SIZE_MAX;
        for (const char *p = w; !any && next_choice(&p, w + n, &c);)
            any = strlen(pos[sc.pos]) == c && strncmp(p, pos[sc.pos], c) == 0;
        if (!any)
            return false;
    }
    return true;
}

static bool is_opt(const char *s) { return strncmp(s, "--", 2) == 0 && s[2]; }

static bool used(char **words, int n, const char *opt)
{
    for (int i = 0; i < n; i++)
        if (strcmp(words[i], opt) == 0)
            return true;
    return false;
}

/* Within row: words[0..n) are what follows the family (the subcommand
 * word at index sub, or -1), the cursor stands after them. */
static void complete_row(offer *o, const ctl_cmd *row, char **words, int n, int sub)
{
    char *pos[CTL_MAX_POS];
    int npos = 0;
    for (int i = 0; i < n; i++) {
        if (i == sub || strcmp(words[i], "--help") == 0 || strcmp(words[i], "-h") == 0)
            continue;
        if (is_opt(words[i]) && takes_value(row, words[i], strlen(words[i]))) {
            if (i + 1 == n) { /* the cursor is on its value */
                size_t vn;
                const char *v = value_of(row, words[i], &vn);
                if (v)
                    offer_value(o, v, vn);
                return;
            }
            i++;
        } else if (!is_opt(words[i]) && npos < CTL_MAX_POS) {
            pos[npos++] = words[i];
        }
    }
    const char *form = NULL;
    size_t len = 0;
    if (o->cur[0] == '-') {
        const char *const *lists[] = { row->opts, row->flags, (const char *const[]){ "--json", NULL } };
        for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++)
            for (size_t i = 0; lists[l] && lists[l][i]; i++) {
                const char *opt = lists[l][i];
                /* offered where a fitting form names it, or no form does */
                bool named = false, fits = false;
                for (form = NULL; next_form(row, &form, &len);)
                    if (form_names(form, len, opt)) {
                        named = true;
                        fits = fits || form_fits(row, form, len, pos, npos);
                    }
                if ((fits || (!named && l < 2)) && !used(words, n, opt))
                    offer_words(o, opt, strlen(opt));
            }
        offer_words(o, "--help", 6);
        return;
    }
    if (npos >= row->max_args)
        return;
    for (form = NULL; next_form(row, &form, &len);) {
        if (!form_fits(row, form, len, pos, npos))
            continue;
        form_scan sc = scan_of(row, form, len);
        const char *w;
        size_t wn;
        for (word_kind k; (k = scan_next(&sc, &w, &wn)) != W_END;)
            if (k == W_POS && sc.pos == npos)
                offer_value(o, w, wn);
    }
}

int ctl_complete(const ctl_cmd *rows, size_t nrows, int nwords, char **words)
{
    if (nwords < 1)
        return CTL_OK;
    offer o = { .cur = words[nwords - 1] };
    int n = nwords - 1, i = 0;
    while (i < n && words[i][0] == '-') { /* cpmgatectl's own options */
        if (strcmp(words[i], "-d") == 0 && i + 1 == n) {
            offer_value(&o, "FILE", 4);
            return CTL_OK;
        }
        i += strcmp(words[i], "-d") == 0 ? 2 : 1;
    }
    if (i >= n) {
        if (o.cur[0] == '-') {
            offer_words(&o, "-d|-h|--help", 12);
            return CTL_OK;
        }
        for (size_t r = 0; r < nrows; r++) {
            bool seen = false;
            for (size_t q = 0; q < r && !seen; q++)
                seen = strcmp(rows[q].family, rows[r].family) == 0;
            if (!seen)
                offer_words(&o, rows[r].family, strlen(rows[r].family));
        }
        return CTL_OK;
    }
    const char *family = words[i];
    char **rest = words + i + 1;
    int nrest = n - i - 1;
    bool known = false;
    for (size_t r = 0; r < nrows; r++) {
        if (strcmp(rows[r].family, family) != 0)
            continue;
        known = true;
        if (!rows[r].name) {
            complete_row(&o, &rows[r], rest, nrest, -1);
            return CTL_OK;
        }
    }
    if (!known)
        return CTL_OK;
    /* the subcommand: the first word that is not an option or its value */
    for (int j = 0; j < nrest; j++) {
        if (is_opt(rest[j]) && ctl_family_opt(rows, nrows, family, rest[j])) {
            j++;
            continue;
        }
        if (is_opt(rest[j]) || strcmp(rest[j], "-h") == 0)
            continue;
        for (size_t r = 0; r < nrows; r++)
            if (strcmp(rows[r].family, family) == 0 && ctl_name_matches(rows[r].name, rest[j]))
                complete_row(&o, &rows[r], rest, nrest, j);
        return CTL_OK;
    }
    /* no subcommand yet (an option's value under the cursor: none offered) */
    if (nrest && is_opt(rest[nrest - 1]) && ctl_family_opt(rows, nrows, family, rest[nrest - 1]))
        return CTL_OK;
    if (o.cur[0] == '-') {
        offer_words(&o, "--help", 6);
        return CTL_OK;
    }
    for (size_t r = 0; r < nrows; r++)
        if (strcmp(rows[r].family, family) == 0)
            offer_words(&o, rows[r].name, strlen(rows[r].name));
    return CTL_OK;
}
