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


# ------------------------------------------------ admin connection limits --

def admin_gateway(gateway_factory, pki, nginx, **gateway):
    gateway['admin_listen'] = f'127.0.0.1:{cg.free_port()}'
    g = gateway_factory({
        'gateway': gateway,
        'listener content': cg.tls_listener(pki, 'http', 'nginx'),
        'upstream nginx': nginx.upstream(),
    })
    return g


def read_to_eof(s, what, timeout=30):
    """Everything the server sends until it closes; the test fails (saying
    what was left open) if it does not close within timeout, a generous
    bound rather than the behaviour measured."""
    s.settimeout(timeout)
    data = b''
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        pytest.fail(f'{what} still open')


def test_idle_admin_connection_is_answered_408_and_closed(gateway_factory, pki, nginx):
    g = admin_gateway(gateway_factory, pki, nginx, admin_timeout='1').start()
    with socket.create_connection(g.admin_addr()) as s:
        out = read_to_eof(s, 'idle admin connection')
    assert out.startswith(b'HTTP/1.1 408 '), out
    # the listener still serves
    assert cg.http_plain(g.admin_addr(), 'GET', '/healthz')[0] == 200


def test_admin_connections_past_the_cap_are_refused(gateway_factory, pki, nginx):
    g = admin_gateway(gateway_factory, pki, nginx, admin_max_connections='2').start()
    # accepted in the order they connect: two held open, the third refused
    held = [socket.create_connection(g.admin_addr()) for _ in range(2)]
    try:
        with socket.create_connection(g.admin_addr()) as s:
            out = read_to_eof(s, 'connection past admin_max_connections')
        assert out.startswith(b'HTTP/1.1 503 '), out
        assert b'Retry-After:' in out
        g.wait_log('admin: 2 connections open')
        # a held connection still gets its answer
        held[0].sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
        assert read_to_eof(held[0], 'answered admin connection').startswith(b'HTTP/1.1 200 ')
    finally:
        for s in held:
            s.close()

    # closed ones free their places
    def served():
        try:
            return cg.http_plain(g.admin_addr(), 'GET', '/healthz', timeout=5)[0] == 200
        except OSError:
            return False
    cg.wait_until(served, timeout=10, what='/healthz once the held connections closed')


def bulk_policy(db, n, rules_each=1):
    """n principals, each with an address credential and rules_each ACL
    rules, written straight into the policy database in one transaction
    (cpmgatectl would take one process per row)."""
    import sqlite3
    con = sqlite3.connect(db)
    now = '2026-01-01T00:00:00Z'
    with con:
        con.executemany("INSERT INTO principal (name, kind, created) VALUES (?, 'user', ?)",
                        ((f'bulk{i}', now) for i in range(n)))
        con.execute("INSERT INTO credential (principal_id, type, value, created) "
                    "SELECT id, 'address', '10.' || (id / 65536 % 256) || '.' || "
                    "(id / 256 % 256) || '.' || (id % 256) || '/32', ? "
                    "FROM principal WHERE name LIKE 'bulk%'", (now,))
        con.execute("WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k "
                    "WHERE i + 1 < ?) "
                    "INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                    "SELECT 'allow', name, 'http', '/bulk/' || name || '/' || i || '/*', 1, ? "
                    "FROM principal, k WHERE name LIKE 'bulk%'", (rules_each, now))
    con.close()


def test_healthz_answers_while_a_large_policy_is_built(gateway_factory, pki, nginx):
    g = admin_gateway(gateway_factory, pki, nginx)
    # large enough that a build lasts while /metrics is asked (seconds)
    bulk_policy(g.policy_db, 6000, rules_each=100)
    g.start(timeout=60)
    before = scrape(g)
    assert before['cpmgate_policy_building'] == 0
    start = g.log_size()
    g.ctl_ok('principal', 'add', 'newcomer')   # a commit: the whole policy is rebuilt

    # /metrics itself answers during the build and says one is running ...
    def building():
        return scrape(g)['cpmgate_policy_building'] == 1
    cg.wait_until(building, timeout=60, what='/metrics showing a policy build in progress')
    # ... and so does /healthz
    st, _, body = cg.http_plain(g.admin_addr(), 'GET', '/healthz', timeout=30)
    assert (st, body) == (200, b'ok\n')
    g.wait_log('policy: reloaded', timeout=120, start=start)
    after = scrape(g)
    assert after['cpmgate_policy_building'] == 0
    assert delta(before, after, 'cpmgate_policy_reloads_total') >= 1
