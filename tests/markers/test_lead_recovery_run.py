"""The seed's commands, as written in its "Command-Line Options" and "Utility
Script" sections, run the Snakemake workflow (``markers`` in place of
``./test_marker_system.py``)."""

import json
import re
from collections import Counter

import pytest

from tests.unit.test_cli_decisions import BAD_RUN_END_TO_END

RECIPE = "simulation_to_handoff"
DAY = "20250512"
ENV = {"LEAD_RECOVERY_NOW": "2025-05-12T10:00:00+00:00", "TZ": "UTC"}  # conftest's clock
_JOB_RE = re.compile(r"^(?:local)?rule (\w+):$", re.MULTILINE)


def queries(result):
    """How many redshift_extract jobs Snakemake ran, as tests/conftest.py counts them."""
    return Counter(_JOB_RE.findall(result.output))["redshift_extract"]


def test_the_seeds_commands_as_written(workflow, lead_recovery, helper):
    """Every command of REDSHIFT_MARKER_SYSTEM.md, in order, with the effect it describes."""
    # Normal run - queries once, then uses the cached data because the marker exists
    first = lead_recovery("run", "--recipe", RECIPE)
    assert first.returncode == 0, first.output[-3000:]
    assert queries(first) == 1
    assert workflow.marker(RECIPE, DAY).is_file() and workflow.leads(RECIPE, DAY).is_file()
    again = lead_recovery("run", "--recipe", RECIPE)
    assert again.returncode == 0 and queries(again) == 0
    assert "marker counts" in again.output

    # Force fresh Redshift query - ignores existing marker
    before = json.loads(workflow.marker(RECIPE, DAY).read_text())
    forced = lead_recovery("run", "--recipe", RECIPE, "--ignore-redshift-marker")
    assert forced.returncode == 0 and queries(forced) == 1
    assert json.loads(workflow.marker(RECIPE, DAY).read_text())["run_id"] != before["run_id"]

    # Skip Redshift entirely - doesn't check or create markers
    workflow.marker(RECIPE, DAY).unlink()
    skipped = lead_recovery("run", "--recipe", RECIPE, "--skip-redshift")
    assert skipped.returncode == 0, skipped.output[-3000:]
    assert queries(skipped) == 0
    assert not workflow.marker(RECIPE, DAY).exists()

    # Utility script: list, check, create, delete
    assert "no markers" in helper("--action", "list").stdout
    assert helper("--recipe", RECIPE, "--action", "check").returncode == 1
    assert helper("--recipe", RECIPE, "--action", "create").returncode == 0
    assert helper("--recipe", RECIPE, "--action", "check").returncode == 0
    assert "COUNTS" in helper("--action", "list").row(RECIPE, DAY)
    # what the next run does after create and delete is Snakemake's dry run (the real
    # runs above showed the query and the cache; tests/markers/test_markers_workflow.py
    # runs Snakemake after each of the helper's commands)
    assert workflow.run("-n", config={"recipe": RECIPE}, env=ENV).queries == 0
    assert helper("--recipe", RECIPE, "--action", "delete").returncode == 0
    assert workflow.run("-n", config={"recipe": RECIPE}, env=ENV).queries == 1


def test_console_script_and_all_recipes(workflow, lead_recovery):
    """The console script, without --recipe: every recipe. What Snakemake plans is its
    dry run; real runs of every recipe: tests/cron/test_cron_runs.py and the seed's."""
    before = workflow.snapshot()

    result = lead_recovery("run", "--date", "20250510", "-n", via="console")

    assert result.returncode == 0, result.output[-3000:]
    assert "snakemake -n --config date=20250510" in result.stderr
    assert queries(result) == 1
    assert Counter(_JOB_RE.findall(result.output))["analyze"] == 2
    for name in ("manual_leads", RECIPE):
        analysis = workflow.analysis(name, "20250510").relative_to(workflow.root)
        assert str(analysis) in result.output
    assert workflow.snapshot() == before


