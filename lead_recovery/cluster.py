"""Jobs on a cluster: where the executor plugins live, and whether the cluster can take jobs.

Snakemake imports every executor plugin it finds on ``sys.path`` each time it
starts, whatever the executor. The Slurm plugin imports pandas and runs
``which``/``scontrol`` as it is imported: about half a second of every
Snakemake start, local and cached runs included (measured: docs/cluster.md).
So the cluster executor plugins are installed apart, in ``.venv/executors/``
(``make venv``, pinned like everything else), and are put on ``PYTHONPATH``
only for a run that uses them (``lead-recovery run --profile slurm``). Slurm
passes the submitting environment to its jobs (``sbatch --export=ALL``), so
the jobs find the job-side plugin the same way.

A cluster that cannot take jobs must stop the run in one line, before any
job is submitted: the Slurm plugin's own answer to a controller that is down
is a long sbatch error per job, and to a node that never comes back, jobs
pending for ever. :func:`check_slurm` asks the controller and the partition
first, each command bounded by a timeout. A controller that goes away once jobs
are submitted is worse: the plugin (2.8.0) stops watching jobs whose status
it cannot get, and Snakemake waits for them for ever. :func:`watch_slurm` keeps
asking while the run lasts, so that such a run is stopped, in one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from lead_recovery.config import load_yaml
from lead_recovery.errors import LeadRecoveryError

EXECUTORS = "executors"
# Node states (sinfo %T, without the suffix flags) in which a node takes no new job.
_UNUSABLE = {
    "down",
    "drained",
    "draining",
    "drain",
    "fail",
    "failing",
    "future",
    "inval",
    "maint",
    "reboot_issued",
    "reboot_requested",
    "unknown",
}


def executors_dir(prefix: str | Path | None = None) -> Path:
    """The folder of the cluster executor plugins: ``<venv>/executors``."""
    return Path(prefix if prefix is not None else sys.prefix) / EXECUTORS


def with_executors(env: Mapping[str, str], prefix: str | Path | None = None) -> dict[str, str]:
    """``env`` with the executor plugins' folder first on ``PYTHONPATH``."""
    folder = str(executors_dir(prefix))
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    return {**env, "PYTHONPATH": os.pathsep.join([folder, *rest])}


def profile_settings(profile: Path) -> dict[str, object]:
    """A Snakemake profile's ``config.yaml`` as a mapping (one-line error if unreadable)."""
    settings = load_yaml(profile / "config.yaml", f"profile {profile.name}")
    if not isinstance(settings, dict):
        raise LeadRecoveryError(f"profile {profile.name}: config.yaml is not a mapping")
    return settings


def plugin_installed(executor: str, prefix: str | Path | None = None) -> bool:
    """Whether ``snakemake-executor-plugin-<executor>`` is in the executors folder or the venv."""
    module = "snakemake_executor_plugin_" + executor.replace("-", "_")
    folder = executors_dir(prefix)
    if (folder / module / "__init__.py").is_file():
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _run(args: list[str], timeout_s: float) -> tuple[int, str]:
    """A Slurm client command: exit code and its output (stdout, then stderr)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LeadRecoveryError(
            f"slurm: `{' '.join(args)}` did not answer within {timeout_s:.0f} s "
            "(is slurmctld reachable from this host?); nothing was submitted"
        ) from None
    return done.returncode, (done.stdout + done.stderr).strip()


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("*")]
    return lines[0] if lines else "no output"


def check_slurm(partition: str | None = None, timeout_s: float = 20) -> str:
    """Prove that Slurm can take this run's jobs; the partition they go to.

    The controller must answer (``scontrol ping``), and the partition
    (``partition``, else the cluster's default one) must be up with at least
    one node that can start a job. Anything else is one
    :class:`LeadRecoveryError` line naming what is wrong.
    """
    for program in ("sbatch", "squeue", "scontrol", "sinfo"):
        if shutil.which(program) is None:
            raise LeadRecoveryError(
                f"slurm: {program} not found on PATH (this host needs Slurm's client "
                "commands and its slurm.conf); nothing was submitted"
            )
    code, out = _run(["scontrol", "ping"], timeout_s)
    if code != 0 or " is UP" not in out:
        conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
        raise LeadRecoveryError(
            f"slurm: the controller does not answer (scontrol ping: {_first_line(out)}; "
            f"configuration {conf}); nothing was submitted"
        )
    code, out = _run(["sinfo", "--noheader", "--format=%P|%a|%T|%D"], timeout_s)
    if code != 0:
        raise LeadRecoveryError(f"slurm: sinfo failed: {_first_line(out)}; nothing was submitted")
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3]
    names = sorted({name.rstrip("*") for name, *_ in rows})
    chosen = partition or next((n.rstrip("*") for n, *_ in rows if n.endswith("*")), None)
    if chosen is None:
        raise LeadRecoveryError(
            "slurm: the cluster has no default partition; name one as slurm_partition in "
            f"the profile's default-resources (partitions: {', '.join(names) or 'none'})"
        )
    mine = [row for row in rows if row[0].rstrip("*") == chosen]
    if not mine:
        raise LeadRecoveryError(
            f"slurm: no partition '{chosen}' (partitions: {', '.join(names) or 'none'}); "
            "nothing was submitted"
        )
    if all(avail != "up" for _, avail, _, _ in mine):
        raise LeadRecoveryError(
            f"slurm: partition '{chosen}' is {mine[0][1]}; nothing was submitted"
        )
    usable = [
        row
        for row in mine
        if not row[2].endswith("*") and row[2].rstrip("~#!%$@^-+") not in _UNUSABLE
    ]
    if not usable:
        states = ", ".join(f"{count} {state}" for _, _, state, count in mine)
        raise LeadRecoveryError(
            f"slurm: partition '{chosen}' has no node that can start a job ({states}); "
            "nothing was submitted"
        )
    return chosen


def watch_slurm(
    lost_after_s: float,
    on_lost: Callable[[str], None],
    *,
    every_s: float | None = None,
    timeout_s: float = 20,
) -> threading.Thread:
    """Ask the controller (``scontrol ping``) while the run lasts; once it has not
    answered for ``lost_after_s``, call ``on_lost`` with the one-line reason, once.

    A daemon thread of the submitting process: it ends with the run.
    """
    every = every_s if every_s is not None else max(1.0, min(30.0, lost_after_s / 3))

    def watch() -> None:
        answered = time.monotonic()
        while True:
            time.sleep(every)
            try:
                code, out = _run(["scontrol", "ping"], timeout_s)
                up, said = code == 0 and " is UP" in out, _first_line(out)
            except LeadRecoveryError as err:
                up, said = False, str(err)
            if up:
                answered = time.monotonic()
            elif time.monotonic() - answered >= lost_after_s:
                on_lost(
                    f"slurm: the controller stopped answering during the run ({said}) "
                    f"for {lost_after_s:.0f} s; stopping the run: jobs already running "
                    "may still finish, and the next run decides their days again"
                )
                return

    thread = threading.Thread(target=watch, name="lead-recovery-slurm-watch", daemon=True)
    thread.start()
    return thread
