"""test_tls_auth.py — client-certificate authentication (SPEC section 2,
`cert`): a certificate registered for a principal, by SHA-256 fingerprint or
by a subject name, reaches Dovecot and nginx through cpmgate; unregistered,
revoked, expired, foreign-CA and missing certificates are refused.

The assertions hold whether the listener relays bytes or runs the IMAP /
HTTP gateway: an accepted IMAP client sees a `* OK` greeting and can log in
to its own mailbox, an accepted HTTP client gets the file; a refused one
gets no greeting (or `* BYE`), no content."""

import pytest

import cg


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, nginx):
    g = module_gateway_factory({
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert', 'upstream': 'dovecot'},
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert', 'upstream': 'nginx'},
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
    })
    for name in ('alice', 'bob', 'carol', 'erin', 'revoked', 'expired'):
        g.ctl_ok('principal', 'add', name)
    # alice: by certificate file (its fingerprint) and by e-mail SAN — the
    # foreign certificate carries the same SAN and must still be refused.
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('cred', 'add', 'bob', 'cert', '--fingerprint', pki.fingerprint('bob'))
    g.ctl_ok('cred', 'add', 'carol', 'cert-name', 'cn:carol')
    g.ctl_ok('cred', 'add', 'erin', 'cert-name', 'email:erin@example.com')
    # Registered, so only the CRL and the validity period can refuse them.
    g.ctl_ok('cred', 'add', 'revoked', 'cert', '--file', pki.client('revoked')[0])
    g.ctl_ok('cred', 'add', 'expired', 'cert', '--file', pki.client('expired')[0])
    # dave's certificate is valid but registered for no one.
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


# (principal, certificate, how it is registered); carol is registered by
# cn:carol, which counts only on a certificate without subjectAltNames
REGISTERED = [('alice', 'alice', 'fingerprint from file'), ('bob', 'bob', '--fingerprint'),
              ('carol', 'carol-cn', 'cert-name cn:'), ('erin', 'erin', 'cert-name email:')]
REFUSED = ['dave', 'revoked', 'expired', 'foreign']


@pytest.mark.parametrize('name,cert,how', REGISTERED)
def test_registered_certificate_reaches_dovecot(gw, pki, name, cert, how):
    ctx = cg.client_context(pki, cert)
    greeting = cg.imap_greeting(gw.addr('imaps'), ctx)
    assert greeting is not None and greeting.startswith(b'* OK'), greeting


@pytest.mark.parametrize('name,cert,how', REGISTERED)
def test_registered_certificate_logs_in_to_own_mailbox(gw, pki, dovecot, name, cert, how):
    s = cg.IMAPSession.open(gw.addr('imaps'), cg.client_context(pki, cert))
    try:
        assert s.greeting.startswith(b'* OK')
        tagged, _ = s.command(f'LOGIN {name} {dovecot.users[name]}')
        assert tagged.split()[1] == b'OK', tagged
        tagged, untagged = s.command('SELECT INBOX')
        assert tagged.split()[1] == b'OK', tagged
        assert any(b'EXISTS' in l for l in untagged)
        tagged, _ = s.command('LOGOUT')
        assert tagged.split()[1] == b'OK'
    finally:
        s.close()


@pytest.mark.parametrize('name,cert,how', REGISTERED)
def test_registered_certificate_gets_nginx_content(gw, pki, name, cert, how):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki, cert))
    assert r is not None, 'connection refused'
    status, _, body = r
    assert status == 200
    assert body == cg.Nginx.INDEX


@pytest.mark.parametrize('name', REFUSED)
def test_bad_certificate_is_refused_on_imap(gw, pki, name):
    assert cg.imap_refused(gw.addr('imaps'), cg.client_context(pki, name))


@pytest.mark.parametrize('name', REFUSED)
def test_bad_certificate_is_refused_on_http(gw, pki, name):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki, name))
    assert cg.http_refused(r), r
    assert r is None or cg.Nginx.INDEX not in r[2]


# ---------------------------------------------------- certificate names --
# carol: SAN email:carol@ (registered for no one), CN carol (registered for
# carol); dave-cn-carol: SAN email:dave@ (no one), CN carol; alice-and-erin:
# the e-mail SANs of two principals.
AMBIGUOUS = ['carol', 'dave-cn-carol', 'alice-and-erin']


