"""test_policy_faults_pg.py — the faults of test_policy_faults.py with the
policy in PostgreSQL (a throw-away cluster of its own, since the test
stops it): while the server is down the node serves its last policy,
/metrics says cpmgate_policy_store_up 0 and the age grows past
policy_max_age (/healthz 503); a node started meanwhile serves its
policy_cache copy; once the server is back the store is up again, the
node is healthy and follows changes written with psql."""

import os

import pytest

import cg
import pg
from test_metrics import scrape
from test_policy_faults import AGE, UP, _get, _gw, _healthz


@pytest.fixture
def cluster(cg_root):
    with pg.throwaway(cg_root / 'pg-faults') as c:
        yield c


def test_postgresql_down_is_shown_survived_and_followed_again(gateway_factory, pki, nginx,
                                                             cluster):
    g = _gw(gateway_factory, pki, nginx, policy_db=cluster.url(),
            policy_cache='policy.cache', policy_max_age='2')
    cache = os.path.join(g.dir, 'policy.cache')
    g.start()
    assert _get(g, pki) == 200
    m = scrape(g)
    assert m[UP] == 1 and m[AGE] <= 1, m
    cg.wait_until(lambda: os.path.exists(cache), what='the policy cache')

    cluster.stop()
    try:
        cg.wait_until(lambda: scrape(g)[UP] == 0, timeout=10, what='store_up 0')
        cg.wait_until(lambda: _healthz(g)[0] == 503, timeout=10, what='/healthz 503')
        assert 'store is down' in _healthz(g)[1]
        assert _get(g, pki) == 200  # the last policy serves
        # a node started while the server is down serves its copy
        g.stop()
        start = g.log_size()
        g.start()
        g.wait_log(r'starting from the policy cache', start=start)
        assert _get(g, pki) == 200
        assert scrape(g)[UP] == 0
    finally:
        cluster.start()
    cg.wait_until(lambda: scrape(g)[UP] == 1, timeout=15, what='store_up 1 again')
    cg.wait_until(lambda: _healthz(g) == (200, 'ok\n'), timeout=5, what='/healthz 200')
    assert scrape(g)[AGE] <= 1
    # notifications are followed again (the LISTEN connection of a node
    # that started without its store)
    cluster.psql("INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                 "VALUES ('deny', 'alice', 'http', '*', 31, 'now')")
    cg.wait_until(lambda: _get(g, pki) == 403, timeout=2, what='the psql deny in force')
