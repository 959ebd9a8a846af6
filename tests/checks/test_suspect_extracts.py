"""Upstream data late: an extract that fails its recipe's ``expect:`` is kept for
inspection but not marked, the run exits non-zero saying ``suspect: <reason>``, and the
next run (after the rows arrived) queries again and marks the day."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb

from tests.support.workflow import DEMO_DB, clean_env

SQL = "SELECT lead_id, phone FROM late_leads WHERE loaded_on <= :run_date::date"
# The markers, the extracts and what the runs print are what these tests read: runs that
# succeed stop at the extract (a failing one fails there: its expect: checks).
UNTIL = ("--until", "redshift_extract")
META = {"output_columns": ["lead_id"], "expect": {"min_rows": 5, "not_null": ["phone"]}}


def load(workflow, first: int, count: int) -> None:
    with duckdb.connect(str(workflow.root / DEMO_DB)) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS late_leads (lead_id INT, phone TEXT, loaded_on DATE)"
        )
        db.executemany(
            "INSERT INTO late_leads VALUES (?, '555-0100', DATE '2025-05-01')",
            [(i,) for i in range(first, first + count)],
        )


def test_a_late_upstream_goes_from_suspect_to_marked(workflow):
    workflow.add_recipe("late", sql=SQL, meta=META)
    load(workflow, 0, 2)  # the 06:00 run: the upstream load has not finished
    config = {"recipe": "late", "date": "20250512"}

    early = workflow.run(config=config, ok=False)

    assert "suspect: 2 rows where at least 5 were expected" in early.output
    assert "late 20250512 failed" in early.output  # the account says so
    assert not workflow.marker("late", "20250512").exists()
    assert not workflow.leads("late", "20250512").exists()
    kept = workflow.leads("late", "20250512").with_name("suspect.parquet")
    assert kept.is_file()  # kept for inspection

    accepted = workflow.run(*UNTIL, config={**config, "date": "20250513", "accept_suspect": True})
    assert accepted.queries == 1
    marker = json.loads(workflow.marker("late", "20250513").read_text())
    assert marker["rows"] == 2 and marker["suspect"] == ["2 rows where at least 5 were expected"]

    load(workflow, 2, 10)  # the load finished
    later = workflow.run(*UNTIL, config=config)

    assert later.queries == 1
    assert json.loads(workflow.marker("late", "20250512").read_text())["rows"] == 12
    assert workflow.run(*UNTIL, config=config).queries == 0  # marked: the day is paid for

    shown = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "report", "--json"],
        cwd=workflow.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    late = json.loads(shown.stdout)["recipes"]["late"]
    assert (late["suspect"], late["queries"], late["avoided"]) == (1, 2, 1)


def test_markers_create_force_accepts_a_suspect_extract(workflow):
    workflow.add_recipe("late", sql=SQL, meta=META)
    load(workflow, 0, 2)
    workflow.run(config={"recipe": "late", "date": "20250512"}, ok=False)

    created = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "markers", "create", "late"]
        + ["--date", "20250512", "--force"],
        cwd=workflow.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert created.returncode == 0, created.stderr
    assert "accepted the suspect extract" in created.stdout
    assert json.loads(workflow.marker("late", "20250512").read_text())["rows"] == 2
    # the next run would not query: the day is marked
    assert workflow.run("-n", config={"recipe": "late", "date": "20250512"}).queries == 0


def test_a_forced_requery_that_comes_back_suspect_keeps_the_marked_day(workflow):
    workflow.add_recipe("late", sql=SQL, meta=META)
    load(workflow, 0, 12)
    config = {"recipe": "late", "date": "20250512"}
    workflow.run(*UNTIL, config=config)
    marker, leads = workflow.marker("late", "20250512"), workflow.leads("late", "20250512")
    before = (marker.read_bytes(), leads.read_bytes())
    with duckdb.connect(str(workflow.root / DEMO_DB)) as db:
        db.execute("DELETE FROM late_leads WHERE lead_id > 1")  # upstream half-reloaded

    forced = workflow.run(config={**config, "ignore_redshift_marker": True}, ok=False)

    assert "suspect: 2 rows where at least 5 were expected" in forced.output
    assert (marker.read_bytes(), leads.read_bytes()) == before  # the paid-for day survives
    assert workflow.run(*UNTIL, config=config).queries == 0
