"""test_policy_faults.py — a node whose policy store does not answer (issue
17 item 3, the parts every store backend shares): /metrics says whether the
store answers (cpmgate_policy_store_up) and how long ago the policy in
force was last confirmed current (cpmgate_policy_snapshot_age_seconds);
/healthz answers 503 once that age passes policy_max_age; with
policy_cache the node keeps a verified copy of each policy it loads and,
started while the store cannot be loaded, serves that copy (and follows
the store again once it answers); without the copy, or with a damaged
one, it refuses to start: it never serves with no policy. The store is
made unloadable by replacing the SQLite file with garbage."""

import os
import stat
import time

import pytest

import cg
from test_metrics import scrape

AGE = 'cpmgate_policy_snapshot_age_seconds'
UP = 'cpmgate_policy_store_up'


def _gw(gateway_factory, pki, nginx, **keys):
    keys.setdefault('admin_listen', f'127.0.0.1:{cg.free_port()}')
    return cg.http_alice_gateway(gateway_factory, pki, nginx, keys, start=False)


def _get(g, pki):
    r = cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                        ctx=cg.client_context(pki), source='127.0.0.1')
    assert r is not None, 'no answer'
    return r[0]


def _healthz(g):
    st, _, body = cg.http_plain(g.admin_addr(), 'GET', '/healthz')
    return st, body.decode()


def _break_store(g):
    """The policy database (and its -wal, -shm) aside, garbage in its
    place; returns what puts it back."""
    names = [n for n in (g.policy_db, g.policy_db + '-wal', g.policy_db + '-shm')
             if os.path.exists(n)]
    for n in names:
        os.rename(n, n + '.saved')
    with open(g.policy_db, 'wb') as f:
        f.write(b'this is not a policy database\n' * 200)

    def restore():
        for n in reversed(names):
            os.replace(n + '.saved', n)
    return restore


def _start_fails(g):
    g.start(wait=False)
    rc = g.proc.wait(30)
    g.stop()
    assert rc != 0
    return g.log()


def test_metrics_say_the_store_answers_and_the_policy_is_current(gateway_factory, pki, nginx):
    g = _gw(gateway_factory, pki, nginx, policy_max_age='2s').start()
    m = scrape(g)
    assert m[UP] == 1 and m[AGE] <= 1, m
    time.sleep(2.5)  # confirmed at every poll: the age stays small
    m = scrape(g)
    assert m[UP] == 1 and m[AGE] <= 1, m
    assert _healthz(g) == (200, 'ok\n')


def test_a_change_that_does_not_build_ages_the_policy_in_force(gateway_factory, pki, nginx):
    import sqlite3
    g = _gw(gateway_factory, pki, nginx, policy_max_age='1').start()
    start = g.log_size()
    con = sqlite3.connect(g.policy_db)
    with con:  # cpmgatectl refuses such a pattern; a hand edit does not
        con.execute("INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                    "VALUES ('deny', 'alice', 'http', 'x/${user', 31, 'now')")
    con.close()
    g.wait_log(r'reload failed, keeping the current policy', start=start)
    cg.wait_until(lambda: scrape(g)[AGE] >= 2, timeout=10, what='the age growing')
    assert scrape(g)[UP] == 1  # the store answers; its policy is not in force
    st, body = _healthz(g)
    assert st == 503 and 'policy_max_age 1 s' in body and 'store' not in body, body
    assert _get(g, pki) == 200  # the last good policy serves


def test_no_store_and_no_cache_refuses_to_start(gateway_factory, pki, nginx):
    g = _gw(gateway_factory, pki, nginx)
    _break_store(g)
    log = _start_fails(g)
    assert f'policy database {g.policy_db}' in log, log


def test_policy_cache_serves_while_the_store_is_down_then_the_store_again(
        gateway_factory, pki, nginx):
    g = _gw(gateway_factory, pki, nginx, policy_cache='policy.cache',
            policy_max_age='2')
    cache = os.path.join(g.dir, 'policy.cache')
    g.start()
    assert _get(g, pki) == 200
    cg.wait_until(lambda: os.path.exists(cache), what='the policy cache')
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    g.stop()

    restore = _break_store(g)
    time.sleep(1.1)  # the copy is older than a second: its age shows
    g.start()
    g.wait_log(r'starting from the policy cache .*policy\.cache')
    assert _get(g, pki) == 200                       # the cached policy serves
    m = scrape(g)
    assert m[UP] == 0 and m[AGE] >= 1, m
    # older than policy_max_age: a balancer drains the node
    cg.wait_until(lambda: _healthz(g)[0] == 503, timeout=10, what='/healthz 503')
    st, body = _healthz(g)
    assert 'policy_max_age 2 s' in body and 'store is down' in body, body
    assert scrape(g)[UP] == 0

    # the store answers again: a full load, fresh, healthy, changes followed
    restore()
    cg.wait_until(lambda: scrape(g)[UP] == 1, timeout=15, what='store_up 1')
    g.wait_log(r'the store .* answers again')
    assert scrape(g)[AGE] <= 1
    assert _healthz(g) == (200, 'ok\n')
    before = os.stat(cache).st_mtime_ns
    g.ctl_ok('acl', 'deny', 'alice', 'http', '*', 'all')
    cg.wait_until(lambda: _get(g, pki) == 403, timeout=5, what='the deny in force')
    cg.wait_until(lambda: os.stat(cache).st_mtime_ns != before, timeout=5,
                  what='the cache rewritten after the change')


def test_a_damaged_cache_is_not_used(gateway_factory, pki, nginx):
    g = _gw(gateway_factory, pki, nginx, policy_cache='policy.cache')
    cache = os.path.join(g.dir, 'policy.cache')
    g.start()
    cg.wait_until(lambda: os.path.exists(cache), what='the policy cache')
    g.stop()
    _break_store(g)
    with open(cache, 'r+b') as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    log = _start_fails(g)
    assert 'does not match its digest' in log, log
    assert 'starting from the policy cache' not in log


def test_policy_max_age_and_cache_are_checked(gateway_factory, pki, nginx):
    g = _gw(gateway_factory, pki, nginx)
    for value in ('0', '5x', 's', '-1', '400d'):
        g.sections['gateway']['policy_max_age'] = value
        g.write_config()
        r = g.check_config()
        assert r.returncode == 1 and 'policy_max_age' in r.stdout + r.stderr, value
    for value in ('30', '30s', '2m', '1h'):
        g.sections['gateway']['policy_max_age'] = value
        g.write_config()
        r = g.check_config()
        assert r.returncode == 0, (value, r.stdout + r.stderr)
