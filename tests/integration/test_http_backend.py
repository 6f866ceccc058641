"""test_http_backend.py — the HTTP gateway and its backend (SPEC sections
8 and 10): a backend that is down gets 502, one that accepts and never
answers gets 504 after response_timeout, never a hang; a large upload and
download stream through with flat gateway memory (1 GiB by default,
CG_HTTP_BIG_MIB to change), and the audit log holds one record per request
with the transaction id, resource, decision and status."""

import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

import cg

BODY = b'backend test body\n'


@pytest.fixture(scope='module')
def site(nginx):
    base = '/be' + uuid.uuid4().hex[:8]
    st, _, _ = nginx.request('PUT', f'{base}/f.txt', body=BODY)
    assert st in (201, 204)
    return base


class SilentBackend:
    """A TCP listener that accepts and reads but never answers: the
    behaviour of a hung backend (no HTTP server can be told to hang)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except (socket.timeout, OSError):
                continue

    def close(self):
        self.stop = True
        self.t.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture(scope='module')
def silent():
    s = SilentBackend()
    yield s
    s.close()


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx, site, silent):
    g = module_gateway_factory({
        'listener content': cg.tls_listener(pki, 'http', 'nginx'),
        'listener down': cg.tls_listener(pki, 'http', 'down'),
        'listener slow': cg.tls_listener(pki, 'http', 'slow'),
        'upstream nginx': nginx.upstream(),
        'upstream down': {'address': f'127.0.0.1:{cg.free_port()}', 'connect_timeout': '2'},
        'upstream slow': {'address': f'127.0.0.1:{silent.port}', 'response_timeout': '1'},
    }, env={
        # ASan keeps freed memory in a quarantine (256 MiB by default):
        # small, so that RSS shows what the gateway itself holds
        'ASAN_OPTIONS': 'detect_leaks=1:abort_on_error=1:quarantine_size_mb=4:'
                        'thread_local_quarantine_size_kb=64'})
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{site}/*', 'all')
    return g.start()


def get(gw, pki, listener, path, **kw):
    return cg.https(gw.addr(listener), cg.client_context(pki, 'alice'), 'GET', path, **kw)


def test_backend_down_is_502_with_transaction_id(gw, pki, site):
    st, h, body = get(gw, pki, 'down', f'{site}/f.txt', timeout=20)
    assert st == 502
    assert body.startswith(b'502 Bad Gateway: ') and h['x-transaction-id'].encode() in body


def test_backend_that_never_answers_is_504(gw, pki, site):
    st, h, body = get(gw, pki, 'slow', f'{site}/f.txt', timeout=30)
    assert st == 504
    assert body.startswith(b'504 Gateway Timeout: ')


def test_gateway_serves_after_backend_errors(gw, pki, site):
    st, _, body = get(gw, pki, 'content', f'{site}/f.txt')
    assert (st, body) == (200, BODY)


def test_many_sequential_requests_reuse_the_pool(gw, pki, site, nginx):
    # each on its own client connection: the backend connection comes from
    # the pool, and every answer is whole
    for _ in range(20):
        st, _, body = get(gw, pki, 'content', f'{site}/f.txt')
        assert (st, body) == (200, BODY)


def test_audit_has_one_record_per_request(gw, pki, site):
    st, h, _ = get(gw, pki, 'content', f'{site}/f.txt', headers={'X-Request-Id': 'req-42'})
    assert st == 200
    txid = h['x-transaction-id']
    deadline = time.time() + 10
    while True:
        r = gw.audit('export', '--format', 'jsonl')
        lines = [ln for ln in r.stdout.splitlines() if f'"{txid}"' in ln]
        if lines or time.time() > deadline:
            break
        time.sleep(0.3)
    assert len(lines) == 1, r.stdout[-2000:] + r.stderr
    rec = lines[0]
    for frag in ('"request_id":"req-42"', '"service":"http"', '"operation":"GET"',
                 f'"resource":"{site}/f.txt"', '"decision":"allow"', '"result":"200"',
                 '"principal":"alice"', '"method":"cert"',
                 f'"bytes_out":{len(BODY)}'):
        assert frag in rec, (frag, rec)


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def pattern_block(i, size=1 << 20):
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def test_large_upload_and_download_stream_with_flat_memory(gw, pki, site, nginx):
    mib = int(os.environ.get('CG_HTTP_BIG_MIB', '1024'))
    path = f'{site}/big-{uuid.uuid4().hex[:6]}.bin'
    pid = gw.pid
    base = rss_kib(pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        up = hashlib.sha256()
        s = cg.tls_connect(gw.addr('content'), cg.client_context(pki, 'alice'), timeout=120)
        try:
            s.sendall(f'PUT {path} HTTP/1.1\r\nHost: localhost\r\n'
                      f'Content-Length: {mib << 20}\r\nConnection: close\r\n\r\n'.encode())
            for i in range(mib):
                b = pattern_block(i % 64)
                up.update(b)
                s.sendall(b)
            answer = cg.recv_all(s, timeout=120)
        finally:
            s.close()
        assert answer.startswith(b'HTTP/1.1 201') or answer.startswith(b'HTTP/1.1 204'), \
            answer[:200]
        stored = nginx.root / path.lstrip('/')
        assert stored.stat().st_size == mib << 20

        down = hashlib.sha256()
        s = cg.tls_connect(gw.addr('content'), cg.client_context(pki, 'alice'), timeout=120)
        try:
            s.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
                      .encode())
            buf = b''
            while b'\r\n\r\n' not in buf:
                buf += s.recv(65536)
            head, _, rest = buf.partition(b'\r\n\r\n')
            assert head.startswith(b'HTTP/1.1 200'), head
            assert f'Content-Length: {mib << 20}'.encode() in head
            got = len(rest)
            down.update(rest)
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                down.update(chunk)
                # a slow reader: the gateway must stop reading nginx
                # (backpressure), not buffer the file
                if got < (64 << 20):
                    time.sleep(0.001)
        finally:
            s.close()
        assert got == mib << 20
        assert down.hexdigest() == up.hexdigest()
    finally:
        stop.set()
        t.join()
        try:
            (nginx.root / path.lstrip('/')).unlink()
        except FileNotFoundError:
            pass
    growth_mib = (peak[0] - base) / 1024
    # a buffered 1 GiB would show; queues and TLS records are a few MiB
    # (ASan's allocator quarantine adds its share)
    assert growth_mib < min(96, mib / 4 + 16), f'gateway RSS grew {growth_mib:.0f} MiB'


def test_audit_unavailable_fails_closed_with_503_then_recovers(gateway_factory, pki, nginx,
                                                               site, tmp_path):
    mnt = tmp_path / 'small'
    mnt.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip('cannot mount a small tmpfs here: ' + r.stderr.strip())
    try:
        g = gateway_factory({
            'gateway': {'audit_db': str(mnt / 'audit.db'), 'audit_fail': 'closed'},
            'listener content': cg.tls_listener(pki, 'http', 'nginx'),
            'upstream nginx': nginx.upstream(),
        })
        g.ctl_ok('principal', 'add', 'alice')
        g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
        g.ctl_ok('acl', 'allow', 'alice', 'http', f'{site}/*', 'all')
        g.start()
        ctx = cg.client_context(pki, 'alice')
        assert cg.https(g.addr('content'), ctx, 'GET', f'{site}/f.txt')[0] == 200
        # the connection is opened while records can still be written: once
        # they cannot, new connections are refused by the core before any
        # request, and only a kept-alive one shows the gateway's own answer
        import http.client
        conn = http.client.HTTPSConnection('localhost', g.port('content'), context=ctx)
        conn.sock = cg.tls_connect(g.addr('content'), ctx)
        conn.request('GET', f'{site}/f.txt')
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        filler = mnt / 'filler'
        with open(filler, 'wb') as f:
            try:
                while True:
                    f.write(b'\0' * 65536)
                    f.flush()
            except OSError:
                pass

        # on a kept-alive connection the answer must be the gateway's 503
        statuses = []
        deadline = time.time() + 20
        while time.time() < deadline and 503 not in statuses:
            conn.request('GET', f'{site}/f.txt')
            resp = conn.getresponse()
            body = resp.read()
            statuses.append(resp.status)
            if resp.status == 503:
                assert body.startswith(b'503 Service Unavailable: audit log unavailable')
                break
            time.sleep(0.2)
        conn.close()
        assert statuses[-1] == 503, statuses
        assert set(statuses) <= {200, 503}
        filler.unlink()

        def served():
            try:
                return cg.https(g.addr('content'), ctx, 'GET', f'{site}/f.txt')[0] == 200
            except (OSError, ssl.SSLError):
                return False
        cg.wait_until(served, timeout=30, interval=0.3, what='service after the disk frees up')
        g.stop()
    finally:
        subprocess.run(['umount', '-l', str(mnt)], capture_output=True)
