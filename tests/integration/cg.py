"""cg.py — shared helpers for cpmgate's integration tests: free ports, the
test PKI, real Dovecot and nginx backends from private configurations, the
Gateway wrapper around a running cpmgate, and TLS / PSK clients.

Everything runs on loopback with ports chosen at run time. The build to test
comes from $CPMGATE_BUILD (default: <repo>/build)."""

import configparser
import hashlib
import http.client
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get('CPMGATE_BUILD', REPO / 'build')).resolve()
CPMGATE = BUILD / 'cpmgate'
CPMGATECTL = BUILD / 'cpmgatectl'
MKPKI = REPO / 'tests' / 'pki' / 'mkpki.sh'

SANITIZER_PATTERNS = ('AddressSanitizer', 'LeakSanitizer', 'runtime error:',
                      'UndefinedBehaviorSanitizer', 'ThreadSanitizer')


def sanitizer_env(env=None):
    """Environment for a sanitized child: leaks reported, first error fatal.
    Values already set (e.g. by tests/run) win."""
    env = dict(os.environ if env is None else env)
    env.setdefault('ASAN_OPTIONS',
                   'detect_leaks=1:abort_on_error=1:strict_string_checks=1')
    env.setdefault('UBSAN_OPTIONS', 'halt_on_error=1:print_stacktrace=1')
    env.setdefault('LSAN_OPTIONS', 'report_objects=0')
    return env


# ---------------------------------------------------------------- ports --

def free_port(host='127.0.0.1'):
    """A TCP port that is free on host right now (bind to 0, then release)."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0, proc=None):
    """Wait until host:port accepts a TCP connection. Raises TimeoutError,
    or RuntimeError if proc (a Popen) exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f'process exited ({proc.returncode}) before '
                               f'{host}:{port} was listening')
        if time.monotonic() > deadline:
            raise TimeoutError(f'{host}:{port} not listening after {timeout}s')
        time.sleep(0.05)


def wait_until(predicate, timeout=5.0, interval=0.05, what='condition'):
    """Poll predicate() until it returns a true value; return that value.
    Raises AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting for {what}')
        time.sleep(interval)


def _listening_inodes():
    """{port: set(socket inode)} for every TCP socket in LISTEN state."""
    out = {}
    for name in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] != '0A':
                        continue
                    port = int(parts[1].rsplit(':', 1)[1], 16)
                    out.setdefault(port, set()).add(parts[9])
        except FileNotFoundError:
            pass
    return out


def pid_listens_on(pid, port):
    """True if process pid holds a listening socket on port. Checks without
    connecting, so no probe connection shows up in the gateway's audit log."""
    inodes = _listening_inodes().get(port)
    if not inodes:
        return False
    try:
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try:
                target = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError:
                continue
            if target.startswith('socket:[') and target[8:-1] in inodes:
                return True
    except FileNotFoundError:
        return False
    return False


def make_root(prefix='cg-it-'):
    """A fresh temporary directory that the backends' unprivileged users can
    traverse (pytest's own tmp dirs are mode 0700: Dovecot's and nginx's
    workers could not reach their files)."""
    parent = os.environ.get('CG_TMPDIR') or None
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    root.chmod(0o755)
    return root


def _chown(path, user):
    import pwd
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def tail(path, n=40):
    try:
        lines = Path(path).read_text(errors='replace').splitlines()
    except FileNotFoundError:
        return f'({path} does not exist)'
    return '\n'.join(lines[-n:])


# ------------------------------------------------------------------ PKI --

