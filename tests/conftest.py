"""Shared fixtures: temporary copies of the real workflow (tests/support/workflow.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lead_recovery import config as lr_config
from tests.support.workflow import DEMO_DB, REPO, WorkflowCopy, copy_workflow


@pytest.fixture(scope="session")
def demo_warehouse_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo warehouse, built once per session with the workflow's own settings."""
    from lead_recovery.warehouse import demo

    settings = lr_config.load(REPO)["duckdb"]
    path = tmp_path_factory.mktemp("warehouse") / "demo.duckdb"
    demo.build(path, settings["rows"], settings["seed"])
    return path


@pytest.fixture
def workflow(tmp_path: Path, demo_warehouse_file: Path) -> WorkflowCopy:
    """A fresh copy of the workflow with the demo warehouse already built."""
    copy = copy_workflow(tmp_path / "repo")
    db = copy.root / DEMO_DB
    db.parent.mkdir(parents=True)
    shutil.copy2(demo_warehouse_file, db)
    return copy


@pytest.fixture
def bare_workflow(tmp_path: Path) -> WorkflowCopy:
    """A copy of the workflow without a pre-built demo warehouse (as in a fresh clone)."""
    return copy_workflow(tmp_path / "repo")


@pytest.fixture(scope="session")
def _ran_templates(tmp_path_factory: pytest.TempPathFactory, demo_warehouse_file: Path):
    """Workflows that ran once with given settings, one per settings and test worker."""
    made: dict[str, WorkflowCopy] = {}

    def get(config: dict, env: dict) -> WorkflowCopy:
        key = json.dumps([config, env], sort_keys=True)
        if key not in made:
            template = copy_workflow(tmp_path_factory.mktemp("ran") / "repo")
            (template.root / DEMO_DB).parent.mkdir(parents=True)
            shutil.copy2(demo_warehouse_file, template.root / DEMO_DB)
            template.run(config=config, env=env)
            made[key] = template
        return made[key]

    return get


@pytest.fixture
def ran_before(_ran_templates):
    """``ran_before(workflow, config, env)``: ``workflow`` as if it had run once with those
    settings (results, logs, markers and Snakemake's metadata, times kept), copied from a
    run made once per test worker instead of running again for every test."""

    def fill(workflow: WorkflowCopy, config: dict, env: dict | None = None) -> WorkflowCopy:
        template = _ran_templates(config, env or {})
        shutil.copytree(template.root, workflow.root, symlinks=True, dirs_exist_ok=True)
        return workflow

    return fill


# The longest scenarios start first, so that the suite does not end with one worker
# running a long test alone: they head the first worker's queue (worksteal deals the
# queue out in this order), and the other workers steal the tests behind them.
SLOW_FIRST = (
    # mostly waiting for a real Slurm cluster: started first, they overlap the rest
    "test_slurm_runs.py::test_redshift_on_s3_through_slurm",
    "test_slurm_runs.py::test_demo_recipes_run_as_slurm_jobs",
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
