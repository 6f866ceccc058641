/* proxy/core/relay.c — the plain relay: the decrypted client stream goes to the
 * upstream unchanged and back. The upstream is opened on the first client
 * bytes, so TLS handshakes (and port scans) cost no backend connection;
 * IMAP is server-speaks-first (RFC 3501 section 7.1: the greeting), so
 * there it is opened as soon as the connection is open.
 * Client EOF half-closes toward the backend; the answer still comes back. */
#include "proxy/core/conn.h"

#include "common/cg_error.h"
#include "common/cg_log.h"

typedef struct relay {
    bool connecting, client_eof;
} relay;

static bool ensure_upstream(cg_conn *c)
{
    relay *r = cg_conn_session(c);
    if (cg_conn_upstream_attached(c) || r->connecting)
        return true;
    if (cg_conn_upstream_connect(c) < 0) {
        cg_conn_close(c, "no upstream");
        return false;
    }
    r->connecting = true;
    return true;
}

static void relay_open(cg_conn *c)
{
    if (cg_conn_info_of(c)->listener->protocol == CG_PROTO_IMAP)
        ensure_upstream(c);
}

static void relay_client_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    if (!ensure_upstream(c))
        return;
    /* bytes written before the connect completes are queued by the core */
    if (cg_conn_write_upstream(c, buf, len) < 0)
        cg_conn_close(c, "upstream write failed");
}

static void relay_client_eof(cg_conn *c)
{
    relay *r = cg_conn_session(c);
    r->client_eof = true;
    if (!cg_conn_upstream_attached(c))
        cg_conn_close(c, "client closed");
    else
        cg_conn_upstream_shutdown(c);
}

static void relay_connected(cg_conn *c, int status)
{
    relay *r = cg_conn_session(c);
    r->connecting = false;
    if (status < 0) {
        cg_warn("conn=%llu relay: upstream unavailable: %s",
                (unsigned long long)cg_conn_info_of(c)->id, cg_strerror(status));
        cg_conn_abort(c, "upstream unavailable");
    }
}

static void relay_upstream_data(cg_conn *c, const uint8_t *buf, size_t len)
{
    if (cg_conn_write_client(c, buf, len) < 0)
        cg_conn_abort(c, "client write failed");
}

static void relay_upstream_eof(cg_conn *c, int status)
{
    (void)status;
    cg_conn_close(c, "upstream closed");
}

const cg_proto_ops cg_relay_proto = {
    .name = "relay",
    .session_size = sizeof(relay),
    .on_open = relay_open,
    .on_client_data = relay_client_data,
    .on_client_eof = relay_client_eof,
    .on_upstream_connected = relay_connected,
    .on_upstream_data = relay_upstream_data,
    .on_upstream_eof = relay_upstream_eof,
};
