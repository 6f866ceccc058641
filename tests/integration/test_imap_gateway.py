"""test_imap_gateway.py — the IMAP gateway against real Dovecot (SPEC
sections 2-5): the greeting and capability allowlist, AUTHENTICATE EXTERNAL
and master-user login for certificate clients, pass-through LOGIN, login
as someone else refused, folder ACL on every mailbox command, LIST/LSUB
filtering, names as literals / quoted / modified UTF-7 / INBOX case,
STARTTLS and its injection class, live policy changes, APPEND of a large
message, IDLE, and a backend that goes away mid-session."""

import base64
import imaplib
import json
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
    d = dovecot.imap('bob')
    d.append('INBOX', None, None, MSG)
    d.logout()
    return g.start()


def tls_ctx(pki, name='alice'):
    return cg.client_context(pki, name)


class Raw(cg.IMAPSession):
    """Raw wire session; send() writes bytes as they are."""

    def send(self, data):
        self.sock.sendall(data)

    def expect(self, text, result=b'OK'):
        """Send `TAG text`, assert the tagged result; (tagged, lines)."""
        tagged, lines = self.command(text)
        assert tagged.split()[1] == result, (text, tagged)
        return tagged, lines

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


def session_records(gw, sid, txids):
    """The audit records of session sid by txid, each a list in the log's
    order, once records of at least txids commands are stored."""
    def records():
        r = gw.audit('export', '--format', 'jsonl')
        if r.returncode != 0:
            return None
        recs = {}
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            if (rec.get('txid') or '').startswith(sid + '.'):
                recs.setdefault(rec['txid'], []).append(rec)
        return recs if len(recs) >= txids else None
    return cg.wait_until(records, timeout=20, interval=0.3,
                         what='audit records of the session')


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
               'SORT', 'SORT=DISPLAY', 'ESORT', 'CONTEXT=SEARCH',
               'CONTEXT=SORT', 'WITHIN', 'BINARY', 'I18NLEVEL=1'}
    for c in caps[2:]:
        assert c in allowed or c.startswith('THREAD='), c
    # Dovecot offers these; the gateway cannot police them
    assert 'COMPRESS=DEFLATE' not in caps and 'NOTIFY' not in caps
    assert 'URLAUTH' not in caps and 'CATENATE' not in caps
    tagged, _ = s.command('COMPRESS DEFLATE')
    assert tagged.split()[1] == b'BAD'
    s.close()


def test_esort_and_context_search_are_passed_through(gw, pki):
    # SPEC 4 allows ESORT and CONTEXT=SEARCH/SORT (RFC 5267); Dovecot 2.3
    # offers ESORT and CONTEXT=SEARCH
    s = external(gw, pki)
    _, lines = s.command('CAPABILITY')
    caps = lines_text(lines).split()
    assert 'ESORT' in caps and 'CONTEXT=SEARCH' in caps, caps
    s.expect('SELECT Work')
    _, lines = s.expect('SORT RETURN (MIN COUNT) (ARRIVAL) UTF-8 ALL')
    assert re.search(rb'^\* ESEARCH \(TAG "a\d+"\) MIN \d+ COUNT \d+',
                     b''.join(lines), re.M), lines
    tagged, _ = s.expect('SEARCH RETURN (UPDATE COUNT) ALL')
    tag = tagged.split()[0].decode()
    s.expect(f'CANCELUPDATE "{tag}"')
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


@pytest.mark.parametrize('cmd,code', [
    ('LOGIN bob bobpw', b'AUTHENTICATIONFAILED'),        # another mailbox
    ('LOGIN "alice*gw" x', b'AUTHENTICATIONFAILED'),     # master-login syntax
    # the certificate is good, the authzid not: RFC 5530, SPEC 7
    ('AUTHENTICATE EXTERNAL ' + base64.b64encode(b'bob').decode(), b'AUTHORIZATIONFAILED'),
    ('AUTHENTICATE EXTERNAL ' + base64.b64encode(b'bob@b.example').decode(),
     b'AUTHORIZATIONFAILED'),
    ('AUTHENTICATE PLAIN ' + base64.b64encode(b'bob\0alice\0x').decode(),
     b'AUTHENTICATIONFAILED'),
])
def test_login_as_someone_else_is_refused(gw, pki, cmd, code):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    tagged, _ = s.command(cmd)
    assert b' NO [' + code + b']' in tagged, tagged
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


