/* proxy/core/config.c — the configuration file (SPEC section 10), driven by one table
 * of keys. libinih does the INI syntax; a line reader in front of it counts
 * lines (Debian's inih passes no line numbers), refuses over-long and
 * indented continuation lines and bytes a configuration cannot hold, and
 * carries a value longer than inih's fixed 200-byte line beside the text it
 * hands inih, never inside it, so nothing is cut silently and nothing in the
 * file can pose as a reference. */
#include "proxy/core/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "proxy/http/host.h"

#define MAX_LINE 4096

enum sect_kind { S_GATEWAY, S_LISTENER, S_UPSTREAM, S_SAML };

enum key_type {
    K_STR,      /* free text */
    K_PATH,     /* file path, relative to the file's directory */
    K_RFILE,    /* path of a file that must be readable */
    K_UINT,     /* unsigned with min/max */
    K_SIZE,     /* size_t with min/max */
    K_BOOL,     /* yes/no/true/false/on/off */
    K_ENUM,     /* one of enumv, stored as int */
    K_AUTH,     /* comma list of methods -> bits */
    K_VERSIONS, /* tls_versions */
    K_WORKERS,  /* auto | N */
    K_PIN,      /* 64 hex */
    K_SECRET,   /* path of a file whose first line is the value */
    K_HEADER,   /* header name or none */
};

typedef struct enum_val {
    const char *name;
    int value;
} enum_val;

static const enum_val e_protocol[] = { { "imap", CG_PROTO_IMAP }, { "http", CG_PROTO_HTTP }, { NULL, 0 } };
static const enum_val e_tls[] = { { "implicit", CG_TLS_IMPLICIT }, { "starttls", CG_TLS_STARTTLS },
                                  { "none", CG_TLS_NONE }, { NULL, 0 } };
static const enum_val e_insecure[] = { { "reject", CG_INSECURE_REJECT },
                                       { "redirect", CG_INSECURE_REDIRECT }, { NULL, 0 } };
static const enum_val e_login[] = { { "master", CG_IMAP_LOGIN_MASTER },
                                    { "passthrough", CG_IMAP_LOGIN_PASSTHROUGH }, { NULL, 0 } };
static const enum_val e_fail[] = { { "closed", 1 }, { "open", 0 }, { NULL, 0 } };

static const enum_val e_auth[] = {
    { "cert", CG_AUTH_CERT },     { "psk", CG_AUTH_PSK },       { "address", CG_AUTH_ADDRESS },
    { "login", CG_AUTH_LOGIN },   { "digest", CG_AUTH_DIGEST }, { "saml", CG_AUTH_SAML },
    { NULL, 0 },
};

typedef struct key_def {
    enum sect_kind sect;
    const char *name;
    enum key_type type;
    size_t off;
    const char *def; /* default, parsed like a written value; NULL: none */
    uint64_t min, max;
    const enum_val *enums;
} key_def;

#define G(f) offsetof(cg_config, f)
#define L(f) offsetof(cg_listener_cfg, f)
#define U(f) offsetof(cg_upstream_cfg, f)
#define A(f) offsetof(cg_saml_cfg, f)

/* The table: every key the file may hold, its type, default and bounds.
 * deploy/cpmgate.conf names them all. */
