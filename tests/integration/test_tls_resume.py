"""test_tls_resume.py — TLS session tickets (issue 15): a session resumes on
any worker of the gateway, the principal is still looked up (and audited)
on a resumed connection, a reload (a new certificate, CA or CRL) ends
resumption of earlier sessions, and a PSK listener issues no tickets."""

import re
import time

import pytest

import cg

GET = b'GET /resume HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'


@pytest.fixture
def gw(gateway_factory, pki, nginx):
    g = gateway_factory({
        'gateway': {'workers': '2'},
        'listener web': cg.tls_listener(pki, 'http', 'nginx', auth='cert'),
        'listener pskweb': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'psk', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', '/*', 'all')
    return g.start()


def connect(gw, pki, tmp_path, sess_in=None, listener='web'):
    sess = tmp_path / f'sess{time.monotonic_ns()}.pem'
    args = ['-cert', pki.client('alice')[0], '-key', pki.client('alice')[1],
            '-CAfile', pki.ca, '-sess_out', sess]
    if sess_in:
        args += ['-sess_in', sess_in]
    rc, out = cg.s_client(gw.addr(listener), *args, input=GET)
    return out, sess


def test_session_resumes_on_every_worker(gw, pki, tmp_path):
    out, sess = connect(gw, pki, tmp_path)
    assert re.search(r'^New, TLSv1\.3', out, re.M), out[-1500:]
    assert 'HTTP/1.1 ' in out
    for _ in range(8):  # connections spread over both workers
        out, _ = connect(gw, pki, tmp_path, sess_in=sess)
        assert re.search(r'^Reused, TLSv1\.3', out, re.M), out[-1500:]
        # the principal is looked up on a resumed connection as on a new one
        assert re.search(r'HTTP/1\.1 (200|404) ', out), out[-800:]
    log = gw.log()
    assert log.count('auth method=cert principal=alice') >= 9


def test_reload_ends_resumption(gw, pki, tmp_path):
    out, sess = connect(gw, pki, tmp_path)
    out, _ = connect(gw, pki, tmp_path, sess_in=sess)
    assert re.search(r'^Reused, ', out, re.M), out[-1500:]
    size = gw.log_size()
    gw.reload()
    gw.wait_log(r'configuration reloaded', timeout=10, start=size)
    time.sleep(0.5)
    out, _ = connect(gw, pki, tmp_path, sess_in=sess)
    assert re.search(r'^New, ', out, re.M), 'a session of the previous context resumed'


def test_psk_listener_issues_no_ticket(gw, pki, tmp_path):
    rc, out = cg.s_client(gw.addr('pskweb'), '-tls1_3', '-CAfile', pki.ca,
                          '-sess_out', tmp_path / 'psk.pem', input=GET, timeout=10)
    assert 'TLS session ticket lifetime hint' not in out, out[-1500:]