def test_login_failures_are_rate_limited(gateway_factory, pki, dovecot):
    g = gateway_factory({
        'listener imap': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'login', 'upstream': 'dovecot',
            'login_failures_per_minute': '2'},
        'upstream dovecot': dovecot.upstream(),
    })
    g.ctl_ok('principal', 'add', 'carol')
    g.ctl_ok('acl', 'allow', '*', 'imap', '*', 'all')
    g.start()
    ctx = cg.client_context(pki)
    for _ in range(2):
        s = Raw.open(g.addr('imap'), ctx)
        tagged, _ = s.command('LOGIN carol wrong')
        assert b'NO [AUTHENTICATIONFAILED]' in tagged
        s.close()
    # the right password no longer helps from this address this minute
    s = Raw.open(g.addr('imap'), ctx)
    tagged, _ = s.command('LOGIN carol carolpw')
    assert b'NO [AUTHENTICATIONFAILED]' in tagged, tagged
    s.close()


# -------------------------------------------------------------- folder ACL --

OK, NOPERM = 'OK', 'NOPERM'

# (setup commands, command, expected) — as alice, see the fixture's rules
ACL_CASES = [
    ([], 'SELECT Work', OK),
    ([], 'SELECT Secret', NOPERM),
    ([], 'EXAMINE Secret/Deep', NOPERM),
    ([], 'EXAMINE ReadOnly', OK),
    ([], 'STATUS Work (MESSAGES)', OK),
    ([], 'STATUS Secret (MESSAGES)', NOPERM),
    ([], 'CREATE Work/New1', OK),
    ([], 'CREATE Secret/New', NOPERM),
    ([], 'CREATE ReadOnly/Child', OK),        # create judged on the new name
    (['CREATE Work/Gone'], 'DELETE Work/Gone', OK),
    ([], 'DELETE ReadOnly', NOPERM),
    ([], 'DELETE Secret', NOPERM),
    (['CREATE Work/R1'], 'RENAME Work/R1 Work/R2', OK),
    ([], 'RENAME ReadOnly Work/Stolen', NOPERM),       # source lacks delete
    (['CREATE Work/R3'], 'RENAME Work/R3 Secret/R3', NOPERM),  # target denied
    ([], 'SUBSCRIBE Work', OK),
    ([], 'SUBSCRIBE Secret', NOPERM),
    ([], 'UNSUBSCRIBE Secret/Deep', NOPERM),
    (['SELECT Work'], 'FETCH 1 (FLAGS)', OK),
    (['SELECT Work'], 'UID SEARCH ALL', OK),
    (['SELECT Work'], 'COPY 1 Trash', OK),
    (['SELECT Work'], 'COPY 1 Secret', NOPERM),
    (['SELECT Work'], 'UID COPY 1:* ReadOnly', NOPERM),   # target needs write
    (['SELECT ReadOnly'], 'COPY 1 Work', OK),               # source needs read
    (['SELECT ReadOnly'], 'MOVE 1 Work', NOPERM),           # source needs delete
    (['SELECT ReadOnly'], 'UID MOVE 1:* Work', NOPERM),
    (['SELECT ReadOnly'], 'STORE 1 +FLAGS (\\Flagged)', NOPERM),
    (['SELECT ReadOnly'], 'UID STORE 1 +FLAGS (\\Flagged)', NOPERM),
    (['SELECT ReadOnly'], 'EXPUNGE', NOPERM),
    (['SELECT ReadOnly'], 'UID EXPUNGE 1', NOPERM),
    (['SELECT ReadOnly'], 'FETCH 1 (FLAGS)', OK),
    (['SELECT Work'], 'STORE 1 +FLAGS (\\Seen)', OK),
    (['SELECT Work'], 'EXPUNGE', OK),
    (['SELECT Work'], 'CLOSE', OK),
    ([], 'STATUS Entw&APw-rfe (MESSAGES)', NOPERM),   # the UTF-8 rule
    ([], 'SUBSCRIBE Entw&APw-rfe', OK),
    ([], 'GETACL INBOX', 'BAD'),                       # not offered: refused
    ([], 'GETMETADATA INBOX (/private/comment)', 'BAD'),
]


@pytest.mark.parametrize('setup,cmd,want', ACL_CASES,
                         ids=[c[1] for c in ACL_CASES])
def test_folder_acl_per_command(gw, pki, setup, cmd, want):
    s = external(gw, pki)
    for pre in setup:
        tagged, _ = s.command(pre)
        assert tagged.split()[1] == b'OK', (pre, tagged)
    tagged, _ = s.command(cmd)
    if want == NOPERM:
        m = re.match(rb'^a\d+ NO \[NOPERM\] (list|read|write|create|delete) '
                     rb'denied on "[^"]*" \(txid ([0-9a-f]{16})\.(\d+)\)\r\n$',
                     tagged)
        assert m, (cmd, tagged)
        # the transaction id is SID.n with n this command's number
        assert int(m.group(3)) == s.n, (s.n, tagged)
    elif want == OK:
        assert tagged.split()[1] == b'OK', (cmd, tagged)
    else:
        assert tagged.split()[1] == want.encode(), (cmd, tagged)
    s.close()


