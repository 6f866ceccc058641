"""test_http_auth.py — request-level authentication on an HTTP listener
(SPEC sections 2 and 4): HTTP Digest with curl --digest and by hand
(success, wrong password, replayed nonce-count, forged nonce), SAML
bearer assertions signed at test time by xmlsec1 with the test IdP key
(valid, expired, wrong audience, unsigned, signature-wrapped), a disabled
principal, and the connection identity winning over headers."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

import cg

REALM = 'content@example.com'
ISSUER = 'https://idp.example.com/'
AUDIENCE = 'https://gw.example.com/'
BODY = b'digest and saml content\n'
PSK_KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'


@pytest.fixture(scope='module')
def site(nginx):
    base = '/auth' + uuid.uuid4().hex[:8]
    st, _, _ = nginx.request('PUT', f'{base}/f.txt', body=BODY)
    assert st in (201, 204)
    return base


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx, site, tmp_path_factory):
    g = module_gateway_factory({
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert, psk, digest, saml',
            'digest_realm': REALM, 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
        'saml': {'idp_certificate': pki.idp_cert, 'issuer': ISSUER,
                 'audience': AUDIENCE, 'clock_skew': '60'},
    })
    pw = tmp_path_factory.mktemp('pw') / 'bob.pw'
    pw.write_text('bob-secret\n')
    for name in ('alice', 'bob', 'carol'):
        g.ctl_ok('principal', 'add', name)
    g.ctl_ok('cred', 'add', 'bob', 'digest', '--realm', REALM, '--password-file', str(pw))
    g.ctl_ok('cred', 'add', 'carol', 'cert-name', 'email:carol@example.com')
    g.ctl_ok('principal', 'add', 'dave')
    g.ctl_ok('cred', 'add', 'dave', 'psk', '--identity', 'dave-psk', '--key', PSK_KEY)
    g.ctl_ok('acl', 'allow', '*', 'http', f'{site}/*', 'read')
    return g.start()


def url(gw, path):
    return f'https://localhost:{gw.port("content")}{path}'


def curl(pki, *args):
    port = args[0].split(':')[2].split('/')[0]
    cmd = ['curl', '-sS', '--cacert', pki.ca, '-o', '-', '-w', '\n%{http_code}',
           '--resolve', f'localhost:{port}:127.0.0.1']
    p = subprocess.run(cmd + list(args), capture_output=True, timeout=30)
    out = p.stdout
    body, _, code = out.rpartition(b'\n')
    return int(code or 0), body


# ------------------------------------------------------------- Digest --

def test_curl_digest_succeeds(gw, pki, site):
    code, body = curl(pki, url(gw, f'{site}/f.txt'), '--digest', '-u', 'bob:bob-secret')
    assert code == 200 and body == BODY


def test_curl_digest_wrong_password_is_401(gw, pki, site):
    code, body = curl(pki, url(gw, f'{site}/f.txt'), '--digest', '-u', 'bob:wrong')
    assert code == 401 and BODY not in body


def test_curl_digest_unknown_user_is_401(gw, pki, site):
    code, _ = curl(pki, url(gw, f'{site}/f.txt'), '--digest', '-u', 'nobody:x')
    assert code == 401


def challenge(gw, pki, path):
    r = cg.https(gw.addr('content'), cg.client_context(pki), 'GET', path)
    assert r[0] == 401
    return r


def digest_header(nonce, path, nc, user='bob', password='bob-secret', alg='SHA-256',
                  method='GET'):
    h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if alg == 'SHA-256' else \
        (lambda s: hashlib.md5(s.encode()).hexdigest())
    ha1 = h(f'{user}:{REALM}:{password}')
    ha2 = h(f'{method}:{path}')
    cnonce = 'c0ffee'
    resp = h(f'{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}')
    return (f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{path}", '
            f'algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}", response="{resp}"')


def nonce_of(gw, pki, path, alg='SHA-256'):
    st, h, _ = challenge(gw, pki, path)
    # http.client folds repeated headers; read them raw instead
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki))
    try:
        s.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
                  .encode())
        data = cg.recv_all(s)
    finally:
        s.close()
    for line in re.findall(rb'^WWW-Authenticate: (Digest .*)\r$', data, re.M):
        if f'algorithm={alg}'.encode() in line:
            return re.search(rb'nonce="([^"]+)"', line).group(1).decode()
    raise AssertionError(data)


def raw_digest_401(gw, pki, path, user, password):
    """A by-hand Digest request on a fresh connection (txid SID.1): the raw
    401 as (status line, [header lines], body)."""
    nonce = nonce_of(gw, pki, path)
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki))
    try:
        auth = digest_header(nonce, path, '00000001', user=user, password=password)
        s.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\n'
                  'Connection: close\r\n\r\n'.encode())
        data = cg.recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    return lines[0], lines[1:], body


def test_digest_401_is_the_same_for_unknown_user_and_wrong_password(gw, pki, site):
    path = f'{site}/f.txt'
    at = gw.log_size()
    unknown = raw_digest_401(gw, pki, path, 'nobody', 'bob-secret')
    wrong = raw_digest_401(gw, pki, path, 'bob', 'not-bobs')

    def shape(answer):
        status, headers, body = answer
        txid = re.search(r'^X-Transaction-Id: (\S+)$', '\n'.join(headers), re.M).group(1)
        masked = [re.sub(r'nonce="[^"]*"', 'nonce=N', re.sub(r'opaque="[^"]*"', 'opaque=O', h))
                  for h in headers if not h.startswith('X-Transaction-Id:')]
        return status, masked, body.replace(txid.encode(), b'TXID')
    assert unknown[0].startswith('HTTP/1.1 401')
    assert shape(unknown) == shape(wrong)
    assert shape(unknown)[2] == b'401 Unauthorized: authentication failed (txid TXID)\n'
    # who exists is for the operator: the log and the audit record say why
    gw.wait_log(r'-> 401: unknown Digest user or realm', start=at)
    gw.wait_log(r'-> 401: Digest response is wrong', start=at)

    def reasons():
        r = gw.audit('export', '--format', 'jsonl')
        if r.returncode != 0:
            return None
        got = {json.loads(x).get('reason') for x in r.stdout.splitlines()}
        want = {'unknown Digest user or realm', 'Digest response is wrong'}
        return want <= got
    cg.wait_until(reasons, timeout=15, interval=0.3, what='both reasons in the audit log')


@pytest.mark.parametrize('alg', ['SHA-256', 'MD5'])
def test_digest_by_hand_then_replay_is_refused(gw, pki, site, alg):
    path = f'{site}/f.txt'
    nonce = nonce_of(gw, pki, path, alg)
    ctx = cg.client_context(pki)
    auth = digest_header(nonce, path, '00000001', alg=alg)
    st, _, body = cg.https(gw.addr('content'), ctx, 'GET', path, headers={'Authorization': auth})
    assert (st, body) == (200, BODY)
    # the same nonce-count again is a replay
    st, _, _ = cg.https(gw.addr('content'), ctx, 'GET', path, headers={'Authorization': auth})
    assert st == 401
    # the next nonce-count on the same nonce is fine
    auth2 = digest_header(nonce, path, '00000002', alg=alg)
    st, _, _ = cg.https(gw.addr('content'), ctx, 'GET', path, headers={'Authorization': auth2})
    assert st == 200


def test_digest_for_another_uri_is_refused(gw, pki, site):
    path = f'{site}/f.txt'
    nonce = nonce_of(gw, pki, path)
    auth = digest_header(nonce, f'{site}/other.txt', '00000001')
    st, _, _ = cg.https(gw.addr('content'), cg.client_context(pki), 'GET', path,
                        headers={'Authorization': auth})
    assert st == 401


def test_digest_with_forged_nonce_is_refused(gw, pki, site):
    path = f'{site}/f.txt'
    forged = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip('=')
    auth = digest_header(forged, path, '00000001')
    st, _, _ = cg.https(gw.addr('content'), cg.client_context(pki), 'GET', path,
                        headers={'Authorization': auth})
    assert st == 401


def raw_get(gw, pki, path, headers=''):
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki))
    try:
        s.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'
                  f'{headers}\r\n'.encode())
        return cg.recv_all(s)
    finally:
        s.close()


def test_fresh_challenge_is_not_stale(gw, pki, site):
    assert b'stale=true' not in raw_get(gw, pki, f'{site}/f.txt')


def test_expired_nonce_is_answered_stale_and_curl_retries(gateway_factory, pki, nginx,
                                                          site, tmp_path):
    g = gateway_factory({
        'listener content': cg.tls_listener(pki, 'http', 'nginx', auth='digest',
                                            digest_realm=REALM, digest_nonce_lifetime='1'),
        'upstream nginx': nginx.upstream(),
    })
    pw = tmp_path / 'bob.pw'
    pw.write_text('bob-secret\n')
    g.ctl_ok('principal', 'add', 'bob')
    g.ctl_ok('cred', 'add', 'bob', 'digest', '--realm', REALM, '--password-file', str(pw))
    g.ctl_ok('acl', 'allow', '*', 'http', f'{site}/*', 'read')
    g.start()
    path = f'{site}/f.txt'
    nonce = nonce_of(g, pki, path)
    auth = digest_header(nonce, path, '00000001')
    time.sleep(2.2)
    # the right answer with a nonce past digest_nonce_lifetime: a new
    # challenge with stale=true, and nothing served
    data = raw_get(g, pki, path, f'Authorization: {auth}\r\n')
    assert data.startswith(b'HTTP/1.1 401'), data[:200]
    assert re.search(rb'^WWW-Authenticate: Digest [^\r]*stale=true', data, re.M), data[:800]
    assert BODY not in data
    # a wrong password with the same old nonce is not stale: just refused
    bad = digest_header(nonce, path, '00000002', password='wrong')
    data = raw_get(g, pki, path, f'Authorization: {bad}\r\n')
    assert data.startswith(b'HTTP/1.1 401') and b'stale=true' not in data
    # curl answers a fresh challenge at once
    code, body = curl(pki, url(g, path), '--digest', '-u', 'bob:bob-secret')
    assert (code, body) == (200, BODY)


# --------------------------------------------------------------- SAML --

def iso(t):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))


SIG = ('<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
       '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
       '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>'
       '<ds:Reference URI="#{id}"><ds:Transforms>'
       '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
       '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
       '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
       '<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>')


def assertion(id_='_a1', name='alice', audience=AUDIENCE, not_after=None, signature=True,
              advice='', recipient=None):
    now = int(time.time())
    na = iso(now + 600 if not_after is None else not_after)
    sig = SIG.format(id=id_) if signature else ''
    return ('<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            f'ID="{id_}" Version="2.0" IssueInstant="{iso(now)}">'
            f'<saml:Issuer>{ISSUER}</saml:Issuer>{sig}'
            f'<saml:Subject><saml:NameID>{name}</saml:NameID>'
            '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData NotOnOrAfter="{na}" Recipient="{recipient or audience}"/>'
            '</saml:SubjectConfirmation></saml:Subject>'
            f'<saml:Conditions NotBefore="{iso(now - 60)}" NotOnOrAfter="{na}">'
            f'<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience>'
            f'</saml:AudienceRestriction></saml:Conditions>{advice}</saml:Assertion>')


@pytest.fixture
def sign(pki, tmp_path):
    if shutil.which('xmlsec1') is None:
        pytest.skip('xmlsec1 command-line tool missing')

    def do(xml):
        src, out = tmp_path / 'tmpl.xml', tmp_path / 'signed.xml'
        src.write_text(xml)
        subprocess.run(['xmlsec1', '--sign', '--privkey-pem', f'{pki.idp_key},{pki.idp_cert}',
                        '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:assertion:Assertion',
                        '--output', str(out), str(src)], check=True, capture_output=True)
        return re.sub(r'^<\?xml[^>]*>\s*', '', out.read_text())
    return do


def saml_get(gw, pki, site, xml):
    b64 = base64.b64encode(xml.encode()).decode()
    return cg.https(gw.addr('content'), cg.client_context(pki), 'GET', f'{site}/f.txt',
                    headers={'Authorization': f'SAML {b64}'})


def test_saml_valid_assertion_is_served(gw, pki, site, sign):
    st, h, body = saml_get(gw, pki, site, sign(assertion()))
    assert (st, body) == (200, BODY)


def test_saml_expired_is_401(gw, pki, site, sign):
    now = int(time.time())
    st, _, body = saml_get(gw, pki, site, sign(assertion(not_after=now - 3600)))
    assert st == 401 and BODY not in body


def test_saml_wrong_audience_is_401(gw, pki, site, sign):
    st, _, _ = saml_get(gw, pki, site, sign(assertion(audience='https://other.example/')))
    assert st == 401


def test_saml_for_another_recipient_is_401(gw, pki, site, sign):
    st, _, body = saml_get(gw, pki, site, sign(assertion(recipient='https://other.example/acs')))
    assert st == 401 and BODY not in body


def test_saml_unsigned_is_401(gw, pki, site):
    st, _, _ = saml_get(gw, pki, site, assertion(signature=False))
    assert st == 401


def test_saml_signature_wrapping_is_401(gw, pki, site, sign):
    signed = sign(assertion(id_='_a1', name='alice'))
    sig = re.search(r'<ds:Signature .*?</ds:Signature>', signed, re.S).group(0)
    evil = assertion(id_='_evil', name='bob', signature=False,
                     advice=f'<saml:Advice>{signed}</saml:Advice>')
    evil = evil.replace('</saml:Issuer>', '</saml:Issuer>' + sig, 1)
    st, _, _ = saml_get(gw, pki, site, evil)
    assert st == 401


def test_saml_for_unknown_principal_is_refused(gw, pki, site, sign):
    st, _, _ = saml_get(gw, pki, site, sign(assertion(name='mallory')))
    assert st in (401, 403)


def saml_gateway(gateway_factory, pki, nginx, site, env=None):
    g = gateway_factory({
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'saml', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
        'saml': {'idp_certificate': pki.idp_cert, 'issuer': ISSUER,
                 'audience': AUDIENCE, 'clock_skew': '60'},
    }, env=env)
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('acl', 'allow', '*', 'http', f'{site}/*', 'read')
    return g.start()


def saml_reload(g, **saml):
    g.sections['saml'].update(saml)
    g.write_config()
    start = g.log_size()
    g.reload()
    g.wait_log('configuration reloaded', start=start)


def test_saml_after_reload_checks_the_new_audience(gateway_factory, pki, nginx, site, sign):
    # A release build's allocator hands a freed configuration's address to
    # the next one at once; ASan's quarantine would hide that, so this
    # gateway runs without it. Verifiers were once looked up by that
    # address: the third configuration got the first one's verifier.
    env = {'ASAN_OPTIONS': 'detect_leaks=1:abort_on_error=1:strict_string_checks=1:'
                           'quarantine_size_mb=0:thread_local_quarantine_size_kb=0'}
    g = saml_gateway(gateway_factory, pki, nginx, site, env=env)
    old = sign(assertion(audience=AUDIENCE))
    assert saml_get(g, pki, site, old)[0] == 200
    saml_reload(g, audience='https://second.example/')
    saml_reload(g, audience='https://third.example/')
    st, _, body = saml_get(g, pki, site, old)
    assert st == 401 and BODY not in body, 'assertion for the old audience accepted'
    st, _, body = saml_get(g, pki, site, sign(assertion(audience='https://third.example/')))
    assert (st, body) == (200, BODY)


def test_many_saml_reloads_free_every_old_verifier(gateway_factory, pki, nginx, site, sign):
    # Each configuration used for SAML once had a verifier in a table of
    # 16; the 17th overwrote a slot and leaked it. The teardown's leak
    # check at exit (LeakSanitizer) is the assertion.
    g = saml_gateway(gateway_factory, pki, nginx, site)
    for i in range(20):
        audience = f'https://gw{i}.example/'
        saml_reload(g, audience=audience)
        st, _, _ = saml_get(g, pki, site, sign(assertion(id_=f'_r{i}', audience=audience)))
        assert st == 200, f'reload {i}'
    g.finish()


# -------------------------------------------------- connection identity --

def test_certificate_identity_needs_no_header(gw, pki, site):
    st, _, body = cg.https(gw.addr('content'), cg.client_context(pki, 'carol'), 'GET',
                           f'{site}/f.txt')
    assert (st, body) == (200, BODY)


def test_disabled_principal_is_refused_on_the_next_request(gw, pki, site):
    ctx = cg.client_context(pki, 'carol')
    import http.client
    conn = http.client.HTTPSConnection('localhost', gw.port('content'), context=ctx)
    conn.sock = cg.tls_connect(gw.addr('content'), ctx)
    try:
        conn.request('GET', f'{site}/f.txt')
        r = conn.getresponse()
        assert r.status == 200 and r.read() == BODY
        gw.ctl_ok('principal', 'disable', 'carol')
        # SPEC 8: a committed change is picked up within one second
        deadline = time.time() + 5
        status = 200
        while time.time() < deadline and status == 200:
            time.sleep(0.3)
            conn.request('GET', f'{site}/f.txt')
            r = conn.getresponse()
            r.read()
            status = r.status
        assert status == 403
    finally:
        conn.close()
        gw.ctl_ok('principal', 'enable', 'carol')


@pytest.mark.parametrize('tls13', [False, True])
def test_psk_identity_authenticates_http(gw, site, tls13):
    rc, out = cg.s_client_psk(gw.addr('content'), 'dave-psk', PSK_KEY, tls13=tls13,
                              input=f'GET {site}/f.txt HTTP/1.1\r\nHost: localhost\r\n'
                                    'Connection: close\r\n\r\n')
    assert 'HTTP/1.1 200 OK' in out, out[-1500:]
    assert BODY.decode() in out


def test_wrong_psk_gets_nothing(gw, site):
    rc, out = cg.s_client_psk(gw.addr('content'), 'dave-psk', 'ff' * 32,
                              input=f'GET {site}/f.txt HTTP/1.1\r\nHost: localhost\r\n'
                                    'Connection: close\r\n\r\n')
    assert 'HTTP/1.1' not in out and BODY.decode() not in out
