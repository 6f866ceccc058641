"""cpmgatectl on both policy backends (issue: PostgreSQL as the shared
policy store): the same script of edits, lists and checks run against a
SQLite file and a PostgreSQL database gives the same output, exit codes
and refusals; `copy` moves a policy SQLite -> PostgreSQL -> SQLite with
ids kept and `check` answering the same everywhere; the password comes
from a file, never shows in a message; backup refuses a PostgreSQL URL
and says what to use instead. Uses the throw-away cluster of pg.py."""

import hashlib
import json
import os
import re
import subprocess

import pytest

import pg
from test_ctl_principal import CTL, run

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')

STAMP = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z')


def keypair(d, name):
    key, pub = d / f'{name}.pem', d / f'{name}.pub.pem'
    subprocess.run(['openssl', 'genpkey', '-algorithm', 'ed25519', '-out', str(key)],
                   check=True, capture_output=True)
    subprocess.run(['openssl', 'pkey', '-in', str(key), '-pubout', '-out', str(pub)],
                   check=True, capture_output=True)
    return pub


def script(tmp):
    """(arguments, exit code) of a session that touches every table."""
    pub = keypair(tmp, 'k1')
    pwf = tmp / 'digest.pw'
    pwf.write_text('digest secret\n')
    fp = hashlib.sha256(b'x').hexdigest()
    return [
        (['init'], 0),
        (['principal', 'add', 'alice'], 0),
        (['principal', 'add', 'bob', '--mailbox', 'bob.m'], 0),
        (['principal', 'add', 'srv', '--kind', 'server'], 0),
        (['principal', 'list', '--json'], 0),
        (['principal', 'show', 'bob', '--json'], 0),
        (['principal', 'disable', 'bob'], 0),
        (['principal', 'enable', 'bob'], 0),
        (['principal', 'disable', 'nobody'], 1),
        (['cred', 'add', 'alice', 'cert', '--fingerprint', fp], 0),
        (['cred', 'add', 'alice', 'cert-name', 'dns:Alice.Example'], 0),
        (['cred', 'add', 'bob', 'psk', '--identity', 'bob-psk', '--key', '00' * 16], 0),
        (['cred', 'add', 'srv', 'address', '10.1.0.0/16'], 0),
        (['cred', 'add', 'alice', 'digest', '--realm', 'dav', '--password-file', str(pwf)], 0),
        (['cred', 'list', 'alice', '--json'], 0),
        (['cred', 'list', 'bob'], 0),
        (['cred', 'remove', 'alice', '2'], 0),
        (['cred', 'remove', 'alice', '99'], 1),
        (['group', 'add', 'staff'], 0),
        (['group', 'add', 'empty'], 0),
        (['group', 'member-add', 'staff', 'bob'], 0),
        (['group', 'member-add', 'staff', 'bob'], 1),
        (['group', 'member-add', 'staff', 'alice'], 0),
        (['group', 'member-remove', 'staff', 'alice'], 0),
        (['group', 'list', '--json'], 0),
        (['acl', 'allow', '@staff', 'http', '/content/*', 'read,list', '--comment', 'team'], 0),
        (['acl', 'deny', '*', 'http', '/content/secret/*', 'all'], 0),
        (['acl', 'allow', '*', 'imap', 'INBOX', 'all'], 0),
        (['acl', 'allow', 'alice', 'http', '/home/${user}/*', 'all'], 0),
        (['acl', 'allow', 'nobody', 'http', '/x', 'read'], 1),
        (['acl', 'list', '--json'], 0),
        (['acl', 'list', '--subject', '@staff'], 0),
        (['acl', 'remove', '3'], 0),
        (['acl', 'remove', '3'], 1),
        (['check', 'bob', 'http', 'read', '/content/a.txt'], 0),
        (['check', 'bob', 'http', 'read', '/content/secret/a.txt'], 3),
        (['check', 'alice', 'http', 'write', '/home/alice/x'], 0),
        (['check', 'alice', 'imap', 'read', 'INBOX'], 3),
        (['key', 'add', 'srv', '--id', 'k1', '--file', str(pub)], 0),
        (['key', 'list', '--json'], 0),
        (['require-signed', 'add', '/signed/*'], 0),
        (['require-signed', 'list'], 0),
        (['peer', 'add', 'b.example', '--principal', 'srv', '--auth', 'required'], 0),
        (['peer', 'add', 'c.example', '--principal', 'nobody', '--auth', 'required'], 1),
        (['peer', 'list', '--json'], 0),
        # refused inserts: PostgreSQL may use up an id on them (ids are
        # names, not counts), so nothing below prints a new one
        (['principal', 'add', 'alice'], 1),
        (['principal', 'add', 'eve', '--mailbox', 'alice'], 1),
        (['cred', 'add', 'bob', 'cert', '--fingerprint', fp], 1),
        (['key', 'add', 'srv', '--id', 'k1', '--file', str(pub)], 1),
        (['principal', 'remove', 'alice'], 1),
        (['principal', 'remove', 'alice', '--force'], 0),
        (['key', 'remove', 'k1'], 0),
        (['require-signed', 'remove', '/signed/*'], 0),
        (['peer', 'remove', 'b.example'], 0),
        (['principal', 'list'], 0),
        (['acl', 'list'], 0),
    ]