class PKI:
    """The test PKI made by tests/pki/mkpki.sh. Every path is absolute."""

    CLIENTS = ('alice', 'bob', 'carol', 'dave', 'erin', 'revoked', 'expired', 'foreign',
               'carol-cn', 'dave-cn-carol', 'alice-and-erin', 'erin-via-sub-ca',
               'erin-via-revoked-sub-ca')

    def __init__(self, directory):
        self.dir = Path(directory)
        self.ca = self.path('ca.pem')                 # signs server certs
        self.ca_key = self.path('ca.key')
        self.server_cert = self.path('server.pem')    # localhost, 127.0.0.1, ::1
        self.server_key = self.path('server.key')
        self.client_ca = self.path('clients-ca.pem')  # signs client certs
        self.client_ca_key = self.path('clients-ca.key')
        self.crl = self.path('clients.crl')           # lists 'revoked'
        # clients.crl plus the CRLs of the intermediate client CAs sub-ca and
        # revoked-sub-ca (the latter revoked by clients-ca)
        self.chain_crl = self.path('chain.crl')
        self.foreign_ca = self.path('foreign-ca.pem')
        self.all_ca = self.path('all-ca.pem')
        self.upstream_cert = self.path('upstream.pem')  # a TLS backend
        self.upstream_key = self.path('upstream.key')
        self.gateway_cert = self.path('gateway.pem')    # gateway as TLS client
        self.gateway_key = self.path('gateway.key')
        self.idp_cert = self.path('idp.pem')
        self.idp_key = self.path('idp.key')

    @classmethod
    def create(cls, directory):
        subprocess.run(['bash', str(MKPKI), str(directory)], check=True,
                       capture_output=True, timeout=120)
        return cls(directory)

    def path(self, name):
        return str(self.dir / name)

    def client(self, name):
        """(cert, key) of a client: alice, bob, carol, dave, erin (good; SAN
        email:NAME@example.com, CN NAME), revoked (listed in pki.crl),
        expired, foreign (alice's e-mail SAN, signed by an untrusted CA),
        carol-cn (CN carol, no SAN), dave-cn-carol (SAN email:dave@, CN
        carol), alice-and-erin (both e-mail SANs), erin-via-sub-ca and
        erin-via-revoked-sub-ca (erin's SAN, issued by an intermediate CA;
        the PEM holds the chain)."""
        cert, key = self.path(name + '.pem'), self.path(name + '.key')
        if not os.path.exists(cert):
            raise KeyError(f'no client certificate {name!r} in {self.dir}')
        return cert, key

    def fingerprint(self, name_or_path):
        """SHA-256 of the certificate's DER, lowercase hex."""
        path = name_or_path
        if not os.path.exists(path):
            path = self.client(name_or_path)[0]
        der = ssl.PEM_cert_to_DER_cert(Path(path).read_text())
        return hashlib.sha256(der).hexdigest()


# -------------------------------------------------------------- Dovecot --

