#!/usr/bin/python3
"""bench_upload.py — content validation cost (issue: content validation):
upload MB/s of one large file (512 MiB by default) through cpmgate's HTTP
gateway to nginx (WebDAV) with a self-contained manifest (signature checked,
body hashed as it streams, end withheld until size and hash match) vs the
same upload without a manifest (still hashed and recorded, as every upload
is), in one run, as a ratio. nginx direct (plain HTTP) is printed beside
them for scale. curl with a client certificate is the client; the file is
deleted between runs; each variant runs --runs times, interleaved, and the
median is reported with the gateway's CPU seconds per GiB.

Not part of ./tests/run: run it by hand on a quiet machine, e.g.
    meson setup build-release --buildtype=release -Dtests=false
    ninja -C build-release
    tests/bench/bench_upload.py --build build-release
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
import cg  # noqa: E402  (the integration harness: PKI, nginx, gateway)
from bench_tls import cpu_seconds  # noqa: E402


def curl_put(url, path, pki=None, headers=()):
    argv = ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-T', path, url,
            '-H', 'Expect:']
    if pki:
        cert, key = pki.client('alice')
        argv += ['--cacert', pki.ca, '--cert', cert, '--key', key]
    for h in headers:
        argv += ['-H', h]
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    dt = time.perf_counter() - t0
    if out.stdout.strip() not in ('201', '204'):
        raise RuntimeError(f'upload answered {out.stdout!r}: {out.stderr}')
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=os.environ.get('CPMGATE_BUILD',
                                                      os.path.join(REPO, 'build-release')))
    ap.add_argument('--mib', type=int, default=512)
    ap.add_argument('--runs', type=int, default=3)
    args = ap.parse_args()
    build = os.path.abspath(args.build)

    d = tempfile.mkdtemp(prefix='cpmgate-bench-upload-')
    os.chmod(d, 0o755)
    nginx = gw = None
    try:
        pki = cg.PKI.create(os.path.join(d, 'pki'))
        nginx = cg.Nginx(os.path.join(d, 'nginx'))
        nginx.start()
        gw = cg.Gateway(os.path.join(d, 'gw'), {
            'gateway': {'workers': '2'},
            'listener content': {
                'protocol': 'http', 'tls': 'implicit',
                'certificate': pki.server_cert, 'private_key': pki.server_key,
                'client_ca': pki.client_ca, 'auth': 'cert', 'upstream': 'nginx'},
            'upstream nginx': nginx.upstream(),
        }, build=build)
        gw.ctl_ok('principal', 'add', 'alice')
        gw.ctl_ok('cred', 'add', 'alice', 'cert-name', 'email:alice@example.com')
        gw.ctl_ok('acl', 'allow', 'alice', 'http', '/up/*', 'all')
        priv, pub = os.path.join(d, 'ak.key'), os.path.join(d, 'ak.pub')
        subprocess.run(['openssl', 'genpkey', '-algorithm', 'ED25519', '-out', priv], check=True)
        subprocess.run(['openssl', 'pkey', '-in', priv, '-pubout', '-out', pub], check=True)
        gw.ctl_ok('key', 'add', 'alice', '--id', 'ak', '--file', pub)
        gw.start()

        big = os.path.join(d, 'big.bin')
        with open(big, 'wb') as f:
            block = os.urandom(1 << 20)
            for _ in range(args.mib):
                f.write(block)
        size = args.mib << 20
        url_gw = f'https://localhost:{gw.port("content")}/up/big.bin'
        url_direct = f'http://{nginx.host}:{nginx.port}/up/big.bin'
        m = gw.ctl('manifest', 'create', '--key', priv, '--key-id', 'ak', '--path',
                   '/up/big.bin', '--file', big, db=False)
        assert m.returncode == 0, m.stderr
        manifest = m.stdout.strip()

        variants = {
            'direct': lambda: curl_put(url_direct, big),
            'no-manifest': lambda: curl_put(url_gw, big, pki),
            'manifest': lambda: curl_put(url_gw, big, pki,
                                         [f'Content-Manifest: {manifest}']),
        }
        times = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        for _ in range(args.runs):
            for name, run in variants.items():
                nginx.request('DELETE', '/up/big.bin')
                c0 = cpu_seconds(gw.pid)
                times[name].append(run())
                cpu[name].append(cpu_seconds(gw.pid) - c0)
        nginx.request('DELETE', '/up/big.bin')
        gib = size / (1 << 30)
        mbs = {k: size / statistics.median(v) / 1e6 for k, v in times.items()}
        print(f'\nupload of {args.mib} MiB, median of {args.runs} runs (curl -T, TLS 1.3, '
              f'client certificate; direct is plain HTTP to nginx)')
        print(f'{"variant":<14}{"MB/s":>10}{"gw cpu s/GiB":>15}')
        for k in variants:
            print(f'{k:<14}{mbs[k]:>10.1f}{statistics.median(cpu[k]) / gib:>15.2f}')
        print(f'\nmanifest vs no-manifest: {mbs["manifest"] / mbs["no-manifest"]:.2f}x '
              f'(aim >= 0.90x)')
        print(f'manifest vs direct:      {mbs["manifest"] / mbs["direct"]:.2f}x')
    finally:
        if gw:
            gw.stop()
        if nginx:
            nginx.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
