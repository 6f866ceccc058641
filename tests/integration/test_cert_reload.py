"""test_cert_reload.py — certificates, keys and CRLs follow their files
(cpmgate(8), FILES FOLLOWED): a listener certificate replaced by rename, as
an ACME client does, is what the next handshake sees while an open session
keeps going; a file that does not load (bad PEM, a key of another
certificate, an expired certificate) leaves the one in force, and the log,
/metrics and /healthz say so until a good file comes; a new CRL refuses a
revoked client on its next connection; an upstream's client certificate
and the SAML IdP certificate follow their files too. No signal is sent anywhere in this module."""

import datetime
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

import cg

x509 = pytest.importorskip('cryptography.x509', reason='python3-cryptography (tests/deps.sh)')
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

WITHIN = 10  # seconds: the promise is 2 s, the machine may be loaded

# nginx answering with the DN of the client certificate it verified
MTLS_NGINX = ('worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;\n'
              'events {{ worker_connections 64; }}\n'
              'http {{ access_log off;\n{temp}\n'
              '  server {{ listen 127.0.0.1:{port} ssl;\n'
              '    ssl_certificate {cert}; ssl_certificate_key {key};\n'
              '    ssl_client_certificate {ca}; ssl_verify_client on;\n'
              '    location / {{ return 200 "client=$ssl_client_s_dn\\n"; }} }} }}\n')


# ---- a certificate authority in Python (the test PKI's CA keys) ----

def _load(cert_path, key_path):
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
    return cert, key


def issue(ca, cn, server=True, expired=False):
    """(certificate PEM, key PEM) of a fresh P-256 key signed by ca (cert,
    key): for localhost/127.0.0.1 (server) or a TLS client."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) \
        if expired else (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30))
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def crl_revoking(ca, cert_paths):
    """A CRL signed by ca listing the certificates in cert_paths."""
    ca_cert, ca_key = ca
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - datetime.timedelta(minutes=5))
         .next_update(now + datetime.timedelta(days=30)))
    for p in cert_paths:
        serial = x509.load_pem_x509_certificate(Path(p).read_bytes()).serial_number
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder()
                                      .serial_number(serial).revocation_date(now).build())
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def put(path, data):
    """Replaces path by rename, as certbot and most ACME clients do."""
    tmp = f'{path}.new'
    Path(tmp).write_bytes(data)
    os.rename(tmp, path)


def fpr_pem(pem):
    return hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(
        serialization.Encoding.DER)).hexdigest()


# ---- the gateway ----

@pytest.fixture(scope='module')
def backend(cg_root, pki):
    d = Path(cg_root) / 'nginx-cert-reload'
    d.mkdir(exist_ok=True)
    port = cg.free_port()
    (d / 'nginx.conf').write_text(MTLS_NGINX.format(
        dir=d, temp=cg._nginx_temp_paths(d), port=port, cert=pki.upstream_cert, key=pki.upstream_key, ca=pki.ca))
    proc = subprocess.Popen(['nginx', '-c', str(d / 'nginx.conf'), '-g', 'daemon off;'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cg.wait_port('127.0.0.1', port, proc=proc)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, backend):
    g = module_gateway_factory({
        'gateway': {'admin_listen': f'127.0.0.1:{cg.free_port()}'},
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert', 'upstream': 'dovecot'},
        'listener web': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'mtls'},
        'upstream dovecot': dovecot.upstream(),
        'upstream mtls': {'address': f'127.0.0.1:{backend}', 'tls': 'yes',
                          'ca': pki.ca, 'server_name': 'localhost',
                          'certificate': pki.gateway_cert,
                          'private_key': pki.gateway_key},
        'saml': {'idp_certificate': pki.idp_cert, 'issuer': 'https://idp.example.com/',
                 'audience': 'https://gw.example.com/'},
    })
    for name in ('alice', 'bob'):
        g.ctl_ok('principal', 'add', name)
        g.ctl_ok('cred', 'add', name, 'cert', '--file', pki.client(name)[0])
    g.ctl_ok('principal', 'add', 'local')
    g.ctl_ok('cred', 'add', 'local', 'address', '127.0.0.0/8')
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


def file_of(gw, section, key):
    """The gateway's own copy of a file its configuration names."""
    return str(gw.dir / gw.sections[section][key])


def served_fpr(gw, pki):
    """SHA-256 of the certificate the imaps listener presents now."""
    s = cg.tls_connect(gw.addr('imaps'), cg.client_context(pki, 'alice'))
    with s:
        return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def metric(gw, name):
    _, _, body = cg.http_plain(gw.admin_addr(), 'GET', '/metrics')
    m = re.search(rb'^' + re.escape(name.encode()) + rb' (\d+)$', body, re.M)
    assert m, f'{name} missing from /metrics'
    return int(m.group(1))


def healthz(gw):
    st, _, body = cg.http_plain(gw.admin_addr(), 'GET', '/healthz')
    return st, body


def imap_ok(sess, command):
    tagged, _ = sess.command(command)
    return tagged.split()[1] == b'OK'


