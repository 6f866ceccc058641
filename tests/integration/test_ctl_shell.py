"""cpmgatectl at the shell: --help on every command of the table (read
from the program's own usage, so a command added to the table is held to
it at once), and exit codes, held against cpmgatectl(8) and ctl.h's enum."""

import re

import pytest

from test_ctl_principal import CTL, REPO, run
from test_ctl_usage import MAN, families, forms

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')


def is_literal(w):
    return re.fullmatch(r'[a-z][a-z0-9|-]*', w) is not None


def commands():
    """(family, subcommand or None, [forms]) for every row of the table."""
    out = []
    for fam in families():
        rows = {}
        for f in forms(fam):
            w = f.split()
            sub = w[1] if len(w) > 1 and is_literal(w[1]) else None
            rows.setdefault(sub, []).append(f)
        out += [(fam, sub, fs) for sub, fs in rows.items()]
    return out


# ---- --help -----------------------------------------------------------------------

def test_help_of_every_command_prints_its_forms_and_options_and_exits_0():
    for fam, sub, fs in commands():
        for word in (sub.split('|') if sub else [None]):
            for flag in ('--help', '-h'):
                args = [fam] + ([word] if word else []) + [flag]
                p = run(*args, check=0)
                assert p.stderr == '', (args, p.stderr)
                usage, opts = p.stdout.split('\noptions:\n', 1)
                assert usage.splitlines() == \
                    [('usage: ' if i == 0 else '       ') + 'cpmgatectl ' + f
                     for i, f in enumerate(fs)], args
                listed = [ln.split()[0] for ln in opts.splitlines()]
                assert listed[-1] == '-h,' and opts.splitlines()[-1] == '  -h, --help'
                named = {w for f in fs for w in re.findall(r'--[a-z][a-z-]*', f)}
                assert named <= set(listed), (args, named, listed)


def test_help_of_a_family_prints_all_its_forms_and_exits_0():
    for fam in families():
        p = run(fam, '--help', check=0)
        assert p.stderr == ''
        if any(f.split()[1:2] and is_literal(f.split()[1]) for f in forms(fam)):
            assert p.stdout.splitlines() == \
                [('usage: ' if i == 0 else '       ') + 'cpmgatectl ' + f
                 for i, f in enumerate(forms(fam))]


def test_help_anywhere_on_the_line_prints_help_and_does_nothing(tmp_path):
    db = tmp_path / 'p.db'
    run('init', db=db, check=0)
    p = run('principal', 'add', 'alice', '--kind', 'user', '--help', db=db, check=0)
    assert p.stdout.startswith('usage: cpmgatectl principal add NAME')
    assert run('principal', 'list', db=db, check=0).stdout == ''
    # as an option's value, -h is that value, not a request for help
    p = run('principal', 'add', 'bob', '--mailbox', '-h', db=db, check=0)
    assert 'bob' in run('principal', 'list', db=db, check=0).stdout


def test_misuse_still_prints_usage_on_stderr_and_exits_2():
    for args in (('principal', 'add'), ('principal', 'frob', '--help'), ('acl',),
                 ('check', 'a'), ('principal', 'list', '--frob')):
        p = run(*args, check=2)
        assert p.stdout == '' and 'usage: cpmgatectl' in p.stderr, args


# ---- exit codes ---------------------------------------------------------------------

def man_exit_codes():
    text = MAN.read_text().split('# EXIT STATUS', 1)[1].split('\n# ', 1)[0]
    return sorted(int(c) for c in re.findall(r'^\*(\d+)\*$', text, re.M))


def test_the_man_page_lists_exactly_the_exit_codes_the_program_has():
    header = (REPO / 'policy' / 'ctl' / 'ctl.h').read_text()
    enum = re.search(r'enum \{ (CTL_OK[^}]*)\}', header).group(1)
    codes = sorted(int(v) for v in re.findall(r'CTL_\w+ = (\d+)', enum))
    assert codes == man_exit_codes() == [0, 1, 2, 3]


def test_exit_codes_success_failure_misuse_and_deny(tmp_path):
    db = tmp_path / 'p.db'
    assert run('init', db=db).returncode == 0
    assert run('principal', 'add', 'alice', db=db).returncode == 0
    assert run('--help').returncode == 0
    # a runtime failure: the database is missing (and is not created)
    missing = tmp_path / 'missing.db'
    p = run('principal', 'list', db=missing)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    assert not missing.exists()
    p = run('principal', 'list')  # no -d and no $CPMGATE_DB
    assert p.returncode == 1 and 'no policy database' in p.stderr
    assert run('principal', 'show', 'nobody', db=db).returncode == 1
    # misuse
    assert run('frob').returncode == 2
    assert run('principal', 'add', db=db).returncode == 2
    assert run('-x').returncode == 2
    # check: allow 0, deny 3
    assert run('check', 'alice', 'imap', 'read', 'INBOX', db=db).returncode == 3
    run('acl', 'allow', 'alice', 'imap', 'INBOX', 'read', db=db, check=0)
    assert run('check', 'alice', 'imap', 'read', 'INBOX', db=db).returncode == 0
