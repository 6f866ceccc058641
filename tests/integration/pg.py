"""pg.py — a throw-away PostgreSQL cluster for the tests: initdb in a
temporary directory, the server on its own port with its unix socket in
that directory, stopped (and removed) afterwards. As root the server runs
as the `postgres` user (it refuses root). Used by the `pg` fixture in
conftest.py; find_bin() says why a test must skip when the server is not
installed."""

import os
import pwd
import shutil
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import cg

BIN_DIRS = ['/usr/lib/postgresql/15/bin']
PASSWORD_ROLE = 'cg_pw'
PASSWORD = 'pw-Secret-9137'


def find_bin(name):
    """The path of a PostgreSQL server program, or None."""
    for d in BIN_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    return shutil.which(name)


def missing():
    """None when a cluster can be made here, else the reason it cannot."""
    for name in ('initdb', 'pg_ctl', 'postgres', 'psql'):
        if not find_bin(name):
            return f'PostgreSQL server program {name} not installed (postgresql-15)'
    return None


class Cluster:
    """One PostgreSQL cluster: url() for cpmgate, psql() for plain SQL,
    stop()/start() to take it away and bring it back."""

    def __init__(self, root, user='postgres', dbname='cpmgate'):
        self.root = Path(root)
        self.data = self.root / 'data'
        self.sock = self.root / 'sock'
        self.log = self.root / 'postgres.log'
        self.port = cg.free_port()
        self.dbname = dbname
        self.as_user = user if os.geteuid() == 0 else None
        self.role = self.as_user or pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, argv, check=True, timeout=60, input=None):
        if self.as_user:
            argv = ['runuser', '-u', self.as_user, '--'] + argv
        return subprocess.run(argv, check=check, capture_output=True, text=True,
                              timeout=timeout, input=input)

    def create(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.as_user:
            pw = pwd.getpwnam(self.as_user)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.root.chmod(0o755)
        self.sock.chmod(0o777)
        self._run([find_bin('initdb'), '-D', str(self.data), '-A', 'trust', '-U', self.role,
                   '-E', 'UTF8', '--locale=C', '--no-sync'])
        # one role signs in with a password over TCP (the password tests);
        # everything else is trusted
        hba = self.data / 'pg_hba.conf'
        hba.write_text(f'host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n' + hba.read_text())
        with open(self.data / 'postgresql.conf', 'a') as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sock}'\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\n")
        self.start()
        self.psql(f'CREATE DATABASE {self.dbname}', db='postgres')
        self.psql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'", db='postgres')
        return self

    def start(self):
        self._run([find_bin('pg_ctl'), '-D', str(self.data), '-l', str(self.log),
                   '-w', '-t', '60', 'start'])

    def stop(self, mode='fast'):
        self._run([find_bin('pg_ctl'), '-D', str(self.data), '-m', mode, '-w', 'stop'],
                  check=False)

    def destroy(self):
        self.stop('immediate')
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db=None):
        """A postgresql:// URL over the unix socket."""
        return (f'postgresql://{self.role}@/{db or self.dbname}'
                f'?host={self.sock}&port={self.port}')

    def tcp_url(self, db=None, password=None, role=PASSWORD_ROLE):
        """A URL over TCP for the role that must give a password."""
        auth = f'{role}:{password}' if password else role
        return f'postgresql://{auth}@127.0.0.1:{self.port}/{db or self.dbname}'

    def psql(self, sql, db=None, check=True):
        """Runs sql with psql in db (a name or a URL); returns its stdout
        (unaligned, no headers)."""
        where = (['-d', db] if db and '://' in db else
                 ['-h', str(self.sock), '-p', str(self.port), '-U', self.role,
                  '-d', db or self.dbname])
        r = subprocess.run([find_bin('psql'), '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1'] +
                           where + ['-c', sql], capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f'psql {sql!r}: {r.stderr}')
        return r.stdout

    def fresh_db(self, name):
        """A new empty database in the cluster; its URL."""
        self.psql(f'CREATE DATABASE {name}', db='postgres')
        return self.url(name)

    def wait_down(self, timeout=10):
        end = time.time() + timeout
        while time.time() < end and (self.data / 'postmaster.pid').exists():
            time.sleep(0.05)


@contextmanager
def throwaway(root):
    """A started cluster in root for a with-block (pytest skips when the
    server programs are missing), destroyed after."""
    import pytest
    why = missing()
    if why:
        pytest.skip(why)
    c = Cluster(root).create()
    try:
        yield c
    finally:
        c.destroy()


def rows(db, sql):
    """The rows of a query on a policy database: a SQLite file's path, or
    a PostgreSQL URL (whose values come back as text)."""
    if '://' not in str(db):
        con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    r = subprocess.run([find_bin('psql'), '-X', '-A', '-t', '-F', '\x1f', '-R', '\x1e',
                        '-v', 'ON_ERROR_STOP=1', '-d', str(db), '-c', sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f'psql {sql!r}: {r.stderr}')
    out = r.stdout.rstrip('\n')
    return [tuple(rec.split('\x1f')) for rec in out.split('\x1e')] if out else []
