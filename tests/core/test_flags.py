"""The seed's command-line options, as `snakemake --config` flags."""

import json

RECIPE = "simulation_to_handoff"
DAY = "20250512"
OTHER_SQL = """
    SELECT lead_id, phone FROM leads
    WHERE created_at::date = DATEADD(day, -1, :run_date::date)
    ORDER BY lead_id
"""


def test_forcerun_redshift_extract_queries_again(workflow, ran_before):
    ran_before(workflow, {"recipe": RECIPE, "date": DAY})

    result = workflow.run(
        "--forcerun",
        "redshift_extract",
        "--until",  # the query is the extract job's; no analysis is read here
        "redshift_extract",
        config={"recipe": RECIPE, "date": DAY},
    )

    assert result.queries == 1


def test_ignore_flag_queries_the_selected_recipe_again_and_replaces_only_its_marker(workflow):
    workflow.add_recipe("yesterdays_leads", sql=OTHER_SQL, meta={"output_columns": ["lead_id"]})
    workflow.run(
        "--until", "redshift_extract", config={"recipes": [RECIPE, "yesterdays_leads"], "date": DAY}
    )
    other_marker = workflow.marker("yesterdays_leads", DAY).read_text()
    first = json.loads(workflow.marker(RECIPE, DAY).read_text())

    result = workflow.run(config={"recipe": RECIPE, "date": DAY, "ignore_redshift_marker": True})

    assert result.queries == 1
    assert "forced by ignore_redshift_marker=true" in result.output
    second = json.loads(workflow.marker(RECIPE, DAY).read_text())
    assert second["run_id"] != first["run_id"]
    assert json.loads(workflow.summary(RECIPE, DAY).read_text())["source"] == "queried"
    assert "recipe=simulation_to_handoff" in result.output
    assert "recipe=yesterdays_leads" not in result.output
    assert workflow.marker("yesterdays_leads", DAY).read_text() == other_marker


def test_dry_run_with_the_ignore_flag_changes_nothing_on_disk(workflow, ran_before):
    ran_before(workflow, {"recipe": RECIPE, "date": DAY})
    before = workflow.snapshot()

    result = workflow.run(
        "-n", config={"recipe": RECIPE, "date": DAY, "ignore_redshift_marker": True}
    )

    assert result.queries == 1  # what it would run
    assert "forced" in result.output
    assert workflow.snapshot() == before


def test_recipe_flag_then_recipes_list_then_the_default_of_every_recipe(workflow):
    """One user choosing recipes: one by name, then a list, then none (all of them)."""
    workflow.add_recipe("extra_manual", csv="lead_id\n1\n2\n")

    workflow.run(config={"recipe": "manual_leads", "date": DAY})
    assert workflow.analysis("manual_leads", DAY).is_file()
    assert not workflow.analysis("extra_manual", DAY).exists()
    assert not (workflow.root / "results" / RECIPE).exists()
    assert not workflow.marker(RECIPE, DAY).exists()

    workflow.run(config={"recipes": ["manual_leads", "extra_manual"], "date": DAY})
    assert workflow.analysis("extra_manual", DAY).is_file()
    assert not (workflow.root / "results" / RECIPE).exists()

    result = workflow.run(config={"date": DAY})
    assert result.queries == 1
    for name in ("manual_leads", "extra_manual", RECIPE):
        assert workflow.analysis(name, DAY).is_file()
        assert any(line.startswith(f"{name} {DAY} ") for line in result.account), name