class Dovecot:
    """A private Dovecot (IMAP, plaintext on loopback) with a master user and
    a passwd-file of users: alice/alicepw, bob/bobpw, carol/carolpw (and
    dave, erin likewise, to match the test PKI's clients)."""

    USERS = {'alice': 'alicepw', 'bob': 'bobpw', 'carol': 'carolpw',
             'dave': 'davepw', 'erin': 'erinpw'}

    def __init__(self, root, host='127.0.0.1', port=None, users=None):
        self.root = Path(root)
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users or self.USERS)
        self.master_user = 'gw'
        self.master_password = hashlib.sha256(os.urandom(16)).hexdigest()[:24]
        self.master_password_file = str(self.root / 'dovecot-master.pw')
        self.base_dir = self.root / 'run'
        self.state_dir = self.root / 'state'
        self.home_root = self.root / 'home'
        self.log_path = str(self.root / 'dovecot.log')
        self.config_path = str(self.root / 'dovecot.conf')
        self.pid_file = self.base_dir / 'master.pid'
        self.proc = None

    def home(self, user):
        return self.home_root / user

    def write_config(self):
        for d in (self.root, self.base_dir, self.state_dir, self.home_root):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        _chown(self.home_root, 'dovecot')
        master_db = self.root / 'master-users'
        master_db.write_text(f'{self.master_user}:{{PLAIN}}{self.master_password}\n')
        Path(self.master_password_file).write_text(self.master_password + '\n')
        os.chmod(self.master_password_file, 0o600)
        users_db = self.root / 'users'
        users_db.write_text(''.join(f'{u}:{{PLAIN}}{p}\n'
                                    for u, p in self.users.items()))
        for f in (master_db, users_db):
            f.chmod(0o644)
        text = _template('dovecot.conf.in', {
            'LISTEN': self.host, 'PORT': str(self.port),
            'BASE_DIR': str(self.base_dir), 'STATE_DIR': str(self.state_dir),
            'LOG_PATH': self.log_path, 'HOME_ROOT': str(self.home_root),
            'MASTER_USERS': str(master_db), 'USERS': str(users_db),
            'TRUSTED': self.host,
        })
        Path(self.config_path).write_text(text)

    def start(self, timeout=20):
        self.write_config()
        self.proc = subprocess.Popen(
            ['dovecot', '-F', '-c', self.config_path],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / 'dovecot.stderr', 'wb'))
        try:
            wait_port(self.host, self.port, timeout, proc=self.proc)
        except Exception as e:
            raise RuntimeError(f'dovecot did not start: {e}\n'
                               f'{tail(self.root / "dovecot.stderr")}\n'
                               f'{tail(self.log_path)}') from None
        return self

    def stop(self, timeout=15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The pid file goes away a moment after the master: wait for it so
        # a following start never sees a stale one.
        deadline = time.monotonic() + 5
        while self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.proc = None

    def imap(self, user, password=None):
        """An imaplib.IMAP4 logged in to Dovecot directly (for test setup)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(user, password if password is not None else self.users[user])
        return conn

    def imap_as_master(self, user):
        """Log in as user through the master user (what the gateway does)."""
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(f'{user}*{self.master_user}', self.master_password)
        return conn

    def upstream(self, **extra):
        """An [upstream] section for this Dovecot, master-user login."""
        sec = {'address': f'{self.host}:{self.port}', 'imap_login': 'master',
               'master_user': self.master_user,
               'master_password_file': self.master_password_file}
        sec.update(extra)
        return sec


# ---------------------------------------------------------------- nginx --

def find_dav_ext_module():
    for d in ('/usr/lib/nginx/modules', '/usr/share/nginx/modules',
              '/usr/lib64/nginx/modules', '/usr/local/nginx/modules'):
        p = Path(d) / 'ngx_http_dav_ext_module.so'
        if p.exists():
            return str(p.resolve())
    for d in ('/usr/lib', '/usr/share', '/usr/local'):
        for p in Path(d).glob('**/ngx_http_dav_ext_module.so'):
            return str(p.resolve())
    return None


def _nginx_temp_paths(tmp):
    """Temp-path directives for every http module this nginx was built with
    (each is an error when its module is absent)."""
    try:
        v = subprocess.run(['nginx', '-V'], capture_output=True, text=True,
                           timeout=10).stderr
    except OSError:
        v = ''
    lines = [f'    client_body_temp_path {tmp}/body;']
    for mod in ('proxy', 'fastcgi', 'uwsgi', 'scgi'):
        if f'--without-http_{mod}_module' not in v:
            lines.append(f'    {mod}_temp_path {tmp}/{mod};')
    return '\n'.join(lines)


class Nginx:
    """A private nginx serving a WebDAV root (PUT DELETE MKCOL COPY MOVE,
    and PROPFIND OPTIONS LOCK UNLOCK through dav-ext), with /content/index.html
    (1 KiB) in place."""

    INDEX = ('cpmgate test index\n' + 'x' * 1004 + '\n').encode()
    assert len(INDEX) == 1024

    def __init__(self, root, host='127.0.0.1', port=None):
        self.dir = Path(root)
        self.host = host
        self.port = port or free_port(host)
        self.root = self.dir / 'www'
        self.tmp = self.dir / 'tmp'
        self.log_path = str(self.dir / 'error.log')
        self.access_log = str(self.dir / 'access.log')
        self.config_path = str(self.dir / 'nginx.conf')
        self.pid_file = self.dir / 'nginx.pid'
        self.proc = None

    def write_config(self):
        module = find_dav_ext_module()
        if module is None:
            raise RuntimeError('ngx_http_dav_ext_module.so not found '
                               '(package libnginx-mod-http-dav-ext)')
        for d in (self.dir, self.root, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        content = self.root / 'content'
        content.mkdir(exist_ok=True)
        (content / 'index.html').write_bytes(self.INDEX)
        for p in (self.root, content, content / 'index.html'):
            _chown(p, 'www-data')
        text = _template('nginx.conf.in', {
            'DAV_EXT_MODULE': module, 'PID': str(self.pid_file),
            'ERROR_LOG': self.log_path, 'ACCESS_LOG': self.access_log,
            'TEMP_PATHS': _nginx_temp_paths(self.tmp),
            'LISTEN': f'{self.host}:{self.port}' if ':' not in self.host
                      else f'[{self.host}]:{self.port}',
            'ROOT': str(self.root), 'LOCK_ZONE': 'cglock',
        })
        Path(self.config_path).write_text(text)

    def start(self, timeout=20):
        self.write_config()
        self.proc = subprocess.Popen(
            ['nginx', '-c', self.config_path, '-g', 'daemon off;'],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / 'nginx.stderr', 'wb'))
        try:
            wait_port(self.host, self.port, timeout, proc=self.proc)
        except Exception as e:
            raise RuntimeError(f'nginx did not start: {e}\n'
                               f'{tail(self.dir / "nginx.stderr")}\n'
                               f'{tail(self.log_path)}') from None
        return self

    def stop(self, timeout=15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)   # graceful
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def request(self, method, path, body=None, headers=None):
        """One request straight to nginx: (status, headers dict, body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def upstream(self, **extra):
        sec = {'address': f'{self.host}:{self.port}'}
        sec.update(extra)
        return sec


def _template(name, values):
    """Fill a deploy/*.in template: @NAME@ -> value (all must be given)."""
    text = (REPO / 'deploy' / name).read_text()

    def sub(m):
        key = m.group(1)
        if key not in values:
            raise KeyError(f'{name}: no value for @{key}@')
        return values[key]
    return re.sub(r'@([A-Z_]+)@', sub, text)


# -------------------------------------------------------------- gateway --

# Keys whose values are file paths: the Gateway copies an absolute path into
# its own directory and writes the name relative (SPEC 10: relative paths are
# relative to the configuration file), so the written file is self-contained.
PATH_KEYS = {'certificate', 'private_key', 'client_ca', 'crl', 'ca',
             'idp_certificate', 'master_password_file'}

DEFAULT_GATEWAY = {
    'workers': '2',
    'policy_db': 'policy.db',
    'audit_db': 'audit.db',
    'audit_key': 'audit.key',
    'audit_fail': 'closed',
}


class Gateway:
    """One cpmgate under test. Build with the sections of its configuration,
    populate the policy with ctl()/ctl_ok(), then start().

    sections: {'gateway': {...}, 'listener imaps': {...}, 'upstream x': {...}}
    A listener without `listen` gets 127.0.0.1 and a free port. A value of
    None removes a default key."""

    def __init__(self, directory, sections, build=None, env=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.build = Path(build or BUILD)
        self.cpmgate = str(self.build / 'cpmgate')
        self.cpmgatectl = str(self.build / 'cpmgatectl')
        self.extra_env = dict(env or {})
        self.sections = {}
        gw = dict(DEFAULT_GATEWAY)
        gw.update(sections.get('gateway', {}))
        self.sections['gateway'] = {k: v for k, v in gw.items() if v is not None}
        for name, sec in sections.items():
            if name == 'gateway':
                continue
            sec = {k: v for k, v in sec.items() if v is not None}
            if name.startswith('listener ') and 'listen' not in sec:
                sec['listen'] = f'127.0.0.1:{free_port()}'
            self.sections[name] = sec
        self._copied = {}
        self.config_path = str(self.dir / 'cpmgate.conf')
        self.log_path = str(self.dir / 'cpmgate.log')
        self.proc = None
        self.stopped_rc = None
        self.write_config()
        self.policy_db = self._abs(self.sections['gateway'].get('policy_db'))
        self.audit_db = self._abs(self.sections['gateway'].get('audit_db'))
        self.audit_key = self._abs(self.sections['gateway'].get('audit_key'))
        self.audit_pub = str(self.dir / 'audit.pub.pem')
        self._init_policy()
        self._make_audit_key()

    # -- configuration --
    def _abs(self, p):
        if p is None or '://' in str(p):  # a PostgreSQL policy_db is no file
            return p
        return str(p if os.path.isabs(p) else self.dir / p)

    def _copy_in(self, value):
        src = Path(value)
        if not src.is_absolute() or not src.exists():
            return value
        if str(src) in self._copied:
            return self._copied[str(src)]
        name = src.name
        n = 1
        while (self.dir / name).exists() and str(src) not in self._copied:
            name = f'{src.stem}-{n}{src.suffix}'
            n += 1
        shutil.copy(src, self.dir / name)
        self._copied[str(src)] = name
        return name

    def write_config(self, path=None, text=None):
        """Write the configuration (or `text` verbatim) to path (default: the
        gateway's cpmgate.conf). Returns the path."""
        path = path or self.config_path
        if text is None:
            lines = []
            for name, sec in self.sections.items():
                lines.append(f'[{name}]')
                for k, v in sec.items():
                    if k in PATH_KEYS:
                        v = self._copy_in(str(v))
                        sec[k] = v
                    lines.append(f'{k} = {v}')
                lines.append('')
            text = '\n'.join(lines)
        Path(path).write_text(text)
        return path

    def _init_policy(self):
        if not self.policy_db:
            return
        if not os.path.exists(self.cpmgatectl):
            raise AssertionError(f'{self.cpmgatectl} not built')
        self.ctl_ok('init')

    def _make_audit_key(self):
        if not self.audit_key or os.path.exists(self.audit_key):
            return
        r = self.ctl('audit', 'keygen', '--out', self.audit_key)
        if r.returncode == 0 and os.path.exists(self.audit_key):
            if r.stdout.strip().startswith('-----BEGIN'):
                Path(self.audit_pub).write_text(r.stdout)
        else:
            # cpmgatectl without `audit keygen` yet: the same key by openssl.
            subprocess.run(['openssl', 'genpkey', '-algorithm', 'ed25519',
                            '-out', self.audit_key], check=True,
                           capture_output=True)
        os.chmod(self.audit_key, 0o600)
        if not os.path.exists(self.audit_pub):
            subprocess.run(['openssl', 'pkey', '-in', self.audit_key, '-pubout',
                            '-out', self.audit_pub], check=True,
                           capture_output=True)

    # -- cpmgatectl --
    def ctl(self, *args, input=None, db=True, timeout=30):
        """Run cpmgatectl [-d policy_db] ARGS; returns CompletedProcess (text)."""
        cmd = [self.cpmgatectl]
        if db and self.policy_db:
            cmd += ['-d', self.policy_db]
        cmd += [str(a) for a in args]
        return subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir,
                              env=sanitizer_env())

    def ctl_ok(self, *args, **kw):
        r = self.ctl(*args, **kw)
        assert r.returncode == 0, (f'cpmgatectl {" ".join(map(str, args))} '
                                   f'exited {r.returncode}: {r.stderr.strip()}')
        return r

    # -- addresses --
    def listen(self, listener):
        return self.sections[f'listener {listener}']['listen']

    def addr(self, listener):
        """(host, port) of a listener."""
        host, _, port = self.listen(listener).rpartition(':')
        return host.strip('[]'), int(port)

    def port(self, listener):
        return self.addr(listener)[1]

    def host(self, listener):
        return self.addr(listener)[0]

    def admin_addr(self):
        host, _, port = self.sections['gateway']['admin_listen'].rpartition(':')
        return host.strip('[]'), int(port)

    def listeners(self):
        return [n.split(' ', 1)[1] for n in self.sections
                if n.startswith('listener ')]

    # -- process --
    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def env(self):
        env = sanitizer_env()
        env.update(self.extra_env)
        return env

    def check_config(self, path=None):
        """cpmgate -t -c FILE: CompletedProcess (stdout+stderr in .stdout)."""
        return subprocess.run([self.cpmgate, '-t', '-c', path or self.config_path],
                              capture_output=True, text=True, timeout=30,
                              cwd=self.dir, env=self.env())

    def start(self, timeout=20, wait=True):
        assert self.proc is None, 'gateway already started'
        if not os.path.exists(self.cpmgate):
            raise AssertionError(f'{self.cpmgate} not built')
        self._logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([self.cpmgate, '-c', self.config_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir, env=self.env())
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout=20):
        ports = [self.port(n) for n in self.listeners()]
        if 'admin_listen' in self.sections['gateway']:
            ports.append(self.admin_addr()[1])
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f'cpmgate exited with {self.proc.returncode} during start:\n'
                    f'{tail(self.log_path)}')
            if all(pid_listens_on(self.proc.pid, p) for p in ports):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f'cpmgate not listening on {ports} after '
                                     f'{timeout}s:\n{tail(self.log_path)}')
            time.sleep(0.05)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        """SIGHUP: re-read configuration, certificates, CRLs."""
        self.proc.send_signal(signal.SIGHUP)

    def log(self):
        try:
            return Path(self.log_path).read_text(errors='replace')
        except FileNotFoundError:
            return ''

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Wait for a log line matching regex pattern (searching from byte
        offset start); returns the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log()[start:]), timeout,
                          what=f'log line /{pattern}/ in {self.log_path}')

    def log_size(self):
        """Current log length: pass as wait_log(start=) to look only at what
        comes after this point."""
        return len(self.log())

    def sanitizer_report(self):
        text = self.log()
        for pat in SANITIZER_PATTERNS:
            i = text.find(pat)
            if i >= 0:
                return text[max(0, i - 200):i + 3000]
        return None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop the gateway (SIGTERM by default); returns its exit code."""
        if self.proc is None:
            return self.stopped_rc
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.stopped_rc = 'timeout'
                self.proc = None
                self._logf.close()
                raise AssertionError(f'cpmgate did not exit {timeout}s after '
                                     f'signal {sig}:\n{tail(self.log_path)}')
        self.stopped_rc = self.proc.returncode
        self.proc = None
        self._logf.close()
        return self.stopped_rc

    def finish(self):
        """Teardown check: stop with SIGTERM, require exit 0 and a log free
        of sanitizer reports."""
        was_running = self.proc is not None
        rc = self.stop()
        report = self.sanitizer_report()
        assert report is None, f'sanitizer report in {self.log_path}:\n{report}'
        if was_running:
            assert rc == 0, (f'cpmgate exited {rc} on SIGTERM '
                             f'(negative: killed by signal):\n{tail(self.log_path)}')

    # -- audit --
    def audit(self, *args):
        """cpmgatectl audit SUBCOMMAND --audit-db <this gateway's> ARGS."""
        sub, rest = args[0], args[1:]
        return self.ctl('audit', sub, '--audit-db', self.audit_db, *rest)


