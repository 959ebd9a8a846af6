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
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)  # never returns: SystemExit ends the child as any Python ends
        print(f"pid {pid}", flush=True)
        _, status, usage = os.wait4(pid, 0)
        cpu = usage.ru_utime + usage.ru_stime  # the run's and its jobs' CPU seconds
        print(f"exit {os.waitstatus_to_exitcode(status)} {cpu:.3f}", flush=True)


# --- the client (a test worker's end) ---------------------------------------------


class Preloaded:
    """One server per test worker; runs one ``snakemake`` at a time through it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.scratch = Path(tempfile.mkdtemp(prefix="lr-preloaded-"))
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._buffer = b""
        ready = self._line(timeout=120)
        if ready != "ready":
            raise RuntimeError(f"preloaded snakemake did not start: {ready!r}")
        self.count = 0
        self.cpu = 0.0  # CPU seconds of the runs so far, for measuring the suite

    def fits(self, env: dict[str, str]) -> bool:
        """A run whose interpreter would start the same way (same module search path)."""
        return env.get("PYTHONPATH") == self.env.get("PYTHONPATH")

    def _line(self, timeout: float) -> str | None:
        """The server's next line, or None after ``timeout`` seconds (raw reads, no
        buffer that could hide a line from ``select``)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError("preloaded snakemake exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def run(
        self, args: list[str], cwd: Path, env: dict[str, str], timeout: float
    ) -> tuple[int, str] | None:
        """``(returncode, output)``, or None when busy (the caller starts a process)."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            self.count += 1
            output = self.scratch / f"run-{self.count}.out"
            request = {"cwd": str(cwd), "env": env, "args": args, "output": str(output)}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            pid = int(self._line(timeout=60).split()[1])
            done = self._line(timeout)
            if done is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._line(timeout=60)
                text = output.read_text(errors="replace")
                raise subprocess.TimeoutExpired(["snakemake", *args], timeout, text)
            text = output.read_text(errors="replace")
            output.unlink()
            _, returncode, cpu = done.split()
            self.cpu += float(cpu)
            return int(returncode), text
        finally:
            self.lock.release()


if __name__ == "__main__":
    for name in PRELOAD:
        __import__(name)
    print("ready", flush=True)
    _serve()
