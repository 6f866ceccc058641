"""cpmgatectl at the shell: bash completion, --help on every command, exit
codes. The completion file is loaded into a real bash and asked as bash
asks it (COMP_WORDS, COMP_CWORD, _cpmgatectl); what it must offer is read
from the program's own usage and --help, which come from its command table,
so a command or option added to the table is held to all three at once.
The exit codes are held against cpmgatectl(8) and ctl.h's enum."""

import os
import re
import shlex
import subprocess

import pytest

from test_ctl_principal import BUILD, CTL, REPO, run
from test_ctl_usage import MAN, families, forms

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')

COMPLETION = REPO / 'policy' / 'ctl' / 'cpmgatectl.bash'


def bash(script, cwd=None):
    env = {k: v for k, v in os.environ.items() if k.endswith('SAN_OPTIONS')}
    env['PATH'] = f'{BUILD}:/usr/bin:/bin'  # cpmgatectl by name, as a user types it
    p = subprocess.run(['bash', '--norc', '--noprofile', '-c', script], capture_output=True,
                       text=True, timeout=60, cwd=cwd, env=env)
    assert p.returncode == 0, (script, p.stdout, p.stderr)
    return p


def complete(*words, cwd=None):
    """COMPREPLY for `cpmgatectl WORDS`, the cursor at the end of the last
    word, as bash computes it with the completion file sourced."""
    line = ' '.join(shlex.quote(w) for w in ('cpmgatectl',) + words)
    p = bash(f'source {shlex.quote(str(COMPLETION))}\n'
             f'COMP_WORDS=({line}); COMP_CWORD={len(words)}\n'
             '_cpmgatectl\n'
             'printf "%s\\n" "${COMPREPLY[@]}"\n', cwd=cwd)
    assert p.stderr == '', p.stderr
    run('__complete', *words, check=0)  # the program itself, watched for sanitizer reports
    return sorted(w for w in p.stdout.splitlines() if w)


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


def positionals(form, sub):
    """The positional words a form begins with, after family and subcommand,
    up to its first option or alternative: literals as they are, any
    placeholder as 'X'."""
    rest = form.split()[2 if sub else 1:]
    out = []
    for w in rest:
        if w.startswith(('-', '[', '|')) or w == '|':
            break
        out.append(w if is_literal(w) else 'X')
    return out


def help_options(fam, sub):
    """Each option its --help lists: {option: value or None}."""
    args = [fam] + ([sub.split('|')[0]] if sub else []) + ['--help']
    p = run(*args, check=0)
    assert p.stderr == ''
    opts = p.stdout.split('\noptions:\n', 1)[1].splitlines()
    out = {}
    for line in opts:
        m = re.fullmatch(r'  (--[a-z-]+)(?: (\S+))?', line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


# ---- completion -------------------------------------------------------------------

def test_the_completion_file_registers_its_function_for_cpmgatectl():
    p = bash(f'source {shlex.quote(str(COMPLETION))}; complete -p cpmgatectl')
    assert p.stdout.strip() == 'complete -F _cpmgatectl cpmgatectl'


def test_the_first_word_is_every_command_family_and_a_prefix_narrows_it():
    assert complete('') == sorted(families())
    assert complete('pr') == ['principal']
    assert complete('re') == sorted(f for f in families() if f.startswith('re'))
    assert 'require-signed' in complete('re') and 'acl' not in complete('re')
    assert complete('-') == sorted(['-d', '-h', '--help'])
    assert complete('-d', 'x.db', 'ac') == ['acl']


def test_every_family_completes_exactly_its_subcommands():
    for fam, *_ in commands():
        subs = sorted({n for f, sub, _ in commands() if f == fam and sub
                       for n in sub.split('|')})
        if subs:
            assert complete(fam, '') == subs, fam
            assert complete('-d', 'p.db', fam, subs[0][:1]) == \
                [s for s in subs if s.startswith(subs[0][:1])], fam


def test_every_form_completes_every_option_it_names_and_its_help_lists():
    for fam, sub, fs in commands():
        names = [fam] + ([sub.split('|')[-1]] if sub else [])
        offered = set()
        for form in fs:
            got = complete(*names, *positionals(form, sub), '--')
            named = set(re.findall(r'--[a-z][a-z-]*', form))
            assert named | {'--help'} <= set(got), (form, got)
            offered |= set(got)
        # --help of the command lists the table's options; each is offered
        assert set(help_options(fam, sub)) <= offered, (fam, sub, offered)


def test_an_option_given_already_is_not_offered_again():
    assert complete('principal', 'add', 'x', '--kind', 'user', '--') == ['--help', '--mailbox']


def test_option_values_that_are_choices_complete_to_those_choices():
    seen = 0
    for fam, sub, fs in commands():
        names = [fam] + ([sub.split('|')[0]] if sub else [])
        for opt, value in help_options(fam, sub).items():
            if value and is_literal(value):
                form = next(f for f in fs if opt in f)
                assert complete(*names, *positionals(form, sub), opt, '') == \
                    sorted(value.split('|')), (fam, sub, opt)
                seen += 1
    assert seen >= 4  # --kind, --auth, --decision, --format at least


def test_literal_positionals_complete_and_choose_the_form_that_follows():
    for fam, sub, fs in commands():
        names = [fam] + ([sub.split('|')[0]] if sub else [])
        for form in fs:
            pos = positionals(form, sub)
            for k, w in enumerate(pos):
                if is_literal(w):
                    choices = {p[k] for f in fs for p in [positionals(f, sub)]
                               if len(p) > k and p[:k] == pos[:k] and is_literal(p[k])}
                    assert complete(*names, *pos[:k], '') == sorted(choices), form
    # cred add: the kind of credential, then only that kind's options
    assert complete('cred', 'add', 'bob', '') == \
        sorted(['cert', 'cert-name', 'psk', 'address', 'digest'])
    assert complete('cred', 'add', 'bob', 'psk', '--') == ['--help', '--identity', '--key']
    assert complete('cred', 'add', 'bob', 'digest', '--') == \
        ['--help', '--password-file', '--realm']


def test_file_arguments_complete_to_file_names(tmp_path):
    for name in ('audit.db', 'audit-key.pem', 'policy.db'):
        (tmp_path / name).write_text('')
    (tmp_path / 'audits').mkdir()
    assert complete('audit', 'verify', '--audit-db', 'aud', cwd=tmp_path) == \
        ['audit-key.pem', 'audit.db', 'audits']
    assert complete('-d', 'po', cwd=tmp_path) == ['policy.db']
    assert complete('cred', 'add', 'bob', 'cert', '--file', 'audit-', cwd=tmp_path) == \
        ['audit-key.pem']
    # a value that is no file name (a principal, an id) offers nothing
    assert complete('principal', 'add', 'x', '--mailbox', 'a', cwd=tmp_path) == []
    assert complete('principal', 'show', 'a', cwd=tmp_path) == []


def test_completion_of_an_unknown_family_offers_nothing():
    assert complete('frob', '') == []
    assert complete('frob', '--') == []


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
    assert p.stderr.count(str(missing)) == 1, p.stderr  # named once, not twice
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
