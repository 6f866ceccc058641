"""test_lifecycle.py — the running gateway (SPEC section 8): policy changes
are picked up without a signal, a backend that is down gets a prompt clean
answer, bytes that are not TLS are refused without harming anyone else,
slow handshakes are cut, per-address connection limits hold, SIGHUP with a
bad configuration keeps serving, SIGTERM exits 0."""

import os
import signal
import socket
import ssl
import threading
import time

import pytest

import cg


def sections(pki, dovecot, nginx, imaps=None, dovecot_up=None, nginx_up=None,
             gateway=None):
    imaps_sec = {
        'protocol': 'imap', 'tls': 'implicit',
        'certificate': pki.server_cert, 'private_key': pki.server_key,
        'client_ca': pki.client_ca, 'crl': pki.crl,
        'auth': 'cert', 'upstream': 'dovecot'}
    imaps_sec.update(imaps or {})
    return {
        'gateway': dict(gateway or {}),
        'listener imaps': imaps_sec,
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert', 'upstream': 'nginx'},
        'upstream dovecot': dovecot_up or dovecot.upstream(),
        'upstream nginx': nginx_up or nginx.upstream(),
    }


def populate(gw, pki, names=('alice', 'bob')):
    for n in names:
        gw.ctl_ok('principal', 'add', n)
        gw.ctl_ok('cred', 'add', n, 'cert', '--file', pki.client(n)[0])
    gw.ctl_ok('acl', 'allow', '*', '*', '*', 'all')


@pytest.fixture
def gw(gateway_factory, pki, dovecot, nginx):
    g = gateway_factory(sections(pki, dovecot, nginx))
    populate(g, pki)
    return g.start()


def greets(gw, pki, name='alice', source=None):
    g = cg.imap_greeting(gw.addr('imaps'), cg.client_context(pki, name),
                         source=source)
    return g is not None and g.startswith(b'* OK')


