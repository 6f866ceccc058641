#!/usr/bin/python3
"""bench_imap.py — IMAP through cpmgate side by side with its peers, in one
run, as ratios (TLS on the client side of all), in two suites.

load suite (default): cpmgate vs direct to Dovecot vs nginx's mail proxy.
Each run: imap_load (tests/bench/imap_load.c) with S sessions, each cycle
SELECT INBOX + FETCH of 50 messages + an IDLE round trip; messages/s, p99
cycle latency and CPU microseconds per message of the peer's process tree
(less noisy than messages/s on a loaded machine). Then N idle sessions in IDLE through each proxy and its
resident memory per session (Dovecot's own memory is not counted for the
proxies; for "direct" the figure is Dovecot's whole process tree).

    tests/bench/bench_imap.py --sessions 20 --cycles 50 --idle 2000

imaptest suite (issue 15's IMAP figure): Dovecot's imaptest, its random
workload (`clients=10 secs=N ssl`), through cpmgate (IMAPS listener, LOGIN
passed through, ACL judged and audit record written per command) and
through HAProxy in TCP mode terminating TLS and relaying to Dovecot's
plain port, both with the same certificate and 2 workers/threads, on the
same Dovecot. Commands/s (imaptest's totals / seconds), CPU microseconds
per command of the front end's process tree, their ratios, and imaptest's
errors through each. imaptest is not in Debian: --imaptest PATH or
IMAPTEST=PATH names the binary built from its source.

    IMAPTEST=.../imaptest tests/bench/bench_imap.py --suite imaptest --duration 10
Not part of ./tests/run.
"""
import argparse
import imaplib
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / 'tests' / 'integration'))
import cg  # noqa: E402
from bench_tls import (cpu_seconds, rss_kib, write, free_port, Peer,  # noqa: E402
                       add_round_args, closest_pair, start_haproxy, threads)

USERS = {f'alice{i}': 'alicepw' for i in range(10)}
MESSAGE = (b'From: bench@example.com\r\nTo: alice@example.com\r\n'
           b'Subject: bench\r\n\r\n' + b'x' * 2000 + b'\r\n')


def dovecot_with_tls(root, pki, users=USERS):
    """The harness's Dovecot, plus an implicit-TLS listener for the direct
    run and limits raised for many sessions."""
    dv = cg.Dovecot(root, users=users)
    dv.tls_port = free_port()
    orig = dv.write_config

    def write_config():
        orig()
        text = Path(dv.config_path).read_text()
        text = text.replace('ssl = no', f'ssl = yes\nssl_cert = <{pki}/server.pem\n'
                                        f'ssl_key = <{pki}/server.key')
        text = text.replace('  inet_listener imaps {\n    port = 0\n  }',
                            f'  inet_listener imaps {{\n    address = 127.0.0.1\n'
                            f'    port = {dv.tls_port}\n    ssl = yes\n  }}\n'
                            f'  service_count = 0\n  process_min_avail = 2\n'
                            f'  client_limit = 20000\n  vsz_limit = 1G')
        text += ('\nservice imap {\n  process_limit = 200\n  client_limit = 100\n  service_count = 0\n}\n'
                 'default_client_limit = 20000\ndefault_process_limit = 1000\n'
                 'service anvil {\n  client_limit = 25000\n}\n'
                 'service auth {\n  client_limit = 25000\n}\n')
        Path(dv.config_path).write_text(text)
    dv.write_config = write_config
    return dv


def populate(dv, n):
    for user in USERS:
        c = dv.imap(user)
        c.select('INBOX')
        typ, data = c.search(None, 'ALL')
        have = len(data[0].split())
        for _ in range(max(0, n - have)):
            c.append('INBOX', None, None, MESSAGE)
        c.logout()


