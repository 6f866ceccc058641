"""test_peer_inbound.py — a peer's gateway acting for users of its own
domain (SPEC section 7, inbound): a server principal with a client
certificate logs in with AUTHENTICATE EXTERNAL and authzid user@DOMAIN (or
sends CPM-Originator) and sees only what the rules for that user, that
domain or the server principal allow; a peer with auth = required is
refused by PSK or address, an optional one is accepted by address;
another domain's user, a server principal bound to no peer, and a user
principal naming someone else are refused; a user principal's
CPM-Originator is ignored; the audit records name the server principal,
the originator and the originating gateway's transaction id; `cpmgatectl
peer list` shows each peer with its counters from /metrics."""

import base64
import json
import re

import pytest

import cg

GW_B_PSK_ID = 'gw-b-psk'
GW_B_PSK_KEY = '00112233445566778899aabbccddeeff'
FOLDERS = ['Private', 'Shared', 'Shared/alice', 'Shared/bob', 'Shared/all']
MSG = b'From: a@b.example\r\nSubject: shared\r\n\r\nbody\r\n'


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot, nginx):
    admin = f'127.0.0.1:{cg.free_port()}'
    g = module_gateway_factory({
        'gateway': {'admin_listen': admin},
        'listener imaps': cg.tls_listener(pki, 'imap', 'dovecot',
                                          auth='cert, psk, address',
                                          login_failures_per_minute='1000'),
        'listener content': cg.tls_listener(pki, 'http', 'nginx', auth='cert, address'),
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
    })
    # gw-b: b.example's gateway, certificate required (dave's certificate;
    # its PSK and address must not do); gw-c: c.example's, optional, by
    # address; gw-x: a server principal bound to no peer; alice: a user
    g.ctl_ok('principal', 'add', 'gw-b', '--kind', 'server', '--mailbox', 'interop')
    g.ctl_ok('cred', 'add', 'gw-b', 'cert', '--file', pki.client('dave')[0])
    g.ctl_ok('cred', 'add', 'gw-b', 'psk', '--identity', GW_B_PSK_ID, '--key', GW_B_PSK_KEY)
    g.ctl_ok('cred', 'add', 'gw-b', 'address', '127.0.0.3/32')
    g.ctl_ok('peer', 'add', 'b.example', '--principal', 'gw-b', '--auth', 'required')
    g.ctl_ok('principal', 'add', 'gw-c', '--kind', 'server', '--mailbox', 'interop-c')
    g.ctl_ok('cred', 'add', 'gw-c', 'address', '127.0.0.4/32')
    g.ctl_ok('peer', 'add', 'c.example', '--principal', 'gw-c', '--auth', 'optional')
    g.ctl_ok('principal', 'add', 'gw-x', '--kind', 'server', '--mailbox', 'interop-x')
    g.ctl_ok('cred', 'add', 'gw-x', 'cert', '--file', pki.client('erin')[0])
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    # the local catch-all grants remote users nothing (its allows are for
    # local principals); their own rules, their domain's and the server
    # principal's decide
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    g.ctl_ok('acl', 'deny', '*', 'imap', 'Private', 'all')
    g.ctl_ok('acl', 'allow', 'alice@b.example', 'imap', 'Shared/alice', 'all')
    g.ctl_ok('acl', 'allow', '*@B.example', 'imap', 'Shared/all', 'list,read')
    g.ctl_ok('acl', 'allow', 'bob@c.example', 'imap', 'Shared/c', 'list,read')
    g.ctl_ok('acl', 'allow', 'gw-b', 'imap', 'Shared', 'list')
    g.ctl_ok('acl', 'deny', 'alice', 'http', '/shared/*', 'all')
    g.ctl_ok('acl', 'allow', 'alice@b.example', 'http', '/shared/alice/*', 'read,list')
    g.ctl_ok('acl', 'allow', '*@c.example', 'http', '/shared/c/*', 'read')
    d = dovecot.imap_as_master('interop')
    for f in FOLDERS:
        d.create(f)
    for f in ('Shared/alice', 'Shared/bob', 'Private'):
        d.append(f, None, None, MSG)
    d.logout()
    d = dovecot.imap_as_master('interop-c')
    for f in ('Shared', 'Shared/c', 'Private'):
        d.create(f)
    d.logout()
    for path in ('/shared/alice/a.txt', '/shared/bob/b.txt', '/shared/c/c.txt'):
        st, _, _ = nginx.request('PUT', path, body=path.encode())
        assert st in (201, 204), (path, st)
    g.admin = admin
    return g.start()


def session(gw, pki, cert=None, source=None):
    ctx = cg.client_context(pki, cert)
    return cg.IMAPSession.open(gw.addr('imaps'), ctx, source=source)


def external(s, authz):
    return s.command('AUTHENTICATE EXTERNAL ' + base64.b64encode(authz.encode()).decode())


def listed(s):
    tagged, lines = s.command('LIST "" "*"')
    assert tagged.split()[1] == b'OK', tagged
    return sorted(l.rstrip(b'\r\n').rsplit(b' ', 1)[1].strip(b'"').decode()
                  for l in lines if l.startswith(b'* LIST'))


