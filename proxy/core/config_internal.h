/* proxy/core/config_internal.h — internal to the configuration loader: the
 * key table's types, the parser's state, and what its files share.
 * config.c: the key table and loading; config_reader.c: the lines in front
 * of inih; config_value.c: a value by its key's type; config_check.c: the
 * checks across keys and sections. */
#ifndef CG_CONFIG_INTERNAL_H
#define CG_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proxy/core/config.h"

/* The most keys the table may hold (checked at compile time). */
#define CG_CONFIG_KEYS_MAX 128

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
    K_DURATION, /* N, Ns, Nm or Nh -> unsigned seconds with min/max */
};

typedef struct enum_val {
    const char *name;
    int value;
} enum_val;

typedef struct key_def {
    enum sect_kind sect;
    const char *name;
    enum key_type type;
    size_t off;
    const char *def; /* default, parsed like a written value; NULL: none */
    uint64_t min, max;
    const enum_val *enums;
} key_def;


/* One section instance while parsing: where it started and which keys it
 * set (for duplicates and for error lines). */
typedef struct sect {
    enum sect_kind kind;
    void *obj;
    unsigned header_line;
    unsigned key_line[CG_CONFIG_KEYS_MAX]; /* per key of the table, 0: not set */
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

/* config.c: the table (deploy/cpmgate.conf names every key) */
extern const key_def cg_config_keys[];
extern const size_t cg_config_nkeys;
extern const enum_val cg_config_auth_methods[]; /* auth = ... */

/* config.c: the first error wins; "PATH:LINE: " is put in front. */
void cg_config_fail(parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Configuration loading only: out of memory at start-up aborts. */
char *cg_config_strdup(const char *s);
void *cg_config_calloc(size_t n, size_t size);
/* Cuts spaces and tabs at both ends (in place at the end). */
const char *cg_config_trim(char *s);
/* The line key `name` of section s was set on, else the section's header. */
unsigned cg_config_key_line(const sect *s, const char *name);

/* config_reader.c: the ini_reader in front of inih, one physical line per
 * call (stream: the parser). */
char *cg_config_reader(char *str, int num, void *stream);

/* config_value.c: parses v for key k into obj; returns NULL, or an error
 * sentence (static, or written into why). */
const char *cg_config_set_value(parser *p, const key_def *k, void *obj, const char *v,
                                char *why, size_t whylen);
/* config_value.c: the names of e (all, or those whose bit is in bits),
 * comma-separated, into out (cap: its sizeof); returns out. */
const char *cg_config_names(const enum_val *e, bool all, unsigned bits, char *out, size_t cap);

/* config_check.c: moves the listener and upstream objects into the
 * configuration's arrays (cg_config_free owns them from then on), then
 * checks what single keys cannot: defaults applied, required keys,
 * combinations, references between sections. */
void cg_config_adopt(parser *p);
int cg_config_check(parser *p);

#endif
