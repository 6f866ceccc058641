/* proxy/http/route.c — requests for a remote CPM environment (SPEC section
 * 7): a path under a route's http_prefix goes to that domain's gateway
 * with the prefix removed, the originator (NAME@local_domain) and this
 * gateway's transaction id set; a request that already acts for a remote
 * user is never routed onward; Destination and If are made the remote
 * gateway's paths, or refused when they leave the environment; what the
 * remote gateway answers (Location, multistatus hrefs) is made local
 * again. The local ACL has judged the full local path before. */
#include <stdio.h>
#include <string.h>

#include "common/cg_util.h"
#include "proxy/http/internal.h"

static cg_http_step refuse(cg_http_refusal *no, int status, const char *detail)
{
    *no = (cg_http_refusal){ .status = status, .detail = detail };
    return CG_HTTP_REFUSE;
}

/* The path the remote gateway gets for a local canonical path under r's
 * prefix (the prefix's last '/' stays), or NULL when it is not under it. */
static const char *remote_path(const cg_route_cfg *r, const char *canon)
{
    size_t n = r->http_prefix_len;
    if (strncmp(canon, r->http_prefix, n - 1) != 0)
        return NULL;
    if (canon[n - 1] == '\0')
        return "/";
    return canon[n - 1] == '/' ? canon + n - 1 : NULL;
}

/* After authentication and a peer's originator (originator.c): the route
 * of the path, if any, and what goes with it. A request acting for a
 * remote user, or any of a peer's server principal, is never routed
 * onward: 508, as a loop that would otherwise go on. */
cg_http_step cg_http_stage_route(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    const cg_config *cfg = x->ci->config;
    r->route = NULL;
    if (!cfg || !cfg->nroutes || s->ex->req.head.form == CG_HTTP_ASTERISK)
        return CG_HTTP_NEXT;
    r->route = cg_config_route_of_path(cfg, r->path);
    if (!r->route)
        return CG_HTTP_NEXT;
    if (x->who->is_server || r->originator[0]) {
        r->decision = "deny";
        return refuse(no, 508, "a request for a remote user is not routed onward");
    }
    const char *path = remote_path(r->route, r->canon);
    if (!path)
        return refuse(no, 400, "malformed request target"); /* canonical: cannot be */
    r->fwd_canon = path;
    int n = snprintf(r->route_user, sizeof r->route_user, "%s@%s", x->who->name,
                     cfg->local_domain);
    if (n < 0 || (size_t)n >= sizeof r->route_user)
        return refuse(no, 403, "originator name too long");
    /* the remote gateway serves its own names: the Host its TLS name says */
    const cg_upstream_cfg *u = r->route->http;
    cg_strlcpy(r->fwd_host, u->host ? u->host : u->server_name, sizeof r->fwd_host);
    return CG_HTTP_NEXT;
}

/* COPY and MOVE stay in one environment: a Destination under the same
 * prefix is made the remote gateway's path; one that leaves it (to this
 * gateway, or to another route) names another server (RFC 4918 9.8.5). */
cg_http_step cg_http_stage_route_destination(http_sess *s, cg_http_stage_ctx *x,
                                             cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    if (!x->dest_canon || !x->ci->config || !x->ci->config->nroutes)
        return CG_HTTP_NEXT;
    const cg_route_cfg *dr = cg_config_route_of_path(x->ci->config, r->dest);
    if (dr != r->route)
        return refuse(no, 502, "Destination is in another environment");
    if (dr && !(x->dest_canon = remote_path(dr, x->dest_canon)))
        return refuse(no, 400, "malformed Destination");
    return CG_HTTP_NEXT;
}

/* If (RFC 4918 10.4) on a routed request: each resource tag, canonical by
 * now, loses the prefix; a tag outside the route is refused. In place
 * (the text only gets shorter). */
cg_http_step cg_http_stage_route_if(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_route_cfg *rt = s->ex->r.route;
    if (!rt || !x->if_out)
        return CG_HTTP_NEXT;
    char *in = x->if_out, *out = x->if_out;
    int depth = 0;
    while (*in) {
        if (*in == '(' || *in == ')')
            depth += *in == '(' ? 1 : -1;
        if (*in != '<' || depth != 0) {
            *out++ = *in++;
            continue;
        }
        char *end = strchr(in, '>');
        if (!end)
            return refuse(no, 400, "malformed If header");
        *end = '\0';
        const char *p = remote_path(rt, in + 1);
        if (!p)
            return refuse(no, 502, "If header names another environment");
        size_t pl = strlen(p);
        *out++ = '<';
        memmove(out, p, pl);
        out += pl;
        *out++ = '>';
        in = end + 1;
    }
    *out = '\0';
    return CG_HTTP_NEXT;
}
