/* proxy/core/counters.h — process-wide counters (atomic, relaxed) that
 * connections and gateways bump; the admin listener shows them
 * (proxy/admin/metrics.h). */
#ifndef CG_COUNTERS_H
#define CG_COUNTERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    CG_M_TLS_RELOADS,         /* runtimes rebuilt for changed certificate files */
    CG_M_TLS_RELOAD_FAILURES, /* changed files that did not load */
    CG_M_POLICY_STORE_UP,     /* gauge: 1 while the policy store answers */
    CG_M_POLICY_CONFIRMED_MS, /* Unix ms: the snapshot last known current (store or cache) */
    CG_M_COUNT
};

extern atomic_uint_fast64_t cg_metrics[CG_M_COUNT];

static inline void cg_metric_add(enum cg_metric m, int64_t v)
{
    atomic_fetch_add_explicit(&cg_metrics[m], (uint_fast64_t)v, memory_order_relaxed);
}
#define cg_metric_inc(m) cg_metric_add((m), 1)

static inline void cg_metric_set(enum cg_metric m, uint64_t v)
{
    atomic_store_explicit(&cg_metrics[m], (uint_fast64_t)v, memory_order_relaxed);
}

/* Operations by service and decision (imap/http, allow/deny), for the
 * gateways. */
void cg_metrics_operation(const char *service, const char *decision);

/* The operations table: services x decisions, fixed so that no label can
 * grow without bound (an unknown service or decision counts as the last). */
#define CG_OPS_SERVICES 4
#define CG_OPS_DECISIONS 3
extern const char *const cg_ops_services[CG_OPS_SERVICES];
extern const char *const cg_ops_decisions[CG_OPS_DECISIONS];
/* Per peer (SPEC 7, inbound): sessions a peer's server principal opened
 * (an IMAP login, an HTTP connection's first request) and its refusals.
 * At most CG_PEER_SLOTS - 1 domains get their own label; the rest count
 * as peer="other", so the label set stays bounded whatever the policy. A
 * known domain is counted without a lock; a new one takes a lock once. */
#define CG_PEER_SLOTS 64
void cg_metrics_peer(const char *domain, bool refused);
/* Slot i (0..CG_PEER_SLOTS-1): false when unused; else its label
 * ("other" for the last), sessions and refusals. */
bool cg_metrics_peer_get(size_t i, const char **domain, uint64_t *sessions, uint64_t *refused);

uint64_t cg_metric_get(enum cg_metric m);
/* Seconds since the published policy snapshot was last confirmed current
 * against the store (CG_M_POLICY_CONFIRMED_MS); 0 before the first. */
uint64_t cg_policy_age_seconds(void);
uint64_t cg_metrics_ops(size_t service, size_t decision);

#endif