def audit_records(gw):
    out = gw.audit('export', '--format', 'jsonl').stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def audited(gw, pred, what):
    """The committed audit records that pred accepts, once there are any
    (the writer commits in batches)."""
    found = []

    def some():
        found[:] = [r for r in audit_records(gw) if pred(r)]
        return bool(found)
    cg.wait_until(some, timeout=10, what=what)
    return found


# ------------------------------------------------------------------ IMAP --

def test_peer_server_acts_for_its_user_and_sees_only_her_folders(gw, pki):
    s = session(gw, pki, 'dave')
    tagged, lines = s.command('ID ("cpm-transaction-id" "a-gw.4711")')
    assert tagged.split()[1] == b'OK', tagged
    tagged, _ = external(s, 'alice@B.Example')
    assert tagged.split()[1] == b'OK', tagged
    assert listed(s) == ['Shared', 'Shared/alice', 'Shared/all']
    tagged, _ = s.command('SELECT Shared/alice')
    assert tagged.split()[1] == b'OK', tagged
    tagged, _ = s.command('SELECT Shared/bob')
    assert b'NO [NOPERM]' in tagged, tagged
    tagged, _ = s.command('SELECT Private')
    assert b'NO [NOPERM]' in tagged, tagged
    tagged, _ = s.command('SELECT INBOX')   # the catch-all is not hers
    assert b'NO [NOPERM]' in tagged, tagged
    s.command('LOGOUT')
    s.close()
    recs = audited(gw, lambda r: r.get('origin_txid') == 'a-gw.4711' and r['operation'] == 'LOGOUT',
                   'the LOGOUT record')
    recs = [r for r in audit_records(gw) if r.get('origin_txid') == 'a-gw.4711']
    for r in recs:
        assert r['principal'] == 'gw-b'
        assert r['originator'] == 'alice@b.example'
    ops = {(r['operation'], r.get('resource'), r['decision']) for r in recs}
    assert ('SELECT', 'Shared/alice', 'allow') in ops
    assert ('SELECT', 'Shared/bob', 'deny') in ops


def test_peer_login_by_continuation_for_another_user_of_its_domain(gw, pki):
    s = session(gw, pki, 'dave')
    s.sock.sendall(b'a1 AUTHENTICATE EXTERNAL\r\n')
    assert s.readline().startswith(b'+')
    s.sock.sendall(base64.b64encode(b'bob@b.example') + b'\r\n')
    line = s.readline()
    while line.startswith(b'*'):
        line = s.readline()
    assert line.startswith(b'a1 OK'), line
    assert listed(s) == ['Shared', 'Shared/all']
    s.close()


@pytest.mark.parametrize('cert,principal,authz,why', [
    ('dave', 'gw-b', 'alice@c.example', 'not the peer of'),   # another domain
    ('dave', 'gw-b', 'alice@a.example', 'not the peer of'),   # a domain of no peer
    ('erin', 'gw-x', 'alice@b.example', 'bound to no peer'),  # gw-x
    ('alice', 'alice', 'bob@b.example', 'only for itself'),   # a user principal
])
def test_authzid_it_may_not_act_for_is_refused(gw, pki, cert, principal, authz, why):
    start = gw.log_size()
    s = session(gw, pki, cert)
    tagged, _ = external(s, authz)
    assert b'NO [AUTHORIZATIONFAILED]' in tagged, tagged
    tagged, _ = s.command('SELECT Shared/alice')
    assert tagged.split()[1] != b'OK'
    s.close()
    gw.wait_log(re.escape(f'"{authz}" refused') + '.*' + why, start=start)
    audited(gw, lambda r: r.get('resource') == authz and r.get('principal') == principal
            and r['result'] == 'NO' and why in (r.get('reason') or ''), 'the refusal record')


def test_required_peer_by_address_or_psk_is_refused(gw, pki):
    s = session(gw, pki, None, source='127.0.0.3')
    tagged, _ = external(s, 'alice@b.example')
    assert b'NO [AUTHENTICATIONFAILED]' in tagged, tagged
    s.close()
    authz = base64.b64encode(b'alice@b.example').decode()
    rc, out = cg.s_client_psk(gw.addr('imaps'), GW_B_PSK_ID, GW_B_PSK_KEY,
                              input=f'a1 AUTHENTICATE EXTERNAL {authz}\r\n'
                                    'a2 LOGOUT\r\n')
    assert 'a1 NO [AUTHENTICATIONFAILED]' in out, out
    gw.wait_log(r"the peer requires its server's certificate")


def test_optional_peer_by_address_is_accepted(gw, pki):
    s = session(gw, pki, None, source='127.0.0.4')
    tagged, _ = external(s, 'bob@c.example')
    assert tagged.split()[1] == b'OK', tagged
    assert listed(s) == ['Shared/c']
    s.close()