def test_refusal_names_session_and_command_number(gw, pki):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    sid = re.search(rb'session ([0-9a-f]{16})', s.greeting).group(1)
    s.command('AUTHENTICATE EXTERNAL =')       # command 1
    s.command('NOOP')                          # command 2
    tagged, _ = s.command('SELECT Secret')     # command 3
    assert tagged == (b'a3 NO [NOPERM] read denied on "Secret" (txid ' + sid +
                      b'.3)\r\n'), tagged
    s.close()


def test_close_without_delete_is_sent_as_unselect(gw, pki, dovecot):
    s = external(gw, pki)
    s.command('SELECT ReadOnly')
    # \Deleted cannot be set (write denied) — flag it directly on Dovecot
    d = dovecot.imap('alice')
    d.select('ReadOnly')
    d.store('1', '+FLAGS', '\\Deleted')
    d.logout()
    tagged, _ = s.command('CLOSE')
    assert tagged.split()[1] == b'OK'
    d = dovecot.imap('alice')
    typ, data = d.select('ReadOnly')
    assert int(data[0]) >= 1, 'CLOSE expunged without the delete right'
    d.store('1', '-FLAGS', '\\Deleted')
    d.logout()


def test_list_filtering_nested_wildcards_and_utf8(gw, pki):
    s = external(gw, pki)
    tagged, lines = s.command('LIST "" "*"')
    names = [re.search(rb'"/" (.*)\r\n$', l).group(1).strip(b'"') for l in lines
             if l.startswith(b'* LIST')]
    assert b'Work' in names and b'Work/Sub' in names and b'INBOX' in names
    assert b'Entw&APw-rfe' in names          # list allowed, read denied
    assert b'Secret' not in names and b'Secret/Deep' not in names
    tagged, lines = s.command('LIST "" "%"')
    top = lines_text(lines)
    assert '"Work"' in top or ' Work\r' in top
    assert 'Secret' not in top and 'Work/Sub' not in top
    tagged, lines = s.command('LIST "Secret/" "*"')
    assert tagged.split()[1] == b'OK' and not any(b'* LIST' in l for l in lines)
    tagged, lines = s.command('LSUB "" "*"')
    text = lines_text(lines)
    assert 'Work' in text and 'Secret' not in text
    # LIST-EXTENDED with LIST-STATUS: STATUS answers filtered too
    tagged, lines = s.command('LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES))')
    text = lines_text(lines)
    assert tagged.split()[1] == b'OK', tagged
    assert '* STATUS' in text and 'Secret' not in text
    assert not re.search(r'\* STATUS "?Entw&APw-rfe', text)
    s.close()


@pytest.mark.parametrize('wire', [
    b'SELECT {6}\r\nSecret\r\n',
    b'SELECT {6+}\r\nSecret\r\n',
    b'SELECT "Secret"\r\n',
    b'SELECT "Secret/Deep"\r\n',
    b'SELECT {11+}\r\nSecret/Deep\r\n',
    b'SELECT &AFM-ecret\r\n',            # "S" encoded: not canonical, NO
])
def test_names_as_literals_and_quoted_are_judged_decoded(gw, pki, wire):
    s = external(gw, pki)
    s.send(b'x1 ' + wire.split(b'\r\n', 1)[0] + b'\r\n')
    rest = wire.split(b'\r\n', 1)[1]
    if b'{6}' in wire:
        cont = s.readline()
        assert cont.startswith(b'+ '), cont
    if rest:
        s.send(rest)
    tagged, _ = s.tagged('x1')
    if b'&AFM-' in wire:
        assert tagged.startswith(b'x1 NO invalid mailbox name'), tagged
    else:
        assert tagged.startswith(b'x1 NO [NOPERM]'), tagged
    s.close()


def test_inbox_in_any_case_is_inbox(gw, pki):
    s = external(gw, pki)
    for name in ('inbox', 'InBoX', '"iNBOX"'):
        tagged, lines = s.command(f'SELECT {name}')
        assert tagged.split()[1] == b'OK', (name, tagged)
    tagged, lines = s.command('STATUS inbox (MESSAGES)')
    assert b'"INBOX"' in lines_text(lines).encode() or b'INBOX' in b''.join(lines)
    s.close()


def test_utf8_folder_by_modified_utf7(gw, pki):
    s = external(gw, pki)
    tagged, _ = s.command('SELECT "Entw&APw-rfe"')
    assert b'NO [NOPERM] read denied on "Entw\xc3\xbcrfe"' in tagged, tagged
    s.close()


