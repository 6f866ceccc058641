/* proxy/core/config_reader.c — the lines of the configuration file on their
 * way to libinih (Debian's is built with fixed options: values cut at 200
 * bytes, indented lines joined to the previous key, no line numbers, empty
 * sections not reported). One physical line per call: lines are counted,
 * over-long and indented lines and bytes a configuration cannot hold are
 * refused with file:line, and section headers are taken here (inih sees
 * none). A value too long for inih's line is carried beside the text it
 * gets, never inside it, so nothing is cut silently and nothing in the file
 * can pose as a reference. */
#include "proxy/core/config_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_util.h"

#define MAX_LINE 4096

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) > 40)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* A section header seen by the reader (inih does not report empty ones). */
static void open_section(parser *p, const char *name)
{
    char buf[128];
    cg_strlcpy(buf, name, sizeof buf);
    char *sp = strchr(buf, ' ');
    const char *kind = buf, *inst = NULL;
    if (sp) {
        *sp = '\0';
        inst = cg_config_trim(sp + 1);
    }
    sect s = { .header_line = p->lineno };
    cg_config *cfg = p->cfg;
    if (strcmp(kind, "gateway") == 0 && !inst) {
        s.kind = S_GATEWAY;
        s.obj = cfg;
    } else if (strcmp(kind, "saml") == 0 && !inst) {
        s.kind = S_SAML;
        s.obj = &cfg->saml;
        cfg->saml.present = true;
    } else if (strcmp(kind, "route") == 0 && inst) {
        if (!valid_name(inst) || !strchr(inst, '.')) {
            cg_config_fail(p, p->lineno, "invalid route domain '%s'", inst);
            return;
        }
        s.kind = S_ROUTE;
        s.obj = cg_config_calloc(1, sizeof(cg_route_cfg));
        ((cg_route_cfg *)s.obj)->domain = cg_config_strdup(inst);
    } else if ((strcmp(kind, "listener") == 0 || strcmp(kind, "upstream") == 0) && inst) {
        if (!valid_name(inst)) {
            cg_config_fail(p, p->lineno, "invalid %s name '%s'", kind, inst);
            return;
        }
        bool listener = kind[0] == 'l';
        s.kind = listener ? S_LISTENER : S_UPSTREAM;
        /* objects are allocated in arrays after parsing; keep them apart
         * now so pointers stay valid */
        s.obj = listener ? cg_config_calloc(1, sizeof(cg_listener_cfg)) : cg_config_calloc(1, sizeof(cg_upstream_cfg));
        if (listener)
            ((cg_listener_cfg *)s.obj)->name = cg_config_strdup(inst);
        else
            ((cg_upstream_cfg *)s.obj)->name = cg_config_strdup(inst);
    } else {
        cg_config_fail(p, p->lineno, "unknown section [%s]", name);
        return;
    }
    for (size_t i = 0; i < p->nsects; i++) {
        sect *o = &p->sects[i];
        if (o->kind != s.kind)
            continue;
        const char *a = NULL, *b = NULL;
        if (s.kind == S_LISTENER) {
            a = ((cg_listener_cfg *)o->obj)->name;
            b = ((cg_listener_cfg *)s.obj)->name;
        } else if (s.kind == S_UPSTREAM) {
            a = ((cg_upstream_cfg *)o->obj)->name;
            b = ((cg_upstream_cfg *)s.obj)->name;
        } else if (s.kind == S_ROUTE) {
            a = ((cg_route_cfg *)o->obj)->domain;
            b = ((cg_route_cfg *)s.obj)->domain;
        }
        if (!a || strcmp(a, b) == 0) {
            cg_config_fail(p, p->lineno, "duplicate section [%s] (first at line %u)", name, o->header_line);
            if (s.kind == S_LISTENER || s.kind == S_UPSTREAM || s.kind == S_ROUTE) {
                free(*(char **)((char *)s.obj + (s.kind == S_LISTENER   ? offsetof(cg_listener_cfg, name)
                                                 : s.kind == S_UPSTREAM ? offsetof(cg_upstream_cfg, name)
                                                                        : offsetof(cg_route_cfg, domain))));
                free(s.obj);
            }
            return;
        }
    }
    sect *ns = realloc(p->sects, (p->nsects + 1) * sizeof *ns);
    if (!ns)
        abort();
    p->sects = ns;
    p->sects[p->nsects] = s;
    p->cur = &p->sects[p->nsects];
    p->nsects++;
}

