"""check_hardening.py BUILD_DIR — the release binaries carry the hardening
that meson.build asks for (Debian's hardening=+all), read back with readelf
and from the build's own compile commands:

  PIE          ELF type DYN and FLAGS_1 PIE
  RELRO, NOW   a GNU_RELRO segment and BIND_NOW (full RELRO)
  stack        __stack_chk_fail imported (-fstack-protector-strong)
  fortify      *_chk functions imported, every compile at _FORTIFY_SOURCE=3
               (2 where the compiler lacks 3)
  clash        every compile with -fstack-clash-protection (it leaves no
               mark in the binary)
  CET          every object file marked IBT and SHSTK (-fcf-protection); the
               executables too where the C library's start files are marked
               (Debian 12's Scrt1.o, crti.o and crtn.o are not, so the linker
               drops the mark from every executable there, Debian's own too:
               that check is then skipped and says why)

Prints one line per check to stderr and `PASSED FAILED SKIPPED` to stdout,
like tests/harness.py; exit 0 when nothing failed."""

import json
import os
import re
import subprocess
import sys

BINARIES = ('cpmgate', 'cpmgatectl')
CET_RX = re.compile(r'x86 feature:.*\bIBT\b.*\bSHSTK\b')


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def readelf(*args):
    return subprocess.run(['readelf', '-W', *args], capture_output=True, text=True,
                          check=True).stdout


def libc_start_files_have_cet():
    """True when the start files every executable links carry the CET mark."""
    out = subprocess.run(['cc', '-print-file-name=Scrt1.o'], capture_output=True,
                         text=True).stdout.strip()
    return bool(out) and os.path.isabs(out) and bool(CET_RX.search(readelf('-n', out)))


def binary_checks(path):
    header = readelf('-h', path)
    dynamic = readelf('-d', path)
    segments = readelf('-l', path)
    syms = readelf('--dyn-syms', path)
    flags1 = re.search(r'\(FLAGS_1\)\s+Flags:(.*)', dynamic)
    flags1 = flags1.group(1).split() if flags1 else []
    flags = re.search(r'\(FLAGS\)\s+(.*)', dynamic)
    flags = flags.group(1).split() if flags else []
    chk = sorted(set(re.findall(r'\b(__\w+_chk)@', syms)) - {'__stack_chk_fail'})
    yield 'PIE', ('Type:' in header and re.search(r'Type:\s+DYN', header) is not None
                  and 'PIE' in flags1), f'type DYN, FLAGS_1 {flags1}'
    yield 'RELRO', 'GNU_RELRO' in segments, 'GNU_RELRO segment'
    yield 'BIND_NOW', ('BIND_NOW' in flags or 'NOW' in flags1 or '(BIND_NOW)' in dynamic), \
        f'FLAGS {flags}, FLAGS_1 {flags1}'
    yield 'stack protector', '__stack_chk_fail@' in syms, '__stack_chk_fail imported'
    yield 'fortify', len(chk) > 0, f'{len(chk)} checked functions: {" ".join(chk[:6])}'


def compile_checks(build):
    cmds = json.load(open(os.path.join(build, 'compile_commands.json')))
    ours = [c for c in cmds if c['file'].endswith('.c')]
    levels = set()
    missing = {'-fstack-clash-protection': 0, '-fstack-protector-strong': 0,
               '-fcf-protection': 0}
    for c in ours:
        args = c['command'].split()
        for flag in missing:
            if flag not in args:
                missing[flag] += 1
        d = [a for a in args if a.startswith('-D_FORTIFY_SOURCE=')]
        levels.add(d[-1].split('=')[1] if d else 'none')
    for flag, n in missing.items():
        yield f'compile {flag}', n == 0 and ours, f'{len(ours) - n} of {len(ours)} compiles'
    yield 'compile _FORTIFY_SOURCE', levels in ({'3'}, {'2'}), \
        f'levels {sorted(levels)} over {len(ours)} compiles'


def object_cet(build):
    objs = []
    for root, _, files in os.walk(build):
        objs += [os.path.join(root, f) for f in files if f.endswith('.c.o')]
    unmarked = [o for o in objs if not CET_RX.search(readelf('-n', o))]
    return len(objs) > 0 and not unmarked, \
        f'{len(objs) - len(unmarked)} of {len(objs)} objects marked IBT, SHSTK' + \
        (f'; not: {unmarked[:3]}' if unmarked else '')


def main():
    if len(sys.argv) != 2:
        say(__doc__)
        return 2
    build = sys.argv[1]
    results = []
    for b in BINARIES:
        path = os.path.join(build, b)
        if not os.path.exists(path):
            results.append((f'{b}', False, 'not built'))
            continue
        for name, ok, detail in binary_checks(path):
            results.append((f'{b}: {name}', ok, detail))
    for name, ok, detail in compile_checks(build):
        results.append((name, ok, detail))
    ok, detail = object_cet(build)
    results.append(('objects CET', ok, detail))
    cet_libc = libc_start_files_have_cet()
    for b in BINARIES:
        path = os.path.join(build, b)
        if not os.path.exists(path):
            continue
        if cet_libc:
            results.append((f'{b}: CET', bool(CET_RX.search(readelf('-n', path))),
                            'GNU_PROPERTY x86 feature IBT, SHSTK'))
        else:
            results.append((f'{b}: CET', None,
                            "skipped: the C library's Scrt1.o carries no IBT/SHSTK mark, "
                            'so no executable linked here can'))
    p = f = s = 0
    for name, ok, detail in results:
        verdict = 'ok' if ok else 'SKIP' if ok is None else 'FAIL'
        say(f'hardening: {name}: {verdict} ({detail})')
        if ok is None:
            s += 1
        elif ok:
            p += 1
        else:
            f += 1
    print(p, f, s)
    return 1 if f else 0


if __name__ == '__main__':
    sys.exit(main())