def read_to_eof(sock, timeout):
    """All bytes until the peer closes. Fails the test if it does not close
    within timeout (the gateway must never leave a client hanging)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    data = b''
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            if time.monotonic() > deadline:
                raise AssertionError(f'connection not closed within {timeout}s; '
                                     f'got {data!r}')
            continue
        except (ssl.SSLError, ConnectionResetError):
            return data
        if not chunk:
            return data
        data += chunk


# ---------------------------------------------------------------- policy --

def test_disabled_principal_is_refused_on_next_connection(gw, pki):
    assert greets(gw, pki, 'alice')
    gw.ctl_ok('principal', 'disable', 'alice')
    # SPEC 8: picked up within one second of the commit, no signal needed.
    cg.wait_until(lambda: not greets(gw, pki, 'alice'), timeout=2.0,
                  interval=0.1, what='disabled principal refused')
    assert greets(gw, pki, 'bob'), 'other principals are unaffected'
    gw.ctl_ok('principal', 'enable', 'alice')
    cg.wait_until(lambda: greets(gw, pki, 'alice'), timeout=2.0, interval=0.1,
                  what='re-enabled principal accepted')


def test_removed_credential_is_refused(gw, pki):
    assert greets(gw, pki, 'bob')
    r = gw.ctl_ok('cred', 'list', 'bob', '--json')
    import json
    creds = json.loads(r.stdout)
    if isinstance(creds, dict):
        creds = creds.get('credentials', creds.get('items', []))
    assert creds, r.stdout
    cid = creds[0].get('id')
    gw.ctl_ok('cred', 'remove', 'bob', cid)
    cg.wait_until(lambda: not greets(gw, pki, 'bob'), timeout=2.0, interval=0.1,
                  what='removed credential refused')


# ---------------------------------------------------------- backend down --

def test_imap_backend_down_gives_prompt_clean_close(gateway_factory, pki,
                                                    dovecot, nginx):
    dead = {'address': f'127.0.0.1:{cg.free_port()}', 'imap_login': 'master',
            'master_user': dovecot.master_user,
            'master_password_file': dovecot.master_password_file,
            'connect_timeout': '2'}
    g = gateway_factory(sections(pki, dovecot, nginx, dovecot_up=dead))
    populate(g, pki)
    g.start()
    before = g.log_size()
    try:
        s = cg.connect(g.addr('imaps'), cg.client_context(pki, 'alice'))
    except (ssl.SSLError, OSError):
        s = None
    data = b''
    if s is not None:
        try:
            s.sendall(b'a1 LOGIN alice alicepw\r\n')
        except (ssl.SSLError, OSError):
            pass
        data = read_to_eof(s, timeout=15)
        s.close()
    # A relay closes at once; the IMAP gateway says * BYE [UNAVAILABLE].
    # Either way no login succeeds and the client is not left waiting.
    assert b'a1 OK' not in data
    assert data == b'' or b'BYE' in data or b'UNAVAILABLE' in data, data
    g.wait_log(r'(?i)(upstream|backend)', timeout=5, start=before)
    assert g.alive()


def test_http_backend_down_gives_502_or_close(gateway_factory, pki, dovecot,
                                               nginx):
    dead = {'address': f'127.0.0.1:{cg.free_port()}', 'connect_timeout': '2'}
    g = gateway_factory(sections(pki, dovecot, nginx, nginx_up=dead))
    populate(g, pki)
    g.start()
    before = g.log_size()
    r = cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki, 'alice'), timeout=15)
    assert r is None or r[0] == 502, r
    g.wait_log(r'(?i)(upstream|backend)', timeout=5, start=before)
    assert g.alive()


# ------------------------------------------------------- hostile clients --

@pytest.mark.parametrize('junk', [
    b'a1 LOGIN alice alicepw\r\n',
    b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    b'\x16\x03\x01\x00\x05hello',              # a record header with garbage
    bytes(range(256)) * 64,
], ids=['imap-plaintext', 'http-plaintext', 'bad-record', 'binary'])
def test_bytes_that_are_not_a_client_hello_are_refused(gw, pki, junk):
    s = socket.create_connection(gw.addr('imaps'), timeout=10)
    try:
        try:
            s.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = read_to_eof(s, timeout=15)
    finally:
        s.close()
    assert b'* OK' not in data
    # Whatever came back is a TLS alert record (0x15) or nothing.
    assert data == b'' or data[:1] == b'\x15', data[:64]
    assert gw.alive()
    assert greets(gw, pki, 'alice'), 'the gateway keeps serving'


def client_hello(pki):
    """The bytes of a real ClientHello (from an ssl.SSLObject over memory)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = cg.client_context(pki, 'alice').wrap_bio(inc, out,
                                                   server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b'\x16' and len(hello) > 100
    return hello


def test_slow_handshake_is_cut_at_handshake_timeout(gateway_factory, pki,
                                                     dovecot, nginx):
    g = gateway_factory(sections(pki, dovecot, nginx,
                                 imaps={'handshake_timeout': '2'}))
    populate(g, pki)
    g.start()
    hello = client_hello(pki)
    s = socket.create_connection(g.addr('imaps'), timeout=10)
    sent = [0]
    stop = threading.Event()

    def drip():
        # One byte a second: ~300 bytes would take five minutes.
        for b in hello:
            if stop.is_set():
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return
            sent[0] += 1
            stop.wait(1.0)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        # Others are served while the slow client drips.
        assert greets(g, pki, 'bob')
        data = read_to_eof(s, timeout=20)
        assert sent[0] < len(hello), 'the whole hello went out before any cut'
        assert b'* OK' not in data
    finally:
        stop.set()
        t.join(5)
        s.close()
    assert greets(g, pki, 'alice')


def test_connections_beyond_per_address_limit_are_refused(gateway_factory, pki,
                                                          dovecot, nginx):
    g = gateway_factory(sections(pki, dovecot, nginx,
                                 imaps={'max_conn_per_addr': '3'}))
    populate(g, pki)
    g.start()
    ctx = cg.client_context(pki, 'alice')
    held = []
    try:
        for _ in range(3):
            s = cg.connect(g.addr('imaps'), ctx, source='127.0.0.1')
            assert cg.recv_until(s).startswith(b'* OK')
            held.append(s)
        assert cg.imap_refused(g.addr('imaps'), ctx, source='127.0.0.1'), \
            'a fourth connection from the same address must be refused'
        assert greets(g, pki, 'alice', source='127.0.0.2'), \
            'another address still gets in'
        assert greets(g, pki, 'bob', source='127.0.0.3')
        held.pop().close()
        cg.wait_until(lambda: greets(g, pki, 'alice', source='127.0.0.1'),
                      timeout=5, what='a freed slot is usable again')
    finally:
        for s in held:
            s.close()


# --------------------------------------------------------------- signals --

def test_sighup_with_bad_config_keeps_serving(gw, pki):
    s = cg.IMAPSession.open(gw.addr('imaps'), cg.client_context(pki, 'alice'))
    try:
        assert s.greeting.startswith(b'* OK')
        good = open(gw.config_path).read()
        before = gw.log_size()
        with open(gw.config_path, 'w') as f:
            f.write(good + '\n[gateway-typo]\nworkers = 2\n')
        gw.reload()
        gw.wait_log(r'cpmgate\.conf:\d+', timeout=10, start=before)
        assert gw.alive()
        assert greets(gw, pki, 'alice'), 'new connections still served'
        tagged, _ = s.command('NOOP')
        assert tagged.split()[1] == b'OK', 'existing connection still served'
        # A good configuration again: reload succeeds, still serving.
        with open(gw.config_path, 'w') as f:
            f.write(good)
        gw.reload()
        cg.wait_until(lambda: greets(gw, pki, 'bob'), timeout=5,
                      what='serving after a good reload')
        tagged, _ = s.command('NOOP')
        assert tagged.split()[1] == b'OK'
    finally:
        s.close()


def test_sighup_reloads_crl_for_new_connections(gateway_factory, pki, dovecot,
                                                nginx, tmp_path):
    # Start with a CRL that revokes nothing (a fresh one from the client CA),
    # then swap in the real one: after SIGHUP the revoked client is refused.
    empty = tmp_path / 'empty.crl'
    work = tmp_path / 'ca'
    work.mkdir()
    (work / 'index.txt').write_text('')
    (work / 'crlnumber').write_text('2000\n')
    cnf = work / 'ca.cnf'
    cnf.write_text(f'[ca]\ndefault_ca = c\n[c]\ndatabase = {work}/index.txt\n'
                   f'crlnumber = {work}/crlnumber\ncertificate = {pki.client_ca}\n'
                   f'private_key = {pki.client_ca_key}\ndefault_md = sha256\n'
                   f'default_crl_days = 30\n')
    import subprocess
    subprocess.run(['openssl', 'ca', '-batch', '-config', str(cnf), '-gencrl',
                    '-out', str(empty)], check=True, capture_output=True,
                   env=dict(os.environ, OPENSSL_CONF='/dev/null'))
    g = gateway_factory(sections(pki, dovecot, nginx, imaps={'crl': str(empty)}))
    populate(g, pki, names=('alice', 'revoked'))
    g.start()
    assert greets(g, pki, 'revoked'), 'not yet revoked in the CRL in use'
    crl_name = g.sections['listener imaps']['crl']
    with open(pki.crl, 'rb') as src, open(g.dir / crl_name, 'wb') as dst:
        dst.write(src.read())
    g.reload()
    cg.wait_until(lambda: not greets(g, pki, 'revoked'), timeout=5,
                  what='revoked certificate refused after SIGHUP')
    assert greets(g, pki, 'alice')


def test_sigterm_exits_zero_and_stops_listening(gateway_factory, pki, dovecot,
                                                nginx):
    g = gateway_factory(sections(pki, dovecot, nginx,
                                 gateway={'drain_timeout': '2'}))
    populate(g, pki)
    g.start()
    s = cg.connect(g.addr('imaps'), cg.client_context(pki, 'alice'))
    assert cg.recv_until(s).startswith(b'* OK')
    host, port = g.addr('imaps')
    rc = g.stop(signal.SIGTERM, timeout=30)
    assert rc == 0, cg.tail(g.log_path)
    # The held connection was closed (or told BYE) during the drain.
    rest = read_to_eof(s, timeout=10)
    assert b'* OK' not in rest
    s.close()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()


def test_starts_with_an_empty_policy_and_refuses_everyone(gateway_factory, pki,
                                                          dovecot, nginx):
    # A freshly initialised policy database (no principal, no rule) is a
    # valid state: the gateway runs, and nobody gets in.
    g = gateway_factory(sections(pki, dovecot, nginx))
    g.start()
    assert cg.imap_refused(g.addr('imaps'), cg.client_context(pki, 'alice'))
    r = cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki, 'alice'))
    assert cg.http_refused(r), r
    assert g.alive()


