"""Fixtures for the marker helper's tests: run ``markers`` as a user does.

The helper runs as a subprocess (the installed ``markers`` console script),
with its working directory in a temporary copy of the workflow, the same
clean environment as the Snakemake runs, and the clock pinned with
``LEAD_RECOVERY_NOW``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

NOW = "2025-05-12T10:00:00+00:00"
DAY = "20250512"
ENV = {"LEAD_RECOVERY_NOW": NOW, "TZ": "UTC"}
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def helper_command(via: str = "console") -> list[str]:
    """The ways a user starts the helper."""
    if via == "console" and (BIN / "markers").exists():
        return [str(BIN / "markers")]
    if via == "script":
        return [sys.executable, str(REPO / "workflow/scripts/markers.py")]
    return [sys.executable, "-m", "lead_recovery.cli.markers"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        return json.loads(self.stdout)

    def row(self, recipe: str, day: str) -> str:
        """The ``list`` table line of one marker."""
        for line in self.stdout.splitlines():
            if line.startswith(recipe + " ") and f" {day}" in line:
                return line
        raise AssertionError(f"no line for {recipe} {day} in:\n{self.stdout}")


def run_command(cmd, cwd, clean_env, env=None, timeout=300) -> Result:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=clean_env(**{**ENV, **(env or {})}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def user_env(workflow):
    """``clean_env`` from tests/support/workflow.py, the environment Snakemake runs get."""
    from tests.support.workflow import clean_env

    return clean_env


@pytest.fixture
def helper(workflow, user_env):
    """``helper("list", "--json")`` runs ``markers list --json`` in the workflow copy."""

    def run(*args: str, env: dict | None = None, cwd: Path | None = None, via: str = "console"):
        return run_command(
            [*helper_command(via), *args], cwd or workflow.root, user_env, env, timeout=60
        )

    return run


@pytest.fixture
def lead_recovery(workflow, user_env):
    """``lead_recovery("run", "--recipe", R)`` runs the seed-compatible command."""

    def run(*args: str, env: dict | None = None, via: str = "module"):
        if via == "console":
            cmd = [str(BIN / "lead-recovery"), *args]
        else:
            cmd = [sys.executable, "-m", "lead_recovery.cli.main", *args]
        return run_command(cmd, workflow.root, user_env, env)

    return run


@pytest.fixture
def cache(workflow):
    """Write a day's cached extract (``leads.parquet``) with ``rows`` rows."""

    def write(recipe: str, day: str = DAY, rows: int = 3) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = workflow.leads(recipe, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"lead_id": list(range(rows))}), path)
        return path

    return write


@pytest.fixture
def set_config(workflow):
    """Change keys of the copy's config/config.yaml."""

    def update(**changes) -> None:
        path = workflow.root / "config/config.yaml"
        config = yaml.safe_load(path.read_text())
        config.update(changes)
        path.write_text(yaml.safe_dump(config))

    return update
