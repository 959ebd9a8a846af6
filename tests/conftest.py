"""Shared fixtures: temporary copies of the real workflow (tests/support/workflow.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from lead_recovery import config as lr_config
from tests.support.workflow import DEMO_DB, REPO, WorkflowCopy, copy_workflow


def _shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session sees (their basetemps' parent), so a
    costly set-up is made once per session, not once per worker: pytest-xdist's own
    recipe ("Making session-scoped fixtures execute only once"). Without xdist: the
    session's basetemp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``<shared>/<name>/``, made by ``make(folder)`` in the first worker that asks (the
    others wait for it) and only then marked complete: a failed set-up is not reused."""
    folder = _shared(tmp_path_factory) / name
    with FileLock(f"{folder}.lock"):
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def demo_warehouse_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo warehouse, built once per session with the workflow's own settings."""
    from lead_recovery.warehouse import demo

    settings = lr_config.load(REPO)["duckdb"]
    made = once(
        tmp_path_factory,
        "warehouse",
        lambda folder: demo.build(folder / "demo.duckdb", settings["rows"], settings["seed"]),
    )
    return made / "demo.duckdb"


def workflow_with_warehouse(root: Path, demo_warehouse_file: Path) -> WorkflowCopy:
    """A copy of the workflow at ``root`` with the demo warehouse already built."""
    copy = copy_workflow(root)
    db = copy.root / DEMO_DB
    db.parent.mkdir(parents=True)
    shutil.copy2(demo_warehouse_file, db)
    return copy


@pytest.fixture
def workflow(tmp_path: Path, demo_warehouse_file: Path) -> WorkflowCopy:
    """A fresh copy of the workflow with the demo warehouse already built."""
    return workflow_with_warehouse(tmp_path / "repo", demo_warehouse_file)


@pytest.fixture
def bare_workflow(tmp_path: Path) -> WorkflowCopy:
    """A copy of the workflow without a pre-built demo warehouse (as in a fresh clone)."""
    return copy_workflow(tmp_path / "repo")


@pytest.fixture(scope="session")
def ran_template(tmp_path_factory: pytest.TempPathFactory, demo_warehouse_file: Path):
    """``ran_template(config, env)``: a workflow that ran once with those settings, made
    once per session whichever worker asks first."""

    def get(config: dict, env: dict) -> WorkflowCopy:
        key = json.dumps([config, env], sort_keys=True)
        name = "ran-" + hashlib.sha256(key.encode()).hexdigest()[:12]

        def make(folder: Path) -> None:
            workflow_with_warehouse(folder / "repo", demo_warehouse_file).run(
                config=config, env=env
            )

        return WorkflowCopy(once(tmp_path_factory, name, make) / "repo")

    return get


@pytest.fixture
def ran_before(ran_template):
    """``ran_before(workflow, config, env)``: ``workflow`` as if it had run once with those
    settings (results, logs, markers and Snakemake's metadata, times kept), copied from a
    run made once per session instead of running again for every test."""

    def fill(workflow: WorkflowCopy, config: dict, env: dict | None = None) -> WorkflowCopy:
        template = ran_template(config, env or {})
        shutil.copytree(template.root, workflow.root, symlinks=True, dirs_exist_ok=True)
        return workflow

    return fill


# The longest scenarios start first, one or two per worker, so that the suite does not
# end with one worker running a long test alone. pytest-xdist's worksteal hands each
# worker a contiguous share of the collection, in order, and idle workers then steal
# from the end of the longest queue: the slow tests are dealt out round-robin to the
# heads of those shares (pytest_collection_modifyitems below).
SLOW_FIRST = (
    # mostly waiting for a real Slurm cluster: started first, they overlap the rest
    "test_slurm_runs.py::test_redshift_on_s3_through_slurm",
    "test_two_checkouts.py::test_two_checkouts_running_every_recipe_at_once",
    "test_two_checkouts.py::test_runs_under_random_kills_and_stalls",
    "test_shared_ground.py::test_a_run_stalled_past_its_lease",
    "test_slurm_runs.py::test_demo_recipes_run_as_slurm_jobs",
    "test_s3_helper_and_sharing.py::test_eight_runs_from_four_clones",
    "test_cron_permissions.py",
    "test_s3_credentials.py",
    "test_killed_requery.py",
    "test_failed_requery_keeps_the_day.py",
    "test_lead_recovery_run.py::test_the_seeds_commands_as_written",
    "test_freshness_workflow.py",
    "test_without_redshift.py::test_skip_redshift_never_queries",
    "test_freshness_at_server.py",
    "test_report_page.py",
    "test_report_at_server.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        for i, needle in enumerate(SLOW_FIRST):
            if needle in item.nodeid:
                return i
        return len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    slow = [item for item in items if rank(item) < len(SLOW_FIRST)]
    rest = items[len(slow) :]
    # the shares worksteal sends, in order: each a 1/workers of what is still pending
    shares, left = [], len(items)
    for i in range(workers):
        shares.append(left // (workers - i))
        left -= shares[-1]
    dealt: list[list] = [slow[i::workers] for i in range(workers)]
    ordered = []
    for size, heads in zip(shares, dealt, strict=True):
        ordered += heads
        take = max(size - len(heads), 0)
        ordered += rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest


# LEAD_RECOVERY_TEST_CPU=FILE: each test's CPU seconds (this worker's, the processes it
# reaped, and the runs of its preloaded Snakemake) appended to FILE, to see where the
# suite's time goes (the machines are CPU-bound: docs/design.md, "The suite's time").
_CPU_FILE = os.environ.get("LEAD_RECOVERY_TEST_CPU")
if _CPU_FILE:
    import resource

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        from tests.support import workflow as support

        def cpu() -> tuple[float, float, float]:
            own = resource.getrusage(resource.RUSAGE_SELF)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            preloaded = support._preloaded[0] if support._preloaded else None
            server = preloaded.cpu if preloaded is not None else 0.0
            return (own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime, server)

        before = cpu()
        yield
        after = cpu()
        spent = [round(b - a, 2) for a, b in zip(before, after, strict=True)]
        with open(_CPU_FILE, "a") as out:
            out.write(f"{sum(spent):.2f} {spent} {item.nodeid}\n")
