/* proxy/core/config.c — the configuration file (SPEC section 10), driven by one table
 * of keys: the table, loading (libinih does the INI syntax behind the line
 * reader of config_reader.c, the handler here puts each key through
 * config_value.c, config_check.c checks the whole), and freeing. */
#include "proxy/core/config_internal.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"

static const enum_val e_protocol[] = { { "imap", CG_PROTO_IMAP }, { "http", CG_PROTO_HTTP }, { NULL, 0 } };
static const enum_val e_tls[] = { { "implicit", CG_TLS_IMPLICIT }, { "starttls", CG_TLS_STARTTLS },
                                  { "none", CG_TLS_NONE }, { NULL, 0 } };
static const enum_val e_insecure[] = { { "reject", CG_INSECURE_REJECT },
                                       { "redirect", CG_INSECURE_REDIRECT }, { NULL, 0 } };
static const enum_val e_login[] = { { "master", CG_IMAP_LOGIN_MASTER },
                                    { "passthrough", CG_IMAP_LOGIN_PASSTHROUGH }, { NULL, 0 } };
static const enum_val e_fail[] = { { "closed", 1 }, { "open", 0 }, { NULL, 0 } };
static const enum_val e_log_level[] = { { "debug", CG_LOG_DEBUG }, { "info", CG_LOG_INFO },
                                        { "warn", CG_LOG_WARN },   { "error", CG_LOG_ERROR },
                                        { NULL, 0 } };
static const enum_val e_log_format[] = { { "text", CG_LOG_TEXT }, { "json", CG_LOG_JSON }, { NULL, 0 } };

const enum_val cg_config_auth_methods[] = {
    { "cert", CG_AUTH_CERT },     { "psk", CG_AUTH_PSK },       { "address", CG_AUTH_ADDRESS },
    { "login", CG_AUTH_LOGIN },   { "digest", CG_AUTH_DIGEST }, { "saml", CG_AUTH_SAML },
    { NULL, 0 },
};

#define G(f) offsetof(cg_config, f)
#define L(f) offsetof(cg_listener_cfg, f)
#define U(f) offsetof(cg_upstream_cfg, f)
#define A(f) offsetof(cg_saml_cfg, f)

/* The table: every key the file may hold, its type, default and bounds.
 * deploy/cpmgate.conf names them all. */
const key_def cg_config_keys[] = {
    { S_GATEWAY, "workers", K_WORKERS, G(workers), "auto", 1, 256, NULL },
    { S_GATEWAY, "policy_db", K_PATH, G(policy_db), "policy.db", 0, 0, NULL },
    { S_GATEWAY, "policy_db_password_file", K_SECRET, G(policy_db_password), NULL, 0, 0, NULL },
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
    { S_GATEWAY, "log_level", K_ENUM, G(log_level), "info", 0, 0, e_log_level },
    { S_GATEWAY, "log_format", K_ENUM, G(log_format), "text", 0, 0, e_log_format },
    { S_GATEWAY, "node_id", K_STR, G(node_id), NULL, 0, 0, NULL }, /* default: host name */
    { S_GATEWAY, "policy_max_age", K_DURATION, G(policy_max_age), NULL, 1, 86400 * 365, NULL },
    { S_GATEWAY, "policy_cache", K_PATH, G(policy_cache), NULL, 0, 0, NULL },

    { S_LISTENER, "protocol", K_ENUM, L(protocol), NULL, 0, 0, e_protocol },
    { S_LISTENER, "listen", K_STR, L(listen), NULL, 0, 0, NULL },
    { S_LISTENER, "tls", K_ENUM, L(tls), "implicit", 0, 0, e_tls },
    { S_LISTENER, "certificate", K_RFILE, L(certificate), NULL, 0, 0, NULL },
    { S_LISTENER, "private_key", K_RFILE, L(private_key), NULL, 0, 0, NULL },
    { S_LISTENER, "client_ca", K_RFILE, L(client_ca), NULL, 0, 0, NULL },
    { S_LISTENER, "crl", K_RFILE, L(crl), NULL, 0, 0, NULL },
    { S_LISTENER, "auth", K_AUTH, L(auth), NULL, 0, 0, cg_config_auth_methods },
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
const size_t cg_config_nkeys = CG_ARRAY_LEN(cg_config_keys);
_Static_assert(CG_ARRAY_LEN(cg_config_keys) <= CG_CONFIG_KEYS_MAX, "raise CG_CONFIG_KEYS_MAX");

void cg_config_fail(parser *p, unsigned line, const char *fmt, ...)
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

char *cg_config_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort(); /* configuration loading only: out of memory at start-up */
    return d;
}

