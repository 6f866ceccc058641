"""test_metrics.py — the admin listener (SPEC section 10, `admin_listen`):
/metrics is Prometheus text whose counters move by exactly what the test
did (connections, handshakes by result, authentications by method,
operations by service and decision, backend errors, policy and
configuration reloads, audit records); /healthz answers 200 while the
gateway can serve and 503 while it cannot; nothing of it is reachable on
a gateway listener."""
import imaplib
import re
import socket
import ssl
import time

import pytest

import cg

LINE = re.compile(r'^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$')


def scrape(g):
    """The exposition as {'name{labels}': value}; checks its syntax."""
    st, h, body = cg.http_plain(g.admin_addr(), 'GET', '/metrics')
    assert st == 200 and h['content-type'].startswith('text/plain; version=0.0.4')
    out, typed = {}, set()
    for ln in body.decode().splitlines():
        if ln.startswith('# TYPE '):
            name, kind = ln.split()[2:4]
            assert kind in ('counter', 'gauge')
            typed.add(name)
            continue
        if ln.startswith('# HELP ') or not ln:
            continue
        m = LINE.match(ln)
        assert m, ln
        assert m.group(1) in typed, f'{m.group(1)} has no # TYPE line'
        out[m.group(1) + (m.group(2) or '')] = float(m.group(3))
    return out


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, nginx):
    port = cg.free_port()
    g = module_gateway_factory({
        'gateway': {'workers': '2', 'admin_listen': f'127.0.0.1:{port}'},
        'listener imaps': cg.tls_listener(pki, 'imap', 'dovecot'),
        'listener content': cg.tls_listener(pki, 'http', 'nginx', auth='cert, psk'),
        'listener down': cg.tls_listener(pki, 'http', 'down'),
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
        'upstream down': {'address': f'127.0.0.1:{cg.free_port()}'},
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    g.ctl_ok('principal', 'add', 'dev1')
    g.psk = re.findall(r'^([0-9a-f]{64})$',
                       g.ctl_ok('cred', 'add', 'dev1', 'psk', '--identity', 'dev1-id').stdout,
                       re.M)[0]
    g.ctl_ok('acl', 'allow', '*', 'http', '/content/*', 'read')
    g.ctl_ok('acl', 'allow', 'alice', 'imap', 'INBOX', 'all')
    g.ctl_ok('acl', 'allow', '*', 'http', '/down/*', 'read')
    return g.start()


def get(g, pki, path, listener='content'):
    return cg.https(g.addr(listener), cg.client_context(pki, 'alice'), 'GET', path)


def test_http_operations_and_handshakes_are_counted(gw, pki):
    b = scrape(gw)
    for _ in range(3):
        assert get(gw, pki, '/content/index.html')[0] == 200
    for _ in range(2):
        assert get(gw, pki, '/secret/x')[0] == 403
    # a client without a certificate fails its handshake on a cert-only listener
    with pytest.raises((ssl.SSLError, OSError)):
        s = cg.tls_connect(gw.addr('imaps'), cg.client_context(pki), timeout=5)
        s.recv(100)
    cg.wait_until(lambda: delta(b, scrape(gw), 'cpmgate_tls_handshakes_total{result="failed"}')
                  >= 1, timeout=5, what='the failed handshake counted')
    a = scrape(gw)
    assert delta(b, a, 'cpmgate_operations_total{service="http",decision="allow"}') == 3
    assert delta(b, a, 'cpmgate_operations_total{service="http",decision="deny"}') == 2
    assert delta(b, a, 'cpmgate_tls_handshakes_total{result="ok"}') == 5
    assert delta(b, a, 'cpmgate_tls_handshakes_total{result="failed"}') == 1
    assert delta(b, a, 'cpmgate_auth_total{method="cert"}') == 5
    assert delta(b, a, 'cpmgate_connections_accepted_total') == 6
    assert a['cpmgate_connections_active'] >= 0


def test_psk_authentication_is_counted(gw):
    b = scrape(gw)
    _, out = cg.s_client_psk(gw.addr('content'), 'dev1-id', gw.psk,
                             input=b'GET /content/index.html HTTP/1.1\r\nHost: localhost\r\n'
                                   b'Connection: close\r\n\r\n')
    assert 'HTTP/1.1 200' in out, out[-500:]
    a = scrape(gw)
    assert delta(b, a, 'cpmgate_auth_total{method="psk"}') == 1
    assert delta(b, a, 'cpmgate_operations_total{service="http",decision="allow"}') == 1


def test_imap_operations_are_counted(gw, pki):
    b = scrape(gw)
    m = imaplib.IMAP4_SSL('localhost', gw.port('imaps'), ssl_context=cg.client_context(pki, 'alice'))
    m.authenticate('EXTERNAL', lambda _: b'')
    assert m.select('INBOX')[0] == 'OK'
    assert m.status('Secret', '(MESSAGES)')[0] == 'NO'
    assert m.create('Nope')[0] == 'NO'
    m.logout()
    a = scrape(gw)
    assert delta(b, a, 'cpmgate_operations_total{service="imap",decision="deny"}') == 2
    assert delta(b, a, 'cpmgate_operations_total{service="imap",decision="allow"}') >= 1


def test_backend_errors_are_counted(gw, pki):
    b = scrape(gw)
    assert get(gw, pki, '/down/x', listener='down')[0] == 502
    assert delta(b, scrape(gw), 'cpmgate_backend_errors_total') >= 1


def test_policy_and_config_reloads_are_counted(gw, pki):
    b = scrape(gw)
    gw.ctl_ok('acl', 'allow', '*', 'http', '/more/*', 'read')
    cg.wait_until(lambda: delta(b, scrape(gw), 'cpmgate_policy_reloads_total') >= 1,
                  timeout=5, what='the policy reload counted')
    gw.reload()
    cg.wait_until(lambda: delta(b, scrape(gw), 'cpmgate_config_reloads_total') == 1,
                  timeout=10, what='the configuration reload counted')
    assert delta(b, scrape(gw), 'cpmgate_config_reload_failures_total') == 0


def test_audit_records_are_counted(gw, pki):
    b = scrape(gw)
    assert get(gw, pki, '/content/index.html')[0] == 200
    cg.wait_until(lambda: delta(b, scrape(gw), 'cpmgate_audit_records_committed_total') >= 1,
                  timeout=10, what='the audit record committed')
    a = scrape(gw)
    assert 'cpmgate_audit_queue_depth' in a and 'cpmgate_audit_commit_seconds' in a
    assert delta(b, a, 'cpmgate_audit_failures_total') == 0


def test_healthz_and_admin_paths(gw, pki):
    st, _, body = cg.http_plain(gw.admin_addr(), 'GET', '/healthz')
    assert st == 200 and body == b'ok\n'
    assert cg.http_plain(gw.admin_addr(), 'GET', '/nothing')[0] == 404
    assert cg.http_plain(gw.admin_addr(), 'POST', '/metrics', body=b'')[0] == 405
    # the gateway listeners know nothing of them: /metrics there is a path
    # like any other, decided by the ACL (and denied here)
    st, _, body = get(gw, pki, '/metrics')
    assert st == 403 and b'cpmgate_' not in body


def test_admin_listener_is_only_where_configured(gw):
    host, port = gw.admin_addr()
    assert host == '127.0.0.1'
    # not on any other address of the machine
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(('127.0.0.2', port))
            connected = True
        except OSError:
            connected = False
    assert not connected


def test_healthz_is_503_while_draining(gw, pki):
    # last in the module: SIGTERM starts the drain, /healthz says so
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki, 'alice'))
    s.sendall(b'GET /content/index.html HTTP/1.1\r\nHost: localhost\r\n\r\n')
    assert cg.recv_until(s, b'\r\n\r\n').startswith(b'HTTP/1.1 200')
    gw.send_signal(15)

    def unhealthy():
        try:
            return cg.http_plain(gw.admin_addr(), 'GET', '/healthz', timeout=2)[0] == 503
        except OSError:
            return True   # already gone
    cg.wait_until(unhealthy, timeout=10, what='/healthz 503 while draining')
    s.close()
    gw.stop()
