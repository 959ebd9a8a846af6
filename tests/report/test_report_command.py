"""``lead-recovery report``: how it is called."""

from __future__ import annotations

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


# The figures checked against real runs: tests/report/test_report_page.py (with the
# page), and against the queries the test server saw: tests/redshift/test_report_at_server.py.


def test_a_bad_since_is_one_line_and_exit_2(workflow):
    shown = report(workflow, "--since", "yesterday", env=at("20250513"))
    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and "--since" in shown.stderr