# ---------------------------------------------------------------- STARTTLS --

def test_before_starttls_only_the_basics(gw):
    s = Raw.open(gw.addr('imap'))
    assert s.greeting.startswith(b'* OK [CAPABILITY ')
    caps = s.greeting.split(b'[CAPABILITY ', 1)[1].split(b']', 1)[0].split()
    assert b'STARTTLS' in caps and b'LOGINDISABLED' in caps
    assert not any(c.startswith(b'AUTH=') for c in caps)
    for cmd in ('LOGIN carol carolpw', 'AUTHENTICATE PLAIN', 'SELECT INBOX',
                'ID NIL'):
        tagged, _ = s.command(cmd)
        assert b' NO [PRIVACYREQUIRED]' in tagged, (cmd, tagged)
    # a synchronising literal is not invited before TLS
    s.send(b'z1 LOGIN {5}\r\n')
    line = s.readline()
    assert line.startswith(b'z1 NO [PRIVACYREQUIRED]'), line
    for cmd in ('CAPABILITY', 'NOOP'):
        tagged, _ = s.command(cmd)
        assert tagged.split()[1] == b'OK'
    tagged, _ = s.command('LOGOUT')
    assert tagged.split()[1] == b'OK'
    s.close()


def test_starttls_injection_is_discarded(gw, pki):
    """CVE-2011-0411: commands pipelined after STARTTLS in the same
    plaintext packet must not run inside the TLS session."""
    s = Raw.open(gw.addr('imap'))
    s.send(b'a1 STARTTLS\r\na2 LOGIN carol carolpw\r\na3 SELECT INBOX\r\n')
    line = s.readline()
    assert line.startswith(b'a1 OK'), line
    tls = cg.client_context(pki).wrap_socket(s.sock, server_hostname='localhost')
    tls.settimeout(10)
    tls.sendall(b'b1 NOOP\r\n')
    data = b''
    while not data.endswith(b'\r\n') or b'b1 ' not in data:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    # the first answer inside TLS is to b1: a2/a3 were never executed
    assert data.startswith(b'b1 OK'), data
    tls.sendall(b'b2 SELECT INBOX\r\n')
    data = tls.recv(4096)
    assert b'b2 NO' in data or b'b2 BAD' in data, data   # not logged in
    # and after TLS the capabilities change: AUTH=PLAIN, no LOGINDISABLED
    tls.sendall(b'b3 CAPABILITY\r\n')
    data = b''
    while b'b3 OK' not in data:
        data += tls.recv(4096)
    assert b'AUTH=PLAIN' in data and b'LOGINDISABLED' not in data
    tls.close()


def test_plaintext_listener_says_bye(gateway_factory, dovecot):
    g = gateway_factory({
        'listener plain': {'protocol': 'imap', 'tls': 'none', 'auth': 'login',
                           'upstream': 'dovecot'},
        'upstream dovecot': dovecot.upstream(),
    })
    g.ctl_ok('acl', 'allow', '*', 'imap', '*', 'all')
    g.start()
    line = cg.imap_greeting(g.addr('plain'))
    assert line is not None and line.startswith(b'* BYE [PRIVACYREQUIRED]'), line


def test_plaintext_allowed_for_address_principal(gateway_factory, dovecot):
    g = gateway_factory({
        'listener plain': {'protocol': 'imap', 'tls': 'none', 'auth': 'address',
                           'allow_plaintext': 'yes', 'upstream': 'dovecot'},
        'upstream dovecot': dovecot.upstream(),
    })
    g.ctl_ok('principal', 'add', 'bob')
    g.ctl_ok('cred', 'add', 'bob', 'address', '127.0.0.1/32')
    g.ctl_ok('acl', 'allow', 'bob', 'imap', '*', 'all')
    g.start()
    m = imaplib.IMAP4(*g.addr('plain'))
    typ, _ = m.login('bob', 'ignored')   # its own mailbox, master login
    assert typ == 'OK'
    assert m.select('INBOX')[0] == 'OK'
    m.logout()


# ------------------------------------------------------- live policy change --

def test_policy_change_reaches_running_session(gw, pki):
    s = external(gw, pki, 'bob')
    tagged, _ = s.command('SELECT INBOX')
    assert tagged.split()[1] == b'OK'
    tagged, _ = s.command('FETCH 1:* (FLAGS)')
    assert tagged.split()[1] == b'OK'
    rule = gw.ctl_ok('acl', 'deny', 'bob', 'imap', 'INBOX', 'read').stdout.strip()
    try:
        def refused():
            t, _ = s.command('FETCH 1:* (FLAGS)')
            return b'NO [NOPERM] read denied on "INBOX"' in t
        cg.wait_until(refused, timeout=10, interval=0.2,
                      what='FETCH in the selected mailbox refused')
    finally:
        gw.ctl_ok('acl', 'remove', rule.split()[-1])
    cg.wait_until(lambda: s.command('FETCH 1:* (FLAGS)')[0].split()[1] == b'OK',
                  timeout=10, interval=0.2, what='FETCH allowed again')
    s.close()


