/* ctl_util.c — the shared pieces of ctl.h: dispatch against the command
 * table (to the handler, a usage error, or --help), usage from its rows,
 * the error line, the store, small files, and the JSON writer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ctl/ctl.h"
#include "common/cg_error.h"

/* ---- errors and usage ------------------------------------------------------ */

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

void ctl_print_forms(FILE *f, const ctl_cmd *rows, size_t nrows, const char *family)
{
    bool first = true;
    for (size_t r = 0; r < nrows; r++) {
        if (strcmp(rows[r].family, family) != 0)
            continue;
        const char *u = rows[r].usage;
        do {
            size_t n = strcspn(u, "\n");
            fprintf(f, "%s cpmgatectl %s%s%s%s%.*s\n", first ? "usage:" : "      ",
                    family, rows[r].name ? " " : "", rows[r].name ? rows[r].name : "",
                    n ? " " : "", (int)n, u);
            first = false;
            u += n + (u[n] == '\n');
        } while (*u);
    }
}

int ctl_usage(const ctl_args *a)
{
    ctl_print_forms(stderr, a->rows, a->nrows, a->cmd->family);
    return CTL_USAGE;
}

/* ---- arguments --------------------------------------------------------------- */

static int index_of(const char *s, const char *const *list)
{
    for (int i = 0; list && list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return i;
    return -1;
}

static bool is_option(const char *s) { return strncmp(s, "--", 2) == 0 && s[2]; }

static bool is_help(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

bool ctl_name_matches(const char *names, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = names; *p;) {
        size_t k = strcspn(p, "|");
        if (k == n && strncmp(p, word, n) == 0)
            return true;
        p += k + (p[k] == '|');
    }
    return false;
}

/* Whether name takes a value in any row of the family (to find the
 * subcommand word behind options given before it). */
bool ctl_family_opt(const ctl_cmd *rows, size_t nrows, const char *family, const char *name)
{
    for (size_t r = 0; r < nrows; r++)
        if (strcmp(rows[r].family, family) == 0 && index_of(name, rows[r].opts) >= 0)
            return true;
    return false;
}

/* argv[skip] is the subcommand word (or -1 for none); every other word is
 * an option, its value, or a positional. */
static int parse_args(const ctl_cmd *row, int argc, char **argv, int skip, ctl_args *a)
{
    for (int i = 1; i < argc; i++) {
        if (i == skip)
            continue;
        if (is_option(argv[i]) && strcmp(argv[i], "--json") != 0) {
            int f = index_of(argv[i], row->flags);
            int o = index_of(argv[i], row->opts);
            /* a row with more than ctl_args holds is a bug in the table */
            if (f >= CTL_MAX_OPTS || o >= CTL_MAX_OPTS)
                abort();
            if (f >= 0) {
                a->set[f] = true;
            } else if (o >= 0) {
                if (i + 1 >= argc)
                    return CTL_USAGE;
                if (!a->val[o]) /* the first one counts */
                    a->val[o] = argv[i + 1];
                i++;
            } else {
                fprintf(stderr, "cpmgatectl: unknown option '%s'\n", argv[i]);
                return CTL_USAGE;
            }
        } else if (!is_option(argv[i])) {
            if (a->npos >= row->max_args)
                return CTL_USAGE;
            if (a->npos >= CTL_MAX_POS)
                abort(); /* max_args past what ctl_args holds: the table's bug */
            a->pos[a->npos++] = argv[i];
        }
    }
    return a->npos < row->min_args ? CTL_USAGE : CTL_OK;
}

/* Whether --help or -h stands among the words, other than as an option's
 * value (row's options, or the family's while no row is chosen). */
static bool wants_help(const ctl_cmd *rows, size_t nrows, const ctl_cmd *row, const char *family,
                       int argc, char **argv, int skip)
{
    for (int i = 1; i < argc; i++) {
        if (i == skip)
            continue;
        if (is_help(argv[i]))
            return true;
        if (is_option(argv[i]) && (row ? index_of(argv[i], row->opts) >= 0
                                       : ctl_family_opt(rows, nrows, family, argv[i])))
            i++;
    }
    return false;
}

int ctl_dispatch(ctl_ctx *ctx, const ctl_cmd *rows, size_t nrows, int argc, char **argv)
{
    const char *family = argv[0];
    const ctl_cmd *row = NULL;
    int skip = -1;
    for (size_t r = 0; r < nrows && !row; r++)
        if (strcmp(rows[r].family, family) == 0 && !rows[r].name)
            row = &rows[r];
    if (!row) {
        /* the subcommand is the first word that is not an option or its value */
        for (int i = 1; i < argc && skip < 0; i++) {
            if (is_help(argv[i]))
                continue;
            if (!is_option(argv[i]))
                skip = i;
            else if (ctl_family_opt(rows, nrows, family, argv[i]))
                i++;
        }
        for (size_t r = 0; skip > 0 && r < nrows && !row; r++)
            if (strcmp(rows[r].family, family) == 0 && ctl_name_matches(rows[r].name, argv[skip]))
                row = &rows[r];
    }
    /* --help: the command's usage and options, or the family's forms while
     * no subcommand is named, on stdout */
    if ((row || skip < 0) && wants_help(rows, nrows, row, family, argc, argv, skip)) {
        if (row)
            ctl_help(row);
        else
            ctl_print_forms(stdout, rows, nrows, family);
        return CTL_OK;
    }
    if (!row) {
        if (skip > 0)
            fprintf(stderr, "cpmgatectl: unknown %s command '%s'\n", family, argv[skip]);
        ctl_print_forms(stderr, rows, nrows, family);
        return CTL_USAGE;
    }
    ctl_args a = { .cmd = row, .rows = rows, .nrows = nrows,
                   .sub = skip > 0 ? argv[skip] : NULL, .argc = argc, .argv = argv,
                   .skip = skip };
    if (parse_args(row, argc, argv, skip, &a) != CTL_OK)
        return ctl_usage(&a);
    return row->fn(ctx, &a);
}

const char *ctl_opt(const ctl_args *a, const char *name)
{
    int i = index_of(name, a->cmd->opts);
    return i >= 0 ? a->val[i] : NULL;
}

size_t ctl_opt_all(const ctl_args *a, const char *name, const char **out, size_t max)
{
    size_t n = 0;
    /* the words as parse_args took them: an option's value is never an option */
    for (int i = 1; i < a->argc; i++) {
        if (i == a->skip || !is_option(a->argv[i]) || index_of(a->argv[i], a->cmd->opts) < 0)
            continue;
        if (i + 1 < a->argc && strcmp(a->argv[i], name) == 0) {
            if (n < max)
                out[n] = a->argv[i + 1];
            n++;
        }
        i++;
    }
    return n;
}

bool ctl_flag(const ctl_args *a, const char *name)
{
    int i = index_of(name, a->cmd->flags);
    return i >= 0 && a->set[i];
}

/* ---- store and files ------------------------------------------------------------ */

/* The password for a PostgreSQL store from the file $CPMGATE_DB_PASSWORD_FILE
 * names (its first line), into pw; "" when the variable is unset. */
static int db_password(char *pw, size_t cap)
{
    pw[0] = '\0';
    const char *file = getenv("CPMGATE_DB_PASSWORD_FILE");
    if (!file || !*file)
        return CTL_OK;
    FILE *f = fopen(file, "r");
    if (!f)
        return ctl_fail("CPMGATE_DB_PASSWORD_FILE %s: cannot open", file);
    bool ok = fgets(pw, (int)cap, f) != NULL;
    fclose(f);
    pw[strcspn(pw, "\r\n")] = '\0';
    if (!ok || !pw[0])
        return ctl_fail("CPMGATE_DB_PASSWORD_FILE %s: empty", file);
    return CTL_OK;
}

int ctl_store_open(const char *name, bool create, cg_pstore **out)
{
    char pw[256];
    if (db_password(pw, sizeof pw) != CTL_OK)
        return CTL_ERROR;
    const char *err = NULL;
    int rc = cg_pstore_open_auth(name, pw[0] ? pw : NULL, create ? CG_PSTORE_CREATE : 0, out,
                                 &err);
    explicit_bzero(pw, sizeof pw);
    if (rc < 0) {
        /* the store's sentence may name the database already; a URL only
         * without its password */
        char label[512];
        cg_pstore_redact(name, label, sizeof label);
        if (err && strstr(err, label))
            return ctl_fail("%s", err);
        return ctl_fail("%s: %s", label, err ? err : "cannot open");
    }
    return CTL_OK;
}

int ctl_open_store(ctl_ctx *ctx, bool create)
{
    if (ctx->store)
        return CTL_OK;
    if (!ctx->db_path || !*ctx->db_path)
        return ctl_fail("no policy database: give -d FILE or set CPMGATE_DB");
    return ctl_store_open(ctx->db_path, create, &ctx->store);
}

char *ctl_slurp(const char *path, size_t max, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = "cannot open";
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > max) {
        free(buf);
        *why = !buf ? "out of memory" : err ? "cannot read" : "too large";
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- JSON ------------------------------------------------------------------------ */

/* json-c's NULL is both JSON null and a failed allocation: the
 * constructors below tell them apart and remember a failure here (one
 * process, one document at a time). */
static bool json_oom;

#define CTL_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static json_object *checked(json_object *v)
{
    if (!v)
        json_oom = true;
    return v;
}

json_object *ctl_jstr(const char *s) { return s ? checked(json_object_new_string(s)) : NULL; }
json_object *ctl_jint(int64_t v) { return checked(json_object_new_int64(v)); }
json_object *ctl_juint(uint64_t v) { return checked(json_object_new_uint64(v)); }
json_object *ctl_jbool(bool v) { return checked(json_object_new_boolean(v)); }
json_object *ctl_jobj(void) { return checked(json_object_new_object()); }
json_object *ctl_jarr(void) { return checked(json_object_new_array()); }

void ctl_jset(json_object *o, const char *key, json_object *v)
{
    int rc = -1;
    if (o && key)
        rc = json_object_object_add(o, key, v);
    else if (o)
        rc = json_object_array_add(o, v);
    if (rc < 0) {
        json_oom = true;
        json_object_put(v);
    }
}

void ctl_json_write(FILE *f, json_object *v)
{
    const char *text = json_object_to_json_string_ext(v, CTL_JSON_FLAGS);
    if (text)
        fputs(text, f);
    else
        json_oom = true;
    json_object_put(v);
}

int ctl_json_print(json_object *v)
{
    const char *text = json_oom ? NULL : json_object_to_json_string_ext(v, CTL_JSON_FLAGS);
    if (text)
        printf("%s\n", text);
    json_object_put(v);
    return text ? CTL_OK : ctl_fail("out of memory");
}

int ctl_list_begin(ctl_list *l, ctl_ctx *ctx)
{
    *l = (ctl_list){ .ctx = ctx };
    if (ctl_open_store(ctx, false) != CTL_OK)
        return CTL_ERROR;
    l->arr = ctx->json ? ctl_jarr() : NULL;
    return CTL_OK;
}

void ctl_list_strings(ctl_list *l, size_t n, const char *const keys[], const char *const vals[],
                      size_t ntext)
{
    if (l->arr) {
        json_object *o = ctl_jobj();
        for (size_t i = 0; i < n; i++)
            ctl_jset(o, keys[i], ctl_jstr(vals[i]));
        ctl_jset(l->arr, NULL, o);
    } else {
        for (size_t i = 0; i < ntext; i++)
            printf("%s%s", i ? "\t" : "", vals[i]);
        putchar('\n');
    }
    l->n++;
}

int ctl_list_end(ctl_list *l, int rc, const char *what)
{
    if (rc < 0) {
        json_object_put(l->arr);
        const char *err = l->err ? l->err : cg_strerror(rc);
        return what ? ctl_fail("%s: %s", what, err) : ctl_fail("%s", err);
    }
    return l->ctx->json ? ctl_json_print(l->arr) : CTL_OK;
}
