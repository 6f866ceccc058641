/* proxy/core/config_check.c — what the configuration must satisfy beyond
 * single values: defaults applied, required keys, listener and upstream
 * combinations (TLS, auth methods, server_names), addresses resolved,
 * references between sections, one address per listener. */
#include "proxy/core/config_internal.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "proxy/core/server_names.h"
#include "store/audit.h"

static int apply_defaults(parser *p, sect *s)
{
    for (size_t i = 0; i < cg_config_nkeys; i++) {
        const key_def *k = &cg_config_keys[i];
        if (k->sect != s->kind || s->key_line[i] || !k->def)
            continue;
        char why[512];
        const char *err = cg_config_set_value(p, k, s->obj, k->def, why, sizeof why);
        if (err) {
            cg_config_fail(p, s->header_line, "default of %s: %s", k->name, err);
            return CG_E_INVAL;
        }
    }
    return 0;
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

/* server_names (proxy/http/host.h): an HTTP listener serves the names of its
 * certificate unless told otherwise; 421 for any other. */
static int validate_server_names(parser *p, sect *s)
{
    cg_listener_cfg *l = s->obj;
    const char *why;
    if (l->protocol != CG_PROTO_HTTP || l->tls == CG_TLS_NONE) {
        if (l->server_names) {
            cg_config_fail(p, cg_config_key_line(s, "server_names"), "server_names is for http listeners with tls");
            return CG_E_INVAL;
        }
        return 0;
    }
    if (l->server_names && cg_server_names_check(l->server_names, &why) < 0) {
        cg_config_fail(p, cg_config_key_line(s, "server_names"), "server_names: %s", why);
        return CG_E_INVAL;
    }
    if (!l->server_names && !(l->server_names = cg_server_names_of_cert(l->certificate, &why))) {
        cg_config_fail(p, cg_config_key_line(s, "certificate"), "server_names: %s (set server_names)", why);
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
        cg_config_fail(p, s->header_line, "[listener %s]: protocol is required (imap or http)", l->name);
        return CG_E_INVAL;
    }
    if (!l->listen) {
        cg_config_fail(p, s->header_line, "[listener %s]: listen is required", l->name);
        return CG_E_INVAL;
    }
    if (parse_hostport(l->listen, true, &l->addr, &l->addrlen, why, sizeof why) < 0) {
        cg_config_fail(p, cg_config_key_line(s, "listen"), "listen: %s", why);
        return CG_E_INVAL;
    }
    if (!l->idle_timeout)
        l->idle_timeout = l->protocol == CG_PROTO_IMAP ? 1860 : 75;
    /* imap: Dovecot's own imap_max_line_length (a legal RFC 2971 ID is up
     * to about 32 KiB); http: the request line */
    if (!l->max_line)
        l->max_line = l->protocol == CG_PROTO_IMAP ? 65536 : 8192;
    if (l->tls == CG_TLS_STARTTLS && l->protocol != CG_PROTO_IMAP) {
        cg_config_fail(p, cg_config_key_line(s, "tls"), "tls = starttls is for imap listeners only");
        return CG_E_INVAL;
    }
    if (l->tls != CG_TLS_NONE) {
        if (!l->certificate || !l->private_key) {
            cg_config_fail(p, s->header_line, "[listener %s]: tls = %s needs certificate and private_key",
                           l->name, l->tls == CG_TLS_IMPLICIT ? "implicit" : "starttls");
            return CG_E_INVAL;
        }
        if (!l->tls12 && !l->tls13) {
            cg_config_fail(p, cg_config_key_line(s, "tls_versions"), "tls_versions: no version left");
            return CG_E_INVAL;
        }
    }
    bool plain_http = l->protocol == CG_PROTO_HTTP && l->tls == CG_TLS_NONE;
    if (plain_http) {
        /* answers 426 or 308 to everything: needs neither auth nor upstream */
        if (l->insecure == CG_INSECURE_REDIRECT && !l->redirect_to) {
            cg_config_fail(p, cg_config_key_line(s, "insecure"), "insecure = redirect needs redirect_to");
            return CG_E_INVAL;
        }
        if (l->redirect_to && strncmp(l->redirect_to, "https://", 8) != 0) {
            cg_config_fail(p, cg_config_key_line(s, "redirect_to"), "redirect_to: expected an https:// URL");
            return CG_E_INVAL;
        }
        return 0;
    }
    if (!l->auth) {
        cg_config_fail(p, s->header_line, "[listener %s]: auth is required", l->name);
        return CG_E_INVAL;
    }
    unsigned allowed = l->protocol == CG_PROTO_IMAP
                           ? (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS | CG_AUTH_LOGIN)
                           : (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS | CG_AUTH_DIGEST | CG_AUTH_SAML);
    char names[128];
    if (l->auth & ~allowed) {
        cg_config_fail(p, cg_config_key_line(s, "auth"), "auth: %s not available for %s listeners",
                       cg_config_names(cg_config_auth_methods, false, l->auth & ~allowed,
                                       names, sizeof names),
                       l->protocol == CG_PROTO_IMAP ? "imap" : "http");
        return CG_E_INVAL;
    }
    if (l->tls == CG_TLS_NONE && (l->auth & (CG_AUTH_CERT | CG_AUTH_PSK))) {
        cg_config_fail(p, cg_config_key_line(s, "auth"), "auth: cert and psk need tls");
        return CG_E_INVAL;
    }
    if (l->tls == CG_TLS_NONE && l->allow_plaintext && !(l->auth & CG_AUTH_ADDRESS)) {
        cg_config_fail(p, cg_config_key_line(s, "allow_plaintext"), "allow_plaintext needs auth = address");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_CERT) && !l->client_ca) {
        cg_config_fail(p, cg_config_key_line(s, "auth"), "auth = cert needs client_ca");
        return CG_E_INVAL;
    }
    if (l->crl && !l->client_ca) {
        cg_config_fail(p, cg_config_key_line(s, "crl"), "crl needs client_ca");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_DIGEST) && !l->digest_realm) {
        cg_config_fail(p, cg_config_key_line(s, "auth"), "auth = digest needs digest_realm");
        return CG_E_INVAL;
    }
    if ((l->auth & CG_AUTH_SAML) && !cfg->saml.present) {
        cg_config_fail(p, cg_config_key_line(s, "auth"), "auth = saml needs a [saml] section");
        return CG_E_INVAL;
    }
    if (!l->upstream_name) {
        cg_config_fail(p, s->header_line, "[listener %s]: upstream is required", l->name);
        return CG_E_INVAL;
    }
    return validate_server_names(p, s);
}

