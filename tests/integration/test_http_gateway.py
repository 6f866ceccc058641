"""test_http_gateway.py — the HTTP gateway in front of the real nginx
(SPEC sections 3, 4, 5, 10): rights per method, refusals with their exact
error bodies, the path-bypass table (none may reach the denied file),
request smuggling refused before nginx sees a byte, keep-alive and
pipelining, PROPFIND depth rules and filtering, Destination rewriting,
plaintext listeners, limits (413, 431, 408)."""

import json
import re
import socket
import ssl
import subprocess
import time
import uuid

import pytest

import cg

SECRET = b'this is the secret file, never to be served\n'
PUBLIC = b'public file\n'
TXID = re.compile(r'^[0-9a-f]{16}\.\d+$')


@pytest.fixture(scope='module')
def site(nginx):
    """A private tree on the shared nginx: /<base>/public/a.txt and
    /<base>/secret/a.txt, written straight to nginx."""
    base = '/gw' + uuid.uuid4().hex[:8]
    for path, body in ((f'{base}/public/a.txt', PUBLIC), (f'{base}/secret/a.txt', SECRET),
                       (f'{base}/public/sub/b.txt', PUBLIC)):
        st, _, _ = nginx.request('PUT', path, body=body)
        assert st in (201, 204), st
    return base


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx, site):
    content_port = cg.free_port()
    g = module_gateway_factory({
        'listener content': {
            'protocol': 'http', 'listen': f'127.0.0.1:{content_port}', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert, digest, saml',
            'digest_realm': 'content@example.com', 'upstream': 'nginx'},
        'listener limited': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert', 'upstream': 'nginx',
            'max_body': '1000', 'max_headers': '10', 'max_header_bytes': '2048',
            'client_timeout': '2'},
        'listener plain': {'protocol': 'http', 'tls': 'none', 'insecure': 'reject'},
        'listener redirect': {
            'protocol': 'http', 'tls': 'none', 'insecure': 'redirect',
            'redirect_to': f'https://localhost:{content_port}'},
        'upstream nginx': nginx.upstream(),
        'saml': {'idp_certificate': pki.idp_cert, 'issuer': 'https://idp.example.com/',
                 'audience': 'https://gw.example.com/', 'clock_skew': '60'},
    })
    for name in ('alice', 'bob'):
        g.ctl_ok('principal', 'add', name)
        g.ctl_ok('cred', 'add', name, 'cert-name', f'email:{name}@example.com')
    g.ctl_ok('acl', 'allow', 'alice', 'http', f'{site}/*', 'all')
    g.ctl_ok('acl', 'deny', 'alice', 'http', f'{site}/secret*', 'all')
    g.ctl_ok('acl', 'allow', 'bob', 'http', f'{site}/public/*', 'read,list')
    return g.start()


def ctx_for(pki, name='alice'):
    return cg.client_context(pki, name)


def raw(gw, pki, data, name='alice', listener='content', timeout=10):
    """Send raw bytes on one TLS connection, read until the gateway closes
    (or timeout); returns the bytes received."""
    s = cg.tls_connect(gw.addr(listener), ctx_for(pki, name), timeout=timeout)
    try:
        s.sendall(data)
        return cg.recv_all(s, timeout=timeout)
    finally:
        s.close()


