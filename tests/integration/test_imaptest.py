"""test_imaptest.py — Dovecot's imaptest, an IMAP client suite written
outside this project, run against the test Dovecot directly and through the
gateway in the same run (its `compliance` script: every scripted test in its
own imaptest process). Every test that passes directly must pass through the
gateway, except those that need a capability the gateway removes on purpose
(SPEC section 4): those are listed beside the capability allow-list in
proxy/imap/filter.c, with the reason, and this module reads that list.
Then its random workload (the IMAP benchmark's load) through the gateway,
without an error.

imaptest lives in the project's shared tools (../shared/tools/imaptest
beside the repository); where that is absent the module is skipped."""

import os
import re
import subprocess
import time

import pytest

import cg

IMAPTEST_DIR = cg.REPO.parent / 'shared' / 'tools' / 'imaptest'
IMAP_C = cg.REPO / 'proxy' / 'imap' / 'filter.c'
PASSWORD = 'itestpw'
# Two pairs of users on one Dovecot, so that the two runs (in parallel)
# never share a mailbox: imaptest needs two users per run.
DIRECT_USERS = ('itest', 'itest2')
GATEWAY_USERS = ('gwtest', 'gwtest2')
# The random workload's user (its INBOX is not the scripted tests' business)
LOAD_USER = 'gwload'
# Seconds per imaptest test (its own per-command timeout is 30 s).
PER_TEST_TIMEOUT = 45

pytestmark = pytest.mark.skipif(
    not (IMAPTEST_DIR / 'compliance').exists(),
    reason=f'imaptest not available: {IMAPTEST_DIR} is absent (the shared '
           f'tools live beside the repository only in this project\'s CI)')


def removed_capability_tests():
    """{imaptest test: (capability, reason)} from proxy/imap/filter.c's list of
    tests that need a capability the gateway removes."""
    rx = re.compile(r'^\s*\*\s+imaptest (\S+) needs (\S+): (.*)$')
    out = {}
    for line in IMAP_C.read_text().splitlines():
        m = rx.match(line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3).strip())
    return out


def parse_compliance(text):
    """{test name: 'PASS' | 'FAIL' | 'SKIP'} from the compliance output."""
    return {m.group(2): m.group(1)
            for m in re.finditer(r'^(PASS|FAIL|SKIP) (\S+)$', text, re.M)}


