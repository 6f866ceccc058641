"""test_route.py — routing to a remote CPM environment (SPEC section 7,
outbound), against a scripted remote gateway (remote_env.FakeRemote) that
records what it gets: an IMAP listener with route = b.example logs in
there with ID ("cpm-transaction-id" TXID) and AUTHENTICATE EXTERNAL as
NAME@a.example; HTTP requests under /remote/b.example/ go there without
the prefix and with CPM-Originator and CPM-Transaction-Id; the local ACL
decides first; a remote certificate of the wrong name, an unknown CA or
another pin, a remote gateway that is down, and a full route are refused
with an audit record; a peer's server principal is never routed onward."""

import base64
import socket

import pytest

import cg
import remote_env


@pytest.fixture
def remotes(pki, pki_b):
    """A remote gateway's IMAP and HTTP on 127.0.0.2, certificates of
    pki_b, trusting this gateway's certificate (pki's CA)."""
    made = [remote_env.FakeRemote(kind, pki_b.server_cert, pki_b.server_key, pki.ca)
            for kind in ('imap', 'http')]
    yield made
    for r in made:
        r.close()


def _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes, up_extra=None,
             route_extra=None):
    """A gateway of a.example routed to the remotes; alice (certificate)
    may use b.example:Shared and /remote/b.example/shared/ there, bob is a
    server principal."""
    ups = [r.upstream(pki_b.ca, pki.gateway_cert, pki.gateway_key, **(up_extra or {}))
           for r in remotes]
    g = gateway_factory(remote_env.routed_sections(pki, dovecot, nginx, *ups, route_extra))
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('principal', 'add', 'bob', '--kind', 'server')
    g.ctl_ok('cred', 'add', 'bob', 'cert-name', 'email:bob@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'imap', 'b.example:Shared', 'all')
    g.ctl_ok('acl', 'allow', 'alice', 'imap', 'b.example:Shared/*', 'all')
    g.ctl_ok('acl', 'allow', '*', 'http', '/remote/b.example/shared/*', 'all')
    g.ctl_ok('acl', 'allow', 'bob', 'imap', '*', 'all')
    return g.start()


_record = remote_env.audit_record


def _imap(g, pki, who='alice'):
    return cg.IMAPSession.open(g.addr('imaps-b'), cg.client_context(pki, who))


def test_imap_session_is_relayed_as_the_local_user_with_the_login_txid(
        gateway_factory, pki, pki_b, dovecot, nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes)
    imap = remotes[0]
    s = _imap(g, pki)
    assert s.greeting.startswith(b'* OK'), s.greeting
    tagged, _ = s.command('AUTHENTICATE EXTERNAL =')
    assert tagged.startswith(b'a1 OK'), tagged
    # the remote gateway learnt the transaction id, then who this is
    assert imap.lines[0].startswith('cgi1 ID ("cpm-transaction-id" "'), imap.lines
    txid = imap.lines[0].split('"')[3]
    assert imap.lines[1] == 'cgi2 AUTHENTICATE EXTERNAL ' + base64.b64encode(
        b'alice@a.example').decode()
    # this gateway's client certificate, verified there
    assert any(('commonName', 'gateway') in rdn for rdn in imap.peer_certs[0])
    login = _record(g, lambda x: x.get('txid') == txid, 'the login record')
    assert login['principal'] == 'alice'
    # the local ACL decides first: DOMAIN:NAME
    assert s.command('SELECT Shared')[0].startswith(b'a2 OK')
    tagged, _ = s.command('SELECT Private')
    assert tagged.startswith(b'a3 NO [NOPERM]'), tagged
    assert not any('Private' in l for l in imap.lines if 'SELECT' in l)
    tagged, lines = s.command('LIST "" "*"')
    assert tagged.startswith(b'a4 OK')
    assert any(b'Shared' in l for l in lines) and not any(b'Private' in l for l in lines)
    s.command('LOGOUT')
    s.close()


def test_http_request_goes_there_without_the_prefix_with_originator_and_txid(
        gateway_factory, pki, pki_b, dovecot, nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes)
    http = remotes[1]
    ctx = cg.client_context(pki, 'alice')
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/a%20b?x=1', ctx=ctx,
                        headers={'CPM-Transaction-Id': 'forged'})
    assert r[0] == 200, r
    assert r[2] == b'/shared/a%20b?x=1'
    head = http.lines[-1]
    assert head.startswith('GET /shared/a%20b?x=1 HTTP/1.1\r\n'), head
    assert remote_env.header(head, 'Host') == 'localhost'
    assert remote_env.header(head, 'CPM-Originator') == 'alice@a.example'
    txid = r[1]['x-transaction-id']
    assert remote_env.header(head, 'CPM-Transaction-Id') == txid
    rec = _record(g, lambda x: x.get('txid') == txid, 'the request record')
    assert rec['resource'] == '/remote/b.example/shared/a b'
    # the local ACL judges the local path: nothing reaches the remote
    n = len(http.lines)
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/private/x', ctx=ctx)
    assert r[0] == 403, r
    assert len(http.lines) == n
    # a user's own CPM-Originator means nothing: it never crosses
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/x', ctx=ctx,
                        headers={'CPM-Originator': 'mallory@c.example'})
    assert r[0] == 200, r
    assert remote_env.header(http.lines[-1], 'CPM-Originator') == 'alice@a.example'
    assert 'mallory' not in http.lines[-1]