def start_nginx_mail(d, pki, dv):
    port, auth_port = free_port(), free_port()
    conf = write(os.path.join(d, 'nginx-mail.conf'), f"""
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off; worker_processes 2; pid {d}/mail.pid; error_log {d}/mail.err;
worker_rlimit_nofile 50000;
events {{ worker_connections 20000; }}
http {{ access_log off;
  client_body_temp_path {d}/mcbt; proxy_temp_path {d}/mpt; fastcgi_temp_path {d}/mft;
  uwsgi_temp_path {d}/mut; scgi_temp_path {d}/mst;
  server {{ listen 127.0.0.1:{auth_port};
    location = /auth {{ add_header Auth-Status OK; add_header Auth-Server 127.0.0.1;
      add_header Auth-Port {dv.port}; return 204; }} }} }}
mail {{ server_name localhost; auth_http 127.0.0.1:{auth_port}/auth;
  proxy_pass_error_message on; imap_capabilities IMAP4rev1 IDLE LITERAL+ SASL-IR;
  server {{ listen 127.0.0.1:{port} ssl; protocol imap;
    ssl_certificate {pki}/server.pem; ssl_certificate_key {pki}/server.key; }} }}
""")
    return Peer('nginx-mail', ['nginx', '-c', conf, '-p', d], port, d)


def start_gateway(d, build, pki, dv, workers, name='gw', users=USERS):
    gw = cg.Gateway(os.path.join(d, name), {
        'gateway': {'workers': str(workers)},
        'listener imaps': {'protocol': 'imap', 'tls': 'implicit',
                           'certificate': f'{pki}/server.pem', 'private_key': f'{pki}/server.key',
                           'auth': 'login', 'upstream': 'dovecot',
                           'max_conn_per_addr': '100000'},
        'upstream dovecot': dv.upstream(imap_login='passthrough'),
    }, build=build)
    for user in users:
        gw.ctl_ok('principal', 'add', user)
        gw.ctl_ok('acl', 'allow', user, 'imap', '*', 'all')
    gw.start()
    return gw


