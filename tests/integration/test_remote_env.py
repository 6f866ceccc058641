"""test_remote_env.py — two CPM environments (SPEC section 7): a.example's
gateway on 127.0.0.1 and b.example's on 127.0.0.2, each with its own PKI,
policy database, Dovecot and nginx, each routed to the other. A user of
one reads and writes a remote user's shared folder through the local
gateway, IMAP and HTTP, both ways; each side's ACL decides (a local deny
never reaches the remote gateway, a remote deny refuses too); the audit
records of both gateways name the same transaction id; a request routed
here is never routed onward."""

import pytest

import cg
import remote_env
from remote_env import audit_record, audit_records


@pytest.fixture(scope='module')
def backends_b(cg_root):
    """b.example's own Dovecot and nginx."""
    d = cg.Dovecot(cg_root / 'dovecot-b').start()
    n = cg.Nginx(cg_root / 'nginx-b').start()
    yield d, n
    n.stop()
    d.stop()


@pytest.fixture(scope='module')
def envs(module_gateway_factory, pki, pki_b, dovecot, nginx, backends_b):
    """(a, b): alice of a.example may use b.example's Shared (IMAP, on
    b's interop mailbox carol) and /content/shared/ (HTTP); bob of
    b.example may use a.example's Partner folder (on a's mailbox dave)
    and /content/partner/."""
    a = remote_env.Environment('a.example', '127.0.0.1', pki, dovecot, nginx)
    b = remote_env.Environment('b.example', '127.0.0.2', pki_b, *backends_b)
    a.gw = module_gateway_factory(a.sections(b))
    b.gw = module_gateway_factory(b.sections(a))
    a.trust_peer(b, interop='dave')
    b.trust_peer(a, interop='carol')
    for env, user, other, peer_user, folder, path in (
            (a, 'alice', b, 'bob', 'Partner', '/content/partner/'),
            (b, 'bob', a, 'alice', 'Shared', '/content/shared/')):
        g = env.gw
        g.ctl_ok('principal', 'add', user)
        g.ctl_ok('cred', 'add', user, 'cert-name', f'email:{user}@example.com')
        # what this environment's users may do there (judged here first)
        o = other.domain
        g.ctl_ok('acl', 'allow', user, 'imap', f'{o}:Shared', 'all')
        g.ctl_ok('acl', 'allow', user, 'imap', f'{o}:Partner', 'all')
        g.ctl_ok('acl', 'allow', user, 'imap', f'{o}:Other', 'all')
        g.ctl_ok('acl', 'allow', user, 'http', f'/remote/{o}/content/*', 'all')
        g.ctl_ok('acl', 'allow', user, 'http', f'/remote/{o}/remote/*', 'all')
        # what the other environment's user may do here (judged here again)
        remote_user = f'{peer_user}@{other.domain}'
        g.ctl_ok('acl', 'allow', remote_user, 'imap', folder, 'all')
        g.ctl_ok('acl', 'allow', remote_user, 'http', path + '*', 'all')
        box = 'dave' if env is a else 'carol'
        m = env.dovecot.imap(box)
        for f in (folder, 'Other', 'Private'):
            m.create(f)
        m.logout()
        assert env.nginx.request('MKCOL', path)[0] in (201, 405)
        assert env.nginx.request('MKCOL', '/content/private/')[0] in (201, 405)
    a.gw.start()
    b.gw.start()
    return a, b


def _login(env, user, other):
    """An IMAP session of user (its certificate) on env's listener routed to
    other, logged in there; returns (session, the login's txid here)."""
    listener = f'imaps-{other.domain.split(".")[0]}'
    seen = len(audit_records(env.gw))
    s = cg.IMAPSession.open(env.addr(listener), cg.client_context(env.pki, user))
    assert s.greeting.startswith(b'* OK'), s.greeting
    tagged, _ = s.command('AUTHENTICATE EXTERNAL =')
    assert tagged.startswith(b'a1 OK'), (tagged, env.gw.log()[-2000:])
    rec = cg.wait_until(lambda: next((x for x in audit_records(env.gw)[seen:]
                                      if x.get('operation') == 'AUTHENTICATE'), None),
                        timeout=10, what='the routed login here')
    assert rec['principal'] == user
    return s, rec['txid']


def test_imap_routed_both_ways_each_acl_deciding(envs):
    a, b = envs
    for env, user, other, folder in ((a, 'alice', b, 'Shared'), (b, 'bob', a, 'Partner')):
        s, _ = _login(env, user, other)
        tagged, lines = s.command('LIST "" "*"')
        assert tagged.startswith(b'a2 OK'), tagged
        names = b''.join(lines)
        assert folder.encode() in names, lines
        # Private: not allowed here, Other: allowed here, not there
        assert b'Private' not in names and b'Other' not in names, lines
        assert s.command(f'SELECT {folder}')[0].startswith(b'a3 OK')
        assert s.command('SELECT Private')[0].startswith(b'a4 NO [NOPERM]')
        tagged, _ = s.command('SELECT Other')
        assert tagged.startswith(b'a5 NO'), tagged
        s.command('LOGOUT')
        s.close()
    # a local deny never reaches the other side: no remote user's record
    # there names Private
    for env in envs:
        assert not any(x.get('originator') and 'Private' in (x.get('resource') or '')
                       for x in audit_records(env.gw))


