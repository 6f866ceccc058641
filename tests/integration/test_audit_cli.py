"""test_audit_cli.py — `cpmgatectl audit` against audit databases written by
the real writer (tests/unit/audit_fill.c): keygen, verify (intact, and each
kind of tampering located), show filters, export checked by an independent
re-computation of the chain, rotation (by the holding process on SIGUSR1,
and offline), kill -9 recovery, SIGTERM under load, and fail closed on a
full file system.
Binaries come from $CPMGATE_BUILD (default: <repo>/build)."""

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest

import audit_blocks

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get('CPMGATE_BUILD', REPO / 'build')).resolve()
CTL = BUILD / 'cpmgatectl'
FILL = BUILD / 'tests' / 'unit' / 'audit_fill'

KEYS = ['seq', 'time', 'txid', 'request_id', 'conn_id', 'listener', 'client',
        'principal', 'method', 'tls_version', 'tls_cipher', 'service',
        'operation', 'resource', 'decision', 'rule_id', 'result', 'bytes_in',
        'bytes_out', 'content_sha256', 'key_id', 'validation', 'reason']


def ctl(*args, check=None):
    p = subprocess.run([str(CTL), *map(str, args)], capture_output=True,
                       text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def fill(db, key, n, *extra, expect=0):
    p = subprocess.run([str(FILL), '--db', str(db), '--key', str(key), '-n',
                        str(n), '--checkpoint-records', '100', *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == expect, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def keys(tmp_path):
    priv = tmp_path / 'audit.key'
    p = ctl('audit', 'keygen', '--out', priv, check=0)
    pub = tmp_path / 'audit.pub'
    pub.write_text(p.stdout)
    return priv, pub


@pytest.fixture
def filled(tmp_path, keys):
    """250 records, checkpoints at 100, 200 and the final one at 250."""
    db = tmp_path / 'audit.db'
    fill(db, keys[0], 250)
    return db, keys[1]


def test_keygen_writes_a_private_key_0600_and_prints_the_public_key(tmp_path):
    out = tmp_path / 'k.key'
    p = ctl('audit', 'keygen', '--out', out, check=0)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert 'BEGIN PRIVATE KEY' in out.read_text()
    assert p.stdout.startswith('-----BEGIN PUBLIC KEY-----')
    before = out.read_bytes()
    p = ctl('audit', 'keygen', '--out', out, check=1)
    assert 'exists' in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before
    ctl('audit', 'keygen', check=2)


def test_verify_proves_an_intact_chain(filled):
    db, pub = filled
    p = ctl('audit', 'verify', '--audit-db', db, '--key', pub, check=0)
    assert p.stdout.splitlines()[0] == \
        'audit chain intact: 250 records, 3 checkpoints, last seq 250'
    p = ctl('audit', 'verify', '--audit-db', db, '--json', check=0)
    v = json.loads(p.stdout)
    assert v['intact'] is True and v['last_checkpoint_seq'] == 250
    assert 'give --key' in v['notes']


def test_export_jsonl_matches_an_independent_recomputation(filled):
    db, _ = filled
    p = ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl', check=0)
    lines = p.stdout.splitlines()
    assert len(lines) == 250
    prev = bytes(32)
    for i, line in enumerate(lines, 1):
        obj = json.loads(line)
        digest = obj.pop('hash')
        assert list(obj) == KEYS
        assert obj['seq'] == i
        # canon is the line without its hash key, byte for byte, and it is
        # compact JSON in that key order
        suffix = ',"hash":"%s"}' % digest
        assert line.endswith(suffix)
        canon = line[:-len(suffix)] + '}'
        assert canon == json.dumps(obj, separators=(',', ':'), ensure_ascii=False)
        h = hashlib.sha256(prev + canon.encode()).hexdigest()
        assert h == digest, 'seq %d' % i
        prev = bytes.fromhex(h)
    # the escaping record survived as text
    tricky = json.loads(lines[4])
    assert tricky['reason'].startswith('quote " backslash \\ newline \n tab \t ctl \x01')
    assert '\u00e9' in tricky['reason'] and '\ufffd' in tricky['reason']
    ctl('audit', 'export', '--audit-db', db, '--format', 'csv', check=2)


TAMPER = [
    ('field', lambda db: audit_blocks.change(db, 5, resource='Trash'), None, 5,
     'record 5 changed'),
    ('delete', lambda db: audit_blocks.drop(db, 9), None, 9, 'record 9 removed'),
    ('swap', lambda db: audit_blocks.swap(db, 20, 21), None, 20, 'reordered'),
    ('truncate', lambda db: audit_blocks.truncate(db, 230), None, 231, 'tail truncated'),
    ('stored-hash', lambda db: audit_blocks.set_hash(db, 40, bytes(32)), None, 40,
     'record 40 changed: its hash does not follow'),
    ('forged-checkpoint', 'UPDATE checkpoints SET signature = randomblob(64) '
                          'WHERE seq = 200', 'key', 200, 'signature does not verify'),
]


@pytest.mark.parametrize('name,edit,withkey,seq,what', TAMPER, ids=[t[0] for t in TAMPER])
def test_verify_locates_tampering(filled, name, edit, withkey, seq, what):
    db, pub = filled
    if callable(edit):
        edit(db)
    else:
        con = sqlite3.connect(db)
        con.executescript(edit)
        con.commit()
        con.close()
    args = ['audit', 'verify', '--audit-db', db] + (['--key', pub] if withkey else [])
    p = ctl(*args, check=1)
    assert p.stdout.startswith('audit chain broken at seq %d: ' % seq), p.stdout
    assert what in p.stdout
    assert len(p.stderr.strip().splitlines()) == 1


# A block's columns, each changed alone in a block of two or more records:
# the chain stays whole, but show --since/--until skip blocks by the times
# and export --from-seq by last_seq, so verify holds each against the block's
# records and names it.
BLOCK_COLUMNS = [
    ('first_seq', 'first_seq', 'first_seq + 1'),
    ('last_seq', 'last_seq', 'first_seq'),
    ('first_time', 'first_time', "'2999-01-01T00:00:00.000000Z'"),
    ('first_time-blob', 'first_time', 'CAST(first_time AS BLOB)'),
    ('last_time', 'last_time', "'2000-01-01T00:00:00.000000Z'"),
]


@pytest.mark.parametrize('name,column,value', BLOCK_COLUMNS, ids=[c[0] for c in BLOCK_COLUMNS])
def test_verify_holds_block_columns_against_their_records(filled, name, column, value):
    db, pub = filled
    with sqlite3.connect(db) as con:
        last, first = con.execute('SELECT last_seq, first_seq FROM blocks WHERE '
                                  'last_seq > first_seq ORDER BY last_seq LIMIT 1').fetchone()
        con.execute('UPDATE blocks SET %s = %s WHERE last_seq = ?' % (column, value), (last,))
    named = first if column == 'last_seq' else last
    p = ctl('audit', 'verify', '--audit-db', db, '--key', pub, check=1)
    assert p.stdout.startswith('audit chain broken at seq %d: block %d changed: its %s column '
                               % (first, named, column)), p.stdout
    assert len(p.stderr.strip().splitlines()) == 1


def test_records_are_stored_in_blocks_and_export_as_hashed(filled):
    """The gateway's writer keeps records in the compact form, in blocks;
    each decoded record is the exported line's content and its stored hash
    the exported hash."""
    db, _ = filled
    with sqlite3.connect(db) as c:
        assert c.execute('SELECT count(*) FROM records').fetchone()[0] == 0
        assert c.execute('PRAGMA user_version').fetchone()[0] == 3
    recs = audit_blocks.records(db)
    assert [r['seq'] for r in recs] == list(range(1, 251))
    lines = ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl',
                check=0).stdout.splitlines()
    for rec, line in zip(recs, lines):
        obj = json.loads(line)
        assert obj['hash'] == rec['hash'].hex()
        for k in audit_blocks.STRINGS:
            v = rec[k]
            if v is not None and any('\udc80' <= ch <= '\udcff' for ch in v):
                v = v.encode(errors='surrogateescape').decode(errors='replace')
            if k in obj or v is not None:
                assert obj[k] == v, (rec['seq'], k)
        assert obj['conn_id'] == (rec['conn_id'] or None)
        assert obj['bytes_in'] == (None if rec['bytes_in'] < 0 else rec['bytes_in'])


def test_verify_with_another_key_refuses_the_checkpoints(filled, tmp_path):
    db, _ = filled
    other = tmp_path / 'other.key'
    ctl('audit', 'keygen', '--out', other, check=0)
    p = ctl('audit', 'verify', '--audit-db', db, '--key', other, check=1)
    assert 'audit chain broken at seq 100: checkpoint at seq 100 is not signed by the given key' \
        in p.stdout


def _show(db, *filters):
    p = ctl('audit', 'show', '--audit-db', db, *filters, check=0)
    return p.stdout.splitlines()


def test_show_filters(filled):
    db, _ = filled
    rows = _show(db, '--principal', 'alice')
    assert len(rows) == 84  # records 0, 3, 6, ... of 250
    assert all(' principal=alice ' in r for r in rows)
    rows = _show(db, '--decision', 'deny')
    assert len(rows) == 62 and all(' decision=deny ' in r for r in rows)
    rows = _show(db, '--txid', 'S0002.5')
    assert len(rows) == 1 and rows[0].startswith('26 ')
    rows = _show(db, '--principal', 'bob', '--decision', 'deny', '--limit', '3')
    assert len(rows) == 3
    first_time = rows[0].split()[1]
    assert _show(db, '--until', '1999-01-01') == []
    assert len(_show(db, '--since', '1999-01-01T00:00:00Z')) == 250
    assert len(_show(db, '--since', first_time, '--principal', 'bob',
                     '--decision', 'deny')) >= 3
    p = ctl('audit', 'show', '--audit-db', db, '--txid', 'S0001.0', '--json', check=0)
    arr = json.loads(p.stdout)
    assert len(arr) == 1 and arr[0]['seq'] == 11 and arr[0]['txid'] == 'S0001.0'
    assert 'decision=allow' in _show(db, '--txid', 'S0000.0')[0]
    # bad input: one line, exit 1 or 2, nothing printed
    for bad, code in [(['--decision', 'maybe'], 1), (['--since', 'yesterday'], 1),
                      (['--limit', '0'], 1), (['--bogus', 'x'], 2)]:
        p = ctl('audit', 'show', '--audit-db', db, *bad, check=code)
        assert p.stdout == ''
    ctl('audit', 'show', check=2)
    ctl('audit', 'show', '--audit-db', Path(db).parent / 'missing.db', check=1)


def test_kill9_keeps_what_was_committed_and_the_chain_continues(tmp_path, keys):
    db = tmp_path / 'audit.db'
    fill(db, keys[0], 150, '--crash', expect=-signal.SIGKILL)
    p = ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], check=0)
    assert p.stdout.startswith('audit chain intact: 150 records, 1 checkpoints, last seq 150')
    assert 'records 101-150 follow the last checkpoint' in p.stdout
    fill(db, keys[0], 20)
    p = ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], check=0)
    assert p.stdout.startswith('audit chain intact: 170 records, 2 checkpoints, last seq 170')


