"""Two gateway nodes, one PostgreSQL policy (issue: several nodes, one
live policy): nodes on 127.0.0.1 and 127.0.0.2 share a throw-away
cluster; a deny added through node A's cpmgatectl is refused on both
within a second, and so is one written with plain psql (the tables'
triggers NOTIFY, the nodes LISTEN); with PostgreSQL stopped both keep
serving the last policy and say so once in the log, and once it is back
they reload everything, including what changed while they were away."""

import pytest

import cg
import pg

SRC = '127.0.0.31'  # the client's address (address auth)
HOSTS = ('127.0.0.1', '127.0.0.2')


@pytest.fixture(scope='module')
def cluster(cg_root):
    with pg.throwaway(cg_root / 'pg-nodes') as c:
        yield c


@pytest.fixture(scope='module')
def nodes(module_gateway_factory, pki, nginx, cluster):
    url = cluster.url()
    made = []
    for host in HOSTS:
        g = module_gateway_factory({
            'gateway': {'policy_db': url, 'log_level': 'debug'},
            'listener content': {
                'listen': f'{host}:{cg.free_port(host)}',
                'protocol': 'http', 'tls': 'implicit',
                'certificate': pki.server_cert, 'private_key': pki.server_key,
                'auth': 'address', 'upstream': 'nginx'},
            'upstream nginx': nginx.upstream(),
        })
        made.append(g)
    a = made[0]
    a.ctl_ok('principal', 'add', 'frank')
    a.ctl_ok('cred', 'add', 'frank', 'address', f'{SRC}/32')
    a.ctl_ok('acl', 'allow', 'frank', 'http', '/content/*', 'read,list')
    for g in made:
        g.start()
    return made


def status(gw, pki, path='/content/index.html'):
    r = cg.http_request(gw.addr('content'), 'GET', path, ctx=cg.client_context(pki),
                        source=SRC)
    return r[0] if r else None


def all_say(nodes, pki, code, path='/content/index.html', timeout=1.0):
    for g in nodes:
        cg.wait_until(lambda: status(g, pki, path) == code, timeout=timeout,
                      what=f'{code} from {g.host("content")} for {path}')


def test_a_deny_through_one_node_is_in_force_on_both(nodes, pki):
    assert nodes[0].host('content') != nodes[1].host('content')
    all_say(nodes, pki, 200, timeout=5)
    rid = nodes[0].ctl_ok('acl', 'deny', 'frank', 'http', '/content/*', 'read').stdout.strip()
    all_say(nodes, pki, 403)
    nodes[0].ctl_ok('acl', 'remove', rid)
    all_say(nodes, pki, 200)


def deny_with_psql(nodes, pki, cluster):
    """A deny written with plain SQL holds on both nodes, then its removal."""
    cluster.psql("INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                 "VALUES ('deny', 'frank', 'http', '/content/*', 2, 'now')")
    all_say(nodes, pki, 403)
    cluster.psql("DELETE FROM acl_rule WHERE effect = 'deny'")
    all_say(nodes, pki, 200)


def test_a_deny_written_with_psql_is_in_force_on_both(nodes, pki, cluster):
    deny_with_psql(nodes, pki, cluster)


def test_postgresql_down_nodes_keep_the_policy_and_follow_it_again(nodes, pki, cluster):
    all_say(nodes, pki, 200, timeout=5)
    marks = [g.log_size() for g in nodes]
    cluster.stop()
    try:
        for g, m in zip(nodes, marks):
            g.wait_log(r'lost the policy database postgresql://', timeout=5, start=m)
        # the last policy serves on both, for longer than a few reconnects
        for _ in range(3):
            for g in nodes:
                assert status(g, pki) == 200
        for g, m in zip(nodes, marks):
            assert g.log()[m:].count('lost the policy database') == 1
    finally:
        cluster.start()
    for g, m in zip(nodes, marks):
        g.wait_log(r'policy database .* is back; reloading the whole policy', timeout=10,
                   start=m)
    # a change made now is followed again on both
    deny_with_psql(nodes, pki, cluster)


def test_a_change_made_while_the_nodes_were_away_is_loaded_on_return(nodes, pki, cluster):
    """Connections cut by the server (their backends terminated) are
    noticed at once; a change committed meanwhile is in force after the
    reconnect, whose reload reads everything."""
    all_say(nodes, pki, 200, timeout=5)
    marks = [g.log_size() for g in nodes]
    # cut the nodes off (their backends end), change the policy, let them back
    cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = 'cpmgate'")
    cluster.psql("INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                 "VALUES ('deny', 'frank', 'http', '/content/*', 2, 'now')")
    for g, m in zip(nodes, marks):
        g.wait_log(r'is back; reloading the whole policy', timeout=10, start=m)
    all_say(nodes, pki, 403)
    cluster.psql("DELETE FROM acl_rule WHERE effect = 'deny'")
    all_say(nodes, pki, 200)
