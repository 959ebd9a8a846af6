"""What every Snakemake script does around its work: log to the rule's log
file, and turn a :class:`LeadRecoveryError` into one line and exit code 1
instead of a traceback.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any

from lead_recovery import rundate
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.rundate import RunDate

RUN_ID_ENV = "LEAD_RECOVERY_RUN_ID"

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


def decided_at() -> str | None:
    """When the invocation decided its run date (ISO-8601), as its jobs see it."""
    return os.environ.get(rundate.DECIDED_AT_ENV)


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def run(snakemake: Any, work: Callable[[Any], None]) -> None:
    """Run ``work(snakemake)`` with logging to the rule's log and one-line errors."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        os.makedirs(os.path.dirname(str(snakemake.log[0])) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(str(snakemake.log[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        work(snakemake)
    except LeadRecoveryError as err:
        log.error("%s", err)
        sys.exit(1)
