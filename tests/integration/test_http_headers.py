"""test_http_headers.py — what the backend receives (SPEC sections 4 and
10): the canonical target, the gateway's own X-Forwarded-For/-Proto and
principal header while the client's identity and forwarding headers are
dropped, hop-by-hop fields (and those named in Connection) removed,
Destination and If rewritten to paths, chunked bodies re-framed without
extensions or trailers. nginx cannot show the header fields it received,
so these run against a recording backend: a socket that keeps each
request's bytes and answers 200."""

import socket
import threading

import pytest

import cg


class RecordingBackend:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        buf = b''
        try:
            while True:
                while b'\r\n\r\n' not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b'\r\n\r\n')
                lines = head.decode('latin-1').split('\r\n')
                hdrs = [tuple(x.strip() for x in ln.split(':', 1)) for ln in lines[1:]]
                names = {k.lower(): v for k, v in hdrs}
                body = b''
                if 'content-length' in names:
                    n = int(names['content-length'])
                    while len(buf) < n:
                        buf += c.recv(65536)
                    body, buf = buf[:n], buf[n:]
                elif names.get('transfer-encoding') == 'chunked':
                    while not (b'\r\n0\r\n\r\n' in b'\r\n' + buf):
                        buf += c.recv(65536)
                    end = (b'\r\n' + buf).index(b'\r\n0\r\n\r\n') + 5
                    body, buf = buf[:end], buf[end:]
                self.requests.append({'line': lines[0], 'headers': hdrs, 'names': names,
                                      'body': body})
                c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n'
                          b'X-Transaction-Id: spoofed\r\n\r\nok')
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


@pytest.fixture(scope='module')
def backend():
    b = RecordingBackend()
    yield b
    b.close()


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, backend):
    g = module_gateway_factory({
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert', 'upstream': 'rec'},
        'upstream rec': {'address': f'127.0.0.1:{backend.port}'},
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', '/h/*', 'all')
    return g.start()


def send(gw, pki, data):
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki, 'alice'))
    try:
        s.sendall(data)
        return cg.recv_all(s)
    finally:
        s.close()


def last(backend, n_before):
    cg.wait_until(lambda: len(backend.requests) > n_before, what='backend request')
    return backend.requests[-1]


def test_identity_and_forwarding_headers_are_replaced(gw, pki, backend):
    n = len(backend.requests)
    answer = send(gw, pki, b'GET /h/a HTTP/1.1\r\nHost: localhost\r\n'
                           b'X-Authenticated-Principal: root\r\nX-Forwarded-For: 6.6.6.6\r\n'
                           b'X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil\r\n'
                           b'Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n'
                           b'Authorization: Basic cm9vdDpyb290\r\nConnection: close\r\n\r\n')
    assert answer.startswith(b'HTTP/1.1 200')
    r = last(backend, n)
    names = [k.lower() for k, _ in r['headers']]
    assert names.count('x-authenticated-principal') == 1
    assert r['names']['x-authenticated-principal'] == 'alice'
    assert names.count('x-forwarded-for') == 1 and r['names']['x-forwarded-for'] == '127.0.0.1'
    assert names.count('x-forwarded-proto') == 1 and r['names']['x-forwarded-proto'] == 'https'
    for gone in ('x-forwarded-host', 'forwarded', 'x-real-ip', 'authorization'):
        assert gone not in names, gone
    # the backend's own X-Transaction-Id never reaches the client
    assert b'spoofed' not in answer
    assert answer.count(b'X-Transaction-Id: ') == 1


def test_hop_by_hop_and_connection_named_fields_are_dropped(gw, pki, backend):
    n = len(backend.requests)
    send(gw, pki, b'GET /h/a HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Secret-Hop\r\n'
                  b'X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n'
                  b'Proxy-Authorization: x\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n')
    r = last(backend, n)
    names = [k.lower() for k, _ in r['headers']]
    for gone in ('x-secret-hop', 'keep-alive', 'te', 'proxy-authorization', 'upgrade',
                 'connection'):
        assert gone not in names, gone
    assert r['names']['x-kept'] == 'yes'


def test_target_is_forwarded_in_canonical_form(gw, pki, backend):
    n = len(backend.requests)
    send(gw, pki, b'GET /h/x/../%61%20b//c/./d?q=%2F&x HTTP/1.1\r\nHost: localhost\r\n'
                  b'Connection: close\r\n\r\n')
    r = last(backend, n)
    assert r['line'] == 'GET /h/a%20b/c/d?q=%2F&x HTTP/1.1'


def test_absolute_form_is_forwarded_as_origin_form(gw, pki, backend):
    n = len(backend.requests)
    send(gw, pki, b'GET https://localhost/h/a HTTP/1.1\r\nHost: localhost\r\n'
                  b'Connection: close\r\n\r\n')
    r = last(backend, n)
    assert r['line'] == 'GET /h/a HTTP/1.1'


def test_destination_and_if_are_rewritten_to_paths(gw, pki, backend):
    n = len(backend.requests)
    port = gw.port('content')
    send(gw, pki, f'COPY /h/a HTTP/1.1\r\nHost: localhost:{port}\r\n'
                  f'Destination: https://localhost:{port}/h/x/../b%2Dc\r\n'
                  f'If: <https://localhost:{port}/h/./a> (<opaquelocktoken:abc>)\r\n'
                  'Connection: close\r\n\r\n'.encode())
    r = last(backend, n)
    assert r['names']['destination'] == '/h/b-c'
    assert r['names']['if'] == '</h/a> (<opaquelocktoken:abc>)'


def test_chunked_body_is_reframed_without_extensions_or_trailers(gw, pki, backend):
    n = len(backend.requests)
    answer = send(gw, pki, b'PUT /h/up HTTP/1.1\r\nHost: localhost\r\n'
                           b'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
                           b'5;name=evil\r\nhello\r\n0\r\nX-Trailer: smuggled\r\n\r\n')
    assert answer.startswith(b'HTTP/1.1 200')
    r = last(backend, n)
    assert r['names']['transfer-encoding'] == 'chunked'
    assert r['body'] == b'5\r\nhello\r\n0\r\n\r\n'
    assert b'evil' not in r['body'] and b'smuggled' not in r['body']


def test_put_without_body_gets_content_length_zero(gw, pki, backend):
    n = len(backend.requests)
    send(gw, pki, b'PUT /h/empty HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
    r = last(backend, n)
    assert r['names']['content-length'] == '0'
