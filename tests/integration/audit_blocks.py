"""audit_blocks.py — the audit database's blocks (schema 3) read and
rewritten from Python, as someone who edits the file with sqlite3 would:
the tests change, drop and reorder stored records and expect `cpmgatectl
audit verify` to name the record. Written from the format's description
(store/audit_bin.h), not from the C code, so it also checks that the
description holds.

A record: varints seq, usec, conn_id, zigzag rule_id, bytes_in, bytes_out,
then twenty strings (varint 0 = null, else length + 1, then the bytes). A
block's data: per record, varint length, the record, its 32-byte hash."""
import datetime
import sqlite3

STRINGS = ['txid', 'request_id', 'listener', 'client', 'principal', 'method',
           'tls_version', 'tls_cipher', 'service', 'operation', 'resource', 'decision',
           'result', 'content_sha256', 'key_id', 'validation', 'reason', 'node',
           'originator', 'origin_txid']
NUMBERS = ['seq', 'usec', 'conn_id', 'rule_id', 'bytes_in', 'bytes_out']


def _var(data, i):
    v = shift = 0
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def _put(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def decode(rec):
    """The record as a dict of its fields (bytes that are not UTF-8, which
    the canon shows as U+FFFD, kept as surrogate escapes)."""
    out, i = {}, 0
    for name in NUMBERS:
        v, i = _var(rec, i)
        if name in ('rule_id', 'bytes_in', 'bytes_out'):
            v = (v >> 1) ^ -(v & 1)
        out[name] = v
    for name in STRINGS:
        n, i = _var(rec, i)
        out[name] = None if n == 0 else rec[i:i + n - 1].decode(errors='surrogateescape')
        i += max(n - 1, 0)
    assert i == len(rec), 'bytes left over'
    return out


def encode(fields):
    out = bytearray()
    for name in NUMBERS:
        v = fields[name]
        if name in ('rule_id', 'bytes_in', 'bytes_out'):
            v = (v << 1) ^ (v >> 63)
            v &= (1 << 64) - 1
        out += _put(v)
    for name in STRINGS:
        s = fields[name]
        if s is None:
            out += _put(0)
        else:
            b = s.encode(errors='surrogateescape')
            out += _put(len(b) + 1) + b
    return bytes(out)


def read(db):
    """[(first_seq, first_time, last_time, [[record bytes, hash], ...])] in order."""
    with sqlite3.connect(db) as c:
        rows = c.execute('SELECT first_seq, first_time, last_time, data FROM blocks '
                         'ORDER BY last_seq').fetchall()
    blocks = []
    for first, t0, t1, data in rows:
        entries, i = [], 0
        while i < len(data):
            n, i = _var(data, i)
            entries.append([data[i:i + n], data[i + n:i + n + 32]])
            i += n + 32
        blocks.append((first, t0, t1, entries))
    return blocks


def rfc3339(usec):
    """A record's time as the canon and the block columns hold it."""
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=usec)
    return t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def write(db, blocks):
    """Stores blocks as given, their columns in step with the entries, as a
    careful editor would: each ends at first_seq + len - 1, and its times
    are those of its first and last record (t0, t1 are not used)."""
    with sqlite3.connect(db) as c:
        c.execute('DELETE FROM blocks')
        for first, _, _, entries in blocks:
            if not entries:
                continue
            data = b''.join(_put(len(r)) + r + h for r, h in entries)
            t0, t1 = (rfc3339(decode(entries[k][0])['usec']) for k in (0, -1))
            c.execute('INSERT INTO blocks (last_seq, first_seq, first_time, last_time, data) '
                      'VALUES (?, ?, ?, ?, ?)', (first + len(entries) - 1, first, t0, t1, data))


def _find(blocks, seq):
    for b, (first, _, _, entries) in enumerate(blocks):
        if first <= seq < first + len(entries):
            return b, seq - first
    raise KeyError(seq)


def records(db):
    """Every stored record decoded, in order, with its stored hash."""
    return [dict(decode(r), hash=h) for _, _, _, es in read(db) for r, h in es]


def last_hash(db):
    return read(db)[-1][3][-1][1]


def change(db, seq, **fields):
    """Record seq with some fields changed (its stored hash kept)."""
    blocks = read(db)
    b, i = _find(blocks, seq)
    rec = decode(blocks[b][3][i][0])
    rec.update(fields)
    blocks[b][3][i][0] = encode(rec)
    write(db, blocks)


def set_hash(db, seq, h):
    """The stored hash of record seq replaced by h."""
    blocks = read(db)
    b, i = _find(blocks, seq)
    blocks[b][3][i][1] = h
    write(db, blocks)


def drop(db, seq):
    """Record seq taken out of its block (the records after it move up)."""
    blocks = read(db)
    b, i = _find(blocks, seq)
    del blocks[b][3][i]
    write(db, blocks)


def swap(db, a, b):
    """The stored entries of records a and b exchanged."""
    blocks = read(db)
    (ba, ia), (bb, ib) = _find(blocks, a), _find(blocks, b)
    blocks[ba][3][ia], blocks[bb][3][ib] = blocks[bb][3][ib], blocks[ba][3][ia]
    write(db, blocks)


def truncate(db, after):
    """Every record after seq 'after' removed."""
    blocks = [(f, t0, t1, [e for k, e in enumerate(es) if f + k <= after])
              for f, t0, t1, es in read(db)]
    write(db, blocks)