static int validate_upstream(parser *p, sect *s)
{
    cg_upstream_cfg *u = s->obj;
    char why[256];
    if (!u->address) {
        cg_config_fail(p, s->header_line, "[upstream %s]: address is required", u->name);
        return CG_E_INVAL;
    }
    if (parse_hostport(u->address, false, &u->addr, &u->addrlen, why, sizeof why) < 0) {
        cg_config_fail(p, cg_config_key_line(s, "address"), "address: %s", why);
        return CG_E_INVAL;
    }
    if (u->tls) {
        if (!u->ca && !u->has_pin) {
            cg_config_fail(p, cg_config_key_line(s, "tls"),
                           "tls = yes needs ca or pin_sha256 (the backend's certificate is always verified)");
            return CG_E_INVAL;
        }
        if (!u->server_name) {
            char host[256];
            cg_strlcpy(host, u->address[0] == '[' ? u->address + 1 : u->address, sizeof host);
            char *end = strrchr(host, u->address[0] == '[' ? ']' : ':');
            if (end)
                *end = '\0';
            u->server_name = cg_config_strdup(host);
        }
    } else if (u->ca || u->has_pin || u->certificate || u->private_key) {
        cg_config_fail(p, s->header_line, "[upstream %s]: ca, pin_sha256, certificate and private_key need tls = yes",
                       u->name);
        return CG_E_INVAL;
    }
    if (!u->certificate != !u->private_key) {
        cg_config_fail(p, s->header_line, "[upstream %s]: certificate and private_key go together", u->name);
        return CG_E_INVAL;
    }
    const char *hn;
    size_t hl;
    if (u->host && (!cg_host_name(u->host, strlen(u->host), &hn, &hl) ||
                    strpbrk(u->host, " \t,"))) {
        cg_config_fail(p, cg_config_key_line(s, "host"), "host: expected a host name, optionally with :port");
        return CG_E_INVAL;
    }
    return 0;
}

