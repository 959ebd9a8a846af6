"""The seed's "Recipes Without Redshift": no SQL, or --skip-redshift."""

import json

import pyarrow.parquet as pq

SQL_RECIPE = "simulation_to_handoff"
DAY = "20250512"


def test_recipe_without_sql_skips_the_query_and_creates_no_marker(workflow):
    result = workflow.run(config={"recipe": "manual_leads", "date": DAY})

    assert result.queries == 0
    assert result.jobs["recipe_leads"] == 1
    assert not list((workflow.root / "results" / "markers").glob("*.marker"))
    assert pq.read_metadata(workflow.leads("manual_leads", DAY)).num_rows == 4
    summary = json.loads(workflow.summary("manual_leads", DAY).read_text())
    assert summary["source"] == "recipe_leads_csv"
    assert summary["rows_in"] == 4 and summary["rows_out"] == 3  # dedupe_on: lead_id


def test_recipe_leads_keep_ids_and_phone_numbers_as_text(workflow):
    workflow.add_recipe(
        "zero_padded",
        csv="lead_id,phone\n007,+34600000001\n0042,0034600000002\n",
        meta={"output_columns": ["lead_id", "phone"]},
    )
    workflow.run(config={"recipe": "zero_padded", "date": DAY})

    rows = workflow.analysis("zero_padded", DAY).read_text().splitlines()
    assert rows == ["lead_id,phone", "007,+34600000001", "0042,0034600000002"]


def test_skip_redshift_uses_the_newest_cached_extract_on_or_before_the_run_date(
    workflow, ran_before
):
    """Never a cache dated after the run date, and never a marker written or read."""
    # two paid days: DAY (copied from a run made once) and an earlier one (its extract)
    ran_before(workflow, {"recipe": SQL_RECIPE, "date": DAY})
    workflow.run("--until", "redshift_extract", config={"recipe": SQL_RECIPE, "date": "20250510"})
    markers_before = sorted(p.name for p in (workflow.root / "results/markers").iterdir())

    between = workflow.run(config={"recipe": SQL_RECIPE, "date": "20250511", "skip_redshift": True})
    workflow.leads(SQL_RECIPE, DAY).unlink()  # no copy here: the store's extract is read
    after = workflow.run(config={"recipe": SQL_RECIPE, "date": "20250513", "skip_redshift": True})

    for result, day, used in ((between, "20250511", "20250510"), (after, "20250513", DAY)):
        assert result.queries == 0
        assert f"{SQL_RECIPE} {day}: skip_redshift: using the extract of {used}" in result.output
        assert f"{SQL_RECIPE} {day} skipped (skip_redshift; extract of {used})" in result.output
        assert "marker counts" not in result.output
        assert not workflow.marker(SQL_RECIPE, day).exists()
        summary = json.loads(workflow.summary(SQL_RECIPE, day).read_text())
        assert summary["source"] == "skipped_redshift"
        assert summary["cache_date"] == used
    assert sorted(p.name for p in (workflow.root / "results/markers").iterdir()) == markers_before


def _edit_sql(workflow):
    sql = workflow.root / "recipes" / SQL_RECIPE / "redshift.sql"
    sql.write_text(sql.read_text() + "\n-- edited\n")


# Every reason that would force a query without skip_redshift.
FORCING = {
    "ignore_redshift_marker": ({"ignore_redshift_marker": True}, {}, None),
    "ignore_all_markers": ({"ignore_all_markers": True}, {}, None),
    "LEAD_RECOVERY_IGNORE_MARKERS": ({}, {"LEAD_RECOVERY_IGNORE_MARKERS": "1"}, None),
    "marker_ttl": ({"marker_ttl": "1h"}, {"LEAD_RECOVERY_NOW": "2025-05-12T23:00:00+00:00"}, None),
    "SQL edit": ({}, {}, _edit_sql),
    "warehouse=redshift": ({"warehouse": "redshift", "ignore_redshift_marker": True}, {}, None),
}


def test_skip_redshift_never_queries_whatever_forces_a_query(workflow, ran_before):
    ran_before(workflow, {"recipe": SQL_RECIPE, "date": DAY})
    markers_dir = workflow.root / "results/markers"
    before = {p.name: p.read_bytes() for p in markers_dir.iterdir() if p.is_file()}
    leads = workflow.leads(SQL_RECIPE, DAY).read_bytes()

    # Every reason at once (each alone is a subset of them: skip_redshift is checked
    # before any of them), then with Snakemake forcing every job, then dry.
    config: dict = {"recipe": SQL_RECIPE, "date": DAY, "skip_redshift": True}
    env: dict = {}
    for reason_config, reason_env, setup in FORCING.values():
        if setup is not None:
            setup(workflow)
        config.update(reason_config)
        env.update(reason_env)
    for args in ([], ["-F"], ["-n"]):
        result = workflow.run(*args, config=config, env=env)
        assert result.queries == 0 and "will query" not in result.output, args
        if not args:
            assert f"skip_redshift: using the extract of {DAY}" in result.output
    assert {p.name: p.read_bytes() for p in markers_dir.iterdir() if p.is_file()} == before
    assert workflow.leads(SQL_RECIPE, DAY).read_bytes() == leads


def test_skip_redshift_without_a_cache_falls_back_to_leads_csv(workflow):
    workflow.add_recipe(
        "sql_with_csv",
        sql="SELECT lead_id FROM leads WHERE created_at::date = :run_date",
        csv="lead_id\n7\n8\n",
    )

    result = workflow.run(config={"recipe": "sql_with_csv", "date": DAY, "skip_redshift": True})

    assert result.queries == 0
    summary = json.loads(workflow.summary("sql_with_csv", DAY).read_text())
    assert summary["source"] == "skipped_redshift"
    assert summary["cache_date"] is None
    assert summary["rows_in"] == 2


def test_skip_redshift_with_neither_cache_nor_csv_names_the_recipe(workflow):
    result = workflow.run(
        config={"recipe": SQL_RECIPE, "date": DAY, "skip_redshift": True}, ok=False
    )

    account = result.output.split("what this run did")[-1]
    assert (
        f"{SQL_RECIPE} {DAY} failed: recipe '{SQL_RECIPE}': skip_redshift=true but there is "
        in (account)
    )
    assert result.queries == 0
    assert not (workflow.root / "results" / SQL_RECIPE).exists()