def load(port, sessions, cycles, messages):
    out = subprocess.run([str(LOAD), '-p', str(port), '-u', 'alice%d', '-w', 'alicepw',
                          '-s', str(sessions), '-n', str(cycles), '-m', str(messages)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    m = re.search(r'msgs_per_s ([\d.]+) p50_ms ([\d.]+) p99_ms ([\d.]+)', out.stdout)
    return float(m.group(1)), float(m.group(3))


def idle(port, pid, n):
    before = rss_kib(pid)
    p = subprocess.Popen([str(LOAD), '-p', str(port), '-u', 'alice%d', '-w', 'alicepw',
                          '-s', str(n), '-i', '-H', '5'], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith('idle'):
        p.wait()
        raise RuntimeError('idle sessions did not open')
    time.sleep(1)
    after = rss_kib(pid)
    p.wait()
    return (after - before) / n


# ------------------------------------------------------------ imaptest --
# imaptest's random workload: each of its clients logs in, and in a random
# walk (its default probabilities) does LIST, STATUS, SELECT, FETCH, STORE,
# EXPUNGE, APPEND and LOGOUT, then logs in again; all clients share the one
# user's INBOX, so every command also sees the others' changes.
ITEST_USER, ITEST_PASS = 'itest', 'itestpw'
ITEST_USERS = {ITEST_USER: ITEST_PASS}
# imaptest's lines of trouble (its i_error, i_fatal, i_panic)
ITEST_ERROR = re.compile(r'^(Error|Fatal|Panic): ', re.M)


def write_mbox(path, n=100):
    """The corpus imaptest appends from: n plain messages of 0.3 to 12 KiB."""
    with open(path, 'w') as f:
        for i in range(n):
            body = ''.join(f'line {j} of message {i}: ' + 'text ' * 10 + '\n'
                           for j in range(4 + (i * 37) % 160))
            f.write(f'From bench@example.com Thu Dec  3 12:00:00 2026\n'
                    f'From: bench@example.com\nTo: {ITEST_USER}@example.com\n'
                    f'Subject: corpus message {i}\nMessage-ID: <{i}@bench.example>\n'
                    f'Date: Thu, 3 Dec 2026 12:00:00 +0000\n\n{body}\n')
    return path


def parse_imaptest(text):
    """{command: count} from imaptest's closing Totals: (its table: a line
    of command names, lines of probabilities, a line of counts)."""
    tail = text.split('\nTotals:\n', 1)
    if len(tail) != 2:
        raise RuntimeError('imaptest printed no totals:\n' + text[-2000:])
    lines = tail[1].splitlines()
    names = lines[0].split()
    for line in lines[1:]:
        cells = line.split()
        if len(cells) == len(names) and all(c.isdigit() for c in cells):
            return dict(zip(names, map(int, cells)))
    raise RuntimeError('imaptest totals without counts:\n' + tail[1][:2000])


def run_imaptest(args, port, mbox, ca, secs):
    """One imaptest run through the front end at port: commands, commands/s
    and its error lines."""
    env = dict(os.environ, SSL_CERT_FILE=ca)
    out = subprocess.run([args.imaptest, 'host=127.0.0.1', f'port={port}',
                          f'user={ITEST_USER}', f'pass={ITEST_PASS}', f'mbox={mbox}',
                          f'clients={args.clients}', f'secs={secs}', 'ssl',
                          *args.imaptest_args.split()],
                         capture_output=True, text=True, env=env, timeout=secs + 120)
    text = out.stdout + '\n' + out.stderr
    counts = parse_imaptest(out.stdout)
    cmds = sum(counts.values())
    errors = [m.group(0) + text[m.end():].split('\n', 1)[0]
              for m in ITEST_ERROR.finditer(text)]
    if out.returncode != 0:
        errors.append(f'imaptest exited with {out.returncode}')
    return {'cmds': cmds, 'cmds_per_s': cmds / secs, 'counts': counts, 'errors': errors}


def worker_cpu_seconds(pid):
    """utime+stime of the gateway's worker threads (named cg-worker); the
    rest of its CPU is the audit writer's and the main thread's."""
    return (sum(ticks for name, ticks in threads(pid).values() if name == 'cg-worker') /
            os.sysconf('SC_CLK_TCK'))


def tls_of(port):
    """The TLS version and cipher suite the front end at port chooses."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(('127.0.0.1', port)) as raw:
        with ctx.wrap_socket(raw) as t:
            return f'{t.version()} {t.cipher()[0]}'


def imaptest_suite(args, d, pki, dv):
    """imaptest through cpmgate and through HAProxy relaying TLS to Dovecot's
    plain port. A round is one run through each, back to back (cpmgate
    first, then HAProxy first, in turn), so both see the same moment of a
    shared machine; rounds repeat until the cpmgate/HAProxy ratios of
    commands/s of two rounds agree within args.agree."""
    mbox = write_mbox(os.path.join(d, 'corpus.mbox'))
    ca = os.path.join(pki, 'ca.pem')
    gw = start_gateway(d, args.build, pki, dv, args.workers, users=ITEST_USERS)
    ha = None
    try:
        ha = start_haproxy(d, pki, types.SimpleNamespace(port=dv.port), args.workers,
                           False, client_ca=False)
        fronts = {'cpmgate': (gw.port('imaps'), gw.pid), 'haproxy': (ha.port, ha.pid)}
        tls = {n: tls_of(port) for n, (port, _) in fronts.items()}
        for port, _ in fronts.values():
            run_imaptest(args, port, mbox, ca, 2)  # warm-up
        rounds = []
        order = list(fronts)
        while len(rounds) < args.max_rounds:
            got = {}
            for name in (order if len(rounds) % 2 == 0 else order[::-1]):
                port, pid = fronts[name]
                c0, w0 = cpu_seconds(pid), worker_cpu_seconds(pid)
                r = got[name] = run_imaptest(args, port, mbox, ca, args.duration)
                r['cpu_us_cmd'] = (cpu_seconds(pid) - c0) * 1e6 / max(1, r['cmds'])
                r['worker_us_cmd'] = ((worker_cpu_seconds(pid) - w0) * 1e6 /
                                      max(1, r['cmds']))
            rounds.append(got)
            pair = closest_pair([ratio(r, 'cmds_per_s') for r in rounds])
            if pair and pair[0] <= args.agree:
                break
    finally:
        if ha:
            ha.stop()
        gw.stop()
    report_imaptest(args, rounds, tls)
    if any(r['cpmgate']['errors'] for r in rounds):
        raise SystemExit(f'imaptest reported errors through cpmgate (above; logs kept in {d})')


def ratio(rnd, key):
    return rnd['cpmgate'][key] / rnd['haproxy'][key]


def report_imaptest(args, rounds, tls):
    """The two rounds whose ratios agree best count: each figure is their
    mean."""
    pair = closest_pair([ratio(r, 'cmds_per_s') for r in rounds])
    chosen = [rounds[i] for i in (pair[1:] if pair else (0,))]

    def mean(name, key):
        return sum(r[name][key] for r in chosen) / len(chosen)
    print(f'\nIMAP imaptest random: {args.clients} clients, {args.duration} s per run, '
          f'{args.workers} workers/threads; {len(rounds)} rounds, until the ratios of two '
          f'agree within {100 * args.agree:.0f}% (at most {args.max_rounds}); '
          f'figures: the mean of those two')
    print('TLS: ' + ', '.join(f'{n} {t}' for n, t in tls.items()))
    print(f"{'metric':<12}{'cpmgate':>12}{'haproxy':>12}{'cpmgate/haproxy':>18}")
    for k in ('cmds_per_s', 'cpu_us_cmd'):
        me, peer = mean('cpmgate', k), mean('haproxy', k)
        print(f'{k:<12}{me:>12.2f}{peer:>12.2f}{me / peer:>17.2f}x')
    w = mean('cpmgate', 'worker_us_cmd')
    print(f"cpmgate's CPU µs per command: workers {w:.1f}, audit writer and main thread "
          f"{mean('cpmgate', 'cpu_us_cmd') - w:.1f}")
    for i, r in enumerate(rounds, 1):
        print(f'round {i}: ' + ', '.join(
            f"{n} {r[n]['cmds_per_s']:.0f} cmd/s {r[n]['cpu_us_cmd']:.1f} us/cmd"
            for n in r) + f"; ratios {ratio(r, 'cmds_per_s'):.2f}x cmd/s, "
            f"{ratio(r, 'cpu_us_cmd'):.2f}x us/cmd")
    for n in rounds[0]:
        errors = [e for r in rounds for e in r[n]['errors']]
        print(f'{n}: imaptest errors {len(errors)}' +
              ''.join(f'\n  {e}' for e in errors[:10]))
    print('commands in the last cpmgate run: ' +
          ' '.join(f'{k} {v}' for k, v in rounds[-1]['cpmgate']['counts'].items()))
    tput = mean('cpmgate', 'cmds_per_s') / mean('haproxy', 'cmds_per_s')
    cpu = mean('cpmgate', 'cpu_us_cmd') / mean('haproxy', 'cpu_us_cmd')
    print(f"\n| IMAP imaptest random, {args.clients} clients: cpmgate vs HAProxy TCP-TLS = "
          f"{tput:.2f}x (aim >= 1.0x) |")
    print(f"| CPU µs per IMAP command, front end: cpmgate vs HAProxy TCP-TLS = "
          f"{cpu:.2f}x (aim <= 1.0x) |")


def load_suite(args, d, pki, dv):
    """imap_load through each of args.peers: prints the table of ratios."""
    global LOAD
    LOAD = Path(args.build) / 'tests' / 'bench' / 'imap_load'
    peers = args.peers.split(',')
    if args.before_build:
        peers.append('cpmgate-before')
    results = {}
    populate(dv, args.messages)
    cg.wait_port('127.0.0.1', dv.tls_port)
    for name in peers:
        if name == 'direct':
            port, pid, stop = dv.tls_port, dv.proc.pid, lambda: None
        elif name == 'cpmgate':
            gw = start_gateway(d, args.build, pki, dv, args.workers)
            port, pid, stop = gw.port('imaps'), gw.pid, gw.stop
        elif name == 'cpmgate-before':
            gw = start_gateway(d, args.before_build, pki, dv, args.workers, 'gw-before')
            port, pid, stop = gw.port('imaps'), gw.pid, gw.stop
        elif name == 'nginx-mail':
            ng = start_nginx_mail(d, pki, dv)
            port, pid, stop = ng.port, ng.pid, ng.stop
        else:
            raise SystemExit(f'unknown peer {name}')
        try:
            load(port, 2, 2, args.messages)  # warm-up
            r = results[name] = {}
            c0 = cpu_seconds(pid)
            r['msgs_per_s'], r['p99_ms'] = load(port, args.sessions, args.cycles,
                                                args.messages)
            # CPU of the peer's process tree per message fetched (for
            # direct that is Dovecot's own; for the others the front end)
            r['cpu_us_msg'] = ((cpu_seconds(pid) - c0) * 1e6 /
                               (args.sessions * args.cycles * args.messages))
            r['idle_kib'] = idle(port, pid, args.idle)
        finally:
            stop()
    print(f'\nIMAP: {args.sessions} sessions x {args.cycles} cycles of SELECT + FETCH '
          f'{args.messages} + IDLE; {args.idle} idle sessions')
    names = list(results)
    print(f"{'metric':<12}" + ''.join(f'{n:>12}' for n in names) +
          ''.join(f"{'vs ' + n:>14}" for n in names if n != 'cpmgate' and 'cpmgate' in results))
    for k in ('msgs_per_s', 'p99_ms', 'cpu_us_msg', 'idle_kib'):
        row = f'{k:<12}' + ''.join(f'{results[n][k]:>12.2f}' for n in names)
        for n in names:
            if n != 'cpmgate' and 'cpmgate' in results:
                row += f"{results['cpmgate'][k] / results[n][k]:>13.2f}x"
        print(row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--suite', choices=['load', 'imaptest'], default='load',
                    help='load: imap_load through direct, cpmgate, nginx-mail; '
                         'imaptest: imaptest\'s random workload through cpmgate '
                         'and HAProxy\'s TCP-TLS relay')
    ap.add_argument('--build', default=os.environ.get('CPMGATE_BUILD', str(REPO / 'build-release')))
    ap.add_argument('--workers', type=int, default=2)
    g = ap.add_argument_group('load suite')
    g.add_argument('--sessions', type=int, default=20)
    g.add_argument('--cycles', type=int, default=50)
    g.add_argument('--messages', type=int, default=50)
    g.add_argument('--idle', type=int, default=2000)
    g.add_argument('--peers', default='direct,cpmgate,nginx-mail')
    g.add_argument('--before-build', default=None,
                   help='also run the gateway of another release build (peer '
                        'cpmgate-before): before/after figures in the same run')
    g = ap.add_argument_group('imaptest suite')
    g.add_argument('--imaptest', default=os.environ.get('IMAPTEST'),
                   help='the imaptest binary (default: $IMAPTEST)')
    g.add_argument('--clients', type=int, default=10)
    g.add_argument('--imaptest-args', default='',
                   help='more imaptest arguments, e.g. no_pipelining (each command '
                        'waits for the answer to the one before)')
    g.add_argument('--duration', type=int, default=10, help='seconds per imaptest run')
    add_round_args(g)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if args.before_build:
        args.before_build = os.path.abspath(args.before_build)
    if args.suite == 'imaptest' and not (args.imaptest and os.access(args.imaptest, os.X_OK)):
        raise SystemExit('the imaptest suite needs Dovecot\'s imaptest: --imaptest PATH '
                         'or IMAPTEST=PATH')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    d = tempfile.mkdtemp(prefix='cpmgate-bench-imap-')
    os.chmod(d, 0o755)
    pki = os.path.join(d, 'pki')
    subprocess.run([str(REPO / 'tests/pki/mkpki.sh'), pki], check=True, stderr=subprocess.DEVNULL)
    users = ITEST_USERS if args.suite == 'imaptest' else USERS
    dv = dovecot_with_tls(os.path.join(d, 'dovecot'), pki, users)
    dv.start()
    try:
        if args.suite == 'imaptest':
            imaptest_suite(args, d, pki, dv)
        else:
            load_suite(args, d, pki, dv)
    finally:
        dv.stop()
    shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
