/* cg_log.c — line-atomic logging to stderr. */
#include "common/cg_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = CG_LOG_INFO;

void cg_log_set_level(enum cg_log_level lvl) { log_level = (int)lvl; }

/* Copies msg into out with every control byte (C0 and DEL) written as
 * \xHH, so text a client chose (a login name, a mailbox, a header) can
 * never end the line or start a forged one, whichever caller logs it.
 * Stops before an escape that would not fit; returns the bytes written. */
static size_t escape_controls(const char *msg, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            if (o + 4 > cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 0xf];
        } else {
            if (o + 1 > cap)
                break;
            out[o++] = (char)*p;
        }
    }
    return o;
}

void cg_log(enum cg_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    if ((int)lvl > log_level)
        return;
    char msg[2048];
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec, names[lvl]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    /* one byte kept for the newline */
    size_t len = (size_t)n + escape_controls(msg, line + n, sizeof line - (size_t)n - 1);
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}
