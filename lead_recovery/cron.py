"""The unattended daily run: what ``make cron`` (``workflow/scripts/cron.py``) does.

One invocation runs every recipe (or those named) for today, or for every day
from ``--since`` to today, with ``snakemake --profile profiles/cron``:

1. It works under cron's empty environment: it moves to the repository, puts
   the venv's ``bin`` on ``PATH``, gives ``HOME`` and ``LANG`` safe values when
   missing and reads credentials from the repository's ``.env`` (never logging
   their values).
2. Everything it and Snakemake print goes to one log file per day,
   ``<cron.log_dir>/YYYYMMDD.log`` (appended to by every run of that day);
   files older than ``cron.keep_logs_days`` days are deleted.
3. Overlap: a second invocation waits (at most ``cron.wait``) for the first,
   through a lock file, and then finds everything cached. A Snakemake already
   running in this folder (a person's run) is waited for too; a Snakemake lock
   left by a killed run (no Snakemake process alive here) is removed with
   ``snakemake --unlock``. Waiting too long ends with exit code 75 and one
   clear line, never a second query and never a Snakemake lock error.
4. The run ends with one line per recipe and day: queried / cached / skipped /
   failed, rows, seconds; exit code 0 only when every one succeeded.

The run date is decided here, once, and handed to Snakemake as ``date=``, so
the workflow, the summary and the log file name agree even across midnight.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from lead_recovery import config as lr_config
from lead_recovery import jobs, layout, markers, rundate
from lead_recovery import recipes as lr_recipes
from lead_recovery.errors import LeadRecoveryError

PROFILE = "profiles/cron"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: another run kept the folder busy for longer than `wait`
DEFAULTS = {"log_dir": "logs/cron", "keep_logs_days": 30, "wait": "30m"}
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
POLL_S = 1.0
_LOG_NAME_RE = re.compile(r"^(\d{8})\.log$")
_WAIT_RE = re.compile(r"^(\d+)([smhd]?)$")
_TMP_RE = re.compile(r"^\..+\.(\d+)\.tmp$")  # extract/analysis temporaries: .<name>.<pid>.tmp
_LOCK_ERROR = "LockException"
WRAPPER_TAG = "cron["


def parse_wait(value: object) -> float:
    """``30m`` / ``2h`` / ``90s`` / ``90`` (seconds) / ``0`` (do not wait) as seconds."""
    match = _WAIT_RE.match(str(value).strip())
    if not match:
        raise LeadRecoveryError(f"wait '{value}' is not a duration such as 30m, 2h, 90s or 0")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(int(match.group(1)) * unit)


# --------------------------------------------------------------------------- environment


def _home(repo: Path) -> str:
    """The user's home from the password database, else a folder in the repository."""
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
        if home and os.path.isdir(home) and os.access(home, os.W_OK):
            return home
    except (ImportError, KeyError, OSError):
        pass
    fallback = repo / ".snakemake" / "cron-home"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


def prepare_environment(repo: Path, environ: dict[str, str]) -> list[str]:
    """Make ``environ`` safe for an unattended run; returns what was filled in.

    Nothing already set is changed, except that the venv's ``bin`` goes first
    on ``PATH`` (Snakemake's jobs find ``python`` and ``bash`` there).
    """
    filled = []
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    path = environ.get("PATH") or DEFAULT_PATH
    if not environ.get("PATH"):
        filled.append("PATH")
    if venv_bin not in path.split(os.pathsep):
        path = f"{venv_bin}{os.pathsep}{path}"
    environ["PATH"] = path
    if not environ.get("HOME"):
        environ["HOME"] = _home(repo)
        filled.append("HOME")
    if not (environ.get("LANG") or environ.get("LC_ALL")):
        environ["LANG"] = "C.UTF-8"
        filled.append("LANG")
    environ.setdefault("PYTHONIOENCODING", "utf-8")
    return filled


def load_dotenv_file(path: Path, environ: dict[str, str]) -> list[str]:
    """Add the ``.env`` file's settings not already in ``environ``; returns their names."""
    if not path.is_file():
        return []
    from dotenv import dotenv_values

    added = []
    for key, value in dotenv_values(path).items():
        if value is not None and key not in environ:
            environ[key] = value
            added.append(key)
    return added


# --------------------------------------------------------------------------- the day's log