static const key_def keys[] = {
    { S_GATEWAY, "workers", K_WORKERS, G(workers), "auto", 1, 256, NULL },
    { S_GATEWAY, "policy_db", K_PATH, G(policy_db), "policy.db", 0, 0, NULL },
    { S_GATEWAY, "audit_db", K_PATH, G(audit_db), "audit.db", 0, 0, NULL },
    { S_GATEWAY, "audit_key", K_RFILE, G(audit_key), NULL, 0, 0, NULL },
    { S_GATEWAY, "audit_fail", K_ENUM, G(audit_fail_closed), "closed", 0, 0, e_fail },
    { S_GATEWAY, "admin_listen", K_STR, G(admin_listen), NULL, 0, 0, NULL },
    { S_GATEWAY, "admin_timeout", K_UINT, G(admin_timeout), "10", 1, 3600, NULL },
    { S_GATEWAY, "admin_max_connections", K_UINT, G(admin_max_connections), "16", 1, 10000, NULL },
    { S_GATEWAY, "user", K_STR, G(user), NULL, 0, 0, NULL },
    { S_GATEWAY, "group", K_STR, G(group), NULL, 0, 0, NULL },
    { S_GATEWAY, "pid_file", K_PATH, G(pid_file), NULL, 0, 0, NULL },
    { S_GATEWAY, "drain_timeout", K_UINT, G(drain_timeout), "10", 0, 3600, NULL },
    { S_GATEWAY, "content_db", K_PATH, G(content_db), "content.db", 0, 0, NULL },
    { S_GATEWAY, "audit_checkpoint_records", K_UINT, G(audit_checkpoint_records), "1000", 1, 10000000, NULL },
    { S_GATEWAY, "audit_checkpoint_seconds", K_UINT, G(audit_checkpoint_seconds), "5", 1, 86400, NULL },

    { S_LISTENER, "protocol", K_ENUM, L(protocol), NULL, 0, 0, e_protocol },
    { S_LISTENER, "listen", K_STR, L(listen), NULL, 0, 0, NULL },
    { S_LISTENER, "tls", K_ENUM, L(tls), "implicit", 0, 0, e_tls },
    { S_LISTENER, "certificate", K_RFILE, L(certificate), NULL, 0, 0, NULL },
    { S_LISTENER, "private_key", K_RFILE, L(private_key), NULL, 0, 0, NULL },
    { S_LISTENER, "client_ca", K_RFILE, L(client_ca), NULL, 0, 0, NULL },
    { S_LISTENER, "crl", K_RFILE, L(crl), NULL, 0, 0, NULL },
    { S_LISTENER, "auth", K_AUTH, L(auth), NULL, 0, 0, e_auth },
    { S_LISTENER, "digest_realm", K_STR, L(digest_realm), NULL, 0, 0, NULL },
    { S_LISTENER, "digest_nonce_lifetime", K_UINT, L(digest_nonce_lifetime), "300", 1, 86400, NULL },
    { S_LISTENER, "upstream", K_STR, L(upstream_name), NULL, 0, 0, NULL },
    { S_LISTENER, "insecure", K_ENUM, L(insecure), "reject", 0, 0, e_insecure },
    { S_LISTENER, "redirect_to", K_STR, L(redirect_to), NULL, 0, 0, NULL },
    { S_LISTENER, "allow_plaintext", K_BOOL, L(allow_plaintext), "no", 0, 0, NULL },
    { S_LISTENER, "tls_versions", K_VERSIONS, L(tls12), "1.2, 1.3", 0, 0, NULL },
    { S_LISTENER, "ciphers", K_STR, L(ciphers), NULL, 0, 0, NULL },
    { S_LISTENER, "ciphersuites", K_STR, L(ciphersuites), NULL, 0, 0, NULL },
    { S_LISTENER, "handshake_timeout", K_UINT, L(handshake_timeout), "10", 1, 3600, NULL },
    { S_LISTENER, "idle_timeout", K_UINT, L(idle_timeout), NULL, 1, 86400, NULL }, /* per protocol */
    { S_LISTENER, "client_timeout", K_UINT, L(client_timeout), "60", 1, 3600, NULL },
    { S_LISTENER, "max_conn_per_addr", K_UINT, L(max_conn_per_addr), "64", 1, 1000000, NULL },
    { S_LISTENER, "max_line", K_SIZE, L(max_line), NULL, 256, 1048576, NULL }, /* per protocol */
    { S_LISTENER, "max_literal", K_SIZE, L(max_literal), "67108864", 1024, UINT64_C(4294967295), NULL },
    { S_LISTENER, "max_headers", K_SIZE, L(max_headers), "100", 8, 10000, NULL },
    { S_LISTENER, "max_header_bytes", K_SIZE, L(max_header_bytes), "16384", 1024, 1048576, NULL },
    { S_LISTENER, "max_body", K_SIZE, L(max_body), "0", 0, UINT64_MAX, NULL },
    { S_LISTENER, "login_failures_per_minute", K_UINT, L(login_failures_per_minute), "5", 1, 100000, NULL },
    { S_LISTENER, "server_names", K_STR, L(server_names), NULL, 0, 0, NULL }, /* http: certificate's */

    { S_UPSTREAM, "address", K_STR, U(address), NULL, 0, 0, NULL },
    { S_UPSTREAM, "imap_login", K_ENUM, U(imap_login), "master", 0, 0, e_login },
    { S_UPSTREAM, "master_user", K_STR, U(master_user), NULL, 0, 0, NULL },
    { S_UPSTREAM, "master_password_file", K_SECRET, U(master_password), NULL, 0, 0, NULL },
    { S_UPSTREAM, "tls", K_BOOL, U(tls), "no", 0, 0, NULL },
    { S_UPSTREAM, "ca", K_RFILE, U(ca), NULL, 0, 0, NULL },
    { S_UPSTREAM, "server_name", K_STR, U(server_name), NULL, 0, 0, NULL },
    { S_UPSTREAM, "pin_sha256", K_PIN, U(pin_sha256), NULL, 0, 0, NULL },
    { S_UPSTREAM, "certificate", K_RFILE, U(certificate), NULL, 0, 0, NULL },
    { S_UPSTREAM, "private_key", K_RFILE, U(private_key), NULL, 0, 0, NULL },
    { S_UPSTREAM, "connect_timeout", K_UINT, U(connect_timeout), "5", 1, 3600, NULL },
    { S_UPSTREAM, "response_timeout", K_UINT, U(response_timeout), "60", 1, 86400, NULL },
    { S_UPSTREAM, "pool_size", K_UINT, U(pool_size), "32", 0, 100000, NULL },
    { S_UPSTREAM, "proxy_protocol", K_BOOL, U(proxy_protocol), "no", 0, 0, NULL },
    { S_UPSTREAM, "principal_header", K_HEADER, U(principal_header), "X-Authenticated-Principal", 0, 0, NULL },
    { S_UPSTREAM, "host", K_STR, U(host), NULL, 0, 0, NULL },

    { S_SAML, "idp_certificate", K_RFILE, A(idp_certificate), NULL, 0, 0, NULL },
    { S_SAML, "issuer", K_STR, A(issuer), NULL, 0, 0, NULL },
    { S_SAML, "audience", K_STR, A(audience), NULL, 0, 0, NULL },
    { S_SAML, "clock_skew", K_UINT, A(clock_skew), "60", 0, 3600, NULL },
};
#define NKEYS CG_ARRAY_LEN(keys)

