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