def test_dry_run_and_snakemake_arguments_pass_through(workflow, lead_recovery):
    before = workflow.snapshot()

    result = lead_recovery("run", "--recipe", RECIPE, "-n", "--", "--quiet", "rules")

    assert result.returncode == 0, result.output[-3000:]
    assert "snakemake -n --quiet rules --config recipe=simulation_to_handoff" in result.stderr
    assert workflow.snapshot() == before


def test_config_passed_through_is_not_dropped(workflow, lead_recovery):
    """``-- --config`` merges with run's own (tests/unit/test_passthrough.py: each form)."""
    result = lead_recovery("run", "--recipe", RECIPE, "-n", "--", "--config", "date=20250510")

    assert result.returncode == 0, result.output[-3000:]
    assert "snakemake -n --config recipe=simulation_to_handoff date=20250510" in result.stderr
    assert queries(result) == 1
    assert f"results/{RECIPE}/20250510/leads.parquet" in result.output  # not today's, {DAY}
    assert f"results/{RECIPE}/{DAY}/" not in result.output


def test_snakemakes_exit_status_is_passed_through(workflow, lead_recovery):
    workflow.add_recipe("broken_sql", sql="SELECT no_such_column FROM no_such_table")

    failed = lead_recovery("run", "--recipe", "broken_sql")
    usage = lead_recovery("run", "--recipe", RECIPE, "--", "--no-such-snakemake-flag")

    assert failed.returncode == 1
    assert "broken_sql" in failed.output
    assert not workflow.marker("broken_sql", DAY).exists()
    assert usage.returncode == 2  # Snakemake's own usage error


def test_help_lists_the_flags(lead_recovery):
    result = lead_recovery("run", "--help")

    assert result.returncode == 0
    for flag in ("--recipe", "--ignore-redshift-marker", "--skip-redshift", "--date", "-n"):
        assert flag in result.stdout
    assert "ignore_redshift_marker=true" in result.stdout  # the Snakemake equivalent


def test_one_command_lists_its_subcommands_with_examples(lead_recovery):
    result = lead_recovery("--help", via="console")

    assert result.returncode == 0, result.output
    for command in ("run", "markers", "cron"):
        assert re.search(rf"^  {command}\s", result.stdout, re.MULTILINE), command
    assert "Examples:" in result.stdout
    for sub in ("run", "markers", "cron"):
        shown = lead_recovery(sub, "--help", via="console")
        assert shown.returncode == 0 and "Examples:" in shown.stdout, sub


def test_without_the_dependencies_it_says_how_to_run_it(workflow, user_env):
    """A Python without the venv's packages (here: -S, no site-packages) gets one line."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for cmd in (
        [sys.executable, "-S", "-m", "lead_recovery.cli.main", "run", "--recipe", RECIPE],
        [sys.executable, "-S", str(repo / "workflow/scripts/markers.py"), "--action", "list"],
        [sys.executable, "-S", str(repo / "workflow/scripts/cron.py")],
    ):
        proc = subprocess.run(
            cmd, cwd=repo, env=user_env(), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0
        [line] = proc.stderr.splitlines()
        assert "not installed" in line and "make run" in line and ".venv/bin/lead-recovery" in line
        assert proc.stdout == ""


def test_markers_subcommand(workflow, lead_recovery):
    result = lead_recovery("markers", "--action", "list")

    assert result.returncode == 0 and "no markers" in result.stdout


# Every bad input's line, in process: tests/unit/test_cli_decisions.py (BAD_RUN); one of
# each kind here, as users start it.
@pytest.mark.parametrize(("args", "expected"), BAD_RUN_END_TO_END)
def test_bad_input(workflow, lead_recovery, args, expected):
    before = workflow.snapshot()

    result = lead_recovery(*args)

    assert result.returncode == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("lead-recovery: error: ") and expected in line
    assert workflow.snapshot() == before