def test_disabled_principal_is_cut_at_next_command(gw, pki):
    s = external(gw, pki, 'bob')
    gw.ctl_ok('principal', 'disable', 'bob')
    try:
        def cut():
            s.sock.sendall(b'n1 NOOP\r\n')
            line = s.readline()
            while line.startswith(b'* ') and b'BYE' not in line:
                line = s.readline()
            if line.startswith(b'* BYE'):
                return line
            return None
        line = cg.wait_until(cut, timeout=10, interval=0.2, what='BYE')
        assert b'principal disabled' in line
    finally:
        gw.ctl_ok('principal', 'enable', 'bob')
    s.close()


# ----------------------------------------------------- streaming and IDLE --

def test_append_large_message_streams_and_fetches_back(gw, pki):
    body = (b'From: big@example.com\r\nSubject: big\r\n\r\n' +
            b''.join(b'%07d abcdefghijklmnopqrstuvwxyz0123456789\r\n' % i
                     for i in range(60000)))
    m = imaplib.IMAP4_SSL(*gw.addr('imaps'), ssl_context=tls_ctx(pki))
    m.authenticate('EXTERNAL', lambda _: b'')
    typ, data = m.append('Work', None, None, body)
    assert typ == 'OK', data
    uid = re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1)
    m.select('Work')
    typ, data = m.uid('FETCH', uid, '(BODY.PEEK[])')
    assert typ == 'OK'
    assert data[0][1] == body
    typ, data = m.append('ReadOnly', None, None, b'Subject: no\r\n\r\nx\r\n')
    assert typ == 'NO' if typ != 'OK' else False
    m.logout()


def test_append_refused_with_literal_plus_keeps_session(gw, pki):
    s = external(gw, pki)
    msg = b'Subject: x\r\n\r\nnot stored\r\n'
    s.send(b'p1 APPEND ReadOnly {%d+}\r\n' % len(msg) + msg + b'\r\n')
    tagged, _ = s.tagged('p1')
    assert tagged.startswith(b'p1 NO [NOPERM] write denied on "ReadOnly"'), tagged
    # the literal was not taken for a command
    tagged, _ = s.command('NOOP')
    assert tagged.split()[1] == b'OK'
    # MULTIAPPEND to an allowed mailbox
    s.send(b'p2 APPEND Work {%d+}\r\n' % len(msg) + msg +
           b' (\\Seen) {%d+}\r\n' % len(msg) + msg + b'\r\n')
    tagged, _ = s.tagged('p2')
    assert tagged.startswith(b'p2 OK'), tagged
    s.close()


def _messages_with_subject(dovecot, mailbox, subject):
    """[(flags, internaldate)] of alice's messages with that subject,
    read from Dovecot directly."""
    d = dovecot.imap('alice')
    try:
        d.select(mailbox, readonly=True)
        typ, data = d.search(None, 'HEADER', 'Subject', subject)
        assert typ == 'OK', data
        out = []
        for num in data[0].split():
            typ, fd = d.fetch(num, '(FLAGS INTERNALDATE)')
            assert typ == 'OK', fd
            flags = set(re.search(rb'FLAGS \(([^)]*)\)', fd[0]).group(1).split())
            flags.discard(b'\\Recent')
            date = re.search(rb'INTERNALDATE "([^"]+)"', fd[0]).group(1)
            out.append((flags, date))
        return out
    finally:
        d.logout()


