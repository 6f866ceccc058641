"""cpmgatectl init / principal / cred / group (SPEC section 9) end to end
against a real policy database: the file is created mode 0600, every
command works and its --json parses, stored values are checked
independently (openssl for certificate fingerprints, hashlib for Digest
HA1s, Python's sqlite3 for what was written), and bad input exits 1 with
one line on stderr and leaves every table exactly as it was.
Self-contained: subprocess + tmp_path; binary $CPMGATE_BUILD/cpmgatectl."""

import hashlib
import json
import os
import pwd
import re
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get('CPMGATE_BUILD', REPO / 'build')).resolve()
CTL = BUILD / 'cpmgatectl'
SANITIZER = ('AddressSanitizer', 'LeakSanitizer', 'runtime error:')
TABLES = ('principal', 'credential', 'grp', 'grp_member', 'acl_rule', 'pubkey',
          'require_signed', 'peer', 'policy_log')

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')


def run(*args, db=None, check=None, umask=None):
    cmd = [str(CTL)] + (['-d', str(db)] if db else []) + [str(a) for a in args]
    env = dict(os.environ)
    env.pop('CPMGATE_DB', None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                       preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    for pat in SANITIZER:
        assert pat not in p.stderr, p.stderr
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout, p.stderr)
    if p.returncode == 1:
        # SPEC 9: an error is one line on stderr
        assert p.stderr.count('\n') == 1 and p.stderr.startswith('cpmgatectl: '), p.stderr
    if p.returncode == 0:
        assert p.stderr == '', p.stderr
    return p


def dump(db):
    """Every row of every policy table, to compare before and after."""
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    try:
        return {t: con.execute(f'SELECT * FROM {t} ORDER BY 1').fetchall() for t in TABLES}
    finally:
        con.close()


def query(db, sql, *params):
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def make_cert(d, name):
    key, crt = d / f'{name}.key', d / f'{name}.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', str(key), '-out', str(crt),
                    '-days', '2', '-subj', f'/CN={name}'], check=True, capture_output=True)
    out = subprocess.run(['openssl', 'x509', '-in', str(crt), '-noout', '-fingerprint',
                          '-sha256'], check=True, capture_output=True, text=True).stdout
    colon = out.strip().split('=', 1)[1]          # AB:CD:...
    return crt, colon


@pytest.fixture
def db(tmp_path):
    path = tmp_path / 'policy.db'
    run('init', db=path, check=0)
    run('principal', 'add', 'alice', db=path, check=0)
    run('principal', 'add', 'bob', '--kind', 'server', '--mailbox', 'bob.mail', db=path, check=0)
    return path


# ------------------------------------------------------------------ init --

