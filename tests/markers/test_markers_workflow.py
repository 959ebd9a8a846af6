"""The helper agrees with Snakemake: what it lists, checks, creates and deletes is
what the next real ``snakemake`` run acts on (``RunResult.queries`` counts the
``redshift_extract`` jobs Snakemake ran)."""

import json

import pyarrow.parquet as pq
import pytest

from lead_recovery import markers
from lead_recovery.store import FolderStore

RECIPE = "simulation_to_handoff"
DAY = "20250512"
OLD = "20250505"
PINNED = {"LEAD_RECOVERY_NOW": "2025-05-12T10:00:00+00:00", "TZ": "UTC"}
ONE = {"recipe": RECIPE}


def run(workflow, *args, config=ONE, env=None):
    return workflow.run(*args, config=config, env={**PINNED, **(env or {})})


@pytest.fixture
def ran(workflow, ran_before):
    """A workflow copy after one real run of the recipe for today's run date."""
    return ran_before(workflow, ONE, PINNED)


def test_a_workflow_marker_is_listed_as_counting_and_after_delete_the_next_run_queries(ran, helper):
    [entry] = helper("list", "--json").json()
    check = helper("check", RECIPE)

    record = json.loads(ran.marker(RECIPE, DAY).read_text())
    assert entry["run_date"] == DAY and entry["format"] == "json"
    assert entry["rows"] == record["rows"] == pq.read_metadata(ran.leads(RECIPE, DAY)).num_rows
    assert entry["cache_present"] is True and entry["counts"] is True
    assert check.returncode == 0
    assert run(ran).queries == 0  # and Snakemake agrees

    deleted = helper("delete", RECIPE)

    assert deleted.returncode == 0, deleted.output
    assert helper("check", RECIPE).returncode == 1
    assert run(ran, "-n").queries == 1  # the next run would query (its dry run says)


def test_after_create_with_the_cache_present_the_next_run_does_not_query(ran, helper):
    ran.marker(RECIPE, DAY).unlink()
    assert run(ran, "-n").queries == 1  # without a marker Snakemake would query

    created = helper("create", RECIPE)
    result = run(ran)

    assert created.returncode == 0, created.output
    assert result.queries == 0
    assert result.jobs["analyze"] == 0  # the marker is dated like its data
    assert json.loads(ran.marker(RECIPE, DAY).read_text())["created_by"] == "markers create"


def test_delete_and_create_for_another_date_and_delete_all_dates(workflow, helper):
    since = {**ONE, "since": OLD}
    run(workflow, "--until", "redshift_extract", config={**since, "date": "20250506"})
    assert len(markers.list_markers(FolderStore(workflow.root / "results"))) == 2

    # what the next run would do is Snakemake's dry run: the query a missing marker
    # leads to is the same job as any other (tested above)
    helper("delete", RECIPE, "--date", OLD)
    assert run(workflow, "-n", config={**ONE, "date": OLD}).queries == 1

    helper("create", RECIPE, "--date", OLD)
    assert run(workflow, "-n", config={**ONE, "date": OLD}).queries == 0

    helper("delete", RECIPE, "--all-dates")
    assert markers.list_markers(FolderStore(workflow.root / "results")) == []
    assert run(workflow, "-n", config={**since, "date": "20250506"}).queries == 2


# Both timestamp forms read as legacy markers that count: tests/unit/test_cli_decisions.py
# (LEGACY) and tests/markers/test_markers_helper.py; one here against Snakemake.
@pytest.mark.parametrize("content", ["1747042200.0"])
def test_a_previous_systems_marker_spares_the_query(ran, helper, content):
    ran.marker(RECIPE, DAY).write_text(content)

    [entry] = helper("list", "--json").json()

    assert entry["format"] == "legacy" and entry["counts"] is True
    assert run(ran).queries == 0


def test_a_corrupt_marker_is_listed_and_requeried(ran, helper):
    ran.marker(RECIPE, DAY).write_text("{not json")

    listed = helper("list")

    assert listed.returncode == 0
    assert "NO: marker unreadable (not valid JSON)" in listed.row(RECIPE, DAY)
    # Snakemake would query (its dry run); a real run re-querying a corrupt marker:
    # tests/core/test_one_broken_recipe.py, tests/keep/test_failed_requery_keeps_the_day.py
    assert run(ran, "-n").queries == 1


def reason_in_snakemake(result):
    prefix = f"{RECIPE} {DAY}: will query: "
    [line] = [line for line in result.output.splitlines() if line.startswith(prefix)]
    return line[len(prefix) :]


# `markers list` gives the dry run's reason for an expired TTL, a passed refresh time,
# an edited query and a missing extract: tests/freshness/test_freshness_workflow.py
# (test_dry_run_explains_every_decision_and_changes_nothing). Here: the environment's
# forcing, which only the helper's own environment can show, and `check --strict`.
def test_list_and_check_give_the_reason_the_workflow_gives(ran, helper):
    env = {"LEAD_RECOVERY_IGNORE_MARKERS": "1"}
    [entry] = helper("list", "--json", env=env).json()
    check = helper("check", RECIPE, "--strict", env=env)
    dry = run(ran, "-n", env=env)

    assert entry["counts"] is False
    assert dry.queries == 1
    assert entry["reason"] == reason_in_snakemake(dry)
    assert f"the next run queries: {entry['reason']}" in check.stdout
    assert check.returncode == 1


def test_helper_follows_the_configured_store(workflow, helper, set_config, tmp_path):
    shared = tmp_path / "shared"
    set_config(store=str(shared))

    run(workflow, "--until", "redshift_extract")  # only the marker matters here
    [entry] = helper("list", "--json").json()
    helper("delete", RECIPE)

    assert entry["path"] == markers.marker_path(shared / "markers", RECIPE, DAY)
    assert run(workflow, "-n").queries == 1
