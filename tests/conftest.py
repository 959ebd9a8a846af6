"""Shared fixtures: temporary copies of the real workflow (tests/support/workflow.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.workflow import DEMO_DB, REPO, WorkflowCopy, copy_workflow


@pytest.fixture(scope="session")
def demo_warehouse_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo warehouse, built once per session with the workflow's own settings."""
    from lead_recovery.warehouse import demo

    settings = yaml.safe_load((REPO / "config/config.yaml").read_text())["duckdb"]
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
