/* ctl.h — what every cpmgatectl command shares: the command table's row,
 * the parsed arguments a handler gets, the one error path (one line on
 * stderr, exit 1; usage errors exit 2), the JSON writer for --json, and
 * what the shell reads from the table (--help, completion). */
#ifndef CG_CTL_H
#define CG_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "store/policy_store.h"

enum { CTL_OK = 0, CTL_ERROR = 1, CTL_USAGE = 2, CTL_DENY = 3 };

typedef struct ctl_ctx {
    const char *db_path;    /* -d, else $CPMGATE_DB; NULL when neither */
    bool json;              /* --json anywhere on the line */
    cg_pstore *store;       /* opened by ctl_open_store */
} ctl_ctx;

#define CTL_MAX_POS 6  /* positional arguments a row may take */
#define CTL_MAX_OPTS 10 /* options with a value a row may have; flags likewise */

struct ctl_cmd;

/* One command line, parsed against its row: positionals in order, each
 * option's value (NULL when absent), each flag. --json is in ctl_ctx. */
typedef struct ctl_args {
    const struct ctl_cmd *cmd;
    const struct ctl_cmd *rows;     /* the whole table, for the family's usage */
    size_t nrows;
    const char *sub;                /* the word that chose the row ("allow") */
    int npos;
    const char *pos[CTL_MAX_POS];   /* NULL past npos */
    const char *val[CTL_MAX_OPTS];  /* by index in cmd->opts */
    bool set[CTL_MAX_OPTS];         /* by index in cmd->flags */
    int argc;                       /* the words, for ctl_opt_all */
    char **argv;
    int skip;
} ctl_args;

typedef int (*ctl_cmd_fn)(ctl_ctx *ctx, const ctl_args *a);

/* A row of the command table (main.c). The dispatcher checks options and
 * the count of positionals before the handler runs; usage text is made
 * from the rows, so what is accepted and what is printed cannot drift. */
typedef struct ctl_cmd {
    const char *family;        /* "principal" */
    const char *name;          /* "add"; "allow|deny" for either; NULL: none */
    const char *usage;         /* after "family name"; '\n' between forms */
    ctl_cmd_fn fn;
    int min_args, max_args;    /* positionals after family and name */
    const char *const *opts;   /* options that take a value, NULL-ended */
    const char *const *flags;  /* options that take none (--json always may) */
} ctl_cmd;

/* Handlers, one file per family. */
int ctl_init(ctl_ctx *ctx, const ctl_args *a);                /* ctl_principal.c */
int ctl_principal_add(ctl_ctx *ctx, const ctl_args *a);
int ctl_principal_list(ctl_ctx *ctx, const ctl_args *a);
int ctl_principal_show(ctl_ctx *ctx, const ctl_args *a);
int ctl_principal_edit(ctl_ctx *ctx, const ctl_args *a);      /* enable, disable, remove */
int ctl_cred_add(ctl_ctx *ctx, const ctl_args *a);            /* ctl_cred.c */
int ctl_cred_list(ctl_ctx *ctx, const ctl_args *a);
int ctl_cred_remove(ctl_ctx *ctx, const ctl_args *a);
int ctl_group_list(ctl_ctx *ctx, const ctl_args *a);          /* ctl_group.c */
int ctl_group_edit(ctl_ctx *ctx, const ctl_args *a);          /* add, member-add/-remove */
int ctl_acl_add(ctl_ctx *ctx, const ctl_args *a);             /* ctl_acl.c */
int ctl_acl_list(ctl_ctx *ctx, const ctl_args *a);
int ctl_acl_remove(ctl_ctx *ctx, const ctl_args *a);
int ctl_check(ctl_ctx *ctx, const ctl_args *a);
int ctl_key_add(ctl_ctx *ctx, const ctl_args *a);             /* ctl_key.c */
int ctl_key_remove(ctl_ctx *ctx, const ctl_args *a);
int ctl_signed_edit(ctl_ctx *ctx, const ctl_args *a);         /* require-signed add, remove */
int ctl_peer_add(ctl_ctx *ctx, const ctl_args *a);
int ctl_keys_list(ctl_ctx *ctx, const ctl_args *a);           /* key, require-signed */
int ctl_peer_remove(ctl_ctx *ctx, const ctl_args *a);
int ctl_peer_list(ctl_ctx *ctx, const ctl_args *a);           /* ctl_peer.c */
int ctl_copy(ctl_ctx *ctx, const ctl_args *a);                /* ctl_copy.c */
int ctl_manifest_create(ctl_ctx *ctx, const ctl_args *a);     /* ctl_manifest.c */
int ctl_manifest_verify(ctl_ctx *ctx, const ctl_args *a);
int ctl_audit_keygen(ctl_ctx *ctx, const ctl_args *a);        /* ctl_audit.c */
int ctl_audit_verify(ctl_ctx *ctx, const ctl_args *a);
int ctl_audit_show(ctl_ctx *ctx, const ctl_args *a);          /* show and export */
int ctl_audit_rotate(ctl_ctx *ctx, const ctl_args *a);
/* export --follow (ctl_audit_follow.c): from_seq NULL starts after the
 * last record; runs until SIGINT or SIGTERM. */
