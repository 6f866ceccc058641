"""test_audit_gateway.py — the audit log of a running cpmgate (SPEC section
5): HTTP requests and refused connections land in a chain that verifies
with the gateway's public key after SIGTERM; policy changes made with
cpmgatectl are copied in while it runs; `audit rotate` on the held file
names the gateway's pid, and SIGUSR1 rotates it; with audit_fail = closed a
full file system makes the gateway answer 503 until space returns."""

import glob
import json
import signal

import pytest

import cg


def _sections(pki, dovecot, nginx):
    return {
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
    }


@pytest.fixture
def gw(gateway_factory, pki, dovecot, nginx):
    g = gateway_factory(_sections(pki, dovecot, nginx))
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'address', '127.0.0.1/32')
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


def _records(g, *filters):
    r = g.ctl('audit', 'export', '--audit-db', g.audit_db, '--format', 'jsonl',
              *filters, db=False)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_requests_and_refusals_are_chained_and_verify(gw, pki):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki), source='127.0.0.1')
    assert r is not None and r[0] == 200, r
    refused = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                              ctx=cg.client_context(pki), source='127.0.0.3')
    assert cg.http_refused(refused), refused
    cg.wait_until(lambda: any(x['client'] and x['client'].startswith('127.0.0.3')
                              for x in _records(gw)),
                  timeout=5, what='the refusal in the audit log')
    gets = [x for x in _records(gw, '--principal', 'alice')
            if x['service'] == 'http' and x['operation'] == 'GET']
    assert gets and gets[0]['resource'].endswith('index.html')
    assert gets[0]['result'] == '200'
    gw.stop()
    v = gw.ctl('audit', 'verify', '--audit-db', gw.audit_db, '--key', gw.audit_pub, db=False)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.startswith('audit chain intact: ')
    # the gateway's clean stop signs the last record: no unsigned tail
    assert 'not signed yet' not in v.stdout


def test_policy_changes_are_copied_into_the_chain(gw):
    gw.ctl_ok('principal', 'add', 'bob')

    def copied():
        return [x for x in _records(gw) if x['service'] == 'policy'
                and 'bob' in ((x['resource'] or '') + (x['operation'] or ''))]
    cg.wait_until(lambda: copied(), timeout=5, what='policy change in the audit log')
    rec = copied()[0]
    assert rec['txid'].startswith('policy.') and rec['principal']


def test_rotate_names_the_gateway_and_sigusr1_rotates(gw, pki):
    cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                    ctx=cg.client_context(pki), source='127.0.0.1')
    r = gw.ctl('audit', 'rotate', '--audit-db', gw.audit_db, db=False)
    assert r.returncode == 1
    assert f'pid {gw.pid}' in r.stderr and f'kill -USR1 {gw.pid}' in r.stderr
    gw.send_signal(signal.SIGUSR1)
    cg.wait_until(lambda: glob.glob(gw.audit_db + '.1-*'), timeout=5,
                  what='the sealed audit file')
    sealed = glob.glob(gw.audit_db + '.1-*')[0]
    v = gw.ctl('audit', 'verify', '--audit-db', sealed, '--key', gw.audit_pub, db=False)
    assert v.returncode == 0, v.stdout + v.stderr
    cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                    ctx=cg.client_context(pki), source='127.0.0.1')
    gw.stop()
    v = gw.ctl('audit', 'verify', '--audit-db', gw.audit_db, '--key', gw.audit_pub, db=False)
    assert v.returncode == 0, v.stdout + v.stderr
    assert 'link verified' in v.stdout


def test_full_filesystem_makes_the_gateway_refuse_until_space_returns(
        gateway_factory, pki, dovecot, nginx, tmp_path):
    with cg.SmallFs(tmp_path / 'small') as fs:
        secs = _sections(pki, dovecot, nginx)
        secs['gateway'] = {'audit_db': str(fs.dir / 'audit.db'), 'audit_fail': 'closed'}
        g = gateway_factory(secs)
        g.ctl_ok('principal', 'add', 'alice')
        g.ctl_ok('cred', 'add', 'alice', 'address', '127.0.0.1/32')
        g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
        g.start()

        def get():
            return cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                                   ctx=cg.client_context(pki), source='127.0.0.1')
        assert get()[0] == 200
        fs.fill()
        # the next records cannot be committed: new requests are refused
        cg.wait_until(lambda: (get() or (0,))[0] == 503, timeout=10,
                      what='503 while the audit log cannot be written')
        # nothing is served while the log cannot be written: every new
        # connection is answered 503, never closed without a word
        for _ in range(3):
            r = get()
            assert r is not None and r[0] == 503, r
        fs.free()
        cg.wait_until(lambda: (get() or (0,))[0] == 200, timeout=10,
                      what='service again once space returned')
        g.stop()
        v = g.ctl('audit', 'verify', '--audit-db', g.audit_db, '--key', g.audit_pub, db=False)
        assert v.returncode == 0, v.stdout + v.stderr
        assert 'not signed yet' not in v.stdout
        assert 'records cannot be committed' in g.log()


def test_new_connections_are_answered_in_protocol_while_the_audit_store_is_full(
        gateway_factory, pki, dovecot, nginx, tmp_path):
    with cg.SmallFs(tmp_path / 'small') as fs:
        secs = _sections(pki, dovecot, nginx)
        secs['gateway'] = {'audit_db': str(fs.dir / 'audit.db'), 'audit_fail': 'closed'}
        secs['listener imaps'] = {
            'protocol': 'imap', 'tls': 'implicit', 'certificate': pki.server_cert,
            'private_key': pki.server_key, 'auth': 'address', 'upstream': 'dovecot'}
        secs['listener plain'] = {'protocol': 'http', 'tls': 'none', 'insecure': 'reject'}
        secs['upstream dovecot'] = dovecot.upstream()
        g = gateway_factory(secs)
        g.ctl_ok('principal', 'add', 'alice')
        g.ctl_ok('cred', 'add', 'alice', 'address', '127.0.0.1/32')
        g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
        g.start()
        ctx = cg.client_context(pki)

        def get():
            return cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                                   ctx=ctx, source='127.0.0.1')
        assert get()[0] == 200
        assert cg.imap_greeting(g.addr('imaps'), ctx).startswith(b'* OK')
        fs.fill()
        cg.wait_until(lambda: (get() or (0,))[0] == 503, timeout=10,
                      what='503 while the audit log cannot be written')
        at = g.log_size()
        for _ in range(3):
            # HTTP over TLS: the answer comes after the handshake, on a
            # connection no request of which could be recorded
            r = get()
            assert r is not None, 'closed without an answer'
            st, h, body = r
            assert st == 503, r
            assert h.get('retry-after', '').isdigit(), h
            assert h.get('connection') == 'close', h
            assert body.startswith(b'503 Service Unavailable: audit log unavailable (txid ')
            # plaintext HTTP: the same answer
            r = cg.http_request(g.addr('plain'), 'GET', '/content/index.html')
            assert r is not None and r[0] == 503 and 'retry-after' in r[1], r
            # IMAP: a BYE greeting (RFC 3501 7.1.5)
            line = cg.imap_greeting(g.addr('imaps'), ctx)
            assert line is not None and line.startswith(b'* BYE [UNAVAILABLE]'), line
            assert b'audit log unavailable' in line
        g.wait_log(r'refused: audit log unavailable', start=at)
        fs.free()
        cg.wait_until(lambda: (get() or (0,))[0] == 200, timeout=10,
                      what='service again once space returned')
        assert cg.imap_greeting(g.addr('imaps'), ctx).startswith(b'* OK')
        g.stop()