def test_removing_the_peer_ends_its_sessions(gw, pki):
    s = session(gw, pki, None, source='127.0.0.4')
    assert external(s, 'bob@c.example')[0].split()[1] == b'OK'
    gw.ctl_ok('peer', 'remove', 'c.example')
    try:
        def ended():
            try:
                tagged, lines = s.command('NOOP')
            except ConnectionError as e:
                return 'peer no longer allows this session' in str(e)
            return False
        cg.wait_until(ended, timeout=10, what='the session to end')
    finally:
        gw.ctl_ok('peer', 'add', 'c.example', '--principal', 'gw-c', '--auth', 'optional')
        s.close()


def test_user_principal_id_transaction_id_is_not_recorded(gw, pki):
    s = session(gw, pki, 'alice')
    s.command('ID ("cpm-transaction-id" "forged.1")')
    tagged, _ = external(s, 'alice')
    assert tagged.split()[1] == b'OK', tagged
    tagged, _ = s.command('SELECT INBOX')
    assert tagged.split()[1] == b'OK', tagged
    s.command('LOGOUT')
    s.close()
    audited(gw, lambda r: r.get('principal') == 'alice' and r['operation'] == 'LOGOUT',
            'her LOGOUT')
    assert not [r for r in audit_records(gw) if r.get('origin_txid') == 'forged.1']


# ------------------------------------------------------------------ HTTP --

def get(gw, pki, path, cert=None, source=None, headers=None):
    return cg.http_request(gw.addr('content'), 'GET', path, ctx=cg.client_context(pki, cert),
                           source=source, headers=headers)


def test_http_originator_from_the_peer_server_is_honoured(gw, pki):
    h = {'CPM-Originator': 'alice@b.example', 'CPM-Transaction-Id': 'a-gw.77'}
    r = get(gw, pki, '/shared/alice/a.txt', 'dave', headers=h)
    assert r and r[0] == 200 and r[2] == b'/shared/alice/a.txt', r
    r = get(gw, pki, '/shared/bob/b.txt', 'dave', headers=h)
    assert r and r[0] == 403, r
    audited(gw, lambda r: r.get('origin_txid') == 'a-gw.77' and r['decision'] == 'deny',
            'the denied request')
    recs = [r for r in audit_records(gw) if r.get('origin_txid') == 'a-gw.77']
    assert {(r['resource'], r['decision']) for r in recs} == {
        ('/shared/alice/a.txt', 'allow'), ('/shared/bob/b.txt', 'deny')}
    assert all(r['principal'] == 'gw-b' and r['originator'] == 'alice@b.example'
               for r in recs)


@pytest.mark.parametrize('cert,source,originator,status', [
    ('dave', None, 'alice@c.example', 403),   # another domain
    ('erin', None, 'alice@b.example', 403),   # a server principal of no peer
    (None, '127.0.0.3', 'alice@b.example', 403),  # required peer by address
    ('dave', None, 'not-an-address', 403),
])
def test_http_originator_refused(gw, pki, cert, source, originator, status):
    r = get(gw, pki, '/shared/alice/a.txt', cert, source, {'CPM-Originator': originator})
    assert r and r[0] == status, r


def test_http_optional_peer_by_address(gw, pki):
    r = get(gw, pki, '/shared/c/c.txt', None, '127.0.0.4', {'CPM-Originator': 'bob@c.example'})
    assert r and r[0] == 200, r


def test_http_user_principal_cannot_forge_an_originator(gw, pki):
    # alice (local) is denied /shared/; naming alice@b.example changes nothing
    h = {'CPM-Originator': 'alice@b.example', 'CPM-Transaction-Id': 'forged.2'}
    r = get(gw, pki, '/shared/alice/a.txt', 'alice', headers=h)
    assert r and r[0] == 403, r
    r = get(gw, pki, '/content/index.html', 'alice', headers=h)
    assert r and r[0] == 200, r
    audited(gw, lambda x: x.get('principal') == 'alice'
            and x.get('resource') == '/content/index.html', 'the allowed request')
    recs = [x for x in audit_records(gw) if x.get('principal') == 'alice'
            and (x.get('resource') or '').startswith(('/shared/alice', '/content/index'))]
    assert recs and all('originator' not in x and 'origin_txid' not in x for x in recs)


# ------------------------------------------------------------ operations --

def test_peer_list_shows_principal_auth_and_counters(gw, pki):
    s = session(gw, pki, 'dave')
    assert external(s, 'alice@b.example')[0].split()[1] == b'OK'
    s.close()
    r = gw.ctl_ok('peer', 'list', '--metrics', f'http://{gw.admin}/metrics', '--json')
    rows = {p['domain']: p for p in json.loads(r.stdout)}
    assert rows['b.example']['principal'] == 'gw-b'
    assert rows['b.example']['auth'] == 'required'
    assert int(rows['b.example']['sessions']) >= 1
    assert int(rows['b.example']['refusals']) >= 1
    assert rows['c.example']['auth'] == 'optional'
    text = gw.ctl_ok('peer', 'list', '--metrics', f'http://{gw.admin}/metrics').stdout
    assert re.search(r'b\.example\s+gw-b\s+required\s+\d+\s+\d+', text), text
    # without --metrics the counters are not shown, the rest is
    text = gw.ctl_ok('peer', 'list').stdout
    assert 'gw-b' in text and 'required' in text