int ctl_audit_follow(const char *db, const char *from_seq);
#define CTL_MAX_DBS 64 /* --audit-db given more than once: verify, export --merge */
/* The filters of show and export. */
typedef struct ctl_audit_filter {
    const char *txid, *principal, *since, *until, *decision; /* times normalised */
    uint64_t limit, from;                                    /* 0: none */
    bool origin;  /* --txid also matches a record's origin_txid (merge) */
} ctl_audit_filter;
/* One audit database read by show and export (ctl_audit.c): its records
 * in seq order that pass the filter, rows and blocks alike. */
struct sqlite3;
struct cg_arows;
struct cg_audit_parsed;
typedef struct ctl_audit_src {
    struct sqlite3 *db;
    struct cg_arows *it;
    const ctl_audit_filter *f;
    struct cg_audit_parsed *p; /* the current record, when parsed is set */
    bool want_fields;          /* parse every record (text, merge); else only
                                * when a filter needs its fields */
    bool parsed;
    uint64_t seq;              /* the current record's */
    const char *canon;         /* NULL: the record cannot be read */
    size_t canon_len;
    const uint8_t *hash;       /* NULL: not stored whole */
} ctl_audit_src;
/* Opens db read-only; prints the error. CTL_OK or CTL_ERROR. */
int ctl_audit_src_open(ctl_audit_src *s, const char *db, const ctl_audit_filter *f);
/* 1: the next record passing the filter, 0: none left, CTL_ERROR: read
 * error (printed). */
int ctl_audit_src_next(ctl_audit_src *s, const char *db);
void ctl_audit_src_close(ctl_audit_src *s);
/* export --merge (ctl_audit_merge.c): the records of srcs[i] (of dbs[i])
 * interleaved by time, node, seq; at most limit lines (0: all). */
int ctl_audit_merge(const char *const *dbs, ctl_audit_src *srcs, size_t n, uint64_t limit);
/* One exported line of s's current record: the canon with ,"hash":HEX
 * and, when db is not NULL, ,"audit_db":DB before its brace. */
void ctl_audit_jsonl(const ctl_audit_src *s, const char *db);
int ctl_backup(ctl_ctx *ctx, const ctl_args *a);              /* ctl_backup.c */
int ctl_restore(ctl_ctx *ctx, const ctl_args *a);

/* Splits argv (after the family word) against the table's rows of that
 * family and runs the handler; the usage of the family on a usage error. */
int ctl_dispatch(ctl_ctx *ctx, const ctl_cmd *rows, size_t nrows, int argc, char **argv);
/* The usage of a's family on stderr. Returns CTL_USAGE. */
int ctl_usage(const ctl_args *a);
/* Every form of family's rows, a line each, the first after "usage:". */
void ctl_print_forms(FILE *f, const ctl_cmd *rows, size_t nrows, const char *family);
/* "allow|deny" matches "allow" and "deny". */
bool ctl_name_matches(const char *names, const char *word);
/* Whether option name takes a value in any row of family. */
bool ctl_family_opt(const ctl_cmd *rows, size_t nrows, const char *family, const char *name);

