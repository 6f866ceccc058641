"""cpmgatectl acl / check (SPEC sections 4 and 9) end to end against a real
policy database, a SQLite file and a PostgreSQL database alike: rules are added with their ids, listed (text and --json),
removed; check explains every decision with the deciding rule and exits 0
for allow and 3 for deny; each change writes its policy_log row; and bad
input exits 1 with one line on stderr and changes nothing."""

import json

import pytest

import pg

from test_ctl_principal import CTL, TABLES, run

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')


def dump(db):
    """Every row of every policy table, to compare before and after."""
    return {t: pg.rows(db, f'SELECT * FROM {t} ORDER BY 1') for t in TABLES}


@pytest.fixture
def db(any_policy_db):
    """A policy with three principals and a group, on each backend."""
    db = any_policy_db
    run('init', db=db, check=0)
    for name in ('alice', 'bob'):
        run('principal', 'add', name, db=db, check=0)
    run('principal', 'add', 'carol', '--mailbox', 'carol.m', db=db, check=0)
    run('group', 'add', 'staff', db=db, check=0)
    run('group', 'member-add', 'staff', 'bob', db=db, check=0)
    return db


def add(db, *args):
    p = run('acl', *args, db=db, check=0)
    return int(p.stdout.strip())


def test_rules_are_added_listed_and_removed(db):
    a = add(db, 'allow', '@staff', 'http', '/content/*', 'read,list', '--comment', 'team')
    b = add(db, 'deny', '*', 'http', '/content/secret/*', 'all')
    c = add(db, 'allow', '*', 'imap', 'INBOX', 'all')
    assert a < b < c
    rows = json.loads(run('acl', 'list', '--json', db=db, check=0).stdout)
    assert [r['id'] for r in rows] == [a, b, c]
    assert rows[0] == {**rows[0], 'effect': 'allow', 'subject': '@staff', 'service': 'http',
                       'pattern': '/content/*', 'rights': 'list,read', 'comment': 'team'}
    assert rows[1]['effect'] == 'deny' and rows[1]['rights'] == 'all'
    only = json.loads(run('acl', 'list', '--service', 'imap', '--json', db=db, check=0).stdout)
    assert [r['id'] for r in only] == [c]
    only = json.loads(run('acl', 'list', '--subject', '@staff', '--json', db=db, check=0).stdout)
    assert [r['id'] for r in only] == [a]
    text = run('acl', 'list', db=db, check=0).stdout
    assert f'{b}\tdeny\t*\thttp\t/content/secret/*\tall' in text
    run('acl', 'remove', str(b), db=db, check=0)
    rows = json.loads(run('acl', 'list', '--json', db=db, check=0).stdout)
    assert [r['id'] for r in rows] == [a, c]
    ops = [r[0] for r in pg.rows(db, "SELECT operation FROM policy_log "
                                     "WHERE operation LIKE 'acl%' ORDER BY seq")]
    assert ops == ['acl add', 'acl add', 'acl add', 'acl remove']


def test_check_explains_the_deciding_rule(db):
    a = add(db, 'allow', '@staff', 'http', '/content/*', 'read,list')
    d = add(db, 'deny', '*', 'http', '/content/secret/*', 'all')
    h = add(db, 'allow', '*', 'http', '/home/${user}/*', 'all')
    m = add(db, 'allow', '*', 'imap', 'Shared/${user}/*', 'all')
    p = run('check', 'bob', 'http', 'read', '/content/a.txt', db=db, check=0)
    assert p.stdout.startswith(f'allow: rule {a}: allow @staff http /content/* list,read')
    p = run('check', 'bob', 'http', 'read', '/content/secret/a', db=db, check=3)
    assert p.stdout.startswith(f'deny: rule {d}: deny * http /content/secret/* all')
    p = run('check', 'alice', 'http', 'read', '/content/a.txt', db=db, check=3)
    assert p.stdout.strip() == 'deny: no rule matched'
    run('check', 'alice', 'http', 'write', '/home/alice/x', db=db, check=0)
    run('check', 'alice', 'http', 'write', '/home/bob/x', db=db, check=3)
    # imap: ${user} is the mailbox login, and the delimiter can be chosen
    run('check', 'carol', 'imap', 'read', 'Shared/carol.m/x', db=db, check=0)
    run('check', 'carol', 'imap', 'read', 'Shared/carol/x', db=db, check=3)
    run('check', 'carol', 'imap', 'read', 'Shared.carol.m.x', '--delimiter', '.', db=db, check=3)
    add(db, 'allow', 'alice', 'imap', 'INBOX', 'read')
    run('check', 'alice', 'imap', 'read', 'inbox', db=db, check=0)  # INBOX in any case
    # a disabled principal is refused whatever the rules say
    run('principal', 'disable', 'bob', db=db, check=0)
    p = run('check', 'bob', 'http', 'read', '/content/a.txt', db=db, check=3)
    assert 'disabled' in p.stdout
    assert h and m


BAD = [
    ('acl', 'allow', 'nobody', 'http', '/x', 'read'),            # unknown principal
    ('acl', 'allow', '@nogroup', 'http', '/x', 'read'),          # unknown group
    ('acl', 'allow', 'alice', 'smtp', '/x', 'read'),             # unknown service
    ('acl', 'allow', 'alice', 'http', '/x', 'fly'),              # unknown right
    ('acl', 'allow', 'alice', 'http', '/x', 'read,'),            # empty right
    ('acl', 'allow', 'alice', 'http', '/home/${user', 'read'),   # unbalanced ${
    ('acl', 'allow', 'alice', 'http', '/home/${name}', 'read'),  # unknown variable
    ('acl', 'allow', 'alice', 'http', '', 'read'),               # empty pattern
    ('acl', 'deny', 'alice', 'http', 'a\tb', 'read'),            # control character
    ('acl', 'remove', '999'),                                    # no such rule
    ('acl', 'remove', 'x1'),                                     # bad id
    ('check', 'nobody', 'http', 'read', '/x'),                   # unknown principal
    ('check', 'alice', 'ftp', 'read', '/x'),                     # unknown service
    ('check', 'alice', 'http', 'read,write', '/x'),              # one right only
    ('check', 'alice', 'http', 'read', '/x', '--delimiter', '::'),
]


@pytest.mark.parametrize('args', BAD, ids=[' '.join(a) for a in BAD])
def test_bad_input_is_refused_and_changes_nothing(db, args):
    add(db, 'allow', 'alice', 'http', '/keep/*', 'all')
    before = dump(db)
    p = run(*args, db=db)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert dump(db) == before


@pytest.mark.parametrize('args', [('acl',), ('acl', 'allow', 'alice'), ('acl', 'frob'),
                                  ('check', 'alice', 'http'), ('acl', 'list', 'extra')])
def test_bad_usage_exits_2(db, args):
    before = dump(db)
    assert run(*args, db=db).returncode == 2
    assert dump(db) == before
