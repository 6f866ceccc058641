/* proxy/core/counters.c — the process-wide counters of counters.h. */
#include "proxy/core/counters.h"

#include <string.h>

#include "common/cg_util.h"

atomic_uint_fast64_t cg_metrics[CG_M_COUNT];

const char *const cg_ops_services[CG_OPS_SERVICES] = { "imap", "http", "tls", "other" };
const char *const cg_ops_decisions[CG_OPS_DECISIONS] = { "allow", "deny", "error" };
static atomic_uint_fast64_t g_ops[CG_OPS_SERVICES][CG_OPS_DECISIONS];

void cg_metrics_operation(const char *service, const char *decision)
{
    size_t s = CG_OPS_SERVICES - 1, d = CG_OPS_DECISIONS - 1;
    for (size_t i = 0; i < CG_OPS_DECISIONS - 1; i++)
        if (decision && strcmp(decision, cg_ops_decisions[i]) == 0)
            d = i;
    for (size_t i = 0; i < CG_OPS_SERVICES - 1; i++)
        if (service && strcmp(service, cg_ops_services[i]) == 0)
            s = i;
    atomic_fetch_add_explicit(&g_ops[s][d], 1, memory_order_relaxed);
}

uint64_t cg_metric_get(enum cg_metric m)
{
    return atomic_load_explicit(&cg_metrics[m], memory_order_relaxed);
}

uint64_t cg_metrics_ops(size_t service, size_t decision)
{
    return atomic_load_explicit(&g_ops[service][decision], memory_order_relaxed);
}

uint64_t cg_policy_age_seconds(void)
{
    uint64_t at = cg_metric_get(CG_M_POLICY_CONFIRMED_MS);
    uint64_t now = (uint64_t)(cg_time_now_usec() / 1000);
    return at && now > at ? (now - at) / 1000 : 0;
}
