/* proxy/admin/metrics.c — the process-wide counters (proxy/core/counters.h)
 * in Prometheus text format (version 0.0.4). The text is
 * written into a cg_buf: when a piece does not fit, the text ends with the
 * last piece that did, never inside one. */
#include "proxy/admin/metrics.h"

#include <string.h>

#include "store/audit.h"
#include "proxy/core/tls.h"
#include "proxy/core/worker.h"

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

/* The notAfter of each TLS listener's certificate in force. */
static void not_after(cg_buf *o)
{
    cg_runtime *rt = cg_runtime_acquire();
    if (!rt)
        return;
    cg_buf_fmt(o, "# HELP cpmgate_tls_certificate_not_after_seconds Expiry of the "
                  "listener's certificate in force (Unix time).\n"
                  "# TYPE cpmgate_tls_certificate_not_after_seconds gauge\n");
    for (size_t i = 0; i < rt->cfg->nlisteners; i++) {
        int64_t na = 0;
        if (rt->lctx[i] && cg_tls_ctx_not_after(rt->lctx[i], &na) == 0)
            cg_buf_fmt(o, "cpmgate_tls_certificate_not_after_seconds{listener=\"%s\"} %lld\n",
                       rt->cfg->listeners[i].name, (long long)na);
    }
    cg_runtime_release(rt);
}

/* SPEC 7: one family of per-peer counters (a bounded label set). */
static void peer_family(cg_buf *o, const char *name, const char *help, bool refusals)
{
    cg_buf_fmt(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    const char *d;
    uint64_t n, r;
    for (size_t i = 0; i < CG_PEER_SLOTS; i++)
        if (cg_metrics_peer_get(i, &d, &n, &r))
            cg_buf_fmt(o, "%s{peer=\"%s\"} %llu\n", name, d,
                       (unsigned long long)(refusals ? r : n));
}

bool cg_metrics_render(cg_buf *o)
{
    counter(o, "cpmgate_connections_accepted_total", "Client connections accepted.",
            cg_metric_get(CG_M_CONN_ACCEPTED));
    gauge(o, "cpmgate_connections_active", "Client connections open now.",
          cg_metric_get(CG_M_CONN_ACTIVE));
    counter(o, "cpmgate_connections_refused_total", "Client connections refused.",
            cg_metric_get(CG_M_CONN_REFUSED));
    cg_buf_fmt(o, "# HELP cpmgate_tls_handshakes_total TLS handshakes by result.\n"
                  "# TYPE cpmgate_tls_handshakes_total counter\n"
                  "cpmgate_tls_handshakes_total{result=\"ok\"} %llu\n"
                  "cpmgate_tls_handshakes_total{result=\"failed\"} %llu\n",
               (unsigned long long)cg_metric_get(CG_M_HS_OK),
               (unsigned long long)cg_metric_get(CG_M_HS_FAILED));
    cg_buf_fmt(o, "# HELP cpmgate_auth_total Connection-level authentications by method.\n"
                  "# TYPE cpmgate_auth_total counter\n"
                  "cpmgate_auth_total{method=\"cert\"} %llu\n"
                  "cpmgate_auth_total{method=\"psk\"} %llu\n"
                  "cpmgate_auth_total{method=\"address\"} %llu\n",
               (unsigned long long)cg_metric_get(CG_M_AUTH_CERT),
               (unsigned long long)cg_metric_get(CG_M_AUTH_PSK),
               (unsigned long long)cg_metric_get(CG_M_AUTH_ADDRESS));
    cg_buf_fmt(o, "# HELP cpmgate_operations_total Operations by service and decision.\n"
                  "# TYPE cpmgate_operations_total counter\n");
    for (size_t s = 0; s < CG_OPS_SERVICES; s++)
        for (size_t d = 0; d < CG_OPS_DECISIONS; d++)
            cg_buf_fmt(o, "cpmgate_operations_total{service=\"%s\",decision=\"%s\"} %llu\n",
                       cg_ops_services[s], cg_ops_decisions[d],
                       (unsigned long long)cg_metrics_ops(s, d));
    counter(o, "cpmgate_backend_errors_total", "Backend connect, TLS or timeout errors.",
            cg_metric_get(CG_M_BACKEND_ERRORS));
    counter(o, "cpmgate_policy_reloads_total", "Policy snapshots published.",
            cg_metric_get(CG_M_POLICY_RELOADS));
    gauge(o, "cpmgate_policy_building", "1 while a policy snapshot is being built.",
          cg_metric_get(CG_M_POLICY_BUILDING));
    gauge(o, "cpmgate_policy_store_up", "1 while the policy store answers, 0 while it does "
          "not (the last good policy serves).", cg_metric_get(CG_M_POLICY_STORE_UP));
    gauge(o, "cpmgate_policy_snapshot_age_seconds", "Seconds since the policy in force was "
          "last confirmed current against the store.", cg_policy_age_seconds());
    counter(o, "cpmgate_config_reloads_total", "Configuration reloads applied.",
            cg_metric_get(CG_M_CONFIG_RELOADS));
    counter(o, "cpmgate_config_reload_failures_total", "Configuration reloads refused.",
            cg_metric_get(CG_M_CONFIG_RELOAD_FAILURES));
    counter(o, "cpmgate_tls_reloads_total",
            "Changed certificate, key, CA or CRL files put in force.",
            cg_metric_get(CG_M_TLS_RELOADS));
    counter(o, "cpmgate_tls_reload_failures_total",
            "Changed certificate, key, CA or CRL files that did not load.",
            cg_metric_get(CG_M_TLS_RELOAD_FAILURES));
    not_after(o);
    peer_family(o, "cpmgate_peer_sessions_total",
                "Sessions opened by a peer's server principal (IMAP logins, HTTP connections).",
                false);
    peer_family(o, "cpmgate_peer_refusals_total",
                "Logins and requests of a peer's server principal refused.", true);
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
