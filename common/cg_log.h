/* common/cg_log.h — the one logging call. One line per event on stderr, written
 * with a single write(2) so lines from several threads never interleave:
 *   text: "2026-12-02T10:00:00.123456Z LEVEL message"
 *   json: {"time":"2026-12-02T10:00:00.123456Z","level":"LEVEL",
 *          "conn":"7","client":"...","msg":"the rest"}
 * where the key=value fields that open a message become members. Under
 * systemd (stderr is the journal's stream) each line starts with its
 * sd-daemon(3) priority, "<3>" to "<7>", so journald files it by level. */
#ifndef CG_LOG_H
#define CG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

enum cg_log_level { CG_LOG_ERROR, CG_LOG_WARN, CG_LOG_INFO, CG_LOG_DEBUG };
enum cg_log_format { CG_LOG_TEXT, CG_LOG_JSON };

/* The longest line of each format, its newline included (a longer
 * message is cut, never an escape or a UTF-8 sequence in half). */
#define CG_LOG_TEXT_MAX 2048
#define CG_LOG_JSON_MAX 4096
/* The least room cg_log_line needs. */
#define CG_LOG_LINE_MIN 128

/* Events above lvl are not written (default info). */
void cg_log_set_level(enum cg_log_level lvl);
/* text (default) or json, for every line from now on. */
void cg_log_set_format(enum cg_log_format fmt);
/* Looks whether stderr is the journal's stream: $JOURNAL_STREAM holds
 * "DEVICE:INODE" of it, as systemd.exec(5) sets it, and they are stderr's
 * (not a terminal or file the output was redirected to). Priority
 * prefixes are on from now on exactly when it is; returns that. */
bool cg_log_detect_journal(void);

void cg_log(enum cg_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The line cg_log writes for message msg at time tv in format fmt, without
 * the journal prefix, into out (cap: its sizeof, at least CG_LOG_LINE_MIN);
 * returns its length, the newline included. In both formats every control
 * byte and backslash of msg is escaped, so a logged value can neither end
 * the line nor forge an escape. */
size_t cg_log_line(enum cg_log_format fmt, enum cg_log_level lvl, const struct timeval *tv,
                   const char *msg, char *out, size_t cap);

#define cg_error(...) cg_log(CG_LOG_ERROR, __VA_ARGS__)
#define cg_warn(...)  cg_log(CG_LOG_WARN, __VA_ARGS__)
#define cg_info(...)  cg_log(CG_LOG_INFO, __VA_ARGS__)
#define cg_debug(...) cg_log(CG_LOG_DEBUG, __VA_ARGS__)

#endif
