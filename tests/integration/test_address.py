"""test_address.py — source-address authentication (SPEC section 2,
`address`): a client whose source address falls in a CIDR registered for a
principal gets in; one from any other address is refused. Clients pick
their source address with bind() (127.0.0.0/8 is all loopback)."""

import json

import pytest

import cg


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, nginx):
    g = module_gateway_factory({
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'dovecot'},
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'nginx'},
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'address', '127.0.0.1/32')
    g.ctl_ok('principal', 'add', 'bob')
    g.ctl_ok('cred', 'add', 'bob', 'address', '127.0.0.4/30')   # .4 - .7
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


@pytest.mark.parametrize('source', ['127.0.0.1', '127.0.0.5', '127.0.0.7'])
def test_registered_address_reaches_dovecot(gw, pki, source):
    g = cg.imap_greeting(gw.addr('imaps'), cg.client_context(pki), source=source)
    assert g is not None and g.startswith(b'* OK'), g


@pytest.mark.parametrize('source', ['127.0.0.1', '127.0.0.6'])
def test_registered_address_gets_content(gw, pki, source):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki), source=source)
    assert r is not None and r[0] == 200, r
    assert r[2] == cg.Nginx.INDEX


@pytest.mark.parametrize('source', ['127.0.0.3', '127.0.0.8', '127.0.1.1'])
def test_unregistered_address_is_refused_on_imap(gw, pki, source):
    assert cg.imap_refused(gw.addr('imaps'), cg.client_context(pki), source=source)


@pytest.mark.parametrize('source', ['127.0.0.3', '127.0.0.8'])
def test_unregistered_address_is_refused_on_http(gw, pki, source):
    r = cg.http_request(gw.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki), source=source)
    assert cg.http_refused(r), r


def test_address_cred_added_while_running_is_picked_up(gw, pki):
    src = '127.0.0.9'
    assert cg.imap_refused(gw.addr('imaps'), cg.client_context(pki), source=src)
    gw.ctl_ok('principal', 'add', 'carol')
    gw.ctl_ok('cred', 'add', 'carol', 'address', f'{src}/32')
    cg.wait_until(lambda: not cg.imap_refused(gw.addr('imaps'),
                                              cg.client_context(pki), source=src),
                  timeout=3, what='new address credential in effect')


# A principal's name may be 255 bytes (the store's limit). The connection
# carries the principal's id: a name longer than any display buffer must
# neither lock its owner out nor make it act as another principal whose name
# is a prefix of it (what a name copied into a 128-byte field did).
LONG = 'l' * 200
PREFIX = LONG[:127]


@pytest.fixture(scope='module')
def gw_long(module_gateway_factory, pki, nginx):
    g = module_gateway_factory({
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', LONG)
    g.ctl_ok('cred', 'add', LONG, 'address', '127.0.0.10/32')
    g.ctl_ok('principal', 'add', PREFIX)
    g.ctl_ok('cred', 'add', PREFIX, 'address', '127.0.0.11/32')
    g.ctl_ok('acl', 'allow', LONG, 'http', '/content/index.html', 'read')
    g.ctl_ok('acl', 'allow', PREFIX, 'http', '/content/alice/*', 'read')
    return g.start()


def test_long_principal_name_acts_as_itself_not_its_prefix(gw_long, pki):
    ctx = cg.client_context(pki)
    own = cg.http_request(gw_long.addr('content'), 'GET', '/content/index.html',
                          ctx=ctx, source='127.0.0.10')
    assert own is not None and own[0] == 200, own
    other = cg.http_request(gw_long.addr('content'), 'GET', '/content/alice/a.txt',
                            ctx=ctx, source='127.0.0.10')
    assert other is not None and other[0] == 403, other
    # and the prefix principal has its own rights, not the long one's
    r = cg.http_request(gw_long.addr('content'), 'GET', '/content/index.html',
                        ctx=ctx, source='127.0.0.11')
    assert r is not None and r[0] == 403, r
    # the audit trail names the long principal in full
    def named_in_full():
        out = gw_long.audit('export', '--format', 'jsonl').stdout
        recs = [json.loads(line) for line in out.splitlines() if line.strip()]
        return any(r.get('principal') == LONG and r.get('decision') == 'allow'
                   for r in recs)
    cg.wait_until(named_in_full, timeout=5, what='audit record naming the long principal')
