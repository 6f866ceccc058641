"""test_session_flood.py — a flood of mutated IMAP and HTTP sessions
(tests/tools/session_flood.py: recorded client sides of real sessions,
mutated, split into small writes, cut short) against a sanitized cpmgate in
front of the real Dovecot and nginx. Afterwards the gateway still serves a
normal IMAP login + LIST and an HTTP GET, exits 0 on SIGTERM, and its log
holds no sanitizer report.

FLOOD_SESSIONS (default 1000) sets the number of sessions, FLOOD_SEED (default
1) the seed, FLOOD_FIRST (default 0) the index of the first session;
FLOOD_FINDINGS a directory where the sessions in flight are saved if the
gateway dies (default: the gateway's directory). A failure names the seed
and the session indexes: FLOOD_SEED=S FLOOD_FIRST=I FLOOD_SESSIONS=1 replays
one, as does `session_flood.py --seed S --only I` against a running gateway."""

import os
import signal
import sys
from pathlib import Path

import cg

sys.path.insert(0, str(cg.REPO / 'tests' / 'tools'))
import session_flood  # noqa: E402

SESSIONS = int(os.environ.get('FLOOD_SESSIONS', '1000'))
SEED = int(os.environ.get('FLOOD_SEED', '1'))
FIRST = int(os.environ.get('FLOOD_FIRST', '0'))
REALM = 'flood@example.com'
BASE = '/flood'
CHECK = '/floodcheck'

# What a log must never hold, besides the sanitizers' own words.
CRASH_PATTERNS = cg.SANITIZER_PATTERNS + ('Assertion', 'Segmentation fault', 'stack smashing',
                                          'double free', 'malloc(): ', 'free(): ')


def log_problem(text):
    for pat in CRASH_PATTERNS:
        i = text.find(pat)
        if i >= 0:
            return text[max(0, i - 300):i + 4000]
    return None


def test_flood_of_mutated_sessions_leaves_gateway_alive_and_clean(gateway_factory, pki,
                                                                   dovecot, nginx, capsys):
    # the flood's own budget: about 0.25 s a session on a loaded machine,
    # replacing the suite's per-test alarm for this test only
    signal.alarm(int(120 + SESSIONS * 0.25))
    # the flood writes under BASE; the check after it reads CHECK, which
    # alice may only read
    for path, body in ((f'{BASE}/a.txt', b'flood a\n'), (f'{BASE}/sub/b.txt', b'flood b\n'),
                       (f'{CHECK}/a.txt', b'flood check\n')):
        st, _, _ = nginx.request('PUT', path, body=body)
        assert st in (201, 204), st
    lim = {'login_failures_per_minute': '100000', 'client_timeout': '3',
           'max_conn_per_addr': '1000'}
    g = gateway_factory({
        'listener imaps': cg.tls_listener(pki, 'imap', 'dovecot', auth='cert, login', **lim),
        'listener imapl': {'protocol': 'imap', 'tls': 'implicit',
                           'certificate': pki.server_cert, 'private_key': pki.server_key,
                           'auth': 'login', 'upstream': 'dovecot', **lim},
        'listener content': cg.tls_listener(pki, 'http', 'nginx', auth='cert, digest',
                                            digest_realm=REALM, max_body='1048576', **lim),
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
    })
    for name in ('alice', 'bob'):
        g.ctl_ok('principal', 'add', name)
    g.ctl_ok('cred', 'add', 'alice', 'cert', '--file', pki.client('alice')[0])
    pw = Path(g.dir) / 'bob.pw'
    pw.write_text('bob-secret\n')
    g.ctl_ok('cred', 'add', 'bob', 'digest', '--realm', REALM, '--password-file', str(pw))
    g.ctl_ok('acl', 'allow', '*', 'imap', '*', 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'imap', 'Secret', 'all')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{BASE}/*', 'all')
    g.ctl_ok('acl', 'allow', 'alice', 'http', BASE, 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'http', f'{BASE}/secret*', 'all')
    g.ctl_ok('acl', 'allow', 'bob', 'http', f'{BASE}/*', 'read,list')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{CHECK}/*', 'read')
    g.start()

    cert, key = pki.client('alice')
    findings = os.environ.get('FLOOD_FINDINGS') or str(Path(g.dir) / 'findings')
    argv = ['--ca', pki.ca, '--cert', cert, '--key', key,
            '--imap-user', 'alice', '--imap-password', dovecot.users['alice'],
            '--digest-user', 'bob', '--digest-password', 'bob-secret',
            '--digest-realm', REALM, '--http-base', BASE,
            '--sessions', str(SESSIONS), '--first', str(FIRST), '--seed', str(SEED),
            '--concurrency', '4',
            '--pid', str(g.pid), '--findings', findings, '--progress', '1000']
    for name in ('imaps', 'imapl'):
        argv += ['--imap', g.listen(name)]
    argv += ['--http', g.listen('content')]
    args = session_flood.parser().parse_args(argv)
    result = session_flood.flood(args)
    with capsys.disabled():
        print(f'\nflood: seed {SEED}, {result["sessions"]} sessions in {result["seconds"]} s')
        for k, v in result['outcomes'].items():
            print(f'  {k:40} {v}')
        for k, v in result['answers'].items():
            print(f'  {k:40} {v}')

    assert not result['died'], (
        f'cpmgate died during the flood (seed {SEED}, after session {result["died_after"]}; '
        f'in flight: {result.get("suspects")}; saved under {findings}):\n'
        f'{log_problem(g.log()) or cg.tail(g.log_path)}')
    assert result['sessions'] == SESSIONS
    # the flood reached both protocols and both were answered
    if SESSIONS >= 100:
        assert any(k.startswith('imap-') for k in result['answers']), result['answers']
        assert any(k.startswith('http-') for k in result['answers']), result['answers']

    # still alive: a normal IMAP login + LIST and an HTTP GET
    m = cg.imap_tls(g.addr('imaps'), cg.client_context(pki, 'alice'))
    try:
        typ, _ = m.login('alice', dovecot.users['alice'])
        assert typ == 'OK'
        typ, boxes = m.list()
        assert typ == 'OK' and any(b'INBOX' in b for b in boxes), boxes
    finally:
        m.logout()
    st, _, body = cg.https(g.addr('content'), cg.client_context(pki, 'alice'), 'GET',
                           f'{CHECK}/a.txt')
    assert (st, body) == (200, b'flood check\n')

    # no sanitizer report, no crash words, and a clean exit (leaks are
    # reported at exit)
    assert log_problem(g.log()) is None, log_problem(g.log())
    rc = g.stop()
    assert rc == 0, f'cpmgate exited {rc} on SIGTERM:\n{cg.tail(g.log_path)}'
    assert log_problem(g.log()) is None, log_problem(g.log())
