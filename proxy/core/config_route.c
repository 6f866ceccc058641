/* proxy/core/config_route.c — [route DOMAIN] sections (SPEC section 7): the
 * upstreams a remote environment is reached through, resolved and checked
 * (TLS with this gateway's own certificate, one route per upstream), its
 * HTTP prefix, local_domain; an IMAP listener's route = DOMAIN; and the
 * route a request path is under. */
#include "proxy/core/config_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_remote.h"

static sect *section_of(parser *p, const void *obj)
{
    for (size_t i = 0; i < p->nsects; i++)
        if (p->sects[i].obj == obj)
            return &p->sects[i];
    return NULL;
}

/* The upstream a route names for one protocol: present, over TLS with this
 * gateway's own client certificate, serving no other route or listener. */
static int resolve_upstream(parser *p, sect *s, cg_route_cfg *r, const char *key,
                            const char *name, cg_upstream_cfg **out)
{
    cg_config *cfg = p->cfg;
    unsigned line = cg_config_key_line(s, key);
    cg_upstream_cfg *u = NULL;
    for (size_t j = 0; j < cfg->nupstreams; j++)
        if (strcmp(cfg->upstreams[j].name, name) == 0)
            u = &cfg->upstreams[j];
    if (!u) {
        cg_config_fail(p, line, "%s: no [upstream %s] section", key, name);
        return CG_E_INVAL;
    }
    if (!u->tls) {
        cg_config_fail(p, line, "%s: upstream %s must have tls = yes (a remote gateway is always reached over TLS)",
                       key, name);
        return CG_E_INVAL;
    }
    if (!u->certificate) {
        cg_config_fail(p, line, "%s: upstream %s needs certificate and private_key (this gateway's own)", key,
                       name);
        return CG_E_INVAL;
    }
    if (u->route) {
        cg_config_fail(p, line, "%s: upstream %s already serves [route %s]", key, name, u->route->domain);
        return CG_E_INVAL;
    }
    for (size_t j = 0; j < cfg->nlisteners; j++) {
        const char *ln = cfg->listeners[j].upstream_name;
        if (ln && strcmp(ln, name) == 0) {
            cg_config_fail(p, line, "%s: upstream %s is also [listener %s]'s backend", key, name,
                           cfg->listeners[j].name);
            return CG_E_INVAL;
        }
    }
    u->route = r;
    *out = u;
    return 0;
}

/* "/a/b/": starts and ends with '/', no empty, "." or ".." segment, only
 * characters that need no percent-encoding in a path. */
static bool prefix_valid(const char *v)
{
    size_t n = strlen(v);
    if (n < 2 || v[0] != '/' || v[n - 1] != '/')
        return false;
    for (const char *c = v; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || strchr("-._~/", *c);
        if (!ok || (c[0] == '/' && c[1] == '/'))
            return false;
        if (c[0] == '/' && c[1] == '.' && (c[2] == '/' || (c[2] == '.' && c[3] == '/')))
            return false;
    }
    return true;
}

