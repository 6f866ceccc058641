/* proxy/http/stages.c — a request head's way from parsed to forwarded, as a
 * chain of stages run in order from one table (as h2o chains handlers):
 * the request's facts, its target, TLS, the audit place, Host, the
 * upstream, the policy snapshot, authentication, a peer's originator
 * (originator.c), the route (route.c), method rights, Expect, PROPFIND
 * Depth, the ACL, Destination, If (each then for the route), the body
 * limit, the content
 * gate and its answer, forwarding. Each stage ends in "next", in one
 * refusal (cg_http_refusal, answered by request.c's one answer path) or
 * with the request handed on (forwarded, answered here, waiting). The
 * order is the order the checks are answered in (SPEC section 4). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "common/cg_util.h"
#include "policy/acl.h"
#include "proxy/core/conn.h"
#include "proxy/http/dav.h"
#include "proxy/http/host.h"
#include "proxy/http/internal.h"
#include "proxy/http/parse.h"
#include "proxy/http/path.h"
#include "store/audit.h"

static cg_http_step refuse(cg_http_refusal *no, int status, const char *detail, bool close)
{
    *no = (cg_http_refusal){ .status = status, .detail = detail, .close = close };
    return CG_HTTP_REFUSE;
}

static const char *hdr_lookup(const void *hctx, const char *name, size_t *len)
{
    const cg_http_parser *p = hctx;
    const cg_http_header *h = cg_http_header_get(p, name, NULL);
    if (!h)
        return NULL;
    *len = h->value.len;
    return cg_http_str(p, h->value);
}

static void sanitize_request_id(http_sess *s)
{
    const cg_http_header *h = cg_http_header_get(&s->ex->req, "x-request-id", NULL);
    size_t o = 0;
    if (h) {
        const char *v = cg_http_str(&s->ex->req, h->value);
        for (size_t i = 0; i < h->value.len && o + 1 < sizeof s->ex->r.request_id; i++)
            if (v[i] > 0x20 && v[i] < 0x7F)
                s->ex->r.request_id[o++] = v[i];
    }
    s->ex->r.request_id[o] = '\0';
}

/* The buffers a request needs beyond its head, made at the first request
 * after the connection's idle release (an idle or never-used connection
 * holds none), and the facts of the head every later answer names. */
cg_http_step cg_http_stage_request(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)x;
    http_req *r = &s->ex->r;
    const cg_http_head *h = &s->ex->req.head;
    if (!s->ex->paths && !(s->ex->paths = malloc(sizeof *s->ex->paths)))
        return refuse(no, 503, "out of memory", true);
    if (!s->ex->resp.initialized) {
        if (cg_http_parser_init(&s->ex->resp, false, 32768, 200, 32768) < 0)
            return refuse(no, 503, "out of memory", true);
        s->ex->resp.on_body = cg_http_resp_body;
        s->ex->resp.ctx = s;
    }
    size_t ml = h->method_name.len < sizeof r->method - 1 ? h->method_name.len
                                                          : sizeof r->method - 1;
    memcpy(r->method, cg_http_str(&s->ex->req, h->method_name), ml);
    r->method[ml] = '\0';
    r->head_method = h->method == HTTP_HEAD;
    /* draining (SIGTERM): this answer is the connection's last */
    r->keep_alive = h->keep_alive && !cg_conn_draining(s->c);
    r->has_body = h->framing != CG_HTTP_BODY_NONE;
    r->body_done = !r->has_body;
    r->body_left = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length : 0;
    sanitize_request_id(s);
    return CG_HTTP_NEXT;
}