def test_rotate_is_refused_on_a_held_file_and_done_on_sigusr1(tmp_path, keys):
    db = tmp_path / 'audit.db'
    proc = subprocess.Popen([str(FILL), '--db', str(db), '--key', str(keys[0]), '-n', '40',
                             '--hold'], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith('ready ')
        pid = int(line.split()[1])
        p = ctl('audit', 'rotate', '--audit-db', db, check=1)
        assert 'pid %d' % pid in p.stderr and 'kill -USR1 %d' % pid in p.stderr
        assert not list(tmp_path.glob('audit.db.*-*'))
        time.sleep(0.3)  # the 40 records are committed in well under that
        proc.send_signal(signal.SIGUSR1)
        sealed = tmp_path / 'audit.db.1-40'
        for _ in range(200):
            if sealed.exists():
                break
            time.sleep(0.05)
        assert sealed.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ctl('audit', 'verify', '--audit-db', sealed, '--key', keys[1], check=0)
    p = ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], check=0)
    assert 'last seq 41' in p.stdout and 'link verified' in p.stdout
    # offline, no gateway: cpmgatectl rotates itself
    p = ctl('audit', 'rotate', '--audit-db', db, check=0)
    assert 'audit.db.41-41' in p.stdout
    p = ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], check=0)
    assert 'last seq 42' in p.stdout and 'audit.db.41-41 (last seq 41): link verified' in p.stdout
    first = json.loads(ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl',
                           check=0).stdout.splitlines()[0])
    assert first['operation'] == 'rotate' and first['resource'] == 'audit.db.41-41'


