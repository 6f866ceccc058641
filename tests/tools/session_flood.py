#!/usr/bin/python3
"""session_flood.py — a flood of mutated IMAP and HTTP sessions against a
running cpmgate. Python 3 standard library only.

The client sides of real sessions (what the integration tests' clients send:
login by the listener's method, SELECT, FETCH, APPEND with literals, LIST,
STORE, IDLE, AUTHENTICATE, LOGOUT; GET, PUT with a body, chunked bodies,
COPY/MOVE with Destination, PROPFIND with XML, LOCK with If, pipelined
requests, Digest) are kept here as byte scripts. Each flood session takes
one, mutates it (byte flips, inserted / deleted / duplicated ranges, splices
from another session, long repeats of a token anywhere or inside a header
value or an argument, huge numbers, CR / LF / NUL injection), sends it over TLS with a client certificate in many small writes
with tiny delays, reads what comes back with a short timeout, and closes
(sometimes early, sometimes mid-send).

Everything a session does comes from random.Random(f'{seed}:{index}'):
`--seed S --only I` replays session I of a run exactly. When the gateway
dies (--pid) the flood stops and the sessions in flight are written to
--findings, one file of raw bytes per send plus a description.

Only loopback addresses are accepted.

  session_flood.py --imap 127.0.0.1:P --http 127.0.0.1:Q --ca ca.pem \\
      --cert alice.pem --key alice.key --sessions 1000 --seed 1 --pid PID
"""

import argparse
import base64
import collections
import concurrent.futures
import hashlib
import ipaddress
import json
import os
import random
import re
import select
import socket
import ssl
import sys
import threading
import time

# ------------------------------------------------------- recorded sessions --

MSG = (b'From: a@example.com\r\nTo: b@example.com\r\nSubject: flood\r\n'
       b'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody line\r\n')


def lit(data):
    """A synchronising literal's announcement and its bytes, as two sends
    (a client waits for the continuation between them)."""
    return [b'{%d}\r\n' % len(data), data]


def plain_b64(authz, user, pw):
    return base64.b64encode(f'{authz}\0{user}\0{pw}'.encode())


