/* proxy/core/config.h — the configuration file (SPEC section 10) as data: one table of
 * keys drives parsing, defaults, validation and `cpmgate -t`. A loaded
 * configuration is immutable; SIGHUP builds a new one. */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum cg_proto_kind { CG_PROTO_IMAP = 1, CG_PROTO_HTTP = 2 };
enum cg_tls_mode { CG_TLS_IMPLICIT = 1, CG_TLS_STARTTLS = 2, CG_TLS_NONE = 3 };
enum cg_auth_method {
    CG_AUTH_CERT = 1 << 0,
    CG_AUTH_PSK = 1 << 1,
    CG_AUTH_ADDRESS = 1 << 2,
    CG_AUTH_LOGIN = 1 << 3,
    CG_AUTH_DIGEST = 1 << 4,
    CG_AUTH_SAML = 1 << 5,
};
enum cg_insecure { CG_INSECURE_REJECT = 1, CG_INSECURE_REDIRECT = 2 };
enum cg_imap_login { CG_IMAP_LOGIN_MASTER = 1, CG_IMAP_LOGIN_PASSTHROUGH = 2 };

typedef struct cg_upstream_cfg {
    char *name;
    char *address;                /* host:port as written */
    struct sockaddr_storage addr; /* resolved at load */
    socklen_t addrlen;
    int imap_login;               /* enum cg_imap_login */
    char *master_user;
    char *master_password;        /* read from master_password_file */
    bool tls;
    char *ca, *server_name, *certificate, *private_key;
    uint8_t pin_sha256[32];
    bool has_pin;
    unsigned connect_timeout;     /* seconds */
    unsigned response_timeout;
    unsigned pool_size;
    bool proxy_protocol;
    char *principal_header;       /* NULL when "none" */
    char *host;                   /* HTTP: the Host the backend gets; NULL:
                                   * the name the request matched */
} cg_upstream_cfg;

typedef struct cg_listener_cfg {
    char *name;
    int protocol;                 /* enum cg_proto_kind */
    char *listen;                 /* as written */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int tls;                      /* enum cg_tls_mode */
    char *certificate, *private_key, *client_ca, *crl;
    unsigned auth;                /* enum cg_auth_method bits */
    char *digest_realm;
    unsigned digest_nonce_lifetime; /* seconds; older nonces are stale */
    char *upstream_name;
    cg_upstream_cfg *upstream;    /* resolved */
    int insecure;                 /* enum cg_insecure */
    char *redirect_to;
    bool allow_plaintext;
    bool tls12, tls13;            /* tls_versions */
    char *ciphers, *ciphersuites; /* NULL: defaults */
    unsigned handshake_timeout, idle_timeout, client_timeout;
    unsigned max_conn_per_addr;
    size_t max_line, max_literal, max_headers, max_header_bytes, max_body;
    unsigned login_failures_per_minute;
    char *server_names;           /* HTTP over TLS: names served (a checked
                                   * list, proxy/http/host.h); by default the
                                   * certificate's DNS and IP names */
} cg_listener_cfg;

typedef struct cg_saml_cfg {
    bool present;
    char *idp_certificate, *issuer, *audience;
    unsigned clock_skew;
} cg_saml_cfg;

typedef struct cg_config {
    char *path;                   /* the file, as given */
    char *dir;                    /* its directory: base of relative paths */
    unsigned workers;             /* resolved: auto = online CPUs */
    char *policy_db, *audit_db, *audit_key, *content_db; /* policy_db: a file or a URL */
    char *policy_db_password;     /* read from policy_db_password_file */
    bool audit_fail_closed;
    char *admin_listen;           /* NULL: off */
    struct sockaddr_storage admin_addr;
    socklen_t admin_addrlen;
    unsigned admin_timeout;       /* seconds for a whole request and answer */
    unsigned admin_max_connections;
    char *user, *group, *pid_file;
    unsigned drain_timeout;
    unsigned audit_checkpoint_records, audit_checkpoint_seconds;
    int log_level;                /* enum cg_log_level (common/cg_log.h) */
    int log_format;               /* enum cg_log_format */
    char *node_id;                /* in every audit record; default: the host name */
    unsigned policy_max_age;      /* seconds; 0: unset (/healthz ignores the age) */
    char *policy_cache;           /* the verified copy of the last policy; NULL: none */
    cg_listener_cfg *listeners;
    size_t nlisteners;
    cg_upstream_cfg *upstreams;
    size_t nupstreams;
    cg_saml_cfg saml;
} cg_config;

/* Loads and validates path. On error returns a negative code and writes
 * "file:line: message" (line 0 for whole-file problems) to err. */
int cg_config_load(const char *path, cg_config **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void cg_config_free(cg_config *cfg);

const cg_listener_cfg *cg_config_listener(const cg_config *cfg,
                                          const char *name);
const char *cg_auth_method_name(unsigned method_bit);

/* The key table, for documentation checks: section ("gateway",
 * "listener", "upstream", "saml") and key name of entry i, false past the
 * end. */
bool cg_config_key(size_t i, const char **section, const char **name);

#endif