/* The path first: every later answer names the resource. */
cg_http_step cg_http_stage_target(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)x;
    http_req *r = &s->ex->r;
    const cg_http_head *h = &s->ex->req.head;
    http_paths *ps = s->ex->paths;
    char *dec = ps->path, *can = ps->canon;
    r->path = dec;
    r->canon = can;
    dec[0] = can[0] = '\0';
    if (h->form == CG_HTTP_ASTERISK) {
        memcpy(dec, "*", 2);
        memcpy(can, "*", 2);
        return CG_HTTP_NEXT;
    }
    const char *target = cg_http_str(&s->ex->req, h->path);
    const char *why = "malformed request target";
    size_t pl = 0, dl, cl;
    if (cg_http_target_split(target, h->path.len, &pl, &r->query, &r->query_len) < 0 ||
        cg_http_path_normalize(target, pl, dec, sizeof ps->path, &dl, can, sizeof ps->canon, &cl,
                               &why) < 0) {
        dec[0] = '\0';
        return refuse(no, pl > CG_HTTP_PATH_MAX ? 414 : 400, why, false);
    }
    return CG_HTTP_NEXT;
}

/* SPEC 3: a plaintext listener serves nothing; it redirects or refuses. */
cg_http_step cg_http_stage_tls(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_listener_cfg *l = x->ci->listener;
    const http_req *r = &s->ex->r;
    if (l->tls != CG_TLS_NONE)
        return CG_HTTP_NEXT;
    if (l->insecure == CG_INSECURE_REDIRECT && l->redirect_to) {
        size_t rl = strlen(l->redirect_to);
        while (rl > 0 && l->redirect_to[rl - 1] == '/')
            rl--;
        snprintf(x->text, sizeof x->text, "Location: %.*s%s%s%.*s\r\n", (int)rl,
                 l->redirect_to, s->ex->req.head.form == CG_HTTP_ASTERISK ? "/" : r->canon,
                 r->query ? "?" : "", (int)r->query_len, r->query ? r->query : "");
        refuse(no, 308, "TLS required", false);
        no->extra = x->text;
        return CG_HTTP_REFUSE;
    }
    refuse(no, 426, "TLS required", true);
    no->extra = "Upgrade: TLS/1.2, HTTP/1.1\r\n";
    return CG_HTTP_REFUSE;
}

/* SPEC 5, audit_fail = closed: nothing unrecorded happens. */
cg_http_step cg_http_stage_audit(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)x;
    if (cg_audit_reserve(&s->ex->resv) == 0)
        return CG_HTTP_NEXT;
    refuse(no, 503, "audit log unavailable", true);
    no->extra = CG_HTTP_RETRY_AFTER;
    return CG_HTTP_REFUSE;
}

/* RFC 9110 7.4: a listener answers only for the names it serves
 * (server_names), and over TLS only for the name the client asked for in
 * SNI (the certificate it checked was for that name). Anything else is
 * 421, so no client picks the backend's virtual host. The backend gets
 * the upstream's fixed host, else the matched name without the client's
 * port or spelling. */
cg_http_step cg_http_stage_host(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_conn_info *ci = x->ci;
    const cg_listener_cfg *l = ci->listener;
    const cg_http_head *h = &s->ex->req.head;
    http_req *r = &s->ex->r;
    const char *list = l->server_names ? l->server_names : "*";
    bool every = strcmp(list, "*") == 0;
    const cg_http_span names[2] = {h->host, h->form == CG_HTTP_ABSOLUTE ? h->authority
                                                                       : (cg_http_span){0, 0}};
    const char *name = NULL;
    size_t nlen = 0;
    for (size_t i = 0; i < CG_ARRAY_LEN(names); i++) {
        const char *n;
        size_t nl;
        if (!names[i].len)
            continue;
        if (!cg_host_name(cg_http_str(&s->ex->req, names[i]), names[i].len, &n, &nl))
            return refuse(no, 400, "malformed Host", false);
        if (!every && !cg_http_name_served(list, n, nl, &n, &nl))
            return refuse(no, 421, "this listener does not serve that host", false);
        if (!every && ci->sni[0] && !cg_host_is_ip(ci->sni) &&
            !cg_http_same_host(ci->sni, strlen(ci->sni), n, nl))
            return refuse(no, 421, "Host differs from the TLS server name", false);
        name = n;
        nlen = nl;
    }
    const cg_upstream_cfg *u = l->upstream;
    const char *it = list;
    if (u && u->host) {
        cg_strlcpy(r->fwd_host, u->host, sizeof r->fwd_host);
    } else if (name) {
        cg_http_host_format(name, nlen, r->fwd_host, sizeof r->fwd_host);
    } else if (every || !cg_http_first_name(&it, &name, &nlen) ||
               !cg_http_host_format(name, nlen, r->fwd_host, sizeof r->fwd_host)) {
        /* HTTP/1.0 without Host: the backend still gets a 1.1 Host */
        cg_strlcpy(r->fwd_host, "localhost", sizeof r->fwd_host);
    }
    return CG_HTTP_NEXT;
}

