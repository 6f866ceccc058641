"""test_upstream.py — the backend side of the proxy core (SPEC sections 3
and 10, [upstream]): a TLS backend is verified by CA and name or by a
SHA-256 pin of its public key, the gateway presents its own client
certificate when configured, a PROXY protocol v2 header carries the real
client address, and a backend connection is only opened once the client
sends bytes (a bare TLS handshake costs no backend connection).

The backend is a real nginx: TLS listeners (one requiring a client
certificate from the test CA) and a `proxy_protocol` listener that echoes
$proxy_protocol_addr."""

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import cg

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "tls-backend\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{mtls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{ return 200 "client=$ssl_client_s_dn\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{pp} proxy_protocol;
        location / {{ return 200 "pp=$proxy_protocol_addr:$proxy_protocol_port\\n"; }}
    }}
}}
"""


@pytest.fixture(scope='module')
def backend(cg_root, pki):
    d = Path(cg_root) / 'nginx-upstream'
    d.mkdir(exist_ok=True)
    ports = {'tls': cg.free_port(), 'mtls': cg.free_port(), 'pp': cg.free_port()}
    conf = NGINX_CONF.format(dir=d, cert=pki.upstream_cert, key=pki.upstream_key,
                             ca=pki.ca, **ports)
    (d / 'nginx.conf').write_text(conf)
    proc = subprocess.Popen(['nginx', '-c', str(d / 'nginx.conf'), '-g', 'daemon off;'],
                            stdout=subprocess.DEVNULL,
                            stderr=open(d / 'nginx.stderr', 'wb'))
    for p in ports.values():
        cg.wait_port('127.0.0.1', p, proc=proc)
    yield ports
    proc.terminate()
    proc.wait(10)


def spki_pin(cert_path):
    """SHA-256 over the certificate's DER SubjectPublicKeyInfo (HPKP style)."""
    pub = subprocess.run(['openssl', 'x509', '-in', cert_path, '-pubkey', '-noout'],
                         check=True, capture_output=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'], input=pub,
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def listener(pki, upstream):
    return {'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': upstream}


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, backend):
    pin = spki_pin(pki.upstream_cert)
    wrong = ('0' if pin[0] != '0' else '1') + pin[1:]
    tls = f'127.0.0.1:{backend["tls"]}'
    g = module_gateway_factory({
        'listener byca': listener(pki, 'byca'),
        'listener bypin': listener(pki, 'bypin'),
        'listener badname': listener(pki, 'badname'),
        'listener badpin': listener(pki, 'badpin'),
        'listener untrusted': listener(pki, 'untrusted'),
        'listener mtls': listener(pki, 'mtls'),
        'listener nocert': listener(pki, 'nocert'),
        'listener pp': listener(pki, 'pp'),
        'upstream byca': {'address': tls, 'tls': 'yes', 'ca': pki.ca,
                          'server_name': 'backend.test'},
        'upstream bypin': {'address': tls, 'tls': 'yes', 'pin_sha256': pin},
        'upstream badname': {'address': tls, 'tls': 'yes', 'ca': pki.ca,
                             'server_name': 'other.test'},
        'upstream badpin': {'address': tls, 'tls': 'yes', 'pin_sha256': wrong},
        'upstream untrusted': {'address': tls, 'tls': 'yes', 'ca': pki.client_ca,
                               'server_name': 'backend.test'},
        'upstream mtls': {'address': f'127.0.0.1:{backend["mtls"]}', 'tls': 'yes',
                          'ca': pki.ca, 'server_name': 'localhost',
                          'certificate': pki.gateway_cert,
                          'private_key': pki.gateway_key},
        'upstream nocert': {'address': f'127.0.0.1:{backend["mtls"]}', 'tls': 'yes',
                            'ca': pki.ca, 'server_name': 'localhost'},
        'upstream pp': {'address': f'127.0.0.1:{backend["pp"]}',
                        'proxy_protocol': 'yes'},
    })
    g.ctl_ok('principal', 'add', 'local')
    g.ctl_ok('cred', 'add', 'local', 'address', '127.0.0.0/8')
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    return g.start()


def get(gw, pki, name, source=None):
    """Raw HTTP/1.1 GET through a listener; returns the whole answer (b'' when
    the gateway closed without one)."""
    try:
        s = cg.tls_connect(gw.addr(name), cg.client_context(pki), source=source)
    except OSError:
        return b''
    with s:
        # the listener serves its certificate's names (421 for others); the
        # backend's own name is the upstream's server_name
        s.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        return cg.recv_all(s, timeout=10)


def test_tls_backend_verified_by_ca_and_name(gw, pki):
    assert b'tls-backend' in get(gw, pki, 'byca')


