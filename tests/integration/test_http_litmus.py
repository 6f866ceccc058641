"""test_http_litmus.py — a real WebDAV client through the gateway (SPEC 4:
"Real WebDAV clients must work through the gateway exactly as they do
against the backend directly"). litmus runs its suites against nginx
directly, then through the gateway (stunnel presents alice's client
certificate, as litmus itself cannot be given our CA); every test that
passes directly must pass through the gateway too."""

import re
import shutil
import subprocess
import uuid

import pytest

import cg

pytestmark = pytest.mark.skipif(shutil.which('litmus') is None or
                                shutil.which('stunnel4') is None,
                                reason='litmus or stunnel4 missing')

SUITES = 'basic copymove props locks http'


def litmus(url, workdir):
    p = subprocess.run(['litmus', '-k', url], capture_output=True, text=True, timeout=300,
                       cwd=workdir, env={'TESTS': SUITES, 'PATH': '/usr/bin:/bin'})
    results, suite = {}, None
    for line in p.stdout.splitlines():
        m = re.match(r'-> running `(\w+)\'', line)
        if m:
            suite = m.group(1)
            continue
        m = re.match(r'\s*(\d+)\.\s+(\w+)\.*\s+(pass|FAIL|SKIPPED)', line)
        if m and suite:
            results[(suite, int(m.group(1)), m.group(2))] = m.group(3)
    return results, p.stdout


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx):
    g = module_gateway_factory({
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', '/lit*', 'all')
    return g.start()


@pytest.fixture(scope='module')
def tunnel(gw, pki, tmp_path_factory):
    d = tmp_path_factory.mktemp('stunnel')
    port = cg.free_port()
    cert, key = pki.client('alice')
    conf = d / 'stunnel.conf'
    conf.write_text(f'foreground = yes\npid =\n[gw]\nclient = yes\n'
                    f'accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{gw.port("content")}\n'
                    f'cert = {cert}\nkey = {key}\nCAfile = {pki.ca}\nverifyChain = yes\n'
                    'checkHost = localhost\nsni = localhost\n')
    p = subprocess.Popen(['stunnel4', str(conf)], stdout=subprocess.DEVNULL,
                         stderr=open(d / 'stunnel.log', 'wb'))
    cg.wait_port('127.0.0.1', port, 10, proc=p)
    yield port
    p.terminate()
    p.wait(10)


def test_litmus_passes_through_the_gateway_as_it_does_directly(gw, nginx, tunnel, tmp_path):
    base = '/lit' + uuid.uuid4().hex[:6]
    for b in (base + 'd/', base + 'g/'):
        assert nginx.request('MKCOL', b)[0] == 201
    direct, out_d = litmus(f'http://{nginx.host}:{nginx.port}{base}d/', tmp_path)
    # by the name stunnel gives as SNI: a Host that differs from it is 421
    through, out_g = litmus(f'http://localhost:{tunnel}{base}g/', tmp_path)
    assert direct, out_d
    passed_direct = {k for k, v in direct.items() if v == 'pass'}
    passed_gw = {k for k, v in through.items() if v == 'pass'}
    lost = sorted(passed_direct - passed_gw)
    assert not lost, f'passed directly, not through the gateway: {lost}\n{out_g[-4000:]}'
    assert len(passed_gw) >= 40, out_g[-2000:]
