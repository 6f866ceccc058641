#!/usr/bin/python3
"""bench_imap.py — IMAP through cpmgate vs direct to Dovecot vs nginx's mail
proxy, in one run, as ratios (TLS on the client side of all three).

Each run: imap_load (tests/bench/imap_load.c) with S sessions, each cycle
SELECT INBOX + FETCH of 50 messages + an IDLE round trip; messages/s, p99
cycle latency and CPU microseconds per message of the peer's process tree
(less noisy than messages/s on a loaded machine). Then N idle sessions in IDLE through each proxy and its
resident memory per session (Dovecot's own memory is not counted for the
proxies; for "direct" the figure is Dovecot's whole process tree).

    tests/bench/bench_imap.py --sessions 20 --cycles 50 --idle 2000
Not part of ./tests/run.
"""
import argparse
import imaplib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / 'tests' / 'integration'))
import cg  # noqa: E402
from bench_tls import cpu_seconds, rss_kib, write, free_port, Peer  # noqa: E402

USERS = {f'alice{i}': 'alicepw' for i in range(10)}
MESSAGE = (b'From: bench@example.com\r\nTo: alice@example.com\r\n'
           b'Subject: bench\r\n\r\n' + b'x' * 2000 + b'\r\n')


def dovecot_with_tls(root, pki):
    """The harness's Dovecot, plus an implicit-TLS listener for the direct
    run and limits raised for many sessions."""
    dv = cg.Dovecot(root, users=USERS)
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


def start_gateway(d, build, pki, dv, workers, name='gw'):
    gw = cg.Gateway(os.path.join(d, name), {
        'gateway': {'workers': str(workers)},
        'listener imaps': {'protocol': 'imap', 'tls': 'implicit',
                           'certificate': f'{pki}/server.pem', 'private_key': f'{pki}/server.key',
                           'auth': 'login', 'upstream': 'dovecot',
                           'max_conn_per_addr': '100000'},
        'upstream dovecot': dv.upstream(imap_login='passthrough'),
    }, build=build)
    for user in USERS:
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


def main():
    global LOAD
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.environ.get('CPMGATE_BUILD', str(REPO / 'build-release')))
    ap.add_argument('--sessions', type=int, default=20)
    ap.add_argument('--cycles', type=int, default=50)
    ap.add_argument('--messages', type=int, default=50)
    ap.add_argument('--idle', type=int, default=2000)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--peers', default='direct,cpmgate,nginx-mail')
    ap.add_argument('--before-build', default=None,
                    help='also run the gateway of another release build (peer '
                         'cpmgate-before): before/after figures in the same run')
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    peers = args.peers.split(',')
    if args.before_build:
        args.before_build = os.path.abspath(args.before_build)
        peers.append('cpmgate-before')
    LOAD = Path(args.build) / 'tests' / 'bench' / 'imap_load'
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    d = tempfile.mkdtemp(prefix='cpmgate-bench-imap-')
    os.chmod(d, 0o755)
    pki = os.path.join(d, 'pki')
    subprocess.run([str(REPO / 'tests/pki/mkpki.sh'), pki], check=True, stderr=subprocess.DEVNULL)
    dv = dovecot_with_tls(os.path.join(d, 'dovecot'), pki)
    dv.start()
    results = {}
    try:
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
    finally:
        dv.stop()
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
    shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
