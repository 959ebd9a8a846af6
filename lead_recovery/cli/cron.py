"""``lead-recovery cron``: the unattended daily run (``make cron``, ``workflow/scripts/cron.py``).

Only what Snakemake and cron do not do: make cron's empty environment usable, keep one
log per day, and end with a summary of what the run recorded in the store's history.
Waiting for another run and clearing a killed run's lock are the workflow's own, as for
every run (lead_recovery/invocation.py): cron only says how long to wait. Options, logs,
exit codes: docs/operations.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import click
import yaml

from lead_recovery import account, history, jobs, layout, rundate, store
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.cli.common import CONTEXT, UsageError, find_repo, invoke, table
from lead_recovery.cronlog import DailyLog, prune_logs, report

PROG, PROFILE = "lead-recovery cron", "profiles/cron"
EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, jobs.EXIT_BUSY  # 75: busy for longer than `wait`
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
COLUMNS = ("recipe", "date", "status", "rows", "rows_out", "detail")
ERROR = "lead-recovery: error:"  # how the workflow's one-line errors begin


def parse_wait(value: object) -> float:
    """``0`` (do not wait) or a duration such as ``30m``, as seconds."""
    if str(value).strip() == "0":
        return 0.0
    return rundate.parse_duration(value, "wait").total_seconds()


def prepare_environment(repo: Path, environ: dict[str, str]) -> list[str]:
    """Fill in what cron's environment lacks; the names. Nothing set is changed, but the
    venv's ``bin`` goes first on ``PATH`` (Snakemake's jobs run its ``python``)."""
    filled = [name for name in ("PATH", "HOME") if not environ.get(name)]
    if not (environ.get("LANG") or environ.get("LC_ALL")):
        environ["LANG"] = "C.UTF-8"
        filled.append("LANG")
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    path = environ.get("PATH") or DEFAULT_PATH
    if venv_bin not in path.split(os.pathsep):
        path = f"{venv_bin}{os.pathsep}{path}"
    environ["PATH"] = path
    environ["HOME"] = environ.get("HOME") or _home(repo)
    environ.setdefault("PYTHONIOENCODING", "utf-8")
    return filled


def _home(repo: Path) -> str:
    """The user's home (``expanduser`` asks the password database when ``HOME`` is
    unset), else a folder in the repository."""
    home = os.path.expanduser("~")
    if os.path.isdir(home) and os.access(home, os.W_OK):
        return home
    fallback = repo / ".snakemake" / "cron-home"
    fallback.mkdir(parents=True, exist_ok=True)
    return str(fallback)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    """Linux: Snakemake gets SIGTERM (finish running jobs, start no new ones) if we die."""
    with contextlib.suppress(Exception):  # elsewhere: no prctl, nothing to do
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def with_figures(line: account.Line, cfg: dict[str, Any]) -> dict[str, Any]:
    """An account line with its rows out (the day's summary.json: what this checkout's
    analysis wrote, never Snakemake's private metadata)."""
    summary: dict[str, Any] = {}  # a failed day's summary.json is an earlier run's
    with contextlib.suppress(OSError, ValueError):
        if not line.failed:
            path = layout.summary_path(cfg["results_dir"], line.recipe, line.day)
            summary = json.loads(Path(path).read_text())
    rows = line.rows if line.rows is not None else summary.get("rows_in")
    return dict(
        recipe=line.recipe,
        date=line.day,
        status=line.state,
        detail=line.detail
        + ("" if line.analysis_failed is None else f"; analysis failed: {line.analysis_failed}"),
        rows=rows,
        rows_out=summary.get("rows_out"),
    )


def recorded(cfg: dict[str, Any], repo: Path, run_id: str) -> list[account.Line] | None:
    """What the run recorded in the store's history (``None``: it recorded nothing,
    having stopped before its end)."""
    events = history.of_run(store.open_store(cfg, base=repo), run_id)
    if not events:
        return None
    return [account.from_event(e) for e in events]


def _last_error(printed: list[str]) -> str:
    """The line that best says why Snakemake stopped: ours, else its last error."""
    ours = [ln.split(ERROR, 1)[1] for ln in printed if ERROR in ln]
    errors = [line for line in printed if "rror" in line]
    return (ours or errors or printed or ["no output"])[-1].strip()


class Busy(Exception):
    """Another run kept the checkout busy for longer than ``wait``: exit 75, nothing run."""


class Interrupted(Exception):
    """A signal arrived while no Snakemake was running."""


class Cron:
    """One invocation: run Snakemake, sum up what it recorded."""

    def __init__(self, repo: Path, cfg: dict[str, Any], log: DailyLog, wait: str) -> None:
        self.repo, self.cfg, self.log, self.wait = repo, cfg, log, wait
        self.run_id, self.child, self.signalled = uuid.uuid4().hex, None, None
        self.code: int = 0  # Snakemake's exit code and output, once it ran
        self.printed: list[str] = []

    def handle(self, signum: int, _frame: object) -> None:
        self.signalled = signum
        if self.child is None or self.child.poll() is not None:
            raise Interrupted(signum)
        if signum != signal.SIGINT:  # a terminal's Ctrl-C reaches Snakemake directly
            with contextlib.suppress(OSError):
                self.child.send_signal(signal.SIGTERM)  # finish running jobs, then stop

    def snakemake(self, *args: str) -> tuple[int, list[str]]:
        """Its exit code and output, written to the day's log: a file, not a pipe, so that
        Snakemake and its jobs keep logging if this process is killed."""
        argv = ["snakemake", "--workflow-profile", PROFILE, *args]
        self.log.note("running: " + " ".join(argv))
        start, code = self.log.path.stat().st_size, None
        with open(self.log.path, "ab") as out:
            std = {"stdout": out, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
            self.child = subprocess.Popen(
                [sys.executable, "-m", *argv], **std, preexec_fn=_die_with_parent
            )
        with open(self.log.path, "rb") as reader:
            reader.seek(start)
            while code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.child.wait(0.2 if self.log.echo else None)
                if self.log.echo:
                    print(reader.read().decode(errors="replace"), end="", flush=True)
            reader.seek(start)
            printed = reader.read().decode(errors="replace").splitlines()
        self.child = None
        return code, printed

    def run(self, config: list[str]) -> list[account.Line]:
        """Run Snakemake (``--config config``): it waits for another run in this checkout
        up to ``wait`` (its own checkout lock), clears a killed run's lock, and records
        what it did in the store's history, which is what this returns."""
        os.environ[jobs.CHECKOUT_WAIT_ENV] = str(parse_wait(self.wait))
        self.code, self.printed = self.snakemake("--config", *config)
        if self.code == EXIT_BUSY:
            raise Busy(f"another run still works in this checkout after {self.wait}")
        return recorded(self.cfg, self.repo, self.run_id) or []

    def summarize(self, lines: list[account.Line], started: float) -> dict[str, Any]:
        """Log the summary table and the result line; the result (with its exit code)."""
        code, figures = self.code, [with_figures(line, self.cfg) for line in lines]
        counts = Counter(line.state for line in lines)
        counts["analysis failed"] = sum(line.analysis_failed is not None for line in lines)
        shown_states = (*account.STATES, "analysis failed")
        tally = ", ".join(f"{counts[s]} {s}" for s in shown_states if counts[s]) or "none"
        cells = [["-" if ln[k] is None else ln[k] for k in COLUMNS] for ln in figures]
        said = [
            f"summary of run {self.run_id[:8]} ({len(lines)} recipe-day(s): {tally}; "
            f"{time.time() - started:.1f}s):",
            *("  " + row for row in table(cells, [c.upper() for c in COLUMNS]).splitlines()),
        ]
        failed = sum(line.failed for line in lines)  # a failed analysis too
        exit_code = EXIT_FAILED if failed or code else EXIT_OK
        if self.signalled:
            said.append(f"interrupted by signal {signal.Signals(self.signalled).name}")
            exit_code = 128 + self.signalled
        elif code and not failed:
            said.append(f"snakemake exited with {code}: {_last_error(self.printed)}")
        shown = self.log.note("\n".join(said))
        result = {"run_id": self.run_id, "pid": os.getpid(), "exit": exit_code, "lines": figures}
        self.log.result(result)
        shown += self.log.note(f"exit {exit_code}")
        if exit_code and not self.log.echo:  # cron mails what a failed run printed
            sys.stderr.write("\n".join(shown) + f"\nLog: {self.log.path}\n")
        return result


def _config_items(items: tuple[str, ...]) -> dict[str, Any]:
    """``--config KEY=VALUE`` as overrides of the configuration cron reads itself."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--config '{item}' is not KEY=VALUE")
        if key in ("date", "since", "recipe", "recipes"):
            raise UsageError(f"give {key} as an option of cron, not as --config")
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value) if value else None
        overrides[key] = value
    return overrides


def run_cron(repo: Path, opts: dict[str, Any]) -> int:
    """The whole invocation; its exit code."""
    os.chdir(repo := repo.resolve())
    filled = prepare_environment(repo, os.environ)  # type: ignore[arg-type]
    cfg = lr_config.load(repo, _config_items(opts["config"]))
    settings, zone = cfg["cron"], rundate.zone(cfg["timezone"])
    today, log_dir = rundate.now(zone).strftime("%Y%m%d"), repo / settings["log_dir"]
    if (day := opts["report"]) is not None:
        if day in ("today", "yesterday"):
            day = rundate.days_before(today, 1 if day == "yesterday" else 0)
        print(report(log_dir / f"{rundate.parse_date(day)}.log", opts["json"]))
        return EXIT_OK
    day = rundate.resolve(opts["date"], cfg["timezone"], cfg["day_starts_at"]).date
    since = rundate.parse_date(opts["since"]) if opts["since"] else None
    names, broken = lr_recipes.runnable(cfg["recipes_dir"], opts["recipes"])
    config = [f"date={day}", *([f"since={since}"] if since else [])]
    config += [f"recipes=[{','.join(names)}]"] if opts["recipes"] else []
    wait = opts["wait"] if opts["wait"] is not None else settings["wait"]
    parse_wait(wait)  # bad input: before anything is logged
    keep_days = opts["keep_logs_days"] or settings["keep_logs_days"]
    store.share(cfg, [*store.shared_ground(cfg, repo), log_dir])  # Snakemake inherits it

    log = DailyLog(log_dir / f"{today}.log", echo=opts["verbose"] or sys.stdout.isatty())
    dates = rundate.date_range(since, day) if since else [day]
    run = Cron(repo, cfg, log, wait)
    os.environ.pop(jobs.CHECKOUT_WAIT_ENV, None)
    os.environ[jobs.RUN_ID_ENV] = run.run_id  # the workflow's account names this run
    os.environ[jobs.VERBOSE_ENV] = "1"  # the day's log keeps what the jobs say too
    log.note(
        f"run {run.run_id[:8]} started: {len(names) + len(broken)} recipe(s) for "
        f"{'..'.join(dict.fromkeys([dates[0], dates[-1]]))}, warehouse {cfg['warehouse']}, "
        f"by {jobs.user_at_host()} in {repo}"
    )
    if filled:
        log.note(f"environment: set {', '.join(filled)} (not given)")
    env_file = repo / cfg["redshift"]["env_file"]
    if loaded := lr_config.add_env_file(env_file, os.environ):  # type: ignore[arg-type]
        log.note(f"credentials: {len(loaded)} setting(s) read from {env_file.name}")
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, run.handle)
    try:
        started = time.time()
        for name, why in broken.items():
            log.note(f"recipe {name} cannot run: {why}")
        lines = run.run([*config, *opts["config"]]) if names else []
        lines += [account.Line(n, d, "failed", why) for n, why in broken.items() for d in dates]
        result = run.summarize(lines, started)
        if opts["json"]:
            print(json.dumps(result, indent=2))
        if removed := prune_logs(log_dir, today, keep_days):
            log.note(f"deleted {len(removed)} cron log(s) older than {keep_days} days")
        return result["exit"]
    except Busy as busy:
        log.note(f"gave up: {busy}; nothing was run (exit {EXIT_BUSY})")
        print(f"{PROG}: {busy}; nothing was run. Log: {log.path}", file=sys.stderr)
        return EXIT_BUSY
    except Interrupted as stop:
        log.note(f"interrupted by {signal.Signals(stop.args[0]).name}; exit {128 + stop.args[0]}")
        return 128 + stop.args[0]
    finally:
        log.file.close()


_EPILOG = """\b
Examples:
  lead-recovery cron                         every recipe, today
  lead-recovery cron simulation_to_handoff   only this recipe
  lead-recovery cron --since 20250501        catch up every day since then
  lead-recovery cron --wait 0                give up at once if another run is busy
  lead-recovery cron --report                what yesterday's runs did
  lead-recovery cron --report today --json

\b
The crontab line (the command itself, not make, so that its exit status is
the one below):
  0 6 * * *  /path/to/repo/.venv/bin/lead-recovery cron

\b
Exit status: 0 every recipe-day succeeded; 1 one failed; 2 bad arguments or
configuration; 75 another run kept the checkout busy for longer than --wait
(nothing was run); 128+n stopped by signal n. More: docs/operations.md.
"""


@click.command("cron", context_settings=CONTEXT, epilog=_EPILOG)
@click.argument("recipes", nargs=-1)
@click.option("--since", metavar="YYYYMMDD", help="Catch up: run every day from this one to today.")
@click.option("--date", metavar="YYYYMMDD", help="The run date (default: today in `timezone`).")
@click.option("--wait", metavar="DURATION", help="How long to wait for another run: 30m, 2h, 0.")
@click.option("--keep-logs-days", type=click.IntRange(1), metavar="N", help="Keep N days of logs.")
@click.option("--config", multiple=True, metavar="KEY=VALUE", help="Snakemake's --config (repeat).")
@click.option("-v", "--verbose", is_flag=True, help="Echo the log (default on a terminal).")
@click.option(
    "--report",
    is_flag=False,
    flag_value="yesterday",
    metavar="DAY",
    help="Print the runs logged on DAY (YYYYMMDD, today or yesterday: default) and exit.",
)
@click.option("--json", is_flag=True, help="Also print the run's (or --report's) results as JSON.")
@click.option("--repo", metavar="DIR", help="The workflow folder (default: as for run).")
@click.pass_obj
def command(obj: dict | None, repo: str | None, **opts: Any) -> int:
    """The unattended daily run: every recipe (or those named) for today, through Snakemake.

    One log per day under logs/cron/; success prints nothing (cron mails only failures).
    --wait and --keep-logs-days default to config/config.yaml's `cron:` settings.
    """
    return run_cron(Path((obj or {}).get("repo") or find_repo(repo)), opts)


def main(argv: list[str] | None = None, repo: Path | None = None) -> int:
    """``workflow/scripts/cron.py`` and ``make cron``: the repository is the script's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return invoke(command, argv, PROG, repo=str(repo) if repo else None)
