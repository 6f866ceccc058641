/* proxy/core/conn_info.c — what a connection's own facts contribute to an audit
 * record, and the connection-level (service "tls") records. Beside proxy/core/conn.h's API but apart from proxy/core/conn.c, so the protocol
 * gateways and the in-memory connection of the session fuzzers share it. */
#include "proxy/core/conn.h"
#include "proxy/core/conn_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cg_error.h"
#include "store/audit.h"
#include "proxy/core/config.h"

static const char g_none[] = "";

void cg_conn_info_drop(const char **field)
{
    if (*field && *field != g_none)
        free((void *)*field);
    *field = g_none;
}

int cg_conn_info_set(const char **field, const char *v)
{
    cg_conn_info_drop(field);
    if (!v || !v[0])
        return 0;
    char *copy = strdup(v);
    if (!copy)
        return CG_E_NOMEM;
    *field = copy;
    return 0;
}

void cg_conn_info_clear(cg_conn_info *ci)
{
    cg_conn_info_drop(&ci->sni);
    cg_conn_info_drop(&ci->principal);
}

void cg_conn_info_audit(const cg_conn_info *ci, cg_audit_rec *r)
{
    cg_audit_rec_init(r);
    r->conn_id = ci->id;
    r->listener = ci->listener->name;
    r->client = ci->client;
    r->principal = ci->principal[0] ? ci->principal : NULL;
    r->method = ci->auth_method ? cg_auth_method_name(ci->auth_method) : NULL;
    r->tls_version = ci->tls ? ci->tls_version : NULL;
    r->tls_cipher = ci->tls ? ci->tls_cipher : NULL;
}

int cg_conn_audit_tls(const cg_conn_info *ci, const char *operation, const char *result,
                      const char *decision, const char *reason, bool refusal)
{
    cg_audit_rec r;
    cg_conn_info_audit(ci, &r);
    r.service = "tls";
    r.operation = operation;
    r.result = result;
    r.decision = decision;
    r.reason = reason;
    return refusal ? cg_audit_refused(&r) : cg_audit_submit(&r);
}