cg_http_step cg_http_stage_upstream(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)s;
    return x->ci->listener->upstream ? CG_HTTP_NEXT
                                     : refuse(no, 502, "no upstream configured", false);
}

/* The policy the request is judged under, held until it is forwarded. */
cg_http_step cg_http_stage_policy(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)s;
    x->snap = cg_snapshot_acquire();
    return x->snap ? CG_HTTP_NEXT : refuse(no, 503, "policy not loaded", true);
}

cg_http_step cg_http_stage_authenticate(http_sess *s, cg_http_stage_ctx *x,
                                        cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    cg_http_auth au;
    cg_http_authenticate(x->ci, &s->ex->req, r->method, x->snap, &au);
    cg_strlcpy(r->principal, au.principal, sizeof r->principal);
    r->auth_method = au.method;
    if (au.status == 401) {
        cg_http_challenges(x->ci->listener, au.stale, x->text, sizeof x->text);
        refuse(no, 401, au.detail, false);
        no->reason = au.reason;
        no->extra = x->text;
        return CG_HTTP_REFUSE;
    }
    if (au.status)
        return refuse(no, au.status, au.detail, false);
    const cg_principal *p = au.who;
    if (!p || !p->enabled)
        return refuse(no, 403, p ? "principal disabled" : "principal unknown", false);
    cg_strlcpy(r->principal, p->name, sizeof r->principal);
    r->principal_id = p->id;
    x->who = p;
    return CG_HTTP_NEXT;
}

/* The rights the method needs (SPEC 4); a method outside the table is 405. */
cg_http_step cg_http_stage_method(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_http_head *h = &s->ex->req.head;
    if (!cg_http_method_rights(s->ex->r.method, &x->src, &x->dst, &x->subtree)) {
        snprintf(x->text, sizeof x->text, "Allow: %s\r\n", cg_http_allow);
        refuse(no, 405, "method not allowed", false);
        no->extra = x->text;
        return CG_HTTP_REFUSE;
    }
    if (h->form == CG_HTTP_ASTERISK && h->method != HTTP_OPTIONS)
        return refuse(no, 400, "asterisk-form target", false);
    return CG_HTTP_NEXT;
}

/* Expect (RFC 9110 10.1.1): 100-continue is answered by the gateway once
 * the request is authorised; other expectations cannot be met. */
cg_http_step cg_http_stage_expect(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)x;
    const cg_http_header *ex = cg_http_header_get(&s->ex->req, "expect", NULL);
    if (!ex)
        return CG_HTTP_NEXT;
    if (!cg_http_span_eq(&s->ex->req, ex->value, "100-continue"))
        return refuse(no, 417, "unsupported expectation", true);
    s->ex->r.expect_continue = s->ex->r.has_body;
    return CG_HTTP_NEXT;
}

