"""harness.py — counting helpers for tests/run.

  harness.py unit BUILD_DIR     run every meson test program of BUILD_DIR,
                                count cmocka's per-test results
  harness.py junit FILE.xml     count a pytest junit report

Each prints its details to stderr and one line `PASSED FAILED SKIPPED` to
stdout."""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

PASSED_RX = re.compile(r'^\[\s+PASSED\s+\]\s+(\d+) test', re.M)
FAILED_RX = re.compile(r'^\[\s+FAILED\s+\]\s+(\d+) test', re.M)
SKIPPED_RX = re.compile(r'^\[\s+SKIPPED\s+\]\s+(\d+) test', re.M)
SANITIZER_RX = re.compile(r'(AddressSanitizer|LeakSanitizer|runtime error:)')


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def run_unit(build):
    try:
        tests = json.loads(subprocess.run(
            ['meson', 'introspect', '--tests', build], check=True,
            capture_output=True, text=True).stdout)
    except (subprocess.CalledProcessError, json.JSONDecodeError) as e:
        say(f'unit: cannot list tests of {build}: {e}')
        return 0, 1, 0
    passed = failed = skipped = 0
    for t in tests:
        env = dict(os.environ)
        env.update(t.get('env') or {})
        env['CMOCKA_MESSAGE_OUTPUT'] = 'stdout'
        timeout = t.get('timeout') or 120
        name = t['name']
        try:
            r = subprocess.run(t['cmd'], env=env, cwd=t.get('workdir') or build,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=timeout)
            out, rc = r.stdout.decode(errors='replace'), r.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b'').decode(errors='replace')
            rc = 'timeout'
        except OSError as e:
            out, rc = str(e), 'not runnable'
        p = sum(int(x) for x in PASSED_RX.findall(out))
        f = sum(int(x) for x in FAILED_RX.findall(out))
        s = sum(int(x) for x in SKIPPED_RX.findall(out))
        if p == 0 and f == 0 and s == 0:
            # Not a cmocka program, or it died before its summary.
            p, f = (1, 0) if rc == 0 else (0, 1)
        elif rc != 0 and f == 0:
            # Every case passed, yet the program failed: a leak report at
            # exit, a crash in teardown, a timeout.
            f = 1
        if SANITIZER_RX.search(out) and f == 0:
            f = 1
        verdict = 'ok' if f == 0 and rc == 0 else f'FAIL (exit {rc})'
        say(f'unit: {name}: {p} passed, {f} failed, {s} skipped — {verdict}')
        if verdict != 'ok':
            say('\n'.join('    ' + l for l in out.splitlines()[-60:]))
        passed += p
        failed += f
        skipped += s
    return passed, failed, skipped


def count_junit(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        say(f'integration: no usable report {path}: {e}')
        return 0, 1, 0
    suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
    # A teardown error may come as a second <testcase> of the same name:
    # one test, one verdict, failure wins.
    verdicts = {}
    for s in suites:
        for case in s.iter('testcase'):
            key = (case.get('classname'), case.get('name'))
            kinds = {c.tag for c in case}
            v = ('failed' if kinds & {'failure', 'error'} else
                 'skipped' if 'skipped' in kinds else 'passed')
            rank = {'passed': 0, 'skipped': 1, 'failed': 2}
            if rank[v] >= rank[verdicts.get(key, 'passed')]:
                verdicts[key] = v
    vals = list(verdicts.values())
    return vals.count('passed'), vals.count('failed'), vals.count('skipped')


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ('unit', 'junit'):
        say(__doc__)
        return 2
    if sys.argv[1] == 'unit':
        p, f, s = run_unit(sys.argv[2])
    else:
        p, f, s = count_junit(sys.argv[2])
    print(p, f, s)
    return 0


if __name__ == '__main__':
    sys.exit(main())
