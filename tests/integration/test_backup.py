"""test_backup.py — `cpmgatectl backup DIR` and `cpmgatectl restore DIR`
against a real gateway: a backup taken while it serves traffic gives copies
that open and whose audit chain verifies, described by a manifest whose
hashes match; restore refuses a damaged copy (a changed byte, or a chain
that no longer verifies) and a gateway that is running, and on a stopped
gateway puts the policy back as it was (an ACL added after the backup is
gone) while the databases it replaced are kept aside."""

import hashlib
import json
import sqlite3
import subprocess
import threading

import pytest

import audit_blocks
import cg


@pytest.fixture
def gw(gateway_factory, pki, nginx):
    """A gateway serving HTTP to alice at 127.0.0.1 (also for test_audit_follow)."""
    return cg.http_alice_gateway(gateway_factory, pki, nginx)


def _get(g, pki, path='/content/index.html'):
    r = cg.http_request(g.addr('content'), 'GET', path, ctx=cg.client_context(pki),
                        source='127.0.0.1')
    assert r is not None, path
    return r


def _traffic(g, pki, stop):
    while not stop.is_set():
        _get(g, pki)


def _backup(g, dest, *extra):
    r = g.ctl('backup', dest, '--config', g.config_path, '--key', g.audit_pub, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((dest / 'MANIFEST.json').read_text())


def _last_seq(g):
    v = g.audit('verify', '--json')
    return json.loads(v.stdout)['last_seq'] if v.returncode == 0 else 0


def _acls(g):
    return g.ctl_ok('acl', 'list', '--json').stdout


def test_backup_while_serving_gives_copies_that_verify_and_open(gw, pki, tmp_path):
    stop = threading.Event()
    load = threading.Thread(target=_traffic, args=(gw, pki, stop))
    load.start()
    try:
        cg.wait_until(lambda: _last_seq(gw) > 5, timeout=10, what='records in the audit log')
        m = _backup(gw, tmp_path / 'bk')
    finally:
        stop.set()
        load.join()
    assert m['format'] == 'cpmgate-backup-v1' and m['version'] and m['time']
    names = {f['name']: f for f in m['files']}
    assert set(names) == {'policy', 'audit', 'content'}
    for f in m['files']:
        data = (tmp_path / 'bk' / f['file']).read_bytes()
        assert len(data) == f['size']
        assert hashlib.sha256(data).hexdigest() == f['sha256']
    assert names['policy']['source'] == gw.policy_db
    assert names['audit']['source'] == gw.audit_db
    assert names['content']['source'] == str(gw.dir / 'content.db')
    # the audit copy verifies with the gateway's key and ends where the manifest says
    v = gw.ctl('audit', 'verify', '--audit-db', tmp_path / 'bk' / 'audit.db', '--key',
               gw.audit_pub, '--json', db=False)
    assert v.returncode == 0, v.stdout + v.stderr
    res = json.loads(v.stdout)
    assert res['intact'] and res['last_seq'] == m['audit']['last_seq'] > 5
    head = audit_blocks.last_hash(tmp_path / 'bk' / 'audit.db')
    assert head.hex() == m['audit']['chain_head']
    # the policy copy opens and holds the policy
    p = gw.ctl('-d', tmp_path / 'bk' / 'policy.db', 'acl', 'list', db=False)
    assert p.returncode == 0 and 'alice' in p.stdout
    # one self-contained file each: no -wal beside the copies
    assert not list((tmp_path / 'bk').glob('*-wal'))
    # a second backup into a directory that is not empty is refused
    r = gw.ctl('backup', tmp_path / 'bk', '--config', gw.config_path)
    assert r.returncode == 1 and 'not empty' in r.stderr


def test_restore_refuses_a_damaged_copy(gw, tmp_path):
    m = _backup(gw, tmp_path / 'bk')
    gw.stop()
    before = _acls(gw)
    # one byte changed: the SHA-256 no longer matches the manifest
    pol = tmp_path / 'bk' / 'policy.db'
    data = bytearray(pol.read_bytes())
    data[-100] ^= 0xff
    pol.write_bytes(bytes(data))
    r = gw.ctl('restore', tmp_path / 'bk', '--config', gw.config_path)
    assert r.returncode == 1 and 'differs from the manifest' in r.stderr, r.stderr
    assert _acls(gw) == before
    # an audit copy whose chain was rewritten (and its hash in the manifest
    # too) is refused by the chain check
    m2 = _backup(gw, tmp_path / 'bk2')
    aud = tmp_path / 'bk2' / 'audit.db'
    rec = [r for r in audit_blocks.records(aud)
           if any('alice' in (r[k] or '') for k in audit_blocks.STRINGS)][-1]
    audit_blocks.change(aud, rec['seq'], **{k: rec[k].replace('alice', 'mallory')
                                            for k in audit_blocks.STRINGS
                                            if 'alice' in (rec[k] or '')})
    for f in m2['files']:
        if f['name'] == 'audit':
            f['sha256'] = hashlib.sha256(aud.read_bytes()).hexdigest()
            f['size'] = aud.stat().st_size
    (tmp_path / 'bk2' / 'MANIFEST.json').write_text(json.dumps(m2))
    r = gw.ctl('restore', tmp_path / 'bk2', '--config', gw.config_path)
    assert r.returncode == 1 and 'audit chain broken' in r.stderr, r.stderr
    assert _acls(gw) == before and _last_seq(gw) >= m['audit']['last_seq']
    assert not list(gw.dir.glob('*.pre-restore'))


def test_restore_is_refused_while_the_gateway_runs(gw, tmp_path):
    _backup(gw, tmp_path / 'bk')
    r = gw.ctl('restore', tmp_path / 'bk', '--config', gw.config_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f'running gateway (pid {gw.pid})' in r.stderr
    assert not list(gw.dir.glob('*.pre-restore'))


def test_restore_on_a_stopped_gateway_brings_the_policy_back(gw, pki, tmp_path):
    assert _get(gw, pki)[0] == 200
    m = _backup(gw, tmp_path / 'bk')
    gw.ctl_ok('acl', 'deny', 'alice', 'http', '/content/secret*', 'all',
              '--comment', 'after the backup')
    assert 'after the backup' in _acls(gw)
    gw.stop()
    # no options: every copy goes back where the manifest says it came from
    r = gw.ctl('restore', tmp_path / 'bk', db=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'after the backup' not in _acls(gw)
    # what was replaced is kept aside, with the ACL in it
    aside = gw.ctl('-d', gw.policy_db + '.pre-restore', 'acl', 'list', db=False)
    assert 'after the backup' in aside.stdout
    # the restored audit log verifies, and the gateway starts on it and goes on
    v = gw.audit('verify', '--key', gw.audit_pub, '--json')
    assert v.returncode == 0 and json.loads(v.stdout)['last_seq'] == m['audit']['last_seq']
    gw.start()
    assert _get(gw, pki)[0] == 200
    gw.stop()
    v = gw.audit('verify', '--key', gw.audit_pub, '--json')
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)['last_seq'] > m['audit']['last_seq']


def test_backup_needs_a_database_and_restore_a_manifest(tmp_path):
    ctl = [str(cg.BUILD / 'cpmgatectl')]
    env = {k: v for k, v in cg.sanitizer_env().items() if k != 'CPMGATE_DB'}
    r = subprocess.run(ctl + ['backup', tmp_path / 'bk'], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and 'name the databases' in r.stderr
    (tmp_path / 'empty').mkdir()
    r = subprocess.run(ctl + ['restore', tmp_path / 'empty', '--audit-db',
                              tmp_path / 'audit.db'], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and 'MANIFEST.json' in r.stderr
    # a configuration's databases that do not exist yet are skipped, said so
    conf = tmp_path / 'cpmgate.conf'
    conf.write_text('[gateway]\npolicy_db = p.db\naudit_db = /nonexistent/a.db\n')
    subprocess.run(ctl + ['-d', tmp_path / 'p.db', 'init'], check=True, env=env,
                   capture_output=True)
    r = subprocess.run(ctl + ['backup', tmp_path / 'bk', '--config', conf],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert 'no audit database yet' in r.stderr and 'no content database yet' in r.stderr
    m = json.loads((tmp_path / 'bk' / 'MANIFEST.json').read_text())
    assert [f['source'] for f in m['files']] == [str(tmp_path / 'p.db')]
