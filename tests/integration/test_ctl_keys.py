"""cpmgatectl key / require-signed / peer / manifest (SPEC section 9) against
a real policy database, with keys made by the openssl command-line tool and
manifest signatures checked independently by `openssl dgst` / `pkeyutl`.
Self-contained: subprocess + tmp_path; binary $CPMGATE_BUILD/cpmgatectl."""

import base64
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import pg

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get('CPMGATE_BUILD', REPO / 'build')).resolve()
CTL = BUILD / 'cpmgatectl'
SANITIZER = ('AddressSanitizer', 'LeakSanitizer', 'runtime error:')

ALGS = {
    'ecdsa-p256-sha256': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    'ed25519': ['-algorithm', 'ED25519'],
    'rsa-pss-sha256': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
}
UNSUPPORTED = {
    'p384': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    'rsa1024': ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024'],
    'ed448': ['-algorithm', 'ED448'],
}


def run(*args, db=None, check=None):
    cmd = [str(CTL)] + (['-d', str(db)] if db else []) + [str(a) for a in args]
    env = dict(os.environ)
    env.pop('CPMGATE_DB', None)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    for pat in SANITIZER:
        assert pat not in p.stderr, p.stderr
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout, p.stderr)
    if p.returncode != 0:
        # one line on stderr, always
        assert p.stderr.count('\n') <= 1 or p.returncode == 2, p.stderr
    return p


def keypair(d, name, opts):
    priv, pub = d / f'{name}.key', d / f'{name}.pub'
    if not priv.exists():
        subprocess.run(['openssl', 'genpkey', *opts, '-out', str(priv)], check=True,
                       capture_output=True)
        subprocess.run(['openssl', 'pkey', '-in', str(priv), '-pubout', '-out', str(pub)],
                       check=True, capture_output=True)
    return priv, pub


@pytest.fixture
def db(any_policy_db):
    """alice and bob, on each backend."""
    path = any_policy_db
    run('init', db=path, check=0)
    run('principal', 'add', 'alice', db=path, check=0)
    run('principal', 'add', 'bob', db=path, check=0)
    return path


def counts(db):
    return tuple(int(pg.rows(db, f'SELECT count(*) FROM {t}')[0][0])
                 for t in ('pubkey', 'require_signed', 'peer', 'policy_log'))


def log_ops(db):
    return [r[0] for r in pg.rows(db, 'SELECT operation FROM policy_log ORDER BY seq')]


# ------------------------------------------------------------------- keys --

def test_key_add_detects_algorithm_and_lists(db, tmp_path):
    for alg, opts in ALGS.items():
        _, pub = keypair(tmp_path, alg, opts)
        p = run('key', 'add', 'alice', '--id', f'alice-{alg}', '--file', pub, db=db, check=0)
        assert alg in p.stdout
    keys = json.loads(run('key', 'list', '--json', db=db, check=0).stdout)
    assert {k['key_id']: k['alg'] for k in keys} == {f'alice-{a}': a for a in ALGS}
    assert all(k['principal'] == 'alice' and 'BEGIN PUBLIC KEY' in k['pem'] for k in keys)
    text = run('key', 'list', db=db, check=0).stdout
    assert 'alice-ed25519\talice\ted25519' in text
    assert log_ops(db).count('key add') == 3


@pytest.mark.parametrize('name', sorted(UNSUPPORTED))
def test_unsupported_key_types_are_refused(db, tmp_path, name):
    _, pub = keypair(tmp_path, name, UNSUPPORTED[name])
    before = counts(db)
    p = run('key', 'add', 'alice', '--id', 'k', '--file', pub, db=db, check=1)
    assert 'not supported' in p.stderr
    assert counts(db) == before


def test_key_refusals_change_nothing(db, tmp_path):
    priv, pub = keypair(tmp_path, 'ed', ALGS['ed25519'])
    run('key', 'add', 'alice', '--id', 'k1', '--file', pub, db=db, check=0)
    before = counts(db)
    assert 'already exists' in run('key', 'add', 'bob', '--id', 'k1', '--file', pub,
                                   db=db, check=1).stderr
    assert 'unknown principal' in run('key', 'add', 'carol', '--id', 'k2', '--file', pub,
                                      db=db, check=1).stderr
    run('key', 'add', 'alice', '--id', 'bad id', '--file', pub, db=db, check=1)
    # a private key is not a public key file
    assert 'public key' in run('key', 'add', 'alice', '--id', 'k3', '--file', priv,
                               db=db, check=1).stderr
    junk = tmp_path / 'junk.pem'
    junk.write_text('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')
    run('key', 'add', 'alice', '--id', 'k4', '--file', junk, db=db, check=1)
    run('key', 'add', 'alice', '--id', 'k5', '--file', tmp_path / 'missing.pem', db=db, check=1)
    run('key', 'add', 'alice', '--id', 'k6', db=db, check=2)
    run('key', 'add', 'alice', '--id', 'k6', '--file', pub, '--bogus', 'x', db=db, check=2)
    run('key', 'remove', 'nope', db=db, check=1)
    assert counts(db) == before
    run('key', 'remove', 'k1', db=db, check=0)
    assert json.loads(run('key', 'list', '--json', db=db, check=0).stdout) == []
    assert log_ops(db)[-1] == 'key remove'


