"""test_audit_nodes.py — audit across nodes (issue 17 item 4): each gateway
writes its node_id (default: the host name) into every record and
checkpoint of its own chain; `cpmgatectl audit verify` proves several
chains at once, a line each, failing when any is broken; `audit export
--merge` interleaves the records of several databases by time, node, seq,
each line naming its file, so a request can be followed across nodes."""

import json
import socket

import pytest

import audit_blocks
import cg


def _node(gateway_factory, pki, nginx, node_id):
    return cg.http_alice_gateway(gateway_factory, pki, nginx,
                                 {'node_id': node_id} if node_id else {})


def _get(g, pki, n=1):
    for _ in range(n):
        r = cg.http_request(g.addr('content'), 'GET', '/content/index.html',
                            ctx=cg.client_context(pki), source='127.0.0.1')
        assert r is not None and r[0] == 200, r


def _export(g, *args):
    r = g.ctl('audit', 'export', *args, '--format', 'jsonl', db=False)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.fixture
def two_nodes(gateway_factory, pki, nginx):
    a = _node(gateway_factory, pki, nginx, 'gw-a')
    b = _node(gateway_factory, pki, nginx, 'gw-b')
    for _ in range(3):
        _get(a, pki)
        _get(b, pki)
    a.stop()
    b.stop()
    return a, b


def test_every_record_and_checkpoint_names_its_node(two_nodes):
    a, b = two_nodes
    for g, node in ((a, 'gw-a'), (b, 'gw-b')):
        recs = _export(g, '--audit-db', g.audit_db)
        assert recs and all(x['node'] == node for x in recs), recs
        v = g.ctl('audit', 'verify', '--audit-db', g.audit_db, '--key', g.audit_pub,
                  '--json', db=False)
        assert v.returncode == 0, v.stderr
        assert json.loads(v.stdout)['node'] == node
        show = g.ctl('audit', 'show', '--audit-db', g.audit_db, '--limit', '1', db=False)
        assert f' node={node}' in show.stdout, show.stdout
    import sqlite3
    with sqlite3.connect(a.audit_db) as db:
        nodes = {n for (n,) in db.execute('SELECT node FROM checkpoints')}
    assert nodes == {'gw-a'}


def test_verify_proves_each_chain_and_fails_if_any_is_broken(two_nodes):
    a, b = two_nodes
    v = a.ctl('audit', 'verify', '--audit-db', a.audit_db, '--audit-db', b.audit_db,
              '--key', a.audit_pub, db=False)
    # one key cannot have signed both: b's line is broken, a's intact
    assert v.returncode == 1
    lines = v.stdout.splitlines()
    assert lines[0].startswith(f'{a.audit_db}: audit chain intact: ')
    assert ', node gw-a' in lines[0]
    assert any(l.startswith(f'{b.audit_db}: audit chain broken at seq ') for l in lines)
    # without --key each file is checked against its own stored keys
    v = a.ctl('audit', 'verify', '--audit-db', a.audit_db, '--audit-db', b.audit_db,
              db=False)
    assert v.returncode == 0, v.stdout + v.stderr
    heads = [l for l in v.stdout.splitlines() if not l.startswith('  note:')]
    assert [l.split(': ', 1)[0] for l in heads] == [a.audit_db, b.audit_db]
    assert 'node gw-b' in heads[1]
    j = a.ctl('audit', 'verify', '--audit-db', a.audit_db, '--audit-db', b.audit_db,
              '--json', db=False)
    assert [(x['audit_db'], x['intact'], x['node']) for x in json.loads(j.stdout)] == \
        [(a.audit_db, True, 'gw-a'), (b.audit_db, True, 'gw-b')]
    # a record of b changed: b's line says where, the exit status is 1
    audit_blocks.change(b.audit_db, 2, node='gw-a')
    v = a.ctl('audit', 'verify', '--audit-db', a.audit_db, '--audit-db', b.audit_db,
              db=False)
    assert v.returncode == 1
    assert f'{b.audit_db}: audit chain broken at seq 2' in v.stdout
    assert f'{a.audit_db}: audit chain intact' in v.stdout
    # one file still verifies in the old form
    v = a.ctl('audit', 'verify', '--audit-db', a.audit_db, db=False)
    assert v.returncode == 0 and v.stdout.startswith('audit chain intact: ')


def test_export_merge_interleaves_by_time_node_seq(two_nodes):
    a, b = two_nodes
    merged = _export(a, '--audit-db', b.audit_db, '--audit-db', a.audit_db, '--merge')
    one_a = _export(a, '--audit-db', a.audit_db)
    one_b = _export(b, '--audit-db', b.audit_db)
    assert len(merged) == len(one_a) + len(one_b)
    keys = [(x['time'], x['node'], x['seq']) for x in merged]
    assert keys == sorted(keys)
    assert {x['audit_db'] for x in merged} == {a.audit_db, b.audit_db}
    for x in merged:
        assert x['node'] == ('gw-a' if x['audit_db'] == a.audit_db else 'gw-b')
    # each file's records keep their order and content (hash included)
    strip = lambda x: {k: v for k, v in x.items() if k != 'audit_db'}
    assert [strip(x) for x in merged if x['node'] == 'gw-a'] == one_a
    # filters apply to each file, --limit to the merged stream
    gets = _export(a, '--audit-db', a.audit_db, '--audit-db', b.audit_db, '--merge',
                   '--principal', 'alice')
    assert gets and all(x['principal'] == 'alice' for x in gets)
    gets = [x for x in gets if x['operation'] == 'GET']
    assert len(gets) == 6 and {x['node'] for x in gets} == {'gw-a', 'gw-b'}
    assert len(_export(a, '--audit-db', a.audit_db, '--audit-db', b.audit_db, '--merge',
                       '--limit', '4')) == 4
    # a request's txid finds its record on the node that served it
    txid = gets[0]['txid']
    trail = _export(a, '--audit-db', a.audit_db, '--audit-db', b.audit_db, '--merge',
                    '--txid', txid)
    assert [x['txid'] for x in trail] == [txid]
    # several files without --merge, and --follow with it, are refused
    r = a.ctl('audit', 'export', '--audit-db', a.audit_db, '--audit-db', b.audit_db,
              '--format', 'jsonl', db=False)
    assert r.returncode == 1 and '--merge' in r.stderr
    r = a.ctl('audit', 'export', '--audit-db', a.audit_db, '--format', 'jsonl',
              '--follow', '--merge', db=False)
    assert r.returncode == 1


def test_node_id_defaults_to_the_host_name_and_is_checked(gateway_factory, pki, nginx):
    g = _node(gateway_factory, pki, nginx, None)
    _get(g, pki)
    g.stop()
    recs = _export(g, '--audit-db', g.audit_db)
    assert recs and {x['node'] for x in recs} == {socket.gethostname()}
    g.sections['gateway']['node_id'] = 'two words'
    g.write_config()
    r = g.check_config()
    assert r.returncode == 1 and 'node_id' in r.stdout + r.stderr
