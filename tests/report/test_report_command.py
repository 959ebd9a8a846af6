"""``lead-recovery report``: how it is called, and what it does with a history it did not
write."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.support.workflow import REPO, clean_env

RECIPE = "simulation_to_handoff"


def at(day: str) -> dict[str, str]:
    return {"LEAD_RECOVERY_NOW": f"{day[:4]}-{day[4:6]}-{day[6:]}T09:00:00+00:00", "TZ": "UTC"}


def report(
    workflow, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "report", *args],
        cwd=workflow.root,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The figures checked against real runs: tests/report/test_report_page.py (with the
# page), and against the queries the test server saw: tests/redshift/test_report_at_server.py.


def test_a_bad_since_is_one_line_and_exit_2(workflow):
    shown = report(workflow, "--since", "yesterday", env=at("20250513"))
    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and "--since" in shown.stderr


def test_foreign_history_lines_are_one_warning_in_the_table_the_json_and_the_page(
    workflow, tmp_path
):
    """Lines another tool (or a hand) left in the history: each of these failed the
    report before; now each is skipped and counted, and a recipe name that reads as
    mathtext is drawn and shown as written."""
    odd = "$\\foo{$"
    good = {
        "at": "2026-12-07T06:00:00+00:00",
        "recipe": RECIPE,
        "run_date": "20261207",
        "decision": "queried",
        "reason": "12 rows, 0.50 s",
        "rows": 12,
        "seconds": 0.5,
        "warehouse": "duckdb",
        "user_at_host": "ana@etl-1",
        "run_id": "run1",
    }
    bad = [
        {"at": 5},
        {"at": "2026-12-07T06:00:00"},
        {"seconds": "abc"},
        {"rows": "12x"},
        {"run_date": "2026-12-07"},
    ]
    lines = [good, {**good, "recipe": odd}] + [{**good, **change} for change in bad]
    month = workflow.root / "results/markers/.history/202612"
    month.mkdir(parents=True)
    planted = month / "20261207T060000-run1-1.jsonl"
    planted.write_text("".join(json.dumps(line) + "\n" for line in lines))
    warning = (
        f"skipped 5 unreadable history lines in {planted.relative_to(workflow.root)} "
        '(line 3: "at" is not a time)'
    )

    shown = report(workflow, env=at("20261207"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines() == [warning]
    assert [line.split()[:3] for line in shown.stdout.splitlines()[2:]] == [
        [odd, "1", "0"],
        [RECIPE, "1", "0"],
        ["TOTAL", "2", "0"],
    ]

    as_json = report(workflow, "--json", env=at("20261207"))
    assert as_json.returncode == 0 and as_json.stderr.splitlines() == [warning]
    figures = json.loads(as_json.stdout)
    assert figures["skipped_lines"] == 5 and figures["total"]["queries"] == 2
    assert figures["total"]["seconds_spent"] == 1.0

    page = tmp_path / "page.html"
    made = report(workflow, "--html", str(page), env=at("20261207"), timeout=180)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[0] == warning and len(made.stderr.splitlines()) == 2
    assert page.stat().st_size > 100_000
    account = (workflow.root / "results/report/account.html").read_text(encoding="utf-8")
    assert f"<td>{odd}</td>" in account  # in the totals, as written
    landing = yaml.safe_load((workflow.root / "results/report/report_metadata.yaml").read_text())
    assert landing["unreadable history lines skipped"] == 5


def test_html_must_name_an_html_file_in_an_existing_folder(workflow, tmp_path):
    for given, why in [
        (str(tmp_path / "page.pdf"), "must end in .html"),
        (str(tmp_path / "no/such/page.html"), "no folder"),
    ]:
        shown = report(workflow, "--html", given, env=at("20250513"))
        assert shown.returncode == 2 and shown.stdout == ""
        assert shown.stderr.count("\n") == 1 and why in shown.stderr
    assert not (workflow.root / "results/report").exists()  # bad input touches nothing


def test_git_ignores_the_report_pages_wherever_they_are_written_by_default():
    """`report --html` writes results/report/report.html; `snakemake --report` (no file)
    writes report.html in the checkout's root: neither is a file to commit."""
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", "results/report/report.html", "report.html"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert checked.stdout.split() == ["results/report/report.html", "report.html"]
