/* proxy/imap/remote.c — a peer's gateway logging in (SPEC 7, inbound): the
 * originating transaction id it sends with ID before login, who its
 * server principal may act for (AUTHENTICATE EXTERNAL with authzid
 * user@DOMAIN), and the same judged again at every command. The client's
 * ID itself never reaches the backend (commands.c answers it). */
#include "proxy/imap/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cg_log.h"
#include "policy/peer.h"
#include "proxy/core/counters.h"

/* RFC 2971: ID ("field" "value" ...) or ID NIL. The "cpm-transaction-id"
 * field is kept until login decides whether it counts (only for a peer's
 * server principal acting for one of its users). */
void cg_imap_id_origin(imap_sess *s)
{
    size_t nt = cg_imapp_ntok(s->parser);
    s->origin_txid[0] = '\0';
    for (size_t i = 3; i + 1 < nt; i += 2) {
        const cg_imapp_tok *k = cg_imapp_tok_at(s->parser, i);
        size_t kl, vl;
        const char *key = cg_imap_tok_str(s, i, &kl);
        const char *val = cg_imap_tok_str(s, i + 1, &vl);
        if (!k || k->depth != 1 || !key || !val)
            break;
        if (kl == 18 && strcasecmp(key, "cpm-transaction-id") == 0 && cg_remote_txid(val, vl))
            memcpy(s->origin_txid, val, vl + 1);
    }
}

/* Refused for who it acts for: the credential was good, the authzid not
 * (RFC 5530 AUTHORIZATIONFAILED). Counted as a failed login; the audit
 * record names the principal that tried. */
static void authz_refuse(cg_conn *c, imap_sess *s, const cg_principal *p, const char *authz,
                         const char *why)
{
    cg_imap_login_count_failure(c);
    cg_info("conn=%llu imap login of %s for \"%s\" refused: %s",
            (unsigned long long)cg_conn_info_of(c)->id, p->name, authz, why);
    snprintf(s->principal, sizeof s->principal, "%s", p->name);
    s->origin_txid[0] = '\0';
    cg_imap_refuse(c, s, "NO", "AUTHORIZATIONFAILED", authz, 0, "%s", why);
    s->principal[0] = '\0';
}

/* The peer's counters (proxy/core/counters.h): the peer named, else the
 * first peer p is bound to; nothing for a principal bound to none. */
static void count_peer(const cg_snapshot *snap, const cg_principal *p, const cg_peer *peer,
                       bool refused)
{
    const cg_peer *q = peer ? peer : cg_peer_of(snap, p);
    if (q)
        cg_metrics_peer(q->domain, refused);
}

bool cg_imap_remote_login(cg_conn *c, imap_sess *s, const cg_snapshot *snap,
                          const cg_principal *p, const char *authz, bool external)
{
    bool by_cert = cg_conn_info_of(c)->auth_method == CG_AUTH_CERT;
    cg_peer_verdict v = cg_peer_admit(snap, p, by_cert);
    s->originator[0] = '\0';
    if (v != CG_PEER_OK) {
        count_peer(snap, p, NULL, true);
        cg_imap_login_fail(c, s, cg_peer_verdict_text(v), true);
        return false;
    }
    if (external && authz && authz[0] && strcmp(authz, p->mailbox) != 0) {
        const cg_peer *peer;
        char who[CG_REMOTE_USER_MAX + 1];
        v = cg_peer_originator(snap, p, by_cert, authz, strlen(authz), who, &peer);
        if (v != CG_PEER_OK) {
            count_peer(snap, p, NULL, true);
            authz_refuse(c, s, p, authz, cg_peer_verdict_text(v));
            return false;
        }
        snprintf(s->originator, sizeof s->originator, "%s", who);
        count_peer(snap, p, peer, false);
    } else if (p->is_server) {
        count_peer(snap, p, NULL, false);
    }
    if (!s->originator[0])
        s->origin_txid[0] = '\0'; /* only a peer's gateway speaks for another */
    return true;
}

bool cg_imap_remote_still(const cg_snapshot *snap, const cg_principal *p, const imap_sess *s)
{
    bool by_cert = s->method == CG_AUTH_CERT;
    if (cg_peer_admit(snap, p, by_cert) != CG_PEER_OK)
        return false;
    if (!s->originator[0])
        return true;
    const cg_peer *peer;
    char who[CG_REMOTE_USER_MAX + 1];
    return cg_peer_originator(snap, p, by_cert, s->originator, strlen(s->originator), who,
                              &peer) == CG_PEER_OK;
}