def tls_listener(pki, protocol, upstream, auth='cert', **extra):
    """A listener section: implicit TLS with the test server certificate,
    client certificates from the test client CA, `auth` and `upstream`."""
    sec = {'protocol': protocol, 'tls': 'implicit',
           'certificate': pki.server_cert, 'private_key': pki.server_key,
           'client_ca': pki.client_ca, 'auth': auth, 'upstream': upstream}
    sec.update(extra)
    return sec


def standard_sections(pki, dovecot, nginx, admin=True):
    """SPEC section 10's example topology, on free ports, in front of the
    given Dovecot and nginx: imaps (implicit; cert, psk, login), imap
    (starttls; login), content (https; cert, psk, digest, saml) and
    content-plain (tls = none, redirect)."""
    content_port = free_port()
    gw = {'workers': '2'}
    if admin:
        gw['admin_listen'] = f'127.0.0.1:{free_port()}'
    return {
        'gateway': gw,
        'listener imaps': {
            'protocol': 'imap', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert, psk, login', 'upstream': 'dovecot'},
        'listener imap': {
            'protocol': 'imap', 'tls': 'starttls',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'login', 'upstream': 'dovecot'},
        'listener content': {
            'protocol': 'http', 'listen': f'127.0.0.1:{content_port}',
            'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'client_ca': pki.client_ca, 'crl': pki.crl,
            'auth': 'cert, psk, digest, saml',
            'digest_realm': 'content@example.com', 'upstream': 'nginx'},
        'listener content-plain': {
            'protocol': 'http', 'tls': 'none', 'insecure': 'redirect',
            'redirect_to': f'https://localhost:{content_port}'},
        'upstream dovecot': dovecot.upstream(),
        'upstream nginx': nginx.upstream(),
        'saml': {'idp_certificate': pki.idp_cert,
                 'issuer': 'https://idp.example.com/',
                 'audience': 'https://gw.example.com/', 'clock_skew': '60'},
    }


def http_alice_gateway(factory, pki, nginx, gateway=None, start=True):
    """A gateway (started unless start is false) serving nginx over HTTPS
    to alice at 127.0.0.1 (auth address), with `gateway` keys added to
    [gateway]."""
    g = factory({
        'gateway': dict(gateway or {}),
        'listener content': {
            'protocol': 'http', 'tls': 'implicit',
            'certificate': pki.server_cert, 'private_key': pki.server_key,
            'auth': 'address', 'upstream': 'nginx'},
        'upstream nginx': nginx.upstream(),
    })
    g.ctl_ok('principal', 'add', 'alice')
    g.ctl_ok('cred', 'add', 'alice', 'address', '127.0.0.1/32')
    g.ctl_ok('acl', 'allow', 'alice', '*', '*', 'all')
    return g.start() if start else g


def merge_sections(base, overrides):
    """A copy of base with overrides merged per section (None drops a key,
    a section mapped to None is removed)."""
    out = {k: dict(v) for k, v in base.items()}
    for name, sec in (overrides or {}).items():
        if sec is None:
            out.pop(name, None)
            continue
        tgt = out.setdefault(name, {})
        for k, v in sec.items():
            if v is None:
                tgt.pop(k, None)
            else:
                tgt[k] = v
    return out


def read_config(path):
    """Parse a written cpmgate.conf back (for assertions on the sample)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(';',),
                                   interpolation=None)
    cp.read(path)
    return cp


# ------------------------------------------------------- full disks --

class SmallFs:
    """A tmpfs of `size` mounted at directory (a context manager that
    unmounts on exit); pytest.skip where mounting is not allowed. fill()
    writes until ENOSPC, free() gives the space back."""

    def __init__(self, directory, size='1m'):
        self.dir = Path(directory)
        self.size = size
        self.filler = self.dir / 'filler'

    def __enter__(self):
        import pytest
        self.dir.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={self.size}', 'tmpfs',
                            str(self.dir)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip('cannot mount a small tmpfs here: ' + r.stderr.strip())
        return self

    def __exit__(self, *exc):
        subprocess.run(['umount', '-l', str(self.dir)], capture_output=True)
        return False

    def fill(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b'\0' * 65536) > 0:
                pass
        except OSError:
            pass  # ENOSPC
        finally:
            os.close(fd)

    def free(self):
        os.unlink(self.filler)


# ---------------------------------------------------------- TLS clients --

def client_context(pki, name=None, cafile=None, alpn=None, versions=None,
                   check_hostname=True):
    """An ssl.SSLContext that verifies the gateway with the server CA and, if
    name is given, presents that client's certificate (pki.client(name)).
    name may also be a (cert, key) pair. versions: e.g. ('1.3',) or ('1.2',)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile or pki.ca)
    ctx.check_hostname = check_hostname
    if name is not None:
        cert, key = name if isinstance(name, tuple) else pki.client(name)
        ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if versions:
        v = {'1.2': ssl.TLSVersion.TLSv1_2, '1.3': ssl.TLSVersion.TLSv1_3}
        ctx.minimum_version = min(v[x] for x in versions)
        ctx.maximum_version = max(v[x] for x in versions)
    return ctx


