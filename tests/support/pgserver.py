"""A throw-away PostgreSQL server started from the system binaries.

Never a service that happens to be running: :class:`PostgresServer` runs
``initdb`` into a fresh temporary folder, starts ``postgres`` on a free port
of 127.0.0.1 (plus a private Unix socket), and removes everything on
``stop()``. PostgreSQL refuses to run as root, so as root (CI containers)
the server runs as the ``postgres`` system user when it exists, else
``nobody``; the temporary folder is handed to that user.

* TCP connections need a real password (md5, as Redshift uses) for the test
  role, so wrong-password tests are real. Not SCRAM: redshift_connector 2.2.0
  misparses PostgreSQL's SASL mechanism list (it keeps an empty name that
  scramp rejects); the admin role connects over the private
  Unix socket (``trust``) through :meth:`psql`.
* ``log_statement = all`` and ``log_connections = on``, with the pid, role and
  ``application_name`` in every line: tests count what the server actually
  received with :meth:`statements` / :meth:`entries` after a :meth:`mark`.

Standard library only (used by the tests and by ``bench/``).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    from tests.support.redshift_limits import SETUP_SQL
except ImportError:  # run as a script from tests/support
    from redshift_limits import SETUP_SQL

ADMIN = "lr_admin"
_ENTRY_RE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+) \[(?P<pid>\d+)\] "
    r"(?P<user>[^@ ]*)@(?P<db>[^ ]*) app=\[(?P<app>.*?)\] "
    r"(?P<level>[A-Z]+):  (?P<message>.*)$"
)
_STATEMENT_RE = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$", re.DOTALL)


def find_bindir() -> Path:
    """The folder holding initdb/pg_ctl/postgres: newest under /usr/lib/postgresql, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; "
        "run `make test` (it installs Debian's postgresql package) or install them"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LogEntry:
    pid: int
    user: str
    database: str
    app: str
    level: str
    message: str

    @property
    def sql(self) -> str | None:
        """The statement this entry logs as executed (log_statement), else None."""
        if self.level != "LOG":
            return None
        match = _STATEMENT_RE.match(self.message)
        return match.group("sql") if match else None

    @property
    def failed_sql(self) -> str | None:
        """The statement an ERROR was about (the STATEMENT line that follows it)."""
        return self.message if self.level == "STATEMENT" else None


