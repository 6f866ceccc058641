"""cpmgatectl's usage comes from its command table: every command family
prints each of its forms on a usage error (exit 2), an unknown subcommand
is named, and the man page lists exactly the forms the program prints, so neither can
drift from what the dispatcher accepts."""

import re

import pytest

from test_ctl_principal import CTL, REPO, run

pytestmark = pytest.mark.skipif(not CTL.exists(), reason=f'{CTL} not built')

MAN = REPO / 'doc' / 'cpmgatectl.8.scd'


def families():
    out = run('--help', check=0).stdout
    listed = out.split('commands:', 1)[1].split('(each prints', 1)[0]
    return [w.strip(',') for w in listed.split()]


def forms(family):
    """The forms a usage error of `family` prints, without 'cpmgatectl '."""
    p = run(family, '--no-such-option', check=2)
    lines = [m.group(1) for m in re.finditer(r'^(?:usage: |       )cpmgatectl (.*)$',
                                             p.stderr, re.M)]
    assert lines, p.stderr
    return lines


def man_forms():
    """The entries of the man page's COMMANDS section, markup removed."""
    text = MAN.read_text().split('# COMMANDS', 1)[1].split('\n# ', 1)[0]
    return [re.sub(r'[*_\\]', '', line) for line in text.splitlines() if line.startswith('*')]


def test_every_family_prints_its_forms_and_the_man_page_lists_the_same():
    printed = [f for fam in families() for f in forms(fam)]
    assert len(printed) == len(set(printed)), printed
    assert sorted(printed) == sorted(man_forms())


@pytest.mark.parametrize('family', ['principal', 'group', 'acl', 'key', 'manifest'])
def test_an_unknown_subcommand_is_named_before_the_family_usage(family):
    p = run(family, 'frob', check=2)
    lines = p.stderr.splitlines()
    assert lines[0] == f"cpmgatectl: unknown {family} command 'frob'", p.stderr
    assert lines[1:] == [('usage: ' if i == 0 else '       ') + 'cpmgatectl ' + f
                         for i, f in enumerate(forms(family))]
