/* proxy/core/conn_identity.c — a connection's identity at the connection
 * level (SPEC section 2): the PSK identity, else the verified client
 * certificate (fingerprint, then its names), else the source address; a
 * disabled principal or an unregistered certificate is refused, and an
 * identity found is logged and audited as operation `auth`. */
#include "proxy/core/conn_internal.h"

#include <string.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "policy/identity.h"
#include "policy/snapshot.h"
#include "proxy/core/counters.h"
#include "proxy/core/tls.h"

#define MAX_CERT_NAMES 16

int cg_conn_identity_resolve(cg_conn_info *ci, cg_tls *tls, const char **why_r)
{
    const cg_listener_cfg *l = ci->listener;
    const cg_principal *p = NULL;
    unsigned method = 0;
    const char *why = NULL;
    bool disabled = false;
    cg_snapshot *s = cg_snapshot_acquire();
    if (!s) {
        *why_r = "policy not loaded";
        return CG_E_UNAVAIL;
    }
    ci->auth_method = 0;
    cg_conn_info_drop(&ci->principal);
    ci->principal_id = 0;
    if (tls && cg_tls_established(tls)) {
        const char *psk = cg_tls_psk_identity(tls);
        uint8_t fpr[32];
        char namebuf[2048];
        const char *names[MAX_CERT_NAMES];
        int nn;
        if (psk[0]) {
            const uint8_t *key;
            size_t klen;
            method = CG_AUTH_PSK;
            p = cg_identity_by_psk(s, psk, strlen(psk), &key, &klen);
            if (!p)
                why = "unknown psk identity";
        } else if ((l->auth & CG_AUTH_CERT) &&
                   (nn = cg_tls_peer_cert(tls, fpr, namebuf, sizeof namebuf, names,
                                          MAX_CERT_NAMES)) >= 0) {
            /* verified by OpenSSL against client_ca (and crl) already */
            method = CG_AUTH_CERT;
            p = cg_identity_by_cert(s, fpr, names, (size_t)nn);
            if (!p)
                why = "certificate not registered";
        }
    }
    if (!method && (l->auth & CG_AUTH_ADDRESS)) {
        p = cg_identity_by_address(s, (const struct sockaddr *)&ci->peer);
        if (p)
            method = CG_AUTH_ADDRESS;
    }
    if (p) {
        ci->auth_method = method;
        ci->principal_id = p->id;
        disabled = !p->enabled;
        if (disabled)
            why = "principal disabled";
        if (cg_conn_info_set(&ci->principal, p->name) < 0) {
            cg_snapshot_release(s);
            *why_r = "out of memory";
            return CG_E_UNAVAIL;
        }
    }
    /* p points into the snapshot: only whether it was found counts below */
    cg_snapshot_release(s);
    if (why) {
        *why_r = why;
        return disabled ? CG_E_DENIED : CG_E_AUTH;
    }
    if (!p) {
        /* a request-level method (login, digest, saml) authenticates later;
         * a plaintext listener answers in its protocol (426, BYE) */
        unsigned later = CG_AUTH_LOGIN | CG_AUTH_DIGEST | CG_AUTH_SAML;
        if ((l->auth & later) || l->tls == CG_TLS_NONE)
            return 0;
        /* STARTTLS before the upgrade: the protocol only allows STARTTLS */
        if (l->tls == CG_TLS_STARTTLS && !ci->tls)
            return 0;
        *why_r = "no identity";
        return CG_E_AUTH;
    }
    cg_metric_inc(method == CG_AUTH_CERT ? CG_M_AUTH_CERT
                  : method == CG_AUTH_PSK ? CG_M_AUTH_PSK
                                          : CG_M_AUTH_ADDRESS);
    cg_info("conn=%llu client=%s listener=%s auth method=%s principal=%s",
            (unsigned long long)ci->id, ci->client, l->name,
            cg_auth_method_name(method), ci->principal);
    /* no record, no operation (SPEC 5): with audit_fail = closed an
     * authentication the log did not take is a refusal */
    if (cg_conn_audit_tls(ci, "auth", "ok", "allow", NULL, false) < 0) {
        *why_r = "audit log unavailable";
        return CG_E_AUDIT;
    }
    return 0;
}