class PostgresServer:
    """One private PostgreSQL cluster; use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        user: str = "lr_test",
        password: str | None = None,
        database: str = "leads",
        timezone: str = "America/New_York",
        extra_conf: dict[str, str] | None = None,
    ) -> None:
        self.bindir = find_bindir()
        self.user = user
        self.password = password or f"pw-{secrets.token_hex(8)}"
        self.database = database
        self.timezone = timezone
        self.extra_conf = extra_conf or {}
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.base: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._started = False

    # -- paths ---------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base / "sock"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    # -- running as a non-root user ---------------------------------------------
    def _choose_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")

    def _run(self, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a server binary as the server's user."""
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            cmd, env=env, cwd=self.base, capture_output=True, text=True, check=False, **kwargs
        )

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> PostgresServer:
        self._run_as = self._choose_user()
        self.base = Path(tempfile.mkdtemp(prefix="lr-pg-"))
        self.sockdir.mkdir()
        if self._run_as is not None:
            for path in (self.base, self.sockdir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        atexit.register(self.stop)
        init = self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                ADMIN,
                "--auth-local=trust",
                "--auth-host=md5",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            self._write_conf()
            started = self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
            if started.returncode == 0:
                self._started = True
                break
            last_error = self.log_path.read_text() if self.log_path.exists() else started.stderr
            if "could not bind" not in last_error and "in use" not in last_error:
                break
        if not self._started:
            raise RuntimeError(f"PostgreSQL did not start: {last_error.strip()[-2000:]}")
        quoted = self.password.replace("'", "''")
        # log_statement off for this one statement: the password stays out of the log
        self.psql(
            f"SET log_statement = 'none'; CREATE ROLE {self.user} LOGIN PASSWORD '{quoted}'",
            database="postgres",
        )
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}", database="postgres")
        # the function the shim's Redshift-limit emulations raise their errors with
        self.psql(SETUP_SQL)
        return self

    def _write_conf(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockdir}'",
            "max_connections": "50",
            "shared_buffers": "128MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            "log_statement": "'all'",
            "log_connections": "on",
            "log_line_prefix": "'%m [%p] %u@%d app=[%a] '",
            "log_timezone": "'UTC'",
            "timezone": f"'{self.timezone}'",
            "lc_messages": "'C'",
            "password_encryption": "'md5'",
        }
        settings.update(self.extra_conf)
        conf = self.data / "postgresql.auto.conf"
        lines = ["# written by tests/support/pgserver.py"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        conf.write_text("\n".join(lines) + "\n")
        if self._run_as is not None:
            os.chown(conf, self._run_as.pw_uid, self._run_as.pw_gid)

    def stop(self) -> None:
        if self.base is None:
            return
        if self._started:
            stopped = self._run(
                [self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
            )
            if stopped.returncode != 0:
                self._kill_postmaster()
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _kill_postmaster(self) -> None:
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- using it ------------------------------------------------------------
    def psql(self, sql: str, *, database: str | None = None, check: bool = True) -> str:
        """Run SQL as the admin role over the private socket; returns unaligned output."""
        cmd = [
            self._bin("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.sockdir),
            "-p",
            str(self.port),
            "-U",
            ADMIN,
            "-d",
            database or self.database,
        ]
        proc = subprocess.run(
            cmd, input=sql, capture_output=True, text=True, env={**os.environ, "PGTZ": "UTC"}
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    @property
    def psql_bin(self) -> str:
        return self._bin("psql")

    @property
    def admin_conninfo(self) -> str:
        """libpq connection string for the admin role over the private socket (trust)."""
        return f"host={self.sockdir} port={self.port} user={ADMIN} dbname={self.database}"

    def env(self, port: int | None = None, **extra: str) -> dict[str, str]:
        """REDSHIFT_* settings pointing at this server (or at ``port``, e.g. the shim)."""
        values = {
            "REDSHIFT_HOST": self.host,
            "REDSHIFT_PORT": str(port or self.port),
            "REDSHIFT_DATABASE": self.database,
            "REDSHIFT_USER": self.user,
            "REDSHIFT_PASSWORD": self.password,
            "REDSHIFT_SSL": "false",
        }
        values.update(extra)
        return values

    def terminate_backends(self, application_name_like: str) -> int:
        """pg_terminate_backend every session whose application_name matches (SQL LIKE)."""
        pattern = application_name_like.replace("'", "''")
        out = self.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE application_name LIKE '{pattern}' AND pid <> pg_backend_pid()"
        )
        return int(out.strip() or 0)

    # -- what the server received ---------------------------------------------
    def mark(self) -> int:
        """A position in the server log; pass it to entries()/statements()."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def entries(self, since: int = 0) -> list[LogEntry]:
        """Log entries written after ``since``, up to now.

        Waits for the log to hold everything the server did before this call,
        not for a guessed time: it runs a unique statement and reads until that
        statement is in the log (the server logs statements in order).
        """
        barrier = f"lr_log_barrier_{secrets.token_hex(8)}"
        self.psql(f"SELECT '{barrier}'")
        deadline = time.monotonic() + 30
        while True:
            with open(self.log_path, "rb") as handle:
                handle.seek(since)
                text = handle.read().decode("utf-8", "replace")
            if barrier in text or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if barrier in text:  # up to the line that logs the barrier
            text = text[: text.rfind("\n", 0, text.find(barrier)) + 1]
        found: list[LogEntry] = []
        for line in text.splitlines():
            match = _ENTRY_RE.match(line)
            if match:
                found.append(
                    LogEntry(
                        int(match["pid"]),
                        match["user"],
                        match["db"],
                        match["app"],
                        match["level"],
                        match["message"],
                    )
                )
            elif found and line.startswith("\t"):
                found[-1].message += "\n" + line[1:]
        return found

    def statements(
        self, since: int = 0, *, containing: str | None = None, failed: bool = False
    ) -> list[str]:
        """SQL the server executed (log_statement), optionally only those containing a text.

        With ``failed`` the statements an error was reported for are included
        too (a statement that fails to parse is never logged as executed; one
        that fails while running is logged twice).
        """
        found = []
        for entry in self.entries(since):
            sql = entry.sql if entry.sql is not None else (entry.failed_sql if failed else None)
            if sql is not None and (containing is None or containing in sql):
                found.append(sql)
        return found


def main(argv: list[str] | None = None) -> int:
    """Run a throw-away server (and the shim) for developing a recipe; Ctrl-C stops it."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        description="A throw-away PostgreSQL behind the Redshift handshake shim, for recipe work."
    )
    parser.add_argument(
        "--load",
        metavar="SQL_FILE",
        action="append",
        default=[],
        help="SQL run as admin in the database after start (repeatable)",
    )
    parser.add_argument("--no-shim", action="store_true", help="do not start the shim")
    parser.add_argument(
        "--redshift-strings",
        action="store_true",
        help="a backslash escapes in '...' literals, as on Redshift "
        "(standard_conforming_strings off)",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from redshift_limits import Limits
    from redshift_shim import ShimProcess

    with PostgresServer() as server:
        for path in args.load:
            server.psql(Path(path).read_text())
            server.psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {server.user}")
        limits = Limits(redshift_strings=True) if args.redshift_strings else None
        shim = None if args.no_shim else ShimProcess(server.port, limits=limits)
        try:
            port = shim.port if shim else server.port
            print(f"# PostgreSQL {server.bindir.parent.name} in {server.base}", flush=True)
            for key, value in server.env(port).items():
                print(f"export {key}={value}", flush=True)
            print(
                f"# admin: psql -h {server.sockdir} -p {server.port} -U {ADMIN} "
                f"-d {server.database}",
                flush=True,
            )
            print("# Ctrl-C stops the server and deletes it", flush=True)
            stop_signals = {signal.SIGINT, signal.SIGTERM}
            # blocked only now, so the server and the shim started above keep their handlers
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
            signal.sigwait(stop_signals)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        finally:
            if shim:
                shim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