def test_removing_a_principal_removes_its_keys(db, tmp_path):
    _, pub = keypair(tmp_path, 'ed', ALGS['ed25519'])
    run('key', 'add', 'bob', '--id', 'bk', '--file', pub, db=db, check=0)
    run('principal', 'remove', 'bob', db=db, check=0)
    assert json.loads(run('key', 'list', '--json', db=db, check=0).stdout) == []


# --------------------------------------------------------- require-signed --

def test_require_signed_add_list_remove(db):
    run('require-signed', 'add', '/content/signed/*', db=db, check=0)
    run('require-signed', 'add', '/home/${user}/contracts/%', db=db, check=0)
    assert run('require-signed', 'list', db=db, check=0).stdout.split() == [
        '/content/signed/*', '/home/${user}/contracts/%']
    listed = json.loads(run('require-signed', 'list', '--json', db=db, check=0).stdout)
    assert [x['pattern'] for x in listed] == ['/content/signed/*', '/home/${user}/contracts/%']
    before = counts(db)
    run('require-signed', 'add', '/content/signed/*', db=db, check=1)
    assert 'pattern' in run('require-signed', 'add', '/a/${user', db=db, check=1).stderr
    run('require-signed', 'add', 'relative/*', db=db, check=1)
    run('require-signed', 'add', db=db, check=2)
    run('require-signed', 'remove', '/not/there', db=db, check=1)
    assert counts(db) == before
    run('require-signed', 'remove', '/content/signed/*', db=db, check=0)
    assert run('require-signed', 'list', db=db, check=0).stdout.split() == [
        '/home/${user}/contracts/%']
    assert 'require-signed remove' in log_ops(db)


# ------------------------------------------------------------------- peers --

def test_peer_add_list_remove(db):
    run('peer', 'add', 'Remote.Example.ORG', '--principal', 'bob', '--auth', 'required',
        db=db, check=0)
    run('peer', 'add', 'other.example', '--principal', 'alice', '--auth', 'optional',
        db=db, check=0)
    peers = json.loads(run('peer', 'list', '--json', db=db, check=0).stdout)
    assert [(p['domain'], p['principal'], p['auth']) for p in peers] == [
        ('other.example', 'alice', 'optional'), ('remote.example.org', 'bob', 'required')]
    before = counts(db)
    run('peer', 'add', 'remote.example.org', '--principal', 'bob', '--auth', 'required',
        db=db, check=1)
    run('peer', 'add', 'x.example', '--principal', 'nobody', '--auth', 'required', db=db, check=1)
    run('peer', 'add', 'x.example', '--principal', 'bob', '--auth', 'maybe', db=db, check=2)
    for bad in ('-bad.example', 'a..b', 'under_score.example', 'x' * 64 + '.example', ''):
        run('peer', 'add', bad, '--principal', 'bob', '--auth', 'required', db=db,
            check=1)
    run('peer', 'remove', 'nowhere.example', db=db, check=1)
    assert counts(db) == before
    run('peer', 'remove', 'REMOTE.example.org', db=db, check=0)
    peers = json.loads(run('peer', 'list', '--json', db=db, check=0).stdout)
    assert [p['domain'] for p in peers] == ['other.example']
    assert 'peer remove' in log_ops(db)


# ---------------------------------------------------------------- manifest --

def signed_bytes(path, size, sha):
    return f'cpmgate-manifest-v1\n{path}\n{size}\n{sha}\n'.encode()