def tls_connect(addr, ctx, server_hostname='localhost', timeout=10,
                source=None):
    """A TLS socket to addr (host, port), handshake done. source: a local
    address to bind to first (e.g. '127.0.0.3')."""
    raw = socket.create_connection(addr, timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except Exception:
        raw.close()
        raise


def recv_until(sock, marker=b'\r\n', limit=1 << 20, timeout=10):
    """Read from sock until marker is in the data (or EOF); returns bytes."""
    sock.settimeout(timeout)
    data = b''
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock, timeout=10, limit=1 << 24):
    """Read until EOF (or timeout); returns bytes."""
    sock.settimeout(timeout)
    data = b''
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        pass
    return data


def imap_tls(addr, ctx, timeout=10):
    """imaplib.IMAP4_SSL to the gateway (greeting read; .welcome holds it)."""
    host, port = addr
    return imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=timeout)


def https(addr, ctx, method, path, body=None, headers=None, timeout=10,
          server_hostname=None):
    """One HTTPS request: (status, headers dict lowercased, body bytes)."""
    host, port = addr
    conn = http.client.HTTPSConnection(server_hostname or 'localhost', port,
                                       context=ctx, timeout=timeout)
    # Connect to the real address but verify and send SNI for 'localhost'.
    conn.sock = tls_connect(addr, ctx, server_hostname=server_hostname or 'localhost',
                            timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def http_plain(addr, method, path, body=None, headers=None, timeout=10):
    host, port = addr
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def s_client(addr, *args, input=b'', timeout=15, servername='localhost'):
    """Run `openssl s_client -connect host:port ARGS` feeding input, and
    keep reading after stdin ends (-ign_eof) until the server closes or
    timeout. Returns (returncode, output) with stdout and stderr merged;
    returncode is None on timeout."""
    host, port = addr
    hostport = f'[{host}]:{port}' if ':' in host else f'{host}:{port}'
    cmd = ['openssl', 's_client', '-connect', hostport, '-ign_eof']
    if servername:
        cmd += ['-servername', servername]
    cmd += [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode()
    try:
        r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout,
                           env=dict(os.environ, OPENSSL_CONF='/dev/null'))
        return r.returncode, r.stdout.decode(errors='replace')
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b''
        return None, out.decode(errors='replace')


def psk_args(identity, key_hex, tls13=False, cipher='PSK-AES128-GCM-SHA256'):
    """s_client arguments for a PSK handshake: TLS 1.2 with `cipher`, or
    TLS 1.3 external PSK."""
    args = ['-psk_identity', identity, '-psk', key_hex, '-no_ticket']
    if tls13:
        args += ['-tls1_3']
    else:
        args += ['-tls1_2', '-cipher', cipher]
    return args


def s_client_psk(addr, identity, key_hex, tls13=False, input=b'',
                 cipher='PSK-AES128-GCM-SHA256', timeout=15):
    return s_client(addr, *psk_args(identity, key_hex, tls13, cipher),
                    input=input, timeout=timeout, servername=None)


def tls_alert(output):
    """The alert text s_client reported (e.g. 'decrypt error'), or None."""
    m = re.search(r'(?:tlsv1|sslv3|ssl/tls) alert ([a-z ]+)', output, re.I)
    if m:
        return m.group(1).strip()
    m = re.search(r'alert[ _]number[ =:]*(\d+)', output, re.I)
    return m.group(1) if m else None


def handshake_ok(output):
    """True if s_client's output shows a completed handshake."""
    return bool(re.search(r'^(New|Reused), (TLSv1\.[23]|SSLv3)', output, re.M)) \
        and 'Cipher is (NONE)' not in output


def negotiated_cipher(output):
    m = re.search(r'Cipher is (\S+)', output)
    return m.group(1) if m else None


def refused_tls(addr, ctx, timeout=10, probe=None, source=None):
    """True if the gateway refuses this TLS client: the handshake fails, or
    the connection is closed before any application data. probe: bytes to
    send after the handshake (TLS 1.3 delivers a client-cert refusal only
    after the client's Finished, so a read is needed to see it)."""
    try:
        s = tls_connect(addr, ctx, timeout=timeout, source=source)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, OSError):
        return True
    try:
        if probe:
            try:
                s.sendall(probe)
            except (ssl.SSLError, OSError):
                return True
        s.settimeout(timeout)
        try:
            data = s.recv(4096)
        except (ssl.SSLError, ConnectionResetError, OSError):
            return True
        return data == b''
    finally:
        s.close()


