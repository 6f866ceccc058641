#!/usr/bin/python3
"""bench_propagation.py — time from commit to in force on every node
(issue: several nodes, one live policy): a throw-away PostgreSQL cluster
(tests/integration/pg.py) and two gateways on 127.0.0.1 and 127.0.0.2
sharing it; 200 changes (an ACL rule added with plain SQL, each stamped
with the database's clock_timestamp() inside its transaction), one at a
time; for each, the time from that stamp to the node's "policy:
reloaded" log line (written right after the new snapshot is published).
Prints the median and p99 per node and over both.

Not part of ./tests/run: run it by hand, e.g.
    meson setup build-release --buildtype=release
    ninja -C build-release cpmgate cpmgatectl
    tests/bench/bench_propagation.py --build build-release
"""
import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
import cg  # noqa: E402  (the integration harness: gateways)
import pg  # noqa: E402  (the throw-away cluster)

RELOADED = re.compile(r'^(\S+) info policy: reloaded$', re.M)


def stamp(text):
    return datetime.datetime.strptime(text.rstrip('Z'), '%Y-%m-%dT%H:%M:%S.%f').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def reloads(gw):
    return [stamp(m.group(1)) for m in RELOADED.finditer(gw.log())]


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    ap.add_argument('--changes', type=int, default=200)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    root = cg.make_root('cg-bench-prop-')
    cluster = pg.Cluster(root / 'pg').create()
    nodes = []
    try:
        url = cluster.url()
        for i, host in enumerate(('127.0.0.1', '127.0.0.2')):
            g = cg.Gateway(root / f'node{i}', {
                'gateway': {'policy_db': url, 'workers': '1'},
                'listener web': {'listen': f'{host}:{cg.free_port(host)}', 'protocol': 'http',
                                 'tls': 'none', 'auth': 'address', 'upstream': 'web'},
                'upstream web': {'address': '127.0.0.1:9'},
            }, build=args.build)
            nodes.append(g)
        for g in nodes:
            g.start()
        time.sleep(1)
        psql = subprocess.Popen([pg.find_bin('psql'), '-X', '-q', '-d', url],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        seen = [len(reloads(g)) for g in nodes]
        lat = [[], []]
        for k in range(args.changes):
            psql.stdin.write(
                "INSERT INTO acl_rule (effect, subject, service, pattern, rights, created) "
                f"VALUES ('allow', '*', 'http', '/bench/{k}/*', 1, "
                "to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'));\n")
            psql.stdin.flush()
            deadline = time.time() + 10
            times = [None, None]
            while None in times and time.time() < deadline:
                for i, g in enumerate(nodes):
                    r = reloads(g)
                    if times[i] is None and len(r) > seen[i]:
                        times[i] = r[-1]
                        seen[i] = len(r)
                time.sleep(0.002)
            if None in times:
                sys.exit(f'change {k}: a node did not reload within 10 s')
            created = pg.rows(url, f"SELECT created FROM acl_rule WHERE pattern = '/bench/{k}/*'")
            t0 = stamp(created[0][0])
            for i in range(2):
                lat[i].append((times[i] - t0) * 1000)
        psql.stdin.close()
        psql.wait()
        both = lat[0] + lat[1]
        print(f'{"node":>10}  {"changes":>7}  {"median ms":>9}  {"p99 ms":>7}  {"max ms":>7}')
        for name, v in (('127.0.0.1', lat[0]), ('127.0.0.2', lat[1]), ('both', both)):
            print(f'{name:>10}  {len(v):7d}  {statistics.median(v):9.1f}  {pct(v, 99):7.1f}'
                  f'  {max(v):7.1f}')
    finally:
        for g in nodes:
            try:
                g.stop()
            except Exception:  # noqa: BLE001 (a bench still removes its cluster)
                pass
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
