#!/usr/bin/python3
"""bench_tls.py — cpmgate side by side with its peers, in one run, as ratios.

  relay suite (issue: foundation): TLS termination in front of nginx, each
      peer doing the same job with the same certificate, cipher and worker
      count: cpmgate, HAProxy 2.6 (mode tcp, ssl), stunnel.
  http suite (issue: HTTP gateway): cpmgate's HTTP gateway (ACL checked per
      request) vs nginx as TLS reverse proxy vs HAProxy in http mode.

Measured per peer: keep-alive requests/s of a 1 KiB (and 64 KiB) file with
wrk, p99 latency, CPU microseconds per request (utime+stime of the peer's
process tree over the run), bulk MB/s of a 256 MiB download, new-connection
handshakes/s (openssl s_time -new, two in parallel; with --client-cert the
certificate-verifying handshake), and resident memory per idle TLS
connection (N idle connections held open).

wrk sends no client certificate: keep-alive runs authenticate by source
address on cpmgate (the ACL still runs per request) and verify nothing on
the peers; the handshake run with a client certificate compares the
certificate-verifying handshake of every peer.

Audit on vs off (issue: audit): --noaudit-build DIR adds the peer
cpmgate-noaudit to the http suite, a build made with
    meson setup DIR --buildtype=release -Dbench_audit_discard=true
whose gateway drops audit records at submit (for this comparison only).

Each throughput figure (requests/s per size, handshakes/s) is measured in
rounds until two rounds agree within --agree (5%), at most --max-rounds;
the better of the closest pair counts. Every figure is printed with its
ratio to each peer of the same run, and the http suite ends with issue
15's table (each figure against nginx and HAProxy, with its aim).

Before vs after (a refactoring must not cost speed): --before-build DIR adds
the peer cpmgate-before to either suite, the gateway of another release
build (for example of the commit before the change) in the same run.

Not part of ./tests/run: run it by hand on a quiet machine, e.g.
    tests/bench/bench_tls.py --suite relay --duration 10
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def proc_tree(pid):
    """pid and all its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def threads(pid):
    """{thread id: (name, utime+stime in clock ticks)} of process pid."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st.rsplit(")", 1)[1].split()
        out[int(t)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def rss_kib(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Peer:
    def __init__(self, name, argv, port, cwd, env=None):
        self.name, self.port = name, port
        self.log = open(os.path.join(cwd, f"{name}.log"), "w")
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        try:
            wait_port(port)
        except RuntimeError:
            self.stop()
            sys.stderr.write(open(self.log.name).read()[-2000:])
            raise

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start_backend(d, files):
    port = free_port()
    root = os.path.join(d, "www")
    os.makedirs(root, exist_ok=True)
    for name, size in files.items():
        with open(os.path.join(root, name), "wb") as f:
            chunk = os.urandom(1 << 20)
            left = size
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
    conf = write(os.path.join(d, "backend.conf"), f"""
