/* proxy/http/auth.c — request-level authentication for the HTTP gateway: the
 * connection's own identity, else HTTP Digest (policy/digest.c) or a SAML
 * bearer assertion (policy/saml.c), and the 401 challenges. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cg_error.h"
#include "common/cg_log.h"
#include "common/cg_util.h"
#include "policy/digest.h"
#include "proxy/http/internal.h"
#include "proxy/http/path.h"
#include "policy/saml.h"

/* The Digest nonce secret: random per process (nonces of a previous run
 * are not authentic; clients retry on the fresh challenge). */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static uint8_t g_digest_secret[32];
static int g_digest_secret_rc;
static void auth_init(void)
{
    g_digest_secret_rc = cg_random(g_digest_secret, sizeof g_digest_secret);
    if (g_digest_secret_rc < 0)
        cg_error("no random bytes for the Digest nonce secret: Digest refuses every request");
}

/* 0, or CG_E_CRYPTO when there is no secret (then Digest fails closed:
 * no challenge is offered and no credential is accepted). */
static int digest_ctx(const cg_listener_cfg *l, cg_digest_ctx *d)
{
    pthread_once(&g_once, auth_init);
    if (g_digest_secret_rc < 0)
        return g_digest_secret_rc;
    memset(d, 0, sizeof *d);
    d->realm = l->digest_realm ? l->digest_realm : l->name;
    d->nonce_lifetime = l->digest_nonce_lifetime;
    memcpy(d->secret, g_digest_secret, sizeof d->secret);
    return 0;
}

size_t cg_http_challenges(const cg_listener_cfg *l, bool stale, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    if (l->auth & CG_AUTH_DIGEST) {
        cg_digest_ctx d;
        if (digest_ctx(l, &d) == 0) {
            n = cg_digest_challenges(&d, stale, (int64_t)time(NULL), out, cap);
            out[n < cap ? n : cap - 1] = '\0';
        }
    }
    if ((l->auth & CG_AUTH_SAML) && cap - n > 25)
        n += (size_t)snprintf(out + n, cap - n, "WWW-Authenticate: SAML\r\n");
    return n;
}

static void fail(cg_http_auth *a, int status, const char *detail)
{
    a->status = status;
    a->detail = detail;
}

static void digest(const cg_conn_info *ci, const cg_http_parser *req, const char *method,
                   const char *v, size_t vl, const cg_snapshot *snap, cg_http_auth *a)
{
    a->method = "digest";
    if (vl > CG_DIGEST_MAX_HEADER) {
        fail(a, 401, "Digest header too long");
        return;
    }
    char val[CG_DIGEST_MAX_HEADER + 1];
    memcpy(val, v, vl);
    val[vl] = '\0';
    /* RFC 7616 3.4: uri is the request-target exactly as sent */
    char target[CG_HTTP_PATH_MAX * 3 + 1];
    size_t tl = req->head.target.len;
    if (tl >= sizeof target) {
        fail(a, 401, "request target too long for Digest");
        return;
    }
    memcpy(target, cg_http_str(req, req->head.target), tl);
    target[tl] = '\0';
    cg_digest_ctx d;
    const char *why = "no Digest nonce secret";
    int rc = digest_ctx(ci->listener, &d);
    if (rc == 0) {
        why = "Digest authentication failed";
        rc = cg_digest_verify(&d, val, method, target, snap, &a->who, &why);
    }
    if (a->who)
        cg_strlcpy(a->principal, a->who->name, sizeof a->principal);
    if (rc == CG_E_AGAIN) {
        a->stale = true;
        fail(a, 401, "stale nonce");
    } else if (rc < 0 && !(a->who && !a->who->enabled)) {
        /* one text for every refused credential: "unknown user" against
         * "wrong response" would tell a guesser which names exist; the
         * reason goes to the log and the audit record only */
        a->who = NULL;
        fail(a, 401, "authentication failed");
        a->reason = why;
    }
}

static void saml(const cg_conn_info *ci, const char *v, size_t vl, const cg_snapshot *snap,
                 cg_http_auth *a)
{
    a->method = "saml";
    const char *why = "no [saml] configuration";
    /* the verifier of the runtime this connection started under */
    const cg_saml_verifier *sv = ci->saml;
    int rc = sv ? cg_saml_authenticate(sv, v, vl, snap, &a->who, &why) : CG_E_AUTH;
    if (a->who)
        cg_strlcpy(a->principal, a->who->name, sizeof a->principal);
    if (rc < 0 && !(a->who && !a->who->enabled)) {
        a->who = NULL;
        fail(a, 401, why);
    }
}

void cg_http_authenticate(const cg_conn_info *ci, const cg_http_parser *req,
                          const char *method, const cg_snapshot *snap, cg_http_auth *a)
{
    memset(a, 0, sizeof *a);
    const cg_listener_cfg *l = ci->listener;
    if (ci->principal_id) {
        /* the TLS layer (or the address) already said who this is; it is
         * looked up again in the current snapshot for every request, by
         * id: a name removed and given to someone else is not them */
        cg_strlcpy(a->principal, ci->principal, sizeof a->principal);
        a->method = cg_auth_method_name(ci->auth_method);
        a->who = cg_snapshot_principal_by_id(snap, ci->principal_id);
        return;
    }
    size_t na;
    const cg_http_header *h = cg_http_header_get(req, "authorization", &na);
    if (!h) {
        fail(a, 401, "authentication required");
        return;
    }
    if (na > 1) {
        fail(a, 400, "more than one Authorization header");
        return;
    }
    const char *v = cg_http_str(req, h->value);
    size_t vl = h->value.len;
    if ((l->auth & CG_AUTH_DIGEST) && vl > 7 && strncasecmp(v, "Digest ", 7) == 0)
        digest(ci, req, method, v, vl, snap, a);
    else if ((l->auth & CG_AUTH_SAML) && vl > 5 && strncasecmp(v, "SAML ", 5) == 0)
        saml(ci, v + 5, vl - 5, snap, a);
    else
        fail(a, 401, "unsupported authorization scheme");
}