@pytest.fixture(scope='module')
def imaptest_bin():
    """The imaptest binary, built once into the test build directory (the
    script does nothing when it is already built for this dovecot-dev)."""
    dest = cg.BUILD / 'imaptest'
    r = subprocess.run([str(IMAPTEST_DIR / 'build'), str(dest)],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f'imaptest build failed:\n{r.stdout}\n{r.stderr}'
    path = r.stdout.strip().splitlines()[-1]
    assert os.access(path, os.X_OK), path
    return path


@pytest.fixture(scope='module')
def itest_dovecot(cg_root):
    """A Dovecot with the users imaptest needs (LOGIN allowed, `/` as the
    hierarchy separator: deploy/dovecot.conf.in as every test uses)."""
    users = {u: PASSWORD for u in DIRECT_USERS + GATEWAY_USERS + (LOAD_USER,)}
    d = cg.Dovecot(cg_root / 'dovecot-imaptest', users=users).start()
    yield d
    d.stop()


@pytest.fixture(scope='module')
def itest_gateway(module_gateway_factory, pki, itest_dovecot):
    """The gateway in front of it: implicit TLS, LOGIN passed through, and
    an ACL that lets the imaptest users do everything the tests do."""
    g = module_gateway_factory({
        'listener imaps': cg.tls_listener(
            pki, 'imap', 'dovecot', auth='login', client_ca=None,
            login_failures_per_minute='1000'),
        'upstream dovecot': itest_dovecot.upstream(),
    })
    for u in GATEWAY_USERS + (LOAD_USER,):
        g.ctl_ok('principal', 'add', u)
        g.ctl_ok('acl', 'allow', u, 'imap', '*', 'all')
    return g.start()


def compliance(imaptest, host, port, users, ssl_ca=None):
    """Starts the compliance script (returns the Popen; output in .stdout)."""
    env = dict(os.environ, IMAPTEST=imaptest, IMAPTEST_USER=users[0],
               IMAPTEST_USER2=users[1], IMAPTEST_PASS=PASSWORD,
               IMAPTEST_TIMEOUT=str(PER_TEST_TIMEOUT))
    args = [str(IMAPTEST_DIR / 'compliance'), host, str(port)]
    if ssl_ca:
        env['SSL_CERT_FILE'] = str(ssl_ca)
        args.append('ssl')
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.cg_timeout(900)
def test_imaptest_passes_through_gateway_as_it_does_directly(
        imaptest_bin, itest_dovecot, itest_gateway, pki):
    removed = removed_capability_tests()
    assert removed, f'no "imaptest NAME needs CAP: reason" lines in {IMAP_C}'
    # Both runs at once: the same server, the same moment, half the time.
    started = time.monotonic()
    host, port = itest_gateway.addr('imaps')
    procs = {
        'direct': compliance(imaptest_bin, itest_dovecot.host,
                             itest_dovecot.port, DIRECT_USERS),
        'gateway': compliance(imaptest_bin, host, port, GATEWAY_USERS,
                              ssl_ca=pki.ca),
    }
    out = {}
    for name, p in procs.items():
        try:
            out[name], _ = p.communicate(timeout=450)
        except subprocess.TimeoutExpired:
            p.kill()
            out[name] = p.communicate()[0] + '\n(killed: took too long)'
    elapsed = time.monotonic() - started
    direct, through = (parse_compliance(out[k]) for k in ('direct', 'gateway'))

    table = '\n'.join(f'  {t:32} direct {direct.get(t, "-"):4}  '
                      f'gateway {through.get(t, "-"):4}'
                      + (f'  (needs {removed[t][0]}, removed)' if t in removed else '')
                      for t in sorted(set(direct) | set(through)))
    summary = (f'imaptest compliance ({elapsed:.0f} s, both runs at once):\n'
               f'{table}\n--- direct:\n{out["direct"][-3000:]}\n'
               f'--- through the gateway:\n{out["gateway"][-6000:]}')
    print(summary)

    # The environment is what imaptest needs: it ran, and nothing failed
    # against Dovecot itself.
    assert len(direct) >= 60, summary
    assert 'FAIL' not in direct.values(), summary
    assert set(through) == set(direct), summary
    lost = [t for t, r in direct.items()
            if r == 'PASS' and through[t] != 'PASS' and t not in removed]
    assert not lost, f'pass directly, not through the gateway: {lost}\n{summary}'
    # The listed tests are skipped because the capability is gone, not
    # failed: imaptest skips a test whose capability is not announced.
    for t, (cap, _) in removed.items():
        if t in through:
            assert through[t] == 'SKIP', f'{t} (needs {cap}): {through[t]}\n{summary}'
    assert itest_gateway.alive(), summary


@pytest.mark.cg_timeout(120)
def test_imaptest_random_load_through_gateway_has_no_errors(
        imaptest_bin, itest_gateway, pki, tmp_path):
    """imaptest's random workload (the benchmark's load: several clients on
    one INBOX, commands pipelined, LOGIN and LOGOUT over and over) through
    the gateway: commands run, and imaptest reports no error (a wrong or
    missing answer, an unexpected disconnect) and no gateway crash."""
    mbox = tmp_path / 'corpus.mbox'
    mbox.write_text(''.join(
        f'From load@example.com Thu Dec  3 12:00:00 2026\nFrom: load@example.com\n'
        f'Subject: message {i}\nMessage-ID: <{i}@load.example>\n\n'
        + f'line of message {i}\n' * (3 + 40 * (i % 5)) + '\n' for i in range(20)))
    host, port = itest_gateway.addr('imaps')
    r = subprocess.run([imaptest_bin, f'host={host}', f'port={port}', f'user={LOAD_USER}',
                        f'pass={PASSWORD}', f'mbox={mbox}', 'clients=5', 'secs=4', 'ssl'],
                       env=dict(os.environ, SSL_CERT_FILE=str(pki.ca)),
                       capture_output=True, text=True, timeout=90)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    totals = r.stdout.split('\nTotals:\n', 1)[-1].splitlines()
    names = totals[0].split()
    counts = next((dict(zip(names, map(int, line.split()))) for line in totals[1:]
                   if len(line.split()) == len(names) and line.replace(' ', '').isdigit()),
                  {})
    assert counts.get('Logi', 0) > 5 and counts.get('Fetc', 0) > 5, out[-3000:]
    errors = re.findall(r'^(?:Error|Fatal|Panic): .*$', out, re.M)
    assert not errors, '\n'.join(errors[:20])
    assert itest_gateway.alive()