def imap_sessions(user, password):
    """Client sides of IMAP sessions, as lists of sends. The first send of
    each comes after the greeting."""
    u, p = user.encode(), password.encode()
    S = []
    # LOGIN, LIST, SELECT, FETCH, STORE, EXPUNGE, LOGOUT
    S.append([b'a1 CAPABILITY\r\n', b'a2 LOGIN ' + u + b' ' + p + b'\r\n',
              b'a3 LIST "" "*"\r\n', b'a4 SELECT INBOX\r\n',
              b'a5 FETCH 1:* (FLAGS UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\n',
              b'a6 STORE 1 +FLAGS (\\Seen)\r\n', b'a7 UID FETCH 1:* (BODY.PEEK[])\r\n',
              b'a8 CLOSE\r\n', b'a9 LOGOUT\r\n'])
    # AUTHENTICATE EXTERNAL (certificate) and mailbox management
    S.append([b'b1 AUTHENTICATE EXTERNAL =\r\n', b'b2 CREATE Flood\r\n',
              b'b3 SUBSCRIBE Flood\r\n', b'b4 LSUB "" "*"\r\n',
              b'b5 STATUS Flood (MESSAGES UIDNEXT UNSEEN)\r\n',
              b'b6 LIST (SUBSCRIBED) "" "%" RETURN (CHILDREN STATUS (MESSAGES))\r\n',
              b'b7 RENAME Flood Flood2\r\n', b'b8 DELETE Flood2\r\n', b'b9 LOGOUT\r\n'])
    # AUTHENTICATE PLAIN with a continuation, APPEND with literals
    S.append([b'c1 AUTHENTICATE PLAIN\r\n', plain_b64('', user, password) + b'\r\n',
              b'c2 APPEND INBOX '] + lit(MSG) + [b'\r\n',
              b'c3 APPEND INBOX (\\Seen) '] + lit(MSG) + [b'\r\n',
              b'c4 SELECT INBOX\r\n', b'c5 SEARCH UNSEEN SUBJECT "flood"\r\n',
              b'c6 UID STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n', b'c7 EXPUNGE\r\n',
              b'c8 LOGOUT\r\n'])
    # AUTHENTICATE PLAIN with an initial response, APPEND with flags and a
    # date, MULTIAPPEND with non-synchronising literals, IDLE
    S.append([b'd1 AUTHENTICATE PLAIN ' + plain_b64('', user, password) + b'\r\n',
              b'd2 APPEND INBOX (\\Seen \\Flagged) "01-Jan-2024 00:00:00 +0000" '] + lit(MSG) +
             [b'\r\n',
              b'd3 APPEND INBOX {%d+}\r\n' % len(MSG) + MSG + b' (\\Draft) {%d+}\r\n' % len(MSG)
              + MSG + b'\r\n',
              b'd4 SELECT INBOX\r\n', b'd5 IDLE\r\n', b'DONE\r\n',
              b'd6 FETCH 1 (ENVELOPE BODYSTRUCTURE INTERNALDATE)\r\n', b'd7 LOGOUT\r\n'])
    # LOGIN with literals, names as literals / quoted / modified UTF-7
    S.append([b'e1 LOGIN '] + lit(u) + [b' '] + lit(p) + [b'\r\n',
              b'e2 CREATE "Entw&APw-rfe"\r\n', b'e3 SELECT '] + lit(b'Entw&APw-rfe') +
             [b'\r\n', b'e4 EXAMINE "INBOX"\r\n', b'e5 LIST "" ~foo\r\n',
              b'e6 COPY 1:* "Entw&APw-rfe"\r\n', b'e7 UID MOVE 1 Trash\r\n',
              b'e8 NAMESPACE\r\n', b'e9 ID ("name" "flood" "version" "1")\r\n',
              b'e10 ENABLE CONDSTORE QRESYNC\r\n', b'e11 LOGOUT\r\n'])
    # pipelined commands, UID SEARCH, GETQUOTAROOT, NOOP, CHECK
    S.append([b'f1 LOGIN "' + u + b'" "' + p + b'"\r\nf2 SELECT INBOX\r\nf3 NOOP\r\n'
              b'f4 UID SEARCH ALL\r\nf5 FETCH 1:3 (FLAGS)\r\n',
              b'f6 CHECK\r\nf7 UNSELECT\r\nf8 STATUS INBOX (MESSAGES)\r\nf9 LOGOUT\r\n'])
    # before login: commands that must be refused, STARTTLS on TLS
    S.append([b'g1 SELECT INBOX\r\n', b'g2 STARTTLS\r\n', b'g3 NOOP\r\n',
              b'g4 LOGIN nobody wrong\r\n', b'g5 LOGOUT\r\n'])
    return S


