"""record_sessions.py — a pytest plugin that records the gateway's backend
traffic while integration tests run, for the whole-session fuzzers' seeds.

    CG_RECORD_DIR=/tmp/rec CPMGATE_BUILD=$PWD/build-test PYTHONPATH=tests/fuzz \\
        python3 -m pytest tests/integration -p record_sessions -k 'imap or http'

Every [upstream] section the fixtures make for Dovecot or nginx points at a
small relay instead; the relay passes bytes both ways unchanged and writes
one JSON file per connection: the protocol, the test that ran, and the
chunks in the order they passed ("g2b": gateway to backend, "b2g": backend
to gateway; base64). make_session_seeds.py turns these into seed scripts.
The tests themselves are unchanged (they see the same backends)."""
import base64
import json
import os
import socket
import threading

import cg

OUT = os.environ.get('CG_RECORD_DIR')
_relays = {}
_lock = threading.Lock()
_count = [0]


def _pump(src, dst, direction, chunks, lock):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            with lock:
                chunks.append((direction, data))
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(lsock, target, proto):
    while True:
        try:
            client, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=_relay_one, args=(client, target, proto), daemon=True).start()


def _relay_one(client, target, proto):
    test = os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]
    try:
        backend = socket.create_connection(target, timeout=10)
        backend.settimeout(None)
    except OSError:
        client.close()
        return
    chunks, lock = [], threading.Lock()
    t1 = threading.Thread(target=_pump, args=(client, backend, 'g2b', chunks, lock), daemon=True)
    t2 = threading.Thread(target=_pump, args=(backend, client, 'b2g', chunks, lock), daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    client.close()
    backend.close()
    with _lock:
        _count[0] += 1
        n = _count[0]
    rec = {'proto': proto, 'test': test,
           'chunks': [[d, base64.b64encode(b).decode()] for d, b in chunks]}
    with open(os.path.join(OUT, f'{proto}-{n:04d}.json'), 'w') as f:
        json.dump(rec, f)


def _relay_for(host, port, proto):
    key = (host, port)
    with _lock:
        if key not in _relays:
            lsock = socket.socket()
            lsock.bind(('127.0.0.1', 0))
            lsock.listen(64)
            threading.Thread(target=_serve, args=(lsock, (host, port), proto),
                             daemon=True).start()
            _relays[key] = lsock.getsockname()[1]
        return _relays[key]


def _wrap(cls, proto):
    orig = cls.upstream

    def upstream(self, **extra):
        sec = orig(self, **extra)
        if OUT and 'address' in sec and 'address' not in extra:
            host, port = sec['address'].rsplit(':', 1)
            sec['address'] = f'127.0.0.1:{_relay_for(host, int(port), proto)}'
        return sec
    cls.upstream = upstream


if OUT:
    os.makedirs(OUT, exist_ok=True)
    _wrap(cg.Dovecot, 'imap')
    _wrap(cg.Nginx, 'http')
