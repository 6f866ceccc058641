"""test_debian_package.py — debian/ builds cpmgate_*.deb with
`dpkg-buildpackage -us -uc -b` from a copy of the tree (built once for the
module, in a temporary directory: nothing is left in the repository); the
package holds the binaries, man pages, systemd unit, the configuration as
a conffile and /var/lib/cpmgate; lintian reports no error; installed for
real with dpkg (as root), it makes the cpmgate user and what the shipped
configuration needs, `cpmgate -t` passes on that configuration as the
cpmgate user, and `dpkg --purge` removes it again."""
import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import cg

TOOLS = ('dpkg-buildpackage', 'dh', 'lintian', 'dpkg-deb')
pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason='Debian packaging tools (dpkg-dev, debhelper, lintian) '
                              'are not installed: tests/deps.sh could not install them'),
    pytest.mark.cg_timeout(900),
]


def copy_tree(dst):
    """The work tree without build directories or git metadata."""
    def ignore(d, names):
        if Path(d) == cg.REPO:
            return [n for n in names if n.startswith(('build', '.git'))]
        return [n for n in names if n == '__pycache__']
    shutil.copytree(cg.REPO, dst, ignore=ignore, symlinks=True)


@pytest.fixture(scope='module')
def deb(tmp_path_factory):
    top = tmp_path_factory.mktemp('debian-build')
    src = top / 'cpmgate'
    copy_tree(src)
    out = subprocess.run(['dpkg-buildpackage', '-us', '-uc', '-b', '-j2'], cwd=src,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    debs = sorted(top.glob('cpmgate_*.deb'))
    assert len(debs) == 1, list(top.iterdir())
    return debs[0]


def contents(deb):
    out = subprocess.run(['dpkg-deb', '-c', str(deb)], capture_output=True, text=True,
                         check=True)
    return {ln.split()[-1].lstrip('.') for ln in out.stdout.splitlines()}


def control_file(deb, name, tmp_path):
    subprocess.run(['dpkg-deb', '-e', str(deb), str(tmp_path / 'ctl')], check=True)
    return (tmp_path / 'ctl' / name).read_text()


def test_package_holds_binaries_man_pages_unit_and_configuration(deb, tmp_path):
    files = contents(deb)
    for path in ('/usr/sbin/cpmgate', '/usr/sbin/cpmgatectl',
                 '/usr/share/man/man8/cpmgate.8.gz', '/usr/share/man/man8/cpmgatectl.8.gz',
                 '/usr/share/man/man5/cpmgate.conf.5.gz', '/etc/cpmgate/cpmgate.conf',
                 '/var/lib/cpmgate/', '/usr/share/doc/cpmgate/copyright'):
        assert path in files, path
    # the build ran in the copy: the repository has no build products
    for product in ('debian/cpmgate', 'debian/.debhelper', 'debian/files',
                    'debian/debhelper-build-stamp'):
        assert not (cg.REPO / product).exists(), product
    assert not list(cg.REPO.glob('obj-*'))
    # bash completion goes into the package when meson installs one
    meson_files = [p.read_text() for p in cg.REPO.rglob('meson.build')
                   if not p.relative_to(cg.REPO).parts[0].startswith('build')]
    if any('bash-completion' in t or 'bash_completion' in t for t in meson_files):
        assert any(f.startswith('/usr/share/bash-completion/completions/') and
                   not f.endswith('/') for f in files), 'bash completion is packaged'
    units = [f for f in files if f.endswith('/systemd/system/cpmgate.service')]
    assert len(units) == 1, files
    assert control_file(deb, 'conffiles', tmp_path).split() == ['/etc/cpmgate/cpmgate.conf']
    postinst = control_file(deb, 'postinst', tmp_path)
    assert 'adduser --system --group' in postinst
    # dh_installsystemd found the unit: postinst enables it
    assert 'deb-systemd-helper' in postinst and 'cpmgate.service' in postinst


def test_lintian_reports_no_error(deb):
    out = subprocess.run(['lintian', '--tag-display-limit', '0', str(deb)],
                         capture_output=True, text=True, timeout=300)
    errors = [ln for ln in out.stdout.splitlines() if ln.startswith('E:')]
    assert not errors, out.stdout + out.stderr


def dpkg(*args):
    return subprocess.run(['dpkg', *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))


def installed(name):
    out = subprocess.run(['dpkg-query', '-W', '-f=${Status}', name],
                         capture_output=True, text=True)
    return out.stdout.strip() == 'install ok installed'


def run_as_service_user(user):
    """The shipped configuration, on free ports, started as the user the
    unit runs as: it can read its keys, open the policy database postinst
    made and create the audit and content databases in /var/lib/cpmgate."""
    text = Path('/etc/cpmgate/cpmgate.conf').read_text()
    admin = cg.free_port()
    text = re.sub(r'^listen = 127\.0\.0\.1:\d+', lambda m: f'listen = 127.0.0.1:{cg.free_port()}',
                  text, flags=re.M)
    text = re.sub(r'^admin_listen = \S+', f'admin_listen = 127.0.0.1:{admin}', text, flags=re.M)
    conf = Path('/etc/cpmgate/free-ports.conf')   # beside it: same relative paths
    conf.write_text(text)
    proc = subprocess.Popen(['setpriv', f'--reuid={user.pw_uid}', f'--regid={user.pw_gid}',
                             '--clear-groups', '/usr/sbin/cpmgate', '-c', str(conf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        try:
            cg.wait_port('127.0.0.1', admin, timeout=20, proc=proc)
        except RuntimeError as e:
            raise AssertionError(f'{e}: {proc.communicate(timeout=30)[0].decode()}') from e
        st, _, body = cg.http_plain(('127.0.0.1', admin), 'GET', '/metrics')
        assert st == 200 and b'cpmgate_connections_active' in body
        for db in ('audit.db', 'content.db'):
            assert Path('/var/lib/cpmgate', db).stat().st_uid == user.pw_uid, db
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors='replace')
        conf.unlink()
    assert proc.returncode == 0, out


def test_install_check_and_purge(deb):
    if os.geteuid() != 0:
        pytest.skip('installing the package for real needs root')
    if installed('cpmgate') or Path('/etc/cpmgate').exists():
        pytest.skip('cpmgate is already installed on this machine: not replacing it')
    try:
        out = dpkg('-i', str(deb))
        assert out.returncode == 0, out.stdout + out.stderr
        assert installed('cpmgate')
        user = pwd.getpwnam('cpmgate')
        state = Path('/var/lib/cpmgate')
        assert state.stat().st_uid == user.pw_uid
        assert oct(state.stat().st_mode & 0o777) == '0o750'
        assert (state / 'policy.db').stat().st_uid == user.pw_uid
        key = Path('/etc/cpmgate/audit.key')
        assert key.stat().st_mode & 0o007 == 0, 'the audit key is not for everyone'
        conf = Path('/etc/cpmgate/cpmgate.conf').read_text()
        assert 'policy_db = /var/lib/cpmgate/policy.db' in conf
        # the shipped configuration is valid, and readable with everything
        # it names by the user the unit runs as
        chk = subprocess.run(['/usr/sbin/cpmgate', '-t', '-c', '/etc/cpmgate/cpmgate.conf'],
                             capture_output=True, text=True, timeout=60)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        chk = subprocess.run(['setpriv', f'--reuid={user.pw_uid}', f'--regid={user.pw_gid}',
                              '--clear-groups', '/usr/sbin/cpmgate', '-t', '-c',
                              '/etc/cpmgate/cpmgate.conf'],
                             capture_output=True, text=True, timeout=60)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        ctl = subprocess.run(['/usr/sbin/cpmgatectl', '-d', '/var/lib/cpmgate/policy.db',
                              'principal', 'list'], capture_output=True, text=True, timeout=60)
        assert ctl.returncode == 0, ctl.stdout + ctl.stderr
        run_as_service_user(user)
        # configuring again (a reinstall) keeps what postinst made
        before = key.read_bytes()
        out = dpkg('-i', str(deb))
        assert out.returncode == 0, out.stdout + out.stderr
        assert key.read_bytes() == before
    finally:
        purge = dpkg('--purge', 'cpmgate')
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not installed('cpmgate')
    assert not Path('/etc/cpmgate/cpmgate.conf').exists()
    assert not Path('/var/lib/cpmgate').exists()
    assert not Path('/usr/sbin/cpmgate').exists()