def http_sessions(host, digest_user, digest_password, realm, base):
    """Client sides of HTTP sessions. `@DIGEST <method> <path>@` in a send is
    replaced, when the replay gets there, by a Digest Authorization header
    computed from the last 401's nonce."""
    H = b'Host: ' + host.encode() + b'\r\n'
    b = base.encode()
    xml = (b'<?xml version="1.0" encoding="utf-8"?>\r\n<D:propfind xmlns:D="DAV:">'
           b'<D:prop><D:getcontentlength/><D:getlastmodified/><D:resourcetype/>'
           b'</D:prop></D:propfind>\r\n')
    lock = (b'<?xml version="1.0" encoding="utf-8"?>\r\n<D:lockinfo xmlns:D="DAV:">'
            b'<D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>'
            b'<D:owner>flood</D:owner></D:lockinfo>\r\n')
    body = b'flood body\n' * 20
    S = []
    S.append([b'GET ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'Accept: */*\r\n\r\n',
              b'HEAD ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'Connection: close\r\n\r\n'])
    S.append([b'PUT ' + b + b'/put.txt HTTP/1.1\r\n' + H +
              b'Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n' % len(body), body,
              b'GET ' + b + b'/put.txt HTTP/1.1\r\n' + H + b'Range: bytes=0-9\r\n'
              b'Connection: close\r\n\r\n'])
    S.append([b'PUT ' + b + b'/chunked.txt HTTP/1.1\r\n' + H +
              b'Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n',
              b'a\r\n0123456789\r\n', b'5;ext=1\r\nabcde\r\n', b'0\r\nX-Trailer: t\r\n\r\n'])
    S.append([b'COPY ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'Destination: https://' +
              host.encode() + b + b'/copy%20of%20a.txt\r\nOverwrite: T\r\n'
              b'Content-Length: 0\r\n\r\n',
              b'MOVE ' + b + b'/copy%20of%20a.txt HTTP/1.1\r\n' + H + b'Destination: ' + b +
              b'/moved.txt\r\nOverwrite: F\r\nConnection: close\r\n\r\n'])
    S.append([b'PROPFIND ' + b + b'/ HTTP/1.1\r\n' + H + b'Depth: 1\r\n'
              b'Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n' % len(xml), xml,
              b'OPTIONS ' + b + b'/ HTTP/1.1\r\n' + H + b'Connection: close\r\n\r\n'])
    S.append([b'LOCK ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'Timeout: Second-60\r\n'
              b'Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n' % len(lock), lock,
              b'PUT ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'If: <https://' + host.encode() + b +
              b'/a.txt> (<opaquelocktoken:00000000-0000-0000-0000-000000000000> '
              b'["etag"])\r\nContent-Length: 3\r\n\r\nabc',
              b'UNLOCK ' + b + b'/a.txt HTTP/1.1\r\n' + H +
              b'Lock-Token: <opaquelocktoken:00000000-0000-0000-0000-000000000000>\r\n'
              b'Connection: close\r\n\r\n'])
    # pipelined: three requests in one write
    S.append([b'GET ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'\r\n'
              b'MKCOL ' + b + b'/dir/ HTTP/1.1\r\n' + H + b'\r\n'
              b'DELETE ' + b + b'/dir/ HTTP/1.1\r\n' + H + b'Connection: close\r\n\r\n'])
    # absolute form, odd paths, Expect
    S.append([b'GET https://' + host.encode() + b + b'/./sub/../a.txt?x=1#f HTTP/1.1\r\n' + H +
              b'\r\n',
              b'GET ' + b + b'/%2e%2e/%2Fetc/passwd HTTP/1.1\r\n' + H + b'\r\n',
              b'POST ' + b + b'/a.txt HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi'])
    # Digest: first a 401 for the nonce, then the answer
    if digest_user:
        S.append([b'GET ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'\r\n',
                  b'GET ' + b + b'/a.txt HTTP/1.1\r\n' + H + b'@DIGEST GET ' + b +
                  b'/a.txt@\r\n\r\n',
                  b'PUT ' + b + b'/d.txt HTTP/1.1\r\n' + H + b'Authorization: Digest '
                  b'username="' + digest_user.encode() + b'", realm="' + realm.encode() +
                  b'", nonce="AAAA", uri="' + b + b'/d.txt", response="00", qop=auth, '
                  b'nc=00000001, cnonce="c", algorithm=SHA-256\r\nContent-Length: 1\r\n\r\nx'])
    return S


IMAP_TOKENS = [b':', b'(', b')', b'{', b'}', b'"', b'\\', b'*', b'%', b' ', b'[', b']',
               b'~{1}\r\n', b'{999}\r\n', b'{0+}\r\n', b'A', b'&', b'&-', b'&AAA', b'BODY[',
               b'1:', b'<0.>', b'NIL ', b'\r\n', b'\xff']
HTTP_TOKENS = [b':', b'/', b'%', b'%2f', b'%00', b'..', b'../', b'@', b' ', b';', b',', b'"',
               b'\t', b'<', b'>', b'(', b'[', b'\\', b'?', b'#', b'a', b'\r\n', b'\xff',
               b'X-A: b\r\n', b'Transfer-Encoding: chunked\r\n', b'Content-Length: 5\r\n']
BIG_NUMBERS = [b'0', b'-1', b'4294967295', b'4294967296', b'18446744073709551615',
               b'18446744073709551616', b'99999999999999999999999', b'2147483648',
               b'65536', b'1e9', b'0x10', b' 1', b'+1']
NUM = re.compile(rb'\d+')
FIELD = re.compile(rb': ?| |/')
ESCAPED_TOKENS = [b':', b'@', b' ', b'%', b'"', b'<', b'>', b'\\', b'&', b'{', b'(', b'\x80']


class Mutator:
    """Mutations of a session (a list of sends). Everything it does comes
    from the given rng."""

    def __init__(self, rng, corpus, tokens):
        self.rng = rng
        self.corpus = corpus
        self.tokens = tokens

    def pos(self, data):
        return self.rng.randint(0, len(data))

    def flip(self, d):
        if not d:
            return d
        i = self.rng.randrange(len(d))
        v = d[i] ^ (1 << self.rng.randrange(8)) if self.rng.random() < 0.5 \
            else self.rng.randrange(256)
        return d[:i] + bytes([v]) + d[i + 1:]

    def insert(self, d):
        i = self.pos(d)
        return d[:i] + bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 16))) + d[i:]

    def delete(self, d):
        if not d:
            return d
        i = self.rng.randrange(len(d))
        return d[:i] + d[i + self.rng.randint(1, min(64, len(d) - i)):]

    def duplicate(self, d):
        if not d:
            return d
        i = self.rng.randrange(len(d))
        j = min(len(d), i + self.rng.randint(1, 200))
        k = self.pos(d)
        return d[:k] + d[i:j] * self.rng.randint(1, 8) + d[k:]

    def splice(self, d):
        other = self.rng.choice(self.rng.choice(self.corpus))
        if not other:
            return d
        i = self.rng.randrange(len(other))
        piece = other[i:i + self.rng.randint(1, 300)]
        k = self.pos(d)
        return d[:k] + piece + d[k:]

    def repeat(self, d):
        tok = self.rng.choice(self.tokens)
        n = self.rng.choice([64, 255, 256, 1023, 1024, 4000, 8192, 20000, 70000])
        k = self.pos(d)
        return d[:k] + tok * max(1, n // len(tok)) + d[k:]

    def field(self, d):
        """A long run of a token inside a field: after a header's colon, an
        IMAP argument's space, a path's slash (4000 ':' in a Destination)."""
        starts = [m.end() for m in FIELD.finditer(d)]
        if not starts:
            return self.repeat(d)
        k = self.rng.choice(starts)
        # half the time a byte that grows when re-encoded or quoted
        tok = self.rng.choice(ESCAPED_TOKENS if self.rng.random() < 0.5 else self.tokens)
        n = self.rng.choice([300, 1000, 2000, 3000, 4000, 6000, 8000, 16000])
        return d[:k] + tok * max(1, n // len(tok)) + d[k:]

    def number(self, d):
        nums = list(NUM.finditer(d))
        if not nums:
            return self.repeat(d)
        m = self.rng.choice(nums)
        return d[:m.start()] + self.rng.choice(BIG_NUMBERS) + d[m.end():]

    def control(self, d):
        k = self.pos(d)
        return d[:k] + self.rng.choice([b'\r', b'\n', b'\0', b'\r\n', b'\n\n', b'\r\r\n',
                                        b'\r\n\r\n', b'\0\r\n', b'\x7f']) + d[k:]

    def truncate(self, d):
        return d[:self.pos(d)]

    OPS = ('flip', 'insert', 'delete', 'duplicate', 'splice', 'repeat', 'field', 'number',
           'control', 'truncate')
    WEIGHTS = (4, 2, 2, 2, 2, 2, 3, 3, 3, 1)

    def mutate(self, sends):
        """(mutated sends, [op names])"""
        sends = list(sends)
        applied = []
        for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3, 4])):
            op = self.rng.choices(self.OPS, self.WEIGHTS)[0]
            i = self.rng.randrange(len(sends))
            sends[i] = getattr(self, op)(sends[i])
            applied.append(f'{op}@{i}')
        r = self.rng.random()
        if r < 0.05:
            # the sends as one write
            sends = [b''.join(sends)]
            applied.append('join')
        elif r < 0.10 and len(sends) > 1:
            # a send dropped or repeated
            i = self.rng.randrange(len(sends))
            if self.rng.random() < 0.5:
                del sends[i]
                applied.append(f'drop@{i}')
            else:
                sends.insert(i, sends[i])
                applied.append(f'again@{i}')
        return sends, applied


# ------------------------------------------------------------------ plan --

class Plan:
    """What one session does: target, client certificate or none, sends,
    how each is written, and when to stop."""

    def __init__(self, index, proto, target, cert, sends, ops, split, stop_after,
                 close_early):
        self.index, self.proto, self.target, self.cert = index, proto, target, cert
        self.sends, self.ops, self.split = sends, ops, split
        self.stop_after, self.close_early = stop_after, close_early

    def describe(self):
        return {'index': self.index, 'proto': self.proto, 'target': list(self.target),
                'cert': self.cert, 'ops': self.ops, 'split': self.split,
                'stop_after': self.stop_after, 'close_early': self.close_early,
                'sends': len(self.sends), 'bytes': sum(len(s) for s in self.sends)}


def make_plan(args, corpora, index):
    rng = random.Random(f'{args.seed}:{index}')
    proto = 'imap' if rng.random() < args.imap_share else 'http'
    if proto == 'imap':
        targets = args.imap
        corpus = corpora['imap']
        tokens = IMAP_TOKENS
    else:
        targets = args.http
        corpus = corpora['http']
        tokens = HTTP_TOKENS
    target = rng.choice(targets)
    si = rng.randrange(len(corpus))
    sends = corpus[si]
    ops = [f'session {proto}#{si}']
    if rng.random() < args.clean_share:
        ops.append('unmutated')
    else:
        sends, applied = Mutator(rng, corpus, tokens).mutate(sends)
        ops += applied
    # digest sessions (HTTP with a Digest placeholder) go without a client
    # certificate, so that the request-level method is the one that counts
    cert = 'none' if any(b'@DIGEST' in s for s in sends) or rng.random() < 0.05 else 'client'
    split = rng.choice(['whole', 'whole', 'small', 'bytes']) if rng.random() < 0.5 else 'whole'
    stop_after = len(sends)
    close_early = False
    r = rng.random()
    if r < 0.08:
        stop_after = rng.randrange(len(sends) + 1)       # stop sending mid-session
    elif r < 0.14:
        close_early = True                              # close without reading
    plan = Plan(index, proto, target, cert, sends, ops, split, stop_after, close_early)
    plan.rng = rng
    return plan


# ------------------------------------------------------------ replaying --

def parse_addr(text):
    host, _, port = text.rpartition(':')
    host = host.strip('[]')
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f'{text}: only loopback addresses are flooded')
    return host, int(port)


def digest_auth(method, uri, challenge, user, password):
    def kv(name):
        m = re.search(name + rb'="([^"]*)"', challenge)
        return m.group(1).decode(errors='replace') if m else ''
    realm, nonce = kv(b'realm'), kv(b'nonce')
    alg = 'SHA-256' if b'SHA-256' in challenge else 'MD5'
    h = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if alg == 'SHA-256' \
        else (lambda s: hashlib.md5(s.encode()).hexdigest())
    ha1 = h(f'{user}:{realm}:{password}')
    ha2 = h(f'{method}:{uri}')
    cnonce, nc = 'f1d0', '00000001'
    resp = h(f'{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}')
    return (f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{resp}", qop=auth, nc={nc}, cnonce="{cnonce}", '
            f'algorithm={alg}').encode()


DIGEST_RX = re.compile(rb'@DIGEST (\S+) (\S+)@')


class Replay:
    def __init__(self, args, contexts):
        self.args = args
        self.contexts = contexts

    def read_some(self, sock, wait, got):
        """Read what arrives within `wait` seconds of quiet; False on EOF."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and not sock.pending():
                return True
            if not sock.pending():
                r, _, _ = select.select([sock], [], [], max(0.0, left))
                if not r:
                    return True
            try:
                data = sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            if not data:
                return False
            got.append(data)
            if sum(len(g) for g in got) > (4 << 20):
                return True

    def write(self, sock, plan, data):
        if plan.split == 'whole' or len(data) < 2:
            sock.sendall(data)
            return
        rng = plan.rng
        i = 0
        while i < len(data):
            n = rng.randint(1, 3) if plan.split == 'bytes' else rng.randint(1, 64)
            if plan.split == 'bytes' and len(data) > 256:
                n = rng.randint(1, 256)        # keep long sends bounded in time
            sock.sendall(data[i:i + n])
            i += n
            if rng.random() < 0.2:
                time.sleep(rng.choice([0, 0.001, 0.003]))

    def run(self, plan):
        """(outcome, response bytes)"""
        a = self.args
        got = []
        end = time.monotonic() + a.session_time
        try:
            raw = socket.create_connection(plan.target, timeout=a.session_time)
        except OSError as e:
            return f'connect-error:{type(e).__name__}', b''
        try:
            try:
                sock = self.contexts[plan.cert].wrap_socket(raw, server_hostname='localhost')
            except (ssl.SSLError, OSError) as e:
                return f'tls-refused:{type(e).__name__}', b''
            sock.settimeout(a.session_time)
            if plan.proto == 'imap' and not self.read_some(sock, a.read_wait * 4, got):
                return 'closed-at-greeting', b''.join(got)
            for k, data in enumerate(plan.sends[:plan.stop_after]):
                if time.monotonic() > end:
                    return 'session-time', b''.join(got)
                m = DIGEST_RX.search(data)
                if m and a.digest_user:
                    # the challenge may still be on its way from a busy gateway
                    wait_end = min(end, time.monotonic() + 2.0)
                    while (b'WWW-Authenticate' not in b''.join(got) and
                           time.monotonic() < wait_end and
                           self.read_some(sock, a.read_wait, got)):
                        pass
                    ch = re.findall(rb'WWW-Authenticate: (Digest [^\r\n]*)', b''.join(got))
                    hdr = digest_auth(m.group(1).decode(errors='replace'),
                                      m.group(2).decode(errors='replace'),
                                      ch[-1] if ch else b'', a.digest_user, a.digest_password)
                    data = data[:m.start()] + hdr + data[m.end():]
                try:
                    self.write(sock, plan, data)
                except (ssl.SSLError, OSError):
                    return 'closed-while-sending', b''.join(got)
                if plan.close_early and k == plan.stop_after - 1:
                    return 'client-closed-early', b''.join(got)
                if not self.read_some(sock, a.read_wait, got):
                    return 'closed-by-gateway', b''.join(got)
            # the rest of the answers, until quiet or the session's time
            while time.monotonic() < end:
                before = sum(len(g) for g in got)
                if not self.read_some(sock, a.read_wait * 3, got):
                    return 'closed-by-gateway', b''.join(got)
                if sum(len(g) for g in got) == before:
                    return 'client-closed', b''.join(got)
            return 'session-time', b''.join(got)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            return f'reset:{type(e).__name__}', b''.join(got)
        except socket.timeout:
            return 'session-time', b''.join(got)
        finally:
            raw.close()


def answer_kinds(proto, data):
    """Short labels of what the gateway answered (for the counts)."""
    if proto == 'http':
        return [f'http-{m.decode()}' for m in re.findall(rb'^HTTP/1\.[01] (\d{3})', data, re.M)]
    kinds = []
    for m in re.finditer(rb'^(\S+) (OK|NO|BAD|BYE)\b', data, re.M):
        tag = m.group(1)
        kinds.append(f'imap-{"untagged" if tag == b"*" else "tagged"}-{m.group(2).decode()}')
    return kinds


# -------------------------------------------------------------- running --

def gateway_alive(pid):
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead too
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(') ', 1)[1][:1] != 'Z'
    except OSError:
        return False


def save_plan(directory, seed, plan, note):
    d = os.path.join(directory, f'seed{seed}-session{plan.index}')
    os.makedirs(d, exist_ok=True)
    for k, data in enumerate(plan.sends):
        with open(os.path.join(d, f'send{k:03d}.bin'), 'wb') as f:
            f.write(data)
    desc = plan.describe()
    desc['seed'] = seed
    desc['note'] = note
    with open(os.path.join(d, 'session.json'), 'w') as f:
        json.dump(desc, f, indent=1)
    return d


def contexts_for(args):
    out = {}
    for which in ('client', 'none'):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(args.ca)
        ctx.check_hostname = True
        if which == 'client':
            ctx.load_cert_chain(args.cert, args.key)
        out[which] = ctx
    return out


def flood(args, log=print):
    """Runs the flood; returns a result dict: sessions run, outcome counts,
    answer counts, whether the gateway died and where the sessions in flight
    were saved."""
    corpora = {'imap': imap_sessions(args.imap_user, args.imap_password),
               'http': http_sessions('localhost', args.digest_user, args.digest_password,
                                     args.digest_realm, args.http_base)}
    replay = Replay(args, contexts_for(args))
    outcomes = collections.Counter()
    answers = collections.Counter()
    lock = threading.Lock()
    in_flight = {}
    # a sanitized gateway takes a moment to die after the fatal input, so
    # the sessions that ended just before are suspects too
    recent = collections.deque(maxlen=max(8, args.concurrency * 2))
    dead = threading.Event()
    result = {'sessions': 0, 'died': False, 'saved': [], 'died_after': None}
    indices = [args.only] if args.only is not None else range(args.first, args.first + args.sessions)
    t0 = time.monotonic()

    def died(after):
        """Marks the death (once) and saves the suspects."""
        with lock:
            if dead.is_set():
                return
            dead.set()
            result['died'] = True
            result['died_after'] = after
            suspects = sorted({p.index: p for p in list(recent) + list(in_flight.values())}
                              .values(), key=lambda p: p.index)
            if args.findings:
                for p in suspects:
                    result['saved'].append(save_plan(args.findings, args.seed, p,
                                                     'in flight or just ended when the '
                                                     'gateway died'))
            result['suspects'] = [p.index for p in suspects]

    def one(i):
        if dead.is_set():
            return
        plan = make_plan(args, corpora, i)
        with lock:
            in_flight[i] = plan
        outcome, data = replay.run(plan)
        with lock:
            in_flight.pop(i, None)
            recent.append(plan)
            outcomes[f'{plan.proto}:{outcome.split(":")[0]}'] += 1
            for k in answer_kinds(plan.proto, data):
                answers[k] += 1
            result['sessions'] += 1
            n = result['sessions']
        if args.verbose:
            log(f'session {i}: {plan.ops} -> {outcome}')
        if not gateway_alive(args.pid):
            died(i)
        elif n % args.progress == 0:
            log(f'{n} sessions, {time.monotonic() - t0:.0f} s')

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as ex:
        futures = []
        for i in indices:
            if dead.is_set():
                break
            futures.append(ex.submit(one, i))
            # keep the queue short so that a death stops the flood soon
            while len(futures) > args.concurrency * 2:
                futures.pop(0).result()
        for f in futures:
            f.result()
    # the last sessions' effect may still be on its way
    settle = time.monotonic() + args.settle
    while args.pid and not dead.is_set() and time.monotonic() < settle:
        if not gateway_alive(args.pid):
            died(None)
        time.sleep(0.1)
    result['seconds'] = round(time.monotonic() - t0, 1)
    result['outcomes'] = dict(sorted(outcomes.items()))
    result['answers'] = dict(sorted(answers.items()))
    return result


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--imap', action='append', type=parse_addr, default=[],
                   help='an IMAP listener (implicit TLS), HOST:PORT; repeatable')
    p.add_argument('--http', action='append', type=parse_addr, default=[],
                   help='an HTTP listener (implicit TLS), HOST:PORT; repeatable')
    p.add_argument('--ca', required=True, help='CA that signed the gateway certificate')
    p.add_argument('--cert', required=True, help='client certificate')
    p.add_argument('--key', required=True, help='client key')
    p.add_argument('--imap-user', default='alice')
    p.add_argument('--imap-password', default='alicepw')
    p.add_argument('--digest-user', default='')
    p.add_argument('--digest-password', default='')
    p.add_argument('--digest-realm', default='')
    p.add_argument('--http-base', default='/flood', help='path prefix of HTTP requests')
    p.add_argument('--sessions', type=int, default=1000)
    p.add_argument('--first', type=int, default=0, help='index of the first session')
    p.add_argument('--only', type=int, help='replay only this session index')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--concurrency', type=int, default=4)
    p.add_argument('--session-time', type=float, default=5.0,
                   help='seconds one session may take')
    p.add_argument('--read-wait', type=float, default=0.03,
                   help='seconds of quiet that end a read after each send')
    p.add_argument('--imap-share', type=float, default=0.5)
    p.add_argument('--clean-share', type=float, default=0.05,
                   help='share of sessions sent unmutated')
    p.add_argument('--pid', type=int, help="the gateway's pid: stop when it dies")
    p.add_argument('--settle', type=float, default=3.0,
                   help='seconds to watch --pid after the last session')
    p.add_argument('--findings', help='where to save the sessions in flight at a death')
    p.add_argument('--progress', type=int, default=500)
    p.add_argument('--verbose', action='store_true')
    p.add_argument('--dump', action='store_true',
                   help='print the sends of each planned session and exit')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if not args.imap and not args.http:
        raise SystemExit('give --imap and/or --http')
    if not args.imap:
        args.imap_share = 0.0
    if not args.http:
        args.imap_share = 1.0
    if args.dump:
        corpora = {'imap': imap_sessions(args.imap_user, args.imap_password),
                   'http': http_sessions('localhost', args.digest_user, args.digest_password,
                                         args.digest_realm, args.http_base)}
        idx = [args.only] if args.only is not None else range(args.first, args.first + args.sessions)
        for i in idx:
            plan = make_plan(args, corpora, i)
            print(json.dumps(plan.describe()))
            for s in plan.sends:
                print('  ', repr(s[:300]), f'({len(s)} bytes)' if len(s) > 300 else '')
        return 0
    r = flood(args, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(r, indent=1))
    return 1 if r['died'] else 0


if __name__ == '__main__':
    sys.exit(main())