def openssl_verifies(alg, pub, msg, sig, d):
    (d / 'msg').write_bytes(msg)
    (d / 'sig').write_bytes(sig)
    if alg == 'ed25519':
        cmd = ['openssl', 'pkeyutl', '-verify', '-pubin', '-inkey', str(pub), '-rawin',
               '-in', str(d / 'msg'), '-sigfile', str(d / 'sig')]
    else:
        cmd = ['openssl', 'dgst', '-sha256', '-verify', str(pub), '-signature', str(d / 'sig')]
        if alg == 'rsa-pss-sha256':
            cmd[3:3] = ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32',
                        '-sigopt', 'rsa_mgf1_md:sha256']
        cmd.append(str(d / 'msg'))
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.mark.parametrize('alg', sorted(ALGS))
def test_manifest_create_and_verify(db, tmp_path, alg):
    priv, pub = keypair(tmp_path, alg, ALGS[alg])
    run('key', 'add', 'alice', '--id', 'ak', '--file', pub, db=db, check=0)
    content = tmp_path / 'report.pdf'
    content.write_bytes(os.urandom(70000))
    path = '/content/alice/report 1.pdf'
    out = run('manifest', 'create', '--key', priv, '--key-id', 'ak', '--path', path,
              '--file', content, check=0).stdout.strip()
    xml = base64.b64decode(out, validate=True).decode()
    sha = hashlib.sha256(content.read_bytes()).hexdigest()
    m = re.search(r'<item path="([^"]*)" size="(\d+)" sha256="([0-9a-f]{64})" '
                  r'key-id="ak" alg="([a-z0-9-]+)">([A-Za-z0-9+/=]+)</item>', xml)
    assert m, xml
    assert m.group(1) == path and m.group(2) == '70000' and m.group(3) == sha
    assert m.group(4) == alg
    # an independent verifier agrees on the signed bytes and parameters
    sig = base64.b64decode(m.group(5))
    assert openssl_verifies(alg, pub, signed_bytes(path, 70000, sha), sig, tmp_path)
    assert not openssl_verifies(alg, pub, signed_bytes('/content/other', 70000, sha), sig,
                                tmp_path)
    mf = tmp_path / 'report.manifest'
    mf.write_text(out + '\n')
    # offline with the public key, as a file and as the text itself
    assert 'valid:' in run('manifest', 'verify', '--file', content, '--manifest', mf,
                           '--pub', pub, check=0).stdout
    run('manifest', 'verify', '--file', content, '--manifest', out, '--pub', pub, check=0)
    # with the policy database, which names the principal
    v = json.loads(run('manifest', 'verify', '--file', content, '--manifest', mf,
                       '--principal', 'alice', '--json', db=db, check=0).stdout)
    assert v['valid'] and v['principal'] == 'alice' and v['alg'] == alg and v['path'] == path
    # a key signs only for its own principal
    assert 'belongs to alice' in run('manifest', 'verify', '--file', content, '--manifest', mf,
                                     '--principal', 'bob', db=db, check=1).stderr
    # other content, another path, a tampered manifest, another key
    other = tmp_path / 'other.pdf'
    other.write_bytes(content.read_bytes()[:-1] + b'x')
    assert 'SHA-256' in run('manifest', 'verify', '--file', other, '--manifest', mf,
                            '--pub', pub, check=1).stderr
    run('manifest', 'verify', '--file', content, '--manifest', mf, '--path', '/content/x',
        '--pub', pub, check=1)
    forged = xml.replace(path, '/content/alice/other.pdf')
    (tmp_path / 'forged.xml').write_text(forged)
    assert 'signature is invalid' in run(
        'manifest', 'verify', '--file', content, '--manifest', tmp_path / 'forged.xml',
        '--path', '/content/alice/other.pdf', '--pub', pub, check=1).stderr
    _, pub2 = keypair(tmp_path, alg + '-2', ALGS[alg])
    run('manifest', 'verify', '--file', content, '--manifest', mf, '--pub', pub2, check=1)


def test_manifest_create_refuses_bad_input(tmp_path):
    priv, _ = keypair(tmp_path, 'ed', ALGS['ed25519'])
    f = tmp_path / 'f'
    f.write_bytes(b'hello')
    base = ['manifest', 'create', '--key', priv, '--key-id', 'k', '--file', f]
    run(*base, '--path', 'relative', check=1)
    run(*base, '--path', '/a/../b', check=1)
    run(*base, check=2)
    run('manifest', 'create', '--key', f, '--key-id', 'k', '--file', f, '--path', '/a', check=1)
    p384, _ = keypair(tmp_path, 'p384', UNSUPPORTED['p384'])
    run('manifest', 'create', '--key', p384, '--key-id', 'k', '--file', f, '--path', '/a',
        check=1)
    run('manifest', 'verify', '--file', f, '--manifest', 'QUJD', check=1)  # no key source


@pytest.mark.parametrize('hostile,why', [
    ('<!DOCTYPE m [<!ENTITY a "a"><!ENTITY b "&a;&a;&a;&a;">]>'
     '<manifest xmlns="urn:cpmgate:manifest:1">&b;</manifest>', 'DOCTYPE'),
    ('<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     '<manifest xmlns="urn:cpmgate:manifest:1">&x;</manifest>', 'DOCTYPE'),
    ('<manifest xmlns="urn:cpmgate:manifest:1"><item/></manifest>', 'schema'),
    ('<manifest xmlns="urn:cpmgate:manifest:1">' + '<a>' * 3000, 'manifest'),
])
def test_manifest_verify_refuses_hostile_manifests(tmp_path, hostile, why):
    _, pub = keypair(tmp_path, 'ed', ALGS['ed25519'])
    f = tmp_path / 'f'
    f.write_bytes(b'x')
    m = tmp_path / 'm.xml'
    m.write_text(hostile)
    p = run('manifest', 'verify', '--file', f, '--manifest', m, '--pub', pub, check=1)
    assert why in p.stderr and 'root:' not in p.stderr
