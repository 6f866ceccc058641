/* common/cg_log.c — line-atomic logging to stderr (cg_log.h): the level and
 * format in force, the text and JSON forms of a line with their escaping,
 * and the journal's priority prefix. Lines are made on the stack: logging
 * allocates nothing. */
#include "common/cg_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cg_buf.h"

static _Atomic int log_level = CG_LOG_INFO;
static _Atomic int log_format = CG_LOG_TEXT;
static _Atomic bool log_journal = false;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
/* sd-daemon(3): SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG */
static const char level_prio[] = { '3', '4', '6', '7' };

/* Members the JSON form has of its own, never taken from a message. */
static const char *const own_members[] = { "time", "level", "msg" };
#define FIELDS_MAX 8
#define FIELD_KEY_MAX 32

void cg_log_set_level(enum cg_log_level lvl) { log_level = (int)lvl; }

void cg_log_set_format(enum cg_log_format fmt) { log_format = (int)fmt; }

/* systemd.exec(5), $JOURNAL_STREAM: "the device and inode numbers of the
 * file descriptor, formatted in decimal and separated by a colon"; a
 * service whose stderr was redirected elsewhere inherits the variable, so
 * only the match says the journal reads what we write. */
bool cg_log_detect_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    struct stat st;
    bool on = false;
    if (e && e[0] >= '0' && e[0] <= '9' && fstat(2, &st) == 0) {
        char *end;
        unsigned long long dev = strtoull(e, &end, 10);
        if (*end == ':' && end[1] >= '0' && end[1] <= '9') {
            const char *i = end + 1;
            unsigned long long ino = strtoull(i, &end, 10);
            on = *end == '\0' && dev == (unsigned long long)st.st_dev &&
                 ino == (unsigned long long)st.st_ino;
        }
    }
    log_journal = on;
    return on;
}

/* The length of the well-formed UTF-8 sequence that starts s (n bytes
 * left), 0 when it is none (RFC 3629 section 4: no overlong form, no
 * surrogate, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* The first character of s (n > 0 bytes) as format fmt writes it, into esc
 * (8 bytes); returns the bytes of s it stands for, *elen its length.
 * text: a control byte (C0, DEL) or a backslash is \xHH, so text a client
 * chose (a login name, a mailbox, a header) can neither end the line nor
 * pass for an escape; other bytes as they are. json: RFC 8259 section 7,
 * control bytes and DEL as \u00HH, and a byte that is not UTF-8 as U+FFFD
 * (the line must stay valid JSON text). */
static size_t escape_one(enum cg_log_format fmt, const unsigned char *s, size_t n, char *esc,
                         size_t *elen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    bool ctl = c < 0x20 || c == 0x7f;
    if (fmt == CG_LOG_TEXT) {
        if (ctl || c == '\\') {
            memcpy(esc, (char[]){ '\\', 'x', hex[c >> 4], hex[c & 0xf] }, 4);
            *elen = 4;
        } else {
            esc[0] = (char)c;
            *elen = 1;
        }
        return 1;
    }
    if (ctl) {
        memcpy(esc, (char[]){ '\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf] }, 6);
        *elen = 6;
        return 1;
    }
    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char)c;
        *elen = 2;
        return 1;
    }
    size_t len = utf8_len(s, n);
    if (!len) {
        memcpy(esc, "\\ufffd", 6);
        *elen = 6;
        return 1;
    }
    memcpy(esc, s, len);
    *elen = len;
    return len;
}

/* Adds s[0..n) escaped to b, each character whole or not at all; returns
 * the bytes of s that were added. */
static size_t add_escaped(cg_buf *b, enum cg_log_format fmt, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char esc[8];
        size_t elen;
        size_t used = escape_one(fmt, (const unsigned char *)s + i, n - i, esc, &elen);
        cg_buf_add(b, esc, elen);
        if (b->failed)
            break;
        i += used;
    }
    return i;
}

static size_t escaped_len(const char *s, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        char esc[8];
        size_t elen;
        i += escape_one(CG_LOG_JSON, (const unsigned char *)s + i, n - i, esc, &elen);
        total += elen;
    }
    return total;
}

/* A "key=value" token at s, as the messages open with conn=, client=,
 * listener=: a lowercase key, '=', a value up to the next space. Only the
 * run of them that opens a message is taken (what follows may hold text a
 * client chose); a key the form has of its own or one seen before ends it,
 * and so does a value ending in ':' ("client=A: closed"), the colon being
 * the sentence's, not the value's (*last then). */
