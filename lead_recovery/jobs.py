"""What every Snakemake script does around its work: log to the rule's log
file, and turn a :class:`LeadRecoveryError` into one line and exit code 1
instead of a traceback.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any

from lead_recovery import atomic, rundate, store
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.rundate import RunDate

RUN_ID_ENV = "LEAD_RECOVERY_RUN_ID"
# Set (and not 0): a run prints everything, Snakemake's job blocks and the jobs' notes
# (profiles/default is quiet without it; `lead-recovery run -v` and cron set it).
VERBOSE_ENV = "LEAD_RECOVERY_VERBOSE"

log = logging.getLogger("lead_recovery")


def announce_invocation(run: RunDate) -> str:
    """Give this Snakemake invocation an id and a run date that its jobs inherit.

    Jobs compare the id with the one in a marker to tell "queried in this
    run" from "cached". Both travel in the environment, not in ``params``,
    because a value that changes every run would make Snakemake rerun every job.
    """
    os.environ.setdefault(RUN_ID_ENV, uuid.uuid4().hex)
    rundate.pin_for_children(run)
    return os.environ[RUN_ID_ENV]


def run_id() -> str | None:
    return os.environ.get(RUN_ID_ENV)


def verbose() -> bool:
    """Whether this run prints everything (:data:`VERBOSE_ENV`)."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def _quiet_console(record: logging.LogRecord) -> bool:
    """A job's console in a quiet run: warnings and errors, and the query lease's notes
    (why a job waits, or took a day over); its log file has every line."""
    return record.levelno >= logging.WARNING or record.module == "lease"


def decided_at() -> str | None:
    """When the invocation decided its run date (ISO-8601), as its jobs see it."""
    return os.environ.get(rundate.DECIDED_AT_ENV)


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


CHECKOUT_WAIT_ENV = "LEAD_RECOVERY_CHECKOUT_WAIT"  # seconds a run waits for its checkout
EXIT_BUSY = 75  # EX_TEMPFAIL: another run kept this checkout busy for longer than asked to wait
FORCED_ENV = "LEAD_RECOVERY_FORCED_ON_CLI"
ALL = "*"


def export_forced_on_cli(everything: bool, files: set[str]) -> None:
    """Tell the extract jobs what the command line forced (``-F``, ``-R``, ``--forcerun``).

    A job cannot see Snakemake's command line, and it must know the
    difference between "forced by the user" (query) and "rerun by Snakemake
    for its own reasons" (put the kept pair back, see cache.py).
    """
    os.environ[FORCED_ENV] = ALL if everything else "\n".join(sorted(files))


def forced_on_cli(outputs: list[str]) -> bool:
    forced = os.environ.get(FORCED_ENV, "")
    if forced == ALL:
        return True
    listed = set(forced.split("\n")) - {""}
    return any(str(o) in listed for o in outputs)


def outcome_path(log_file: str) -> str:
    """Where a job records what it did (read by the end-of-run account)."""
    return re.sub(r"\.log$", "", str(log_file)) + ".outcome.json"


def write_outcome(log_file: str | None, outcome: dict[str, Any]) -> None:
    if not log_file:
        return
    record = {**outcome, "run_id": run_id()}  # this invocation's, not a marker's
    atomic.write_bytes(outcome_path(log_file), json.dumps(record, default=str).encode())


def read_outcome(log_file: str) -> dict[str, Any] | None:
    """This invocation's outcome of the job logging to ``log_file``, if it ran."""
    try:
        with open(outcome_path(log_file), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") == run_id() else None


def where_it_runs() -> dict[str, str]:
    """The host, and the Slurm job id on a cluster: an operator's way from the account
    to ``sacct``/``scontrol`` and the Slurm log."""
    where = {"host": socket.gethostname()}
    if os.environ.get("SLURM_JOB_ID"):
        where["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return where


def run(snakemake: Any, work: Callable[[Any], dict[str, Any] | None]) -> None:
    """Run ``work(snakemake)`` with logging to the rule's log and one-line errors.

    The rule's log gets everything (tracebacks of a recipe's own code
    included); the console gets the one-line story (in a quiet run, only its
    warnings, errors and waits). What the job did is recorded beside its log
    for the end-of-run account.
    """
    try:
        store.share(snakemake.config)  # a job on another host creates files like ours
    except LeadRecoveryError as err:
        sys.exit(f"lead-recovery: error: {err}")
    log_file = str(snakemake.log[0]) if snakemake.log else None
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    if not verbose():
        console.addFilter(_quiet_console)
    handlers: list[logging.Handler] = [console]
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.DEBUG,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    where = where_it_runs()
    if "slurm_job" in where:
        log.info("running as Slurm job %s on %s", where["slurm_job"], where["host"])
    write_outcome(log_file, {"status": "running", "rule": snakemake.rule, **where})
    try:
        details = work(snakemake) or {}
    except LeadRecoveryError as err:
        log.error("%s", err)
        write_outcome(log_file, {"status": "failed", "rule": snakemake.rule, "error": str(err)})
        sys.exit(1)
    except Exception as err:
        log.exception("unexpected error")
        line = f"{type(err).__name__}: {err}".splitlines()[0]
        write_outcome(log_file, {"status": "failed", "rule": snakemake.rule, "error": line})
        raise
    write_outcome(log_file, {**details, "status": "ok", "rule": snakemake.rule, **where})


_CHECKOUT: list[Any] = []  # the lock this process holds on its checkout, until it exits


def hold_checkout(folder: str, timeout_s: float, setting: str = "lock_timeout") -> bool:
    """Wait until no other run uses this checkout, then hold it until this process exits;
    ``True`` if it had to wait. ``setting``: where ``timeout_s`` came from, as said.

    Snakemake locks a working directory while a run writes there, and a second
    run in the same checkout stops at once with ``LockException``. People
    sharing a checkout (or cron and a person) expect the second run to wait
    for the first and reuse its query, as runs in different checkouts do on
    the day's lease. Called while the DAG is built, before any marker is
    read, so the second run decides on what the first one left. ``flock``
    (filelock): the kernel drops it when its holder dies, so a killed run
    never leaves it behind.
    """
    if _CHECKOUT:
        return False
    from filelock import FileLock, Timeout

    os.makedirs(folder, exist_ok=True)
    lock = FileLock(os.path.join(folder, "checkout.lock"))
    holder = os.path.join(folder, "checkout.holder")
    waited = False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited = True
        try:
            with open(holder, encoding="utf-8") as handle:
                who = handle.read(200).strip() or "another run"
        except OSError:
            who = "another run"
        patience = f"{timeout_s:.0f} s" if timeout_s < 60 else f"{timeout_s / 60:.0f} min"
        print(
            f"lead-recovery: {who} is running in this checkout; waiting for it to finish "
            f"(at most {patience}, {setting})",
            file=sys.stderr,
            flush=True,
        )
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise LeadRecoveryError(
                f"{who} still runs in this checkout after {patience} ({setting}); nothing was run"
            ) from None
    atomic.write_bytes(holder, f"{user_at_host()} (pid {os.getpid()})".encode())
    _CHECKOUT.append(lock)
    return waited
