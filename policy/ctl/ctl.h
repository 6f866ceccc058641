/* ctl.h — what every cpmgatectl command family shares: the context, the
 * one error path (one line on stderr, exit 1; usage errors exit 2), option
 * parsing, and JSON string output for --json. */
#ifndef CG_CTL_H
#define CG_CTL_H

#include <stdbool.h>
#include <stdio.h>

#include "../../store/policy_store.h"

enum { CTL_OK = 0, CTL_ERROR = 1, CTL_USAGE = 2, CTL_DENY = 3 };

typedef struct ctl_ctx {
    const char *db_path;    /* -d, else $CPMGATE_DB; NULL when neither */
    bool json;              /* --json anywhere on the line */
    cg_pstore *store;       /* opened by ctl_open_store */
} ctl_ctx;

/* A command family: argv[0] is the family name ("principal"). Returns
 * the process exit code. */
typedef int (*ctl_family_fn)(ctl_ctx *ctx, int argc, char **argv);

/* Families, each in its own file. */
int ctl_init(ctl_ctx *ctx, int argc, char **argv);          /* ctl_principal.c */
int ctl_principal(ctl_ctx *ctx, int argc, char **argv);     /* ctl_principal.c */
int ctl_cred(ctl_ctx *ctx, int argc, char **argv);          /* ctl_cred.c */
int ctl_group(ctl_ctx *ctx, int argc, char **argv);         /* ctl_group.c */
int ctl_acl(ctl_ctx *ctx, int argc, char **argv);           /* ctl_acl.c */
int ctl_check(ctl_ctx *ctx, int argc, char **argv);         /* ctl_acl.c */
int ctl_key(ctl_ctx *ctx, int argc, char **argv);           /* ctl_key.c */
int ctl_require_signed(ctl_ctx *ctx, int argc, char **argv); /* ctl_key.c */
int ctl_manifest(ctl_ctx *ctx, int argc, char **argv);      /* ctl_manifest.c */
int ctl_peer(ctl_ctx *ctx, int argc, char **argv);          /* ctl_key.c */
int ctl_audit(ctl_ctx *ctx, int argc, char **argv);         /* ctl_audit.c */

/* Opens ctx->store (read-write; create for init). Prints the error. */
int ctl_open_store(ctl_ctx *ctx, bool create);

/* One line on stderr, "cpmgatectl: ...". Returns CTL_ERROR. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage line on stderr. Returns CTL_USAGE. */
int ctl_usage(const char *synopsis);

/* "--name value" option lookup; removes nothing. Returns the value, NULL
 * when absent; *bad set when the option is present without a value. */
const char *ctl_opt(int argc, char **argv, const char *name, bool *bad);
bool ctl_flag(int argc, char **argv, const char *name);
/* The i-th positional argument after skipping options in known_opts
 * (names that take a value) and flags (names that take none). */
const char *ctl_pos(int argc, char **argv, int i, const char *const *known_opts,
                    const char *const *flags);
/* Every "--x" in argv must be in known_opts or flags, else usage error. */
bool ctl_opts_known(int argc, char **argv, const char *const *known_opts,
                    const char *const *flags);

/* JSON string with escapes (UTF-8 passed through). NULL prints null. */
void ctl_json_str(FILE *f, const char *s);

#endif