/* One section instance while parsing: where it started and which keys it
 * set (for duplicates and for error lines). */
typedef struct sect {
    enum sect_kind kind;
    void *obj;
    unsigned header_line;
    unsigned key_line[NKEYS]; /* 0: not set */
} sect;

typedef struct parser {
    cg_config *cfg;
    FILE *f;
    const char *path;
    unsigned lineno;
    char err[512];
    bool failed;
    sect *sects;
    size_t nsects;
    sect *cur;
    /* The value of line long_line, which was too long to pass through
     * inih: inih calls the handler for a line before it asks the reader for
     * the next one, so the handler takes the value from here when the line
     * it is called for is long_line (0: none yet). */
    char *long_value;
    unsigned long_line;
} parser;

static void fail_at(parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_at(parser *p, unsigned line, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    int n = snprintf(p->err, sizeof p->err, "%s:%u: ", p->path, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, sizeof p->err - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* configuration loading only: out of memory at start-up */
    return d;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

static char *resolve_path(const cg_config *cfg, const char *v)
{
    if (v[0] == '/' || !cfg->dir[0])
        return xstrdup(v);
    size_t n = strlen(cfg->dir) + 1 + strlen(v) + 1;
    char *out = xcalloc(1, n);
    snprintf(out, n, "%s/%s", cfg->dir, v);
    return out;
}

static const char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

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
        inst = trim(sp + 1);
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
    } else if ((strcmp(kind, "listener") == 0 || strcmp(kind, "upstream") == 0) && inst) {
        if (!valid_name(inst)) {
            fail_at(p, p->lineno, "invalid %s name '%s'", kind, inst);
            return;
        }
        bool listener = kind[0] == 'l';
        s.kind = listener ? S_LISTENER : S_UPSTREAM;
        /* objects are allocated in arrays after parsing; keep them apart
         * now so pointers stay valid */
        s.obj = listener ? xcalloc(1, sizeof(cg_listener_cfg)) : xcalloc(1, sizeof(cg_upstream_cfg));
        if (listener)
            ((cg_listener_cfg *)s.obj)->name = xstrdup(inst);
        else
            ((cg_upstream_cfg *)s.obj)->name = xstrdup(inst);
    } else {
        fail_at(p, p->lineno, "unknown section [%s]", name);
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
        }
        if (!a || strcmp(a, b) == 0) {
            fail_at(p, p->lineno, "duplicate section [%s] (first at line %u)", name, o->header_line);
            if (s.kind == S_LISTENER || s.kind == S_UPSTREAM) {
                free(*(char **)((char *)s.obj + (s.kind == S_LISTENER ? L(name) : U(name))));
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
    return (char *)trim(v);
}

/* Reads one physical line into line[0..cap) with its true length (a NUL
 * byte does not end it, as it would for fgets). Returns the length without
 * the newline, -1 at the end of the file, -2 when the line does not fit. */
static long read_line(FILE *f, char *line, size_t cap)
{
    size_t len = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (len + 1 >= cap)
            return -2;
        line[len++] = (char)c;
    }
    if (c == EOF && len == 0)
        return -1;
    line[len] = '\0';
    return (long)len;
}

/* A configuration file is UTF-8 text: no NUL, no control byte other than
 * tab (a trailing CR of a CRLF line is removed before this check). */
static bool line_bytes_ok(parser *p, const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0') {
            fail_at(p, p->lineno, "NUL byte in line");
            return false;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            fail_at(p, p->lineno, "control byte 0x%02x in line", c);
            return false;
        }
    }
    if (!cg_utf8_valid(line, len)) {
        fail_at(p, p->lineno, "invalid UTF-8 in line");
        return false;
    }
    return true;
}