def python():
    """The Python with Debian's modules (tests call helpers with it)."""
    return '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable


# ------------------------------------------------ IMAP / HTTP probes --

def connect(addr, ctx=None, source=None, timeout=10, server_hostname='localhost'):
    """A socket to addr: TLS (handshake done) when ctx is given, else TCP."""
    if ctx is not None:
        return tls_connect(addr, ctx, server_hostname=server_hostname,
                           timeout=timeout, source=source)
    return socket.create_connection(addr, timeout=timeout,
                                    source_address=(source, 0) if source else None)


def imap_greeting(addr, ctx=None, source=None, timeout=10):
    """The first line an IMAP server sends (bytes, with CRLF), or None when
    the connection is refused: TLS handshake fails, or it closes before a
    whole line."""
    try:
        s = connect(addr, ctx, source, timeout)
    except (ssl.SSLError, OSError):
        return None
    try:
        data = recv_until(s, b'\r\n', timeout=timeout)
    except (ssl.SSLError, OSError):
        return None
    finally:
        s.close()
    return data if data.endswith(b'\r\n') else None


def imap_refused(addr, ctx=None, source=None, timeout=10):
    """True if the gateway refuses an IMAP client: no greeting at all, or a
    `* BYE` instead of `* OK` (RFC 3501 7.1.5 allows BYE as a greeting)."""
    g = imap_greeting(addr, ctx, source, timeout)
    return g is None or g.startswith(b'* BYE')


