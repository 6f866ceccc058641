"""conftest.py — the shared fixtures of cpmgate's integration tests (helpers
in cg.py): a session tmp root, the test PKI, real Dovecot and nginx, and
gateway_factory for a cpmgate per test."""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cg  # noqa: E402


@pytest.fixture(scope='session')
def cg_root():
    """A session-wide temporary directory that unprivileged backend users
    can traverse. Kept when CG_KEEP_TMP is set (for post-mortems)."""
    root = cg.make_root()
    yield root
    if not os.environ.get('CG_KEEP_TMP'):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope='session')
def pki(cg_root):
    """The test PKI (tests/pki/mkpki.sh), made once per session."""
    return cg.PKI.create(cg_root / 'pki')


@pytest.fixture(scope='session')
def dovecot(cg_root):
    """A real Dovecot on 127.0.0.1:<free> with users alice, bob, carol and
    the master user gw (password in .master_password_file)."""
    d = cg.Dovecot(cg_root / 'dovecot').start()
    yield d
    d.stop()


@pytest.fixture(scope='session')
def nginx(cg_root):
    """A real nginx WebDAV server on 127.0.0.1:<free>, with
    /content/index.html (cg.Nginx.INDEX, 1 KiB)."""
    n = cg.Nginx(cg_root / 'nginx').start()
    yield n
    n.stop()


def _gateway_factory(cg_root, name):
    made = []
    safe = ''.join(c if c.isalnum() else '_' for c in name)[:60]

    def make(sections, env=None):
        d = cg_root / 'gw' / f'{safe}-{len(made)}'
        gw = cg.Gateway(d, sections, env=env)
        made.append(gw)
        return gw

    yield make
    errors = []
    for gw in made:
        try:
            gw.finish()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail('\n\n'.join(errors), pytrace=False)


@pytest.fixture
def gateway_factory(cg_root, request):
    """gateway_factory(sections, env=None) -> cg.Gateway (not started).
    Each gateway gets a fresh directory; at teardown it is stopped with
    SIGTERM, and the test fails unless it exited 0 with no sanitizer
    report in its log."""
    yield from _gateway_factory(cg_root, request.node.name)


@pytest.fixture(scope='module')
def module_gateway_factory(cg_root, request):
    """As gateway_factory, but the gateways live for the whole test module
    (for modules whose tests share one configuration)."""
    yield from _gateway_factory(cg_root, request.module.__name__)


@pytest.fixture
def standard_gateway(gateway_factory, pki, dovecot, nginx):
    """standard_gateway(overrides=None, env=None) -> cg.Gateway (not
    started) with SPEC section 10's example topology in front of the
    session's Dovecot and nginx. overrides are merged per section
    (None drops a key or a whole section)."""
    def make(overrides=None, env=None):
        secs = cg.merge_sections(cg.standard_sections(pki, dovecot, nginx),
                                 overrides)
        return gateway_factory(secs, env=env)
    return make


# No test may hang the suite: each test (setup, call and teardown) gets
# CG_TEST_TIMEOUT seconds (default 120), or what its cg_timeout marker
# says when that is longer (a test that runs a whole third-party suite),
# then fails with a traceback of where it was stuck. SIGALRM is delivered
# to the main thread, where pytest runs the test.
def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cg_timeout(seconds): a longer per-test time limit')


def _alarm(signum, frame):
    raise TimeoutError('test exceeded its time limit (CG_TEST_TIMEOUT or '
                       'its cg_timeout marker)')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import signal
    seconds = int(os.environ.get('CG_TEST_TIMEOUT', '120'))
    marker = item.get_closest_marker('cg_timeout')
    if marker is not None:
        seconds = max(seconds, int(marker.args[0]))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope='session')
def pg_cluster(cg_root):
    """A throw-away PostgreSQL cluster for the session (tests/integration/
    pg.py); the test skips when the server programs are not installed."""
    import pg
    with pg.throwaway(cg_root / 'pg') as cluster:
        yield cluster


_pg_dbs = [0]


@pytest.fixture
def pg_db(pg_cluster):
    """A new empty database in the session's cluster: its URL."""
    _pg_dbs[0] += 1
    return pg_cluster.fresh_db(f'cg_test_{os.getpid()}_{_pg_dbs[0]}')


@pytest.fixture(params=['sqlite', 'postgresql'])
def any_policy_db(request, tmp_path):
    """An empty policy database on each backend in turn: a SQLite file's
    path (not created yet), then a PostgreSQL URL (pg_db)."""
    if request.param == 'sqlite':
        return tmp_path / 'policy.db'
    return request.getfixturevalue('pg_db')
