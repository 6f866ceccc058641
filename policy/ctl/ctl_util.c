/* ctl_util.c — the shared pieces of ctl.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

int ctl_fail(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* one line, always */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "cpmgatectl: %s\n", line);
    return CTL_ERROR;
}

int ctl_usage(const char *synopsis)
{
    fprintf(stderr, "usage: cpmgatectl %s\n", synopsis);
    return CTL_USAGE;
}

int ctl_open_store(ctl_ctx *ctx, bool create)
{
    if (ctx->store)
        return CTL_OK;
    if (!ctx->db_path || !*ctx->db_path)
        return ctl_fail("no policy database: give -d FILE or set CPMGATE_DB");
    const char *err = NULL;
    int rc = cg_pstore_open(ctx->db_path, create ? CG_PSTORE_CREATE : 0,
                            &ctx->store, &err);
    if (rc < 0)
        return ctl_fail("%s: %s", ctx->db_path, err ? err : "cannot open");
    return CTL_OK;
}

static bool in_list(const char *s, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

const char *ctl_opt(int argc, char **argv, const char *name, bool *bad)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            if (i + 1 >= argc) {
                if (bad)
                    *bad = true;
                return NULL;
            }
            return argv[i + 1];
        }
    }
    return NULL;
}

bool ctl_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

const char *ctl_pos(int argc, char **argv, int n, const char *const *known_opts,
                    const char *const *flags)
{
    int k = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0 && argv[i][2]) {
            if (strcmp(argv[i], "--json") == 0 || in_list(argv[i], flags))
                continue;
            if (in_list(argv[i], known_opts)) {
                i++;
                continue;
            }
        }
        if (k++ == n)
            return argv[i];
    }
    return NULL;
}

bool ctl_opts_known(int argc, char **argv, const char *const *known_opts,
                    const char *const *flags)
{
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || !argv[i][2])
            continue;
        if (strcmp(argv[i], "--json") == 0 || in_list(argv[i], flags))
            continue;
        if (in_list(argv[i], known_opts)) {
            i++;
            continue;
        }
        fprintf(stderr, "cpmgatectl: unknown option '%s'\n", argv[i]);
        return false;
    }
    return true;
}

void ctl_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}
