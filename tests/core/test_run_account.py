"""Every run ends with an account of what it did for each recipe and date."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, replace

import pandas as pd

from lead_recovery import account, history
from lead_recovery.cli import main as cli_main
from lead_recovery.store import FolderStore
from tests.support.workflow import REPO, clean_env

DAY = "20250512"


def account_of(output: str) -> list[str]:
    """The lines after Snakemake's own output: the account printed last."""
    tail = output.split("lead-recovery: what this run did")[-1].splitlines()[1:]
    return [line for line in tail if line.strip()]


def by_recipe(lines: list[str]) -> dict[str, str]:
    """The account's lines by recipe (the total under ``total``)."""
    return {line.split(" ", 1)[0].rstrip(":"): line for line in lines}


def test_normal_cached_and_failing_runs_each_end_with_their_account(workflow, capsys):
    workflow.add_recipe("empty_day", sql="SELECT lead_id FROM leads WHERE 1 = 0")
    first = workflow.run(config={"date": DAY})
    lines = by_recipe(account_of(first.output))
    assert re.fullmatch(
        r"manual_leads 20250512 skipped \(no redshift\.sql; .*leads\.csv\)", lines["manual_leads"]
    )
    assert re.fullmatch(
        r"simulation_to_handoff 20250512 queried \(\d+ rows, [\d.]+ s\)",
        lines["simulation_to_handoff"],
    )
    # an empty result says so on its line
    assert re.fullmatch(
        r"empty_day 20250512 queried \(0 rows, [\d.]+ s; empty result\)", lines["empty_day"]
    )
    assert lines["total"] == (
        "total: 3 recipe-days: 2 queried, 0 cached, 1 skipped, 0 failed; 0 queries avoided"
    )
    assert first.output.rstrip().endswith(lines["total"])  # printed last

    cached = by_recipe(account_of(workflow.run(config={"date": DAY}).output))
    assert re.fullmatch(
        r"simulation_to_handoff 20250512 cached \(queried at \S+\)", cached["simulation_to_handoff"]
    )
    assert re.fullmatch(
        r"empty_day 20250512 cached \(queried at \S+; empty result\)", cached["empty_day"]
    )
    assert cached["total"].endswith("0 failed; 2 queries avoided")

    workflow.add_recipe("broken_sql", sql="SELECT no_such_column FROM leads")
    # a query that ran stays counted when the analysis after it fails
    workflow.add_recipe(
        "wrong_columns",
        sql="SELECT lead_id FROM leads LIMIT 3",
        meta={"output_columns": ["lead_id", "score"]},
    )
    failing = workflow.run(config={"date": DAY}, ok=False)
    lines = by_recipe(account_of(failing.output))
    assert lines["broken_sql"].startswith(
        f"broken_sql {DAY} failed: recipe 'broken_sql': query failed: "
    )
    assert "no_such_column" in lines["broken_sql"]
    assert re.fullmatch(
        rf"wrong_columns {DAY} queried \(3 rows, [\d.]+ s\); analysis failed: recipe "
        r"'wrong_columns': output_columns names column\(s\) score that the data lacks "
        r"\(has: lead_id\)",
        lines["wrong_columns"],
    )
    assert lines["total"] == (
        "total: 5 recipe-days: 1 queried, 2 cached, 1 skipped, 1 failed; 2 queries avoided; "
        "1 analysis failed"
    )
    # the history (and so `lead-recovery report`) counts the query and the failure
    events = history.of_run(FolderStore(workflow.root / "results"), run_id(failing))
    [event] = [e for e in events if e.recipe == "wrong_columns"]
    assert (event.decision, event.rows) == ("queried", 3)
    assert event.analysis_failed.endswith("score that the data lacks (has: lead_id)")
    capsys.readouterr()
    assert (
        cli_main.main(["report", "--json", "--since", "20000101", "--repo", str(workflow.root)])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)["recipes"]
    assert (shown["wrong_columns"]["queries"], shown["wrong_columns"]["failures"]) == (1, 1)
    assert (shown["broken_sql"]["queries"], shown["broken_sql"]["failures"]) == (0, 1)
    assert (shown["empty_day"]["queries"], shown["empty_day"]["avoided"]) == (1, 2)


def run_id(result) -> str:
    return re.search(r"what this run did \(run id (\w+)\)", result.output).group(1)


def test_lead_recovery_run_prints_the_account_too(workflow):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lead_recovery.cli.main",
            "run",
            "--recipe",
            "manual_leads",
            "--date",
            DAY,
            "--repo",
            str(workflow.root),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert account_of(proc.stdout + proc.stderr)[-1].startswith("total: 1 recipe-day: ")


def test_the_account_counts_each_state_and_the_queries_avoided():
    lines = [
        account.Line("a", DAY, "queried", "3 rows, 0.10 s"),
        account.Line("b", DAY, "cached", "queried at x"),
        account.Line("c", DAY, "cached", "queried at y", analysis_failed="recipe 'c': bad"),
        account.Line(
            "d", DAY, "failed", "recipe 'd': boom; the previous extract and marker were kept"
        ),
        account.Line("e", DAY, "queried", "2 rows, 0.20 s", analysis_failed="recipe 'e': bad"),
    ]
    assert account.render(lines) == [
        "a 20250512 queried (3 rows, 0.10 s)",
        "b 20250512 cached (queried at x)",
        "c 20250512 cached (queried at y); analysis failed: recipe 'c': bad",
        "d 20250512 failed: recipe 'd': boom; the previous extract and marker were kept",
        "e 20250512 queried (2 rows, 0.20 s); analysis failed: recipe 'e': bad",
        "total: 5 recipe-days: 2 queried, 2 cached, 0 skipped, 1 failed; 2 queries avoided; "
        "2 analyses failed",
    ]
    # only markers really reused avoid a query: a failed day whose pair was kept does not
    assert account.render(lines[3:4])[-1].endswith("1 failed; 0 queries avoided")


def test_a_failed_analysis_keeps_the_days_state_in_its_history_event():
    line = account.Line("e", DAY, "queried", "2 rows, 0.20 s", rows=2, seconds=0.2)
    line = replace(line, analysis_failed="recipe 'e': bad")
    [event] = account.events([line])
    assert (event.decision, event.rows, event.analysis_failed) == ("queried", 2, "recipe 'e': bad")
    assert account.from_event(event) == replace(line, seconds=None)
    # an older line (no analysis_failed) still reads; a bad value is refused
    record = asdict(event)
    record.pop("analysis_failed")
    assert history.parse_line(json.dumps(record)).analysis_failed is None
    assert history.parse_line(json.dumps({**record, "analysis_failed": 3})) == (
        '"analysis_failed" is not text'
    )


def _readme_block(language: str, after: str) -> str:
    text = (REPO / "config" / "README.md").read_text()
    section = text[text.index(after) :]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_recipe_gives_every_lead_a_priority(workflow):
    """The example in config/README.md ("Writing a recipe"), run as written on the demo data."""
    meta = _readme_block("yaml", "## Writing a recipe")
    workflow.add_recipe(
        "readme_example",
        meta=meta,
        sql=_readme_block("sql", "## Writing a recipe"),
        analyzer=_readme_block("python", "## Writing a recipe"),
    )

    workflow.run(config={"recipe": "readme_example", "date": DAY})

    analysis = pd.read_csv(workflow.analysis("readme_example", DAY), dtype=str)
    assert len(analysis) > 100
    assert analysis["priority"].isin(["high", "medium", "low"]).all(), analysis[
        "priority"
    ].value_counts(dropna=False)
