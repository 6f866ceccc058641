"""remote_env.py — remote CPM environments for the routing tests (SPEC
section 7): a second test PKI, a scripted stand-in for a remote gateway
(TLS with client certificates, IMAP and HTTP, every line it gets
recorded), and the sections that route a gateway to a remote one."""

import socket
import ssl
import threading

import cg


class FakeRemote:
    """A TLS server on host:port that plays a remote gateway: it demands a
    client certificate signed by client_ca, and records what it gets.
    kind 'imap': greets, answers ID, AUTHENTICATE, LIST, SELECT, LOGOUT;
    kind 'http': answers every request 200 with the path it got."""

    def __init__(self, kind, cert, key, client_ca, host='127.0.0.2'):
        self.kind = kind
        self.host = host
        self.lines = []          # IMAP command lines, HTTP request heads
        self.peer_certs = []     # the client certificates' subjects
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(client_ca)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def upstream(self, trust, gateway_cert, gateway_key, **extra):
        """An [upstream] section that reaches this server as a route's,
        trusting the CA file trust (extra overrides any key)."""
        sec = {'address': f'{self.host}:{self.port}', 'tls': 'yes', 'ca': trust,
               'server_name': 'localhost', 'certificate': gateway_cert,
               'private_key': gateway_key, 'connect_timeout': '3'}
        sec.update(extra)
        return {k: v for k, v in sec.items() if v is not None}

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        try:
            self.peer_certs.append(s.getpeercert().get('subject'))
            s.settimeout(10)
            (self._imap if self.kind == 'imap' else self._http)(s)
        except (ssl.SSLError, OSError):
            pass
        finally:
            s.close()

    @staticmethod
    def _take(s, buf, marker):
        """(what comes before marker, the rest) from buf and s, or None
        at the end of the connection."""
        while marker not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return buf.split(marker, 1)

    def _imap(self, s):
        s.sendall(b'* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=EXTERNAL] remote ready\r\n')
        buf = b''
        while (got := self._take(s, buf, b'\r\n')) is not None:
            line, buf = got
            text = line.decode()
            self.lines.append(text)
            tag, _, rest = text.partition(' ')
            word = rest.split(' ')[0].upper()
            if word == 'LIST':
                s.sendall(b'* LIST () "/" "Shared"\r\n* LIST () "/" "Private"\r\n'
                          + tag.encode() + b' OK LIST done\r\n')
            elif word == 'LOGOUT':
                s.sendall(b'* BYE bye\r\n' + tag.encode() + b' OK LOGOUT done\r\n')
                return
            elif word == 'AUTHENTICATE':
                s.sendall(tag.encode() + b' OK [CAPABILITY IMAP4rev1] Logged in\r\n')
            else:
                s.sendall(tag.encode() + b' OK ' + word.encode() + b' done\r\n')

    def _http(self, s):
        buf = b''
        while (got := self._take(s, buf, b'\r\n\r\n')) is not None:
            head, buf = got
            text = head.decode('latin-1')
            self.lines.append(text)
            path = text.split(' ')[1].encode()
            s.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s'
                      % (len(path), path))


def header(head, name):
    """The value of field name in an HTTP head (case-insensitive), or None."""
    for line in head.split('\r\n')[1:]:
        k, _, v = line.partition(':')
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def routed_sections(pki, dovecot, nginx, imap_up, http_up, route_extra=None):
    """The standard sections of a gateway of a.example with [route
    b.example] over imap_up and http_up, and an IMAP listener imaps-b
    routed there (client certificates of pki)."""
    route = {'imap': 'b-imap', 'http': 'b-http'}
    route.update(route_extra or {})
    return cg.merge_sections(cg.standard_sections(pki, dovecot, nginx), {
        'gateway': {'local_domain': 'a.example'},
        'listener imaps-b': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'auth': 'cert', 'route': 'b.example'},
        'upstream b-imap': imap_up,
        'upstream b-http': http_up,
        'route b.example': route,
    })


class Environment:
    """One CPM environment for the two-gateway tests: its domain, PKI,
    Dovecot and nginx, and the gateway in front of them on host. Its
    listeners: imaps (local users), peers and content-peers (another
    environment's gateway, by its certificate), content (HTTP, local
    users), and imaps-DOMAIN, routed to the other environment."""

    def __init__(self, domain, host, pki, dovecot, nginx):
        self.domain, self.host, self.pki = domain, host, pki
        self.dovecot, self.nginx = dovecot, nginx
        self.ports = {n: cg.free_port(host) for n in ('peers', 'content-peers')}
        self.gw = None

    def addr(self, listener):
        return self.gw.addr(listener)

    def sections(self, other, route_extra=None):
        """This environment's gateway, routed to other (an Environment)."""
        pki, o = self.pki, other.pki

        def listener(protocol, port=None, **extra):
            sec = {'protocol': protocol, 'tls': 'implicit',
                   'certificate': pki.server_cert, 'private_key': pki.server_key,
                   'client_ca': pki.client_ca, 'auth': 'cert'}
            if port:
                sec['listen'] = f'{self.host}:{port}'
            sec.update(extra)
            return sec

        def remote(listener_name):
            return {'address': f'{other.host}:{other.ports[listener_name]}', 'tls': 'yes',
                    'ca': o.ca, 'server_name': 'localhost',
                    'certificate': pki.gateway_cert, 'private_key': pki.gateway_key,
                    'connect_timeout': '3'}

        route = {'imap': 'remote-imap', 'http': 'remote-http'}
        route.update(route_extra or {})
        return {
            'gateway': {'local_domain': self.domain,
                        'admin_listen': f'127.0.0.1:{cg.free_port()}'},
            'listener imaps': listener('imap', cg.free_port(self.host), upstream='dovecot'),
            'listener content': listener('http', cg.free_port(self.host), upstream='nginx'),
            # the other environment's gateway, known by its certificate
            'listener peers': listener('imap', self.ports['peers'], client_ca=o.ca,
                                       upstream='dovecot'),
            'listener content-peers': listener('http', self.ports['content-peers'],
                                               client_ca=o.ca, upstream='nginx'),
            f'listener imaps-{other.domain.split(".")[0]}': listener(
                'imap', cg.free_port(self.host), route=other.domain),
            'upstream dovecot': self.dovecot.upstream(),
            'upstream nginx': self.nginx.upstream(),
            'upstream remote-imap': remote('peers'),
            'upstream remote-http': remote('content-peers'),
            f'route {other.domain}': route,
        }

    def trust_peer(self, other, interop='carol'):
        """other's gateway acts for users of other's domain, on the
        mailbox interop here (policy of this gateway, not yet started)."""
        name = 'gw-' + other.domain.split('.')[0]
        self.gw.ctl_ok('principal', 'add', name, '--kind', 'server', '--mailbox', interop)
        self.gw.ctl_ok('cred', 'add', name, 'cert', '--file', other.pki.gateway_cert)
        self.gw.ctl_ok('peer', 'add', other.domain, '--principal', name, '--auth', 'required')


def audit_records(g):
    """Every audit record of gateway g (cpmgatectl audit export)."""
    import json
    r = g.ctl('audit', 'export', '--audit-db', g.audit_db, '--format', 'jsonl', db=False)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def audit_record(g, pred, what):
    """The first audit record of g that pred accepts, waited for."""
    return cg.wait_until(lambda: next((x for x in audit_records(g) if pred(x)), None),
                         timeout=10, what=what)
