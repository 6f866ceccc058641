/* proxy/admin/metrics.c — the process-wide counters of metrics.h and their Prometheus
 * text format (version 0.0.4). Operations by service and decision are a
 * small fixed table so that no label can grow without bound. The text is
 * written into a cg_buf: when a piece does not fit, the text ends with the
 * last piece that did, never inside one. */
#include "proxy/admin/metrics.h"

#include <string.h>

#include "store/audit.h"

atomic_uint_fast64_t cg_metrics[CG_M_COUNT];

static const char *const services[] = { "imap", "http", "tls", "other" };
static const char *const decisions[] = { "allow", "deny", "error" }; /* NDECISIONS */
#define NDECISIONS 3
static atomic_uint_fast64_t g_ops[4][NDECISIONS];

void cg_metrics_operation(const char *service, const char *decision)
{
    size_t s = 3, d = 2;
    for (size_t i = 0; i < 2; i++)
        if (decision && strcmp(decision, decisions[i]) == 0)
            d = i;
    for (size_t i = 0; i < 3; i++)
        if (service && strcmp(service, services[i]) == 0)
            s = i;
    atomic_fetch_add_explicit(&g_ops[s][d], 1, memory_order_relaxed);
}

static uint64_t get(enum cg_metric m)
{
    return atomic_load_explicit(&cg_metrics[m], memory_order_relaxed);
}

/* One metric: its HELP and TYPE lines and its value. */
static void metric(cg_buf *o, const char *type, const char *name, const char *help, uint64_t v)
{
    cg_buf_fmt(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
               (unsigned long long)v);
}

static void counter(cg_buf *o, const char *name, const char *help, uint64_t v)
{
    metric(o, "counter", name, help, v);
}

static void gauge(cg_buf *o, const char *name, const char *help, uint64_t v)
{
    metric(o, "gauge", name, help, v);
}

bool cg_metrics_render(cg_buf *o)
{
    counter(o, "cpmgate_connections_accepted_total", "Client connections accepted.",
            get(CG_M_CONN_ACCEPTED));
    gauge(o, "cpmgate_connections_active", "Client connections open now.", get(CG_M_CONN_ACTIVE));
    counter(o, "cpmgate_connections_refused_total", "Client connections refused.",
            get(CG_M_CONN_REFUSED));
    cg_buf_fmt(o, "# HELP cpmgate_tls_handshakes_total TLS handshakes by result.\n"
                  "# TYPE cpmgate_tls_handshakes_total counter\n"
                  "cpmgate_tls_handshakes_total{result=\"ok\"} %llu\n"
                  "cpmgate_tls_handshakes_total{result=\"failed\"} %llu\n",
               (unsigned long long)get(CG_M_HS_OK), (unsigned long long)get(CG_M_HS_FAILED));
    cg_buf_fmt(o, "# HELP cpmgate_auth_total Connection-level authentications by method.\n"
                  "# TYPE cpmgate_auth_total counter\n"
                  "cpmgate_auth_total{method=\"cert\"} %llu\n"
                  "cpmgate_auth_total{method=\"psk\"} %llu\n"
                  "cpmgate_auth_total{method=\"address\"} %llu\n",
               (unsigned long long)get(CG_M_AUTH_CERT), (unsigned long long)get(CG_M_AUTH_PSK),
               (unsigned long long)get(CG_M_AUTH_ADDRESS));
    cg_buf_fmt(o, "# HELP cpmgate_operations_total Operations by service and decision.\n"
                  "# TYPE cpmgate_operations_total counter\n");
    for (size_t s = 0; s < 4; s++)
        for (size_t d = 0; d < NDECISIONS; d++)
            cg_buf_fmt(o, "cpmgate_operations_total{service=\"%s\",decision=\"%s\"} %llu\n",
                       services[s], decisions[d],
                       (unsigned long long)atomic_load_explicit(&g_ops[s][d], memory_order_relaxed));
    counter(o, "cpmgate_backend_errors_total", "Backend connect, TLS or timeout errors.",
            get(CG_M_BACKEND_ERRORS));
    counter(o, "cpmgate_policy_reloads_total", "Policy snapshots published.",
            get(CG_M_POLICY_RELOADS));
    gauge(o, "cpmgate_policy_building", "1 while a policy snapshot is being built.",
          get(CG_M_POLICY_BUILDING));
    counter(o, "cpmgate_config_reloads_total", "Configuration reloads applied.",
            get(CG_M_CONFIG_RELOADS));
    counter(o, "cpmgate_config_reload_failures_total", "Configuration reloads refused.",
            get(CG_M_CONFIG_RELOAD_FAILURES));
    cg_audit_stats st;
    memset(&st, 0, sizeof st);
    cg_audit_get_stats(&st);
    counter(o, "cpmgate_audit_records_committed_total", "Audit records committed.", st.committed);
    counter(o, "cpmgate_audit_failures_total", "Audit commit failures.", st.failures);
    gauge(o, "cpmgate_audit_queue_depth", "Audit records waiting.", st.queue_depth);
    cg_buf_fmt(o, "# HELP cpmgate_audit_commit_seconds Duration of the last audit batch commit.\n"
                  "# TYPE cpmgate_audit_commit_seconds gauge\ncpmgate_audit_commit_seconds %.6f\n",
               (double)st.last_commit_usec / 1e6);
    return !o->failed;
}
