#!/usr/bin/python3
"""bench_idle.py — resident memory per idle TLS connection, cpmgate beside
nginx (the http suite's reverse proxy of bench_tls.py, same certificate,
client CA and worker count), each in a fresh process:

  handshake only   N connections complete the TLS 1.3 handshake and say
                   nothing (bench_tls.py's idle figure, there taken after
                   the load runs)
  after a request  N connections each get one 1 KiB answer, then stay
                   open (HTTP keep-alive), measured after --hold seconds

KiB per connection = (RSS of the peer's process tree with N held - RSS
before) / N. --before-build adds the gateway of another release build
(peer cpmgate-before) for before/after figures in the same run.

Not part of ./tests/run: run it by hand, e.g.
    tests/bench/bench_idle.py --idle 10000
"""
import argparse
import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import bench_tls as b


def hold(peer, n, request, settle):
    """KiB resident per connection with n held open."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    before = b.rss_kib(peer.pid)
    socks = []
    try:
        for _ in range(n):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", peer.port)))
            socks.append(s)
            if request:
                s.sendall(b"GET /1k HTTP/1.1\r\nHost: bench\r\n\r\n")
                got = b""
                while b"\r\n\r\n" not in got:
                    got += s.recv(4096)
                head, _, body = got.partition(b"\r\n\r\n")
                size = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                while len(body) < size:
                    body += s.recv(4096)
        time.sleep(settle)
        return (b.rss_kib(peer.pid) - before) / n
    finally:
        for s in socks:
            s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("CPMGATE_BUILD",
                                                      os.path.join(b.REPO, "build-release")))
    ap.add_argument("--before-build", default=None)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--hold", type=float, default=2.0,
                    help="seconds between the last connection and the measurement")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    d = tempfile.mkdtemp(prefix="cpmgate-idle-")
    os.chmod(d, 0o755)
    pki = os.path.join(d, "pki")
    subprocess.run([os.path.join(b.REPO, "tests/pki/mkpki.sh"), pki], check=True,
                   stderr=subprocess.DEVNULL)
    backend = b.start_backend(d, {"1k": 1024})
    starters = {"cpmgate": lambda w: b.start_cpmgate(w, os.path.abspath(args.build), pki,
                                                     backend, args.workers, True)}
    if args.before_build:
        starters["cpmgate-before"] = lambda w: b.start_cpmgate(
            w, os.path.abspath(args.before_build), pki, backend, args.workers, True,
            "cpmgate-before")
    starters["nginx"] = lambda w: b.start_nginx_proxy(w, pki, backend, args.workers)
    rows = {}
    try:
        for name, start in starters.items():
            rows[name] = []
            for request in (False, True):
                # a fresh process (and directory) for each figure
                w = os.path.join(d, f"{name}-{int(request)}")
                os.makedirs(w)
                peer = start(w)
                try:
                    time.sleep(1.0)
                    rows[name].append(hold(peer, args.idle, request, args.hold))
                finally:
                    peer.stop()
    finally:
        backend.stop()
        shutil.rmtree(d, ignore_errors=True)
    print(f"\nKiB resident per idle TLS connection, {args.idle} held, {args.workers} workers")
    print(f"{'peer':<16}{'handshake only':>16}{'after a request':>17}")
    for name, (hs, req) in rows.items():
        print(f"{name:<16}{hs:>16.1f}{req:>17.1f}")


if __name__ == "__main__":
    main()
