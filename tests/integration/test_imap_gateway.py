"""test_imap_gateway.py — the IMAP gateway against real Dovecot (SPEC
sections 2-5): the greeting and capability allowlist, AUTHENTICATE EXTERNAL
and master-user login for certificate clients, pass-through LOGIN, login
as someone else refused, folder ACL on every mailbox command, LIST/LSUB
filtering, names as literals / quoted / modified UTF-7 / INBOX case,
STARTTLS and its injection class, live policy changes, APPEND of a large
message, IDLE, and a backend that goes away mid-session."""

import base64
import imaplib
import re
import socket
import ssl
import subprocess
import time

import pytest

import cg

SETUP_FOLDERS = ['Work', 'Work/Sub', 'Secret', 'Secret/Deep', 'ReadOnly',
                 'Entw&APw-rfe', 'Trash']
MSG = b'From: a@example.com\r\nSubject: hello\r\n\r\nbody\r\n'


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, dovecot):
    g = module_gateway_factory({
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert, login',
            'upstream': 'dovecot', 'login_failures_per_minute': '1000'},
        'listener imap': {
            'protocol': 'imap', 'tls': 'starttls',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'login', 'upstream': 'dovecot',
            'login_failures_per_minute': '1000'},
        'upstream dovecot': dovecot.upstream(),
    })
    for name in ('alice', 'bob', 'carol'):
        g.ctl_ok('principal', 'add', name)
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    g.ctl_ok('cred', 'add', 'bob', 'cert', '--file', pki.client('bob')[0])
    g.ctl_ok('acl', 'allow', '*', 'imap', '*', 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'imap', 'Secret', 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'imap', 'Secret/*', 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'imap', 'ReadOnly', 'write,create,delete')
    g.ctl_ok('acl', 'deny', 'alice', 'imap', 'Entwürfe', 'read')
    # alice's mailbox, made directly on Dovecot
    d = dovecot.imap('alice')
    for f in SETUP_FOLDERS:
        d.create(f)
        d.subscribe(f)
    for f in ('INBOX', 'ReadOnly', 'Secret', 'Work'):
        d.append(f, None, None, MSG)
    d.logout()
    return g.start()


def tls_ctx(pki, name='alice'):
    return cg.client_context(pki, name)


class Raw(cg.IMAPSession):
    """Raw wire session; send() writes bytes as they are."""

    def send(self, data):
        self.sock.sendall(data)

    def tagged(self, tag):
        lines = []
        while True:
            line = self.readline()
            if not line:
                raise ConnectionError(f'closed waiting for {tag}: {lines}')
            if line.startswith(tag.encode() + b' '):
                return line, lines
            lines.append(line)


def external(gw, pki, name='alice'):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki, name))
    tagged, _ = s.command('AUTHENTICATE EXTERNAL =')
    assert tagged.split()[1] == b'OK', tagged
    return s


def lines_text(lines):
    return b''.join(lines).decode(errors='replace')


# ---------------------------------------------------------------- greeting --

def test_greeting_has_session_id_and_filtered_capabilities(gw, pki):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    m = re.match(rb'^\* OK \[CAPABILITY ([^\]]*)\] cpmgate ready '
                 rb'\(session ([0-9a-f]{16})\)\r\n$', s.greeting)
    assert m, s.greeting
    caps = m.group(1).split()
    assert b'IMAP4rev1' in caps and b'AUTH=EXTERNAL' in caps
    for bad in (b'LOGIN-REFERRALS', b'COMPRESS=DEFLATE', b'NOTIFY', b'STARTTLS'):
        assert bad not in caps
    tagged, _ = s.command('LOGOUT')
    assert tagged.split()[1] == b'OK'
    s.close()