daemon off; worker_processes 2; pid {d}/backend.pid; error_log {d}/backend.err;
events {{ worker_connections 20000; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000;
  client_body_temp_path {d}/cbt; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    return Peer("backend-nginx", ["nginx", "-c", conf, "-p", d], port, d)


def start_cpmgate(d, build, pki, backend, workers, http_gateway, name="cpmgate"):
    port = free_port()
    ctl = os.path.join(build, "cpmgatectl")
    d = os.path.join(d, name)
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "policy.db")
    env = dict(os.environ, CPMGATE_DB=db)
    run = lambda *a: subprocess.run([ctl, *a], env=env, check=True, capture_output=True)
    run("init")
    run("principal", "add", "bench")
    run("cred", "add", "bench", "address", "127.0.0.1/32")
    run("principal", "add", "alice")
    run("cred", "add", "alice", "cert-name", "email:alice@example.com")
    # cpmgate has no blind relay: both suites run its HTTP gateway (parsing,
    # ACL per request, audit record per request), against peers that relay
    # bytes (relay suite) or proxy HTTP (http suite)
    run("acl", "allow", "*", "http", "/*", "all")
    run("audit", "keygen", "--out", os.path.join(d, "audit.key"))
    conf = write(os.path.join(d, "cpmgate.conf"), f"""
[gateway]
workers = {workers}
policy_db = policy.db
audit_db = audit.db
audit_key = audit.key

[listener bench]
protocol = http
listen = 127.0.0.1:{port}
certificate = {pki}/server.pem
private_key = {pki}/server.key
client_ca = {pki}/clients-ca.pem
auth = address, cert
max_conn_per_addr = 100000
upstream = backend

[upstream backend]
address = 127.0.0.1:{backend.port}
principal_header = none
""")
    return Peer(name, [os.path.join(build, "cpmgate"), "-c", conf], port, d)


def start_haproxy(d, pki, backend, workers, http_mode, client_ca=True):
    port = free_port()
    combined = os.path.join(d, "server-combined.pem")
    with open(combined, "w") as f:
        f.write(open(f"{pki}/server.pem").read() + open(f"{pki}/server.key").read())
    mode = "http" if http_mode else "tcp"
    # client_ca: ask for a client certificate (optional) as cpmgate's HTTP
    # listener does; off where the gateway's listener asks for none
    verify = f" ca-file {pki}/clients-ca.pem verify optional" if client_ca else ""
    extra = "option http-keep-alive\n  http-reuse always\n" if http_mode else ""
    conf = write(os.path.join(d, "haproxy.cfg"), f"""
global
  nbthread {workers}
  maxconn 9000
  tune.ssl.default-dh-param 2048
defaults
  mode {mode}
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  {extra}
frontend f
  bind 127.0.0.1:{port} ssl crt {combined}{verify}
  default_backend b
backend b
  server s1 127.0.0.1:{backend.port}
""")
    return Peer("haproxy", ["haproxy", "-f", conf, "-db"], port, d)


def start_stunnel(d, pki, backend, workers):
    port = free_port()
    conf = write(os.path.join(d, "stunnel.conf"), f"""
foreground = yes
pid =
debug = 3
[https]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{backend.port}
cert = {pki}/server.pem
key = {pki}/server.key
CAfile = {pki}/clients-ca.pem
verifyChain = no
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
""")
    return Peer("stunnel", ["stunnel4", conf], port, d)


def start_nginx_proxy(d, pki, backend, workers):
    port = free_port()
    conf = write(os.path.join(d, "nginx-proxy.conf"), f"""
daemon off; worker_processes {workers}; pid {d}/proxy.pid; error_log {d}/proxy.err;
worker_rlimit_nofile 50000;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {d}/pcbt; proxy_temp_path {d}/ppt; fastcgi_temp_path {d}/pft;
  uwsgi_temp_path {d}/put; scgi_temp_path {d}/pst;
  upstream b {{ server 127.0.0.1:{backend.port}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {pki}/server.pem;
    ssl_certificate_key {pki}/server.key; ssl_protocols TLSv1.2 TLSv1.3;
    ssl_client_certificate {pki}/clients-ca.pem; ssl_verify_client optional;
    location / {{ proxy_pass http://b; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; }} }} }}
""")
    return Peer("nginx-proxy", ["nginx", "-c", conf, "-p", d], port, d)


def wrk(port, path, duration, conns, threads=2):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
                          f"https://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    p99 = float(m.group(1)) * scale
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99, int(errs.group(1)) if errs else 0, out


def bulk(port, path, size):
    t0 = time.time()
    out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{size_download}",
                          f"https://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=300).stdout
    dt = time.time() - t0
    got = int(float(out or 0))
    if got != size:
        raise RuntimeError(f"bulk download got {got} of {size} bytes")
    return size / dt / 1e6


def handshakes(port, seconds, cert=None, key=None):
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds)]
    if cert:
        argv += ["-cert", cert, "-key", key]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    total = 0.0
    for p in procs:
        out = p.communicate(timeout=seconds + 60)[0]
        m = re.search(r"(\d+) connections in (\d+) real seconds", out)
        if m:
            total += int(m.group(1)) / max(1, int(m.group(2)))
    return total