/* ini_reader: one physical line per call. */
static char *reader(char *str, int num, void *stream)
{
    parser *p = stream;
    if (p->failed)
        return NULL;
    char line[MAX_LINE + 2];
    long got = read_line(p->f, line, sizeof line);
    if (got == -1)
        return NULL;
    p->lineno++;
    if (got == -2) {
        fail_at(p, p->lineno, "line longer than %d bytes", MAX_LINE);
        return NULL;
    }
    size_t len = (size_t)got;
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
        fail_at(p, p->lineno, "indented line (continuation lines are not allowed)");
        return NULL;
    }
    if (*t == '[') {
        char *end = strchr(t, ']');
        if (!end) {
            fail_at(p, p->lineno, "section header without ']'");
            return NULL;
        }
        const char *rest = end + 1;
        while (*rest == ' ' || *rest == '\t')
            rest++;
        if (*rest && *rest != ';' && *rest != '#') {
            fail_at(p, p->lineno, "text after section header");
            return NULL;
        }
        *end = '\0';
        char name[128];
        if (!cg_strlcpy(name, t + 1, sizeof name)) {
            fail_at(p, p->lineno, "section name too long");
            return NULL;
        }
        open_section(p, trim(name));
        if (p->failed)
            return NULL;
        /* inih keeps the name only to pass it to the handler; ours is
         * p->cur, so any short stand-in is enough */
        snprintf(str, (size_t)num, "[s]\n");
        return str;
    }
    if (blank || comment) {
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
        fail_at(p, p->lineno, "expected 'key = value'");
        return NULL;
    }
    *eq = '\0';
    if (snprintf(str, (size_t)num, "%s=\n", trim(t)) >= num) {
        fail_at(p, p->lineno, "key name too long");
        return NULL;
    }
    free(p->long_value);
    p->long_value = xstrdup(long_value(eq + 1));
    p->long_line = p->lineno;
    return str;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = { "yes", "true", "on", "1" }, *no[] = { "no", "false", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return CG_E_INVAL;
}

static int parse_enum(const enum_val *e, const char *v, int *out)
{
    for (; e->name; e++)
        if (strcmp(e->name, v) == 0) {
            *out = e->value;
            return 0;
        }
    return CG_E_INVAL;
}

static void enum_names(const enum_val *e, char *out, size_t cap)
{
    out[0] = '\0';
    for (; e->name; e++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? ", " : "", e->name);
    }
}

static bool valid_header_name(const char *v)
{
    if (!*v)
        return false;
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
              *v == '-'))
            return false;
    return true;
}