class DailyLog:
    """``<log_dir>/YYYYMMDD.log``, appended to; optionally echoed to the terminal."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.echo = echo
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        """A line of the wrapper's own, timestamped and tagged ``cron[pid]``."""
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        for text in message.splitlines() or [""]:
            line = f"{stamp} {WRAPPER_TAG}{os.getpid()}] {text}"
            self.notes.append(line)
            self.raw(line + "\n")

    def raw(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()
        if self.echo:
            sys.stdout.write(line)
            sys.stdout.flush()

    def close(self) -> None:
        self._file.close()


def prune_logs(log_dir: Path, today: str, keep_days: int) -> list[str]:
    """Delete ``YYYYMMDD.log`` files dated more than ``keep_days`` days before today."""
    oldest = (rundate.to_date(today) - timedelta(days=keep_days)).strftime("%Y%m%d")
    removed = []
    for entry in sorted(log_dir.iterdir()) if log_dir.is_dir() else []:
        match = _LOG_NAME_RE.match(entry.name)
        if match and match.group(1) < oldest and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def report(log_path: Path) -> list[str]:
    """The wrapper's own lines (start, waits, summary, exit) of a day's log."""
    if not log_path.is_file():
        return []
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in handle if f" {WRAPPER_TAG}" in line]


# --------------------------------------------------------------------------- who else is running


def _cmdline(pid: str) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        raw = handle.read()
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_snakemake(argv: list[str]) -> bool:
    """A Snakemake main process, or a job it started (``.snakemake/scripts/...``)."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == "snakemake":
            return True
        if arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "snakemake":
            return True
    return any("/.snakemake/scripts/" in a or a.startswith(".snakemake/scripts/") for a in argv)


def snakemake_processes(repo: Path) -> list[tuple[int, str]] | None:
    """Snakemake processes (and their jobs) working in ``repo``; ``None`` without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target = str(repo.resolve())
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") != target:
                continue
            argv = _cmdline(entry.name)
        except OSError:  # gone meanwhile, or another user's process
            continue
        if argv and is_snakemake(argv):
            found.append((int(entry.name), " ".join(argv)[:200]))
    return sorted(found)


def snakemake_locks(repo: Path) -> list[Path]:
    lock_dir = repo / ".snakemake" / "locks"
    return sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else []


def _foreign(locks: list[Path]) -> bool:
    """Whether a lock belongs to another user (whose processes /proc may hide)."""
    if os.getuid() == 0:
        return False
    uids = set()
    for path in locks:
        with contextlib.suppress(OSError):
            uids.add(path.stat().st_uid)
    return bool(uids - {os.getuid()})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- the summary


@dataclass
class Line:
    """One recipe and day of a run."""

    recipe: str
    date: str
    status: str  # queried, cached, skipped, failed
    rows: int | None = None
    rows_out: int | None = None
    seconds: float | None = None
    detail: str = ""
    explained: bool = True  # a failure whose cause is known (else see Snakemake's output)

    def format(self, width: int) -> str:
        def num(value: object) -> str:
            return "-" if value is None else str(value)

        secs = "-" if self.seconds is None else f"{self.seconds:.1f}"
        text = (
            f"  {self.recipe:<{width}}  {self.date}  {self.status:<7}  "
            f"rows={num(self.rows):<7} out={num(self.rows_out):<7} seconds={secs:<5}"
        )
        return f"{text}  {self.detail}".rstrip() if self.detail else text.rstrip()


def _record(repo: Path, kind: str, path: str) -> Path:
    """Where Snakemake's file persistence keeps ``kind`` (metadata, incomplete) of ``path``."""
    b64 = base64.urlsafe_b64encode(path.encode()).decode()
    chunks = [b64[i : i + 254] for i in range(0, len(b64), 254)]  # NAME_MAX 255, as Snakemake
    parts = ["@" + c for c in chunks[:-1]] + chunks[-1:]
    return repo / ".snakemake" / kind / Path(*parts)