def idle_memory(peer, n):
    """KiB resident per idle TLS connection held open."""
    before = rss_kib(peer.pid)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", peer.port))
        socks.append(ctx.wrap_socket(s))
    time.sleep(1.0)
    after = rss_kib(peer.pid)
    for s in socks:
        s.close()
    return (after - before) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["relay", "http"], default="relay")
    ap.add_argument("--build", default=os.environ.get("CPMGATE_BUILD", os.path.join(REPO, "build-release")))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--bulk-mib", type=int, default=256)
    ap.add_argument("--peers", default=None, help="comma list to run a subset")
    ap.add_argument("--noaudit-build", default=None,
                    help="http suite: also run a build made with -Dbench_audit_discard=true "
                         "(peer cpmgate-noaudit: audit on vs off)")
    ap.add_argument("--before-build", default=None,
                    help="also run the gateway of another build (peer cpmgate-before), "
                         "e.g. a release build of the commit before a change, for "
                         "before/after figures in the same run")
    add_round_args(ap)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if args.before_build:
        args.before_build = os.path.abspath(args.before_build)
    if args.noaudit_build:
        args.noaudit_build = os.path.abspath(args.noaudit_build)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass

    d = tempfile.mkdtemp(prefix="cpmgate-bench-")
    os.chmod(d, 0o755)
    pki = os.path.join(d, "pki")
    subprocess.run([os.path.join(REPO, "tests/pki/mkpki.sh"), pki], check=True,
                   stderr=subprocess.DEVNULL)
    bulk_size = args.bulk_mib << 20
    files = {"1k": 1024, "64k": 65536, "bulk": bulk_size}
    backend = start_backend(d, files)
    if args.suite == "relay":
        starters = {
            "cpmgate": lambda: start_cpmgate(d, args.build, pki, backend, args.workers, False),
            "haproxy": lambda: start_haproxy(d, pki, backend, args.workers, False),
            "stunnel": lambda: start_stunnel(d, pki, backend, args.workers),
        }
        if args.before_build:
            starters["cpmgate-before"] = lambda: start_cpmgate(
                d, args.before_build, pki, backend, args.workers, False, "cpmgate-before")
        sizes = ["1k"]
    else:
        starters = {
            "cpmgate": lambda: start_cpmgate(d, args.build, pki, backend, args.workers, True),
            "nginx": lambda: start_nginx_proxy(d, pki, backend, args.workers),
            "haproxy": lambda: start_haproxy(d, pki, backend, args.workers, True),
        }
        if args.noaudit_build:
            starters["cpmgate-noaudit"] = lambda: start_cpmgate(
                d, args.noaudit_build, pki, backend, args.workers, True, "cpmgate-noaudit")
        if args.before_build:
            starters["cpmgate-before"] = lambda: start_cpmgate(
                d, args.before_build, pki, backend, args.workers, True, "cpmgate-before")
        sizes = ["1k", "64k"]
    if args.peers:
        starters = {k: v for k, v in starters.items() if k in args.peers.split(",")}
    results, rounds = {}, {}
    try:
        for name, start in starters.items():
            peer = start()
            r = results[name] = {}
            n = rounds[name] = {}
            try:
                for size in sizes:
                    wrk(peer.port, "/" + size, 2, args.conns)  # warm-up

                    def run_wrk(size=size):
                        c0 = cpu_seconds(peer.pid)
                        rps, p99, errs, _ = wrk(peer.port, "/" + size, args.duration, args.conns)
                        c1 = cpu_seconds(peer.pid)
                        return {f"rps_{size}": rps, f"p99_ms_{size}": p99,
                                f"cpu_us_{size}": (c1 - c0) * 1e6 / max(1.0, rps * args.duration),
                                f"errors_{size}": errs}
                    got, n[f"rps_{size}"] = settle(run_wrk, f"rps_{size}", args)
                    r.update(got)
                r["bulk_mbs"] = bulk(peer.port, "/bulk", bulk_size)
                got, n["handshakes"] = settle(
                    lambda: {"handshakes": handshakes(peer.port, args.duration)}, "handshakes", args)
                r.update(got)
                r["handshakes_cert"] = handshakes(peer.port, args.duration,
                                                  f"{pki}/alice.pem", f"{pki}/alice.key")
                r["idle_kib"] = idle_memory(peer, args.idle)
            finally:
                peer.stop()
    finally:
        backend.stop()
        if not results or len(results) < len(starters):
            shutil.rmtree(d, ignore_errors=True)

    base = "cpmgate" if "cpmgate" in results else next(iter(results))
    keys = [k for k in next(iter(results.values()))]
    print(f"\nsuite {args.suite}: {args.workers} workers, {args.conns} connections, "
          f"{args.duration}s per run, {args.idle} idle connections; rounds until two agree "
          f"within {100 * args.agree:.0f}% (at most {args.max_rounds})")
    others = [n for n in results if n != base]
    print(f"{'metric':<18}" + "".join(f"{n:>16}" for n in results) +
          "".join(f"{' ' + base + '/' + n:>26}" for n in others))
    for k in keys:
        row = f"{k:<18}" + "".join(f"{results[n][k]:>16.2f}" for n in results)
        for n in others:
            other = results[n][k]
            row += f"{(results[base][k] / other if other else float('nan')):>25.2f}x"
        print(row)
    print("rounds: " + "; ".join(f"{n} " + ", ".join(f"{k} {v}" for k, v in rounds[n].items())
                                 for n in rounds))
    if args.suite == "http" and base == "cpmgate":
        print()
        print(issue_table(results))
    shutil.rmtree(d, ignore_errors=True)


