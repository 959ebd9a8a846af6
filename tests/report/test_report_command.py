"""``lead-recovery report`` after a few days of real runs: its figures match what the
runs did (queries counted from the jobs Snakemake ran) and what the markers recorded."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.workflow import clean_env

RECIPE = "simulation_to_handoff"


def at(day: str) -> dict[str, str]:
    return {"LEAD_RECOVERY_NOW": f"{day[:4]}-{day[4:6]}-{day[6:]}T09:00:00+00:00", "TZ": "UTC"}


def report(workflow, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "report", *args],
        cwd=workflow.root,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_report_adds_up_queries_run_and_avoided_and_their_warehouse_time(workflow):
    runs = [
        workflow.run(env=at("20250512")),
        workflow.run(env=at("20250512")),  # cached
        workflow.run(env=at("20250513")),
        workflow.run(config={"ignore_redshift_marker": True}, env=at("20250513")),
    ]
    queried = sum(r.queries for r in runs)
    first = json.loads(workflow.marker(RECIPE, "20250512").read_text())
    last = json.loads(workflow.marker(RECIPE, "20250513").read_text())

    shown = report(workflow, "--since", "7d", "--json", env=at("20250513"))

    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    ours = figures["recipes"][RECIPE]
    assert queried == 3 and ours["queries"] == 3
    assert ours["avoided"] == 1
    assert ours["seconds_avoided"] == first["duration_s"]  # what the reused marker had cost
    assert ours["seconds_spent"] >= first["duration_s"] + last["duration_s"]
    assert ours["rows"] == first["rows"] + 2 * last["rows"]
    assert figures["recipes"]["manual_leads"]["skipped"] == 4
    assert figures["total"]["queries"] == 3 and figures["total"]["failures"] == 0

    table = report(workflow, env=at("20250513"))
    assert table.returncode == 0
    total = next(line for line in table.stdout.splitlines() if line.startswith("TOTAL"))
    assert total.split()[1:3] == ["3", "1"]

    later = report(workflow, "--since", "20250513", "--json", env=at("20250513"))
    assert json.loads(later.stdout)["total"]["queries"] == 2  # only the 13th's runs


def test_a_bad_since_is_one_line_and_exit_2(workflow):
    shown = report(workflow, "--since", "yesterday", env=at("20250513"))
    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and "--since" in shown.stderr