def test_append_with_flags_and_date_is_forwarded(gw, pki, dovecot):
    # flags and a date before the message literal: the command has more
    # tokens than the one mailbox name the gateway replaces
    subject = f'flags-date-{time.time_ns()}'
    msg = f'From: a@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n'.encode()
    m = imaplib.IMAP4_SSL(*gw.addr('imaps'), ssl_context=tls_ctx(pki))
    m.authenticate('EXTERNAL', lambda _: b'')
    # imaplib: a synchronising literal
    typ, data = m.append('Work', r'(\Seen \Flagged)', '"01-Jan-2024 00:00:00 +0000"',
                         msg)
    assert typ == 'OK', data
    m.logout()
    # LITERAL+ (RFC 7888), and MULTIAPPEND with flags and a date on the
    # second message too
    s = external(gw, pki)
    s.send(b'n1 APPEND Work (\\Answered \\Draft) "02-Feb-2024 10:20:30 +0000" '
           b'{%d+}\r\n' % len(msg) + msg +
           b' (\\Deleted) "03-Mar-2024 00:00:00 +0000" {%d+}\r\n' % len(msg) +
           msg + b'\r\n')
    tagged, _ = s.tagged('n1')
    assert tagged.startswith(b'n1 OK'), tagged
    tagged, _ = s.command('NOOP')
    assert tagged.split()[1] == b'OK'
    s.close()
    got = sorted(_messages_with_subject(dovecot, 'Work', subject),
                 key=lambda x: x[1])
    assert got == sorted([
        ({b'\\Seen', b'\\Flagged'}, b'01-Jan-2024 00:00:00 +0000'),
        ({b'\\Answered', b'\\Draft'}, b'02-Feb-2024 10:20:30 +0000'),
        ({b'\\Deleted'}, b'03-Mar-2024 00:00:00 +0000'),
    ], key=lambda x: x[1]), got
    assert gw.alive()


def test_append_answered_before_its_literal_keeps_session(gw, pki):
    # Dovecot refuses an APPEND to a missing mailbox as soon as it has the
    # command's head, then skips the literal it was promised: the rest must
    # still reach it and must not be awaited as a command of its own
    s = external(gw, pki)
    msg = b'Subject: nowhere\r\n\r\nx\r\n'
    s.send(b'm1 APPEND Missing/Box (\\Seen) {%d+}\r\n' % len(msg))
    tagged, _ = s.tagged('m1')
    assert tagged.startswith(b'm1 NO [TRYCREATE]'), tagged
    s.send(msg + b' {%d+}\r\n' % len(msg) + msg + b'\r\n')
    s.sock.settimeout(10)
    s.expect('NOOP')
    s.expect('SELECT Work')
    s.close()


def test_append_refused_after_all_of_it_arrived_then_logout(gw, pki):
    # the whole APPEND arrives before Dovecot's NO [TRYCREATE]: that NO is
    # the command's answer, and the LOGOUT after it is a LOGOUT (its BYE
    # comes first, and no "backend connection lost" follows)
    s = external(gw, pki)
    msg = b'Subject: nowhere\r\n\r\nx\r\n'
    s.send(b'm2 APPEND Missing/Box {%d+}\r\n' % len(msg) + msg + b'\r\n')
    tagged, _ = s.tagged('m2')
    assert tagged.startswith(b'm2 NO [TRYCREATE]'), tagged
    s.send(b'm3 LOGOUT\r\n')
    rest = cg.recv_all(s.sock, timeout=10)
    lines = (s.buf + rest).split(b'\r\n')
    assert lines[0].startswith(b'* BYE') and lines[1].startswith(b'm3 OK'), lines
    assert b'UNAVAILABLE' not in s.buf + rest, lines
    s.close()


def test_pipelined_commands_answer_in_order(gw, pki):
    s = external(gw, pki)
    s.send(b'q1 SELECT Work\r\nq2 FETCH 1 (FLAGS)\r\nq3 SELECT Secret\r\n'
           b'q4 FETCH 1 (FLAGS)\r\nq5 NOOP\r\n')
    tags = []
    while len(tags) < 5:
        line = s.readline()
        assert line, tags
        if line[:1] == b'q':
            tags.append(line.split()[0:2])
    assert [t[0] for t in tags] == [b'q1', b'q2', b'q3', b'q4', b'q5']
    assert tags[2][1] == b'NO'         # Secret refused
    assert tags[3][1] in (b'OK', b'BAD')  # Work still selected (refused SELECT never ran)
    s.close()


