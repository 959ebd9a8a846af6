"""``lead-recovery cron``: the unattended daily run (``make cron``, ``workflow/scripts/cron.py``).

Only what neither Snakemake nor cron does: make cron's empty environment
usable (venv ``bin`` first on ``PATH``, ``HOME``, ``LANG``, the ``.env``
settings the environment lacks); decide the run date once and run
``snakemake --workflow-profile profiles/cron --config date=...`` with its
output in one log per day (``cron.log_dir``, ``cron.keep_logs_days``); wait
(``cron.wait``) for another cron run or a Snakemake working in this folder,
and ``snakemake --unlock`` a lock no live process holds (a killed run); end
with the workflow's own account per recipe and day, plus the rows of the
marker and ``summary.json``. Exit 0 only when every recipe-day succeeded.

``cron.wait`` / ``--wait`` is a duration of the one grammar
(:func:`lead_recovery.freshness.parse_duration`: ``90s``, ``30m``, ``2h``,
``1d``) or ``0``: do not wait. A bare number of seconds is not accepted.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click
import psutil
import yaml
from filelock import FileLock, Timeout

from lead_recovery import atomic, cache, freshness, jobs, layout, markers, rundate
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.cli.common import CONTEXT, UsageError, find_repo, invoke, table
from lead_recovery.errors import LeadRecoveryError

PROG = "lead-recovery cron"
PROFILE = "profiles/cron"
EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, 75  # 75 = EX_TEMPFAIL: busy for longer than `wait`
DEFAULTS = {"log_dir": "logs/cron", "keep_logs_days": 30, "wait": "30m"}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
STALE_TEMP_S = 6 * 3600  # a temporary file untouched this long is no one's work in progress
TAG = "cron["
_LOG_NAME_RE = re.compile(r"^(\d{8})\.log$")
_ACCOUNT_RE = re.compile(
    r"^(?P<recipe>\S+) (?P<date>\d{8}) "
    r"(?:(?P<status>queried|cached|skipped) \((?P<detail>.*)\)|failed: (?P<cause>.*))$"
)


def parse_wait(value: object) -> float:
    """``0`` (do not wait) or a duration such as ``30m``, as seconds."""
    if str(value).strip() == "0":
        return 0.0
    return freshness.parse_duration(value, "wait").total_seconds()


# --------------------------------------------------------------------------- environment


def prepare_environment(repo: Path, environ: dict[str, str]) -> list[str]:
    """Make ``environ`` fit for an unattended run; returns what was filled in.

    Nothing already set is changed, except that the venv's ``bin`` (this
    Python's folder) goes first on ``PATH``: Snakemake's jobs find ``python`` there.
    """
    filled = [name for name in ("PATH", "HOME") if not environ.get(name)]
    path = environ.get("PATH") or DEFAULT_PATH
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    if venv_bin not in path.split(os.pathsep):
        path = f"{venv_bin}{os.pathsep}{path}"
    environ["PATH"] = path
    if not environ.get("HOME"):
        environ["HOME"] = _home(repo)
    if not (environ.get("LANG") or environ.get("LC_ALL")):
        environ["LANG"] = "C.UTF-8"
        filled.append("LANG")
    environ.setdefault("PYTHONIOENCODING", "utf-8")
    return filled


def _home(repo: Path) -> str:
    """The user's home from the password database, else a folder in the repository."""
    with contextlib.suppress(KeyError, OSError):
        home = pwd.getpwuid(os.getuid()).pw_dir
        if home and os.path.isdir(home) and os.access(home, os.W_OK):
            return home
    fallback = repo / ".snakemake" / "cron-home"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


def load_env_file(path: Path, environ: dict[str, str]) -> list[str]:
    """Add the ``.env`` settings ``environ`` lacks (it always wins); returns their names."""
    added = [k for k in lr_config.env_file_values(path) if k not in environ]
    environ.update({k: v for k, v in lr_config.env_file_values(path).items() if k in added})
    return added


# --------------------------------------------------------------------------- the day's log


