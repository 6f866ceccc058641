/* proxy/http/stages.c — a request head's way from parsed to forwarded: the
 * target, TLS, the audit place, Host, authentication, method rights,
 * Expect, PROPFIND Depth, the ACL, Destination and If, the body limit and
 * the content gate, in that order; every refusal is answered through
 * request.c's one answer path. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ---- request head: authentication, decision, rewriting --------------------- */

static const char *hdr_lookup(const void *hctx, const char *name, size_t *len)
{
    const cg_http_parser *p = hctx;
    const cg_http_header *h = cg_http_header_get(p, name, NULL);
    if (!h)
        return NULL;
    *len = h->value.len;
    return cg_http_str(p, h->value);
}

/* Decides every right in rights on path (and, for subtree operations,
 * below it). 0, or the 403 was answered. */
static int judge(http_sess *s, const cg_snapshot *snap, const cg_principal *p,
                 unsigned rights, const char *path, bool subtree)
{
    http_req *r = &s->r;
    const struct cg_acl *acl = cg_snapshot_acl(snap);
    for (unsigned bit = 1; bit <= CG_RIGHT_DELETE; bit <<= 1) {
        if (!(rights & bit))
            continue;
        cg_decision d = cg_acl_decide(acl, p, CG_SVC_HTTP, bit, path, strlen(path), '/');
        r->rule_id = d.rule_id;
        char detail[CG_HTTP_PATH_MAX + 64];
        if (!d.allow) {
            r->decision = "deny";
            snprintf(detail, sizeof detail, "%s denied on \"%.256s\"", cg_right_name(bit), path);
            cg_http_error(s, 403, detail, NULL, NULL, false);
            return -1;
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
            if (!cg_acl_subtree_clear(acl, p, CG_SVC_HTTP, bit, prefix, pl, '/', &rid)) {
                r->decision = "deny";
                r->rule_id = rid;
                snprintf(detail, sizeof detail, "%s denied below \"%.256s\"", cg_right_name(bit),
                         path);
                cg_http_error(s, 403, detail, NULL, NULL, false);
                return -1;
            }
        }
    }
    return 0;
}

/* RFC 9110 7.4: a listener answers only for the names it serves
 * (server_names), and over TLS only for the name the client asked for in
 * SNI (the certificate it checked was for that name). Anything else is
 * 421, so no client picks the backend's virtual host. The backend gets
 * the upstream's fixed host, else the matched name without the client's
 * port or spelling. 0, or the 421 / 400 was answered. */
static int route_host(http_sess *s)
{
    const cg_conn_info *ci = cg_conn_info_of(s->c);
    const cg_listener_cfg *l = ci->listener;
    const cg_http_head *h = &s->req.head;
    http_req *r = &s->r;
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
        if (!cg_http_host_name(cg_http_str(&s->req, names[i]), names[i].len, &n, &nl)) {
            cg_http_error(s, 400, "malformed Host", NULL, NULL, false);
            return -1;
        }
        if (!every && !cg_http_name_served(list, n, nl, &n, &nl)) {
            cg_http_error(s, 421, "this listener does not serve that host", NULL, NULL, false);
            return -1;
        }
        if (!every && ci->sni[0] && !cg_http_is_ip(ci->sni) &&
            !cg_http_same_host(ci->sni, strlen(ci->sni), n, nl)) {
            cg_http_error(s, 421, "Host differs from the TLS server name", NULL, NULL, false);
            return -1;
        }
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
    return 0;
}

static void sanitize_request_id(http_sess *s)
{
    const cg_http_header *h = cg_http_header_get(&s->req, "x-request-id", NULL);
    size_t o = 0;
    if (h) {
        const char *v = cg_http_str(&s->req, h->value);
        for (size_t i = 0; i < h->value.len && o + 1 < sizeof s->r.request_id; i++)
            if (v[i] > 0x20 && v[i] < 0x7F)
                s->r.request_id[o++] = v[i];
    }
    s->r.request_id[o] = '\0';
}

/* The buffers a request needs beyond its head, made at the first
 * request: an idle or never-used connection holds only its head buffer. */
static bool request_buffers(http_sess *s)
{
    if (!s->paths && !(s->paths = malloc(sizeof *s->paths)))
        return false;
    if (!s->resp.initialized) {
        if (cg_http_parser_init(&s->resp, false, 32768, 200, 32768) < 0)
            return false;
        s->resp.on_body = cg_http_resp_body;
        s->resp.ctx = s;
    }
    return true;
}

