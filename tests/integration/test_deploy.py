"""Deployment artefacts: the compose file validates and keeps the backends
off the published network; its init script builds a working state from the
same sample configuration as deploy/demo; the systemd unit passes
systemd-analyze verify; the man pages build."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import cg

DEPLOY = cg.REPO / 'deploy'
COMPOSE = DEPLOY / 'docker-compose.yml'


def compose_config():
    out = subprocess.run(['docker-compose', '-f', str(COMPOSE), 'config'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def published_target(port):
    """The container port of a ports entry: compose v2 prints the long
    syntax (a mapping), compose v1 keeps the short one ("[ip:]host:target")."""
    if isinstance(port, dict):
        return int(port['target'])
    return int(str(port).split('/')[0].rsplit(':', 1)[-1])


@pytest.mark.skipif(not shutil.which('docker-compose'), reason='docker-compose not installed')
def test_compose_file_validates():
    out = subprocess.run(['docker-compose', '-f', str(COMPOSE), 'config', '-q'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(not shutil.which('docker-compose'), reason='docker-compose not installed')
def test_compose_backends_are_internal_and_gateway_ports_published():
    c = compose_config()
    services = c['services']
    assert set(services) >= {'init', 'cpmgate', 'dovecot', 'nginx'}
    assert c['networks']['backend'].get('internal') is True
    for backend in ('dovecot', 'nginx'):
        assert not services[backend].get('ports'), f'{backend} must not publish ports'
        assert list(services[backend]['networks']) == ['backend']
        assert services[backend]['depends_on']['init']['condition'] == \
            'service_completed_successfully'
    published = {published_target(p) for p in services['cpmgate']['ports']}
    assert published == {10993, 10143, 10443, 10080, 11993, 9464}
    assert set(services['cpmgate']['networks']) == {'backend', 'frontend', 'peering'}
    # b.example: its backends and gateway publish nothing; its gateway is
    # reached from a.example's over the internal peering network only
    for name in ('dovecot-b', 'nginx-b', 'cpmgate-b'):
        assert not services[name].get('ports'), f'{name} must not publish ports'
    assert c['networks']['backend-b'].get('internal') is True
    assert c['networks']['peering'].get('internal') is True
    assert list(services['dovecot-b']['networks']) == ['backend-b']
    assert set(services['cpmgate-b']['networks']) == {'backend-b', 'peering'}
    for name in ('init', 'dovecot', 'nginx'):
        dockerfile = services[name]['build']['dockerfile']
        text = (cg.REPO / dockerfile).read_text()
        assert 'FROM debian:bookworm-slim' in text
    assert 'meson setup' in (cg.REPO / 'deploy/Dockerfile').read_text()


def test_compose_init_builds_state_from_the_shared_sample(tmp_path):
    state, state_b = tmp_path / 'state', tmp_path / 'state-b'
    env = dict(os.environ, STATE=str(state), STATE_B=str(state_b), DEPLOY=str(DEPLOY),
               MKPKI=str(cg.REPO / 'tests/pki/mkpki.sh'),
               PATH=f'{cg.BUILD}:{os.environ["PATH"]}')
    out = subprocess.run(['sh', str(DEPLOY / 'compose-init')], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    made = (state / 'cpmgate.conf').read_text().splitlines()
    sample = (DEPLOY / 'cpmgate.conf').read_text().splitlines()
    # the sample, then the route to b.example appended
    assert len(made) > len(sample) and '[route b.example]' in made[len(sample):]
    changed = [(a, b) for a, b in zip(sample, made) if a != b]
    assert changed, 'the compose configuration must rebind the listeners'
    for a, b in changed:
        key = a.lstrip('; ').split('=')[0].strip()
        assert key in ('listen', 'admin_listen', 'address', 'local_domain'), (a, b)
    # With the service names resolved as loopback, both are valid
    # configurations.
    for d in (state, state_b):
        text = (d / 'cpmgate.conf').read_text()
        for name in ('dovecot', 'nginx', 'dovecot-b', 'nginx-b', 'cpmgate-b'):
            text = text.replace(f'= {name}:', '= 127.0.0.1:')
        (d / 'check.conf').write_text(text)
        chk = subprocess.run([str(cg.BUILD / 'cpmgate'), '-t', '-c', str(d / 'check.conf')],
                             capture_output=True, text=True, timeout=30)
        assert chk.returncode == 0, chk.stderr
    # b.example lets a.example's gateway act for alice@a.example there
    ctl_b = [str(cg.BUILD / 'cpmgatectl'), '-d', str(state_b / 'policy.db')]
    peers = subprocess.run(ctl_b + ['peer', 'list'], capture_output=True, text=True)
    assert 'a.example' in peers.stdout and 'gw-a' in peers.stdout, peers.stdout
    # The policy it made decides as the demo's does.
    ctl = [str(cg.BUILD / 'cpmgatectl'), '-d', str(state / 'policy.db')]
    allow = subprocess.run(ctl + ['check', 'alice', 'http', 'write', '/content/x'],
                           capture_output=True, text=True)
    assert allow.returncode == 0, allow.stdout + allow.stderr
    deny = subprocess.run(ctl + ['check', 'bob', 'http', 'write', '/content/x'],
                          capture_output=True, text=True)
    assert deny.returncode == 3, deny.stdout + deny.stderr
    assert (state / 'dovecot/dovecot.conf').exists()
    assert '@' not in (state / 'nginx/nginx.conf').read_text().replace('@ ', '')
    assert oct((state / 'policy.db').stat().st_mode & 0o777) == '0o600'
    # Run again: an initialised state is left as it is.
    again = subprocess.run(['sh', str(DEPLOY / 'compose-init')], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and 'already initialised' in again.stdout


def man_pages(tmp_path):
    """The scdoc pages as a MANPATH tree."""
    root = tmp_path / 'man'
    for page in ('cpmgate.8', 'cpmgate.conf.5', 'cpmgatectl.8'):
        section = page.rsplit('.', 1)[1]
        (root / f'man{section}').mkdir(parents=True, exist_ok=True)
        src = (cg.REPO / 'doc' / f'{page}.scd').read_text()
        out = subprocess.run(['scdoc'], input=src, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        (root / f'man{section}' / page).write_text(out.stdout)
    return root


@pytest.mark.skipif(not shutil.which('scdoc'), reason='scdoc not installed')
def test_man_pages_build(tmp_path):
    root = man_pages(tmp_path)
    text = (root / 'man5' / 'cpmgate.conf.5').read_text()
    assert '.th "cpmgate.conf" "5"' in text.lower()
    assert '.SH NAME' in text and 'content_db' in text


@pytest.mark.skipif(not shutil.which('systemd-analyze') or not shutil.which('scdoc'),
                    reason='systemd-analyze or scdoc not installed')
def test_systemd_unit_verifies(tmp_path):
    unit = (DEPLOY / 'cpmgate.service.in').read_text().replace('@SBINDIR@', str(cg.BUILD))
    for needed in ('Type=notify', 'ExecReload=/bin/kill -HUP $MAINPID', 'ProtectSystem=strict',
                   'NoNewPrivileges=yes', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
                   'ReadWritePaths=/var/lib/cpmgate'):
        assert needed in unit
    path = tmp_path / 'cpmgate.service'
    path.write_text(unit)
    env = dict(os.environ, MANPATH=str(man_pages(tmp_path)))
    out = subprocess.run(['systemd-analyze', 'verify', str(path)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