void *cg_config_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        abort();
    return p;
}

const char *cg_config_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parser *p = user;
    (void)section;
    if (p->failed)
        return 0;
    if (!p->cur) {
        cg_config_fail(p, p->lineno, "key '%s' outside any section", name);
        return 0;
    }
    /* the reader refused control bytes in every line, so value needs no
     * check of its own here */
    if (p->long_line == p->lineno)
        value = p->long_value;
    for (size_t i = 0; i < cg_config_nkeys; i++) {
        const key_def *k = &cg_config_keys[i];
        if (k->sect != p->cur->kind || strcmp(k->name, name) != 0)
            continue;
        if (p->cur->key_line[i]) {
            cg_config_fail(p, p->lineno, "duplicate key '%s' (first at line %u)", name, p->cur->key_line[i]);
            return 0;
        }
        p->cur->key_line[i] = p->lineno;
        char why[512];
        const char *err = cg_config_set_value(p, k, p->cur->obj, value, why, sizeof why);
        if (err) {
            cg_config_fail(p, p->lineno, "%s: %s", name, err);
            return 0;
        }
        return 1;
    }
    cg_config_fail(p, p->lineno, "unknown key '%s'", name);
    return 0;
}

unsigned cg_config_key_line(const sect *s, const char *name)
{
    for (size_t i = 0; i < cg_config_nkeys; i++)
        if (cg_config_keys[i].sect == s->kind && strcmp(cg_config_keys[i].name, name) == 0 && s->key_line[i])
            return s->key_line[i];
    return s->header_line;
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
    cg_config *cfg = cg_config_calloc(1, sizeof *cfg);
    p.cfg = cfg;
    cfg->path = cg_config_strdup(path);
    const char *slash = strrchr(path, '/');
    if (slash) {
        cfg->dir = cg_config_calloc(1, (size_t)(slash - path) + 2);
        memcpy(cfg->dir, path, (size_t)(slash - path) + (slash == path));
    } else {
        cfg->dir = cg_config_strdup("");
    }
    int rc = ini_parse_stream(cg_config_reader, &p, handler, &p);
    if (!p.failed && rc != 0)
        cg_config_fail(&p, rc > 0 ? (unsigned)rc : p.lineno, rc > 0 ? "expected 'key = value' or [section]"
                                                               : "cannot read the file");
    if (!p.failed && ferror(p.f))
        cg_config_fail(&p, p.lineno, "read error");
    fclose(p.f);
    cg_config_adopt(&p);
    if (!p.failed)
        cg_config_check(&p);
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
    for (size_t i = 0; i < cg_config_nkeys; i++) {
        const key_def *k = &cg_config_keys[i];
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
    if (cfg->policy_db_password)
        explicit_bzero(cfg->policy_db_password, strlen(cfg->policy_db_password));
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
    for (const enum_val *e = cg_config_auth_methods; e->name; e++)
        if ((unsigned)e->value == bit)
            return e->name;
    return "none";
}

bool cg_config_key(size_t i, const char **section, const char **name)
{
    static const char *const sect_names[] = { "gateway", "listener", "upstream", "saml" };
    if (i >= cg_config_nkeys)
        return false;
    *section = sect_names[cg_config_keys[i].sect];
    *name = cg_config_keys[i].name;
    return true;
}