def test_pipelined_commands_are_each_judged_and_audited(gw, pki, dovecot):
    """Commands sent together go out together when they leave the selected
    mailbox as it is; each is judged on the mailbox the commands before it
    selected, and each gets its own record."""
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    sid = re.search(rb'session ([0-9a-f]{16})', s.greeting).group(1).decode()
    s.command('AUTHENTICATE EXTERNAL =')   # 1
    s.expect('SELECT ReadOnly')            # 2: alice may not write there
    cmds = [b'p3 FETCH 1 (FLAGS)', b'p4 STORE 1 +FLAGS (\\Flagged)', b'p5 NOOP',
            b'p6 SEARCH ALL', b'p7 SELECT Work', b'p8 STORE 1 +FLAGS (\\Flagged)',
            b'p9 FETCH 1 (FLAGS)']
    s.send(b''.join(c + b'\r\n' for c in cmds))
    answers, lines = {}, []
    while len(answers) < len(cmds):
        line = s.readline()
        assert line, answers
        lines.append(line)
        if line[:1] == b'p':
            answers[line.split()[0].decode()] = line
    assert answers['p4'].startswith(b'p4 NO [NOPERM]'), answers['p4']
    for tag in ('p3', 'p5', 'p6', 'p7', 'p8', 'p9'):
        assert answers[tag].split()[1] == b'OK', answers[tag]
    # the backend answers in its own order (it ran p6 before p5 here)
    _, fetched = s.expect('FETCH 1 (FLAGS)')  # 10, in Work
    assert b'\\Flagged' in lines_text(fetched).encode(), fetched
    s.command('LOGOUT')
    s.close()
    d = dovecot.imap('alice')
    d.select('ReadOnly', readonly=True)
    _, data = d.fetch('1', '(FLAGS)')
    d.logout()
    assert b'\\Flagged' not in data[0], data  # the refused STORE never ran
    recs = session_records(gw, sid, 11)
    for n, cmd in enumerate(cmds, start=3):
        [rec] = recs[f'{sid}.{n}']  # one record each
        tag, op = cmd.decode().split()[0:2]
        assert rec['operation'] == op, rec
        assert rec['bytes_in'] == len(cmd) + 2, rec  # the command's own bytes
        if tag == 'p4':
            assert (rec['decision'], rec['result'], rec['resource']) == \
                ('deny', 'NO', 'ReadOnly'), rec
        else:
            assert (rec['decision'], rec['result']) == ('allow', 'OK'), rec
    assert recs[f'{sid}.3'][0]['resource'] == 'ReadOnly'
    assert recs[f'{sid}.8'][0]['resource'] == 'Work'
    assert recs[f'{sid}.3'][0]['bytes_out'] > 0


def test_idle_passes_updates(gw, pki, dovecot):
    s = external(gw, pki)
    s.command('SELECT Trash')
    s.send(b'i1 IDLE\r\n')
    line = s.readline()
    assert line.startswith(b'+'), line
    d = dovecot.imap('alice')
    d.append('Trash', None, None, MSG)
    d.logout()
    line = s.readline()
    while b'EXISTS' not in line:
        line = s.readline()
        assert line
    s.send(b'DONE\r\n')
    tagged, _ = s.tagged('i1')
    assert tagged.startswith(b'i1 OK'), tagged
    s.close()


def test_bad_syntax_gets_bad_and_session_survives(gw, pki):
    s = external(gw, pki)
    for junk in (b'x1 SELECT "unterminated\r\n', b'x2 FETCH 1 (FLAGS\r\n',
                 b'x3 SELECT {99999999999}\r\n', b'x4 NOOP)\r\n',
                 b'x5 ' + b'A' * 20000 + b'\r\n'):
        s.send(junk)
        line = s.readline()
        while line.startswith(b'* '):
            line = s.readline()
        assert b' BAD ' in line, (junk[:30], line)
    tagged, _ = s.command('NOOP')
    assert tagged.split()[1] == b'OK'
    s.close()


def test_tilde_atom_is_not_a_literal8(gw, pki):
    # "~" begins a literal8 only before "{" (RFC 3516; imaptest "atoms")
    s = external(gw, pki)
    s.expect('LIST "" ~foo')
    s.expect('SELECT ~foo', b'NO')
    s.expect('NOOP')
    s.close()


def test_mailbox_name_that_is_not_modified_utf7_gets_no(gw, pki):
    # well-formed atoms that name no possible mailbox: NO (as Dovecot
    # answers), not BAD, which clients take for a broken command
    s = external(gw, pki)
    for cmd in ("SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}", 'SELECT &Jjo',
                'STATUS &Jjo (MESSAGES)'):
        tagged, _ = s.command(cmd)
        assert tagged.split()[1] == b'NO', (cmd, tagged)
        assert b'invalid mailbox name' in tagged, tagged
    s.expect('LIST "" "!#$&\'+,-.0123456789:;<=>?@^_`|[}%*"')
    s.close()


def test_long_id_before_login_is_accepted(gw, pki):
    # RFC 2971: up to 30 field/value pairs, values up to 1024 octets
    # (imaptest "id"); max_line defaults to Dovecot's 65536
    pairs = ' '.join(f'"k{i:02}{"x" * 26}" "{str(i % 10) * 1024}"'
                     for i in range(30))
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki, None))
    _, lines = s.expect(f'ID ({pairs})')
    assert lines == [b'* ID NIL\r\n'], lines
    s.expect('NOOP')
    s.close()