class DailyLog:
    """``<log_dir>/YYYYMMDD.log``, appended to; echoed to the terminal if asked."""

    def __init__(self, path: Path, echo: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.echo, self.notes = path, echo, []
        self._file: TextIO = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115

    def note(self, message: str) -> None:
        """Lines of the wrapper's own, timestamped and tagged ``cron[pid]``."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        for text in message.splitlines() or [""]:
            line = f"{stamp} {TAG}{os.getpid()}] {text}"
            self.notes.append(line)
            self._file.write(line + "\n")
            self._file.flush()
            if self.echo:
                print(line, flush=True)

    def close(self) -> None:
        self._file.close()


def prune_logs(log_dir: Path, today: str, keep_days: int) -> list[str]:
    """Delete ``YYYYMMDD.log`` files dated more than ``keep_days`` days before today."""
    oldest = (rundate.to_date(today) - timedelta(days=keep_days)).strftime("%Y%m%d")
    doomed = [p for p in sorted(log_dir.glob("*.log")) if _LOG_NAME_RE.match(p.name)]
    doomed = [p for p in doomed if p.name[:8] < oldest and p.is_file()]
    for path in doomed:
        path.unlink(missing_ok=True)
    return [p.name for p in doomed]


def report(log_path: Path, as_json: bool) -> str:
    """The wrapper's lines of a day's log, or (``as_json``) its runs' results."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    ours = [line for line in lines if f" {TAG}" in line]
    results = [json.loads(line.split("] result ", 1)[1]) for line in ours if "] result " in line]
    if as_json:
        return json.dumps(results, indent=2)
    return "\n".join(line for line in ours if "] result " not in line) or "no cron run that day"


# --------------------------------------------------------------------------- who else runs here


def is_snakemake(argv: list[str]) -> bool:
    """A Snakemake main process, or a job it started (``.snakemake/scripts/...``)."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == "snakemake" or (
            arg == "-m" and argv[i + 1 : i + 2] == ["snakemake"]
        ):
            return True
    return any("/.snakemake/scripts/" in a or a.startswith(".snakemake/scripts/") for a in argv)


def snakemake_processes(repo: Path) -> list[psutil.Process]:
    """The Snakemake processes (and their jobs) working in ``repo`` that we can see."""
    found, here = [], str(repo.resolve())
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        if (
            proc.pid != os.getpid()
            and proc.info["cwd"] == here
            and is_snakemake(proc.info["cmdline"] or [])
        ):
            found.append(proc)
    return found


def snakemake_locks(repo: Path) -> list[Path]:
    return sorted((repo / ".snakemake" / "locks").glob("*.lock"))


def _foreign(locks: list[Path]) -> bool:
    """Whether a lock belongs to another user, whose processes we may not see."""
    owners = set()
    for path in locks:
        with contextlib.suppress(OSError):
            owners.add(path.stat().st_uid)
    return os.getuid() != 0 and bool(owners - {os.getuid()})


# --------------------------------------------------------------------------- running Snakemake


class Interrupted(Exception):
    """A signal arrived while no Snakemake was running (e.g. while waiting)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    """Linux: Snakemake gets SIGTERM (finish running jobs, start no new ones) if we die."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Runner:
    """Runs Snakemake with its output going straight into the day's log."""

    def __init__(self, log: DailyLog) -> None:
        self.log, self.child, self.signalled = log, None, None

    def handle(self, signum: int, _frame: object) -> None:
        self.signalled = signum
        if self.child is None or self.child.poll() is not None:
            raise Interrupted(signum)
        if signum != signal.SIGINT:  # a terminal's Ctrl-C reaches Snakemake directly
            with contextlib.suppress(OSError):
                self.child.send_signal(signal.SIGTERM)  # finish running jobs, then stop

    def run(self, *args: str, config: list[str]) -> tuple[int, list[str]]:
        """``snakemake ARGS --config CONFIG``: its exit code and the lines it printed.

        Written to the log file, not through a pipe, so Snakemake and its jobs
        keep logging even if this process is killed.
        """
        argv = [sys.executable, "-m", "snakemake", "--workflow-profile", PROFILE, *args]
        self.log.note("running: " + " ".join(["snakemake", *argv[3:], "--config", *config]))
        offset = self.log.path.stat().st_size
        with open(self.log.path, "ab") as out:
            self.child = subprocess.Popen(
                [*argv, "--config", *config],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        with open(self.log.path, "rb") as reader:
            reader.seek(offset)
            while True:
                code = self.child.poll()
                chunk = reader.read()
                if chunk and self.log.echo:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                if code is not None:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.child.wait(0.2)
            reader.seek(offset)
            printed = reader.read().decode(errors="replace").splitlines()
        self.child = None
        return code, printed


def account(printed: list[str], run_id: str) -> list[dict[str, Any]] | None:
    """The workflow's end-of-run account of run ``run_id`` (``None`` if it printed none)."""
    header = f"what this run did (run id {run_id}):"
    starts = [i for i, line in enumerate(printed) if line.endswith(header)]
    if not starts:
        return None
    found = []
    for line in printed[starts[-1] + 1 :]:
        if line.startswith("total:"):
            break
        if match := _ACCOUNT_RE.match(line):
            found.append(match.groupdict())
    return [
        {
            "recipe": m["recipe"],
            "date": m["date"],
            "status": m["status"] or "failed",
            "detail": m["detail"] if m["status"] else m["cause"],
        }
        for m in found
    ]


def add_figures(line: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """Rows read (marker, else summary.json) and rows out (summary.json) of a recipe-day."""
    summary: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads(
            Path(layout.summary_path(cfg["results_dir"], line["recipe"], line["date"])).read_text()
        )
    marker = markers.marker_path(cfg["marker_dir"], line["recipe"], line["date"])
    rows = markers.read_marker(marker).rows if os.path.isfile(marker) else None
    ok = line["status"] != "failed"
    return {
        **line,
        "rows": rows if rows is not None or not ok else summary.get("rows_in"),
        "rows_out": summary.get("rows_out") if ok else None,
    }


def clean_temporaries(cfg: dict[str, Any], names: list[str], dates: list[str]) -> int:
    """Remove what killed writers left (:data:`atomic.TEMP_GLOB`), never work in progress.

    A day's extract temporaries (``leads.parquet`` and marker) go when we can
    take the day's query lock, which every writer holds and which is shared by
    every checkout sharing the marker folder; any other temporary file only
    when untouched for :data:`STALE_TEMP_S`.
    """
    removed, now = 0, time.time()
    for name in names:
        for day in dates:
            marker = Path(markers.marker_path(cfg["marker_dir"], name, day))
            folder = Path(layout.day_dir(cfg["results_dir"], name, day))
            extract = [
                *folder.glob(f".leads.parquet.*{atomic.TEMP_SUFFIX}"),
                *marker.parent.glob(f".{marker.name}.*{atomic.TEMP_SUFFIX}"),
            ]
            if extract:
                with contextlib.suppress(Timeout), cache.day_lock(marker, timeout=0):
                    for path in extract:
                        path.unlink(missing_ok=True)
                        removed += 1
            for path in folder.glob(atomic.TEMP_GLOB):
                with contextlib.suppress(OSError):
                    if now - path.lstat().st_mtime > STALE_TEMP_S:
                        path.unlink()
                        removed += 1
    return removed


# --------------------------------------------------------------------------- one run


class Busy(Exception):
    """Another run kept the folder busy for longer than ``wait``: exit 75, nothing run."""


class Run:
    """One invocation: the plan decided up front, then wait, run and account."""

    def __init__(self, repo: Path, cfg: dict[str, Any], log: DailyLog, **plan: Any) -> None:
        self.repo, self.cfg, self.log, self.plan = repo, cfg, log, plan
        self.names, self.broken, self.dates = plan["names"], plan["broken"], plan["dates"]
        self.run_id, self.runner = uuid.uuid4().hex, Runner(log)
        self.deadline = time.monotonic() + plan["wait_s"]
        self.waited = _fmt(plan["wait_s"])

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def locked(self, body: Callable[[], int]) -> int:
        """Run ``body`` holding the cron lock, waiting for another cron run first."""
        owner_file, lock = (
            self.log.path.parent / ".lock.owner",
            FileLock(self.log.path.parent / ".lock"),
        )
        try:
            lock.acquire(timeout=0)
        except Timeout:
            owner = _read_json(owner_file)
            who = f"pid {owner.get('pid')}, started {owner.get('started')}" if owner else "unknown"
            self.log.note(f"another cron run is in progress ({who}); waiting up to {self.waited}")
            try:
                lock.acquire(timeout=self.left())
            except Timeout:
                raise Busy(f"the other cron run ({who}) still runs after {self.waited}") from None
            self.log.note("the other cron run finished; going on")
        try:
            now = datetime.now().astimezone().isoformat(timespec="seconds")
            owner_file.write_text(
                json.dumps({"pid": os.getpid(), "run_id": self.run_id, "started": now})
            )
            return body()
        finally:
            owner_file.unlink(missing_ok=True)
            lock.release()

    def wait_for_snakemake(self) -> None:
        """Wait until no Snakemake works in this folder; unlock what a killed run left."""
        told = False
        while True:
            procs, locks = snakemake_processes(self.repo), snakemake_locks(self.repo)
            if not procs and not locks:
                return
            if not procs and not _foreign(locks):
                self.log.note(
                    "Snakemake lock left by a killed run (no snakemake process in this "
                    "folder): removing it with `snakemake --unlock`"
                )
                code, printed = self.runner.run("--unlock", config=self.plan["config"])
                if code != 0:
                    raise Busy(f"`snakemake --unlock` failed (exit {code}): {_last_error(printed)}")
                return
            if not told:
                who = (
                    ", ".join(f"pid {p.pid}" for p in procs[:3])
                    or f"another user's: {locks[0].name}"
                )
                self.log.note(
                    f"Snakemake is already running in this folder ({who}); "
                    f"waiting up to {self.waited}"
                )
                told = True
            if not self.left():
                raise Busy(f"Snakemake still runs in this folder after {self.waited}")
            if procs:  # wait on the processes themselves; another user's lock: poll it
                psutil.wait_procs(procs, timeout=min(self.left(), 5.0))
            else:
                time.sleep(min(self.left(), 1.0))

    def execute(self) -> tuple[int, list[dict[str, Any]] | None, list[str]]:
        """Run Snakemake once nothing else works here: its exit code, account and output."""
        for name, why in self.broken.items():
            self.log.note(f"recipe {name} cannot run: {why}")
        while self.names:
            self.wait_for_snakemake()
            if removed := clean_temporaries(self.cfg, self.names, self.dates):
                self.log.note(f"removed {removed} temporary file(s) left by a killed run")
            code, printed = self.runner.run(config=self.plan["config"])
            if (
                code
                and not self.runner.signalled
                and snakemake_processes(self.repo)
                and snakemake_locks(self.repo)
            ):
                # Snakemake failed while another one holds the folder: it took the lock
                # between our check and our start. Wait for it, then run again.
                self.log.note("another Snakemake took this folder meanwhile; waiting for it")
                continue
            return code, account(printed, self.run_id), printed
        return 0, [], []

    def summarize(
        self, code: int, lines: list[dict[str, Any]] | None, printed: list[str], started: float
    ) -> dict[str, Any]:
        """Log the summary table and the result line; the result (with its exit code)."""
        lines = [add_figures(line, self.cfg) for line in lines or []]
        lines += [
            {
                "recipe": n,
                "date": d,
                "status": "failed",
                "detail": why,
                "rows": None,
                "rows_out": None,
            }
            for n, why in self.broken.items()
            for d in self.dates
        ]
        counts = Counter(line["status"] for line in lines)
        tally = ", ".join(
            f"{counts[s]} {s}" for s in ("queried", "cached", "skipped", "failed") if counts[s]
        )
        first = len(self.log.notes)
        self.log.note(
            f"summary of run {self.run_id[:8]} ({len(lines)} recipe-day(s): {tally or 'none'}; "
            f"{time.time() - started:.1f}s):"
        )
        cells = [[ln[k] if ln[k] is not None else "-" for k in _COLUMNS] for ln in lines]
        self.log.note(textwrap.indent(table(cells, [c.upper() for c in _COLUMNS]), "  "))
        exit_code = EXIT_OK
        if self.runner.signalled:
            self.log.note(f"interrupted by signal {signal.Signals(self.runner.signalled).name}")
            exit_code = 128 + self.runner.signalled
        elif counts["failed"] or code:
            exit_code = EXIT_FAILED
            if code and not counts["failed"]:
                self.log.note(f"snakemake exited with {code}: {_last_error(printed)}")
        result = {"run_id": self.run_id, "pid": os.getpid(), "exit": exit_code, "lines": lines}
        self.log.note(f"result {json.dumps(result)}")
        self.log.note(f"exit {exit_code}")
        if exit_code and not self.log.echo:  # cron mails what a failed run printed
            shown = [n for n in self.log.notes[first:] if "] result " not in n]
            sys.stderr.write("\n".join(shown) + f"\nLog: {self.log.path}\n")
        return result


_COLUMNS = ("recipe", "date", "status", "rows", "rows_out", "detail")


def _fmt(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    return {}


def _last_error(printed: list[str]) -> str:
    for line in reversed(printed):
        if "lead-recovery: error:" in line:
            return line.split("lead-recovery: error:", 1)[1].strip()
    errors = [line.strip() for line in printed if "rror" in line]
    return (errors or [line.strip() for line in printed] or ["no output"])[-1]


def _config_items(items: tuple[str, ...]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--config '{item}' is not KEY=VALUE")
        if key in ("date", "since", "recipe", "recipes"):
            raise UsageError(f"give {key} as an option of cron, not as --config")
        try:
            overrides[key] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            overrides[key] = value
    return overrides


def _report_day(value: str, today: str) -> str:
    if value in ("today", "yesterday"):
        return (rundate.to_date(today) - timedelta(days=value == "yesterday")).strftime("%Y%m%d")
    return rundate.parse_date(value)


def run_cron(repo: Path, opts: dict[str, Any]) -> int:
    """The whole invocation; its exit code."""
    repo = repo.resolve()
    os.chdir(repo)
    filled = prepare_environment(repo, os.environ)  # type: ignore[arg-type]
    cfg = lr_config.load(repo, _config_items(opts["config"]))
    settings = {**DEFAULTS, **(cfg.get("cron") or {})}
    today = rundate.now(rundate.zone(cfg.get("timezone"))).strftime("%Y%m%d")
    log_dir = repo / settings["log_dir"]
    if opts["report"] is not None:
        print(report(log_dir / f"{_report_day(opts['report'], today)}.log", opts["json"]))
        return EXIT_OK
    day = rundate.resolve(opts["date"], cfg.get("timezone"), cfg.get("day_starts_at", "00:00")).date
    since = rundate.parse_date(opts["since"]) if opts["since"] else None
    names = [lr_recipes.validate_name(n) for n in dict.fromkeys(opts["recipes"])]
    known = lr_recipes.discover(cfg["recipes_dir"])
    broken = {}  # named recipes Snakemake would stop at (it skips those of an all-recipe run)
    for name in names:
        try:
            lr_recipes.load(cfg["recipes_dir"], name)
        except LeadRecoveryError as err:
            if name not in known:
                raise  # "unknown recipe ... known: ...": bad input
            broken[name] = str(err)
    good = [n for n in names if n not in broken]
    config = [f"date={day}", *([f"since={since}"] if since else [])]
    config += [f"recipes=[{','.join(good)}]"] if names else []
    plan = {
        "names": good if names else known,
        "broken": broken,
        "dates": rundate.date_range(since, day) if since else [day],
        "config": config + list(opts["config"]),
        "wait_s": parse_wait(opts["wait"] if opts["wait"] is not None else settings["wait"]),
    }
    keep_days = int(opts["keep_logs_days"] or settings["keep_logs_days"])

    log = DailyLog(log_dir / f"{today}.log", echo=opts["verbose"] or sys.stdout.isatty())
    run = Run(repo, cfg, log, **plan)
    os.environ[jobs.RUN_ID_ENV] = run.run_id  # the workflow's account names this run
    span = "..".join(dict.fromkeys([run.dates[0], run.dates[-1]]))
    log.note(
        f"run {run.run_id[:8]} started: {len(good if names else known) + len(broken)} recipe(s) "
        f"for {span}, warehouse {cfg['warehouse']}, by {jobs.user_at_host()} in {repo}"
    )
    if filled:
        log.note(f"environment: set {', '.join(filled)} (not given)")
    env_file = repo / ((cfg.get("redshift") or {}).get("env_file") or ".env")
    if loaded := load_env_file(env_file, os.environ):  # type: ignore[arg-type]
        log.note(f"credentials: {len(loaded)} setting(s) read from {env_file.name}")
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, run.runner.handle)

    def body() -> int:
        started = time.time()
        result = run.summarize(*run.execute(), started)
        if opts["json"]:
            print(json.dumps(result, indent=2))
        if removed := prune_logs(log_dir, today, keep_days):
            log.note(f"deleted {len(removed)} cron log(s) older than {keep_days} days")
        return result["exit"]

    try:
        return run.locked(body)
    except Busy as busy:
        log.note(f"gave up: {busy}; nothing was run (exit {EXIT_BUSY})")
        print(f"{PROG}: {busy}; nothing was run. Log: {log.path}", file=sys.stderr)
        return EXIT_BUSY
    except Interrupted as stop:
        log.note(f"interrupted by {stop}; exit {128 + stop.signum}")
        return 128 + stop.signum
    finally:
        log.close()


_EPILOG = """\b
Examples:
  0 6 * * * cd /path/to/repo && make cron    the crontab line
  lead-recovery cron                         every recipe, today
  lead-recovery cron simulation_to_handoff   only this recipe
  lead-recovery cron --since 20250501        catch up every day since then
  lead-recovery cron --wait 0                give up at once if another run is busy
  lead-recovery cron --report                what yesterday's runs did
  lead-recovery cron --report today --json

\b
Exit status: 0 every recipe-day succeeded; 1 one failed; 2 bad input;
75 another run kept the folder busy for longer than --wait (nothing was run).
"""
_OPTIONS = [  # (flags, click settings, help)
    (("--since",), {"metavar": "YYYYMMDD"}, "Catch up: run every day from this one to today."),
    (("--date",), {"metavar": "YYYYMMDD"}, "The run date (default: today in the configured zone)."),
    (
        ("--wait",),
        {"metavar": "DURATION"},
        "How long to wait for another run: 30m, 2h or 0 (default: config cron.wait).",
    ),
    (
        ("--keep-logs-days",),
        {"type": click.IntRange(min=1), "metavar": "N"},
        "Delete cron logs older than N days (default: config).",
    ),
    (
        ("--config",),
        {"multiple": True, "metavar": "KEY=VALUE"},
        "Passed to Snakemake's --config (repeatable).",
    ),
    (
        ("-v", "--verbose"),
        {"is_flag": True},
        "Also print everything to the terminal (default when it is one).",
    ),
    (
        ("--report",),
        {"is_flag": False, "flag_value": "yesterday", "metavar": "DAY"},
        "Print the runs logged on DAY (YYYYMMDD, today or yesterday; default yesterday) and exit.",
    ),
    (("--json",), {"is_flag": True}, "Also print the run's (or --report's) results as JSON."),
    (("--repo",), {"metavar": "DIR"}, "The workflow folder (default: as for run)."),
]


@click.command("cron", context_settings=CONTEXT, epilog=_EPILOG)
@click.argument("recipes", nargs=-1)
@click.pass_obj
def command(obj: dict | None, repo: str | None, **opts: Any) -> int:
    """The unattended daily run: every recipe (or those named) for today, through Snakemake.

    One log per day under logs/cron/; success prints nothing (cron mails only
    failures); the summary says per recipe and day: queried, cached, skipped or failed.
    """
    return run_cron(Path((obj or {}).get("repo") or find_repo(repo)), opts)


for _flags, _settings, _help in _OPTIONS:
    click.option(*_flags, help=_help, **_settings)(command)


def main(argv: list[str] | None = None, repo: Path | None = None) -> int:
    """``workflow/scripts/cron.py`` and ``make cron``: the repository is the script's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return invoke(command, argv, PROG, repo=str(repo) if repo else None)
