"""test_content.py — content validation on the HTTP gateway (SPEC section 6,
CMI 6.4) against the real nginx: self-contained uploads (Content-Manifest)
are verified before a byte is forwarded and their end is held until size and
hash match, so a refused upload leaves nothing stored; decoupled manifests are
answered by the gateway against the hash it recorded; content under a
signed-only path is served only once validated; hostile manifests are refused
without harm. Keys are made by the openssl tool and manifests by
`cpmgatectl manifest create`, as a user would."""

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

import cg

MANIFEST_TYPE = 'application/vnd.cpmgate.manifest+xml'


def keypair(d, name, opts=('-algorithm', 'ED25519')):
    priv, pub = d / f'{name}.key', d / f'{name}.pub'
    subprocess.run(['openssl', 'genpkey', *opts, '-out', str(priv)], check=True,
                   capture_output=True)
    subprocess.run(['openssl', 'pkey', '-in', str(priv), '-pubout', '-out', str(pub)],
                   check=True, capture_output=True)
    return priv, pub


@pytest.fixture(scope='module')
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp('keys')
    return {
        'alice': keypair(d, 'alice'),
        'alice-ec': keypair(d, 'alice-ec', ('-algorithm', 'EC', '-pkeyopt',
                                            'ec_paramgen_curve:P-256')),
        'alice-rsa': keypair(d, 'alice-rsa', ('-algorithm', 'RSA', '-pkeyopt',
                                              'rsa_keygen_bits:2048')),
        'bob': keypair(d, 'bob'),
        'stranger': keypair(d, 'stranger'),
        'dir': d,
    }


@pytest.fixture(scope='module')
def site():
    return '/ct' + uuid.uuid4().hex[:8]


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx, site, keys):
    g = module_gateway_factory({
        'listener content': cg.tls_listener(pki, 'http', 'nginx'),
        'upstream nginx': nginx.upstream(),
    })
    for who in ('alice', 'bob'):
        g.ctl_ok('principal', 'add', who)
        g.ctl_ok('cred', 'add', who, 'cert-name', f'email:{who}@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{site}/*', 'all')
    g.ctl_ok('acl', 'allow', 'bob', 'http', f'{site}/*', 'read')
    g.ctl_ok('key', 'add', 'alice', '--id', 'ak', '--file', keys['alice'][1])
    g.ctl_ok('key', 'add', 'alice', '--id', 'ak-ec', '--file', keys['alice-ec'][1])
    g.ctl_ok('key', 'add', 'alice', '--id', 'ak-rsa', '--file', keys['alice-rsa'][1])
    g.ctl_ok('key', 'add', 'bob', '--id', 'bk', '--file', keys['bob'][1])
    g.ctl_ok('require-signed', 'add', f'{site}/signed/*')
    g.start()
    return g