def test_sigterm_closes_idle_keepalive_connections_without_waiting_for_the_drain(
        gateway_factory, pki, nginx):
    """SIGTERM closes HTTP connections that owe nothing at once, as nginx
    and HAProxy do: one kept alive after an answer, one whose client never
    spoke. Only connections with a request under way use the drain, so the
    drain never times out here."""
    g = cg.http_alice_gateway(gateway_factory, pki, nginx, gateway={'drain_timeout': '60'})
    ctx = cg.client_context(pki)
    kept = cg.connect(g.addr('content'), ctx)
    kept.sendall(b'GET /content/ HTTP/1.1\r\nHost: localhost\r\n\r\n')
    head = cg.recv_until(kept, b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 '), head
    assert b'connection: close' not in head.lower()
    silent = cg.connect(g.addr('content'), ctx)
    mark = g.log_size()
    g.proc.send_signal(signal.SIGTERM)
    for s in (kept, silent):
        s.settimeout(30)
        try:
            while s.recv(65536):
                pass  # (the rest of the answer's body)
        except (ssl.SSLError, ConnectionResetError):
            pass
        s.close()
    assert g.stop(signal.SIGTERM, timeout=60) == 0, cg.tail(g.log_path)
    log = g.log()[mark:]
    assert 'drain timeout' not in log, log
