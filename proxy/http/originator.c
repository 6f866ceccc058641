/* proxy/http/originator.c — a peer's gateway's requests (SPEC 7, inbound):
 * a server principal bound to a peer is accepted only as the peer's auth
 * says, and CPM-Originator: user@DOMAIN (with CPM-Transaction-Id) is
 * honoured only from the server principal of that domain's peer. Both
 * fields are removed from every request forwarded (head.c); from anyone
 * else they are ignored, as if never sent. */
#include <stdio.h>
#include <string.h>

#include "common/cg_log.h"
#include "common/cg_remote.h"
#include "policy/peer.h"
#include "proxy/core/counters.h"
#include "proxy/http/internal.h"

static cg_http_step refuse(cg_http_refusal *no, int status, const char *detail)
{
    *no = (cg_http_refusal){ .status = status, .detail = detail };
    return CG_HTTP_REFUSE;
}

/* The peer's counters: a refusal every time, a session at the first
 * request of a connection. */
static void count(http_sess *s, const cg_snapshot *snap, const cg_principal *p,
                  const cg_peer *peer, bool refused)
{
    const cg_peer *q = peer ? peer : cg_peer_of(snap, p);
    if (!q || (!refused && s->peer_counted))
        return;
    s->peer_counted |= !refused;
    cg_metrics_peer(q->domain, refused);
}

cg_http_step cg_http_stage_originator(http_sess *s, cg_http_stage_ctx *x, cg_http_refusal *no)
{
    http_req *r = &s->ex->r;
    const cg_principal *p = x->who;
    const cg_conn_info *ci = x->ci;
    /* its certificate: the connection's own identity, by certificate */
    bool by_cert = ci->principal_id == p->id && ci->auth_method == CG_AUTH_CERT;
    cg_peer_verdict v = cg_peer_admit(x->snap, p, by_cert);
    if (v != CG_PEER_OK) {
        count(s, x->snap, p, NULL, true);
        return refuse(no, 403, cg_peer_verdict_text(v));
    }
    size_t n = 0;
    const cg_http_header *h = cg_http_header_get(&s->ex->req, "cpm-originator", &n);
    if (h && !p->is_server) {
        /* a user principal speaks only for itself: the field is dropped */
        cg_info("conn=%llu txid=%s CPM-Originator from %s ignored", (unsigned long long)ci->id,
                r->txid, p->name);
        h = NULL;
    }
    if (!h) {
        if (p->is_server)
            count(s, x->snap, p, NULL, false);
        return CG_HTTP_NEXT;
    }
    if (n > 1) {
        count(s, x->snap, p, NULL, true);
        return refuse(no, 400, "more than one CPM-Originator");
    }
    const cg_peer *peer;
    v = cg_peer_originator(x->snap, p, by_cert, cg_http_str(&s->ex->req, h->value), h->value.len,
                           r->originator, &peer);
    if (v != CG_PEER_OK) {
        count(s, x->snap, p, NULL, true);
        r->originator[0] = '\0';
        return refuse(no, 403, cg_peer_verdict_text(v));
    }
    count(s, x->snap, p, peer, false);
    const cg_http_header *t = cg_http_header_get(&s->ex->req, "cpm-transaction-id", &n);
    if (t && n == 1 && cg_remote_txid(cg_http_str(&s->ex->req, t->value), t->value.len)) {
        memcpy(r->origin_txid, cg_http_str(&s->ex->req, t->value), t->value.len);
        r->origin_txid[t->value.len] = '\0';
    }
    return CG_HTTP_NEXT;
}