def manifest(g, keys, key, key_id, path, content):
    """The base64 manifest `cpmgatectl manifest create` makes for content."""
    f = keys['dir'] / ('c-' + uuid.uuid4().hex)
    f.write_bytes(content)
    r = g.ctl('manifest', 'create', '--key', keys[key][0], '--key-id', key_id,
              '--path', path, '--file', f, db=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def reencode(b64, edit):
    xml = base64.b64decode(b64).decode()
    return base64.b64encode(edit(xml).encode()).decode()


def put(g, pki, path, body, manifest_b64=None, who='alice', extra=None):
    h = dict(extra or {})
    if manifest_b64 is not None:
        h['Content-Manifest'] = manifest_b64
    return cg.https(g.addr('content'), cg.client_context(pki, who), 'PUT', path,
                    body=body, headers=h, timeout=30)


def get(g, pki, path, who='alice'):
    return cg.https(g.addr('content'), cg.client_context(pki, who), 'GET', path)


def post_manifest(g, pki, path, xml, who='alice'):
    return cg.https(g.addr('content'), cg.client_context(pki, who), 'POST', path,
                    body=xml, headers={'Content-Type': MANIFEST_TYPE})


def stored(nginx, path):
    """What nginx holds at path (straight from the backend), or None."""
    st, _, body = nginx.request('GET', path)
    return body if st == 200 else None


def chunked_put(g, pki, path, chunks, manifest_b64, who='alice', timeout=30):
    """A PUT with Transfer-Encoding: chunked (the client does not say the
    size up front); returns (status, body) of the answer, or None."""
    s = cg.tls_connect(g.addr('content'), cg.client_context(pki, who), timeout=timeout)
    try:
        head = (f'PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'
                f'Transfer-Encoding: chunked\r\nContent-Manifest: {manifest_b64}\r\n\r\n')
        s.sendall(head.encode())
        try:
            for c in chunks:
                s.sendall(b'%x\r\n%s\r\n' % (len(c), c))
            s.sendall(b'0\r\n\r\n')
        except (ssl.SSLError, OSError):
            pass
        data = cg.recv_all(s, timeout=timeout)
    finally:
        s.close()
    if not data.startswith(b'HTTP/1.1 '):
        return None
    head, _, body = data.partition(b'\r\n\r\n')
    return int(head.split()[1]), body


def audit_records(g, path):
    r = g.audit('export', '--format', 'jsonl')
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()
            if json.loads(x).get('resource') == path]


def wait_audit(g, path, pred, what):
    found = []

    def ok():
        found[:] = [r for r in audit_records(g, path) if pred(r)]
        return bool(found)
    cg.wait_until(ok, timeout=10, interval=0.2, what=what)
    return found[-1]


# ---------------------------------------------------------- self-contained --

@pytest.mark.parametrize('key,key_id,alg', [('alice', 'ak', 'ed25519'),
                                            ('alice-ec', 'ak-ec', 'ecdsa-p256-sha256'),
                                            ('alice-rsa', 'ak-rsa', 'rsa-pss-sha256')])
def test_self_contained_upload_is_stored_served_and_audited(gw, pki, nginx, site, keys,
                                                            key, key_id, alg):
    path = f'{site}/signed/{key_id}.bin'
    body = os.urandom(300000)
    m = manifest(gw, keys, key, key_id, path, body)
    put_st, _, resp = put(gw, pki, path, body, m)
    assert put_st in (201, 204), (put_st, resp)
    assert stored(nginx, path) == body
    # validated, so served under the signed-only path
    st, _, got = get(gw, pki, path)
    assert st == 200 and got == body
    rec = wait_audit(gw, path, lambda r: r['operation'] == 'PUT', 'the upload record')
    assert rec['content_sha256'] == hashlib.sha256(body).hexdigest()
    assert rec['key_id'] == key_id and rec['validation'] == 'valid'
    assert rec['result'] == str(put_st)


def test_self_contained_chunked_upload_is_stored(gw, pki, nginx, site, keys):
    path = f'{site}/plain/chunked.bin'
    body = os.urandom(200000)
    m = manifest(gw, keys, 'alice', 'ak', path, body)
    r = chunked_put(gw, pki, path, [body[i:i + 65536] for i in range(0, len(body), 65536)], m)
    assert r is not None and r[0] in (201, 204), r
    assert stored(nginx, path) == body


def refused_422(resp, *words):
    st, _, body = resp
    assert st == 422, (st, body)
    text = body.decode(errors='replace')
    for w in words:
        assert w in text, (w, text)