def test_login_name_with_crlf_cannot_forge_log_and_gets_no(gw, pki):
    # a literal user name with CR LF: the log line stays one line, and the
    # failed login is answered after the failure delay, not at idle timeout
    start = gw.log_size()
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki, None))
    name = b'x\r\nFORGED injected line'
    s.send(b'd LOGIN {%d}\r\n' % len(name))
    line = s.readline()
    assert line.startswith(b'+'), line
    t0 = time.monotonic()
    s.send(name)
    s.send(b' pw\r\n')
    s.sock.settimeout(20)
    tagged, _ = s.tagged('d')
    took = time.monotonic() - t0
    assert tagged.startswith(b'd NO [AUTHENTICATIONFAILED]'), tagged
    assert 1.5 <= took < 10, took
    s.expect('NOOP')
    s.close()
    gw.wait_log(r'login failed for "x\\x0d\\x0aFORGED injected line"', start=start)
    log = gw.log()[start:]
    assert not re.search(r'^FORGED', log, re.M), log


# ------------------------------------------------------------------- curl --

def test_curl_with_client_certificate_lists_allowed_folders(gw, pki):
    cert, key = pki.client('alice')
    host, port = gw.addr('imaps')
    r = subprocess.run(
        ['curl', '-sS', '--cacert', pki.ca, '--cert', cert, '--key', key,
         '--login-options', 'AUTH=EXTERNAL', '-u', 'alice:',
         f'imaps://localhost:{port}/'],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert 'Work' in r.stdout and 'INBOX' in r.stdout
    assert 'Secret' not in r.stdout
    r = subprocess.run(
        ['curl', '-sS', '--cacert', pki.ca, '--cert', cert, '--key', key,
         '--login-options', 'AUTH=EXTERNAL', '-u', 'alice:',
         f'imaps://localhost:{port}/Secret;UID=1'],
        capture_output=True, text=True, timeout=30)
    assert r.returncode != 0   # SELECT Secret refused


# ------------------------------------------------------- backend failures --

def test_backend_disconnect_mid_session_gives_bye_unavailable(
        gateway_factory, pki, cg_root):
    own = cg.Dovecot(cg_root / 'dovecot-bye').start()
    try:
        g = gateway_factory({
            'listener imaps': {
                'protocol': 'imap', 'tls': 'implicit',
                'certificate': pki.server_cert, 'private_key': pki.server_key,
                'client_ca': pki.client_ca, 'auth': 'cert',
                'upstream': 'dovecot'},
            'upstream dovecot': own.upstream(),
        })
        g.ctl_ok('principal', 'add', 'alice')
        g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
        g.ctl_ok('acl', 'allow', '*', 'imap', '*', 'all')
        g.start()
        s = external(g, pki)
        tagged, _ = s.command('SELECT INBOX')
        assert tagged.split()[1] == b'OK'
        own.stop()
        line = s.readline()
        while line and not line.startswith(b'* BYE'):
            line = s.readline()
        assert line.startswith(b'* BYE [UNAVAILABLE]'), line
        s.close()
    finally:
        own.stop()


# ------------------------------------------------------------------ audit --

def test_each_command_is_audited_with_txid_and_decision(gw, pki):
    s = Raw.open(gw.addr('imaps'), tls_ctx(pki))
    sid = re.search(rb'session ([0-9a-f]{16})', s.greeting).group(1).decode()
    s.command('AUTHENTICATE EXTERNAL =')   # 1
    s.command('SELECT Secret')             # 2
    s.command('SELECT inbox')              # 3
    s.command('SELECT')                    # 4: syntax, not the ACL
    s.command('LOGOUT')                    # 5
    s.close()
    recs = {txid: rs[-1] for txid, rs in session_records(gw, sid, 5).items()}
    auth = recs[f'{sid}.1']
    assert auth['operation'] == 'AUTHENTICATE' and auth['result'] == 'OK'
    assert auth['principal'] == 'alice' and auth['method'] == 'cert'
    deny = recs[f'{sid}.2']
    assert deny['operation'] == 'SELECT' and deny['resource'] == 'Secret'
    assert deny['decision'] == 'deny' and deny['result'] == 'NO'
    assert deny['rule_id'] is not None
    ok = recs[f'{sid}.3']
    assert ok['resource'] == 'INBOX' and ok['decision'] == 'allow'
    assert ok['result'] == 'OK' and ok['service'] == 'imap'
    assert ok['bytes_out'] > 0 and ok['tls_version'].startswith('TLSv1.')
    # allow and deny are the ACL's words: a command refused for its syntax
    # is an error, with the reason in its own field
    bad = recs[f'{sid}.4']
    assert bad['decision'] == 'error' and bad['result'] == 'BAD', bad
    assert bad['rule_id'] is None and bad['reason'], bad