/* Mirrors inih's value extraction for lines too long for it: cut an
 * inline ';' comment that follows whitespace, then trim. */
static char *long_value(char *v)
{
    for (char *q = v; *q; q++) {
        if (*q == ';' && q > v && (q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            break;
        }
    }
    return (char *)cg_config_trim(v);
}

enum line_read { LINE_OK, LINE_EOF, LINE_TOO_LONG };

/* Reads one physical line into line[0..cap) with its true length in *len,
 * without the newline (a NUL byte does not end it, as it would for fgets). */
static enum line_read read_line(FILE *f, char *line, size_t cap, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap)
            return LINE_TOO_LONG;
        line[n++] = (char)c;
    }
    if (c == EOF && n == 0)
        return LINE_EOF;
    line[n] = '\0';
    *len = n;
    return LINE_OK;
}

/* A configuration file is UTF-8 text: no NUL, no control byte other than
 * tab (a trailing CR of a CRLF line is removed before this check). */
static bool line_bytes_ok(parser *p, const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0') {
            cg_config_fail(p, p->lineno, "NUL byte in line");
            return false;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            cg_config_fail(p, p->lineno, "control byte 0x%02x in line", c);
            return false;
        }
    }
    if (!cg_utf8_valid(line, len)) {
        cg_config_fail(p, p->lineno, "invalid UTF-8 in line");
        return false;
    }
    return true;
}

/* ini_reader: one physical line per call. */
char *cg_config_reader(char *str, int num, void *stream)
{
    parser *p = stream;
    if (p->failed)
        return NULL;
    char line[MAX_LINE + 2];
    size_t len = 0;
    enum line_read got = read_line(p->f, line, sizeof line, &len);
    if (got == LINE_EOF)
        return NULL;
    p->lineno++;
    if (got == LINE_TOO_LONG) {
        cg_config_fail(p, p->lineno, "line longer than %d bytes", MAX_LINE);
        return NULL;
    }
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    if (!line_bytes_ok(p, line, len))
        return NULL;
    char *t = line;
    /* a UTF-8 byte order mark may open the file (inih would skip it too) */
    if (p->lineno == 1 && strncmp(t, "\xEF\xBB\xBF", 3) == 0)
        t += 3;
    char *start = t;
    while (*t == ' ' || *t == '\t')
        t++;
    bool blank = *t == '\0', comment = *t == ';' || *t == '#';
    /* inih would join an indented line to the previous key. */
    if (t != start && !blank && !comment) {
        cg_config_fail(p, p->lineno, "indented line (continuation lines are not allowed)");
        return NULL;
    }
    if (*t == '[') {
        char *end = strchr(t, ']');
        if (!end) {
            cg_config_fail(p, p->lineno, "section header without ']'");
            return NULL;
        }
        const char *rest = end + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest && *rest != ';' && *rest != '#') {
            cg_config_fail(p, p->lineno, "text after section header");
            return NULL;
        }
        *end = '\0';
        char name[128];
        if (!cg_strlcpy(name, t + 1, sizeof name)) {
            cg_config_fail(p, p->lineno, "section name too long");
            return NULL;
        }
        open_section(p, cg_config_trim(name));
        if (p->failed)
            return NULL;
    }
    if (*t == '[' || blank || comment) {
        /* the section is p->cur from here on: inih gets an empty line (its
         * handler's section argument is not used) */
        snprintf(str, (size_t)num, "\n");
        return str;
    }
    size_t tlen = len - (size_t)(t - line);
    if ((int)tlen + 2 <= num) {
        memcpy(str, t, tlen);
        str[tlen] = '\n';
        str[tlen + 1] = '\0';
        return str;
    }
    /* Too long for inih: it gets the key with an empty value, the handler
     * the whole value from p->long_value. */
    char *eq = strpbrk(t, "=:");
    if (!eq) {
        cg_config_fail(p, p->lineno, "expected 'key = value'");
        return NULL;
    }
    *eq = '\0';
    if (snprintf(str, (size_t)num, "%s=\n", cg_config_trim(t)) >= num) {
        cg_config_fail(p, p->lineno, "key name too long");
        return NULL;
    }
    free(p->long_value);
    p->long_value = cg_config_strdup(long_value(eq + 1));
    p->long_line = p->lineno;
    return str;
}
