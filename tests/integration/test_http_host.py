"""test_http_host.py — which virtual host the backend serves (SPEC 4): an
HTTP listener answers only for its server_names (by default the DNS and IP
names of its certificate) and only for the name the client gave as SNI;
anything else is 421 and never reaches nginx. The backend gets the matched
name, or the upstream's fixed `host`, never the client's Host field.

The nginx here is private: besides the usual tree it has a second server
block for `backend.test` with a tree of its own, and it logs the Host of
every request it serves ($http_host), so a test can tell which block
answered and what the gateway sent."""

import socket
import ssl
import uuid

import pytest

import cg

DEFAULT_TREE = b'default tree\n'
OTHER_TREE = b'backend.test tree\n'


class HostLoggingNginx(cg.Nginx):
    def write_config(self):
        super().write_config()
        other = self.dir / 'other'
        (other / 'content' / 'dir').mkdir(parents=True, exist_ok=True)
        (other / 'content' / 'which.txt').write_bytes(OTHER_TREE)
        (self.root / 'content' / 'dir').mkdir(parents=True, exist_ok=True)
        (self.root / 'content' / 'which.txt').write_bytes(DEFAULT_TREE)
        self.host_log = self.dir / 'host.log'
        text = open(self.config_path).read()
        head, _, tail = text.rpartition('}')
        extra = (f"    log_format hostlog '$http_host $request_uri';\n"
                 f"    access_log {self.host_log} hostlog;\n"
                 f"    server {{\n        listen {self.host}:{self.port};\n"
                 f"        server_name backend.test;\n        root {other};\n"
                 f"        location / {{ }}\n    }}\n")
        open(self.config_path, 'w').write(head + extra + '}' + tail)

    def hosts_seen(self, marker):
        """The Host values nginx logged for request URIs holding marker."""
        try:
            lines = self.host_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split(' ', 1)[0] for line in lines if marker in line]


@pytest.fixture(scope='module')
def backend(cg_root):
    n = HostLoggingNginx(cg_root / 'nginx-hosts').start()
    yield n
    n.stop()


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, backend):
    def listener(upstream, **extra):
        return cg.tls_listener(pki, 'http', upstream, **extra)
    g = module_gateway_factory({
        'listener content': listener('nginx'),
        'listener any': listener('nginx', server_names='*'),
        'listener named': listener('nginx', server_names='gw.example.com, localhost'),
        'listener fixed': listener('fixed'),
        'upstream nginx': backend.upstream(),
        'upstream fixed': backend.upstream(host='backend.test'),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', '/content/*', 'read')
    return g.start()


def exchange(gw, pki, listener, head, sni='localhost'):
    """One raw request on a fresh TLS connection with alice's certificate
    (sni None: no SNI at all); returns (status, headers, body)."""
    ctx = cg.client_context(pki, 'alice', check_hostname=sni is not None)
    raw = socket.create_connection(gw.addr(listener), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    try:
        s.sendall(head.encode())
        data = cg.recv_all(s)
    finally:
        s.close()
    top, _, body = data.partition(b'\r\n\r\n')
    lines = top.decode('latin-1').split('\r\n')
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body


def get(gw, pki, listener, host, sni='localhost'):
    marker = uuid.uuid4().hex
    target = f'/content/which.txt?m={marker}'
    st, h, body = exchange(gw, pki, listener,
                           f'GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n',
                           sni=sni)
    return st, h, body, marker


def test_host_the_listener_does_not_serve_is_421_and_never_reaches_nginx(gw, pki, backend):
    for sni in (None, 'localhost'):
        st, _, body, marker = get(gw, pki, 'content', 'evil.example', sni=sni)
        assert st == 421, (st, body)
        assert body.startswith(b'421 Misdirected Request: this listener does not serve that host')
        assert backend.hosts_seen(marker) == []
    # the backend's own second name is not the client's to pick either
    st, _, body, marker = get(gw, pki, 'content', 'backend.test', sni=None)
    assert st == 421 and OTHER_TREE not in body
    assert backend.hosts_seen(marker) == []


def test_absolute_form_for_a_host_not_served_is_421(gw, pki, backend):
    marker = uuid.uuid4().hex
    for sni in (None, 'localhost'):
        st, _, body = exchange(gw, pki, 'content',
                               f'GET https://evil.example/content/which.txt?m={marker} HTTP/1.1\r\n'
                               'Host: evil.example\r\nConnection: close\r\n\r\n', sni=sni)
        assert st == 421, (st, body)
    assert backend.hosts_seen(marker) == []
    # for a served name it is reduced to its path and the backend gets that name
    st, _, body = exchange(gw, pki, 'content',
                           f'GET https://LocalHost:443/content/which.txt?m={marker} HTTP/1.1\r\n'
                           'Host: LocalHost:443\r\nConnection: close\r\n\r\n')
    assert (st, body) == (200, DEFAULT_TREE)
    assert backend.hosts_seen(marker) == ['localhost']


def test_host_that_differs_from_the_sni_name_is_421(gw, pki, backend):
    # 127.0.0.1 is one of the certificate's names, but not the one asked for
    st, _, body, marker = get(gw, pki, 'content', '127.0.0.1', sni='localhost')
    assert st == 421, (st, body)
    assert b'Host differs from the TLS server name' in body
    assert backend.hosts_seen(marker) == []
    # the same Host without SNI (a client that connects by address) is served
    st, _, body, marker = get(gw, pki, 'content', '127.0.0.1', sni=None)
    assert (st, body) == (200, DEFAULT_TREE)
    assert backend.hosts_seen(marker) == ['127.0.0.1']


def test_served_name_reaches_nginx_without_the_clients_port_or_spelling(gw, pki, backend):
    port = gw.port('content')
    st, _, body, marker = get(gw, pki, 'content', f'LOCALHOST:{port}')
    assert (st, body) == (200, DEFAULT_TREE)
    assert backend.hosts_seen(marker) == ['localhost']
    # server_names set by hand: certificate names outside it are refused
    st, _, _, _ = get(gw, pki, 'named', '127.0.0.1', sni=None)
    assert st == 421
    st, _, body, marker = get(gw, pki, 'named', 'localhost')
    assert (st, body) == (200, DEFAULT_TREE)


def test_star_turns_the_host_check_off(gw, pki, backend):
    st, _, body, marker = get(gw, pki, 'any', 'evil.example', sni='localhost')
    assert (st, body) == (200, DEFAULT_TREE)
    assert backend.hosts_seen(marker) == ['evil.example']


def test_upstream_host_is_the_host_nginx_gets(gw, pki, backend):
    st, _, body, marker = get(gw, pki, 'fixed', 'localhost')
    assert (st, body) == (200, OTHER_TREE)
    assert backend.hosts_seen(marker) == ['backend.test']
    # nginx's redirect names backend.test with its own port: the client is
    # sent back to the gateway under the name it used
    port = gw.port('fixed')
    st, h, _ = exchange(gw, pki, 'fixed', f'GET /content/dir HTTP/1.1\r\nHost: localhost:{port}\r\n'
                                          'Connection: close\r\n\r\n')
    assert st == 301, (st, h)
    assert h['location'] == f'https://localhost:{port}/content/dir/', h
    # the name check still applies in front of a fixed host
    st, _, _, marker = get(gw, pki, 'fixed', 'evil.example', sni=None)
    assert st == 421
    assert backend.hosts_seen(marker) == []
