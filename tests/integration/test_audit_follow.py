"""test_audit_follow.py — `cpmgatectl audit export --follow`: records
committed by a running gateway after the follower started come out as JSON
lines, in order, each with hash and prev_hash that chain (checked by
recomputing SHA-256(prev_hash || canon)); a follower started again with
--from-seq goes on without a gap or a repeat; a rotation while following
(and --from-seq of a record in a sealed file) loses nothing; SIGINT and
SIGTERM stop it with exit 0; the export without --follow keeps its format
and takes --from-seq too."""

import hashlib
import json
import queue
import signal
import subprocess
import threading
import time

import cg
from test_audit_cli import CTL, ctl, fill, keys  # noqa: F401 (fixture)
from test_backup import gw, _get  # noqa: F401 (fixture)


class Follower:
    """cpmgatectl audit export --follow in the background, its lines in a queue."""

    def __init__(self, db, *extra):
        self.proc = subprocess.Popen(
            [str(CTL), 'audit', 'export', '--audit-db', str(db), '--format', 'jsonl',
             '--follow', *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cg.sanitizer_env())
        self.lines = queue.Queue()
        self.got = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def _next(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f'no line in {timeout}s; got {self.got}, stderr '
                                 f'{self.proc.stderr.read()}') from None
        self.got.append(line)
        return line

    def take(self, n, timeout=10):
        for _ in range(n):
            self._next(timeout)

    def take_until(self, pred, timeout=10):
        while not pred(json.loads(self._next(timeout))):
            pass

    def stop(self, sig=signal.SIGTERM):
        """Stops it (exit 0 required); returns every line it printed."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        err = self.proc.stderr.read()
        assert rc == 0, (rc, err)
        assert 'ERROR' not in err and 'runtime error' not in err, err
        while not self.lines.empty():
            self.got.append(self.lines.get())
        return self.got


def check_chain(lines, prev=None):
    """Each line's hash is SHA-256(prev_hash || the line without hash and
    prev_hash), its prev_hash the line before's hash, its seq the next.
    Returns the records."""
    recs = []
    for line in lines:
        rec = json.loads(line)
        canon = line[:line.index(',"hash":')] + '}'
        assert line.rstrip('\n').endswith('"prev_hash":"%s"}' % rec['prev_hash'])
        want = hashlib.sha256(bytes.fromhex(rec['prev_hash']) + canon.encode()).hexdigest()
        assert rec['hash'] == want, rec['seq']
        if recs:
            assert rec['seq'] == recs[-1]['seq'] + 1
            assert rec['prev_hash'] == recs[-1]['hash']
        elif prev:
            assert rec['seq'] == prev['seq'] + 1 and rec['prev_hash'] == prev['hash']
        recs.append(rec)
    return recs


def _export(db, *extra):
    p = ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl', *extra, check=0)
    return p.stdout.splitlines(keepends=True)


def test_follow_streams_new_records_in_order_and_resumes(gw, pki):
    # the records of the start (policy copied in, ...) first: then a quiet log
    def quiet():
        a = _export(gw.audit_db)
        time.sleep(0.5)
        return a and a == _export(gw.audit_db)
    cg.wait_until(quiet, timeout=10, what='a quiet audit log')
    last_before = json.loads(_export(gw.audit_db)[-1])['seq']
    f = Follower(gw.audit_db)
    time.sleep(1)  # it has read where the chain ends (well under this)
    for i in range(5):
        _get(gw, pki, f'/content/follow-{i}')
    f.take_until(lambda r: (r['resource'] or '').endswith('follow-4'))
    recs = check_chain(f.stop())
    # nothing from before it started, everything after, in commit order
    assert recs[0]['seq'] == last_before + 1
    paths = [r['resource'] for r in recs if r['operation'] == 'GET']
    assert paths == [f'/content/follow-{i}' for i in range(5)]
    # the stored chain says the same
    stored = {json.loads(x)['seq']: json.loads(x)['hash'] for x in _export(gw.audit_db)}
    assert all(stored[r['seq']] == r['hash'] for r in recs)

    # more traffic while nobody follows; a new follower resumes where the
    # first stopped: no gap, no repeat
    for i in range(5, 8):
        _get(gw, pki, f'/content/follow-{i}')
    f = Follower(gw.audit_db, '--from-seq', recs[-1]['seq'] + 1)
    _get(gw, pki, '/content/follow-8')
    f.take_until(lambda r: (r['resource'] or '').endswith('follow-8'))
    recs2 = check_chain(f.stop(signal.SIGINT), prev=recs[-1])
    paths = [r['resource'] for r in recs2 if r['operation'] == 'GET']
    assert paths == [f'/content/follow-{i}' for i in range(5, 9)]


def test_follow_goes_on_across_a_rotation(tmp_path, keys):  # noqa: F811
    db = tmp_path / 'audit.db'
    fill(db, keys[0], 10)
    f = Follower(db, '--from-seq', 3)
    f.take(8)
    fill(db, keys[0], 5)
    ctl('audit', 'rotate', '--audit-db', db, check=0)  # seals 1-15
    fill(db, keys[0], 4)
    f.take(5 + 1 + 4)
    recs = check_chain(f.stop())
    assert [r['seq'] for r in recs] == list(range(3, 21))
    assert recs[15 - 3 + 1]['operation'] == 'rotate'
    assert (tmp_path / 'audit.db.1-15').exists()
    # a record of the sealed file is found from the live one
    f = Follower(db, '--from-seq', 14)
    f.take(7)
    again = f.stop()
    assert [r['seq'] for r in check_chain(again)] == list(range(14, 21))
    assert [json.loads(x)['hash'] for x in again] == [r['hash'] for r in recs[11:]]


def test_follow_takes_no_filters_and_export_keeps_its_format(tmp_path, keys):  # noqa: F811
    db = tmp_path / 'audit.db'
    fill(db, keys[0], 6)
    p = ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl', '--follow',
            '--principal', 'alice', check=1)
    assert 'only --from-seq' in p.stderr
    p = ctl('audit', 'export', '--audit-db', db, '--format', 'jsonl', '--follow',
            '--from-seq', 'x', check=1)
    assert '--from-seq' in p.stderr
    lines = _export(db, '--from-seq', 4)
    recs = [json.loads(x) for x in lines]
    assert [r['seq'] for r in recs] == [4, 5, 6]
    assert all('prev_hash' not in r for r in recs)
    assert all(x.rstrip('\n').endswith('"hash":"%s"}' % r['hash']) for x, r in zip(lines, recs))