def test_capabilities_after_login_are_allowlisted(gw, pki):
    s = external(gw, pki)
    tagged, lines = s.command('CAPABILITY')
    caps = lines_text(lines).split()
    assert 'IMAP4rev1' in caps and 'IDLE' in caps
    allowed = {'IMAP4rev1', 'LITERAL+', 'LITERAL-', 'SASL-IR', 'ID', 'ENABLE',
               'IDLE', 'NAMESPACE', 'UNSELECT', 'UIDPLUS', 'CHILDREN',
               'LIST-EXTENDED', 'LIST-STATUS', 'SPECIAL-USE', 'MOVE',
               'MULTIAPPEND', 'CONDSTORE', 'QRESYNC', 'ESEARCH', 'SEARCHRES',
               'SORT', 'SORT=DISPLAY', 'WITHIN', 'BINARY', 'I18NLEVEL=1'}
    for c in caps[2:]:
        assert c in allowed or c.startswith('THREAD='), c
    # Dovecot offers these; the gateway cannot police them
    assert 'COMPRESS=DEFLATE' not in caps and 'NOTIFY' not in caps
    assert 'URLAUTH' not in caps and 'CATENATE' not in caps
    tagged, _ = s.command('COMPRESS DEFLATE')
    assert tagged.split()[1] == b'BAD'
    s.close()


# ------------------------------------------------------------------- login --

def test_external_and_own_login_reach_own_mailbox(gw, pki):
    s = external(gw, pki)
    tagged, lines = s.command('SELECT INBOX')
    assert tagged.split()[1] == b'OK'
    assert re.search(rb'\* \d+ EXISTS', b''.join(lines))
    s.close()
    # LOGIN naming its own mailbox: master login for it, password unused
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    tagged, _ = s.command('LOGIN alice whatever')
    assert tagged.split()[1] == b'OK', tagged
    s.close()
    # AUTHENTICATE EXTERNAL with its own authzid
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    authz = base64.b64encode(b'alice').decode()
    tagged, _ = s.command(f'AUTHENTICATE EXTERNAL {authz}')
    assert tagged.split()[1] == b'OK', tagged
    s.close()


@pytest.mark.parametrize('cmd', [
    'LOGIN bob bobpw',                                   # another mailbox
    'LOGIN "alice*gw" x',                                # master-login syntax
    'AUTHENTICATE EXTERNAL ' + base64.b64encode(b'bob').decode(),
    'AUTHENTICATE PLAIN ' + base64.b64encode(b'bob\0alice\0x').decode(),
])
def test_login_as_someone_else_is_refused(gw, pki, cmd):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    tagged, _ = s.command(cmd)
    assert b' NO [AUTHENTICATIONFAILED]' in tagged, tagged
    # still not logged in
    tagged, _ = s.command('SELECT INBOX')
    assert tagged.split()[1] != b'OK'
    s.close()


def test_passthrough_login_and_failures_look_alike(gw, pki, dovecot):
    ctx = cg.client_context(pki)

    def starttls_session():
        s = Raw.open(gw.addr('imap'))
        tagged, _ = s.command('STARTTLS')
        assert tagged.split()[1] == b'OK'
        s.sock = ctx.wrap_socket(s.sock, server_hostname='localhost')
        return s

    s = starttls_session()
    tagged, _ = s.command('LOGIN carol carolpw')
    assert tagged.split()[1] == b'OK', tagged
    tagged, _ = s.command('SELECT INBOX')
    assert tagged.split()[1] == b'OK'
    s.close()
    answers = []
    for user, pw in (('carol', 'wrong'), ('nosuchuser', 'x'), ('dave', 'davepw')):
        s = starttls_session()
        tagged, _ = s.command(f'LOGIN {user} {pw}')
        answers.append(re.sub(rb'\(txid [0-9a-f.]+\)', b'', tagged))
        s.close()
    # dave exists in Dovecot but is no principal: refused like the others
    assert len(set(answers)) == 1, answers
    assert b'NO [AUTHENTICATIONFAILED]' in answers[0]


def test_imaplib_login_over_implicit_tls(gw, pki):
    m = imaplib.IMAP4_SSL(*gw.addr('imaps'), ssl_context=cg.client_context(pki))
    typ, _ = m.login('carol', 'carolpw')
    assert typ == 'OK'
    typ, data = m.select('INBOX')
    assert typ == 'OK'
    m.logout()