/* PROPFIND only with Depth 0 or 1; a Depth: 1 answer is filtered. */
cg_http_step cg_http_stage_depth(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    (void)x;
    if (s->ex->req.head.method != HTTP_PROPFIND)
        return CG_HTTP_NEXT;
    const cg_http_header *dh = cg_http_header_get(&s->ex->req, "depth", NULL);
    bool d0 = dh && cg_http_span_eq(&s->ex->req, dh->value, "0");
    bool d1 = dh && cg_http_span_eq(&s->ex->req, dh->value, "1");
    if (!d0 && !d1) {
        /* RFC 4918 9.1: no Depth means infinity */
        refuse(no, 403, "PROPFIND with Depth: infinity", false);
        no->xml_body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                       "<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n";
        return CG_HTTP_REFUSE;
    }
    /* a remote environment's answer always: its hrefs become local paths */
    s->ex->r.filter_multistatus = d1 || s->ex->r.route;
    return CG_HTTP_NEXT;
}

/* Decides every right in rights on path (and, for subtree operations,
 * below it); the first one denied is the refusal. */
static cg_http_step judge(http_sess *s, cg_http_stage_ctx *x, unsigned rights,
                          const char *path, bool subtree, cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    const struct cg_acl *acl = cg_snapshot_acl(x->snap);
    const char *originator = r->originator[0] ? r->originator : NULL;
    for (unsigned bit = 1; bit <= CG_RIGHT_DELETE; bit <<= 1) {
        if (!(rights & bit))
            continue;
        cg_decision d = cg_acl_decide_as(acl, x->who, originator, CG_SVC_HTTP, bit, path,
                                         strlen(path), '/');
        r->rule_id = d.rule_id;
        if (!d.allow) {
            r->decision = "deny";
            snprintf(x->text, sizeof x->text, "%s denied on \"%.256s\"", cg_right_name(bit),
                     path);
            return refuse(no, 403, x->text, false);
        }
        if (subtree) {
            /* SPEC 4: MOVE /a/ must not carry /a/secret/ out from under a
             * deny; any target may be a collection, so always check */
            char prefix[CG_HTTP_PATH_MAX + 2];
            size_t pl = strlen(path);
            memcpy(prefix, path, pl);
            if (pl == 0 || prefix[pl - 1] != '/')
                prefix[pl++] = '/';
            prefix[pl] = '\0';
            int64_t rid = 0;
            if (!cg_acl_subtree_clear_as(acl, x->who, originator, CG_SVC_HTTP, bit, prefix, pl,
                                         '/', &rid)) {
                r->decision = "deny";
                r->rule_id = rid;
                snprintf(x->text, sizeof x->text, "%s denied below \"%.256s\"",
                         cg_right_name(bit), path);
                return refuse(no, 403, x->text, false);
            }
        }
    }
    return CG_HTTP_NEXT;
}

/* The ACL on the request path (an asterisk-form OPTIONS names none). */
cg_http_step cg_http_stage_acl(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    if (!x->src || s->ex->req.head.form == CG_HTTP_ASTERISK)
        return CG_HTTP_NEXT;
    return judge(s, x, x->src, s->ex->r.path, x->subtree, no);
}

/* A header URL that is not a path of this gateway: another server's is
 * 502 (RFC 4918 9.8.5), too long or malformed 400; words are the header's
 * sentences for those three, in that order. */
static cg_http_step url_refusal(cg_http_dav_url v, const char *const words[3],
                                cg_http_refusal *no)
{
    if (v == CG_HTTP_DAV_URL_OTHER_HOST)
        return refuse(no, 502, words[0], false);
    return refuse(no, 400, words[v == CG_HTTP_DAV_URL_TOO_LONG ? 1 : 2], false);
}

/* COPY and MOVE: the Destination made the canonical path of this gateway
 * (RFC 4918 10.3) and judged like the target, its whole subtree. */