def test_http_routed_both_ways_each_acl_deciding(envs, pki, pki_b):
    a, b = envs
    for env, user, other, path in ((a, 'alice', b, '/content/shared/'),
                                   (b, 'bob', a, '/content/partner/')):
        ctx = cg.client_context(env.pki, user)
        base = f'/remote/{other.domain}{path}'
        body = f'from {user}\n'.encode()
        r = cg.http_request(env.addr('content'), 'PUT', base + 'note.txt', ctx=ctx, body=body)
        assert r[0] in (201, 204), r
        r = cg.http_request(env.addr('content'), 'GET', base + 'note.txt', ctx=ctx)
        assert r[0] == 200 and r[2] == body, r
        assert (other.nginx.root / path.strip('/') / 'note.txt').read_bytes() == body
        # a listing names this gateway's paths, the prefix put back
        r = cg.http_request(env.addr('content'), 'PROPFIND', base, ctx=ctx,
                            headers={'Depth': '1'})
        assert r[0] == 207, r
        assert f'{base}note.txt'.encode() in r[2], r[2]
        assert f'>{path}note.txt<'.encode() not in r[2], r[2]
        # allowed here, denied there
        r = cg.http_request(env.addr('content'), 'GET',
                            f'/remote/{other.domain}/content/private/x', ctx=ctx)
        assert r[0] == 403, r
        # denied here: nothing reaches the other gateway
        r = cg.http_request(env.addr('content'), 'GET', f'/remote/{other.domain}/secret/x',
                            ctx=ctx)
        assert r[0] == 403, r
        assert not any(x.get('originator') and '/secret/' in (x.get('resource') or '')
                       for x in audit_records(other.gw))


def test_both_gateways_record_the_same_transaction_id(envs):
    a, b = envs
    s, txid = _login(a, 'alice', b)
    s.command('SELECT Shared')
    s.command('LOGOUT')
    s.close()
    there = audit_record(b.gw, lambda x: x.get('origin_txid') == txid
                         and x.get('operation') == 'AUTHENTICATE', 'the routed login at b.example')
    assert there['originator'] == 'alice@a.example', there
    assert there['principal'] == 'gw-a'
    here = audit_record(a.gw, lambda x: x.get('txid') == txid, 'the login at a.example')
    print('\na.example:', here, '\nb.example:', there)
    ctx = cg.client_context(a.pki, 'alice')
    r = cg.http_request(a.addr('content'), 'PUT', '/remote/b.example/content/shared/txid.txt',
                        ctx=ctx, body=b'same transaction\n')
    assert r[0] in (201, 204), r
    txid = r[1]['x-transaction-id']
    here = audit_record(a.gw, lambda x: x.get('txid') == txid, 'the request at a.example')
    there = audit_record(b.gw, lambda x: x.get('origin_txid') == txid,
                         'the routed request at b.example')
    assert here['resource'] == '/remote/b.example/content/shared/txid.txt'
    assert there['resource'] == '/content/shared/txid.txt'
    assert here['result'] == there['result']
    assert there['originator'] == 'alice@a.example'
    print('\na.example:', here, '\nb.example:', there)


def test_a_routed_request_is_not_routed_onward(envs):
    a, b = envs
    ctx = cg.client_context(a.pki, 'alice')
    # a routes to b, whose path leads back to a: b refuses
    r = cg.http_request(a.addr('content'), 'GET',
                        '/remote/b.example/remote/a.example/content/partner/', ctx=ctx)
    assert r[0] == 508, r
    rec = audit_record(b.gw, lambda x: x.get('result') == '508', 'the refusal at b.example')
    assert rec['originator'] == 'alice@a.example'
    assert rec['origin_txid'] == r[1]['x-transaction-id']
    # and a's own gateway never saw it come back
    assert not any(x.get('origin_txid') == rec['txid'] for x in audit_records(a.gw))


@pytest.mark.parametrize('wrong', [{'server_name': 'wrong.example'},
                                   {'server_name': None, 'pin_sha256': 'ab' * 32}],
                         ids=['server-name', 'pin'])
def test_a_remote_certificate_refused_here_is_a_refused_handshake_there(
        envs, gateway_factory, wrong):
    """A gateway of a.example whose route does not trust b.example's
    certificate (another name, another pin) refuses the session with
    BYE [UNAVAILABLE] and says why in its own audit log; b.example's
    gateway records the handshake that a.example broke off."""
    a, b = envs
    sections = a.sections(b)
    for name in ('listener peers', 'listener content-peers'):
        del sections[name]  # a's own gateway has these addresses
    for up in ('upstream remote-imap', 'upstream remote-http'):
        for k, v in wrong.items():
            if v is None:
                sections[up].pop(k, None)
            else:
                sections[up][k] = v
    g = gateway_factory(sections)
    if g.ctl('principal', 'show', 'alice').returncode != 0:  # (one directory per test name)
        g.ctl_ok('principal', 'add', 'alice')
        g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
        g.ctl_ok('acl', 'allow', 'alice', 'imap', 'b.example:Shared', 'all')
    g.start()
    seen_g, seen_b = len(audit_records(g)), len(audit_records(b.gw))
    s = cg.IMAPSession.open(g.addr('imaps-b'), cg.client_context(a.pki, 'alice'))
    assert s.greeting.startswith(b'* BYE [UNAVAILABLE]'), s.greeting
    s.close()
    here = cg.wait_until(lambda: next((x for x in audit_records(g)[seen_g:]
                                       if x.get('operation') == 'connect'), None),
                         timeout=10, what='the refused connect here')
    assert 'certificate' in (here.get('reason') or '') or 'pin' in (here.get('reason') or ''), here
    there = cg.wait_until(
        lambda: next((x for x in audit_records(b.gw)[seen_b:]
                      if x.get('service') == 'tls' and x.get('operation') == 'refused'
                      and (x.get('client') or '').startswith('127.0.0.1:')), None),
        timeout=10, what='the broken-off handshake at b.example')
    assert 'handshake' in (there.get('reason') or ''), there
