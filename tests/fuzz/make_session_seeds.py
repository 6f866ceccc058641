#!/usr/bin/python3
"""make_session_seeds.py — seed scripts for fuzz_imap_session and
fuzz_http_session (format: tests/fuzz/session_driver.h) from backend
traffic recorded while the integration tests ran (record_sessions.py):

    CG_RECORD_DIR=/tmp/rec CPMGATE_BUILD=$PWD/build-test \\
        PYTHONPATH=tests/fuzz:tests/integration python3 -m pytest \\
        tests/integration/test_imap_gateway.py tests/integration/test_http_gateway.py \\
        -p record_sessions
    tests/fuzz/make_session_seeds.py /tmp/rec tests/fuzz/corpus

What the gateway sent the backend becomes what the client sends (it is the
client's commands re-serialised, or its requests rewritten; the headers the
gateway adds are then the client's, which the gateway must drop), what the
backend answered stays the backend's answer, in the recorded order and
chunking. The gateway's own IMAP login (tags cgi1-cgi3) becomes one client
LOGIN of the fuzzer's principal. Each recording gives one seed per listener
variant named on the command line (default: the first)."""
import base64
import hashlib
import json
import os
import re
import struct
import sys

OPS = dict(CLIENT=0, BACKEND=1, CONNECT_OK=2, CONNECT_FAIL=3, BACKEND_EOF=4, TIMER=5,
           RESP_TIMEOUT=6, IDLE=7, DRAIN=8, CLIENT_EOF=9, TLS_READY=10, SHUTDOWN=11)
NOPS = 12
MAX_SEED = 16384  # keep the committed corpus small


def data_op(name, data):
    out = b''
    while True:
        part, data = data[:65535], data[65535:]
        out += bytes([OPS[name]]) + struct.pack('<H', len(part)) + part
        if not data:
            return out


def script(variant, ops):
    out = bytes([variant])
    for op in ops:
        if op[0] in ('CLIENT', 'BACKEND'):
            out += data_op(op[0], op[1])
        else:
            out += bytes([OPS[op[0]] + NOPS * (op[1] if len(op) > 1 else 0)])
    return out


INTERNAL = re.compile(rb'^cgi[123] ', re.M)


def imap_ops(chunks):
    ops = [('CONNECT_OK',)]
    logged_in = False
    for direction, data in chunks:
        if direction == 'b2g':
            ops.append(('BACKEND', data))
            continue
        # drop the gateway's own login lines; the client logs in instead
        lines = data.split(b'\r\n')
        kept = [ln for ln in lines[:-1] if not INTERNAL.match(ln)]
        if len(kept) < len(lines) - 1 and not logged_in:
            ops.append(('CLIENT', b'L1 LOGIN alice secret\r\n'))
            logged_in = True
        rest = b''.join(ln + b'\r\n' for ln in kept) + lines[-1]
        if rest:
            ops.append(('CLIENT', rest))
    ops.append(('BACKEND_EOF',))
    return ops


def http_exchanges(chunks):
    """A pooled backend connection carries many requests: split it into
    exchanges (the requests, then the answers that followed them)."""
    ex, cur = [], []
    for direction, data in chunks:
        if direction == 'g2b' and cur and cur[-1][0] == 'b2g':
            ex.append(cur)
            cur = []
        cur.append((direction, data))
    if cur:
        ex.append(cur)
    return ex


# The tests' sites live under a random first segment (/gw30987b9a/...);
# the fuzzers' policy under /content/<principal>/. Rewritten in request
# lines and Destination headers only, so no body length changes.
SITE = re.compile(rb'^([A-Z]+ |Destination: (?:https?://[^/\r\n]*)?)/[a-z]+[0-9a-f]{8}/', re.M)


def http_ops(chunks, home):
    ops = []
    connected = False
    for direction, data in chunks:
        if direction == 'g2b':
            ops.append(('CLIENT', SITE.sub(rb'\1/content/' + home + b'/', data)))
            if not connected:
                ops.append(('CONNECT_OK',))
                connected = True
        else:
            ops.append(('BACKEND', data))
    ops.append(('CLIENT_EOF',))
    return ops


def sessions(rec):
    """The recorded chunks of each seed: an IMAP connection whole, an HTTP
    connection as runs of up to three exchanges (keep-alive)."""
    chunks = [(d, base64.b64decode(b)) for d, b in rec['chunks']]
    if rec['proto'] == 'imap':
        return [chunks]
    ex = http_exchanges(chunks)
    return [sum(ex[i:i + 3], []) for i in range(0, len(ex), 2)]


def label(rec, chunks):
    """A file name part: the test for IMAP, the first request for HTTP."""
    if rec['proto'] == 'http':
        first = next(d for k, d in chunks if k == 'g2b').split(b'\r\n', 1)[0]
        text = first.decode('latin-1').rsplit(' ', 1)[0]
    else:
        text = rec['test'].split('::')[-1]
    return re.sub(r'[^A-Za-z0-9_]+', '_', text).strip('_')[:60]


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    variants = {'imap': [0, 3], 'http': [0, 1]}
    names = {'imap': 'imap_session', 'http': 'http_session'}
    made = 0
    seen = set()
    for fn in sorted(os.listdir(src)):
        if not fn.endswith('.json'):
            continue
        with open(os.path.join(src, fn)) as f:
            rec = json.load(f)
        for chunks in sessions(rec):
            if not any(d == 'g2b' for d, _ in chunks):
                continue
            for v in variants[rec['proto']]:
                if rec['proto'] == 'imap':
                    ops_v = imap_ops(chunks)
                else:
                    ops_v = http_ops(chunks, b'alice' if v == 0 else b'bob')
                if rec['proto'] == 'imap' and v == 3:
                    # the STARTTLS listener: STARTTLS and its handshake first
                    ops_v = ops_v[:2] + [('CLIENT', b'S1 STARTTLS\r\n'), ('TLS_READY', 1)] + ops_v[2:]
                s = script(v, ops_v)
                h = hashlib.sha1(s).hexdigest()[:16]
                if len(s) > MAX_SEED or h in seen:
                    continue
                seen.add(h)
                out = os.path.join(dst, names[rec['proto']])
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, f'{label(rec, chunks)}-v{v}-{h}'), 'wb') as f:
                    f.write(s)
                made += 1
    print(f'{made} seeds written under {dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
