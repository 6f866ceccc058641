#!/usr/bin/python3
"""profile.py — where a 1 KiB keep-alive request's time goes in cpmgate's HTTP
gateway (run through profile.sh, which makes the build).

The setup is bench_tls.py's (nginx backend, cpmgate with the ACL and the
audit trail on, wrk with keep-alive over TLS). Three runs over the same load:
  1. CPU per request: utime+stime of the gateway's threads (workers, audit
     writer) over the run divided by the requests wrk completed;
  2. perf record -g: samples split by component (below) and a flame graph;
  3. strace -c -f: system calls per request, by call.
These figures do not depend on how loaded the machine is (requests/s does).

Components: a sample's leaf frame in the kernel counts as "kernel" (worker
threads); the audit writer thread (found by writer_main in its stacks)
counts whole as "audit writer"; otherwise the first frame from the leaf up
that is in libssl/libcrypto or in one of cpmgate's source files decides:
  TLS       libssl, libcrypto, proxy/core/tls.c
  parsing   llhttp, proxy/http/{parse,head,host,path}.c
  ACL       policy/*, proxy/http/gate.c
  audit submit  store/* in a worker thread
  I/O       proxy/core/* other than tls.c (streams, connections, upstreams)
  gateway   the rest of proxy/ (request stages, forwarding, responses)
  libuv/libc    samples with none of these frames (event loop, allocator)
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_tls import (REPO, start_backend, start_cpmgate, threads, wrk)  # noqa: E402

COMPONENTS = ["TLS", "parsing", "ACL", "audit submit", "audit writer", "I/O", "gateway",
              "libuv/libc", "kernel"]


def symbol_files(build):
    """symbol -> source path relative to the repository, from the objects
    of compile_commands.json (static functions included)."""
    with open(os.path.join(build, "compile_commands.json")) as f:
        cmds = json.load(f)
    m = {}
    for c in cmds:
        obj = os.path.join(c["directory"], c["output"])
        src = os.path.normpath(os.path.join(c["directory"], c["file"]))
        rel = os.path.relpath(src, REPO) if src.startswith(REPO) else src
        nm = subprocess.run(["nm", "--defined-only", obj], capture_output=True, text=True)
        for line in nm.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tTwW":
                m.setdefault(parts[2], rel)
    return m


def classify_file(path):
    if "llhttp" in path:
        return "parsing"
    if path == "proxy/core/tls.c":
        return "TLS"
    if re.match(r"proxy/http/(parse|head|host|path)\.c$", path):
        return "parsing"
    if path.startswith("policy/") or path == "proxy/http/gate.c":
        return "ACL"
    if path.startswith("store/"):
        return "audit submit"
    if path.startswith("proxy/core/"):
        return "I/O"
    return "gateway"


def parse_script(text):
    """perf script output -> [(comm, tid, [(sym, dso) leaf first])]."""
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
            continue
        if not line.startswith((" ", "\t")):
            m = re.match(r"\s*(.+?)\s+(\d+)\s", line)
            cur = (m.group(1), int(m.group(2)), []) if m else None
            continue
        if cur is None:
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.+?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            cur[2].append((sym, os.path.basename(m.group(2))))
    if cur:
        samples.append(cur)
    return samples


def component(comm, stack, symfile, writer_tids, tid):
    if tid in writer_tids:
        return "audit writer"
    if not stack:
        return "libuv/libc"
    if stack[0][1].startswith("[kernel") or stack[0][1] == "[unknown]" and \
            stack[0][0].startswith("0xffff"):
        return "kernel"
    for sym, dso in stack:
        if dso.startswith(("libssl", "libcrypto")):
            return "TLS"
        if dso.startswith("libllhttp") or sym.startswith("llhttp"):
            return "parsing"
        if sym in symfile:
            return classify_file(symfile[sym])
    return "libuv/libc"


def frame_name(sym, dso):
    if dso.startswith("[kernel"):
        return sym + "_[k]"
    return sym if sym != "[unknown]" else f"[{dso}]"


def run_wrk(port, seconds, conns):
    rps, p99, errs, out = wrk(port, "/1k", seconds, conns)
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)), rps, errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--freq", type=int, default=1999)
    args = ap.parse_args()
    build, out = os.path.abspath(args.build), os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    d = tempfile.mkdtemp(prefix="cpmgate-profile-")
    os.chmod(d, 0o755)
    pki = os.path.join(d, "pki")
    subprocess.run([os.path.join(REPO, "tests/pki/mkpki.sh"), pki], check=True,
                   stderr=subprocess.DEVNULL)
    backend = start_backend(d, {"1k": 1024})
    gw = None
    try:
        gw = start_cpmgate(d, build, pki, backend, args.workers, True)
        run_wrk(gw.port, 2, args.conns)  # warm-up: connections, pool, caches

        # 1. CPU per request, by thread
        t0 = threads(gw.pid)
        reqs, rps, errs = run_wrk(gw.port, args.duration, args.conns)
        t1 = threads(gw.pid)
        tick = os.sysconf("SC_CLK_TCK")
        by_comm = collections.Counter()
        for tid, (comm, cpu) in t1.items():
            by_comm[comm] += cpu - t0.get(tid, (comm, 0))[1]
        total_us = sum(by_comm.values()) / tick * 1e6 / reqs
        worker_us = by_comm.get("cg-worker", 0) / tick * 1e6 / reqs

        # 2. perf record
        data = os.path.join(out, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-g", "-F", str(args.freq), "-p",
                                 str(gw.pid), "-o", data], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        preqs, _, _ = run_wrk(gw.port, args.duration, args.conns)
        perf.send_signal(signal.SIGINT)
        perf.wait()
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                                capture_output=True, text=True).stdout
        samples = parse_script(script)
        symfile = symbol_files(build)
        writer_tids = {tid for comm, tid, st in samples
                       if comm != "cg-worker" and any(s == "writer_main" for s, _ in st)}
        comp = collections.Counter()
        folded = collections.Counter()
        for comm, tid, st in samples:
            comp[component(comm, st, symfile, writer_tids, tid)] += 1
            name = "audit-writer" if tid in writer_tids else comm
            folded[";".join([name] + [frame_name(s, dd) for s, dd in reversed(st)])] += 1
        with open(os.path.join(out, "stacks.folded"), "w") as f:
            for k, v in folded.most_common():
                f.write(f"{k} {v}\n")
        with open(os.path.join(out, "flame.svg"), "w") as f:
            subprocess.run([sys.executable, os.path.join(HERE, "flamegraph.py"),
                            os.path.join(out, "stacks.folded"), "--title",
                            f"cpmgate, 1 KiB keep-alive over TLS, {len(samples)} samples"],
                           stdout=f, check=True)

        # 3. strace -c: a lighter load (strace slows every call)
        tids = [str(t) for t in threads(gw.pid)]
        sfile = os.path.join(out, "strace.txt")
        argv = ["strace", "-c", "-f", "-o", sfile]
        for t in tids:
            argv += ["-p", t]
        st = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        sreqs, _, _ = run_wrk(gw.port, max(3, args.duration // 2), 10)
        time.sleep(0.3)
        st.send_signal(signal.SIGINT)
        st.wait()
        calls = collections.Counter()
        with open(sfile) as f:
            for line in f:
                p = line.split()
                if len(p) >= 5 and p[-1] not in ("total", "syscall") and p[3].isdigit():
                    calls[p[-1]] += int(p[3])
    finally:
        if gw:
            gw.stop()
        backend.stop()
        shutil.rmtree(d, ignore_errors=True)

    nsamp = max(1, len(samples))
    lines = [f"1 KiB keep-alive, {args.conns} connections, {args.workers} workers, "
             f"{reqs} requests ({errs} non-2xx): CPU {total_us:.1f} µs/request "
             f"(workers {worker_us:.1f}, audit writer and the rest "
             f"{total_us - worker_us:.1f})", "",
             "| component | share of samples | CPU µs/request |", "|---|---|---|"]
    for c in COMPONENTS:
        share = comp.get(c, 0) / nsamp
        lines.append(f"| {c} | {100 * share:.1f}% | {share * total_us:.2f} |")
    lines += ["", f"system calls per request ({sreqs} requests under strace, 10 connections):",
              "", "| call | per request |", "|---|---|"]
    for name, n in calls.most_common():
        if n / sreqs >= 0.01:
            lines.append(f"| {name} | {n / sreqs:.2f} |")
    lines.append(f"| total | {sum(calls.values()) / sreqs:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "profile.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"flame graph: {out}/flame.svg")


if __name__ == "__main__":
    main()