# The issue's table (issue 15): cpmgate against each peer in this run,
# with the aim of each figure. (key, what, higher is better, aim)
ISSUE_ROWS = [
    ("rps_1k", "1 KiB keep-alive req/s, audit on", True, ">= 1.1x both"),
    ("cpu_us_1k", "CPU µs per 1 KiB request", False, "<= 0.9x nginx"),
    ("p99_ms_1k", "p99 at 1 KiB", False, "<= 1.0x"),
    ("rps_64k", "64 KiB req/s", True, ">= 1.2x"),
    ("handshakes", "new TLS handshakes/s", True, ">= 1.0x nginx"),
]


def issue_table(results):
    me = results["cpmgate"]
    peers = [p for p in ("nginx", "haproxy") if p in results]
    out = ["| figure | cpmgate | " + " | ".join(f"vs {p}" for p in peers) + " | aim |",
           "|---|---|" + "---|" * len(peers) + "---|"]
    for key, what, _, aim in ISSUE_ROWS:
        cells = [f"{me[key] / results[p][key]:.2f}x" if results[p][key] else "-" for p in peers]
        out.append(f"| {what} | {me[key]:.2f} | " + " | ".join(cells) + f" | {aim} |")
    cells = [f"{results[p]['idle_kib']:.1f}" for p in peers]
    out.append(f"| KiB per idle TLS connection | {me['idle_kib']:.1f} | " + " | ".join(cells) +
               " | <= 12 |")
    if "cpmgate-noaudit" in results:
        off = results["cpmgate-noaudit"]["rps_1k"]
        out.append(f"| audit on vs off at 1 KiB | {me['rps_1k'] / off:.2f}x | " +
                   " | ".join("" for _ in peers) + " | >= 0.95x |")
    else:
        out.append("| audit on vs off at 1 KiB | (needs --noaudit-build) |" +
                   " |" * len(peers) + " >= 0.95x |")
    return "\n".join(out)


def add_round_args(ap):
    """--agree and --max-rounds: how settle() (and the IMAP bench's rounds)
    decide that figures are stable."""
    ap.add_argument("--agree", type=float, default=0.05,
                    help="rounds repeat until two agree within this fraction")
    ap.add_argument("--max-rounds", type=int, default=5)


def settle(measure, key, args):
    """Runs measure() (a dict of figures) until two rounds agree on key
    within args.agree, at most args.max_rounds times; returns the better
    round of the closest pair (the higher key) and the rounds it took."""
    got = []
    while True:
        got.append(measure())
        best = closest_pair([g[key] for g in got])
        if best and (best[0] <= args.agree or len(got) >= args.max_rounds):
            return got[best[1]], len(got)
        if len(got) >= args.max_rounds:
            return got[0], len(got)


def closest_pair(vals):
    """(spread, higher, lower) of the two values closest to each other: their
    difference as a fraction of the higher one, and the indexes of the
    higher and the lower; None with fewer than two values."""
    best = None
    for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
            hi = max(vals[i], vals[j])
            spread = abs(vals[i] - vals[j]) / hi if hi else 0.0
            if best is None or spread < best[0]:
                best = (spread, i, j) if vals[i] >= vals[j] else (spread, j, i)
    return best


if __name__ == "__main__":
    main()