@pytest.mark.parametrize('cert', AMBIGUOUS)
def test_certificate_cn_beside_sans_or_names_of_two_principals_identify_no_one_on_imap(
        gw, pki, cert):
    start = gw.log_size()
    assert cg.imap_refused(gw.addr('imaps'), cg.client_context(pki, cert))
    gw.wait_log(r'certificate not registered', start=start)


@pytest.mark.parametrize('cert', AMBIGUOUS)
def test_certificate_cn_beside_sans_or_names_of_two_principals_identify_no_one_on_http(
        gw, pki, cert):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki, cert))
    assert cg.http_refused(r), r
    assert r is None or cg.Nginx.INDEX not in r[2]


def test_missing_certificate_is_refused_on_imap(gw, pki):
    assert cg.imap_refused(gw.addr('imaps'), cg.client_context(pki))


def test_missing_certificate_is_refused_on_http(gw, pki):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki))
    assert cg.http_refused(r), r


@pytest.mark.parametrize('version', ['1.2', '1.3'])
def test_registered_certificate_works_with_tls_version(gw, pki, version):
    ctx = cg.client_context(pki, 'alice', versions=(version,))
    s = cg.connect(gw.addr('imaps'), ctx)
    try:
        assert s.version() == f'TLSv{version}'
        assert cg.recv_until(s).startswith(b'* OK')
    finally:
        s.close()


@pytest.mark.parametrize('version', ['1.2', '1.3'])
def test_revoked_certificate_is_refused_with_tls_version(gw, pki, version):
    ctx = cg.client_context(pki, 'revoked', versions=(version,))
    assert cg.imap_refused(gw.addr('imaps'), ctx)


def test_server_certificate_verifies_for_localhost_and_ip(gw, pki):
    # Clients authenticate the gateway by its certificate (SPEC section 2).
    for host in ('localhost', '127.0.0.1'):
        ctx = cg.client_context(pki, 'alice')
        s = cg.connect(gw.addr('imaps'), ctx, server_hostname=host)
        s.close()


def test_old_tls_versions_are_refused(gw, pki):
    # TLS 1.2 and 1.3 only by default (SPEC section 3).
    # SECLEVEL=0 so that the client itself is willing to offer TLS 1.1.
    rc, out = cg.s_client(gw.addr('imaps'), '-tls1_1',
                          '-cipher', 'DEFAULT@SECLEVEL=0', '-cert',
                          pki.client('alice')[0], '-key', pki.client('alice')[1],
                          input=b'a LOGOUT\r\n')
    assert '* OK' not in out
    assert 'Cipher is (NONE)' in out, out


# ------------------------------------------------ CRLs along the chain --

@pytest.fixture(scope='module')
def chain_gw(module_gateway_factory, pki, dovecot):
    """A listener whose crl file holds the root's and both intermediate
    client CAs' CRLs; the root's lists revoked-sub-ca."""
    g = module_gateway_factory({
        'listener imaps': cg.tls_listener(pki, 'imap', 'dovecot', crl=pki.chain_crl),
        'upstream dovecot': dovecot.upstream(),
    })
    g.ctl_ok('principal', 'add', 'erin')
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'erin', 'cert-name', 'email:erin@example.com')
    # the revoked leaf is registered, so only the CRL can refuse it
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:revoked@example.com')
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


def test_certificate_from_intermediate_ca_with_crls_is_accepted(chain_gw, pki):
    greeting = cg.imap_greeting(chain_gw.addr('imaps'),
                                cg.client_context(pki, 'erin-via-sub-ca'))
    assert greeting is not None and greeting.startswith(b'* OK'), greeting


def test_certificate_below_revoked_intermediate_ca_is_refused(chain_gw, pki):
    # the leaf itself is on no CRL; its issuing CA is on the root's
    assert cg.imap_refused(chain_gw.addr('imaps'),
                           cg.client_context(pki, 'erin-via-revoked-sub-ca'))


def test_revoked_leaf_is_still_refused_with_chain_crls(chain_gw, pki):
    assert cg.imap_refused(chain_gw.addr('imaps'), cg.client_context(pki, 'revoked'))