def test_tls_backend_verified_by_spki_pin(gw, pki):
    assert b'tls-backend' in get(gw, pki, 'bypin')


@pytest.mark.parametrize('name,why', [('badname', 'hostname mismatch'),
                                      ('badpin', 'pin_sha256'),
                                      ('untrusted', 'certificate')])
def test_unverified_tls_backend_gets_no_bytes(gw, pki, name, why):
    start = gw.log_size()
    out = get(gw, pki, name)
    assert b'tls-backend' not in out
    gw.wait_log(f'upstream {name}: .*{why}', start=start)


def test_gateway_presents_its_client_certificate(gw, pki):
    out = get(gw, pki, 'mtls')
    # nginx answers 400 without a verified client certificate
    assert b'200 OK' in out and b'client=CN=' in out, out


def test_backend_requiring_a_certificate_refuses_without_one(gw, pki):
    out = get(gw, pki, 'nocert')
    assert b'client=' not in out
    assert b'400' in out or out == b'', out


def test_proxy_protocol_v2_carries_the_client_address(gw, pki):
    raw = socket.create_connection(gw.addr('pp'), source_address=('127.0.0.3', 0))
    s = cg.client_context(pki).wrap_socket(raw, server_hostname='localhost')
    with s:
        port = s.getsockname()[1]
        s.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        out = cg.recv_all(s)
    assert f'pp=127.0.0.3:{port}'.encode() in out, out


def backend_connections(port):
    """Established TCP connections to 127.0.0.1:port, from the kernel's
    netlink answer (`ss`; /proc/net/tcp can skip entries while it changes)."""
    out = subprocess.run(['ss', '-Htn', 'state', 'established', 'dst', f'127.0.0.1:{port}'],
                         check=True, capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_handshake_alone_opens_no_backend_connection(gw, pki, backend):
    # connections of earlier tests may still be closing
    cg.wait_until(lambda: backend_connections(backend['pp']) == 0, timeout=10,
                  what='no connection to the PROXY backend')
    socks = [cg.tls_connect(gw.addr('pp'), cg.client_context(pki)) for _ in range(3)]
    try:
        time.sleep(0.3)
        assert backend_connections(backend['pp']) == 0
        socks[0].sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
        # the first bytes open it (the answer proves it; whether it then
        # stays open is the protocol gateway's business)
        assert b'pp=' in cg.recv_until(socks[0], b'pp=')
        assert backend_connections(backend['pp']) <= 1
    finally:
        for s in socks:
            s.close()


def gateway_connections(pid, port):
    """Established TCP connections of process pid to 127.0.0.1:port."""
    out = subprocess.run(['ss', '-Htnp', 'state', 'established', 'dst', f'127.0.0.1:{port}'],
                         check=True, capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if f'pid={pid},' in line])


def get_localhost(gw, pki, name):
    with cg.tls_connect(gw.addr(name), cg.client_context(pki)) as s:
        s.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
        return cg.recv_all(s, timeout=10)


def test_reload_with_a_wrong_pin_retires_pooled_backend_connections(gateway_factory, pki,
                                                                     backend):
    # One worker, so the request after the reload meets the pool of the
    # request before it.
    pin = spki_pin(pki.upstream_cert)
    g = gateway_factory({
        'gateway': {'workers': '1'},
        'listener p': listener(pki, 'p'),
        'upstream p': {'address': f'127.0.0.1:{backend["tls"]}', 'tls': 'yes',
                       'pin_sha256': pin},
    })
    g.ctl_ok('principal', 'add', 'local')
    g.ctl_ok('cred', 'add', 'local', 'address', '127.0.0.0/8')
    g.ctl_ok('acl', 'allow', '*', '*', '*', 'all')
    g.start()
    assert b'tls-backend' in get_localhost(g, pki, 'p')
    cg.wait_until(lambda: gateway_connections(g.pid, backend['tls']) == 1, timeout=10,
                  what='the backend connection kept in the pool')

    wrong = ('0' if pin[0] != '0' else '1') + pin[1:]
    g.sections['upstream p']['pin_sha256'] = wrong
    g.write_config()
    start = g.log_size()
    g.reload()
    g.wait_log('configuration reloaded', start=start)
    # the reload closes the idle connection that was checked against the
    # old pin ...
    cg.wait_until(lambda: gateway_connections(g.pid, backend['tls']) == 0, timeout=10,
                  what='the pooled backend connection closed by the reload')
    # ... and the next request makes a new one, which the new pin refuses
    out = get_localhost(g, pki, 'p')
    assert b'tls-backend' not in out, out
    g.wait_log('upstream p: .*pin_sha256', start=start)