def test_one_changed_byte_is_refused_and_nothing_is_stored(gw, pki, nginx, site, keys):
    path = f'{site}/plain/changed.bin'
    body = bytearray(os.urandom(1 << 20))
    m = manifest(gw, keys, 'alice', 'ak', path, bytes(body))
    body[len(body) // 2] ^= 1
    refused_422(put(gw, pki, path, bytes(body), m), 'SHA-256')
    assert stored(nginx, path) is None
    rec = wait_audit(gw, path, lambda r: r['operation'] == 'PUT', 'the refused upload record')
    assert rec['result'] == '422' and rec['validation'] == 'hash-mismatch'
    assert rec['key_id'] == 'ak'
    assert rec['content_sha256'] == hashlib.sha256(bytes(body)).hexdigest()


def test_a_changed_last_byte_is_refused(gw, pki, nginx, site, keys):
    # the end of the body is what the gateway withholds: a change there must
    # still keep nginx from committing the file
    path = f'{site}/plain/last.bin'
    body = bytearray(os.urandom(100000))
    m = manifest(gw, keys, 'alice', 'ak', path, bytes(body))
    body[-1] ^= 0x80
    refused_422(put(gw, pki, path, bytes(body), m), 'SHA-256')
    assert stored(nginx, path) is None


def test_content_length_other_than_the_manifest_size_is_refused_up_front(gw, pki, nginx,
                                                                         site, keys):
    path = f'{site}/plain/short.bin'
    body = os.urandom(50000)
    m = manifest(gw, keys, 'alice', 'ak', path, body)
    refused_422(put(gw, pki, path, body[:-10], m), 'Content-Length', 'size')
    refused_422(put(gw, pki, path, body + b'x', m), 'Content-Length', 'size')
    assert stored(nginx, path) is None


def test_truncated_and_longer_chunked_bodies_are_refused(gw, pki, nginx, site, keys):
    path = f'{site}/plain/chunky.bin'
    body = os.urandom(150000)
    m = manifest(gw, keys, 'alice', 'ak', path, body)
    r = chunked_put(gw, pki, path, [body[:65536], body[65536:140000]], m)
    assert r is not None and r[0] == 422 and b'size' in r[1], r
    assert stored(nginx, path) is None
    r = chunked_put(gw, pki, path, [body[:100000], body[100000:], b'trailing bytes'], m)
    assert r is not None and r[0] == 422 and b'longer' in r[1], r
    assert stored(nginx, path) is None


def test_an_upload_over_existing_content_that_fails_keeps_the_old_content(gw, pki, nginx,
                                                                         site, keys):
    path = f'{site}/plain/keep.bin'
    old = os.urandom(40000)
    assert put(gw, pki, path, old)[0] in (201, 204)
    new = bytearray(os.urandom(40000))
    m = manifest(gw, keys, 'alice', 'ak', path, bytes(new))
    new[0] ^= 1
    refused_422(put(gw, pki, path, bytes(new), m), 'SHA-256')
    assert stored(nginx, path) == old


def test_wrong_key_and_other_principals_key_are_refused(gw, pki, nginx, site, keys):
    path = f'{site}/plain/keys.bin'
    body = os.urandom(20000)
    # signed by a key that is not the registered 'ak'
    forged = manifest(gw, keys, 'stranger', 'ak', path, body)
    refused_422(put(gw, pki, path, body, forged), 'signature')
    # a key registered for bob signs nothing for alice
    bobs = manifest(gw, keys, 'bob', 'bk', path, body)
    refused_422(put(gw, pki, path, body, bobs), 'signature', 'another principal')
    # an unknown key id
    unknown = manifest(gw, keys, 'alice', 'nokey', path, body)
    refused_422(put(gw, pki, path, body, unknown), 'signature')
    assert stored(nginx, path) is None


def test_signature_for_another_path_or_size_is_refused(gw, pki, nginx, site, keys):
    path = f'{site}/plain/replay.bin'
    body = os.urandom(30000)
    # a manifest for another path has no item for this one
    other = manifest(gw, keys, 'alice', 'ak', f'{site}/plain/other.bin', body)
    refused_422(put(gw, pki, path, body, other), 'no item')
    # the same signature with the item's path rewritten to this one
    replay = reencode(other, lambda x: x.replace(f'{site}/plain/other.bin', path))
    refused_422(put(gw, pki, path, body, replay), 'signature')
    # a signature for a longer content, with size and hash rewritten
    longer = body + b'more'
    m = manifest(gw, keys, 'alice', 'ak', path, longer)
    resized = reencode(m, lambda x: x.replace(f'size="{len(longer)}"', f'size="{len(body)}"')
                       .replace(hashlib.sha256(longer).hexdigest(),
                                hashlib.sha256(body).hexdigest()))
    refused_422(put(gw, pki, path, body, resized), 'signature')
    assert stored(nginx, path) is None


# --------------------------------------------------------------- decoupled --

def test_decoupled_upload_validates_what_was_recorded(gw, pki, nginx, site, keys):
    path = f'{site}/signed/decoupled.txt'
    body = b'pre-uploaded content\n' * 1000
    # a pre-upload without a manifest is accepted, but not served
    assert put(gw, pki, path, body)[0] in (201, 204)
    assert stored(nginx, path) == body
    st, _, why = get(gw, pki, path)
    assert st == 403 and b'not validated' in why
    rec = wait_audit(gw, path, lambda r: r['operation'] == 'PUT', 'the pre-upload record')
    assert rec['content_sha256'] == hashlib.sha256(body).hexdigest()
    xml = base64.b64decode(manifest(gw, keys, 'alice', 'ak', path, body))
    # bob may read but not write: no manifest from him
    st, _, _ = post_manifest(gw, pki, path, xml, who='bob')
    assert st == 403
    st, _, why = post_manifest(gw, pki, path, xml)
    assert st == 200, why
    st, _, got = get(gw, pki, path)
    assert st == 200 and got == body
    st, _, _ = get(gw, pki, path, who='bob')
    assert st == 200
    rec = wait_audit(gw, path, lambda r: r['operation'] == 'POST', 'the manifest record')
    assert rec['validation'] == 'valid' and rec['key_id'] == 'ak' and rec['result'] == '200'
    # the manifest itself never reached nginx
    st, _, _ = nginx.request('GET', path)
    assert st == 200
    # a new PUT clears the validated state
    assert put(gw, pki, path, body)[0] in (201, 204)
    assert get(gw, pki, path)[0] == 403
    assert post_manifest(gw, pki, path, xml)[0] == 200
    assert get(gw, pki, path)[0] == 200
    # and so does DELETE
    assert cg.https(gw.addr('content'), cg.client_context(pki, 'alice'), 'DELETE', path)[0] \
        in (200, 204)
    assert post_manifest(gw, pki, path, xml)[0] == 422


def test_decoupled_manifest_that_does_not_match_is_refused(gw, pki, nginx, site, keys):
    path = f'{site}/signed/mismatch.txt'
    body = os.urandom(5000)
    assert put(gw, pki, path, body)[0] in (201, 204)
    other = base64.b64decode(manifest(gw, keys, 'alice', 'ak', path, body[:-1] + b'?'))
    refused_422(post_manifest(gw, pki, path, other), 'differs')
    assert get(gw, pki, path)[0] == 403
    bobs = base64.b64decode(manifest(gw, keys, 'bob', 'bk', path, body))
    refused_422(post_manifest(gw, pki, path, bobs), 'signature')
    assert get(gw, pki, path)[0] == 403
    # nothing recorded there
    never = f'{site}/signed/never.txt'
    refused_422(post_manifest(gw, pki, never,
                              base64.b64decode(manifest(gw, keys, 'alice', 'ak', never, b'x'))),
                'no upload recorded')


def validated(gw, pki, keys, path, body):
    """path holds body and is validated (decoupled: PUT, then the manifest)."""
    assert put(gw, pki, path, body)[0] in (201, 204)
    xml = base64.b64decode(manifest(gw, keys, 'alice', 'ak', path, body))
    assert post_manifest(gw, pki, path, xml)[0] == 200
    assert get(gw, pki, path)[0] == 200
    return xml


@pytest.mark.parametrize('method', ['POST', 'PATCH', 'MKCOL', 'LOCK'])
def test_a_method_that_may_change_content_clears_the_validated_state(gw, pki, site, keys,
                                                                    method):
    path = f'{site}/signed/changed-by-{method.lower()}.txt'
    validated(gw, pki, keys, path, b'validated content\n')
    # whatever nginx makes of it (405, 409, 423 ...), the state is gone first
    cg.https(gw.addr('content'), cg.client_context(pki, 'alice'), method, path,
             body=b'x', headers={'Content-Type': 'application/octet-stream'})
    st, _, why = get(gw, pki, path)
    assert st == 403 and b'not validated' in why, (st, why)


def test_methods_that_leave_content_as_it_is_keep_the_validated_state(gw, pki, site, keys):
    path = f'{site}/signed/kept.txt'
    validated(gw, pki, keys, path, b'kept content\n')
    for method in ('GET', 'HEAD', 'OPTIONS', 'PROPFIND'):
        cg.https(gw.addr('content'), cg.client_context(pki, 'alice'), method, path,
                 headers={'Depth': '0'})
    assert get(gw, pki, path)[0] == 200


class HeldWriteLock:
    """Another process (the sqlite3 shell) holding a write transaction on
    a database until released."""

    def __init__(self, db):
        self.p = subprocess.Popen(['sqlite3', str(db)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.p.stdin.write(b"BEGIN IMMEDIATE;\nSELECT 'locked';\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == b'locked'

    def release(self):
        self.p.stdin.write(b'ROLLBACK;\n.quit\n')
        self.p.stdin.close()
        self.p.wait(timeout=10)


def nginx_lines(nginx, path):
    try:
        with open(nginx.access_log, 'rb') as f:
            return [x for x in f.read().splitlines() if path.encode() in x]
    except FileNotFoundError:
        return []


def test_a_write_whose_validated_state_cannot_be_cleared_is_refused(gw, pki, nginx, site,
                                                                    keys):
    path = f'{site}/signed/locked.txt'
    body = b'validated before the lock\n'
    validated(gw, pki, keys, path, body)
    fresh = f'{site}/signed/locked-new.txt'
    pending = f'{site}/signed/locked-pending.txt'
    assert put(gw, pki, pending, body)[0] in (201, 204)
    pending_xml = base64.b64decode(manifest(gw, keys, 'alice', 'ak', pending, body))
    seen = len(nginx_lines(nginx, path)), len(nginx_lines(nginx, fresh))
    lock = HeldWriteLock(gw.dir / 'content.db')
    try:
        # a decoupled manifest cannot be recorded either: 503, not validated
        st, _, why = post_manifest(gw, pki, pending, pending_xml)
        assert st == 503 and b'cannot be set' in why, (st, why)
        for method, target, data in (('PUT', fresh, b'new'), ('DELETE', path, None),
                                     ('PATCH', path, b'x'), ('POST', path, b'x')):
            st, h, why = cg.https(gw.addr('content'), cg.client_context(pki, 'alice'), method,
                                  target, body=data, timeout=30)
            assert st == 503 and b'cannot be cleared' in why, (method, st, why)
        # reads go on (WAL: a reader does not wait for the writer)
        assert get(gw, pki, path)[0] == 200
    finally:
        lock.release()
    # nginx never saw the refused writes
    time.sleep(0.5)
    assert (len(nginx_lines(nginx, path)), len(nginx_lines(nginx, fresh))) == \
        (seen[0] + 1, seen[1]), nginx_lines(nginx, path)
    assert stored(nginx, fresh) is None
    assert stored(nginx, path) == body
    # with the lock gone, writes clear the state again, manifests set it
    assert put(gw, pki, path, body)[0] in (201, 204)
    assert get(gw, pki, path)[0] == 403
    assert get(gw, pki, pending)[0] == 403
    assert post_manifest(gw, pki, pending, pending_xml)[0] == 200
    assert get(gw, pki, pending)[0] == 200
    assert gw.alive()


def test_a_locked_content_db_stalls_only_the_requests_that_need_it(gateway_factory, pki,
                                                                  nginx, site):
    # one worker: every connection shares the loop a blocking call would stall
    g = gateway_factory({
        'gateway': {'workers': '1'},
        'listener content': cg.tls_listener(pki, 'http', 'nginx'),
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{site}/*', 'all')
    g.start()
    plain = f'{site}/plain/while-locked.txt'
    assert nginx.request('PUT', plain, body=b'served meanwhile')[0] in (201, 204)
    waiting = {}

    def write():
        waiting['answer'] = cg.https(g.addr('content'), cg.client_context(pki, 'alice'), 'PUT',
                                     f'{site}/plain/locked-out.txt', body=b'x', timeout=30)
    lock = HeldWriteLock(g.dir / 'content.db')
    try:
        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.5)  # the PUT waits for content_db (busy timeout 5 s)
        t0 = time.monotonic()
        st, _, body = get(g, pki, plain)
        took = time.monotonic() - t0
        assert st == 200 and body == b'served meanwhile'
        assert took < 2, f'a GET waited {took:.1f} s behind a locked content_db'
        assert t.is_alive(), 'the PUT did not wait for content_db'
        t.join(timeout=30)
    finally:
        lock.release()
    st, _, why = waiting['answer']
    assert st == 503 and b'cannot be cleared' in why, (st, why)
    assert stored(nginx, f'{site}/plain/locked-out.txt') is None
    assert g.alive()


def test_unvalidated_content_stored_behind_the_gateway_is_not_served(gw, pki, nginx, site):
    # content that reached nginx some other way has no record at all
    path = f'{site}/signed/side-door.txt'
    st, _, _ = nginx.request('PUT', path, body=b'not through the gateway')
    assert st in (201, 204)
    st, _, why = get(gw, pki, path)
    assert st == 403 and b'signed-only' in why
    st, _, _ = cg.https(gw.addr('content'), cg.client_context(pki, 'alice'), 'HEAD', path)
    assert st == 403
    # outside the signed-only pattern the same kind of content is served
    plain = f'{site}/plain/side-door.txt'
    assert nginx.request('PUT', plain, body=b'ok')[0] in (201, 204)
    assert get(gw, pki, plain)[0] == 200


def test_require_signed_change_is_live(gw, pki, nginx, site):
    path = f'{site}/later/file.txt'
    assert put(gw, pki, path, b'content')[0] in (201, 204)
    assert get(gw, pki, path)[0] == 200
    gw.ctl_ok('require-signed', 'add', f'{site}/later/*')
    cg.wait_until(lambda: get(gw, pki, path)[0] == 403, timeout=5, interval=0.2,
                  what='the new signed-only path in force')
    gw.ctl_ok('require-signed', 'remove', f'{site}/later/*')
    cg.wait_until(lambda: get(gw, pki, path)[0] == 200, timeout=5, interval=0.2,
                  what='the signed-only path removed')


# ----------------------------------------------------------------- hostile --

NS = 'urn:cpmgate:manifest:1'
HOSTILE = {
    'billion-laughs': ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
                       + ''.join(f'<!ENTITY {chr(98 + i)} "' + f'&{chr(97 + i)};' * 10 + '">'
                                 for i in range(8))
                       + f']><manifest xmlns="{NS}">&i;</manifest>'),
    'external-entity': ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM '
                        '"file:///etc/passwd">]>'
                        f'<manifest xmlns="{NS}"><item path="&x;"/></manifest>'),
    'deep-nesting': f'<manifest xmlns="{NS}">' + '<a>' * 5000 + '</a>' * 5000 + '</manifest>',
    'not-the-schema': f'<manifest xmlns="{NS}"><item/></manifest>',
    'not-xml': 'this is not a manifest',
}


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_hostile_self_contained_manifests_are_refused(gw, pki, nginx, site, name):
    path = f'{site}/plain/hostile-{name}.bin'
    b64 = base64.b64encode(HOSTILE[name].encode()).decode()
    st, _, why = put(gw, pki, path, b'data', b64)
    assert st in (422, 431), (st, why)
    assert b'root:' not in why
    assert stored(nginx, path) is None
    assert gw.alive()


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_hostile_decoupled_manifests_are_refused(gw, pki, nginx, site, name):
    path = f'{site}/plain/hostile-dc-{name}.bin'
    assert put(gw, pki, path, b'data')[0] in (201, 204)
    st, _, why = post_manifest(gw, pki, path, HOSTILE[name].encode())
    assert st == 422, (st, why)
    assert b'root:' not in why
    assert gw.alive()


def utf16_with_doctype(b64):
    """A signed manifest re-encoded as UTF-16 with a DOCTYPE added: a byte
    search for '<!DOCTYPE' does not see it, the parser does."""
    xml = base64.b64decode(b64).decode()
    body = xml.split('?>', 1)[1] if xml.startswith('<?xml') else xml
    doc = ('<?xml version="1.0" encoding="UTF-16"?>'
           '<!DOCTYPE manifest [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body)
    data = doc.encode('utf-16')  # with a byte order mark
    assert b'<!DOCTYPE' not in data
    return data


def test_utf16_manifest_with_a_doctype_is_refused_and_nothing_stored(gw, pki, nginx, site,
                                                                     keys):
    path = f'{site}/signed/utf16.bin'
    body = b'utf-16 manifest content\n'
    m = manifest(gw, keys, 'alice', 'ak', path, body)
    evil = utf16_with_doctype(m)
    refused_422(put(gw, pki, path, body, base64.b64encode(evil).decode()), 'DOCTYPE')
    assert stored(nginx, path) is None
    # decoupled: the content is there, the manifest is refused, it stays unserved
    assert put(gw, pki, path, body)[0] in (201, 204)
    refused_422(post_manifest(gw, pki, path, evil), 'DOCTYPE')
    st, _, why = get(gw, pki, path)
    assert st == 403 and b'not validated' in why
    # the same manifest in UTF-16 without the DOCTYPE is accepted
    plain = base64.b64decode(m).decode().encode('utf-16')
    assert post_manifest(gw, pki, path, plain)[0] == 200
    assert get(gw, pki, path)[0] == 200


def test_invalid_base64_manifest_is_refused(gw, pki, nginx, site):
    path = f'{site}/plain/b64.bin'
    for bad in ('!!!not base64!!!', 'QUJD=', 'QU JD', '%%%%'):
        refused_422(put(gw, pki, path, b'data', bad), 'manifest')
    assert stored(nginx, path) is None


def test_a_100_mb_manifest_is_refused_without_harm(gw, pki, nginx, site):
    path = f'{site}/plain/huge-manifest.bin'
    assert put(gw, pki, path, b'data')[0] in (201, 204)
    size = 100 << 20
    s = cg.tls_connect(gw.addr('content'), cg.client_context(pki, 'alice'), timeout=30)
    status = None
    try:
        s.sendall((f'POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n'
                   f'Content-Type: {MANIFEST_TYPE}\r\nContent-Length: {size}\r\n\r\n').encode())
        chunk = b'<manifest xmlns="urn:cpmgate:manifest:1">'.ljust(1 << 20, b' ')
        try:
            for _ in range(100):
                s.sendall(chunk)
        except (ssl.SSLError, OSError):
            pass  # the gateway answered and closed before the end: fine
        data = cg.recv_all(s, timeout=30)
        if data.startswith(b'HTTP/1.1 '):
            status = int(data.split()[1])
    finally:
        s.close()
    assert status in (413, 422), status
    # a 100 MB header is refused before any of it is parsed as a manifest
    big = base64.b64encode(b'<' * (1 << 20)).decode()
    r = cg.http_request(gw.addr('content'), 'PUT', f'{site}/plain/huge-header.bin',
                        ctx=cg.client_context(pki, 'alice'), body=b'x',
                        headers={'Content-Manifest': big})
    assert r is None or r[0] in (413, 422, 431), r[:2] if r else r
    assert stored(nginx, f'{site}/plain/huge-header.bin') is None
    assert gw.alive()
    assert stored(nginx, path) == b'data'
    assert get(gw, pki, path)[0] == 200