def _metadata(repo: Path, path: str) -> dict[str, Any] | None:
    """Snakemake's record of the job that last wrote ``path``."""
    try:
        return json.loads(_record(repo, "metadata", path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _incomplete(repo: Path, path: str) -> bool:
    return _record(repo, "incomplete", path).exists()


def job_seconds(repo: Path, paths: list[str], since: float) -> float:
    """Seconds spent by the jobs that wrote ``paths`` during this run (0 if none ran)."""
    spans = set()
    for path in paths:
        meta = _metadata(repo, path) or {}
        start, end = meta.get("starttime"), meta.get("endtime")
        if isinstance(start, int | float) and isinstance(end, int | float) and start >= since:
            spans.add((start, end))
    return round(sum(end - start for start, end in spans), 1)


def _error_of(log_file: Path, since: float) -> str | None:
    """The last error line of a job's log written during this run."""
    try:
        if log_file.stat().st_mtime < since:
            return None
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [ln.split(" ERROR ", 1)[1] for ln in lines if " ERROR " in ln]
    if errors:
        return errors[-1].strip()
    rest = [ln.strip() for ln in lines if ln.strip()]
    return rest[-1] if rest else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def summarize(
    repo: Path,
    cfg: dict[str, Any],
    names: list[str],
    dates: list[str],
    run_id: str,
    since: float,
) -> list[Line]:
    """What happened to each recipe and day, read from the files the run left."""
    results, logs, marker_dir = cfg["results_dir"], cfg["logs_dir"], cfg["marker_dir"]
    skip = bool(cfg.get("skip_redshift"))
    lines = []
    for name in names:
        uses_sql = lr_recipes.has_sql(cfg["recipes_dir"], name) and not skip
        for day in dates:
            marker = markers.marker_path(marker_dir, name, day)
            leads = layout.leads_path(results, name, day)
            analysis = layout.analysis_path(results, name, day)
            summary = layout.summary_path(results, name, day)

            def present(path: str) -> bool:
                return os.path.exists(path) and not _incomplete(repo, path)

            line = Line(name, day, "failed")
            step = None
            if uses_sql and not (present(marker) and present(leads)):
                step = "redshift_extract"
            elif not uses_sql and not skip and not present(leads):
                step = "recipe_leads"
            elif not (present(analysis) and present(summary)) or (
                not skip and os.path.getmtime(summary) < os.path.getmtime(leads)
            ):  # missing, or older than the leads it should have analysed
                step = "analyze"
            if step is not None:
                why = _error_of(Path(layout.log_path(logs, step, name, day)), since)
                line.detail = f"{step}: {why}" if why else f"{step} did not complete"
                line.explained = why is not None
                lines.append(line)
                continue
            info = _read_json(Path(summary))
            line.rows_out = info.get("rows_out")
            line.rows = info.get("rows_in")
            outputs = [analysis, summary] + ([marker, leads] if uses_sql else [leads])
            line.seconds = job_seconds(repo, outputs, since)
            if uses_sql:
                record = markers.read_marker(marker)
                line.rows = record.rows if record.rows is not None else line.rows
                queried = record.record.get("run_id") == run_id
                line.status = "queried" if queried else "cached"
                if queried and line.seconds == 0 and record.record.get("duration_s") is not None:
                    line.seconds = round(float(record.record["duration_s"]), 1)
                if not queried and record.queried_at is not None:
                    line.detail = f"queried {record.queried_at.isoformat(timespec='seconds')}"
            else:
                line.status = "skipped"
                line.detail = "skip_redshift: no query" if skip else "leads.csv: no query"
            lines.append(line)
    return lines


# --------------------------------------------------------------------------- running Snakemake


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    """Linux: Snakemake gets SIGTERM (finish running jobs, start no new ones) if we die."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Interrupted(Exception):
    """A signal arrived while no Snakemake was running (e.g. while waiting)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Runner:
    """Runs Snakemake with its output going into the day's log."""

    def __init__(self, log: DailyLog) -> None:
        self.log = log
        self.child: subprocess.Popen | None = None
        self.signalled: int | None = None

    def handle(self, signum: int, _frame: object) -> None:
        self.signalled = signum
        if self.child is None or self.child.poll() is not None:
            raise Interrupted(signum)
        if signum != signal.SIGINT:
            # SIGTERM/SIGHUP: Snakemake finishes its running jobs and stops. (A
            # terminal's Ctrl-C reaches Snakemake directly: same process group.)
            with contextlib.suppress(OSError):
                self.child.send_signal(signal.SIGTERM)

    def run(self, argv: list[str]) -> tuple[int, list[str]]:
        """Run ``argv``; returns its exit code and the last lines it printed.

        Its output goes straight into the log file (not through a pipe), so
        Snakemake and its jobs keep logging even if this process is killed.
        """
        offset = self.log.path.stat().st_size
        with open(self.log.path, "ab") as out:
            self.child = subprocess.Popen(
                argv,
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
                time.sleep(0.2)
            reader.seek(offset)
            printed = reader.read().decode(errors="replace").splitlines()
        self.child = None
        return code, printed[-400:]


def snakemake_argv(config_items: list[str], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        PROFILE,
        *extra,
        "--config",
        *config_items,
    ]


# --------------------------------------------------------------------------- the command


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of days (1 or more)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cron.py",
        description=(
            "The unattended daily run (`make cron`): every recipe, or those named, "
            "for today with `snakemake --profile profiles/cron`; one log per day "
            "under logs/cron/, a one-line-per-recipe summary, exit 0 only if all succeeded."
        ),
    )
    parser.add_argument("recipes", nargs="*", help="only these recipes (default: all)")
    parser.add_argument(
        "--since", metavar="YYYYMMDD", help="catch up: run every day from this one to today"
    )
    parser.add_argument(
        "--date",
        metavar="YYYYMMDD",
        help="the run date (default: today in the configured timezone)",
    )
    parser.add_argument(
        "--wait",
        metavar="DURATION",
        help="how long to wait for another run (default: config cron.wait)",
    )
    parser.add_argument(
        "--keep-logs-days",
        type=_positive_int,
        metavar="N",
        help="delete cron logs older than N days (default: config)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to Snakemake's --config (repeatable)",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also print everything to the terminal (default when it is one)",
    )
    parser.add_argument(
        "--report",
        nargs="?",
        const="yesterday",
        metavar="DAY",
        help="print the runs and summaries logged on DAY "
        "(YYYYMMDD, today or yesterday; default yesterday) and exit",
    )
    return parser


def _config_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LeadRecoveryError(f"--config '{item}' is not KEY=VALUE")
        try:
            overrides[key] = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            overrides[key] = value
    return overrides


def _report_day(value: str, today: str) -> str:
    if value == "today":
        return today
    if value == "yesterday":
        return (rundate.to_date(today) - timedelta(days=1)).strftime("%Y%m%d")
    return rundate.parse_date(value)


@dataclass
class Plan:
    """What one invocation is to do, decided before anything waits or runs."""

    repo: Path
    cfg: dict[str, Any]
    today: str  # the day of the log file
    run_date: str
    dates: list[str]
    names: list[str]  # recipes handed to Snakemake
    broken: dict[str, str]  # recipes that cannot even be loaded, and why
    explicit: bool  # name the recipes to Snakemake (else it runs all of them)
    since: str | None
    extra_config: list[str]
    wait_s: float
    keep_days: int

    def config_items(self) -> list[str]:
        items = [f"date={self.run_date}"]
        if self.since:
            items.append(f"since={self.since}")
        if self.explicit:
            items.append("recipes=[" + ",".join(self.names) + "]")
        return items + self.extra_config


def _select(recipes_dir: str, named: list[str]) -> tuple[list[str], dict[str, str]]:
    """The recipes to run and those that cannot be loaded (a broken meta.yml...).

    A broken recipe is reported as failed instead of stopping every other one
    at Snakemake's start-up; a name that is no recipe at all is a usage error.
    """
    if named:
        names = [lr_recipes.validate_name(n) for n in named]
        known = lr_recipes.discover(recipes_dir)
        for name in names:
            if name not in known:
                lr_recipes.load(recipes_dir, name)  # raises "unknown recipe ... known: ..."
    else:
        names = lr_recipes.discover(recipes_dir)
    good, broken = [], {}
    for name in dict.fromkeys(names):
        try:
            lr_recipes.load(recipes_dir, name)
            good.append(name)
        except LeadRecoveryError as err:
            broken[name] = str(err)
    return good, broken


def main(argv: list[str], repo: Path) -> int:
    args = build_parser().parse_args(argv)
    repo = repo.resolve()
    os.chdir(repo)
    filled = prepare_environment(repo, os.environ)  # type: ignore[arg-type]
    try:
        user_config = _config_overrides(args.config)
        for key in ("date", "since", "recipe", "recipes"):
            if key in user_config:
                raise LeadRecoveryError(f"give {key} as an option of cron.py, not as --config")
        cfg = lr_config.load(repo, user_config)
        settings = {**DEFAULTS, **(cfg.get("cron") or {})}
        today = rundate.now(rundate.zone(cfg.get("timezone"))).strftime("%Y%m%d")
        log_dir = repo / settings["log_dir"]
        if args.report is not None:
            lines = report(log_dir / f"{_report_day(args.report, today)}.log")
            print("\n".join(lines) if lines else "no cron run logged that day")
            return EXIT_OK
        run = rundate.resolve(args.date, cfg.get("timezone"), cfg.get("day_starts_at", "00:00"))
        names, broken = _select(cfg["recipes_dir"], args.recipes)
        plan = Plan(
            repo=repo,
            cfg=cfg,
            today=today,
            run_date=run.date,
            dates=rundate.date_range(args.since, run.date) if args.since else [run.date],
            names=names,
            broken=broken,
            explicit=bool(args.recipes or broken),
            since=rundate.parse_date(args.since) if args.since else None,
            extra_config=args.config,
            wait_s=parse_wait(args.wait if args.wait is not None else settings["wait"]),
            keep_days=args.keep_logs_days or int(settings["keep_logs_days"]),
        )
    except LeadRecoveryError as err:
        print(f"lead-recovery cron: error: {err}", file=sys.stderr)
        return EXIT_USAGE

    log = DailyLog(log_dir / f"{today}.log", echo=args.verbose or sys.stdout.isatty())
    try:
        return _run(plan, log, filled)
    except Interrupted as stop:
        log.note(f"interrupted by {stop}; exit {128 + stop.signum}")
        return 128 + stop.signum
    finally:
        log.close()


def _run(plan: Plan, log: DailyLog, filled: list[str]) -> int:
    """Announce, take the cron lock (waiting for another run), run, prune old logs."""
    from filelock import FileLock, Timeout

    run_id = uuid.uuid4().hex
    os.environ[jobs.RUN_ID_ENV] = run_id
    deadline = time.monotonic() + plan.wait_s
    dates = plan.dates
    span = f"{dates[0]}..{dates[-1]}" if len(dates) > 1 else dates[0]
    log.note(
        f"run {run_id[:8]} started: {len(plan.names) + len(plan.broken)} recipe(s) for {span}, "
        f"warehouse {plan.cfg['warehouse']}, by {jobs.user_at_host()} in {plan.repo}"
    )
    if filled:
        log.note(f"environment: set {', '.join(filled)} (not given)")
    env_file = plan.repo / ((plan.cfg.get("redshift") or {}).get("env_file") or ".env")
    loaded = load_dotenv_file(env_file, os.environ)  # type: ignore[arg-type]
    if loaded:
        log.note(f"credentials: {len(loaded)} setting(s) read from {env_file.name}")

    runner = Runner(log)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, runner.handle)

    owner_file = log.path.parent / ".lock.owner"
    lock = FileLock(str(log.path.parent / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = _read_json(owner_file)
        who = f"pid {owner.get('pid')}, started {owner.get('started')}" if owner else "unknown"
        log.note(f"another cron run is in progress ({who}); waiting up to {_fmt(plan.wait_s)}")
        try:
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()), poll_interval=0.2)
        except Timeout:
            return _give_up(log, f"the other cron run ({who}) still runs after {_fmt(plan.wait_s)}")
        log.note("the other cron run finished; going on")
    try:
        owner_file.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "run_id": run_id,
                    "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                }
            )
        )
        code = _run_locked(plan, log, runner, deadline, run_id)
        removed = prune_logs(log.path.parent, plan.today, plan.keep_days)
        if removed:
            log.note(f"deleted {len(removed)} cron log(s) older than {plan.keep_days} days")
        return code
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()


