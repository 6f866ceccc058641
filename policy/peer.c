/* policy/peer.c — a peer's server principal, inbound (SPEC 7): accepted
 * only as its peer's auth says (required: by its certificate, never by
 * its PSK or address), and acting only for users of its own domain. */
#include "policy/peer.h"

#include <string.h>

#include "policy/snapshot_impl.h"

const char *cg_peer_verdict_text(cg_peer_verdict v)
{
    switch (v) {
    case CG_PEER_OK: return "accepted";
    case CG_PEER_CERT_REQUIRED: return "the peer requires its server's certificate";
    case CG_PEER_BAD_NAME: return "originator is not user@DOMAIN";
    case CG_PEER_NOT_SERVER: return "a user principal may act only for itself";
    case CG_PEER_NO_PEER: return "server principal bound to no peer";
    case CG_PEER_OTHER_DOMAIN: return "originator of a domain this server principal is not the peer of";
    }
    return "refused";
}

size_t cg_snapshot_npeers(const cg_snapshot *s)
{
    return s ? s->npeers : 0;
}

const cg_peer *cg_snapshot_peer_at(const cg_snapshot *s, size_t i)
{
    return s && i < s->npeers ? &s->peers[i] : NULL;
}

const cg_peer *cg_peer_of(const cg_snapshot *s, const cg_principal *p)
{
    for (size_t i = 0; s && p && i < s->npeers; i++)
        if (s->peers[i].principal_idx == p->idx)
            return &s->peers[i];
    return NULL;
}

cg_peer_verdict cg_peer_admit(const cg_snapshot *s, const cg_principal *p, bool by_cert)
{
    if (!s || !p || !p->is_server || by_cert)
        return CG_PEER_OK;
    /* bound to several peers: the strictest of them decides */
    for (size_t i = 0; i < s->npeers; i++)
        if (s->peers[i].principal_idx == p->idx && s->peers[i].auth_required)
            return CG_PEER_CERT_REQUIRED;
    return CG_PEER_OK;
}

cg_peer_verdict cg_peer_originator(const cg_snapshot *s, const cg_principal *p, bool by_cert,
                                   const char *in, size_t len,
                                   char out[CG_REMOTE_USER_MAX + 1], const cg_peer **peer)
{
    size_t at;
    *peer = NULL;
    out[0] = '\0';
    if (!p || !p->is_server)
        return CG_PEER_NOT_SERVER;
    if (!cg_remote_user(in, len, false, out, CG_REMOTE_USER_MAX + 1, &at)) {
        out[0] = '\0';
        return CG_PEER_BAD_NAME;
    }
    const cg_peer *q = cg_snapshot_peer(s, out + at + 1);
    if (!cg_peer_of(s, p))
        return CG_PEER_NO_PEER;
    if (!q || q->principal_idx != p->idx)
        return CG_PEER_OTHER_DOMAIN;
    if (q->auth_required && !by_cert)
        return CG_PEER_CERT_REQUIRED;
    *peer = q;
    return CG_PEER_OK;
}
