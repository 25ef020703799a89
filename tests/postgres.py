"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, pg_ctl start on
127.0.0.1 and a free port, trust authentication, no fsync; pg_ctl stop and the directory removed at the end.

initdb and postgres refuse to run as root (the CI machine and the sandboxes run tests as root), so as root
every PostgreSQL command runs as an unprivileged user that owns the temporary directory: ``postgres``
(the Debian package creates it), else ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

# Settings that only make sense for a server whose data is thrown away: nothing waits for the disk.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_connections": "200",
}
UNPRIVILEGED_USERS = ("postgres", "nobody")
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    pg_config may come from libpq-dev without the server, so its answer counts only when initdb is there."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                             check=True).stdout.strip())
        except subprocess.CalledProcessError:
            pass
    # Newest version first: /usr/lib/postgresql/15/bin before 9.6 (numeric, not string, order).
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
                      reverse=True)
    candidates += versions
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for candidate in candidates:
        bindir = Path(candidate)
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via PG_BINDIR, "
                              "pg_config --bindir, /usr/lib/postgresql/*/bin or PATH; "
                              "install them with `apt-get install postgresql`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(f"running as root and none of the users {UNPRIVILEGED_USERS} exists; "
                              "PostgreSQL refuses to run as root")


class PostgresServer:
    """One server; ``url(dbname)`` is the URL of one of its databases."""

    def __init__(self, *, bindir: Path):
        self.bindir = bindir
        self.port = 0
        self._databases = 0

    def __enter__(self) -> "PostgresServer":
        self._user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="complaint-monitor-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        if self._user is not None:
            for path in (self.root, self.sockets):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C", "--no-sync")
            self._start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def _start(self) -> None:
        # A port found free can be taken before the server binds it: try a few.
        for attempt in range(5):
            self.port = free_port()
            options = ["-c listen_addresses=127.0.0.1", f"-p {self.port}", f"-k {self.sockets}"]
            options += [f"-c {key}={value}" for key, value in THROWAWAY_SETTINGS.items()]
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                          "-t", str(START_TIMEOUT), "-o", " ".join(options), "start")
                return
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log()}") from None

    def __exit__(self, *exc) -> None:
        try:
            # immediate: the data is thrown away, no checkpoint needed.
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        user = self._user
        return subprocess.run([str(self.bindir / tool), *args], check=True, capture_output=True, text=True,
                              cwd=self.root, user=user.pw_uid if user else None,
                              group=user.pw_gid if user else None, extra_groups=[] if user else None,
                              env={**os.environ, "LC_ALL": "C"})

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else "(no server log)"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL. Much faster than a server per test (about 20 ms)."""
        import psycopg
        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
