"""test_http_records.py — what a small answer costs on the wire (issue 15):
the head the gateway writes and the backend's body leave as one TLS record,
and requests after the first on a keep-alive connection still do."""

import socket
import ssl
import uuid

import pytest

import cg

BODY = b'r' * 1024


@pytest.fixture(scope='module')
def small(nginx):
    path = '/rec' + uuid.uuid4().hex[:8] + '/one.bin'
    st, _, _ = nginx.request('PUT', path, body=BODY)
    assert st in (201, 204), st
    return path


@pytest.fixture(scope='module')
def gw(module_gateway_factory, pki, nginx):
    return cg.http_alice_gateway(module_gateway_factory, pki, nginx)


class Wire:
    """A TLS client over a plain socket that sees the server's records."""

    def __init__(self, addr, ctx):
        self.sock = socket.create_connection(addr, timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname='localhost')
        self.raw = b''
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send()
                self.inc.write(self._record())
        self._send()

    def _send(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _record(self):
        while len(self.raw) < 5 or len(self.raw) < 5 + int.from_bytes(self.raw[3:5], 'big'):
            chunk = self.sock.recv(65536)
            assert chunk, 'connection closed'
            self.raw += chunk
        n = 5 + int.from_bytes(self.raw[3:5], 'big')
        rec, self.raw = self.raw[:n], self.raw[n:]
        return rec

    def request(self, path, expect):
        """Sends a GET; returns (answer bytes, records that carried them)."""
        self.tls.write(f'GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n'.encode())
        self._send()
        got, records = b'', 0
        while not (b'\r\n\r\n' in got and got.endswith(expect)):
            self.inc.write(self._record())
            try:
                data = self.tls.read(1 << 20)
            except ssl.SSLWantReadError:
                continue  # a record with no application data (a ticket)
            if data:
                records += 1
                got += data
        return got, records


def test_small_answer_is_one_record(gw, pki, small):
    w = Wire(gw.addr('content'), cg.client_context(pki))
    for _ in range(3):  # the first and the keep-alive ones after it
        got, records = w.request(small, BODY)
        assert got.startswith(b'HTTP/1.1 200 '), got[:40]
        assert b'X-Transaction-Id: ' in got
        assert records == 1, f'head and body of a 1 KiB answer took {records} records'
    w.sock.close()
