/* proxy/admin/metrics.h — process-wide counters (atomic, relaxed) and their
 * Prometheus text exposition for the admin listener's /metrics. */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cg_buf.h"

enum cg_metric {
    CG_M_CONN_ACCEPTED,
    CG_M_CONN_ACTIVE,     /* gauge */
    CG_M_CONN_REFUSED,
    CG_M_HS_OK,
    CG_M_HS_FAILED,
    CG_M_AUTH_CERT,
    CG_M_AUTH_PSK,
    CG_M_AUTH_ADDRESS,
    CG_M_BACKEND_ERRORS,
    CG_M_POLICY_RELOADS,
    CG_M_POLICY_BUILDING, /* gauge: 1 while a policy snapshot is being built */
    CG_M_CONFIG_RELOADS,
    CG_M_CONFIG_RELOAD_FAILURES,
    CG_M_COUNT
};

extern atomic_uint_fast64_t cg_metrics[CG_M_COUNT];

static inline void cg_metric_add(enum cg_metric m, int64_t v)
{
    atomic_fetch_add_explicit(&cg_metrics[m], (uint_fast64_t)v, memory_order_relaxed);
}
#define cg_metric_inc(m) cg_metric_add((m), 1)

/* Operations by service and decision (imap/http, allow/deny), for the
 * gateways. */
void cg_metrics_operation(const char *service, const char *decision);

/* Adds the exposition to o (fixed storage for the admin listener); false
 * when not all of it fit (o->failed): the text then ends with the last
 * whole piece that did. */
bool cg_metrics_render(cg_buf *o);

#endif
