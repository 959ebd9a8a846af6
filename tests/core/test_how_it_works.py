"""The seed's "How It Works": one query per recipe and day, the marker beside the cache."""

import json
import re

import pyarrow.parquet as pq

RECIPE = "simulation_to_handoff"
DAY = "20250512"
PAID = {"recipe": RECIPE, "date": DAY}  # run_day(workflow): copied from a run made once


def run_day(workflow, day=DAY, **config):
    return workflow.run(config={"recipe": RECIPE, "date": day, **config})


def extract_day(workflow, day=DAY):
    """The day's extract and marker only (no analysis job), for tests that read no analysis."""
    return workflow.run("--until", "redshift_extract", config={"recipe": RECIPE, "date": day})


def test_first_run_queries_and_writes_marker_beside_the_cached_extract(workflow):
    result = run_day(workflow)

    assert result.queries == 1
    assert workflow.marker(RECIPE, DAY).is_file()
    assert workflow.leads(RECIPE, DAY).is_file()
    assert pq.read_metadata(workflow.leads(RECIPE, DAY)).num_rows > 0
    assert workflow.analysis(RECIPE, DAY).is_file()
    summary = json.loads(workflow.summary(RECIPE, DAY).read_text())
    assert summary["source"] == "queried"


def test_marker_records_what_was_queried_as_json(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run

    record = json.loads(workflow.marker(RECIPE, DAY).read_text())
    rows = pq.read_metadata(workflow.leads(RECIPE, DAY)).num_rows
    assert record["recipe"] == RECIPE
    assert record["run_date"] == DAY
    assert record["rows"] == rows
    assert len(record["sql_sha256"]) == 64
    assert record["duration_s"] >= 0
    assert "@" in record["user@host"]
    assert record["queried_at"][-6] in "+-"  # ISO-8601 with a UTC offset


def test_second_run_same_day_reuses_the_cache_without_querying(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    marker_before = workflow.marker(RECIPE, DAY).read_text()

    second = run_day(workflow)

    assert second.queries == 0
    assert "marker counts" in second.output
    assert workflow.marker(RECIPE, DAY).read_text() == marker_before


# What Snakemake itself still prints in a quiet run (profiles/default): the workflow
# profile's name (a bare print, before the Snakefile is read) and, with --config, that
# the config file was extended (said at `configfile:`, before the workflow can quiet it).
SNAKEMAKE_PREAMBLE = [
    "Using workflow specific profile profiles/default for setting default command line arguments.",
    "Config file config/config.yaml is extended by additional config specified via the "
    "command line.",
]


def test_a_cached_run_prints_its_decisions_and_the_account_not_snakemakes_banner(
    workflow, ran_before
):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run

    quiet = workflow.run(config=PAID, env={"LEAD_RECOVERY_VERBOSE": None})  # as a user runs it

    lines = [line for line in quiet.output.splitlines() if line.strip()]
    assert lines[:2] == SNAKEMAKE_PREAMBLE and len(lines) == 6, quiet.output
    ours = lines[2:]  # the decision, then the account
    assert re.fullmatch(rf"{RECIPE} {DAY}: marker counts \(queried \S+\); no query", ours[0])
    assert ours[1].startswith("lead-recovery: what this run did (run id ")
    assert re.fullmatch(rf"{RECIPE} {DAY} cached \(queried at \S+\)", ours[2])
    assert (
        ours[3] == "total: 1 recipe-day: 0 queried, 1 cached, 0 skipped, 0 failed; 1 query avoided"
    )
    # LEAD_RECOVERY_VERBOSE=1 (`lead-recovery run -v`) brings Snakemake's banner back
    verbose = workflow.run(config=PAID)  # the tests' runs are verbose (tests/support)
    assert "Snakemake version: " in verbose.output and "SNAKEMAKE" in verbose.output
    assert len(verbose.output.splitlines()) > len(lines) + 10


def test_marker_present_but_cache_missing_queries_again(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    day = workflow.leads(RECIPE, DAY).parent
    for extract in day.glob("extracts/*.parquet"):  # the store's extract (no store: here)
        extract.unlink()
    workflow.leads(RECIPE, DAY).unlink()  # and this checkout's copy of it

    result = extract_day(workflow)

    assert result.queries == 1
    assert workflow.leads(RECIPE, DAY).is_file()


def test_a_checkout_copy_removed_comes_back_from_the_store_without_a_query(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    paid = workflow.leads(RECIPE, DAY).read_bytes()
    workflow.leads(RECIPE, DAY).unlink()  # the store still holds the day's extract

    result = extract_day(workflow)

    assert result.queries == 0 and result.jobs["redshift_extract"] == 1
    assert "this checkout's copy comes from the store (no query)" in result.output
    assert workflow.leads(RECIPE, DAY).read_bytes() == paid


def test_deleting_the_marker_asks_for_a_fresh_query(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    workflow.marker(RECIPE, DAY).unlink()

    result = extract_day(workflow)

    assert result.queries == 1
    assert workflow.marker(RECIPE, DAY).is_file()


def test_a_new_date_queries_again_and_keeps_the_earlier_day(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    earlier = workflow.leads(RECIPE, DAY).read_bytes()

    result = extract_day(workflow, day="20250513")

    assert result.queries == 1
    assert workflow.marker(RECIPE, DAY).is_file()
    assert workflow.leads(RECIPE, DAY).read_bytes() == earlier
    assert workflow.marker(RECIPE, "20250513").is_file()


def test_analysis_summary_says_cached_when_the_cache_was_reused(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run
    workflow.analysis(RECIPE, DAY).unlink()

    result = run_day(workflow)

    assert result.queries == 0
    assert json.loads(workflow.summary(RECIPE, DAY).read_text())["source"] == "cached"


def test_output_columns_come_in_meta_order(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow) had run

    header = workflow.analysis(RECIPE, DAY).read_text().splitlines()[0]
    assert header.split(",") == [
        "lead_id", "name", "phone", "email", "source",
        "loan_amount", "hours_since_simulation", "priority",
    ]  # fmt: skip


def test_latest_points_at_the_newest_analysis_and_backfills_do_not_move_it(workflow, ran_before):
    ran_before(workflow, PAID)  # as if run_day(workflow, day="20250512") had run
    latest = workflow.latest(RECIPE)
    assert latest.resolve() == workflow.analysis(RECIPE, "20250512").resolve()

    run_day(workflow, day="20250510")  # a backfill of an older day

    assert latest.resolve() == workflow.analysis(RECIPE, "20250512").resolve()
    assert workflow.analysis(RECIPE, "20250510").is_file()