def test_renewed_certificate_is_served_while_open_sessions_keep_going(gw, pki, dovecot):
    cert, key = file_of(gw, 'listener imaps', 'certificate'), \
        file_of(gw, 'listener imaps', 'private_key')
    old = served_fpr(gw, pki)
    sess = cg.IMAPSession.open(gw.addr('imaps'), cg.client_context(pki, 'alice'))
    try:
        assert imap_ok(sess, f'LOGIN alice {dovecot.users["alice"]}')
        new_cert, new_key = issue(_load(pki.ca, pki.ca_key), 'localhost renewed')
        put(key, new_key)
        put(cert, new_cert)
        cg.wait_until(lambda: served_fpr(gw, pki) == fpr_pem(new_cert), WITHIN,
                      what='the renewed certificate on a new connection')
        assert fpr_pem(new_cert) != old
        # the session opened before the renewal goes on with its context
        assert imap_ok(sess, 'SELECT INBOX')
        assert imap_ok(sess, 'NOOP')
    finally:
        sess.close()
    not_after = int(x509.load_pem_x509_certificate(new_cert).not_valid_after
                    .replace(tzinfo=datetime.timezone.utc).timestamp())
    assert metric(gw, 'cpmgate_tls_certificate_not_after_seconds{listener="imaps"}') == not_after
    assert healthz(gw) == (200, b'ok\n')
    gw.wait_log(r'tls: certificates, keys, CAs and CRLs reloaded')


BAD = {
    'bad PEM': (lambda pki: (b'-----BEGIN CERTIFICATE-----\nnot base64\n', None),
                r'cannot load certificate'),
    'key of another certificate': (
        lambda pki: (None, issue(_load(pki.ca, pki.ca_key), 'other')[1]),
        r'private_key'),
    'expired certificate': (
        lambda pki: issue(_load(pki.ca, pki.ca_key), 'localhost expired', expired=True),
        r'has expired'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_file_that_does_not_load_leaves_the_one_in_force(gw, pki, case):
    cert, key = file_of(gw, 'listener imaps', 'certificate'), \
        file_of(gw, 'listener imaps', 'private_key')
    good_cert, good_key = Path(cert).read_bytes(), Path(key).read_bytes()
    in_force = served_fpr(gw, pki)
    failures = metric(gw, 'cpmgate_tls_reload_failures_total')
    start = gw.log_size()
    make, why = BAD[case]
    bad_cert, bad_key = make(pki)
    if bad_key is not None:
        put(key, bad_key)
    if bad_cert is not None:
        put(cert, bad_cert)
    gw.wait_log(r'does not load, keeping the one in force: .*' + why, timeout=WITHIN,
                start=start)
    assert metric(gw, 'cpmgate_tls_reload_failures_total') > failures
    st, body = healthz(gw)
    assert st == 200 and body.startswith(b'degraded: '), (st, body)
    assert served_fpr(gw, pki) == in_force
    # the operator puts a good pair back: in force, healthy again
    put(key, good_key)
    put(cert, good_cert)
    cg.wait_until(lambda: healthz(gw) == (200, b'ok\n'), WITHIN, what='/healthz ok again')
    assert served_fpr(gw, pki) == in_force


def test_new_crl_refuses_a_revoked_client_on_its_next_connection(gw, pki, dovecot):
    ctx_bob = cg.client_context(pki, 'bob')
    assert (cg.imap_greeting(gw.addr('imaps'), ctx_bob) or b'').startswith(b'* OK')
    sess = cg.IMAPSession.open(gw.addr('imaps'), ctx_bob)
    try:
        assert imap_ok(sess, f'LOGIN bob {dovecot.users["bob"]}')
        crl = crl_revoking(_load(pki.client_ca, pki.client_ca_key),
                           [pki.client('revoked')[0], pki.client('bob')[0]])
        put(file_of(gw, 'listener imaps', 'crl'), crl)
        cg.wait_until(lambda: cg.imap_greeting(gw.addr('imaps'), ctx_bob) is None, WITHIN,
                      what="bob refused once the CRL lists him")
        # alice is not listed; bob's session from before goes on
        greeting = cg.imap_greeting(gw.addr('imaps'), cg.client_context(pki, 'alice'))
        assert (greeting or b'').startswith(b'* OK'), greeting
        assert imap_ok(sess, 'NOOP')
    finally:
        sess.close()


def web_get(gw, pki):
    s = cg.tls_connect(gw.addr('web'), cg.client_context(pki))
    with s:
        s.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        return cg.recv_all(s, timeout=10)


def test_upstream_client_certificate_follows_its_file(gw, pki):
    assert b'client=' in web_get(gw, pki)
    new_cert, new_key = issue(_load(pki.ca, pki.ca_key), 'gateway renewed', server=False)
    put(file_of(gw, 'upstream mtls', 'private_key'), new_key)
    put(file_of(gw, 'upstream mtls', 'certificate'), new_cert)
    cg.wait_until(lambda: b'client=CN=gateway renewed' in web_get(gw, pki), WITHIN,
                  what='the backend sees the renewed client certificate')


def test_saml_idp_certificate_follows_its_file(gw, pki):
    idp = file_of(gw, 'saml', 'idp_certificate')
    good = Path(idp).read_bytes()
    reloads = metric(gw, 'cpmgate_tls_reloads_total')
    start = gw.log_size()
    put(idp, b'not a certificate\n')
    gw.wait_log(r'does not load, keeping the one in force: .*SAML IdP certificate',
                timeout=WITHIN, start=start)
    assert healthz(gw)[1].startswith(b'degraded: ')
    put(idp, good)
    cg.wait_until(lambda: healthz(gw) == (200, b'ok\n'), WITHIN, what='/healthz ok again')
    assert metric(gw, 'cpmgate_tls_reloads_total') > reloads
