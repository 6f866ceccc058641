"""test_demo.py — deploy/demo, the first of the project's two commands: it
starts Dovecot, nginx and cpmgate, the GET command it prints works as
printed, and Ctrl-C (SIGINT to its process group, as a terminal sends it)
stops everything it started. Beside it runs a second environment,
b.example: the printed commands read its shared folder through a.example's
gateway, and both gateways record the same transaction id."""

import os
import random
import re
import signal
import subprocess
import time

import pytest

import cg

DEMO = cg.REPO / 'deploy' / 'demo'
BASE_PORTS = (10993, 10143, 10443, 10080, 9464, 20143, 20080,
              11993, 12993, 12443, 9465, 21143, 21080)


def free_offset():
    """An offset that puts all of the demo's ports on free ports."""
    for _ in range(200):
        off = random.randrange(1000, 30000)
        if all(_free(p + off) for p in BASE_PORTS):
            return off
    pytest.fail('no free port offset for the demo')


def _free(port):
    import socket
    for host in ('127.0.0.1', '127.0.0.2'):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def listening(port):
    return port in cg._listening_inodes()


@pytest.fixture
def demo(cg_root):
    off = free_offset()
    state = cg_root / f'demo-state-{off}'
    env = cg.sanitizer_env()
    env.update(CPMGATE_BUILD=str(cg.BUILD), DEMO_STATE=str(state),
               DEMO_PORT_OFFSET=str(off))
    errlog = open(cg_root / f'demo-{off}.stderr', 'wb')
    proc = subprocess.Popen(['bash', str(DEMO)], stdout=subprocess.PIPE,
                            stderr=errlog, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    proc.offset, proc.state, proc.errlog = off, state, errlog.name
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    errlog.close()


def read_instructions(proc, timeout=180):
    """The demo's stdout up to 'Press Ctrl-C to stop.'"""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b''
    deadline = time.monotonic() + timeout
    while b'Press Ctrl-C to stop.' not in out:
        if time.monotonic() > deadline:
            raise AssertionError(f'demo did not get ready:\n{out.decode()}\n'
                                 f'{cg.tail(proc.errlog)}')
        if not sel.select(timeout=1):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise AssertionError(f'demo exited ({proc.wait()}):\n{out.decode()}\n'
                                 f'{cg.tail(proc.errlog)}')
        out += chunk
    return out.decode()


def command_after(text, heading):
    lines = text.splitlines()
    for i, l in enumerate(lines):
        if l.startswith('#') and heading in l:
            return lines[i + 1]
    raise AssertionError(f'no command under "# ...{heading}..." in:\n{text}')


def test_demo_serves_the_printed_get_and_stops_on_ctrl_c(demo):
    text = read_instructions(demo)
    get = command_after(text, "GET with alice's client certificate")
    assert get.startswith('curl ')
    r = subprocess.run(['bash', '-c', get], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert b'Hello from the content store' in r.stdout
    ports = [p + demo.offset for p in BASE_PORTS]
    assert all(listening(p) for p in ports)

    os.killpg(demo.pid, signal.SIGINT)     # what Ctrl-C in a terminal does
    assert demo.wait(60) == 0, cg.tail(demo.errlog)
    cg.wait_until(lambda: not any(listening(p) for p in ports), timeout=10,
                  what='all demo ports closed')
    # Nothing the demo started is left in its process group.
    def group_gone():
        try:
            os.killpg(demo.pid, 0)
            return False
        except ProcessLookupError:
            return True
    cg.wait_until(group_gone, timeout=10, what='demo processes gone')
    log = open(demo.errlog, errors='replace').read()
    for pat in cg.SANITIZER_PATTERNS:
        assert pat not in log, log


def test_demo_deny_rule_refuses_the_same_get(demo):
    text = read_instructions(demo)
    lines = text.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith('# Black-list'))
    deny, get = lines[i + 1], lines[i + 2]
    assert ' acl deny alice http ' in deny
    before = subprocess.run(['bash', '-c', get.replace('sleep 1; ', '')],
                            capture_output=True, timeout=60).stdout
    assert before.startswith(b'HTTP/1.1 200'), before
    r = subprocess.run(['bash', '-c', deny], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(['bash', '-c', get], capture_output=True, timeout=60)
    assert r.stdout.startswith(b'HTTP/1.1 403'), r.stdout + r.stderr
    assert b'Hello from the content store' not in r.stdout


def test_demo_prints_a_psk_command(demo):
    text = read_instructions(demo)
    cmd = command_after(text, 'TLS-PSK')
    assert re.search(r'-psk [0-9a-f]{64}\b', cmd)
    r = subprocess.run(['bash', '-c', cmd], capture_output=True, timeout=60)
    assert b'Hello from the content store' in r.stdout, r.stdout + r.stderr


def test_demo_reads_a_remote_shared_folder_through_the_local_gateway(demo):
    import json
    text = read_instructions(demo)
    get = command_after(text, "b.example's shared folder, read through")
    r = subprocess.run(['bash', '-c', get], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Hello from b.example's shared folder." in r.stdout, r.stdout
    fetch = command_after(text, 'Remote environment over IMAP')
    r = subprocess.run(['bash', '-c', fetch], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert b'Hello from b.example.' in r.stdout, r.stdout
    lines = text.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("# Both gateways' last audit"))
    # the GET once more, then each side's last record: the same operation
    subprocess.run(['bash', '-c', get], capture_output=True, timeout=60, check=True)

    def records():
        out = [subprocess.run(['bash', '-c', lines[i + k]], capture_output=True,
                              timeout=60).stdout for k in (1, 2)]
        recs = [json.loads(o) for o in out if o.strip()]
        if len(recs) == 2 and recs[0].get('txid') == recs[1].get('origin_txid'):
            return recs
        return None
    here, there = cg.wait_until(records, timeout=10, what='both records of one GET')
    assert here['resource'] == '/remote/b.example/content/shared/hello.txt'
    assert there['resource'] == '/content/shared/hello.txt'
    assert there['originator'] == 'alice@a.example'
