"""test_backends.py — the real backends the gateway fronts work as the other
tests assume: Dovecot logins (user and master `alice*gw`), mailboxes, and
nginx WebDAV (PUT, GET, PROPFIND, OPTIONS, MKCOL, DELETE). No cpmgate here:
these prove the fixtures."""

import imaplib
import os
import subprocess

import pytest

import cg


def test_dovecot_user_login_and_mailbox(dovecot):
    c = dovecot.imap('alice')
    try:
        typ, _ = c.create('Projects/2026')
        assert typ == 'OK'
        msg = b'From: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n'
        typ, _ = c.append('Projects/2026', None, None, msg)
        assert typ == 'OK'
        typ, data = c.list('""', '*')
        assert typ == 'OK'
        names = b'\n'.join(data)
        assert b'"Projects/2026"' in names or b' Projects/2026' in names
        assert b'INBOX' in names
        typ, data = c.select('Projects/2026')
        assert typ == 'OK' and int(data[0]) >= 1
    finally:
        c.logout()


def test_dovecot_wrong_password_is_refused(dovecot):
    with pytest.raises(imaplib.IMAP4.error):
        dovecot.imap('alice', 'wrong')


def test_dovecot_master_login_sees_the_users_mailboxes(dovecot):
    c = dovecot.imap('bob')
    c.create('MasterCheck')
    c.logout()
    m = dovecot.imap_as_master('bob')
    try:
        typ, data = m.list('""', 'MasterCheck')
        assert typ == 'OK' and data[0] and b'MasterCheck' in data[0]
    finally:
        m.logout()


def test_dovecot_master_login_with_wrong_master_password_fails(dovecot):
    c = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            c.login(f'alice*{dovecot.master_user}', 'not-the-password')
    finally:
        c.shutdown()


def test_dovecot_master_password_file_holds_the_password(dovecot):
    with open(dovecot.master_password_file) as f:
        assert f.read().strip() == dovecot.master_password
    assert os.stat(dovecot.master_password_file).st_mode & 0o077 == 0


def test_nginx_serves_the_index(nginx):
    status, _, body = nginx.request('GET', '/content/index.html')
    assert status == 200
    assert body == cg.Nginx.INDEX and len(body) == 1024


def test_nginx_put_then_get_then_delete(nginx):
    data = os.urandom(3000)
    status, _, _ = nginx.request('PUT', '/content/backend-test/deep/file.bin', data)
    assert status in (201, 204)
    status, _, body = nginx.request('GET', '/content/backend-test/deep/file.bin')
    assert status == 200 and body == data
    status, _, _ = nginx.request('DELETE', '/content/backend-test/deep/file.bin')
    assert status == 204
    status, _, _ = nginx.request('GET', '/content/backend-test/deep/file.bin')
    assert status == 404


def test_nginx_large_put_is_accepted(nginx):
    data = os.urandom(3 * 1024 * 1024)   # above nginx's 1 MiB default limit
    status, _, _ = nginx.request('PUT', '/content/large.bin', data)
    assert status in (201, 204)
    status, _, body = nginx.request('GET', '/content/large.bin')
    assert status == 200 and body == data


def test_nginx_propfind_lists_the_collection(nginx):
    status, _, body = nginx.request('PROPFIND', '/content/', headers={'Depth': '1'})
    assert status == 207
    assert b'index.html' in body and b'multistatus' in body


def test_nginx_options_advertises_dav_1_2(nginx):
    status, headers, _ = nginx.request('OPTIONS', '/content/')
    assert status == 200
    assert headers.get('dav') == '1, 2'
    assert 'PROPFIND' in headers.get('allow', '')


def test_nginx_mkcol_and_lock(nginx):
    status, _, _ = nginx.request('MKCOL', '/content/newcol/')
    assert status == 201
    lock = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope>'
            b'<D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>'
            b'</D:lockinfo>')
    status, headers, _ = nginx.request('LOCK', '/content/newcol/locked.txt', lock,
                                       {'Content-Type': 'application/xml',
                                        'Timeout': 'Second-30'})
    assert status in (200, 201)
    assert headers.get('lock-token', '').startswith('<')
    status, _, _ = nginx.request('UNLOCK', '/content/newcol/locked.txt',
                                 headers={'Lock-Token': headers['lock-token']})
    assert status == 204


def test_curl_reaches_nginx(nginx):
    r = subprocess.run(['curl', '-sS', '-o', '-', '-w', '\n%{http_code}',
                        f'http://{nginx.host}:{nginx.port}/content/index.html'],
                       capture_output=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout.endswith(b'\n200') and r.stdout.startswith(cg.Nginx.INDEX)


def test_pki_has_what_the_tests_need(pki):
    def verify(cert, ca, crl=False):
        args = ['openssl', 'verify', '-CAfile', ca]
        if crl:
            args += ['-crl_check', '-CRLfile', pki.crl]
        return subprocess.run(args + [cert], capture_output=True, text=True,
                              timeout=30)
    for name in ('alice', 'bob', 'carol'):
        assert verify(pki.client(name)[0], pki.client_ca, crl=True).returncode == 0
    r = verify(pki.client('revoked')[0], pki.client_ca, crl=True)
    assert r.returncode != 0 and 'certificate revoked' in r.stdout + r.stderr
    r = verify(pki.client('expired')[0], pki.client_ca)
    assert r.returncode != 0 and 'certificate has expired' in r.stdout + r.stderr
    assert verify(pki.client('foreign')[0], pki.client_ca).returncode != 0
    assert verify(pki.server_cert, pki.ca).returncode == 0
    assert verify(pki.upstream_cert, pki.ca).returncode == 0
    san = subprocess.run(['openssl', 'x509', '-noout', '-ext', 'subjectAltName',
                          '-in', pki.client('alice')[0]],
                         capture_output=True, text=True).stdout
    assert 'email:alice@example.com' in san
    assert len(pki.fingerprint('alice')) == 64
    assert os.path.exists(pki.idp_cert) and os.path.exists(pki.idp_key)