/* Parses value v of key k into obj; returns an error sentence or NULL. */
static const char *set_value(parser *p, const key_def *k, void *obj, const char *v, char *why,
                             size_t whylen)
{
    char *field = (char *)obj + k->off;
    uint64_t u;
    switch (k->type) {
    case K_STR:
        if (!*v)
            return "empty value";
        free(*(char **)field);
        *(char **)field = xstrdup(v);
        return NULL;
    case K_PATH:
    case K_RFILE:
        if (!*v)
            return "empty path";
        free(*(char **)field);
        *(char **)field = resolve_path(p->cfg, v);
        if (k->type == K_RFILE && access(*(char **)field, R_OK) != 0) {
            snprintf(why, whylen, "cannot read %s: %s", v, strerror(errno));
            return why;
        }
        return NULL;
    case K_SECRET: {
        char *path = resolve_path(p->cfg, v);
        FILE *f = fopen(path, "r");
        if (!f) {
            snprintf(why, whylen, "cannot read %s: %s", v, strerror(errno));
            free(path);
            return why;
        }
        char buf[1024];
        bool ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        free(path);
        if (!ok)
            return "secret file is empty";
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!buf[0])
            return "secret file is empty";
        free(*(char **)field);
        *(char **)field = xstrdup(buf);
        return NULL;
    }
    case K_UINT:
        if (cg_parse_u64(v, k->min, k->max, &u) < 0) {
            snprintf(why, whylen, "expected a whole number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return why;
        }
        *(unsigned *)field = (unsigned)u;
        return NULL;
    case K_SIZE:
        if (cg_parse_u64(v, k->min, k->max, &u) < 0) {
            snprintf(why, whylen, "expected a whole number from %llu to %llu",
                     (unsigned long long)k->min, (unsigned long long)k->max);
            return why;
        }
        *(size_t *)field = (size_t)u;
        return NULL;
    case K_WORKERS:
        if (strcmp(v, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            *(unsigned *)field = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
            return NULL;
        }
        if (cg_parse_u64(v, k->min, k->max, &u) < 0)
            return "expected 'auto' or a whole number from 1 to 256";
        *(unsigned *)field = (unsigned)u;
        return NULL;
    case K_BOOL:
        if (parse_bool(v, (bool *)field) < 0)
            return "expected yes or no";
        return NULL;
    case K_ENUM: {
        int e;
        if (parse_enum(k->enums, v, &e) < 0) {
            char names[128];
            enum_names(k->enums, names, sizeof names);
            snprintf(why, whylen, "expected one of: %s", names);
            return why;
        }
        if (k->off == G(audit_fail_closed) && obj == p->cfg)
            *(bool *)field = e != 0;
        else
            *(int *)field = e;
        return NULL;
    }
    case K_AUTH:
    case K_VERSIONS: {
        char buf[256];
        if (!cg_strlcpy(buf, v, sizeof buf))
            return "value too long";
        unsigned bits = 0;
        bool t12 = false, t13 = false;
        char *save = NULL;
        int n = 0;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            const char *w = trim(tok);
            n++;
            if (k->type == K_VERSIONS) {
                if (strcmp(w, "1.2") == 0)
                    t12 = true;
                else if (strcmp(w, "1.3") == 0)
                    t13 = true;
                else
                    return "expected a list of 1.2, 1.3";
                continue;
            }
            int e;
            if (parse_enum(e_auth, w, &e) < 0) {
                snprintf(why, whylen, "unknown method '%s' (cert, psk, address, login, digest, saml)", w);
                return why;
            }
            if (bits & (unsigned)e) {
                snprintf(why, whylen, "method '%s' listed twice", w);
                return why;
            }
            bits |= (unsigned)e;
        }
        if (n == 0)
            return "empty list";
        if (k->type == K_VERSIONS) {
            cg_listener_cfg *l = obj;
            l->tls12 = t12;
            l->tls13 = t13;
        } else {
            *(unsigned *)field = bits;
        }
        return NULL;
    }
    case K_PIN: {
        cg_upstream_cfg *u2 = obj;
        if (strlen(v) != 64 || cg_hex_decode(v, u2->pin_sha256, 32) != 32)
            return "expected 64 hex digits (SHA-256)";
        u2->has_pin = true;
        return NULL;
    }
    case K_HEADER:
        free(*(char **)field);
        *(char **)field = NULL;
        if (strcmp(v, "none") == 0)
            return NULL;
        if (!valid_header_name(v))
            return "expected a header name or 'none'";
        *(char **)field = xstrdup(v);
        return NULL;
    }
    return "internal: unknown key type";
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parser *p = user;
    (void)section;
    if (p->failed)
        return 0;
    if (!p->cur) {
        fail_at(p, p->lineno, "key '%s' outside any section", name);
        return 0;
    }
    /* the reader refused control bytes in every line, so value needs no
     * check of its own here */
    if (p->long_line == p->lineno)
        value = p->long_value;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->sect != p->cur->kind || strcmp(k->name, name) != 0)
            continue;
        if (p->cur->key_line[i]) {
            fail_at(p, p->lineno, "duplicate key '%s' (first at line %u)", name, p->cur->key_line[i]);
            return 0;
        }
        p->cur->key_line[i] = p->lineno;
        char why[512];
        const char *err = set_value(p, k, p->cur->obj, value, why, sizeof why);
        if (err) {
            fail_at(p, p->lineno, "%s: %s", name, err);
            return 0;
        }
        return 1;
    }
    fail_at(p, p->lineno, "unknown key '%s'", name);
    return 0;
}

static int apply_defaults(parser *p, sect *s)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->sect != s->kind || s->key_line[i] || !k->def)
            continue;
        char why[512];
        const char *err = set_value(p, k, s->obj, k->def, why, sizeof why);
        if (err) {
            fail_at(p, s->header_line, "default of %s: %s", k->name, err);
            return CG_E_INVAL;
        }
    }
    return 0;
}

static unsigned key_line(const sect *s, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].sect == s->kind && strcmp(keys[i].name, name) == 0 && s->key_line[i])
            return s->key_line[i];
    return s->header_line;
}

/* host:port, [v6]:port */
static int parse_hostport(const char *text, bool numeric_only, struct sockaddr_storage *ss,
                          socklen_t *len, char *why, size_t whylen)
{
    char host[256];
    const char *port;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof host) {
            snprintf(why, whylen, "expected [address]:port");
            return CG_E_INVAL;
        }
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || colon == text || (size_t)(colon - text) >= sizeof host ||
            memchr(text, ':', (size_t)(colon - text))) {
            snprintf(why, whylen, "expected host:port");
            return CG_E_INVAL;
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    uint64_t pn;
    if (cg_parse_u64(port, 1, 65535, &pn) < 0) {
        snprintf(why, whylen, "port must be 1..65535");
        return CG_E_INVAL;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = numeric_only ? AI_NUMERICHOST : AI_ADDRCONFIG };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(why, whylen, "cannot resolve '%.200s': %s", host, gai_strerror(rc));
        return CG_E_INVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static const char *method_names(unsigned bits, char *out, size_t cap)
{
    out[0] = '\0';
    for (const enum_val *e = e_auth; e->name; e++) {
        if (!(bits & (unsigned)e->value))
            continue;
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? ", " : "", e->name);
    }
    return out;
}

/* server_names (proxy/http/host.h): an HTTP listener serves the names of its
 * certificate unless told otherwise; 421 for any other. */