def test_sigterm_under_load_commits_everything_acknowledged(tmp_path, keys):
    db = tmp_path / 'audit.db'
    proc = subprocess.Popen([str(FILL), '--db', str(db), '--key', str(keys[0]), '--load'],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith('ready ')
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    words = out.split()
    acked, committed = int(words[1]), int(words[3])
    assert acked > 1000 and committed == acked
    v = json.loads(ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], '--json',
                       check=0).stdout)
    assert v['intact'] and v['records'] == acked
    assert v['last_checkpoint_seq'] == v['last_seq']  # the final checkpoint of a clean stop


def test_full_filesystem_fails_closed_and_recovers(tmp_path, keys):
    mnt = tmp_path / 'small'
    mnt.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip('cannot mount a small tmpfs here: ' + r.stderr.strip())
    try:
        db = mnt / 'audit.db'
        fill(db, keys[0], 1)
        filler = mnt / 'filler'
        p = fill(db, keys[0], 0, '--diskfull', filler)
        out = p.stdout.splitlines()
        assert out[0].startswith('unavailable after ') and out[0].endswith('submit refused')
        assert out[1] == 'recovered'
        assert not filler.exists()  # the driver filled the file system, then freed it
        v = json.loads(ctl('audit', 'verify', '--audit-db', db, '--key', keys[1], '--json',
                           check=0).stdout)
        committed = int(out[2].split()[1])
        assert v['intact'] and v['records'] == committed + 1
    finally:
        subprocess.run(['umount', '-l', str(mnt)], capture_output=True)