def parse_responses(data, head_request=False):
    """Every response in data: [(status, headers, body)]."""
    out = []
    while data:
        head, sep, rest = data.partition(b'\r\n\r\n')
        if not sep:
            break
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(':')
            hdrs.setdefault(k.strip().lower(), v.strip())
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b''
        elif 'content-length' in hdrs:
            n = int(hdrs['content-length'])
            body, rest = rest[:n], rest[n:]
        elif 'chunked' in hdrs.get('transfer-encoding', ''):
            body = b''
            while True:
                line, _, rest = rest.partition(b'\r\n')
                size = int(line.split(b';')[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b'\r\n')
                    break
                body += rest[:size]
                rest = rest[size + 2:]
        else:
            body, rest = rest, b''
        out.append((status, hdrs, body))
        data = rest
    return out


def req(gw, pki, method, path, name='alice', body=None, headers=None, listener='content'):
    return cg.https(gw.addr(listener), ctx_for(pki, name), method, path, body=body,
                    headers=headers)


def nginx_log_size(nginx):
    try:
        with open(nginx.access_log, 'rb') as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def quiet_nginx_log_size(nginx):
    """The access log's size once nginx has logged what earlier tests sent
    (it writes a line after the response, which the client may already
    have read)."""
    size = nginx_log_size(nginx)
    while True:
        time.sleep(0.2)
        now = nginx_log_size(nginx)
        if now == size:
            return size
        size = now


# ------------------------------------------------------------- basics --

def test_get_allowed_is_served_with_transaction_id(gw, pki, site):
    st, h, body = req(gw, pki, 'GET', f'{site}/public/a.txt')
    assert st == 200 and body == PUBLIC
    assert TXID.match(h['x-transaction-id']), h


def test_get_denied_is_403_with_the_exact_error_body(gw, pki, site):
    st, h, body = req(gw, pki, 'GET', f'{site}/secret/a.txt')
    assert st == 403
    assert h['content-type'].startswith('text/plain')
    txid = h['x-transaction-id']
    assert body.decode() == (f'403 Forbidden: read denied on "{site}/secret/a.txt" '
                             f'(txid {txid})\n')
    assert SECRET not in body


def test_refusal_is_audited_with_its_rule(gw, pki, site):
    st, h, _ = req(gw, pki, 'GET', f'{site}/secret/a.txt')
    assert st == 403
    txid = h['x-transaction-id']
    deadline = time.time() + 10
    lines = []
    while not lines and time.time() < deadline:
        out = gw.audit('export', '--format', 'jsonl').stdout
        lines = [ln for ln in out.splitlines() if f'"txid":"{txid}"' in ln]
        time.sleep(0.2)
    assert len(lines) == 1
    rec = lines[0]
    assert '"decision":"deny"' in rec and '"result":"403"' in rec
    assert f'"resource":"{site}/secret/a.txt"' in rec and '"operation":"GET"' in rec
    assert re.search(r'"rule_id":\d+', rec), rec


def test_answer_the_acl_did_not_decide_is_audited_as_error(gw, pki, site):
    # PROPFIND without Depth (infinity) is refused before any rule is read,
    # and a request for a path outside every rule's reach is the ACL's:
    # only the second may say deny
    st, h, _ = req(gw, pki, 'PROPFIND', f'{site}/public/')
    assert st == 403
    txid = h['x-transaction-id']

    def record():
        out = gw.audit('export', '--format', 'jsonl').stdout
        recs = [json.loads(ln) for ln in out.splitlines() if f'"txid":"{txid}"' in ln]
        return recs[0] if recs else None
    rec = cg.wait_until(record, timeout=10, what='audit record of the PROPFIND')
    assert rec['decision'] == 'error' and rec['result'] == '403', rec
    assert rec['rule_id'] is None and 'Depth' in (rec['reason'] or ''), rec


def test_304_is_framed_without_a_body(gw, pki, site):
    etag = req(gw, pki, 'GET', f'{site}/public/a.txt')[1]['etag']
    data = raw(gw, pki, f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'
                        f'If-None-Match: {etag}\r\n\r\n'
                        f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'
                        'Connection: close\r\n\r\n'.encode())
    first, _, rest = data.partition(b'\r\n\r\n')
    assert first.startswith(b'HTTP/1.1 304'), first
    assert rest.startswith(b'HTTP/1.1 200') and rest.endswith(PUBLIC), rest[:100]


def test_backend_redirect_points_back_at_the_gateway(gw, pki, site):
    # nginx redirects a collection without its slash to itself (its port)
    port = gw.port('content')
    st, h, _ = req(gw, pki, 'GET', f'{site}/public', headers={'Host': f'localhost:{port}'})
    assert st == 301
    assert h['location'] == f'https://localhost:{port}{site}/public/'


def test_http_1_0_client_is_served_and_closed(gw, pki, site):
    data = raw(gw, pki, f'GET {site}/public/a.txt HTTP/1.0\r\n\r\n'.encode())
    head, _, body = data.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200'), head
    assert body == PUBLIC
    assert b'Transfer-Encoding' not in head


def test_backend_404_is_passed_through(gw, pki, site):
    st, h, _ = req(gw, pki, 'GET', f'{site}/public/none.txt')
    assert st == 404 and TXID.match(h['x-transaction-id'])


def test_head_is_framed_without_a_body(gw, pki, site):
    data = raw(gw, pki, f'HEAD {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n'
                        f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'
                        'Connection: close\r\n\r\n'.encode())
    # the HEAD answer keeps Content-Length but carries no body, so the
    # second answer starts right after its head
    head, _, rest = data.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200')
    assert b'Content-Length: %d' % len(PUBLIC) in head
    assert rest.startswith(b'HTTP/1.1 200'), rest[:80]
    assert rest.endswith(PUBLIC)


# --------------------------------------------------- methods and rights --

def test_alice_write_methods_are_allowed(gw, pki, site, nginx):
    p = f'{site}/public/w-{uuid.uuid4().hex[:6]}'
    assert req(gw, pki, 'MKCOL', p + '/')[0] == 201
    assert req(gw, pki, 'PUT', p + '/f.txt', body=b'data')[0] in (201, 204)
    st, _, body = req(gw, pki, 'GET', p + '/f.txt')
    assert (st, body) == (200, b'data')
    dest = f'https://localhost:{gw.port("content")}{p}/g.txt'
    assert req(gw, pki, 'COPY', p + '/f.txt', headers={'Destination': dest})[0] in (201, 204)
    assert (nginx.root / p.lstrip('/') / 'g.txt').read_bytes() == b'data'
    dest2 = f'https://localhost:{gw.port("content")}{p}/h.txt'
    assert req(gw, pki, 'MOVE', p + '/g.txt', headers={'Destination': dest2})[0] in (201, 204)
    assert (nginx.root / p.lstrip('/') / 'h.txt').exists()
    assert req(gw, pki, 'DELETE', p + '/h.txt')[0] == 204
    assert req(gw, pki, 'OPTIONS', f'{site}/')[0] == 200


def test_read_only_principal_cannot_write(gw, pki, site):
    p = f'{site}/public/a.txt'
    assert req(gw, pki, 'GET', p, name='bob')[0] == 200
    for method, kw in (('PUT', {'body': b'x'}), ('DELETE', {}), ('MKCOL', {}),
                       ('PROPPATCH', {'body': b''}), ('LOCK', {'body': b''}),
                       ('POST', {'body': b'x'})):
        st, h, body = req(gw, pki, method, p if method != 'MKCOL' else f'{site}/public/n/',
                          name='bob', **kw)
        assert st == 403, (method, st, body)
        assert b'denied' in body and h['x-transaction-id'] in body.decode()


def test_read_only_principal_outside_its_rule_is_refused(gw, pki, site):
    assert req(gw, pki, 'GET', f'{site}/secret/a.txt', name='bob')[0] == 403


def test_unknown_method_gets_405_with_allow(gw, pki, site):
    for m in ('TRACE', 'CONNECTX', 'SEARCH'):
        st, h, body = req(gw, pki, m, f'{site}/public/a.txt')
        assert st == 405, m
        assert 'PROPFIND' in h['allow'] and 'OPTIONS' in h['allow']


def test_copy_out_of_the_denied_tree_is_refused(gw, pki, site, nginx):
    port = gw.port('content')
    st, _, body = req(gw, pki, 'COPY', f'{site}/secret/a.txt',
                      headers={'Destination': f'https://localhost:{port}{site}/public/leak.txt'})
    assert st == 403
    assert not (nginx.root / site.lstrip('/') / 'public' / 'leak.txt').exists()


def test_copy_into_the_denied_tree_is_refused(gw, pki, site):
    port = gw.port('content')
    st, _, _ = req(gw, pki, 'COPY', f'{site}/public/a.txt',
                   headers={'Destination': f'https://localhost:{port}{site}/secret/x.txt'})
    assert st == 403


def test_move_of_a_collection_with_a_denied_subtree_is_refused(gw, pki, site, nginx):
    port = gw.port('content')
    st, _, body = req(gw, pki, 'MOVE', f'{site}/',
                      headers={'Destination': f'https://localhost:{port}/elsewhere-{site[3:]}/'})
    assert st == 403, body
    assert (nginx.root / site.lstrip('/') / 'secret' / 'a.txt').exists()


def test_destination_on_another_host_is_502(gw, pki, site):
    st, _, _ = req(gw, pki, 'COPY', f'{site}/public/a.txt',
                   headers={'Destination': f'https://evil.example{site}/public/c.txt'})
    assert st == 502


def curl_alice(gw, pki, method, path, headers=()):
    """curl with alice's certificate: (status, body); status 0 when no
    answer came (the gateway closed or died)."""
    cert, key = pki.client('alice')
    port = gw.port('content')
    cmd = ['curl', '-sS', '--cacert', pki.ca, '--cert', cert, '--key', key,
           '--resolve', f'localhost:{port}:127.0.0.1', '-o', '-', '-w', '\n%{http_code}',
           '-X', method]
    for h in headers:
        cmd += ['-H', h]
    p = subprocess.run(cmd + [f'https://localhost:{port}{path}'], capture_output=True,
                       timeout=30)
    body, _, code = p.stdout.rpartition(b'\n')
    return int(code or 0), body


def still_serving(gw, pki):
    assert gw.alive(), gw.sanitizer_report() or cg.tail(gw.log_path)
    assert req(gw, pki, 'GET', '/content/index.html')[0] in (200, 403)


def colon_files(nginx):
    return [p for p in nginx.root.rglob('*') if p.name.startswith(':::')]


def test_copy_with_a_destination_that_grows_threefold_is_judged_not_overflowed(
        gw, pki, site, nginx):
    # ':' is canonical as "%3A": 4,001 decoded bytes become 12,001; the
    # source is alice's, the root is not, so the ACL refuses the target
    st, body = curl_alice(gw, pki, 'COPY', f'{site}/public/a.txt',
                          ['Destination: /' + ':' * 4000])
    assert st == 403, (st, body[:200])
    assert b'write denied on "/:::' in body
    still_serving(gw, pki)
    assert colon_files(nginx) == []


def test_destination_longer_than_the_path_limit_is_400_before_forwarding(
        gw, pki, site, nginx):
    port = gw.port('content')
    for dest in ('/' + ':' * 5000,
                 f'https://localhost:{port}{site}/public/' + '%3A' * 1400):
        st, body = curl_alice(gw, pki, 'MOVE', f'{site}/public/a.txt',
                              ['Destination: ' + dest])
        assert st == 400, (st, body[:200])
        assert b'Destination too long' in body
    still_serving(gw, pki)
    assert (nginx.root / site.lstrip('/') / 'public' / 'a.txt').read_bytes() == PUBLIC
    assert colon_files(nginx) == []


def test_if_header_with_long_tagged_lists_is_rewritten_within_bounds(gw, pki, site, nginx):
    port = gw.port('content')
    tag = f'<https://localhost:{port}{site}/public/' + ':' * 3000 + '>'
    lists = ' '.join(f'{tag} (<urn:uuid:{uuid.uuid4()}> ["etag{i}"])' for i in range(3))
    st, body = curl_alice(gw, pki, 'COPY', f'{site}/public/a.txt',
                          [f'Destination: {site}/public/' + ':' * 3000, 'If: ' + lists])
    # the rewritten head reaches nginx, whose own header limit answers;
    # whatever it says, nothing was copied and the gateway lives
    assert 400 <= st < 600, (st, body[:200])
    still_serving(gw, pki)
    # a tag whose path is over the limit is refused by the gateway itself
    long_tag = f'<https://localhost:{port}{site}/public/' + ':' * 4200 + '>'
    st, body = curl_alice(gw, pki, 'PUT', f'{site}/public/if.txt',
                          ['If: ' + long_tag + ' (<urn:uuid:x>)'])
    assert st == 400, (st, body[:200])
    assert b'If header resource tag too long' in body
    still_serving(gw, pki)
    assert colon_files(nginx) == []
    assert not (nginx.root / site.lstrip('/') / 'public' / 'if.txt').exists()


def test_destination_with_encoded_climb_is_judged_normalised(gw, pki, site, nginx):
    port = gw.port('content')
    dest = f'https://localhost:{port}{site}/public/%2e%2e/secret/y.txt'
    st, _, _ = req(gw, pki, 'COPY', f'{site}/public/a.txt', headers={'Destination': dest})
    assert st == 403
    assert not (nginx.root / site.lstrip('/') / 'secret' / 'y.txt').exists()


# ---------------------------------------------------------- PROPFIND --

PROPFIND_BODY = (b'<?xml version="1.0" encoding="utf-8"?>'
                 b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>')


def test_propfind_depth_infinity_and_missing_depth_are_refused(gw, pki, site):
    for hdrs in ({'Depth': 'infinity'}, {}):
        st, h, body = req(gw, pki, 'PROPFIND', f'{site}/', body=PROPFIND_BODY, headers=hdrs)
        assert st == 403
        assert b'propfind-finite-depth' in body


def test_propfind_depth_1_hides_what_may_not_be_listed(gw, pki, site, nginx):
    # straight from nginx the secret collection is listed
    st, _, direct = nginx.request('PROPFIND', f'{site}/', body=PROPFIND_BODY,
                                  headers={'Depth': '1'})
    assert st == 207 and b'/secret/' in direct
    st, h, body = req(gw, pki, 'PROPFIND', f'{site}/', body=PROPFIND_BODY,
                      headers={'Depth': '1'})
    assert st == 207, body
    assert b'/public/' in body
    assert b'/secret' not in body
    assert int(h['content-length']) == len(body)


def test_propfind_depth_0_needs_list(gw, pki, site):
    st, _, _ = req(gw, pki, 'PROPFIND', f'{site}/public/', name='bob', body=PROPFIND_BODY,
                   headers={'Depth': '0'})
    assert st == 207
    st, _, _ = req(gw, pki, 'PROPFIND', f'{site}/secret/', name='bob', body=PROPFIND_BODY,
                   headers={'Depth': '0'})
    assert st == 403


# ------------------------------------------------------- path bypasses --

BYPASS = [
    '/public/../secret/a.txt', '/public/%2e%2e/secret/a.txt', '/public/%2E%2E/secret/a.txt',
    '/public/.%2e/secret/a.txt', '/public/%2e./secret/a.txt', '/public/./../secret/a.txt',
    '/public/..%2fsecret/a.txt', '/public/..%2Fsecret/a.txt', '/public%2f..%2fsecret/a.txt',
    '/public/..\\secret/a.txt', '/public/..%5csecret/a.txt', '/public/%5c..%5csecret/a.txt',
    '/secret%00/a.txt', '/public/a.txt%00/../../secret/a.txt',
    '/public/%c0%ae%c0%ae/secret/a.txt', '/public/%e0%80%ae%e0%80%ae/secret/a.txt',
    '/public/%c0%af../secret/a.txt', '/public/%252e%252e/secret/a.txt',
    '/public/%25%32%65%25%32%65/secret/a.txt', '/public/..;/secret/a.txt',
    '/public/.../secret/a.txt', '//secret/a.txt', '/./secret/a.txt', '/%73ecret/a.txt',
    '/%73%65%63%72%65%74/a.txt', '/secret//a.txt', '/secret/./a.txt',
    '/public/x/../../secret/a.txt', '/public///..//secret/a.txt', '/SECRET/a.txt',
    '/secret/a.txt/.', '/secret/a.txt%20', '/secret/a.txt?x=/public/a.txt',
    '/public/a.txt/../../secret/a.txt', '/public/%2e%2e%2fsecret/a.txt',
    '/public/%0d%0a/../../secret/a.txt', '/secret/a.tx%74', '/public/../../../secret/a.txt',
]


@pytest.mark.parametrize('suffix', BYPASS)
def test_path_bypass_never_reaches_the_denied_file(gw, pki, site, suffix):
    path = site + suffix
    for target in (path, f'https://localhost{path}'):
        data = raw(gw, pki, f'GET {target} HTTP/1.1\r\nHost: localhost\r\n'
                            'Connection: close\r\n\r\n'.encode())
        assert SECRET not in data, (target, data[:200])
        assert data.startswith(b'HTTP/1.1 '), data[:100]
        status = int(data.split()[1])
        assert status in (400, 403, 404), (target, data[:200])


@pytest.mark.parametrize('suffix', [b for b in BYPASS if '\\' not in b][:12])
def test_path_bypass_with_curl_path_as_is(gw, pki, site, suffix):
    cert, key = pki.client('alice')
    port = gw.port('content')
    p = subprocess.run(['curl', '-sS', '--path-as-is', '--cacert', pki.ca, '--cert', cert,
                        '--key', key, '--resolve', f'localhost:{port}:127.0.0.1',
                        '-o', '-', '-w', '\n%{http_code}',
                        f'https://localhost:{port}{site}{suffix}'],
                       capture_output=True, timeout=30)
    body, _, code = p.stdout.rpartition(b'\n')
    assert SECRET not in body
    assert int(code) in (400, 403, 404), (suffix, code, body[:200])


def test_encoded_space_path_is_judged_decoded_and_forwarded_canonical(gw, pki, site, nginx):
    # a rule for "a b" also judges "a%20b": the file exists, bob may not read it
    st, _, _ = nginx.request('PUT', f'{site}/public/a%20b.txt', body=b'spaced')
    assert st in (201, 204)
    st, _, body = req(gw, pki, 'GET', f'{site}/public/a%20b.txt')
    assert (st, body) == (200, b'spaced')
    st, _, body = req(gw, pki, 'GET', f'{site}/public/a%20%62.txt')
    assert (st, body) == (200, b'spaced')


# --------------------------------------------------------- smuggling --

SMUGGLE = [
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n'
    'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4x\r\n\r\nabcd',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    'POST {p} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
    'GET {p} HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n',
    'GET {p} HTTP/1.1\nHost: localhost\r\n\r\n',
    'GET {p} HTTP/1.1\r\nHost: localhost\r\nX-A: b\rX-B: c\r\n\r\n',
    'GET {p} HTTP/1.1\r\nHost: localhost\r\nX-A: b\x00c\r\n\r\n',
    'GET http://evil.example{p} HTTP/1.1\r\nHost: localhost\r\n\r\n',
    'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n',
    'GET {p}\r\n\r\n',
    'GET {p} HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n',
]


@pytest.mark.parametrize('i', range(len(SMUGGLE)))
def test_ambiguous_request_is_400_and_never_reaches_nginx(gw, pki, site, nginx, i):
    before = quiet_nginx_log_size(nginx)
    data = raw(gw, pki, SMUGGLE[i].format(p=f'{site}/public/a.txt').encode())
    assert data.startswith(b'HTTP/1.1 400 '), data[:200]
    r = parse_responses(data)
    assert len(r) == 1 and TXID.match(r[0][1]['x-transaction-id'])
    assert r[0][2].startswith(b'400 Bad Request: ')
    time.sleep(0.2)
    assert nginx_log_size(nginx) == before, 'the backend saw the request'


def test_malformed_chunked_body_is_400_and_nothing_is_stored(gw, pki, site, nginx):
    # the head is forwarded as the body streams; a broken chunk drops the
    # backend connection before the end, so the upload is never committed
    p = f'{site}/public/broken-{uuid.uuid4().hex[:6]}'
    data = raw(gw, pki, f'PUT {p} HTTP/1.1\r\nHost: localhost\r\n'
                        'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n'.encode())
    assert data.startswith(b'HTTP/1.1 400'), data[:100]
    time.sleep(0.3)
    assert not (nginx.root / p.lstrip('/')).exists()


def test_identity_headers_from_the_client_do_not_authenticate(gw, pki, site):
    # bob claims to be alice through the header the backend trusts
    st, _, _ = req(gw, pki, 'GET', f'{site}/secret/a.txt', name='bob',
                   headers={'X-Authenticated-Principal': 'alice', 'X-Forwarded-For': '10.0.0.1'})
    assert st == 403


# ------------------------------------------ keep-alive and pipelining --

def test_pipelined_requests_are_answered_in_order(gw, pki, site):
    reqs = b''
    paths = [f'{site}/public/a.txt', f'{site}/secret/a.txt', f'{site}/public/sub/b.txt',
             f'{site}/public/none', f'{site}/public/a.txt']
    for i, p in enumerate(paths):
        last = 'Connection: close\r\n' if i == len(paths) - 1 else ''
        reqs += f'GET {p} HTTP/1.1\r\nHost: localhost\r\n{last}\r\n'.encode()
    r = parse_responses(raw(gw, pki, reqs))
    assert [x[0] for x in r] == [200, 403, 200, 404, 200]
    ids = [x[1]['x-transaction-id'] for x in r]
    sid = ids[0].split('.')[0]
    assert ids == [f'{sid}.{n}' for n in range(1, 6)]
    assert r[0][2] == PUBLIC and r[2][2] == PUBLIC and SECRET not in r[1][2]


def test_pipelined_uploads_and_reads_keep_their_bodies_apart(gw, pki, site, nginx):
    p = f'{site}/public/pipe-{uuid.uuid4().hex[:6]}.txt'
    data = (f'PUT {p} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 19\r\n\r\n'
            'GET /x HTTP/1.1\r\n\r\n'   # 19 bytes of body that look like a request
            f'GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n'
            f'PUT {p} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n'
            '3\r\nnew\r\n0\r\n\r\n'
            f'GET {p} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n').encode()
    r = parse_responses(raw(gw, pki, data))
    assert [x[0] for x in r][1::2] == [200, 200], r
    assert r[0][0] in (201, 204) and r[2][0] in (201, 204)
    assert r[1][2] == b'GET /x HTTP/1.1\r\n\r\n'
    assert r[3][2] == b'new'


def test_keep_alive_with_http_client(gw, pki, site):
    import http.client
    conn = http.client.HTTPSConnection('localhost', gw.port('content'), context=ctx_for(pki))
    conn.sock = cg.tls_connect(gw.addr('content'), ctx_for(pki))
    ids = set()
    for _ in range(5):
        conn.request('GET', f'{site}/public/a.txt')
        r = conn.getresponse()
        assert r.status == 200 and r.read() == PUBLIC
        ids.add(r.getheader('X-Transaction-Id').split('.')[0])
    conn.close()
    assert len(ids) == 1, 'all five on one connection'


def test_chunked_upload_and_expect_continue(gw, pki, site, nginx):
    p = f'{site}/public/chunked-{uuid.uuid4().hex[:6]}.txt'
    s = cg.tls_connect(gw.addr('content'), ctx_for(pki))
    try:
        s.sendall(f'PUT {p} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n'
                  'Expect: 100-continue\r\nConnection: close\r\n\r\n'.encode())
        first = cg.recv_until(s, b'\r\n\r\n')
        assert first.startswith(b'HTTP/1.1 100 Continue'), first
        s.sendall(b'5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n')
        data = cg.recv_all(s)
    finally:
        s.close()
    assert data.startswith(b'HTTP/1.1 201') or data.startswith(b'HTTP/1.1 204'), data[:100]
    assert (nginx.root / p.lstrip('/')).read_bytes() == b'hello world'


def test_refused_upload_gets_no_100_continue(gw, pki, site):
    data = raw(gw, pki, f'PUT {site}/secret/b.txt HTTP/1.1\r\nHost: localhost\r\n'
                        'Content-Length: 5\r\nExpect: 100-continue\r\n\r\n'.encode(),
               timeout=5)
    assert data.startswith(b'HTTP/1.1 403'), data[:100]


# --------------------------------------------------------- listeners --

def test_plaintext_listener_answers_426(gw, site):
    r = cg.http_plain(gw.addr('plain'), 'GET', f'{site}/public/a.txt')
    assert r[0] == 426 and PUBLIC not in r[2]
    assert TXID.match(r[1]['x-transaction-id'])
    assert b'426 Upgrade Required: ' in r[2]


def test_plaintext_redirect_listener_answers_308(gw, site):
    r = cg.http_plain(gw.addr('redirect'), 'GET', f'{site}/public/a%20x.txt?q=1')
    assert r[0] == 308
    assert r[1]['location'] == (f'https://localhost:{gw.port("content")}'
                                f'{site}/public/a%20x.txt?q=1')


def test_no_credentials_gets_401_with_challenges_in_order(gw, pki, site):
    ctx = cg.client_context(pki)   # no client certificate
    s = cg.tls_connect(gw.addr('content'), ctx)
    try:
        s.sendall(f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'
                  'Connection: close\r\n\r\n'.encode())
        data = cg.recv_all(s)
    finally:
        s.close()
    assert data.startswith(b'HTTP/1.1 401')
    chall = re.findall(rb'^WWW-Authenticate: (.*)\r$', data, re.M)
    assert len(chall) == 3, chall
    assert chall[0].startswith(b'Digest ') and b'algorithm=SHA-256' in chall[0]
    assert chall[1].startswith(b'Digest ') and b'algorithm=MD5' in chall[1]
    assert chall[2] == b'SAML'


# ------------------------------------------------------------ limits --

def test_body_over_max_body_is_413(gw, pki, site):
    data = raw(gw, pki, f'PUT {site}/public/big HTTP/1.1\r\nHost: localhost\r\n'
                        'Content-Length: 5000\r\n\r\n'.encode() + b'x' * 5000,
               listener='limited')
    assert data.startswith(b'HTTP/1.1 413'), data[:100]


def test_chunked_body_over_max_body_is_413_and_not_stored(gw, pki, site, nginx):
    p = f'{site}/public/bigc-{uuid.uuid4().hex[:6]}'
    body = b''.join(b'200\r\n' + b'y' * 512 + b'\r\n' for _ in range(4)) + b'0\r\n\r\n'
    data = raw(gw, pki, f'PUT {p} HTTP/1.1\r\nHost: localhost\r\n'
                        'Transfer-Encoding: chunked\r\n\r\n'.encode() + body, listener='limited')
    assert data.startswith(b'HTTP/1.1 413'), data[:100]
    time.sleep(0.3)
    assert not (nginx.root / p.lstrip('/')).exists()


def test_too_many_headers_is_431(gw, pki, site):
    hdrs = ''.join(f'X-H{i}: v\r\n' for i in range(20))
    data = raw(gw, pki, f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n{hdrs}\r\n'
               .encode(), listener='limited')
    assert data.startswith(b'HTTP/1.1 431'), data[:100]


def test_header_block_over_max_header_bytes_is_431(gw, pki, site):
    data = raw(gw, pki, f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'
                        f'X-Big: {"v" * 4000}\r\n\r\n'.encode(), listener='limited')
    assert data.startswith(b'HTTP/1.1 431'), data[:100]


def test_request_line_over_max_line_is_414(gw, pki, site):
    data = raw(gw, pki, f'GET {site}/{"a" * 9000} HTTP/1.1\r\nHost: localhost\r\n\r\n'
               .encode())
    assert data.startswith(b'HTTP/1.1 414'), data[:100]


def test_slow_client_dripping_its_head_gets_408(gw, pki, site):
    s = cg.tls_connect(gw.addr('limited'), ctx_for(pki), timeout=20)
    head = f'GET {site}/public/a.txt HTTP/1.1\r\nHost: localhost\r\n'.encode()
    got = b''
    try:
        # one byte every 0.5 s: each byte is "activity", but the whole head
        # has client_timeout (2 s), not per byte
        for i in range(len(head)):
            try:
                s.sendall(head[i:i + 1])
            except (ssl.SSLError, OSError):
                break
            s.settimeout(0.5)
            try:
                chunk = s.recv(4096)
                if chunk:
                    got += chunk
                    break
                break
            except socket.timeout:
                continue
        got += cg.recv_all(s, timeout=5)
    finally:
        s.close()
    assert got.startswith(b'HTTP/1.1 408'), got[:100]
