"""Every run ends with an account of what it did for each recipe and date."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd

from lead_recovery import account
from tests.support.workflow import REPO, clean_env

DAY = "20250512"


def account_of(output: str) -> list[str]:
    """The lines after Snakemake's own output: the account printed last."""
    tail = output.split("lead-recovery: what this run did")[-1].splitlines()[1:]
    return [line for line in tail if line.strip()]


def test_normal_cached_and_failing_runs_each_end_with_their_account(workflow):
    first = workflow.run(config={"date": DAY})
    lines = account_of(first.output)
    assert re.fullmatch(
        r"manual_leads 20250512 skipped \(no redshift\.sql; .*leads\.csv\)", lines[0]
    )
    assert re.fullmatch(r"simulation_to_handoff 20250512 queried \(\d+ rows, [\d.]+ s\)", lines[1])
    assert lines[2] == (
        "total: 2 recipe-days: 1 queried, 0 cached, 1 skipped, 0 failed; 0 queries avoided"
    )
    assert first.output.rstrip().endswith(lines[2])  # printed last

    cached = account_of(workflow.run(config={"date": DAY}).output)
    assert re.fullmatch(r"simulation_to_handoff 20250512 cached \(queried at .+\)", cached[1])
    assert cached[2].endswith("0 failed; 1 query avoided")

    workflow.add_recipe("broken_sql", sql="SELECT no_such_column FROM leads")
    failing = workflow.run(config={"date": DAY}, ok=False)
    lines = account_of(failing.output)
    assert lines[0].startswith(f"broken_sql {DAY} failed: recipe 'broken_sql': query failed: ")
    assert "no_such_column" in lines[0]
    assert lines[-1].endswith("1 cached, 1 skipped, 1 failed; 1 query avoided")


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
        account.Line("c", DAY, "cached", "queried at y"),
        account.Line("d", DAY, "failed", "recipe 'd': boom"),
    ]
    assert account.render(lines) == [
        "a 20250512 queried (3 rows, 0.10 s)",
        "b 20250512 cached (queried at x)",
        "c 20250512 cached (queried at y)",
        "d 20250512 failed: recipe 'd': boom",
        "total: 4 recipe-days: 1 queried, 2 cached, 0 skipped, 1 failed; 2 queries avoided",
    ]


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
