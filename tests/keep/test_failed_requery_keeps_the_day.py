"""A failed re-query never costs the day's cache, whatever forced it.

Every case starts from one paid-for day, forces a new query that fails, and
then compares the day's ``leads.parquet`` and marker byte for byte. The
failure is real: the SQL refers to a missing column, or the run points at
Redshift with no reachable server (``warehouse=redshift`` without settings).
Queries are observed from the marker (a query writes a new one with this
run's id), never by mocking the rule.
"""

from __future__ import annotations

import json

import pytest

RECIPE = "simulation_to_handoff"
DAY = "20250512"
NOW = "2025-05-12T10:00:00+00:00"
BASE = {"recipe": RECIPE, "date": DAY}
NO_REDSHIFT = {"warehouse": "redshift"}  # and no REDSHIFT_* settings: the connection fails


def day_files(workflow) -> dict[str, bytes]:
    return {
        "leads": workflow.leads(RECIPE, DAY).read_bytes(),
        "marker": workflow.marker(RECIPE, DAY).read_bytes(),
        "analysis": workflow.analysis(RECIPE, DAY).read_bytes(),
    }


@pytest.fixture
def paid_day(workflow, ran_before):
    """One recipe's day queried once, at a pinned clock."""
    ran_before(workflow, BASE, {"LEAD_RECOVERY_NOW": NOW})
    return day_files(workflow)


def test_a_failing_sql_edit_keeps_the_day_and_its_fix_queries_once(workflow, paid_day):
    sql = workflow.root / "recipes" / RECIPE / "redshift.sql"
    original = sql.read_text()
    sql.write_text(original.replace("l.source,", "l.no_such_column,"))

    failed = workflow.run(config=BASE, ok=False, env={"LEAD_RECOVERY_NOW": NOW})

    assert day_files(workflow) == paid_day
    account = failed.output.split("what this run did")[-1]
    assert f"{RECIPE} {DAY} failed: recipe '{RECIPE}': query failed" in account
    assert "no_such_column" in account
    assert not list(workflow.root.glob("results/**/.kept"))  # settled

    sql.write_text(original)  # undoing the edit: the kept day counts again
    again = workflow.run(config=BASE, env={"LEAD_RECOVERY_NOW": NOW})
    assert day_files(workflow) == paid_day
    assert f"{RECIPE} {DAY} cached" in again.output

    sql.write_text(original.replace("l.source,", "l.source, 1 AS fixed,"))
    fixed = workflow.run(config=BASE, env={"LEAD_RECOVERY_NOW": NOW})
    marker = json.loads(workflow.marker(RECIPE, DAY).read_text())
    assert marker["run_id"] != json.loads(paid_day["marker"])["run_id"]
    assert f"{RECIPE} {DAY} queried" in fixed.output
    assert workflow.run(config=BASE, env={"LEAD_RECOVERY_NOW": NOW}).queries == 0


def _corrupt_marker(workflow):
    workflow.marker(RECIPE, DAY).write_text("{not json")


# (command-line args, config, environment, set-up): one per way a forced query reaches
# the job. The workflow's own reasons all go through one path (``decide`` puts the
# marker in Snakemake's forced files): ignore_all_markers and LEAD_RECOVERY_IGNORE_MARKERS
# take the path of ignore_redshift_marker, marker_ttl that of refresh_after (each
# reason's forcing: tests/freshness). Snakemake's own: --forcerun (-R is its short
# form) and -F, which also make Snakemake delete the outputs before the job.
FORCING = {
    "ignore_redshift_marker": ([], {"ignore_redshift_marker": True}, {}, None),
    "--forcerun": (["--forcerun", "redshift_extract"], {}, {}, None),
    "-F": (["-F"], {}, {}, None),
    "refresh_after": (
        [],
        {"refresh_after": '["11:00"]', "timezone": "UTC"},
        {"LEAD_RECOVERY_NOW": "2025-05-12T12:00:00+00:00"},
        None,
    ),
    "unreadable marker": ([], {}, {}, _corrupt_marker),
}


def test_every_forcing_reason_keeps_the_day_when_the_query_fails(workflow, paid_day):
    for reason, (args, config, env, setup) in FORCING.items():
        if setup is not None:
            setup(workflow)
        before = day_files(workflow)
        if args:  # the explanation is truthful (the other reasons: tests/freshness)
            dry = workflow.run("-n", *args, config={**BASE, **config}, env=env)
            assert dry.queries == 1, reason
            assert "forced by the command line (--forcerun/-R/-F)" in dry.output, reason

        result = workflow.run(*args, config={**BASE, **NO_REDSHIFT, **config}, env=env, ok=False)

        assert day_files(workflow) == before, reason
        account = result.output.split("what this run did")[-1]
        assert f"{RECIPE} {DAY} failed: recipe '{RECIPE}': Redshift connection settings" in (
            account
        ), reason
        assert "the previous extract and marker were kept" in account, reason
    # nothing forced any more: the day counts (the corrupt marker, kept as it was, does not)
    workflow.marker(RECIPE, DAY).write_bytes(paid_day["marker"])
    # (Snakemake reruns the job, its inputs having changed with the warehouse: it puts
    # the same pair back instead of querying)
    workflow.run(config=BASE, env={"LEAD_RECOVERY_NOW": NOW})
    after = day_files(workflow)
    assert (after["leads"], after["marker"]) == (paid_day["leads"], paid_day["marker"])