def test_a_server_principal_is_not_routed_onward(gateway_factory, pki, pki_b, dovecot,
                                                 nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes)
    s = _imap(g, pki, 'bob')
    tagged, _ = s.command('AUTHENTICATE EXTERNAL =')
    assert tagged.startswith(b'a1 NO [AUTHENTICATIONFAILED]'), tagged
    s.close()
    assert not any('AUTHENTICATE' in l for l in remotes[0].lines)
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/x',
                        ctx=cg.client_context(pki, 'bob'))
    assert r[0] == 508, r
    assert remotes[1].lines == []


def _refused(g, pki, remotes, reason):
    """Both protocols refused cleanly, with an audit record naming why."""
    s = _imap(g, pki)
    assert s.greeting.startswith(b'* BYE [UNAVAILABLE]'), s.greeting
    s.close()
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/x',
                        ctx=cg.client_context(pki, 'alice'))
    assert r is not None and r[0] == 502, r
    assert all(not x.lines for x in remotes)
    _record(g, lambda x: x.get('operation') == 'connect' and reason in (x.get('reason') or ''),
            'the refused IMAP connect')
    _record(g, lambda x: x.get('result') == '502' and reason in (x.get('reason') or ''),
            'the refused request')
    return r


def test_remote_certificate_of_another_name_is_refused(gateway_factory, pki, pki_b,
                                                         dovecot, nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes,
                 up_extra={'server_name': 'wrong.example'})
    r = _refused(g, pki, remotes, 'certificate')
    assert b'not trusted' in r[2]


def test_remote_certificate_of_an_unknown_ca_is_refused(gateway_factory, pki, pki_b,
                                                          dovecot, nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes,
                 up_extra={'ca': pki.ca})
    _refused(g, pki, remotes, 'certificate')


def test_remote_key_other_than_the_pin_is_refused(gateway_factory, pki, pki_b, dovecot,
                                                    nginx, remotes):
    from test_upstream import spki_pin
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes,
                 up_extra={'ca': None, 'pin_sha256': spki_pin(pki.server_cert)})
    _refused(g, pki, remotes, 'pin')


def test_remote_gateway_down_gets_the_refusal_of_a_backend_down(
        gateway_factory, pki, pki_b, dovecot, nginx, remotes):
    dead = socket.socket()
    dead.bind(('127.0.0.2', 0))
    port = dead.getsockname()[1]
    dead.close()
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes,
                 up_extra={'address': f'127.0.0.2:{port}'})
    s = _imap(g, pki)
    assert s.greeting.startswith(b'* BYE [UNAVAILABLE] backend unavailable'), s.greeting
    s.close()
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/x',
                        ctx=cg.client_context(pki, 'alice'))
    assert r[0] == 502 and b'backend unavailable' in r[2], r


def test_a_full_route_refuses_the_next_connection(gateway_factory, pki, pki_b, dovecot,
                                                   nginx, remotes):
    g = _gateway(gateway_factory, pki, pki_b, dovecot, nginx, remotes,
                 route_extra={'max_connections': '1'})
    first = _imap(g, pki)
    assert first.greeting.startswith(b'* OK')
    second = _imap(g, pki)
    assert second.greeting.startswith(b'* BYE [UNAVAILABLE] too many'), second.greeting
    second.close()
    r = cg.http_request(g.addr('content'), 'GET', '/remote/b.example/shared/x',
                        ctx=cg.client_context(pki, 'alice'))
    assert r[0] == 503, r
    first.close()
    # the place is given back when the session ends
    cg.wait_until(lambda: _imap(g, pki).greeting.startswith(b'* OK'), timeout=10,
                  what='a place on the route again')