static int validate_server_names(parser *p, sect *s)
{
    cg_listener_cfg *l = s->obj;
    const char *why;
    if (l->protocol != CG_PROTO_HTTP || l->tls == CG_TLS_NONE) {
        if (l->server_names) {
            fail_at(p, key_line(s, "server_names"), "server_names is for http listeners with tls");
            return CG_E_INVAL;
        }
        return 0;
    }
    if (l->server_names && cg_http_names_check(l->server_names, &why) < 0) {
        fail_at(p, key_line(s, "server_names"), "server_names: %s", why);
        return CG_E_INVAL;
    }
    if (!l->server_names && !(l->server_names = cg_http_cert_names(l->certificate, &why))) {
        fail_at(p, key_line(s, "certificate"), "server_names: %s (set server_names)", why);
        return CG_E_INVAL;
    }
    return 0;
}

static int validate_listener(parser *p, sect *s)
{
    cg_config *cfg = p->cfg;
    cg_listener_cfg *l = s->obj;
    char why[256];
    if (!l->protocol) {
        fail_at(p, s->header_line, "[listener %s]: protocol is required (imap or http)", l->name);
        return CG_E_INVAL;
    }
    if (!l->listen) {
        fail_at(p, s->header_line, "[listener %s]: listen is required", l->name);
        return CG_E_INVAL;
    }
    if (parse_hostport(l->listen, true, &l->addr, &l->addrlen, why, sizeof why) < 0) {
        fail_at(p, key_line(s, "listen"), "listen: %s", why);
        return CG_E_INVAL;
    }
    if (!l->idle_timeout)
        l->idle_timeout = l->protocol == CG_PROTO_IMAP ? 1860 : 75;
    /* imap: Dovecot's own imap_max_line_length (a legal RFC 2971 ID is up
     * to about 32 KiB); http: the request line */
    if (!l->max_line)
        l->max_line = l->protocol == CG_PROTO_IMAP ? 65536 : 8192;
    if (l->tls == CG_TLS_STARTTLS && l->protocol != CG_PROTO_IMAP) {
        fail_at(p, key_line(s, "tls"), "tls = starttls is for imap listeners only");
        return CG_E_INVAL;
    }
    if (l->tls != CG_TLS_NONE) {
        if (!l->certificate || !l->private_key) {
            fail_at(p, s->header_line, "[listener %s]: tls = %s needs certificate and private_key",
                    l->name, l->tls == CG_TLS_IMPLICIT ? "implicit" : "starttls");
            return CG_E_INVAL;
        }
        if (!l->tls12 && !l->tls13) {
            fail_at(p, key_line(s, "tls_versions"), "tls_versions: no version left");
            return CG_E_INVAL;
        }
    }
    bool plain_http = l->protocol == CG_PROTO_HTTP && l->tls == CG_TLS_NONE;
    if (plain_http) {
        /* answers 426 or 308 to everything: needs neither auth nor upstream */
        if (l->insecure == CG_INSECURE_REDIRECT && !l->redirect_to) {
            fail_at(p, key_line(s, "insecure"), "insecure = redirect needs redirect_to");
            return CG_E_INVAL;
        }
        if (l->redirect_to && strncmp(l->redirect_to, "https://", 8) != 0) {
            fail_at(p, key_line(s, "redirect_to"), "redirect_to: expected an https:// URL");
            return CG_E_INVAL;
        }
        return 0;
    }
    if (!l->auth) {
        fail_at(p, s->header_line, "[listener %s]: auth is required", l->name);
        return CG_E_INVAL;
    }
    unsigned allowed = l->protocol == CG_PROTO_IMAP
                           ? (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS | CG_AUTH_LOGIN)
                           : (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS | CG_AUTH_DIGEST | CG_AUTH_SAML);
    char names[128];
    if (l->auth & ~allowed) {
        fail_at(p, key_line(s, "auth"), "auth: %s not available for %s listeners",
                method_names(l->auth & ~allowed, names, sizeof names),
                l->protocol == CG_PROTO_IMAP ? "imap" : "http");
        return CG_E_INVAL;
    }
    if (l->tls == CG_TLS_NONE && (l->auth & (CG_AUTH_CERT | CG_AUTH_PSK))) {
        fail_at(p, key_line(s, "auth"), "auth: cert and psk need tls");
        return CG_E_INVAL;
    }
    if (l->tls == CG_TLS_NONE && l->allow_plaintext && !(l->auth & CG_AUTH_ADDRESS)) {
        fail_at(p, key_line(s, "allow_plaintext"), "allow_plaintext needs auth = address");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_CERT) && !l->client_ca) {
        fail_at(p, key_line(s, "auth"), "auth = cert needs client_ca");
        return CG_E_INVAL;
    }
    if (l->crl && !l->client_ca) {
        fail_at(p, key_line(s, "crl"), "crl needs client_ca");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_DIGEST) && !l->digest_realm) {
        fail_at(p, key_line(s, "auth"), "auth = digest needs digest_realm");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_SAML) && !cfg->saml.present) {
        fail_at(p, key_line(s, "auth"), "auth = saml needs a [saml] section");
        return CG_E_INVAL;
    }
    if (!l->upstream_name) {
        fail_at(p, s->header_line, "[listener %s]: upstream is required", l->name);
        return CG_E_INVAL;
    }
    return validate_server_names(p, s);
}