class IMAPSession:
    """A minimal line-based IMAP client over an existing socket, for tests
    that need the raw wire (imaplib hides BYE greetings and tags)."""

    def __init__(self, sock, timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b''
        self.n = 0
        self.greeting = self.readline()

    @classmethod
    def open(cls, addr, ctx=None, source=None, timeout=10):
        return cls(connect(addr, ctx, source, timeout), timeout)

    def readline(self):
        while b'\r\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buf = self.buf, b''
                return line
            self.buf += chunk
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line + b'\r\n'

    def command(self, text):
        """Send `TAG text`; return (tagged line, [untagged lines])."""
        self.n += 1
        tag = f'a{self.n}'
        self.sock.sendall(f'{tag} {text}\r\n'.encode())
        lines = []
        while True:
            line = self.readline()
            if not line:
                raise ConnectionError(f'closed during {text!r}: {lines}')
            if line.startswith(tag.encode() + b' '):
                return line, lines
            lines.append(line)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def http_request(addr, method, path, ctx=None, source=None, body=None,
                 headers=None, timeout=10):
    """One HTTP/1.1 request (TLS when ctx is given), Connection: close.
    Returns (status, headers dict lowercased, body) or None when the
    connection is refused (handshake fails, or closed with no response)."""
    try:
        s = connect(addr, ctx, source, timeout)
    except (ssl.SSLError, OSError):
        return None
    try:
        h = {'Host': 'localhost', 'Connection': 'close'}
        h.update(headers or {})
        if body is not None:
            h['Content-Length'] = str(len(body))
        head = f'{method} {path} HTTP/1.1\r\n' + ''.join(
            f'{k}: {v}\r\n' for k, v in h.items()) + '\r\n'
        try:
            s.sendall(head.encode() + (body or b''))
        except (ssl.SSLError, OSError):
            return None
        data = recv_all(s, timeout=timeout)
    finally:
        s.close()
    if not data.startswith(b'HTTP/1.'):
        return None
    head, _, rest = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(':')
        hdrs[k.strip().lower()] = v.strip()
    if 'chunked' in hdrs.get('transfer-encoding', ''):
        rest = _dechunk(rest)
    return status, hdrs, rest


def _dechunk(data):
    out = b''
    while data:
        size_line, _, data = data.partition(b'\r\n')
        size = int(size_line.split(b';')[0] or b'0', 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def http_refused(resp):
    """True if an http_request result is a refusal: no response at all, or
    401 / 403 (the gateway may answer on the wire where HTTP allows it)."""
    return resp is None or resp[0] in (401, 403)
