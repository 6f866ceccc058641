/* cg_error.h — the one table of error codes (libuv style: 0 or negative).
 * Negative values above -1000 are negated errno values (as libuv's are). */
#ifndef CG_ERROR_H
#define CG_ERROR_H

#define CG_ERRNO_MAP(X)                                                     \
    X(NOMEM,    -1001, "out of memory")                                     \
    X(INVAL,    -1002, "invalid argument")                                  \
    X(PARSE,    -1003, "parse error")                                       \
    X(NOTFOUND, -1004, "not found")                                         \
    X(EXISTS,   -1005, "already exists")                                    \
    X(DB,       -1006, "database error")                                    \
    X(IO,       -1007, "input/output error")                                \
    X(TLS,      -1008, "TLS error")                                         \
    X(LIMIT,    -1009, "limit exceeded")                                    \
    X(DENIED,   -1010, "permission denied")                                 \
    X(UNAVAIL,  -1011, "service unavailable")                               \
    X(TIMEOUT,  -1012, "timed out")                                         \
    X(PROTO,    -1013, "protocol error")                                    \
    X(AUTH,     -1014, "authentication failed")                             \
    X(AUDIT,    -1015, "audit log unavailable")                             \
    X(BUSY,     -1016, "busy")                                              \
    X(CRYPTO,   -1017, "cryptographic error")                               \
    X(AGAIN,    -1018, "try again")

enum {
#define CG_E_ENUM(name, code, msg) CG_E_##name = (code),
    CG_ERRNO_MAP(CG_E_ENUM)
#undef CG_E_ENUM
};

/* Name ("CG_E_PARSE", "ENOENT") and message of an error code. Never NULL. */
const char *cg_errname(int err);
const char *cg_strerror(int err);

/* An error sentence for a const char **error_r: formatted into storage of
 * the calling thread that lives until CG_SAY_RING more sentences are made
 * on it (callers copy or log it at once). An argument may itself be an
 * earlier sentence: the text is formatted aside first, then stored. */
#define CG_SAY_RING 8
#define CG_SAY_MAX 512
const char *cg_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
