/* proxy/core/conn_internal.h — internal to proxy/core: the parts of a
 * connection that live in files of their own beside proxy/core/conn.c. */
#ifndef CG_CONN_INTERNAL_H
#define CG_CONN_INTERNAL_H

#include <stdbool.h>

#include "proxy/core/conn.h"

struct cg_tls;

/* proxy/core/conn_identity.c: the connection-level identity from the PSK
 * identity or the verified certificate of tls (NULL: plain), else the
 * source address (SPEC section 2), written into ci. Returns 0 when the
 * connection may continue, else the refusal's code (CG_E_UNAVAIL: no
 * policy yet; CG_E_DENIED: a disabled principal; CG_E_AUTH: no usable
 * identity) with its reason in *why_r. */
int cg_conn_identity_resolve(cg_conn_info *ci, struct cg_tls *tls, const char **why_r)
    __attribute__((warn_unused_result));

/* proxy/core/conn_info.c: one audit record of service "tls" with the
 * connection's fields. A refusal goes through the audit layer's limiter
 * per address, so a flood of bad handshakes cannot flood the log. */
void cg_conn_audit_tls(const cg_conn_info *ci, const char *operation, const char *result,
                       const char *decision, const char *reason, bool refusal);

#endif
