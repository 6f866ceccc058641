/* cg_log.h — the one logging call. One line per event on stderr:
 * "2026-12-02T10:00:00.123456Z LEVEL message", written with a single
 * write(2) so lines from several threads never interleave. */
#ifndef CG_LOG_H
#define CG_LOG_H

enum cg_log_level { CG_LOG_ERROR, CG_LOG_WARN, CG_LOG_INFO, CG_LOG_DEBUG };

void cg_log_set_level(enum cg_log_level lvl);
void cg_log(enum cg_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define cg_error(...) cg_log(CG_LOG_ERROR, __VA_ARGS__)
#define cg_warn(...)  cg_log(CG_LOG_WARN, __VA_ARGS__)
#define cg_info(...)  cg_log(CG_LOG_INFO, __VA_ARGS__)
#define cg_debug(...) cg_log(CG_LOG_DEBUG, __VA_ARGS__)

#endif
