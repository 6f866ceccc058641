"""The compose demo's `scale` profile (deploy/docker-compose.yml): PostgreSQL
holding the policy, two gateway nodes sharing it, HAProxy in TCP mode in
front of them. Without Docker the profile is checked as far as it can be:
the compose file validates and wires the services as described, HAProxy
accepts its configuration, compose-scale-init builds the nodes'
configurations from the shared sample and copies the demo policy into a
real PostgreSQL, and the printed steps (scale-check, one change through
node1, scale-check again) show two real nodes sharing that database obey
the change alike."""
import os
import shutil
import subprocess

import pytest

import cg
import pg
from test_deploy import COMPOSE, DEPLOY, published_target

SCALE = {'postgres', 'scale-init', 'node1', 'node2', 'haproxy'}


def compose_config(*args):
    out = subprocess.run(['docker-compose', '-f', str(COMPOSE), *args, 'config'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import yaml
    return yaml.safe_load(out.stdout)


@pytest.mark.skipif(not shutil.which('docker-compose'), reason='docker-compose not installed')
def test_scale_profile_wires_postgres_two_nodes_and_one_address():
    c = compose_config('--profile', 'scale')
    s = c['services']
    assert set(s) >= SCALE
    for name in SCALE:  # `up` without --profile scale leaves them out
        assert s[name].get('profiles') == ['scale'], name
    # only HAProxy is published, on loopback; the rest stays on the internal network
    for name in ('postgres', 'scale-init', 'node1', 'node2'):
        assert not s[name].get('ports'), name
        assert list(s[name]['networks']) == ['backend'], name
    assert set(s['haproxy']['networks']) == {'backend', 'frontend'}
    assert {published_target(p) for p in s['haproxy']['ports']} == {11993, 11443}
    assert all('127.0.0.1' in str(p) for p in s['haproxy']['ports'])
    # each node its own configuration, made once PostgreSQL holds the policy
    for n in (1, 2):
        node = s[f'node{n}']
        assert node['command'][-1] == f'/state/node{n}.conf'
        assert node['depends_on']['scale-init']['condition'] == 'service_completed_successfully'
        assert node['environment']['PGPASSFILE'] == '/state/pgpass'
    assert s['scale-init']['depends_on']['postgres']['condition'] == 'service_healthy'
    assert s['postgres']['environment']['POSTGRES_PASSWORD_FILE'] == '/state/policy-db.password'
    assert s['postgres']['depends_on']['init']['condition'] == 'service_completed_successfully'


@pytest.mark.skipif(not shutil.which('haproxy'), reason='haproxy not installed')
def test_haproxy_configuration_is_valid_and_drains_unhealthy_nodes():
    cfg = DEPLOY / 'haproxy-scale.cfg'
    out = subprocess.run(['haproxy', '-c', '-f', str(cfg)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    text = cfg.read_text()
    assert 'mode tcp' in text and 'option httpchk GET /healthz' in text
    assert 'check port 9464' in text
    for port in (10993, 10443):
        for n in (1, 2):
            assert f'server node{n} node{n}:{port}' in text


@pytest.fixture
def cluster(cg_root):
    with pg.throwaway(cg_root / 'pg-scale') as c:
        yield c


def _run(script, env, **kw):
    return subprocess.run(['sh', str(DEPLOY / script)], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def test_scale_init_builds_the_nodes_and_the_printed_steps_work(
        tmp_path, cluster, gateway_factory, pki, nginx):
    state = tmp_path / 'state'
    env = dict(os.environ, STATE=str(state), DEPLOY=str(DEPLOY),
               MKPKI=str(cg.REPO / 'tests/pki/mkpki.sh'),
               PATH=f'{cg.BUILD}:{os.environ["PATH"]}')
    out = _run('compose-init', env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (state / 'policy-db.password').exists()
    assert oct((state / 'pgpass').stat().st_mode & 0o777) == '0o600'
    url = cluster.url()
    env['PG_URL'] = url
    os.unlink(state / 'policy-db.password')  # the test cluster trusts its socket
    out = _run('compose-scale-init', env)
    assert out.returncode == 0, out.stdout + out.stderr
    # the printed steps: check, one change through node1, check again
    assert 'exec node1 /opt/cpmgate/deploy/scale-check' in out.stdout
    change = f"exec node1 cpmgatectl -d {url} acl deny alice http '/content/*' read"
    assert change in out.stdout, out.stdout
    assert '--merge' in out.stdout
    # the demo policy is in PostgreSQL and decides as the SQLite one did
    ctl = [str(cg.BUILD / 'cpmgatectl'), '-d', url]
    assert subprocess.run(ctl + ['check', 'alice', 'http', 'write', '/content/x'],
                          capture_output=True).returncode == 0
    assert subprocess.run(ctl + ['check', 'bob', 'http', 'write', '/content/x'],
                          capture_output=True).returncode == 3
    # each node: the sample with its own keys only
    sample = (state / 'cpmgate.conf').read_text().splitlines()
    for n in (1, 2):
        made = (state / f'node{n}.conf').read_text().splitlines()
        assert len(made) == len(sample)
        changed = {b.split('=')[0].strip(): b.split('=', 1)[1].split(';')[0].strip()
                   for a, b in zip(sample, made) if a != b}
        assert changed == {'policy_db': url, 'node_id': f'node{n}',
                           'policy_max_age': '30s', 'policy_cache': f'node{n}-policy.cache',
                           'audit_db': f'node{n}-audit.db',
                           'content_db': f'node{n}-content.db'}, changed
        text = '\n'.join(made).replace('dovecot:20143', '127.0.0.1:20143') \
                              .replace('nginx:20080', '127.0.0.1:20080')
        (state / f'check{n}.conf').write_text(text + '\n')
        chk = subprocess.run([str(cg.BUILD / 'cpmgate'), '-t', '-c',
                              str(state / f'check{n}.conf')],
                             capture_output=True, text=True, timeout=30)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    again = _run('compose-scale-init', env)
    assert again.returncode == 0 and 'holds a policy already' in again.stdout

    # two real nodes on that database, alice's requests as scale-check makes them
    nodes = []
    for n in (1, 2):
        g = gateway_factory({
            'gateway': {'policy_db': url, 'node_id': f'node{n}'},
            'listener content': {
                'protocol': 'http', 'tls': 'implicit',
                'certificate': pki.server_cert, 'private_key': pki.server_key,
                'client_ca': str(state / 'pki' / 'clients-ca.pem'),  # alice's, as registered
                'auth': 'cert', 'upstream': 'nginx'},
            'upstream nginx': nginx.upstream(),
        })
        nodes.append(g.start())
    check_env = dict(env, NODES=' '.join(f'127.0.0.1:{g.port("content")}' for g in nodes))

    def check():
        r = _run('scale-check', check_env)
        assert r.returncode == 0, r.stderr
        return [line.split(': ', 1)[1] for line in r.stdout.splitlines()]
    assert len(check()) == 2 and all(' 200 ' in s for s in check()), check()
    subprocess.run(ctl + ['acl', 'deny', 'alice', 'http', '/content/*', 'read'], check=True,
                   capture_output=True)
    cg.wait_until(lambda: all(' 403 ' in s for s in check()), timeout=3,
                  what='both nodes refusing alice')
