"""The seed's "Recipes Without Redshift": no SQL, or --skip-redshift."""

import json

import pyarrow.parquet as pq

SQL_RECIPE = "simulation_to_handoff"
DAY = "20250512"


def test_recipe_without_sql_skips_the_query_and_creates_no_marker(workflow):
    result = workflow.run(config={"recipe": "manual_leads", "date": DAY})

    assert result.queries == 0
    assert result.jobs["recipe_leads"] == 1
    assert not (workflow.root / "results" / "markers").exists()
    assert pq.read_metadata(workflow.leads("manual_leads", DAY)).num_rows == 4
    summary = json.loads(workflow.summary("manual_leads", DAY).read_text())
    assert summary["source"] == "recipe_leads_csv"
    assert summary["rows_in"] == 4 and summary["rows_out"] == 3  # dedupe_on: lead_id


def test_recipe_leads_keep_phone_numbers_as_text(workflow):
    workflow.run(config={"recipe": "manual_leads", "date": DAY})

    assert "+525512345678" in workflow.analysis("manual_leads", DAY).read_text()


def test_skip_redshift_uses_the_newest_cached_extract_of_any_date(workflow):
    workflow.run(config={"recipe": SQL_RECIPE, "date": "20250510"})
    workflow.run(config={"recipe": SQL_RECIPE, "date": "20250511"})
    markers_before = sorted(p.name for p in (workflow.root / "results/markers").iterdir())

    result = workflow.run(config={"recipe": SQL_RECIPE, "date": DAY, "skip_redshift": True})

    assert result.queries == 0
    assert not workflow.marker(SQL_RECIPE, DAY).exists()
    assert sorted(p.name for p in (workflow.root / "results/markers").iterdir()) == markers_before
    summary = json.loads(workflow.summary(SQL_RECIPE, DAY).read_text())
    assert summary["source"] == "skipped_redshift"
    assert summary["cache_date"] == "20250511"


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

    assert f"recipe '{SQL_RECIPE}': skip_redshift=true but there is no cached extract" in (
        result.output
    )
    assert not (workflow.root / "results" / SQL_RECIPE).exists()