void cg_http_handle_request(http_sess *s)
{
    cg_conn *c = s->c;
    const cg_conn_info *ci = cg_conn_info_of(c);
    const cg_listener_cfg *l = ci->listener;
    http_req *r = &s->r;
    cg_http_head *h = &s->req.head;

    if (!request_buffers(s)) {
        cg_http_error(s, 503, "out of memory", NULL, NULL, true);
        return;
    }

    size_t ml = h->method_name.len < sizeof r->method - 1 ? h->method_name.len
                                                          : sizeof r->method - 1;
    memcpy(r->method, cg_http_str(&s->req, h->method_name), ml);
    r->method[ml] = '\0';
    r->head_method = h->method == HTTP_HEAD;
    r->keep_alive = h->keep_alive;
    r->has_body = h->framing != CG_HTTP_BODY_NONE;
    r->body_done = !r->has_body;
    r->body_left = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length : 0;
    sanitize_request_id(s);

    /* the path first: every later answer names the resource */
    http_paths *ps = s->paths;
    char *dec = ps->path, *can = ps->canon;
    r->path = dec;
    r->canon = can;
    dec[0] = can[0] = '\0';
    const char *target = cg_http_str(&s->req, h->path);
    size_t pl = 0;
    if (h->form == CG_HTTP_ASTERISK) {
        memcpy(dec, "*", 2);
        memcpy(can, "*", 2);
    } else {
        const char *why = "malformed request target";
        size_t dl, cl;
        if (cg_http_target_split(target, h->path.len, &pl, &r->query, &r->query_len) < 0 ||
            cg_http_path_normalize(target, pl, dec, sizeof ps->path, &dl, can,
                                   sizeof ps->canon, &cl, &why) < 0) {
            dec[0] = '\0';
            cg_http_error(s, pl > CG_HTTP_PATH_MAX ? 414 : 400, why, NULL, NULL, false);
            return;
        }
    }

    /* SPEC 3: a plaintext listener serves nothing */
    if (l->tls == CG_TLS_NONE) {
        if (l->insecure == CG_INSECURE_REDIRECT && l->redirect_to) {
            char loc[CG_HTTP_PATH_MAX * 4];
            size_t rl = strlen(l->redirect_to);
            while (rl > 0 && l->redirect_to[rl - 1] == '/')
                rl--;
            snprintf(loc, sizeof loc, "Location: %.*s%s%s%.*s\r\n", (int)rl, l->redirect_to,
                     h->form == CG_HTTP_ASTERISK ? "/" : can, r->query ? "?" : "",
                     (int)r->query_len, r->query ? r->query : "");
            cg_http_error(s, 308, "TLS required", loc, NULL, false);
        } else {
            cg_http_error(s, 426, "TLS required", "Upgrade: TLS/1.2, HTTP/1.1\r\n", NULL, true);
        }
        return;
    }
    if (cg_audit_reserve(&s->resv) < 0) {
        /* SPEC 5, audit_fail = closed: nothing unrecorded happens */
        cg_http_error(s, 503, "audit log unavailable", RETRY_AFTER, NULL, true);
        return;
    }
    if (route_host(s) < 0)
        return;
    if (!l->upstream) {
        cg_http_error(s, 502, "no upstream configured", NULL, NULL, false);
        return;
    }

    cg_snapshot *snap = cg_snapshot_acquire();
    if (!snap) {
        cg_http_error(s, 503, "policy not loaded", NULL, NULL, true);
        return;
    }
    char *if_out = NULL;
    cg_http_auth au;
    cg_http_authenticate(ci, &s->req, r->method, snap, &au);
    cg_strlcpy(r->principal, au.principal, sizeof r->principal);
    r->auth_method = au.method;
    if (au.status == 401) {
        char extra[1200];
        cg_http_challenges(l, au.stale, extra, sizeof extra);
        cg_http_answer(s, 401, au.detail, au.reason ? au.reason : au.detail, extra, NULL, false);
        goto out;
    }
    if (au.status) {
        cg_http_error(s, au.status, au.detail, NULL, NULL, false);
        goto out;
    }
    const cg_principal *p = au.who;
    if (!p || !p->enabled) {
        cg_http_error(s, 403, p ? "principal disabled" : "principal unknown", NULL, NULL, false);
        goto out;
    }
    cg_strlcpy(r->principal, p->name, sizeof r->principal);
    r->principal_id = p->id;

    unsigned src, dst;
    bool subtree;
    if (!cg_http_method_rights(r->method, &src, &dst, &subtree)) {
        char allow[256];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", cg_http_allow);
        cg_http_error(s, 405, "method not allowed", allow, NULL, false);
        goto out;
    }
    if (h->form == CG_HTTP_ASTERISK && h->method != HTTP_OPTIONS) {
        cg_http_error(s, 400, "asterisk-form target", NULL, NULL, false);
        goto out;
    }

    /* Expect (RFC 9110 10.1.1): 100-continue is answered by the gateway
     * once the request is authorised; other expectations cannot be met */
    const cg_http_header *ex = cg_http_header_get(&s->req, "expect", NULL);
    if (ex) {
        if (!cg_http_span_eq(&s->req, ex->value, "100-continue")) {
            cg_http_error(s, 417, "unsupported expectation", NULL, NULL, true);
            goto out;
        }
        r->expect_continue = r->has_body;
    }

    if (h->method == HTTP_PROPFIND) {
        const cg_http_header *dh = cg_http_header_get(&s->req, "depth", NULL);
        bool d0 = dh && cg_http_span_eq(&s->req, dh->value, "0");
        bool d1 = dh && cg_http_span_eq(&s->req, dh->value, "1");
        if (!d0 && !d1) {
            /* RFC 4918 9.1: no Depth means infinity */
            cg_http_error(s, 403, "PROPFIND with Depth: infinity", NULL,
                       "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                       "<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
                       false);
            goto out;
        }
        r->filter_multistatus = d1;
    }

    if (src && h->form != CG_HTTP_ASTERISK && judge(s, snap, p, src, dec, subtree) < 0)
        goto out;

    const char *https_host = h->host.len ? cg_http_str(&s->req, h->host) : "";
    size_t hostlen = h->host.len;
    char *dest_canon = NULL;
    if (dst) {
        const cg_http_header *dh = cg_http_header_get(&s->req, "destination", NULL);
        if (!dh) {
            cg_http_error(s, 400, "Destination header missing", NULL, NULL, false);
            goto out;
        }
        size_t vl = dh->value.len, cl;
        char *ddec = ps->dest;
        dest_canon = ps->dest_canon;
        /* RFC 9110 15.5.15 (414) is for the target; a header gets 400 */
        if (vl > CG_HTTP_PATH_MAX) {
            cg_http_error(s, 400, "Destination too long", NULL, NULL, false);
            goto out;
        }
        cg_http_dav_url rc = cg_http_dav_url_canon(cg_http_str(&s->req, dh->value), vl,
                                                   https_host, hostlen, ci->tls, ddec,
                                                   sizeof ps->dest, dest_canon,
                                                   sizeof ps->dest_canon, &cl);
        if (rc == CG_HTTP_DAV_URL_OTHER_HOST) {
            cg_http_error(s, 502, "Destination names another server", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_HTTP_DAV_URL_TOO_LONG) {
            cg_http_error(s, 400, "Destination too long", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_HTTP_DAV_URL_MALFORMED) {
            cg_http_error(s, 400, "malformed Destination", NULL, NULL, false);
            goto out;
        }
        r->dest = ddec;
        if (judge(s, snap, p, dst, ddec, true) < 0)
            goto out;
    }
    const cg_http_header *ih = cg_http_header_get(&s->req, "if", NULL);
    if (ih) {
        /* one allocation of if_cap bytes, told if_cap: every tag's
         * canonical form is at most three times its URL (proxy/http/dav.h) */
        size_t if_cap = 3 * (size_t)ih->value.len + 64, ol;
        if (!(if_out = malloc(if_cap))) {
            cg_http_error(s, 503, "out of memory", NULL, NULL, true);
            goto out;
        }
        cg_http_dav_url rc = cg_http_dav_rewrite_if(cg_http_str(&s->req, ih->value),
                                                    ih->value.len, https_host, hostlen, ci->tls,
                                                    if_out, if_cap, &ol);
        if (rc == CG_HTTP_DAV_URL_OTHER_HOST) {
            cg_http_error(s, 502, "If header names another server", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_HTTP_DAV_URL_TOO_LONG) {
            cg_http_error(s, 400, "If header resource tag too long", NULL, NULL, false);
            goto out;
        }
        if (rc == CG_HTTP_DAV_URL_MALFORMED) {
            cg_http_error(s, 400, "malformed If header", NULL, NULL, false);
            goto out;
        }
    }

    if (l->max_body && h->framing == CG_HTTP_BODY_LENGTH && h->content_length > l->max_body) {
        cg_http_error(s, 413, "request body too large", NULL, NULL, true);
        goto out;
    }
    r->decision = "allow";

    cg_http_request_view v = {
        .method = r->method, .path = dec, .principal = r->principal, .who = p, .txid = r->txid,
        .content_length = h->framing == CG_HTTP_BODY_LENGTH ? h->content_length
                          : h->framing == CG_HTTP_BODY_NONE ? 0 : UINT64_MAX,
        .snap = snap, .dest = r->dest, .header = hdr_lookup, .hctx = &s->req,
    };
    const cg_http_body_filter *lf = NULL;
    void *lctx = NULL;
    const char *gd = NULL;
    /* content validation (SPEC 6): may refuse, answer itself, or wait */
    int g = cg_http_gate_ask(&v, &lf, &lctx, &gd);
    if (g == CG_HTTP_GATE_WAIT) {
        cg_http_gate_wait_start(s, &v, lctx, snap, if_out, dest_canon);
        return; /* snap and if_out go with the wait */
    }
    cg_http_gate_answered(s, &v, g, lf, lctx, gd, dest_canon, if_out);
out:
    free(if_out);
    cg_snapshot_release(snap);
}