static int validate_upstream(parser *p, sect *s)
{
    cg_upstream_cfg *u = s->obj;
    char why[256];
    if (!u->address) {
        fail_at(p, s->header_line, "[upstream %s]: address is required", u->name);
        return CG_E_INVAL;
    }
    if (parse_hostport(u->address, false, &u->addr, &u->addrlen, why, sizeof why) < 0) {
        fail_at(p, key_line(s, "address"), "address: %s", why);
        return CG_E_INVAL;
    }
    if (u->tls) {
        if (!u->ca && !u->has_pin) {
            fail_at(p, key_line(s, "tls"),
                    "tls = yes needs ca or pin_sha256 (the backend's certificate is always verified)");
            return CG_E_INVAL;
        }
        if (!u->server_name) {
            char host[256];
            cg_strlcpy(host, u->address[0] == '[' ? u->address + 1 : u->address, sizeof host);
            char *end = strrchr(host, u->address[0] == '[' ? ']' : ':');
            if (end)
                *end = '\0';
            u->server_name = xstrdup(host);
        }
    } else if (u->ca || u->has_pin || u->certificate || u->private_key) {
        fail_at(p, s->header_line, "[upstream %s]: ca, pin_sha256, certificate and private_key need tls = yes",
                u->name);
        return CG_E_INVAL;
    }
    if (!u->certificate != !u->private_key) {
        fail_at(p, s->header_line, "[upstream %s]: certificate and private_key go together", u->name);
        return CG_E_INVAL;
    }
    const char *hn;
    size_t hl;
    if (u->host && (!cg_http_host_name(u->host, strlen(u->host), &hn, &hl) ||
                    strpbrk(u->host, " \t,"))) {
        fail_at(p, key_line(s, "host"), "host: expected a host name, optionally with :port");
        return CG_E_INVAL;
    }
    return 0;
}

/* Moves every listener and upstream object into the config's arrays, in
 * file order, so that cg_config_free owns them whatever happens next. */
static void adopt_sections(parser *p)
{
    cg_config *cfg = p->cfg;
    size_t nl = 0, nu = 0;
    for (size_t i = 0; i < p->nsects; i++) {
        nl += p->sects[i].kind == S_LISTENER;
        nu += p->sects[i].kind == S_UPSTREAM;
    }
    cfg->listeners = nl ? xcalloc(nl, sizeof *cfg->listeners) : NULL;
    cfg->upstreams = nu ? xcalloc(nu, sizeof *cfg->upstreams) : NULL;
    for (size_t i = 0; i < p->nsects; i++) {
        sect *s = &p->sects[i];
        if (s->kind == S_UPSTREAM) {
            cfg->upstreams[cfg->nupstreams++] = *(cg_upstream_cfg *)s->obj;
            free(s->obj);
            s->obj = &cfg->upstreams[cfg->nupstreams - 1];
        } else if (s->kind == S_LISTENER) {
            cfg->listeners[cfg->nlisteners++] = *(cg_listener_cfg *)s->obj;
            free(s->obj);
            s->obj = &cfg->listeners[cfg->nlisteners - 1];
        }
    }
}