def outcome(p, db):
    """What a run printed, with times and the database's name made equal."""
    text = (p.stdout + p.stderr).replace(str(db), 'DB')
    return p.returncode, STAMP.sub('TIME', text)


def test_every_command_answers_the_same_on_both_backends(tmp_path, pg_db):
    lite = tmp_path / 'policy.db'
    for args, code in script(tmp_path):
        a = outcome(run(*args, db=lite, check=code), lite)
        b = outcome(run(*args, db=pg_db, check=code), pg_db)
        assert a == b, (args, a, b)


def policy_log(db_url_or_file, cluster=None):
    if cluster:
        out = cluster.psql('SELECT operation FROM policy_log ORDER BY seq', db=db_url_or_file)
        return out.split('\n')[:-1]
    import sqlite3
    con = sqlite3.connect(db_url_or_file)
    return [r[0] for r in con.execute('SELECT operation FROM policy_log ORDER BY seq')]


CHECKS = [('bob', 'http', 'read', '/content/a.txt'),
          ('bob', 'http', 'write', '/content/a.txt'),
          ('bob', 'http', 'read', '/content/secret/a.txt'),
          ('alice', 'http', 'write', '/home/alice/x'),
          ('alice', 'http', 'write', '/home/bob/x'),
          ('alice', 'imap', 'read', 'INBOX'),
          ('srv', 'imap', 'read', 'INBOX')]


def answers(db):
    out = []
    for c in CHECKS:
        p = run('check', *c, db=db)
        out.append((p.returncode, p.stdout))
    for what in (['principal', 'list', '--json'], ['acl', 'list', '--json'],
                 ['group', 'list', '--json'], ['cred', 'list', 'bob', '--json'],
                 ['key', 'list', '--json'], ['peer', 'list', '--json']):
        out.append(run(*what, db=db, check=0).stdout)
    return out


def test_copy_both_ways_keeps_the_policy(tmp_path, pg_cluster, pg_db):
    first = tmp_path / 'first.db'
    for args, code in script(tmp_path)[:-10]:
        run(*args, db=first, check=code)
    want = answers(first)
    assert want[0][0] == 0 and want[2][0] == 3
    p = run('copy', first, pg_db, check=0)
    assert 'copied 3 principals' in p.stdout
    assert answers(pg_db) == want
    # ids are kept, and the next one follows them
    rules = json.loads(run('acl', 'list', '--json', db=pg_db, check=0).stdout)
    new = int(run('acl', 'allow', '*', 'imap', 'Sent', 'read', db=pg_db, check=0).stdout)
    assert new == max(r['id'] for r in rules) + 1
    run('acl', 'remove', new, db=pg_db, check=0)
    assert policy_log(pg_db, pg_cluster)[0] == 'policy copy'
    # a target that holds a policy is refused, unless --replace
    p = run('copy', first, pg_db, check=1)
    assert '--replace' in p.stderr
    run('copy', first, pg_db, '--replace', check=0)
    assert answers(pg_db) == want
    back = tmp_path / 'back.db'
    run('copy', pg_db, back, check=0)
    assert answers(back) == want
    assert policy_log(str(back)) == ['policy copy']


def test_backup_refuses_postgresql_and_names_no_password(tmp_path, pg_cluster):
    url = pg_cluster.tcp_url(password='TopSecret77')
    p = run('backup', tmp_path / 'b', db=url, check=1)
    assert 'pg_dump' in p.stderr and 'copy' in p.stderr
    assert 'TopSecret77' not in p.stderr and 'xxx' in p.stderr


def test_password_from_a_file_never_in_a_message(tmp_path, pg_cluster):
    pg_cluster.psql(f'CREATE DATABASE cg_pwdb OWNER {pg.PASSWORD_ROLE}', db='postgres')
    url = pg_cluster.tcp_url(db='cg_pwdb')
    good, bad = tmp_path / 'good', tmp_path / 'bad'
    good.write_text(pg.PASSWORD + '\n')
    bad.write_text('wrong-Password-5\n')
    env = dict(os.environ)
    env.pop('CPMGATE_DB', None)

    def ctl(pwfile, *args):
        e = dict(env, CPMGATE_DB_PASSWORD_FILE=str(pwfile))
        return subprocess.run([str(CTL), '-d', url] + list(args), capture_output=True,
                              text=True, timeout=60, env=e)

    p = ctl(bad, 'init')
    assert p.returncode == 1 and 'password authentication failed' in p.stderr
    assert 'wrong-Password-5' not in p.stderr
    p = ctl(good, 'init')
    assert p.returncode == 0, p.stderr
    assert ctl(good, 'principal', 'add', 'alice').returncode == 0
    # the password in the URL itself works too, and is never printed
    secret_url = pg_cluster.tcp_url(db='cg_pwdb', password=pg.PASSWORD)
    p = run('principal', 'show', 'nobody', db=secret_url, check=1)
    p = run('init', db=secret_url, check=0)
    assert pg.PASSWORD not in p.stdout and 'xxx' in p.stdout
