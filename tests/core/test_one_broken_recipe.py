"""One broken recipe fails the run, names itself and its fault, and stops no other recipe."""

from __future__ import annotations

import pytest

from lead_recovery import recipes
from lead_recovery.errors import LeadRecoveryError

DAY = "20250512"
GOOD = ("manual_leads", "simulation_to_handoff")


def account_of(result) -> str:
    return result.output.split("what this run did")[-1]


BROKEN = {
    "invalid meta.yml": ({"meta": "output_columns: [lead_id\n"}, "is not valid YAML"),
    "typo in meta.yml": (
        {"meta": {"output_columns": ["lead_id"], "marker_tll": "1h"}, "sql": "SELECT 1 AS lead_id"},
        "marker_tll: unknown key (did you mean 'marker_ttl'?)",
    ),
    "missing files": ({}, "has neither redshift.sql nor leads.csv"),
    "empty SQL": ({"sql": "  \n"}, "has an empty redshift.sql"),
}


def test_broken_recipes_are_reported_and_the_others_still_run(workflow):
    """Every kind of fault at once, in one run: each broken recipe names its own."""
    drafts = {f"draft_{i}": fault for i, fault in enumerate(BROKEN)}
    for name, fault in drafts.items():
        workflow.add_recipe(name, **BROKEN[fault][0])

    result = workflow.run(config={"date": DAY}, ok=False)

    account = account_of(result)
    for name, fault in drafts.items():
        [line] = [ln for ln in account.splitlines() if ln.startswith(f"{name} {DAY} ")]
        assert line.startswith(f"{name} {DAY} failed: "), fault
        assert BROKEN[fault][1] in line, fault
    for name in GOOD:
        assert workflow.analysis(name, DAY).is_file(), name
        assert f"{name} {DAY} " in account
    assert f"total: {len(GOOD) + len(drafts)} recipe-days" in account


def test_naming_a_broken_recipe_fails_fast_with_one_line(workflow):
    workflow.add_recipe("draft", meta={"output_columns": ["lead_id"], "refresh_afer": ["06:00"]})

    result = workflow.run(config={"recipe": "draft", "date": DAY}, ok=False)

    assert "lead-recovery: error: recipe 'draft' meta.yml: refresh_afer: unknown key " in (
        result.output
    )
    assert "did you mean 'refresh_after'?" in result.output
    assert "Traceback" not in result.output
    assert not (workflow.root / "results" / "draft").exists()


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            {"output_columns": ["a"], "dedupe": ["a"]},
            "dedupe: unknown key (did you mean 'dedupe_on'?)",
        ),
        (
            {"output_columns": ["a"], "marker_ttl": 5},
            "marker_ttl: 5 is not of type 'string', 'null'",
        ),
        ({"output_columns": []}, "output_columns: [] should be non-empty"),
    ],
)
def test_meta_yml_is_checked_against_its_schema(tmp_path, meta, message):
    import yaml

    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "meta.yml").write_text(yaml.safe_dump(meta))
    (folder / "redshift.sql").write_text("SELECT 1")
    with pytest.raises(LeadRecoveryError) as caught:
        recipes.load(tmp_path, "r")
    assert message in str(caught.value)
    assert str(caught.value).startswith("recipe 'r' meta.yml: ")


ANALYZER = """\
import pandas as pd


def helper(leads):
    raise ValueError("boom")


def analyze(leads, run_date):
    return helper(leads)
"""


def test_an_analyzer_that_raises_names_its_file_and_line(workflow):
    workflow.add_recipe("raises", csv="lead_id\n1\n", analyzer=ANALYZER)

    result = workflow.run(config={"recipes": ["raises", "manual_leads"], "date": DAY}, ok=False)

    account = account_of(result)
    assert (
        f"raises {DAY} skipped (no redshift.sql; recipes/raises/leads.csv); analysis failed: "
        "recipe 'raises': analyzer.py:5 raised ValueError: boom"
    ) in account
    assert account.rstrip().endswith("; 1 analysis failed")
    assert f"manual_leads {DAY} skipped" in account
    log = (workflow.root / "logs/raises" / DAY / "analyze.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("boom")' in log


def test_a_hostile_marker_neither_hangs_nor_stops_the_run(workflow):
    """A named pipe where a marker belongs: read as corrupt, the day queried again."""
    import os

    marker = workflow.marker("simulation_to_handoff", DAY)
    marker.parent.mkdir(parents=True)
    os.mkfifo(marker)

    result = workflow.run("-n", config={"date": DAY}, timeout=120)
    assert f"simulation_to_handoff {DAY}: will query: " in result.output
    # the day queried again (its extract and marker; the other recipe has no marker)
    workflow.run(
        "--until",
        "redshift_extract",
        config={"recipe": "simulation_to_handoff", "date": DAY},
        timeout=120,
    )
    assert markers_of(workflow) == ["json"]


def markers_of(workflow) -> list[str]:
    from lead_recovery import markers
    from lead_recovery.store import FolderStore

    return [m.format for m in markers.list_markers(FolderStore(workflow.root / "results"))]