def _fmt(seconds: float) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{int(seconds)}s"


def _give_up(log: DailyLog, why: str) -> int:
    log.note(f"gave up: {why}; nothing was run (exit {EXIT_BUSY})")
    print(f"lead-recovery cron: {why}; nothing was run. Log: {log.path}", file=sys.stderr)
    return EXIT_BUSY


def _wait_for_snakemake(plan: Plan, log: DailyLog, deadline: float, runner: Runner) -> str | None:
    """Wait until no Snakemake works in this folder; clear a killed run's lock.

    Returns ``None`` when Snakemake may start, else why it may not.
    """
    told = False
    while True:
        procs = snakemake_processes(plan.repo)
        locks = snakemake_locks(plan.repo)
        if procs is None:  # no /proc: cannot tell a live lock from a stale one
            if not locks:
                return None
            return (
                "Snakemake's lock is held in this folder and this system cannot tell "
                "whether its owner is alive; run `snakemake --unlock` if none is running"
            )
        if not procs and locks and _foreign(locks):
            # Another user's Snakemake: its processes are not ours to see, so
            # its lock cannot be told stale; wait for it like for a live one.
            procs = [(0, f"a Snakemake of another user (lock {locks[0].name})")]
        if not procs:
            if locks:
                log.note(
                    "Snakemake lock left by a killed run (no snakemake process in this "
                    "folder): removing it with `snakemake --unlock`"
                )
                code, tail = runner.run(snakemake_argv(plan.config_items(), "--unlock"))
                if code != 0:
                    return f"`snakemake --unlock` failed (exit {code}): {_last_error(tail)}"
            return None
        if not told:
            pids = ", ".join(f"pid {pid}: {cmd}" for pid, cmd in procs[:3])
            log.note(
                f"Snakemake is already running in this folder ({pids}); "
                f"waiting up to {_fmt(plan.wait_s)}"
            )
            told = True
        if time.monotonic() >= deadline:
            return (
                f"Snakemake still runs in this folder after {_fmt(plan.wait_s)} "
                f"(pid {', '.join(str(p) for p, _ in procs)})"
            )
        time.sleep(POLL_S)


