"""test_config_check.py — `cpmgate -t` (SPEC sections 8 and 10): exit 0 on a
good file; exit 1 naming `file:line` for every kind of mistake that could
otherwise silently weaken security (unknown key or section, duplicate key,
indented continuation line, overlong line, bad value)."""

import re
import socket

import pytest

import cg


@pytest.fixture
def gw(gateway_factory, pki, dovecot, nginx):
    return gateway_factory(cg.standard_sections(pki, dovecot, nginx))


def lines_of(gw):
    return open(gw.config_path).read().split('\n')


def index_of(lines, text, after=0):
    for i in range(after, len(lines)):
        if lines[i] == text or lines[i].startswith(text):
            return i
    raise KeyError(text)


def check(gw, lines, tmp_name='variant.conf'):
    path = gw.write_config(str(gw.dir / tmp_name), '\n'.join(lines))
    r = gw.check_config(path)
    return r.returncode, r.stdout + r.stderr


def names_line(out, line, name='variant.conf'):
    return re.search(rf'(^|[\s/]){re.escape(name)}:{line}: \S', out, re.M)


def test_good_configuration_passes(gw):
    r = gw.check_config()
    assert r.returncode == 0, r.stdout + r.stderr


def insert_after(lines, anchor, new):
    i = index_of(lines, anchor)
    return lines[:i + 1] + [new] + lines[i + 1:], i + 2   # 1-based line of new


def variant_unknown_key(lines):
    return insert_after(lines, '[listener imaps]', 'tls_mode = implicit')


def variant_unknown_section(lines):
    return lines + ['[listner extra]', 'protocol = imap'], len(lines) + 1


def variant_duplicate_key(lines):
    i = index_of(lines, 'auth = ', index_of(lines, '[listener imaps]'))
    return lines[:i + 1] + ['auth = login'] + lines[i + 1:], i + 2


def variant_indented_continuation(lines):
    i = index_of(lines, 'auth = ', index_of(lines, '[listener imaps]'))
    return lines[:i + 1] + ['    login'] + lines[i + 1:], i + 2


def variant_overlong_line(lines):
    return insert_after(lines, '[gateway]', '; ' + 'x' * 4200)


def variant_bad_tls_value(lines):
    i = index_of(lines, 'tls = ', index_of(lines, '[listener imaps]'))
    return lines[:i] + ['tls = sometimes'] + lines[i + 1:], i + 1


def variant_bad_auth_method(lines):
    i = index_of(lines, 'auth = ', index_of(lines, '[listener imaps]'))
    return lines[:i] + ['auth = cert, pssk'] + lines[i + 1:], i + 1


def variant_bad_port(lines):
    i = index_of(lines, 'listen = ', index_of(lines, '[listener imaps]'))
    return lines[:i] + ['listen = 127.0.0.1:99999'] + lines[i + 1:], i + 1


def variant_bad_number(lines):
    i = index_of(lines, 'workers = ')
    return lines[:i] + ['workers = many'] + lines[i + 1:], i + 1


def variant_bad_audit_fail(lines):
    i = index_of(lines, 'audit_fail = ')
    return lines[:i] + ['audit_fail = sometimes'] + lines[i + 1:], i + 1


def variant_key_outside_section(lines):
    return ['workers = 2'] + lines, 1


VARIANTS = [variant_unknown_key, variant_unknown_section, variant_duplicate_key,
            variant_indented_continuation, variant_overlong_line,
            variant_bad_tls_value, variant_bad_auth_method, variant_bad_port,
            variant_bad_number, variant_bad_audit_fail,
            variant_key_outside_section]


@pytest.mark.parametrize('variant', VARIANTS,
                         ids=[v.__name__[len('variant_'):] for v in VARIANTS])
def test_mistake_is_refused_with_file_and_line(gw, variant):
    lines, line = variant(lines_of(gw))
    rc, out = check(gw, lines)
    assert rc == 1, f'exit {rc}:\n{out}'
    assert names_line(out, line), f'expected variant.conf:{line}: in\n{out}'


def test_missing_referenced_file_is_refused(gw):
    lines = lines_of(gw)
    i = index_of(lines, 'certificate = ', index_of(lines, '[listener imaps]'))
    lines[i] = 'certificate = no-such-cert.pem'
    rc, out = check(gw, lines)
    assert rc == 1, out
    assert 'no-such-cert.pem' in out


def test_missing_configuration_file_is_refused(gw):
    r = gw.check_config(str(gw.dir / 'absent.conf'))
    assert r.returncode == 1
    assert 'absent.conf' in r.stdout + r.stderr


def test_the_deploy_sample_configuration_passes(gw, pki, dovecot):
    """deploy/cpmgate.conf (SPEC section 10's example, relative paths) is
    valid once the files it names sit beside it."""
    import shutil
    d = gw.dir / 'sample'
    d.mkdir()
    shutil.copy(cg.REPO / 'deploy' / 'cpmgate.conf', d / 'cpmgate.conf')
    for src, dst in [(pki.server_cert, 'server.pem'), (pki.server_key, 'server.key'),
                     (pki.client_ca, 'clients-ca.pem'), (pki.crl, 'clients.crl'),
                     (pki.idp_cert, 'idp.pem'),
                     (dovecot.master_password_file, 'dovecot-master.pw'),
                     (gw.policy_db, 'policy.db'), (gw.audit_key, 'audit.key')]:
        shutil.copy(src, d / dst)
    r = gw.check_config(str(d / 'cpmgate.conf'))
    assert r.returncode == 0, r.stdout + r.stderr


# Bytes a configuration file cannot hold: each is refused with file:line and
# a reason, never a crash. The first is the exact reproducer of a segfault
# (0x01 and digits were once taken for a reference to a long value).
BAD_BYTES = [
    (b'[gateway]\npolicy_db = \x0199\n', 2, 'control byte 0x01'),
    (b'[gateway]\nworkers = 2\npolicy_db = a\x00b\n', 3, 'NUL byte'),
    (b'[gateway]\nworkers = 2\nuser = caf\xe9\n', 3, 'invalid UTF-8'),
]


@pytest.mark.parametrize('text,line,reason', BAD_BYTES,
                         ids=['control_0x01_digits', 'nul', 'latin1'])
def test_byte_the_file_cannot_hold_is_refused_with_file_and_line(gw, text, line, reason):
    path = gw.dir / 'bad.conf'
    path.write_bytes(text)
    r = gw.check_config(str(path))
    out = r.stdout + r.stderr
    assert r.returncode == 1, f'exit {r.returncode}:\n{out}'
    assert names_line(out, line, 'bad.conf'), f'expected bad.conf:{line}: in\n{out}'
    assert reason in out, out
