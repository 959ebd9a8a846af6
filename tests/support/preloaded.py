"""A Python with Snakemake already imported, forking one fresh process per run.

Most of a ``snakemake`` run's CPU time on these machines is spent before the
workflow is read: importing Snakemake, its plugins (boto3 for S3), its report
machinery and, at the first script job, pandas. The suite makes some two
hundred runs, so that start-up alone was over a third of ``make test``
(docs/design.md, "The test suite", has the figures).

This server pays it once per test worker, the way ``multiprocessing``'s
forkserver with ``set_forkserver_preload`` does: it imports those modules and
nothing else (not this project's code, which every run loads afresh), then
for each run forks a child that takes the run's working folder, environment,
time zone and standard streams, puts itself in its own session (so a test can
kill the run and its jobs as one group), and runs
``runpy.run_module("snakemake")``, which is what ``python -m snakemake`` does.
The child exits through Python's normal shutdown with Snakemake's exit status.
Everything after the imports is the real run: the real Snakemake on a real
copy of the workflow, its jobs real processes, its files real files.

Runs that need another interpreter set-up (another ``PYTHONPATH``, a command
prefix such as ``faketime``) or that run in the background are started as
plain processes by ``tests/support/workflow.py``, and so are all runs when
``LEAD_RECOVERY_TEST_EXEC=1`` is set (to check that the two agree). The CLI,
cron, cluster and concurrency tests always start ``snakemake`` as users do.

Protocol: one JSON request per line on stdin (``cwd``, ``env``, ``args``,
``output``); the reply is a ``pid N`` line once the child is forked, then an
``exit N CPU`` line when it has finished (``N`` negative: killed by signal
``-N``; ``CPU``: the CPU seconds the run and its jobs used).
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# What a run imports before it reads the Snakefile (found with `python -X
# importtime`), and pandas, which Snakemake's script runner imports in the main
# process at the first script job, only to check the types of a rule's params.
PRELOAD = (
    "snakemake.cli",
    "snakemake.api",
    "snakemake.profiles",
    "snakemake.storage",
    "snakemake.report",
    "snakemake.report.html_reporter",
    "snakemake.script",
    "snakemake_storage_plugin_s3",
    "nbformat",
    "smart_open",
    "pulp",
    "pandas",
    "argparse_dataclass",
    "difflib",
    "dotenv",
    "graphlib",
    "jinja2",
    "platformdirs",
)


# --- the server -----------------------------------------------------------------


def _child(request: dict) -> None:
    """Become the run: session, folder, environment, streams, then ``python -m snakemake``."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.path[0] = os.getcwd()  # `python -m` puts the working folder first
    sys.argv = ["-m", *request["args"]]
    runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
    sys.exit(0)


def _serve() -> None:
    """Fork a child per request line; report its pid, and its exit when reaped.

    Single-threaded (a fork from a threaded process may inherit a held lock): it
    waits on stdin for at most a tenth of a second, then reaps what has ended.
    Several runs may be under way at once (a test starting runs side by side).
    """
    stdin, running = sys.stdin.fileno(), set()
    pending = b""
    while True:
        ready = select.select([stdin], [], [], 0.1)[0]
        if ready:
            chunk = os.read(stdin, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)  # never returns: SystemExit ends the child
                running.add(pid)
                os.write(1, f"pid {request['id']} {pid}\n".encode())
        for pid in list(running):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                cpu = usage.ru_utime + usage.ru_stime  # the run's and its jobs' CPU seconds
                code = os.waitstatus_to_exitcode(status)
                os.write(1, f"exit {pid} {code} {cpu:.3f}\n".encode())


# --- the client (a test worker's end) ---------------------------------------------


class Started:
    """A run under way through the server: what a test needs of a ``subprocess.Popen``
    (``pid``, ``poll``, ``wait``, ``returncode``; the run is its own process group)."""

    def __init__(self, server: Preloaded, pid: int, output: Path) -> None:
        self.server, self.pid, self.output = server, pid, output
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_of(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.exit_of(self.pid, timeout=timeout)
            if code is None:
                raise subprocess.TimeoutExpired(["snakemake"], timeout or 0)
            self.returncode = code
        return self.returncode


class Preloaded:
    """One server per test worker; runs ``snakemake`` through it, several at once."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.scratch = Path(tempfile.mkdtemp(prefix="lr-preloaded-"))
        self.lock = threading.Lock()  # one writer of requests, one reader of replies
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._buffer = b""
        ready = self._line(timeout=120)
        if ready != "ready":
            raise RuntimeError(f"preloaded snakemake did not start: {ready!r}")
        self.count = 0
        self.cpu = 0.0  # CPU seconds of the runs so far, for measuring the suite
        self._pids: dict[int, int] = {}  # request id -> pid
        self._exits: dict[int, int] = {}  # pid -> exit code

    def fits(self, env: dict[str, str]) -> bool:
        """A run whose interpreter would start the same way (same module search path)."""
        return env.get("PYTHONPATH") == self.env.get("PYTHONPATH")

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line, or None after ``timeout`` seconds (raw reads, no
        buffer that could hide a line from ``select``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("preloaded snakemake exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _take(self, line: str) -> None:
        kind, *rest = line.split()
        if kind == "pid":
            self._pids[int(rest[0])] = int(rest[1])
        elif kind == "exit":
            self._exits[int(rest[0])] = int(rest[1])
            self.cpu += float(rest[2])

    def _until(self, done, timeout: float | None) -> bool:
        """Read replies until ``done()`` or ``timeout``; whether ``done()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self.lock:
                if done():
                    break
                line = self._line(timeout=left)
            if line is None:
                return done()
            self._take(line)
        return True

    def start(self, args: list[str], cwd: Path, env: dict[str, str], output: Path) -> Started:
        """Start ``snakemake args`` in ``cwd``; its output (stdout and stderr) goes to
        ``output``. Returns at once."""
        with self.lock:
            self.count += 1
            request_id = self.count
            request = {
                "id": request_id, "cwd": str(cwd), "env": env, "args": args, "output": str(output)
            }  # fmt: skip
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        if not self._until(lambda: request_id in self._pids, timeout=60):
            raise RuntimeError("preloaded snakemake did not fork the run")
        return Started(self, self._pids.pop(request_id), output)

    def exit_of(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit code once it ended (``None`` if not within ``timeout``)."""
        if self._until(lambda: pid in self._exits, timeout):
            return self._exits[pid]
        return None

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> tuple[int, str]:
        """``(returncode, output)`` of a run to its end."""
        output = self.scratch / f"run-{self.count + 1}-{threading.get_ident()}.out"
        started = self.start(args, cwd, env, output)
        try:
            code = started.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.pid, signal.SIGKILL)
            started.wait(60)
            text = output.read_text(errors="replace")
            raise subprocess.TimeoutExpired(["snakemake", *args], timeout, text) from None
        text = output.read_text(errors="replace")
        output.unlink()
        return code, text


if __name__ == "__main__":
    for name in PRELOAD:
        __import__(name)
    print("ready", flush=True)
    _serve()
