"""``lead-recovery demo``: the demo warehouse's tables, and Redshift SQL tried on it.

In-process (``main([...])``) on a 200-row demo warehouse in a folder with the
workflow's config and schemas: no Snakemake.
"""

from __future__ import annotations

import shutil

import pytest

from lead_recovery import config as lr_config
from lead_recovery.cli.main import main
from lead_recovery.warehouse import demo
from tests.support.workflow import DEMO_DB, REPO


@pytest.fixture
def repo(tmp_path):
    for part in ("config", "workflow/schemas"):
        shutil.copytree(REPO / part, tmp_path / part)
    demo.build(tmp_path / DEMO_DB, 200, lr_config.load(REPO)["duckdb"]["seed"])
    return tmp_path


def test_tables_and_redshift_queries(repo, capsys):
    assert main(["demo", "--repo", str(repo)]) == 0
    tables = capsys.readouterr().out
    assert "leads (200 rows)" in tables
    assert "simulation_at  TIMESTAMP" in tables

    sql = repo / "q.sql"
    sql.write_text(
        "SELECT TOP 3 lead_id, NVL(email, 'none') AS email, :run_date AS day FROM leads "
        "ORDER BY lead_id"
    )
    assert main(["demo", str(sql), "--date", "20250512", "--repo", str(repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["lead_id", "email", "day"]
    assert lines[1].startswith("100000000") and lines[1].endswith("2025-05-12")
    assert lines[-1] == "# 3 row(s)"

    assert main(["demo", "SELECT lead_id FROM leads", "--limit", "2", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "# first 2 rows; --limit N for more"


def test_a_typo_or_no_warehouse_is_one_line(repo, capsys):
    assert main(["demo", "SELECT lead_id\nFORM leads", "--repo", str(repo)]) == 2
    assert capsys.readouterr().err == (
        "lead-recovery: error: query:2:6: syntax error near 'leads'\n"
    )

    (repo / DEMO_DB).unlink()
    assert main(["demo", "--repo", str(repo)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "no demo warehouse yet" in line and "snakemake demo_warehouse" in line