cg_http_step cg_http_stage_destination(http_sess *s, cg_http_stage_ctx *x,
                                       cg_http_refusal *no)
{
    if (!x->dst)
        return CG_HTTP_NEXT;
    const cg_http_head *h = &s->ex->req.head;
    const cg_http_header *dh = cg_http_header_get(&s->ex->req, "destination", NULL);
    if (!dh)
        return refuse(no, 400, "Destination header missing", false);
    /* RFC 9110 15.5.15 (414) is for the target; a header gets 400 */
    size_t vl = dh->value.len, cl;
    if (vl > CG_HTTP_PATH_MAX)
        return refuse(no, 400, "Destination too long", false);
    http_paths *ps = s->ex->paths;
    static const char *const words[] = {"Destination names another server",
                                        "Destination too long", "malformed Destination"};
    cg_http_dav_url v = cg_http_dav_url_canon(
        cg_http_str(&s->ex->req, dh->value), vl, h->host.len ? cg_http_str(&s->ex->req, h->host) : "",
        h->host.len, x->ci->tls, ps->dest, sizeof ps->dest, ps->dest_canon,
        sizeof ps->dest_canon, &cl);
    if (v != CG_HTTP_DAV_URL_OURS)
        return url_refusal(v, words, no);
    x->dest_canon = ps->dest_canon;
    s->ex->r.dest = ps->dest;
    return judge(s, x, x->dst, ps->dest, true, no);
}

/* If (RFC 4918 10.4): its resource tags made canonical paths too. */
cg_http_step cg_http_stage_if(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_http_head *h = &s->ex->req.head;
    const cg_http_header *ih = cg_http_header_get(&s->ex->req, "if", NULL);
    if (!ih)
        return CG_HTTP_NEXT;
    /* one allocation of if_cap bytes, told if_cap: every tag's canonical
     * form is at most three times its URL (proxy/http/dav.h) */
    size_t if_cap = 3 * (size_t)ih->value.len + 64, ol;
    if (!(x->if_out = malloc(if_cap)))
        return refuse(no, 503, "out of memory", true);
    static const char *const words[] = {"If header names another server",
                                        "If header resource tag too long",
                                        "malformed If header"};
    cg_http_dav_url v = cg_http_dav_rewrite_if(cg_http_str(&s->ex->req, ih->value), ih->value.len,
                                               h->host.len ? cg_http_str(&s->ex->req, h->host) : "",
                                               h->host.len, x->ci->tls, x->if_out, if_cap, &ol);
    return v == CG_HTTP_DAV_URL_OURS ? CG_HTTP_NEXT : url_refusal(v, words, no);
}

/* A declared body past max_body is refused before a byte of it is read;
 * past this stage the request is allowed. */
cg_http_step cg_http_stage_body_limit(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    const cg_listener_cfg *l = x->ci->listener;
    const cg_http_head *h = &s->ex->req.head;
    if (l->max_body && h->framing == CG_HTTP_BODY_LENGTH && h->content_length > l->max_body)
        return refuse(no, 413, "request body too large", true);
    s->ex->r.decision = "allow";
    return CG_HTTP_NEXT;
}

/* Content validation (SPEC 6): the gate may refuse, answer itself, or
 * wait for work off the loop (then the request resumes at the gate's
 * answer, gate.c). */
cg_http_step cg_http_stage_gate(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    const cg_http_head *h = &s->ex->req.head;
    x->view = (cg_http_request_view){
        .method = r->method, .path = r->path, .principal = r->principal, .who = x->who,
        .txid = r->txid,
        .content_length = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length
                          : h->framing == CG_HTTP_BODY_NONE ? 0 : UINT64_MAX,
        .snap = x->snap, .dest = r->dest, .header = hdr_lookup, .hctx = &s->ex->req,
    };
    x->gate = cg_http_gate_ask(&x->view, &x->answer);
    if (x->gate != CG_HTTP_GATE_WAIT)
        return CG_HTTP_NEXT;
    /* the snapshot and the rewritten If go with the wait */
    int rc = cg_http_gate_wait_start(s, &x->view, x->answer.fctx, x->snap, x->if_out,
                                     x->dest_canon);
    x->snap = NULL;
    x->if_out = NULL;
    return rc < 0 ? refuse(no, 503, "content check could not start", false) : CG_HTTP_TAKEN;
}

/* The gate's answer: PASS forwards the request, LOCAL answers it here,
 * REFUSE refuses it with the gate's status. */