def test_init_creates_the_database_mode_0600_whatever_the_umask(tmp_path):
    path = tmp_path / 'p.db'
    r = run('init', db=path, check=0, umask=0)
    assert str(path) in r.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    names = {n for (n,) in query(path, "SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert set(TABLES) <= names
    assert query(path, 'PRAGMA user_version')[0][0] >= 1
    assert query(path, 'PRAGMA journal_mode')[0][0] == 'wal'


def test_init_on_an_existing_database_keeps_its_contents(db):
    before = dump(db)
    run('init', db=db, check=0)
    assert dump(db) == before
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_commands_other_than_init_do_not_create_a_file(tmp_path):
    path = tmp_path / 'missing.db'
    run('principal', 'list', db=path, check=1)
    assert not path.exists()


def test_no_database_given_is_one_line(tmp_path):
    run('principal', 'list', check=1)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / 'junk.db'
    path.write_bytes(b'this is not sqlite\n' * 100)
    run('principal', 'list', db=path, check=1)
    assert path.read_bytes() == b'this is not sqlite\n' * 100


# ------------------------------------------------------------- principal --

def test_principal_list_and_show_json(db):
    rows = json.loads(run('principal', 'list', '--json', db=db, check=0).stdout)
    assert [(p['name'], p['kind'], p['mailbox'], p['enabled']) for p in rows] == [
        ('alice', 'user', 'alice', True), ('bob', 'server', 'bob.mail', True)]
    assert all(isinstance(p['id'], int) and p['created'].endswith('Z') for p in rows)
    text = run('principal', 'list', db=db, check=0).stdout.splitlines()
    assert [line.split('\t')[0] for line in text] == ['alice', 'bob']

    run('cred', 'add', 'bob', 'address', '10.9.0.0/16', db=db, check=0)
    run('group', 'add', 'ops', db=db, check=0)
    run('group', 'member-add', 'ops', 'bob', db=db, check=0)
    show = json.loads(run('principal', 'show', 'bob', '--json', db=db, check=0).stdout)
    assert show['name'] == 'bob' and show['kind'] == 'server' and show['mailbox'] == 'bob.mail'
    assert [(c['type'], c['value']) for c in show['credentials']] == [('address', '10.9.0.0/16')]
    assert show['groups'] == ['ops']
    assert 'bob' in run('principal', 'show', 'bob', db=db, check=0).stdout


def test_principal_disable_and_enable(db):
    run('principal', 'disable', 'alice', db=db, check=0)
    assert query(db, "SELECT enabled FROM principal WHERE name = 'alice'") == [(0,)]
    rows = json.loads(run('principal', 'list', '--json', db=db, check=0).stdout)
    assert {p['name']: p['enabled'] for p in rows} == {'alice': False, 'bob': True}
    run('principal', 'enable', 'alice', db=db, check=0)
    assert query(db, "SELECT enabled FROM principal WHERE name = 'alice'") == [(1,)]


def test_principal_remove_takes_its_credentials_and_memberships(db):
    run('cred', 'add', 'alice', 'psk', '--identity', 'alice-phone', db=db, check=0)
    run('group', 'add', 'staff', db=db, check=0)
    run('group', 'member-add', 'staff', 'alice', db=db, check=0)
    run('principal', 'remove', 'alice', db=db, check=0)
    assert query(db, "SELECT name FROM principal") == [('bob',)]
    assert query(db, 'SELECT count(*) FROM credential') == [(0,)]
    assert query(db, 'SELECT count(*) FROM grp_member') == [(0,)]
    # the name is free again, with nothing of the old principal attached
    run('principal', 'add', 'alice', db=db, check=0)
    assert json.loads(run('cred', 'list', 'alice', '--json', db=db, check=0).stdout) == []


def add_rule(db, subject):
    con = sqlite3.connect(str(db))
    with con:
        con.execute("INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                    "VALUES ('allow', ?, '*', '/x/*', 3, 'now')", (subject,))
    con.close()


def test_principal_remove_is_refused_while_rules_name_it_unless_force(db):
    add_rule(db, 'alice')
    add_rule(db, 'alice')
    add_rule(db, 'bob')
    before = dump(db)
    r = run('principal', 'remove', 'alice', db=db, check=1)
    assert '2' in r.stderr and 'force' in r.stderr
    assert dump(db) == before
    run('principal', 'remove', 'alice', '--force', db=db, check=0)
    assert query(db, 'SELECT subject FROM acl_rule') == [('bob',)]
    assert query(db, "SELECT count(*) FROM principal WHERE name = 'alice'") == [(0,)]


# ------------------------------------------------------------------- cred --

def test_cred_cert_by_file_and_by_fingerprint(db, tmp_path):
    crt, colon = make_cert(tmp_path, 'alice')
    run('cred', 'add', 'alice', 'cert', '--file', crt, db=db, check=0)
    want = colon.replace(':', '').lower()
    assert query(db, "SELECT value FROM credential WHERE type = 'cert'") == [(want,)]
    # the same certificate again, now by its openssl-style fingerprint
    before = dump(db)
    r = run('cred', 'add', 'bob', 'cert', '--fingerprint', colon, db=db, check=1)
    assert 'already' in r.stderr
    assert dump(db) == before
    crt2, colon2 = make_cert(tmp_path, 'bob')
    run('cred', 'add', 'bob', 'cert', '--fingerprint', colon2.replace(':', ''), db=db, check=0)
    creds = json.loads(run('cred', 'list', 'bob', '--json', db=db, check=0).stdout)
    assert [(c['type'], c['value']) for c in creds] == [('cert', colon2.replace(':', '').lower())]


def test_cred_cert_names(db):
    for v in ('email:alice@example.com', 'dns:alice.example.com', 'uri:https://a.example/id',
              'cn:Alice Example'):
        run('cred', 'add', 'alice', 'cert-name', v, db=db, check=0)
    creds = json.loads(run('cred', 'list', 'alice', '--json', db=db, check=0).stdout)
    assert [c['value'] for c in creds] == ['email:alice@example.com', 'dns:alice.example.com',
                                          'uri:https://a.example/id', 'cn:Alice Example']
    assert all(c['type'] == 'cert-name' for c in creds)


def test_cred_psk_generated_key_is_printed_once_and_never_listed(db):
    r = run('cred', 'add', 'alice', 'psk', '--identity', 'alice-phone', db=db, check=0)
    keys = re.findall(r'^([0-9a-f]{64})$', r.stdout, re.M)
    assert len(keys) == 1, r.stdout
    stored = query(db, "SELECT secret FROM credential WHERE value = 'alice-phone'")[0][0]
    assert stored.hex() == keys[0]
    # two generated keys differ (CSPRNG, not a constant)
    r2 = run('cred', 'add', 'bob', 'psk', '--identity', 'bob-phone', db=db, check=0)
    assert re.findall(r'^([0-9a-f]{64})$', r2.stdout, re.M)[0] != keys[0]
    for args in (('cred', 'list', 'alice'), ('cred', 'list', 'alice', '--json'),
                 ('principal', 'show', 'alice', '--json'), ('principal', 'list', '--json')):
        out = run(*args, db=db, check=0).stdout
        assert keys[0] not in out and keys[0][:16] not in out
    creds = json.loads(run('cred', 'list', 'alice', '--json', db=db, check=0).stdout)
    assert creds[0]['type'] == 'psk' and creds[0]['value'] == 'alice-phone'
    assert creds[0]['key_bytes'] == 32


def test_cred_psk_given_key_is_stored_and_not_printed(db):
    key = '00112233445566778899AABBCCDDEEFF'
    r = run('cred', 'add', 'alice', 'psk', '--identity', 'a', '--key', key, db=db, check=0)
    assert key.lower() not in r.stdout.lower()
    assert query(db, "SELECT secret FROM credential WHERE value = 'a'")[0][0] == bytes.fromhex(key)
    run('cred', 'add', 'alice', 'psk', '--identity', 'b', '--key', 'ab' * 64, db=db, check=0)


def test_cred_address_is_stored_canonical(db):
    for given in ('10.1.0.0/16', '2001:DB8:0::/32', '::ffff:10.2.0.0/112', '192.0.2.7'):
        run('cred', 'add', 'alice', 'address', given, db=db, check=0)
    assert [v for (v,) in query(db, "SELECT value FROM credential ORDER BY id")] == [
        '10.1.0.0/16', '2001:db8::/32', '10.2.0.0/16', '192.0.2.7/32']
    # the same network spelt differently is the same credential
    before = dump(db)
    run('cred', 'add', 'bob', 'address', '::ffff:10.1.0.0/112', db=db, check=1)
    assert dump(db) == before


def test_cred_digest_stores_both_ha1(db, tmp_path):
    pw = tmp_path / 'pw'
    pw.write_text('s3cret pass\nsecond line ignored\n')
    run('cred', 'add', 'alice', 'digest', '--realm', 'content@example.com', '--password-file',
        pw, db=db, check=0)
    a1 = b'alice:content@example.com:s3cret pass'
    assert query(db, "SELECT value, ha1_md5, ha1_sha256 FROM credential") == [
        ('content@example.com', hashlib.md5(a1).hexdigest(), hashlib.sha256(a1).hexdigest())]
    out = run('cred', 'list', 'alice', '--json', db=db, check=0).stdout
    assert hashlib.md5(a1).hexdigest() not in out and hashlib.sha256(a1).hexdigest() not in out
    # one per realm per principal
    before = dump(db)
    run('cred', 'add', 'alice', 'digest', '--realm', 'content@example.com', '--password-file',
        pw, db=db, check=1)
    assert dump(db) == before
    run('cred', 'add', 'bob', 'digest', '--realm', 'content@example.com', '--password-file',
        pw, db=db, check=0)


def test_cred_list_text_and_remove(db):
    run('cred', 'add', 'alice', 'address', '10.0.0.0/8', db=db, check=0)
    r = run('cred', 'add', 'alice', 'cert-name', 'cn:alice', db=db, check=0)
    cid = int(r.stdout.split()[0])
    lines = run('cred', 'list', 'alice', db=db, check=0).stdout.splitlines()
    assert len(lines) == 2 and lines[1].split('\t')[:3] == [str(cid), 'cert-name', 'cn:alice']
    before = dump(db)
    run('cred', 'remove', 'bob', cid, db=db, check=1)       # not bob's
    run('cred', 'remove', 'alice', 999, db=db, check=1)
    run('cred', 'remove', 'alice', 'x1', db=db, check=1)
    assert dump(db) == before
    run('cred', 'remove', 'alice', cid, db=db, check=0)
    creds = json.loads(run('cred', 'list', 'alice', '--json', db=db, check=0).stdout)
    assert [c['value'] for c in creds] == ['10.0.0.0/8']


# ------------------------------------------------------------------ group --

def test_groups(db):
    run('group', 'add', 'staff', db=db, check=0)
    run('group', 'add', 'empty', db=db, check=0)
    run('group', 'member-add', 'staff', 'alice', db=db, check=0)
    run('group', 'member-add', 'staff', 'bob', db=db, check=0)
    groups = json.loads(run('group', 'list', '--json', db=db, check=0).stdout)
    assert groups == [{'name': 'empty', 'members': []},
                      {'name': 'staff', 'members': ['alice', 'bob']}]
    assert 'staff\talice,bob' in run('group', 'list', db=db, check=0).stdout
    run('group', 'member-remove', 'staff', 'alice', db=db, check=0)
    groups = json.loads(run('group', 'list', '--json', db=db, check=0).stdout)
    assert groups[1] == {'name': 'staff', 'members': ['bob']}


def test_empty_lists_are_empty_json(tmp_path):
    path = tmp_path / 'e.db'
    run('init', db=path, check=0)
    assert json.loads(run('principal', 'list', '--json', db=path, check=0).stdout) == []
    assert json.loads(run('group', 'list', '--json', db=path, check=0).stdout) == []


# ------------------------------------------------------------- policy_log --

def test_every_change_writes_one_policy_log_row(db, tmp_path):
    n0 = len(query(db, 'SELECT seq FROM policy_log'))
    run('principal', 'disable', 'bob', db=db, check=0)
    run('cred', 'add', 'bob', 'psk', '--identity', 'bob-1', db=db, check=0)
    run('group', 'add', 'g', db=db, check=0)
    run('principal', 'add', 'bob', db=db, check=1)          # refused: no row
    rows = query(db, 'SELECT actor, operation, detail FROM policy_log ORDER BY seq')[n0:]
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert [(a, o) for a, o, _ in rows] == [(me, 'principal disable'), (me, 'cred add'),
                                            (me, 'group add')]
    assert all(d for _, _, d in rows)
    # the log names the credential, never its key
    key = query(db, "SELECT secret FROM credential WHERE value = 'bob-1'")[0][0].hex()
    assert key not in rows[1][2]


# -------------------------------------------------------------- bad input --

BAD = [
    ('principal', 'add', 'alice'),                                   # duplicate principal
    ('principal', 'add', '@staff'),
    ('principal', 'add', '*'),
    ('principal', 'add', 'a b'),
    ('principal', 'add', 'victim*gw'),                               # Dovecot master separator
    ('principal', 'add', 'carol', '--mailbox', 'x*gw'),
    ('principal', 'add', 'tab\there'),
    ('principal', 'disable', 'nobody'),
    ('principal', 'enable', 'nobody'),
    ('principal', 'remove', 'nobody'),
    ('principal', 'show', 'nobody'),
    ('cred', 'add', 'nobody', 'address', '10.0.0.0/8'),              # unknown principal
    ('cred', 'add', 'alice', 'address', '10.0.0.0/33'),              # malformed CIDR
    ('cred', 'add', 'alice', 'address', '1.2.3'),
    ('cred', 'add', 'alice', 'address', '10.0.0.1/8'),               # host bits
    ('cred', 'add', 'alice', 'address', '010.0.0.0/8'),
    ('cred', 'add', 'alice', 'address', 'fe80::1/129'),
    ('cred', 'add', 'alice', 'psk', '--identity', 'x', '--key', 'zz' * 16),      # bad hex
    ('cred', 'add', 'alice', 'psk', '--identity', 'x', '--key', 'abc'),          # odd hex
    ('cred', 'add', 'alice', 'psk', '--identity', 'x', '--key', 'ab' * 15),      # 15 bytes
    ('cred', 'add', 'alice', 'psk', '--identity', 'x', '--key', 'ab' * 65),      # 65 bytes
    ('cred', 'add', 'bob', 'psk', '--identity', 'taken', '--key', 'cd' * 16),    # duplicate
    ('cred', 'add', 'alice', 'psk', '--identity', 'has space', '--key', 'cd' * 16),
    ('cred', 'add', 'alice', 'cert', '--fingerprint', 'ab' * 31),
    ('cred', 'add', 'alice', 'cert', '--fingerprint', 'xy' * 32),
    ('cred', 'add', 'alice', 'cert', '--file', '@NOTCERT@'),         # not a certificate
    ('cred', 'add', 'alice', 'cert', '--file', '@MISSING@'),
    ('cred', 'add', 'alice', 'cert-name', 'alice@example.com'),      # no kind
    ('cred', 'add', 'alice', 'cert-name', 'email:'),
    ('cred', 'add', 'alice', 'digest', '--realm', 'r', '--password-file', '@MISSING@'),
    ('cred', 'add', 'alice', 'digest', '--realm', 'r', '--password-file', '@EMPTY@'),
    ('cred', 'add', 'alice', 'digest', '--realm', 'r"x', '--password-file', '@PW@'),
    ('cred', 'list', 'nobody'),
    ('cred', 'remove', 'nobody', '1'),
    ('group', 'add', 'staff'),                                       # duplicate group
    ('group', 'add', '@g'),
    ('group', 'member-add', 'nogroup', 'alice'),
    ('group', 'member-add', 'staff', 'nobody'),
    ('group', 'member-add', 'staff', 'alice'),                       # already a member
    ('group', 'member-remove', 'staff', 'bob'),                      # not a member
]


@pytest.mark.parametrize('args', BAD, ids=[' '.join(a) for a in BAD])
def test_bad_input_exits_1_with_one_line_and_changes_nothing(db, tmp_path, args):
    run('cred', 'add', 'bob', 'psk', '--identity', 'taken', db=db, check=0)
    run('group', 'add', 'staff', db=db, check=0)
    run('group', 'member-add', 'staff', 'alice', db=db, check=0)
    notcert = tmp_path / 'notcert.pem'
    notcert.write_text('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n')
    empty = tmp_path / 'empty'
    empty.write_text('\n')
    pw = tmp_path / 'pw'
    pw.write_text('pw\n')
    subst = {'@NOTCERT@': notcert, '@MISSING@': tmp_path / 'missing', '@EMPTY@': empty,
             '@PW@': pw}
    argv = [subst.get(a, a) for a in args]
    before = dump(db)
    r = run(*argv, db=db, check=1)
    assert r.stdout == ''
    assert dump(db) == before


USAGE = [
    ('principal',),
    ('principal', 'frobnicate', 'x'),
    ('principal', 'add'),
    ('principal', 'add', 'x', '--kind', 'robot'),
    ('principal', 'add', 'x', '--colour', 'red'),
    ('principal', 'list', 'extra'),
    ('principal', 'disable', 'alice', '--force'),
    ('cred', 'add', 'alice'),
    ('cred', 'add', 'alice', 'password', 'x'),
    ('cred', 'add', 'alice', 'cert'),
    ('cred', 'add', 'alice', 'cert', '--file', 'a', '--fingerprint', 'b'),
    ('cred', 'add', 'alice', 'psk'),
    ('cred', 'add', 'alice', 'address'),
    ('cred', 'add', 'alice', 'digest', '--realm', 'r'),
    ('cred', 'list'),
    ('group',),
    ('group', 'add'),
    ('group', 'member-add', 'staff'),
    ('init', 'extra'),
]


@pytest.mark.parametrize('args', USAGE, ids=[' '.join(a) for a in USAGE])
def test_bad_usage_exits_2_and_changes_nothing(db, args):
    before = dump(db)
    r = run(*args, db=db, check=2)
    assert 'usage' in r.stderr or 'unknown option' in r.stderr
    assert dump(db) == before