/* ---- at the shell (ctl_shell.c) ----------------------------------------- */
/* A command's --help on stdout: its forms, then each option with its value. */
void ctl_help(const ctl_cmd *row);
/* cpmgatectl __complete WORD... : words holds what follows "cpmgatectl" on
 * the command line, the last being the word under the cursor (maybe "").
 * Prints the words that may stand there and start with it, a line each,
 * or the line "::files" where a file name goes. Returns CTL_OK. */
int ctl_complete(const ctl_cmd *rows, size_t nrows, int nwords, char **words);

/* The value of option `name` (one of a->cmd->opts), NULL when absent. */
const char *ctl_opt(const ctl_args *a, const char *name);
/* Every value of option `name`, in the order given (an option a command
 * takes more than once, e.g. --audit-db A --audit-db B), at most max;
 * returns how many there were (may exceed max). */
size_t ctl_opt_all(const ctl_args *a, const char *name, const char **out, size_t max);
/* Whether flag `name` (one of a->cmd->flags) was given. */
bool ctl_flag(const ctl_args *a, const char *name);

/* Opens ctx->store (read-write; create for init). Prints the error. */
int ctl_open_store(ctl_ctx *ctx, bool create);
/* Opens the policy database name (a file or a PostgreSQL URL; the
 * password from $CPMGATE_DB_PASSWORD_FILE or libpq's own places): CTL_OK,
 * or CTL_ERROR after one line that names it without a password. */
int ctl_store_open(const char *name, bool create, cg_pstore **out);

/* One line on stderr, "cpmgatectl: ...". Returns CTL_ERROR. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A whole small file, NUL-terminated, at most max bytes; NULL and a
 * reason ("cannot open", "cannot read", "too large") on failure. */
char *ctl_slurp(const char *path, size_t max, size_t *len, const char **why);

/* ---- JSON (json-c) --------------------------------------------------------
 * Compact, keys in the order added, '/' not escaped, UTF-8 passed through.
 * A NULL value is JSON null. An allocation that fails is remembered and
 * ctl_json_print then fails instead of printing a partial document. */
json_object *ctl_jstr(const char *s);   /* NULL for NULL */
json_object *ctl_jint(int64_t v);
json_object *ctl_juint(uint64_t v);
json_object *ctl_jbool(bool v);
json_object *ctl_jobj(void);
json_object *ctl_jarr(void);
/* Adds key: v to an object, or appends v to an array (key NULL); takes v. */
void ctl_jset(json_object *o, const char *key, json_object *v);
/* v as text on f, no newline; takes v. */
void ctl_json_write(FILE *f, json_object *v);
/* v and a newline on stdout; takes v. CTL_OK, or CTL_ERROR when a
 * piece of v could not be allocated (nothing printed then). */
int ctl_json_print(json_object *v);

/* A list command's output: with --json one array printed at the end,
 * else each item's text line as it comes. */
typedef struct ctl_list {
    ctl_ctx *ctx;
    json_object *arr;  /* NULL without --json */
    size_t n;          /* items so far */
    const char *err;   /* the store's error sentence, for ctl_list_end */
} ctl_list;
/* Opens the store and starts the list; CTL_OK or CTL_ERROR (printed). */
int ctl_list_begin(ctl_list *l, ctl_ctx *ctx);
/* One item of n strings: with --json an object of keys[i]: vals[i], else
 * the first ntext values on one tab-separated line. */
void ctl_list_strings(ctl_list *l, size_t n, const char *const keys[], const char *const vals[],
                      size_t ntext);
/* rc: the store's result. Prints the array on success, frees it always.
 * Returns CTL_OK, or l->err (after what: "key list") on stderr. */
int ctl_list_end(ctl_list *l, int rc, const char *what);

#endif