/* Moves every listener and upstream object into the config's arrays, in
 * file order, so that cg_config_free owns them whatever happens next. */
void cg_config_adopt(parser *p)
{
    cg_config *cfg = p->cfg;
    size_t nl = 0, nu = 0;
    for (size_t i = 0; i < p->nsects; i++) {
        nl += p->sects[i].kind == S_LISTENER;
        nu += p->sects[i].kind == S_UPSTREAM;
    }
    cfg->listeners = nl ? cg_config_calloc(nl, sizeof *cfg->listeners) : NULL;
    cfg->upstreams = nu ? cg_config_calloc(nu, sizeof *cfg->upstreams) : NULL;
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

int cg_config_check(parser *p)
{
    cg_config *cfg = p->cfg;
    sect *gw = NULL;
    for (size_t i = 0; i < p->nsects; i++)
        if (p->sects[i].kind == S_GATEWAY)
            gw = &p->sects[i];
    if (!gw) {
        cg_config_fail(p, 0, "no [gateway] section");
        return CG_E_INVAL;
    }
    for (size_t i = 0; i < p->nsects; i++)
        if (apply_defaults(p, &p->sects[i]) < 0)
            return CG_E_INVAL;
    if (!cfg->audit_key) {
        cg_config_fail(p, gw->header_line, "[gateway]: audit_key is required (cpmgatectl audit keygen)");
        return CG_E_INVAL;
    }
    if (!cfg->node_id) {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) < 0 || !cg_audit_node_ok(host)) {
            cg_config_fail(p, gw->header_line, "[gateway]: the host name '%s' cannot be a "
                           "node id: set node_id", host);
            return CG_E_INVAL;
        }
        cfg->node_id = cg_config_strdup(host);
    } else if (!cg_audit_node_ok(cfg->node_id)) {
        cg_config_fail(p, cg_config_key_line(gw, "node_id"),
                       "node_id: 1 to %d of A-Z a-z 0-9 . _ - expected", CG_AUDIT_NODE_MAX);
        return CG_E_INVAL;
    }
    if (cfg->admin_listen) {
        char why[256];
        if (parse_hostport(cfg->admin_listen, true, &cfg->admin_addr, &cfg->admin_addrlen, why,
                           sizeof why) < 0) {
            cg_config_fail(p, cg_config_key_line(gw, "admin_listen"), "admin_listen: %s", why);
            return CG_E_INVAL;
        }
    }
    if (cfg->saml.present) {
        sect *ss = NULL;
        for (size_t i = 0; i < p->nsects; i++)
            if (p->sects[i].kind == S_SAML)
                ss = &p->sects[i];
        if (!cfg->saml.idp_certificate || !cfg->saml.issuer || !cfg->saml.audience) {
            cg_config_fail(p, ss->header_line, "[saml]: idp_certificate, issuer and audience are required");
            return CG_E_INVAL;
        }
    }
    if (cfg->nlisteners == 0) {
        cg_config_fail(p, 0, "no [listener NAME] section");
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
                cg_config_fail(p, cg_config_key_line(s, "upstream"), "upstream: no [upstream %s] section",
                               l->upstream_name);
                return CG_E_INVAL;
            }
            cg_upstream_cfg *u = l->upstream;
            bool gateway_auth = (l->auth & (CG_AUTH_CERT | CG_AUTH_PSK | CG_AUTH_ADDRESS)) != 0;
            if (l->protocol == CG_PROTO_IMAP && u->imap_login == CG_IMAP_LOGIN_MASTER && gateway_auth &&
                (!u->master_user || !u->master_password)) {
                cg_config_fail(p, cg_config_key_line(s, "upstream"),
                               "upstream %s: imap_login = master needs master_user and master_password_file",
                               u->name);
                return CG_E_INVAL;
            }
        }
        for (const cg_listener_cfg *o = cfg->listeners; o < l; o++) {
            if (o->addrlen == l->addrlen && memcmp(&o->addr, &l->addr, l->addrlen) == 0) {
                cg_config_fail(p, cg_config_key_line(s, "listen"), "listen: %s is also [listener %s]'s address",
                               l->listen, o->name);
                return CG_E_INVAL;
            }
        }
    }
    return 0;
}
