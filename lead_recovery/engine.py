"""Every use of Snakemake's internals, in one place (Snakemake pinned at 9.27.1).

The workflow needs a few things Snakemake's documented API does not offer:
to add files to ``--forcerun``'s set while the DAG is built (the Snakefile is
read before that set is), to read what the command line forced, which jobs
a run will run, whether a run is real (not a dry run or a report), to
clear the lock a killed run left behind, and to keep Snakemake's status lines
off a quiet run's console. Each is one function here, and
``tests/unit/test_engine.py`` runs each against the pinned Snakemake: an
upgrade that moves any of them fails there, not in a user's cron.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

PINNED = "9.27.1"


def version() -> str:
    from snakemake import __version__

    return str(__version__)


def signature_once(function: Callable[..., Any]) -> Callable[..., Any]:
    """Snakemake reads an input function's signature at every call (a thousand recipes:
    thousands of calls); remember it once, as snakemake.ioutils does."""
    from snakemake.common import get_function_params, overwrite_function_params

    overwrite_function_params(function, get_function_params(function))
    return function


def configfiles(workflow: Any) -> list[str]:
    """The config files this invocation read (``configfile:`` and ``--configfile``)."""
    return [str(f) for f in workflow.configfiles]


def is_main(workflow: Any) -> bool:
    """The invocation's own process (not a cluster job re-reading the workflow)."""
    return bool(workflow.is_main_process)


def executing(workflow: Any) -> bool:
    """Whether this process runs jobs (or a dry run of them): not ``--list``, ``--lint``
    or a report, which read the workflow without an executor."""
    return workflow.executor_plugin is not None


def dry_run(workflow: Any) -> bool:
    return executing(workflow) and bool(workflow.dryrun)


def real_run(workflow: Any) -> bool:
    """A run that may write: the main process, an executor, not a dry run."""
    return is_main(workflow) and executing(workflow) and not workflow.dryrun


def takes_lock(workflow: Any) -> bool:
    """A real run that takes Snakemake's lock (not ``--nolock``)."""
    return real_run(workflow) and bool(workflow.execution_settings.lock)


def hooks_off(workflow: Any) -> bool:
    """``--no-hooks``: onstart and onsuccess/onerror do not run."""
    return bool(workflow.execution_settings.no_hooks)


def clear_stale_lock(workflow: Any) -> bool:
    """Remove Snakemake's lock files of this working directory; ``True`` if there were.

    Only for a caller that knows no live run holds the checkout (it holds the
    checkout's own lock): a killed run's lock is what is left.
    """
    locks = os.path.join(workflow.persistence.path, "locks")
    try:
        present = any(name.endswith(".lock") for name in os.listdir(locks))
    except OSError:
        present = False
    if present:
        workflow.persistence.cleanup_locks()
    os.makedirs(locks, exist_ok=True)
    return present


def forced_on_cli(workflow: Any, rule: str) -> tuple[bool, set[str]]:
    """``(every job of rule, files)`` that ``-F``, ``-R rule`` or ``--forcerun`` forced.

    Read before the workflow adds its own forced files (:func:`force`).
    """
    dag = workflow.dag
    everything = any(getattr(r, "name", r) == rule for r in dag.forcerules)  # -F: every rule
    return everything, {str(f) for f in dag.forcefiles}


def force(workflow: Any, paths: Iterable[str]) -> None:
    """Make Snakemake rerun the jobs producing ``paths``: exactly where ``--forcerun
    <file>`` puts its files (``--forcerun`` itself is read before the Snakefile)."""
    workflow.dag.forcefiles.update(str(p) for p in paths)


def only_rule_all(workflow: Any) -> bool:
    """Whether rule all is this run's only target (every selected day is then in the DAG)."""
    dag = workflow.dag
    return (
        not dag.targetfiles
        and not workflow.dag_settings.target_jobs
        and [rule.name for rule in dag.targetrules] == ["all"]
    )


def jobs_to_run(workflow: Any) -> set[tuple[str, str | None, str | None]]:
    """``(rule, recipe, date)`` of every job this run runs (known once the DAG is built)."""
    return {
        (job.rule.name, job.wildcards_dict.get("recipe"), job.wildcards_dict.get("date"))
        for job in workflow.dag.needrun_jobs(exclude_finished=False)
    }


def rules_in_dag(workflow: Any) -> set[str]:
    return {job.rule.name for job in workflow.dag.jobs}


def executor_name(workflow: Any) -> str | None:
    plugin = workflow.executor_plugin
    return None if plugin is None else str(plugin.name)


def default_resource(workflow: Any, name: str) -> str | None:
    """A value of the run's ``--default-resources`` (the profile's) as written, or None."""
    resources = workflow.resource_settings.default_resources
    value = resources.get(name) if resources is not None else None
    value = str(getattr(value, "raw", value) or "").strip("'\"")
    return value or None


# Snakemake's status lines, plain INFO records that no --quiet choice hides: two per
# scheduling round (a catch-up's hundred lines), and the run's set-up and timing.
# Matched by text: an upgrade that rewords one only shows it again.
STATUS_LINES = re.compile(
    r"Select jobs to execute\.\.\.|Execute \d+ jobs\.\.\.|Building DAG of jobs\.\.\."
    r"|Assuming unrestricted shared filesystem usage\.|Using shell: .*"
    r"|Conda environments: ignored|Nothing to be done \(all requested files are present "
    r"and up to date\)\.|Complete log\(s\): .*|Elapsed time: .*"
)


def hide_status_lines(workflow: Any) -> bool:
    """In a run quiet about its jobs (``--quiet rules``, as profiles/default sets), keep
    :data:`STATUS_LINES` off the console too (Snakemake's log file under .snakemake/log/
    keeps them); whether it did. Warnings and errors are never hidden."""
    from snakemake.settings.enums import Quietness

    quiet = workflow.output_settings.quiet or set()
    if Quietness.RULES not in quiet and Quietness.ALL not in quiet:
        return False
    consoles = [
        handler
        for handler in logging.getLogger("snakemake.logging").handlers
        if handler.name == "DefaultStreamHandler"
    ]
    for handler in consoles:
        handler.addFilter(_not_a_status_line)
    return bool(consoles)


def _not_a_status_line(record: logging.LogRecord) -> bool:
    return record.levelno != logging.INFO or not STATUS_LINES.fullmatch(record.getMessage())