static bool field_at(const char *s, const char *const *seen, size_t nseen, size_t *klen,
                     size_t *vlen, bool *last)
{
    size_t k = 0;
    while ((s[k] >= 'a' && s[k] <= 'z') || (k && ((s[k] >= '0' && s[k] <= '9') || s[k] == '_')))
        k++;
    if (!k || k > FIELD_KEY_MAX || s[k] != '=')
        return false;
    size_t v = strcspn(s + k + 1, " ");
    *last = v && s[k + v] == ':';
    v -= *last;
    if (!v)
        return false;
    for (size_t i = 0; i < sizeof own_members / sizeof own_members[0]; i++)
        if (strlen(own_members[i]) == k && memcmp(own_members[i], s, k) == 0)
            return false;
    for (size_t i = 0; i < nseen; i++)
        if (strncmp(seen[i], s, k + 1) == 0)
            return false;
    *klen = k;
    *vlen = v;
    return true;
}

static size_t json_line(enum cg_log_level lvl, const char *stamp, const char *msg, char *out,
                        size_t cap)
{
    static const char msg_open[] = ",\"msg\":\"", tail[] = "\"}\n";
    cg_buf b;
    /* content up to cap - 3 bytes: the tail always fits after it */
    cg_buf_init_fixed(&b, out, cap - (sizeof tail - 1) + 1);
    cg_buf_fmt(&b, "{\"time\":\"%s\",\"level\":\"%s\"", stamp, level_names[lvl]);
    const char *seen[FIELDS_MAX];
    size_t nseen = 0, klen, vlen;
    bool last = false;
    while (!last && nseen < FIELDS_MAX && field_at(msg, seen, nseen, &klen, &vlen, &last)) {
        /* a member that would leave no room for "msg" goes there instead */
        size_t need = 6 + klen + escaped_len(msg + klen + 1, vlen) + sizeof msg_open - 1;
        if (b.len + need > b.cap - 1)
            break;
        cg_buf_str(&b, ",\"");
        cg_buf_add(&b, msg, klen);
        cg_buf_str(&b, "\":\"");
        add_escaped(&b, CG_LOG_JSON, msg + klen + 1, vlen);
        cg_buf_str(&b, "\"");
        seen[nseen++] = msg;
        msg += klen + 1 + vlen + last;
        msg += *msg == ' ';
    }
    cg_buf_str(&b, msg_open);
    if (b.failed)
        return 0;
    add_escaped(&b, CG_LOG_JSON, msg, strlen(msg));
    memcpy(out + b.len, tail, sizeof tail - 1);
    return b.len + sizeof tail - 1;
}

size_t cg_log_line(enum cg_log_format fmt, enum cg_log_level lvl, const struct timeval *tv,
                   const char *msg, char *out, size_t cap)
{
    if (cap < CG_LOG_LINE_MIN)
        return 0;
    struct tm tm;
    time_t sec = tv->tv_sec;
    gmtime_r(&sec, &tm);
    char stamp[64];
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv->tv_usec);
    if (fmt == CG_LOG_JSON)
        return json_line(lvl, stamp, msg, out, cap);
    cg_buf b;
    cg_buf_init_fixed(&b, out, cap); /* content up to cap - 1: the newline fits */
    cg_buf_fmt(&b, "%s %s ", stamp, level_names[lvl]);
    add_escaped(&b, CG_LOG_TEXT, msg, strlen(msg));
    out[b.len] = '\n';
    return b.len + 1;
}

void cg_log(enum cg_log_level lvl, const char *fmt, ...)
{
    if ((int)lvl > log_level)
        return;
    char msg[CG_LOG_TEXT_MAX];
    char line[4 + CG_LOG_JSON_MAX];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    size_t off = 0;
    if (log_journal) {
        memcpy(line, (char[]){ '<', level_prio[lvl], '>' }, 3);
        off = 3;
    }
    enum cg_log_format f = (enum cg_log_format)log_format;
    size_t len = cg_log_line(f, lvl, &tv, msg, line + off,
                             f == CG_LOG_JSON ? CG_LOG_JSON_MAX : CG_LOG_TEXT_MAX);
    ssize_t w = write(2, line, off + len);
    (void)w;
}