cg_http_step cg_http_stage_gate_answer(http_sess *s, cg_http_stage_ctx *x,
                                       cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    const cg_http_gate_answer *a = &x->answer;
    switch (x->gate) {
    case CG_HTTP_GATE_PASS:
        return CG_HTTP_NEXT;
    case CG_HTTP_GATE_LOCAL:
        r->filter = a->local;
        r->fctx = a->fctx;
        cg_http_start_local(s);
        return CG_HTTP_TAKEN;
    case CG_HTTP_GATE_REFUSE:
        if (a->status >= 400)
            r->decision = "error";
        return refuse(no, a->status, a->detail ? a->detail : "refused", false);
    case CG_HTTP_GATE_WAIT: /* stage_gate or gate_done took it */
        break;
    }
    r->decision = "error";
    return refuse(no, 500, "content check asked to wait twice", false);
}

/* The body filter chosen, the head rewritten, the backend connected. */
cg_http_step cg_http_stage_forward(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    if (cg_http_filter_select(&x->view, &r->filter, &r->fctx))
        r->hold_last = r->filter && r->has_body && s->ex->req.head.framing == CG_HTTP_BODY_LENGTH;
    int rc = cg_http_forward_head(s, x->ci, x->dest_canon, x->if_out);
    if (rc == CG_E_NOMEM)
        return refuse(no, 503, "out of memory", true);
    if (rc < 0)
        return refuse(no, 431, "request head too large after rewriting", false);
    if (cg_http_start_forwarding(s) < 0)
        return refuse(no, 502, "backend unavailable", true);
    return CG_HTTP_TAKEN;
}

/* The chain, in the order its checks are answered. */
static const struct {
    const char *name;
    cg_http_stage_fn run;
} g_stages[] = {
    {"request", cg_http_stage_request},
    {"target", cg_http_stage_target},
    {"tls", cg_http_stage_tls},
    {"audit", cg_http_stage_audit},
    {"host", cg_http_stage_host},
    {"upstream", cg_http_stage_upstream},
    {"policy", cg_http_stage_policy},
    {"authenticate", cg_http_stage_authenticate},
    {"originator", cg_http_stage_originator},
    {"route", cg_http_stage_route},
    {"method", cg_http_stage_method},
    {"expect", cg_http_stage_expect},
    {"depth", cg_http_stage_depth},
    {"acl", cg_http_stage_acl},
    {"destination", cg_http_stage_destination},
    {"route destination", cg_http_stage_route_destination},
    {"if", cg_http_stage_if},
    {"route if", cg_http_stage_route_if},
    {"body limit", cg_http_stage_body_limit},
    {"gate", cg_http_stage_gate},
    {"gate answer", cg_http_stage_gate_answer},
    {"forward", cg_http_stage_forward},
};

void cg_http_stage_ctx_init(cg_http_stage_ctx *x, const cg_conn_info *ci)
{
    memset(x, 0, offsetof(cg_http_stage_ctx, text));
    x->text[0] = '\0';
    x->ci = ci;
}

void cg_http_run_stages(http_sess *s, cg_http_stage_ctx *x, cg_http_stage_fn from)
{
    size_t i = 0;
    while (from && i < CG_ARRAY_LEN(g_stages) && g_stages[i].run != from)
        i++;
    for (; i < CG_ARRAY_LEN(g_stages); i++) {
        cg_http_refusal no;
        cg_http_step st = g_stages[i].run(s, x, &no);
        if (st == CG_HTTP_NEXT)
            continue;
        if (st == CG_HTTP_REFUSE)
            cg_http_refuse(s, &no);
        return;
    }
}

void cg_http_handle_request(http_sess *s)
{
    cg_http_stage_ctx x;
    cg_http_stage_ctx_init(&x, cg_conn_info_of(s->c));
    cg_http_run_stages(s, &x, NULL);
    free(x.if_out);
    if (x.snap)
        cg_snapshot_release(x.snap);
}