static int check_route(parser *p, sect *s)
{
    cg_config *cfg = p->cfg;
    cg_route_cfg *r = s->obj;
    if (!r->imap_name && !r->http_name) {
        cg_config_fail(p, s->header_line, "[route %s]: imap or http is required", r->domain);
        return CG_E_INVAL;
    }
    if (!cfg->local_domain) {
        cg_config_fail(p, s->header_line,
                       "[route %s]: local_domain is required in [gateway] (routed users are NAME@local_domain)",
                       r->domain);
        return CG_E_INVAL;
    }
    char dom[CG_REMOTE_DOMAIN_MAX + 1];
    if (!cg_remote_domain(cfg->local_domain, strlen(cfg->local_domain), dom, sizeof dom) ||
        strcmp(dom, cfg->local_domain) != 0) {
        cg_config_fail(p, cg_config_key_line(section_of(p, cfg), "local_domain"),
                       "local_domain: expected a DNS name in lower case");
        return CG_E_INVAL;
    }
    if (!cg_remote_domain(r->domain, strlen(r->domain), dom, sizeof dom) ||
        strcmp(dom, r->domain) != 0) {
        cg_config_fail(p, s->header_line, "[route %s]: expected a DNS name in lower case", r->domain);
        return CG_E_INVAL;
    }
    if (strcmp(r->domain, cfg->local_domain) == 0) {
        cg_config_fail(p, s->header_line, "[route %s]: that is local_domain", r->domain);
        return CG_E_INVAL;
    }
    if (r->imap_name && resolve_upstream(p, s, r, "imap", r->imap_name, &r->imap) < 0)
        return CG_E_INVAL;
    if (r->http_name && resolve_upstream(p, s, r, "http", r->http_name, &r->http) < 0)
        return CG_E_INVAL;
    if (!r->http_prefix) {
        size_t n = strlen("/remote/") + strlen(r->domain) + 2;
        r->http_prefix = cg_config_calloc(1, n);
        snprintf(r->http_prefix, n, "/remote/%s/", r->domain);
    } else if (!r->http_name) {
        cg_config_fail(p, cg_config_key_line(s, "http_prefix"), "http_prefix needs http");
        return CG_E_INVAL;
    }
    if (!prefix_valid(r->http_prefix)) {
        cg_config_fail(p, cg_config_key_line(s, "http_prefix"),
                       "http_prefix: expected /path/ (letters, digits, - . _ ~ between slashes)");
        return CG_E_INVAL;
    }
    r->http_prefix_len = strlen(r->http_prefix);
    for (const cg_route_cfg *o = cfg->routes; o < r; o++) {
        if (!o->http || !r->http)
            continue;
        size_t m = o->http_prefix_len < r->http_prefix_len ? o->http_prefix_len : r->http_prefix_len;
        if (strncmp(o->http_prefix, r->http_prefix, m) == 0) {
            cg_config_fail(p, cg_config_key_line(s, "http_prefix"), "http_prefix: %s overlaps [route %s]'s %s",
                           r->http_prefix, o->domain, o->http_prefix);
            return CG_E_INVAL;
        }
    }
    return 0;
}

int cg_config_check_routes(parser *p)
{
    cg_config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        sect *s = section_of(p, &cfg->routes[i]);
        if (!s || check_route(p, s) < 0)
            return CG_E_INVAL;
    }
    return 0;
}

int cg_config_listener_route(parser *p, sect *s)
{
    cg_config *cfg = p->cfg;
    cg_listener_cfg *l = s->obj;
    if (!l->route_name)
        return 0;
    unsigned line = cg_config_key_line(s, "route");
    if (l->protocol != CG_PROTO_IMAP) {
        cg_config_fail(p, line, "route is for imap listeners (HTTP requests are routed by http_prefix)");
        return CG_E_INVAL;
    }
    if (l->upstream_name) {
        cg_config_fail(p, line, "route and upstream exclude each other (the route names the upstream)");
        return CG_E_INVAL;
    }
    for (size_t j = 0; j < cfg->nroutes; j++)
        if (strcmp(cfg->routes[j].domain, l->route_name) == 0)
            l->route = &cfg->routes[j];
    if (!l->route) {
        cg_config_fail(p, line, "route: no [route %s] section", l->route_name);
        return CG_E_INVAL;
    }
    if (!l->route->imap) {
        cg_config_fail(p, line, "route: [route %s] has no imap upstream", l->route_name);
        return CG_E_INVAL;
    }
    if (l->auth & CG_AUTH_LOGIN) {
        /* no local backend checks a password for a routed session */
        cg_config_fail(p, cg_config_key_line(s, "auth"),
                       "auth: a routed listener identifies its clients itself (cert, psk or address), not login");
        return CG_E_INVAL;
    }
    l->upstream = l->route->imap;
    return 0;
}

const cg_route_cfg *cg_config_route_of_path(const cg_config *cfg, const char *path)
{
    size_t pl = strlen(path);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const cg_route_cfg *r = &cfg->routes[i];
        if (!r->http)
            continue;
        size_t n = r->http_prefix_len;
        if (strncmp(path, r->http_prefix, n) == 0 ||
            (pl == n - 1 && strncmp(path, r->http_prefix, n - 1) == 0))
            return r;
    }
    return NULL;
}
