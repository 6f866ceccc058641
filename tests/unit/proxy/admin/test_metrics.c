/* tests/unit/proxy/admin/test_metrics.c — proxy/admin/metrics.c: a render
 * into a buffer of any size never writes past its sizeof and stops at a
 * whole line of the full text; a full render holds every counter with the
 * value it was moved to; the per-peer counters keep a bounded label set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/cg_buf.h"
#include "common/cg_util.h"
#include "proxy/admin/metrics.h"

static char full[32768];
static size_t full_len;

static void render_full(void)
{
    cg_buf b;
    cg_buf_init_fixed(&b, full, sizeof full);
    assert_true(cg_metrics_render(&b));
    assert_false(b.failed);
    full_len = b.len;
    assert_int_equal(strlen(full), full_len);
}

static void test_full_render_holds_every_counter(void **state)
{
    (void)state;
    cg_metric_add(CG_M_CONN_ACCEPTED, 7);
    cg_metric_add(CG_M_CONN_ACTIVE, 2);
    cg_metric_inc(CG_M_AUTH_PSK);
    cg_metric_add(CG_M_BACKEND_ERRORS, 3);
    cg_metrics_operation("imap", "deny");
    cg_metrics_operation("http", "allow");
    cg_metrics_operation("http", "allow");
    cg_metrics_operation("smtp", "maybe"); /* neither known: other, error */
    render_full();
    static const char *const lines[] = {
        "cpmgate_connections_accepted_total 7\n",
        "# TYPE cpmgate_connections_active gauge\ncpmgate_connections_active 2\n",
        "cpmgate_connections_refused_total 0\n",
        "cpmgate_tls_handshakes_total{result=\"ok\"} 0\n",
        "cpmgate_tls_handshakes_total{result=\"failed\"} 0\n",
        "cpmgate_auth_total{method=\"psk\"} 1\n",
        "cpmgate_auth_total{method=\"cert\"} 0\n",
        "cpmgate_operations_total{service=\"imap\",decision=\"deny\"} 1\n",
        "cpmgate_operations_total{service=\"http\",decision=\"allow\"} 2\n",
        "cpmgate_operations_total{service=\"other\",decision=\"error\"} 1\n",
        "cpmgate_backend_errors_total 3\n",
        "cpmgate_policy_reloads_total 0\n",
        "cpmgate_policy_building 0\n",
        "cpmgate_config_reloads_total 0\n",
        "cpmgate_config_reload_failures_total 0\n",
        "cpmgate_audit_records_committed_total ",
        "cpmgate_audit_failures_total ",
        "cpmgate_audit_queue_depth ",
        "cpmgate_audit_commit_seconds ",
    };
    for (size_t i = 0; i < CG_ARRAY_LEN(lines); i++)
        if (!strstr(full, lines[i]))
            fail_msg("missing: %s", lines[i]);
    assert_int_equal(full[full_len - 1], '\n');
}

/* Every size from 0 to the full length: nothing past the storage, the
 * text a prefix of the full one that ends at a line's end, the NUL after
 * it, and `failed` exactly when the text is not whole. */
static void test_small_buffer_never_written_past(void **state)
{
    (void)state;
    render_full();
    enum { GUARD = 16 };
    for (size_t size = 0; size <= full_len + 1; size++) {
        char *mem = malloc(size + GUARD);
        assert_non_null(mem);
        memset(mem, 'G', size + GUARD);
        cg_buf b;
        cg_buf_init_fixed(&b, mem, size);
        bool whole = cg_metrics_render(&b);
        for (size_t i = size; i < size + GUARD; i++)
            assert_int_equal(mem[i], 'G');
        assert_int_equal(whole, size > full_len);
        assert_int_equal(b.failed, !whole);
        if (size) {
            assert_true(b.len < size);
            assert_int_equal(mem[b.len], '\0');
            assert_memory_equal(mem, full, b.len);
            assert_true(b.len == 0 || mem[b.len - 1] == '\n');
        }
        free(mem);
    }
}

/* SPEC 7: per-peer sessions and refusals, one label per domain up to
 * CG_PEER_SLOTS - 1 domains, the rest as peer="other". */
static void test_peer_counters_are_bounded(void **state)
{
    (void)state;
    cg_metrics_peer("b.example", false);
    cg_metrics_peer("b.example", false);
    cg_metrics_peer("b.example", true);
    cg_metrics_peer("c.example", true);
    char d[32];
    for (int i = 0; i < CG_PEER_SLOTS + 5; i++) {
        snprintf(d, sizeof d, "p%d.example", i);
        cg_metrics_peer(d, false);
    }
    cg_metrics_peer(NULL, true); /* no domain: not counted */
    render_full();
    assert_non_null(strstr(full, "cpmgate_peer_sessions_total{peer=\"b.example\"} 2\n"));
    assert_non_null(strstr(full, "cpmgate_peer_refusals_total{peer=\"b.example\"} 1\n"));
    assert_non_null(strstr(full, "cpmgate_peer_sessions_total{peer=\"c.example\"} 0\n"));
    assert_non_null(strstr(full, "cpmgate_peer_refusals_total{peer=\"c.example\"} 1\n"));
    assert_non_null(strstr(full, "cpmgate_peer_sessions_total{peer=\"p0.example\"} 1\n"));
    /* two slots went to b and c, the last is "other": 61 more own labels */
    assert_non_null(strstr(full, "cpmgate_peer_sessions_total{peer=\"p60.example\"} 1\n"));
    assert_null(strstr(full, "p61.example"));
    assert_non_null(strstr(full, "cpmgate_peer_sessions_total{peer=\"other\"} 8\n"));
    size_t labels = 0;
    for (const char *q = full; (q = strstr(q, "cpmgate_peer_sessions_total{")); q++)
        labels++;
    assert_int_equal(labels, CG_PEER_SLOTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_render_holds_every_counter),
        cmocka_unit_test(test_small_buffer_never_written_past),
        cmocka_unit_test(test_peer_counters_are_bounded),
        cmocka_unit_test(test_small_buffer_never_written_past),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
