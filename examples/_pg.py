"""A throwaway PostgreSQL server for the database example, the integration
tests and the benchmarks: `initdb` into a temporary directory, `pg_ctl start`
listening on 127.0.0.1 at a free port and on a Unix socket in that directory,
`pg_ctl stop` and the directory removed at the end.

    with TempPostgres() as pg:
        await asyncpg.connect(pg.dsn)

The server binaries come from $PYLOOP_PG_BIN, else the newest Debian
/usr/lib/postgresql/<version>/bin, else PATH. initdb and postgres refuse to run
as root, so as root the server runs as the `postgres` system user (the Debian
package creates it), or `nobody` when there is none. Durability is switched off
(fsync, synchronous commit, full-page writes): the data lives only as long as
the server does, and start-up and commits are faster without it.
"""
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile

USER = "postgres"  # the database superuser initdb creates (trust authentication)
DBNAME = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir():
    """The directory holding initdb, pg_ctl and postgres."""
    env = os.environ.get("PYLOOP_PG_BIN")
    if env:
        return env
    versions = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if versions:
        newest = max(versions, key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)))
        return os.path.dirname(newest)
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on "
        "PATH, PYLOOP_PG_BIN unset); tools/sysdeps.sh installs Debian's postgresql package")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_account():
    """(uid, gid) to run the server as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return pw.pw_uid, pw.pw_gid
    raise PostgresUnavailable("running as root and there is neither a `postgres` nor a "
                              "`nobody` account to run the server as")


class TempPostgres:
    """One PostgreSQL server in its own temporary directory.

    dsn: a postgresql:// URL over TCP (127.0.0.1:port); socket_dir: the
    directory of its Unix socket (asyncpg takes it as host=)."""

    def __init__(self):
        self.bindir = find_bindir()
        self.account = _server_account()
        self.tmp = None
        self.port = None
        self.started = False
        self.user = USER
        self.dbname = DBNAME

    @property
    def datadir(self):
        return os.path.join(self.tmp, "data")

    @property
    def socket_dir(self):
        return self.tmp

    @property
    def logfile(self):
        return os.path.join(self.tmp, "server.log")

    @property
    def dsn(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _run(self, tool, *args):
        kw = {}
        if self.account:
            kw.update(user=self.account[0], group=self.account[1], extra_groups=[])
        # The server is not ours to instrument: `make asan` preloads the
        # sanitizer runtimes, which PostgreSQL's binaries must not inherit.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")}
        proc = subprocess.run([os.path.join(self.bindir, tool), *args], cwd=self.tmp,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120, env=env, **kw)
        if proc.returncode != 0:
            log = ""
            if os.path.exists(self.logfile):
                with open(self.logfile) as f:
                    log = f.read()[-2000:]
            raise RuntimeError(f"{tool} {' '.join(args)} exited with {proc.returncode}:\n"
                               f"{proc.stdout}{proc.stderr}{log}")
        return proc

    def start(self):
        parent = None
        if self.account and not os.stat(tempfile.gettempdir()).st_mode & 0o001:
            parent = "/tmp"  # the server's account could not reach a private TMPDIR
        self.tmp = tempfile.mkdtemp(prefix="pyloop-pg-", dir=parent)
        try:
            if self.account:
                os.chown(self.tmp, *self.account)
            self._run("initdb", "--no-sync", "--auth=trust", f"--username={USER}",
                      "--encoding=UTF8", "--locale=C", "-D", self.datadir)
            self.port = free_port()
            # postgres takes these as its own command-line options (-c name=value).
            opts = " ".join([
                f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=100",
            ])
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir,
                      "-l", self.logfile, "-o", opts)
            self.started = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.tmp is None:
            return
        try:
            if self.started:
                self.started = False
                # fast: roll back open transactions and disconnect clients
                # instead of waiting for them to leave.
                self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", self.datadir)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