def _last_error(tail: list[str]) -> str:
    for line in reversed(tail):
        if "lead-recovery: error:" in line:
            return line.split("lead-recovery: error:", 1)[1].strip()
    for line in reversed(tail):
        if "Error" in line or "error" in line:
            return line.strip()
    return tail[-1].strip() if tail else "no output"


def _run_locked(plan: Plan, log: DailyLog, runner: Runner, deadline: float, run_id: str) -> int:
    """Run Snakemake once nothing else works here, then summarise; the exit code."""
    started = time.time()
    code, tail = 0, []
    for name, why in plan.broken.items():
        log.note(f"recipe {name} cannot run: {why}")
    while plan.names:
        blocked = _wait_for_snakemake(plan, log, deadline, runner)
        if blocked:
            return _give_up(log, blocked)
        _clean_temporaries(plan, log)
        command = snakemake_argv(plan.config_items())
        log.note("running: snakemake " + " ".join(command[3:]))
        code, tail = runner.run(command)
        if code != 0 and any(_LOCK_ERROR in line for line in tail) and not runner.signalled:
            # A person's Snakemake took the lock between our check and our start.
            log.note("Snakemake's lock was taken meanwhile by another run; waiting for it")
            if time.monotonic() < deadline:
                time.sleep(POLL_S)
                continue
            return _give_up(log, f"Snakemake still runs in this folder after {_fmt(plan.wait_s)}")
        break

    lines = summarize(plan.repo, plan.cfg, plan.names, plan.dates, run_id, started)
    lines += [
        Line(name, day, "failed", detail=why)
        for name, why in plan.broken.items()
        for day in plan.dates
    ]
    failed = [ln for ln in lines if ln.status == "failed"]
    counts = collections.Counter(ln.status for ln in lines)
    tally = ", ".join(
        f"{counts[s]} {s}" for s in ("queried", "cached", "skipped", "failed") if counts[s]
    )
    first_note = len(log.notes)
    log.note(
        f"summary of run {run_id[:8]} ({len(lines)} recipe-day(s): {tally or 'none'}; "
        f"{time.time() - started:.1f}s):"
    )
    width = max((len(ln.recipe) for ln in lines), default=6)
    for ln in lines:
        log.note(ln.format(width))
    exit_code = EXIT_OK
    if runner.signalled:
        log.note(f"interrupted by signal {signal.Signals(runner.signalled).name}")
        exit_code = 128 + runner.signalled
    elif failed or code != 0:
        exit_code = EXIT_FAILED
        if code != 0 and not any(ln.explained for ln in failed):
            log.note(f"snakemake exited with {code}: {_last_error(tail)}")
    log.note(f"exit {exit_code}")
    if exit_code != EXIT_OK and not log.echo:
        sys.stderr.write("\n".join(log.notes[first_note:]) + f"\nLog: {log.path}\n")
    return exit_code


def _clean_temporaries(plan: Plan, log: DailyLog) -> None:
    """Remove half-written ``.<file>.<pid>.tmp`` files whose writer is dead (a killed run)."""
    removed = 0
    for name in plan.names:
        for day in plan.dates:
            folder = Path(layout.day_dir(plan.cfg["results_dir"], name, day))
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                match = _TMP_RE.match(entry.name)
                if match and not pid_alive(int(match.group(1))):
                    entry.unlink(missing_ok=True)
                    removed += 1
    if removed:
        log.note(f"removed {removed} half-written temporary file(s) left by a killed run")