static int finish(parser *p)
{
    cg_config *cfg = p->cfg;
    sect *gw = NULL;
    for (size_t i = 0; i < p->nsects; i++)
        if (p->sects[i].kind == S_GATEWAY)
            gw = &p->sects[i];
    if (!gw) {
        fail_at(p, 0, "no [gateway] section");
        return CG_E_INVAL;
    }
    for (size_t i = 0; i < p->nsects; i++)
        if (apply_defaults(p, &p->sects[i]) < 0)
            return CG_E_INVAL;
    if (!cfg->audit_key) {
        fail_at(p, gw->header_line, "[gateway]: audit_key is required (cpmgatectl audit keygen)");
        return CG_E_INVAL;
    }
    if (cfg->admin_listen) {
        char why[256];
        if (parse_hostport(cfg->admin_listen, true, &cfg->admin_addr, &cfg->admin_addrlen, why,
                           sizeof why) < 0) {
            fail_at(p, key_line(gw, "admin_listen"), "admin_listen: %s", why);
            return CG_E_INVAL;
        }
    }
    if (cfg->saml.present) {
        sect *ss = NULL;
        for (size_t i = 0; i < p->nsects; i++)
            if (p->sects[i].kind == S_SAML)
                ss = &p->sects[i];
        if (!cfg->saml.idp_certificate || !cfg->saml.issuer || !cfg->saml.audience) {
            fail_at(p, ss->header_line, "[saml]: idp_certificate, issuer and audience are required");
            return CG_E_INVAL;
        }
    }
    if (cfg->nlisteners == 0) {
        fail_at(p, 0, "no [listener NAME] section");
        return CG_E_INVAL;
    }
    for (size_t i = 0; i < p->nsects; i++) {
        sect *s = &p->sects[i];
        int rc = s->kind == S_UPSTREAM ? validate_upstream(p, s) : 0;
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < p->nsects; i++) {
        sect *s = &p->sects[i];
        if (s->kind != S_LISTENER)
            continue;
        int rc = validate_listener(p, s);
        if (rc < 0)
            return rc;
        cg_listener_cfg *l = s->obj;
        if (l->upstream_name) {
            for (size_t j = 0; j < cfg->nupstreams; j++)
                if (strcmp(cfg->upstreams[j].name, l->upstream_name) == 0)
                    l->upstream = &cfg->upstreams[j];
            if (!l->upstream) {
                fail_at(p, key_line(s, "upstream"), "upstream: no [upstream %s] section",
                        l->upstream_name);
                return CG_E_INVAL;
            }
            cg_upstream_cfg *u = l->upstream;
            bool gateway_auth = (l->auth & (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS)) != 0;
            if (l->protocol == CG_PROTO_IMAP && u->imap_login == CG_IMAP_LOGIN_MASTER && gateway_auth &&
                (!u->master_user || !u->master_password)) {
                fail_at(p, key_line(s, "upstream"),
                        "upstream %s: imap_login = master needs master_user and master_password_file",
                        u->name);
                return CG_E_INVAL;
            }
        }
        for (const cg_listener_cfg *o = cfg->listeners; o < l; o++) {
            if (o->addrlen == l->addrlen && memcmp(&o->addr, &l->addr, l->addrlen) == 0) {
                fail_at(p, key_line(s, "listen"), "listen: %s is also [listener %s]'s address",
                        l->listen, o->name);
                return CG_E_INVAL;
            }
        }
    }
    return 0;
}

int cg_config_load(const char *path, cg_config **out, char *err, size_t errlen)
{
    *out = NULL;
    parser p = { .path = path };
    p.f = fopen(path, "r");
    if (!p.f) {
        snprintf(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
        return CG_E_IO;
    }
    cg_config *cfg = xcalloc(1, sizeof *cfg);
    p.cfg = cfg;
    cfg->path = xstrdup(path);
    const char *slash = strrchr(path, '/');
    if (slash) {
        cfg->dir = xcalloc(1, (size_t)(slash - path) + 2);
        memcpy(cfg->dir, path, (size_t)(slash - path) + (slash == path));
    } else {
        cfg->dir = xstrdup("");
    }
    int rc = ini_parse_stream(reader, &p, handler, &p);
    if (!p.failed && rc != 0)
        fail_at(&p, rc > 0 ? (unsigned)rc : p.lineno, rc > 0 ? "expected 'key = value' or [section]"
                                                               : "cannot read the file");
    if (!p.failed && ferror(p.f))
        fail_at(&p, p.lineno, "read error");
    fclose(p.f);
    adopt_sections(&p);
    if (!p.failed)
        finish(&p);
    free(p.long_value);
    free(p.sects);
    if (p.failed) {
        cg_strlcpy(err, p.err, errlen);
        cg_config_free(cfg);
        return CG_E_PARSE;
    }
    *out = cfg;
    return 0;
}

static void free_fields(void *obj, enum sect_kind kind)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->sect != kind)
            continue;
        switch (k->type) {
        case K_STR:
        case K_PATH:
        case K_RFILE:
        case K_SECRET:
        case K_HEADER:
            free(*(char **)((char *)obj + k->off));
            break;
        default:
            break;
        }
    }
}

void cg_config_free(cg_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        free_fields(&cfg->listeners[i], S_LISTENER);
        free(cfg->listeners[i].name);
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        cg_upstream_cfg *u = &cfg->upstreams[i];
        if (u->master_password)
            explicit_bzero(u->master_password, strlen(u->master_password));
        free_fields(u, S_UPSTREAM);
        free(u->name);
    }
    free(cfg->listeners);
    free(cfg->upstreams);
    free_fields(cfg, S_GATEWAY);
    free_fields(&cfg->saml, S_SAML);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

const cg_listener_cfg *cg_config_listener(const cg_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return &cfg->listeners[i];
    return NULL;
}

const char *cg_auth_method_name(unsigned bit)
{
    for (const enum_val *e = e_auth; e->name; e++)
        if ((unsigned)e->value == bit)
            return e->name;
    return "none";
}

bool cg_config_key(size_t i, const char **section, const char **name)
{
    static const char *const sect_names[] = { "gateway", "listener", "upstream", "saml" };
    if (i >= NKEYS)
        return false;
    *section = sect_names[keys[i].sect];
    *name = keys[i].name;
    return true;
}
