"""``lead-recovery cron``: the unattended daily run (``make cron``, ``workflow/scripts/cron.py``).

It does only what neither Snakemake nor cron does:

1. It works under cron's empty environment: it moves to the repository, puts
   the venv's ``bin`` first on ``PATH``, gives ``HOME`` and ``LANG`` safe values
   when missing, and adds the ``.env`` settings the environment lacks.
2. It decides the run date once and runs ``snakemake --workflow-profile
   profiles/cron --config date=...``; everything printed goes to one log per
   day, ``<cron.log_dir>/YYYYMMDD.log``, and logs older than
   ``cron.keep_logs_days`` days are deleted.
3. Overlap: a second invocation waits (at most ``cron.wait``) for the first
   through a lock file; a Snakemake working in this folder (a person's run) is
   waited for too; a Snakemake lock with no Snakemake process alive here (a
   killed run) is removed with ``snakemake --unlock``. Waiting too long ends
   with exit 75 and one line, never a second query.
4. It ends with one line per recipe and day (the workflow's own end-of-run
   account, with the rows from the marker and ``summary.json``); exit 0 only
   when every one succeeded.

``cron.wait`` / ``--wait`` is a duration of the one grammar
(:func:`lead_recovery.freshness.parse_duration`: ``90s``, ``30m``, ``2h``,
``1d``), or ``0``: do not wait. A bare number of seconds is not accepted.
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
import time
import uuid
from collections import Counter
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


class Run:
    """One invocation: the plan decided up front, then wait, run and account."""

    def __init__(self, repo: Path, cfg: dict[str, Any], log: DailyLog, **plan: Any) -> None:
        self.repo, self.cfg, self.log = repo, cfg, log
        self.names: list[str] = plan["names"]
        self.broken: dict[str, str] = plan["broken"]
        self.dates: list[str] = plan["dates"]
        self.config: list[str] = plan["config"]
        self.wait_s: float = plan["wait_s"]
        self.run_id = uuid.uuid4().hex
        self.deadline = time.monotonic() + self.wait_s
        self.runner = Runner(log)

    def give_up(self, why: str) -> int:
        self.log.note(f"gave up: {why}; nothing was run (exit {EXIT_BUSY})")
        print(f"{PROG}: {why}; nothing was run. Log: {self.log.path}", file=sys.stderr)
        return EXIT_BUSY

    def locked(self, body) -> int:
        """Run ``body`` holding the cron lock, waiting for another cron run first."""
        folder = self.log.path.parent
        owner_file, lock = folder / ".lock.owner", FileLock(str(folder / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            owner = _read_json(owner_file)
            who = f"pid {owner.get('pid')}, started {owner.get('started')}" if owner else "unknown"
            self.log.note(
                f"another cron run is in progress ({who}); waiting up to {_fmt(self.wait_s)}"
            )
            try:
                lock.acquire(timeout=self.left())
            except Timeout:
                return self.give_up(
                    f"the other cron run ({who}) still runs after {_fmt(self.wait_s)}"
                )
            self.log.note("the other cron run finished; going on")
        try:
            started = datetime.now().astimezone().isoformat(timespec="seconds")
            owner_file.write_text(
                json.dumps({"pid": os.getpid(), "run_id": self.run_id, "started": started})
            )
            return body()
        finally:
            owner_file.unlink(missing_ok=True)
            lock.release()

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def wait_for_snakemake(self) -> str | None:
        """Wait until no Snakemake works in this folder, clearing a killed run's lock.

        Returns ``None`` when Snakemake may start, else why it may not.
        """
        told = False
        while True:
            procs, locks = snakemake_processes(self.repo), snakemake_locks(self.repo)
            if not procs and not locks:
                return None
            if not procs and not _foreign(locks):
                self.log.note(
                    "Snakemake lock left by a killed run (no snakemake process in this "
                    "folder): removing it with `snakemake --unlock`"
                )
                code, printed = self.runner.run("--unlock", config=self.config)
                return (
                    None
                    if code == 0
                    else f"`snakemake --unlock` failed (exit {code}): {_last_error(printed)}"
                )
            if not told:
                who = (
                    ", ".join(f"pid {p.pid}" for p in procs[:3])
                    or f"another user's, lock {locks[0].name}"
                )
                self.log.note(
                    f"Snakemake is already running in this folder ({who}); "
                    f"waiting up to {_fmt(self.wait_s)}"
                )
                told = True
            if not self.left():
                return f"Snakemake still runs in this folder after {_fmt(self.wait_s)}"
            # Wait on the processes themselves (another user's lock: poll it).
            psutil.wait_procs(procs, timeout=min(self.left(), 5.0)) if procs else time.sleep(1.0)

    def execute(self) -> tuple[int, list[dict[str, Any]] | None, list[str]]:
        """Run Snakemake once nothing else works here; its exit code, account and output."""
        for name, why in self.broken.items():
            self.log.note(f"recipe {name} cannot run: {why}")
        while self.names:
            blocked = self.wait_for_snakemake()
            if blocked:
                raise _Busy(blocked)
            removed = clean_temporaries(self.cfg, self.names, self.dates)
            if removed:
                self.log.note(f"removed {removed} temporary file(s) left by a killed run")
            code, printed = self.runner.run(config=self.config)
            if (
                code != 0
                and not self.runner.signalled
                and snakemake_processes(self.repo)
                and snakemake_locks(self.repo)
            ):
                # A person's Snakemake took the folder between our check and our start.
                self.log.note("another Snakemake took this folder meanwhile; waiting for it")
                continue
            return code, account(printed, self.run_id), printed
        return 0, [], []

    def summarize(
        self, code: int, lines: list[dict[str, Any]] | None, printed: list[str], started: float
    ) -> int:
        lines = [add_figures(line, self.cfg) for line in lines or []] + [
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
        rows = [
            (
                ln["recipe"],
                ln["date"],
                ln["status"],
                _num(ln["rows"]),
                _num(ln["rows_out"]),
                ln["detail"],
            )
            for ln in lines
        ]
        self.log.note(
            "\n".join(
                "  " + row
                for row in table(
                    rows, ("RECIPE", "DATE", "STATUS", "ROWS", "OUT", "DETAIL")
                ).splitlines()
            )
        )
        exit_code = EXIT_OK
        if self.runner.signalled:
            self.log.note(f"interrupted by signal {signal.Signals(self.runner.signalled).name}")
            exit_code = 128 + self.runner.signalled
        elif counts["failed"] or code != 0:
            exit_code = EXIT_FAILED
            if code != 0 and not counts["failed"]:
                self.log.note(f"snakemake exited with {code}: {_last_error(printed)}")
        result = {"run_id": self.run_id, "pid": os.getpid(), "exit": exit_code, "lines": lines}
        self.log.note(f"result {json.dumps(result)}")
        self.log.note(f"exit {exit_code}")
        if exit_code != EXIT_OK and not self.log.echo:
            shown = [n for n in self.log.notes[first:] if "] result " not in n]
            sys.stderr.write("\n".join(shown) + f"\nLog: {self.log.path}\n")
        self.result = result
        return exit_code


class _Busy(Exception):
    pass


def _num(value: object) -> str:
    return "-" if value is None else str(value)


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
    for marker in ("lead-recovery: error:", "Error", "error"):
        for line in reversed(printed):
            if marker in line:
                return line.split(marker, 1)[1].strip() if marker.endswith(":") else line.strip()
    return printed[-1].strip() if printed else "no output"


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
    names = [n for n in names if n not in broken]
    wait_s = parse_wait(opts["wait"] if opts["wait"] is not None else settings["wait"])
    config = [f"date={day}", *([f"since={since}"] if since else [])]
    config += [f"recipes=[{','.join(names)}]"] if names or broken else []

    log = DailyLog(log_dir / f"{today}.log", echo=opts["verbose"] or sys.stdout.isatty())
    run = Run(
        repo,
        cfg,
        log,
        names=names if names or broken else known,
        broken=broken,
        dates=rundate.date_range(since, day) if since else [day],
        config=config + list(opts["config"]),
        wait_s=wait_s,
    )
    os.environ[jobs.RUN_ID_ENV] = run.run_id  # the workflow's account names this run
    span = f"{run.dates[0]}..{run.dates[-1]}" if len(run.dates) > 1 else day
    log.note(
        f"run {run.run_id[:8]} started: {len(run.names)} recipe(s) for {span}, warehouse "
        f"{cfg['warehouse']}, by {jobs.user_at_host()} in {repo}"
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
        try:
            code, lines, printed = run.execute()
        except _Busy as busy:
            return run.give_up(str(busy))
        exit_code = run.summarize(code, lines, printed, started)
        if opts["json"]:
            print(json.dumps(run.result, indent=2))
        removed = prune_logs(
            log_dir, today, int(opts["keep_logs_days"] or settings["keep_logs_days"])
        )
        if removed:
            log.note(f"deleted {len(removed)} cron log(s) older than the kept days")
        return exit_code

    try:
        return run.locked(body)
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


@click.command("cron", context_settings=CONTEXT, epilog=_EPILOG)
@click.argument("recipes", nargs=-1)
@click.option("--since", metavar="YYYYMMDD", help="Catch up: run every day from this one to today.")
@click.option(
    "--date", metavar="YYYYMMDD", help="The run date (default: today in the configured zone)."
)
@click.option(
    "--wait",
    metavar="DURATION",
    help="How long to wait for another run: 30m, 2h, 0 (default: config cron.wait).",
)
@click.option(
    "--keep-logs-days",
    type=click.IntRange(min=1),
    metavar="N",
    help="Delete cron logs older than N days (default: config).",
)
@click.option(
    "--config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Passed to Snakemake's --config (repeatable).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also print everything to the terminal (default when it is one).",
)
@click.option(
    "--report",
    is_flag=False,
    flag_value="yesterday",
    metavar="DAY",
    help="Print the runs logged on DAY (YYYYMMDD, today or yesterday; default yesterday) and exit.",
)
@click.option(
    "--json", "json_", is_flag=True, help="Print the run's (or --report's) results as JSON."
)
@click.option("--repo", metavar="DIR", help="The workflow folder (default: as for run).")
@click.pass_obj
def command(obj: dict | None, repo: str | None, json_: bool, **opts: Any) -> int:
    """The unattended daily run: every recipe (or those named) for today, through Snakemake.

    One log per day under logs/cron/; success prints nothing (cron mails only
    failures); the summary says per recipe and day: queried, cached, skipped or failed.
    """
    folder = Path((obj or {}).get("repo") or find_repo(repo))
    return run_cron(folder, {**opts, "json": json_})


def main(argv: list[str] | None = None, repo: Path | None = None) -> int:
    """``workflow/scripts/cron.py`` and ``make cron``: the repository is the script's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return invoke(command, argv, PROG, repo=str(repo) if repo else None)
