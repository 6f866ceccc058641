"""test_psk.py — TLS pre-shared keys (SPEC section 2, `psk`): `openssl
s_client -psk` reaches Dovecot and nginx through cpmgate with the TLS 1.2
AEAD PSK suites and with TLS 1.3 external PSK; CBC suites are not offered by
default; a wrong key and an unknown identity are refused alike (the same
alert), so a client cannot probe for identities."""

import re

import pytest

import cg

BOB_ID = 'bob-phone'
BOB_KEY = '5f1d3c6a9b2e4f708192a3b4c5d6e7f80123456789abcdef0fedcba987654321'
LOGOUT = b'a1 LOGOUT\r\n'
GET = (b'GET /content/index.html HTTP/1.1\r\nHost: localhost\r\n'
       b'Connection: close\r\n\r\n')


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, nginx):
    g = module_gateway_factory({
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'psk', 'upstream': 'dovecot'},
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'psk', 'upstream': 'nginx'},
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'bob')
    g.ctl_ok('cred', 'add', 'bob', 'psk', '--identity', BOB_ID, '--key', BOB_KEY)
    g.ctl_ok('principal', 'add', 'carol')
    r = g.ctl_ok('cred', 'add', 'carol', 'psk', '--identity', 'carol-laptop')
    keys = re.findall(r'^([0-9a-f]{64})$', r.stdout, re.M)
    assert len(keys) == 1, f'a generated key is printed once, got: {r.stdout!r}'
    g.carol_key = keys[0]
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


def imap_psk(gw, identity, key, tls13=False, cipher='PSK-AES128-GCM-SHA256'):
    return cg.s_client_psk(gw.addr('imaps'), identity, key, tls13=tls13,
                           cipher=cipher, input=LOGOUT)


AEAD_SUITES = ['PSK-AES128-GCM-SHA256', 'PSK-AES256-GCM-SHA384',
               'PSK-CHACHA20-POLY1305', 'ECDHE-PSK-CHACHA20-POLY1305']


@pytest.mark.parametrize('cipher', AEAD_SUITES)
def test_tls12_psk_suite_reaches_dovecot(gw, cipher):
    rc, out = imap_psk(gw, BOB_ID, BOB_KEY, cipher=cipher)
    assert '* OK' in out, out
    assert cg.negotiated_cipher(out) == cipher
    assert 'TLSv1.2' in out


def test_tls13_external_psk_reaches_dovecot(gw):
    rc, out = imap_psk(gw, BOB_ID, BOB_KEY, tls13=True)
    assert '* OK' in out, out
    assert 'TLSv1.3' in out


@pytest.mark.parametrize('tls13', [False, True], ids=['tls12', 'tls13'])
def test_psk_reaches_nginx(gw, tls13):
    rc, out = cg.s_client_psk(gw.addr('content'), BOB_ID, BOB_KEY, tls13=tls13,
                              input=GET)
    assert re.search(r'HTTP/1\.1 200', out), out
    assert cg.Nginx.INDEX.decode() in out


def test_generated_key_works(gw):
    rc, out = imap_psk(gw, 'carol-laptop', gw.carol_key)
    assert '* OK' in out, out


def test_cbc_suite_not_offered_by_default(gw):
    rc, out = imap_psk(gw, BOB_ID, BOB_KEY, cipher='PSK-AES128-CBC-SHA256')
    assert '* OK' not in out
    assert 'Cipher is (NONE)' in out or cg.tls_alert(out), out


def wrong_key():
    return ('00' if BOB_KEY[:2] != '00' else 'ff') + BOB_KEY[2:]


@pytest.mark.parametrize('tls13', [False, True], ids=['tls12', 'tls13'])
def test_wrong_key_is_refused(gw, tls13):
    rc, out = imap_psk(gw, BOB_ID, wrong_key(), tls13=tls13)
    assert '* OK' not in out, out


@pytest.mark.parametrize('tls13', [False, True], ids=['tls12', 'tls13'])
def test_unknown_identity_is_refused(gw, tls13):
    rc, out = imap_psk(gw, 'nobody-at-all', BOB_KEY, tls13=tls13)
    assert '* OK' not in out, out


@pytest.mark.parametrize('tls13', [False, True], ids=['tls12', 'tls13'])
def test_unknown_identity_indistinguishable_from_wrong_key(gw, tls13):
    _, wrong = imap_psk(gw, BOB_ID, wrong_key(), tls13=tls13)
    _, unknown = imap_psk(gw, 'nobody-at-all', BOB_KEY, tls13=tls13)
    assert '* OK' not in wrong and '* OK' not in unknown
    a, b = cg.tls_alert(wrong), cg.tls_alert(unknown)
    assert a is not None, f'no alert reported:\n{wrong}'
    assert a == b, f'wrong key -> {a!r}, unknown identity -> {b!r}'
    assert a != 'unknown psk identity'


def test_disabled_psk_principal_is_refused(gw):
    gw.ctl_ok('principal', 'add', 'dave')
    gw.ctl_ok('cred', 'add', 'dave', 'psk', '--identity', 'dave-id',
              '--key', BOB_KEY[::-1])
    cg.wait_until(lambda: '* OK' in imap_psk(gw, 'dave-id', BOB_KEY[::-1])[1],
                  timeout=5, what='new PSK accepted')
    gw.ctl_ok('principal', 'disable', 'dave')
    cg.wait_until(lambda: '* OK' not in imap_psk(gw, 'dave-id', BOB_KEY[::-1])[1],
                  timeout=5, what='disabled principal refused')
