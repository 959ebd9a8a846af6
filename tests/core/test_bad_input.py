"""Bad input: one clear line, a non-zero exit, and nothing lost or half-written."""

import shutil

import pytest

from tests.conftest import once, workflow_with_warehouse
from tests.support.workflow import WorkflowCopy
from tests.unit.test_bad_flags import END_TO_END

DAY = "20250512"
RECIPE = "simulation_to_handoff"


@pytest.fixture(scope="session")
def history_template(tmp_path_factory, demo_warehouse_file):
    """A workflow that ran an earlier day for every recipe: run once, copied per test."""

    def make(folder):
        workflow_with_warehouse(folder / "repo", demo_warehouse_file).run(
            config={"date": "20250511"}
        )

    return WorkflowCopy(once(tmp_path_factory, "history", make) / "repo")


@pytest.fixture
def with_history(history_template, tmp_path):
    """A copy of ``history_template``, files, times and Snakemake's metadata alike."""
    root = tmp_path / "repo"
    shutil.copytree(history_template.root, root, symlinks=True)
    return WorkflowCopy(root)


def assert_one_line_error(result, expected):
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert errors, result.output[-3000:]
    assert expected in errors[0], errors
    assert "Traceback" not in result.output


# Every bad value's message: tests/unit/test_bad_flags.py; one of each kind end to end here.
@pytest.mark.parametrize(("config", "expected"), END_TO_END)
def test_bad_flags_fail_with_one_line_and_touch_nothing(with_history, config, expected):
    before = with_history.snapshot()

    result = with_history.run(config={"date": DAY, **config}, ok=False)

    assert_one_line_error(result, expected)
    assert with_history.snapshot() == before


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "recipe 'broken' has neither redshift.sql nor leads.csv"),
        ({"redshift.sql": "  \n"}, "recipe 'broken' has an empty redshift.sql"),
        (
            {"leads.csv": "lead_id\n1\n", "meta.yml": "output_columns: [lead_id\n"},
            "recipe 'broken' meta.yml is not valid YAML",
        ),
        (
            {"leads.csv": "lead_id\n1\n", "meta.yml": "ouput_columns: [lead_id]\n"},
            "ouput_columns: unknown key (did you mean 'output_columns'?); "
            "'output_columns' is missing",
        ),
    ],
)
def test_broken_recipes_fail_with_one_line_and_touch_nothing(with_history, files, expected):
    folder = with_history.add_recipe("broken")
    for name, text in files.items():
        (folder / name).write_text(text)
    before = with_history.snapshot()

    result = with_history.run(config={"recipe": "broken", "date": DAY}, ok=False)

    assert_one_line_error(result, expected)
    assert with_history.snapshot() == before


def test_output_columns_the_data_lacks_fail_the_analysis_only(with_history):
    with_history.add_recipe(
        "wrong_columns", csv="lead_id,phone\n1,+52\n", meta={"output_columns": ["lead_id", "score"]}
    )

    result = with_history.run(config={"recipe": "wrong_columns", "date": DAY}, ok=False)

    assert "recipe 'wrong_columns': output_columns names column(s) score that the data lacks" in (
        result.output
    )
    assert not with_history.analysis("wrong_columns", DAY).exists()
    assert with_history.analysis("manual_leads", "20250511").is_file()


def test_a_failing_query_leaves_no_marker_no_cache_and_earlier_days_intact(with_history):
    with_history.add_recipe("bad_sql", sql="SELECT lead_id FROM no_such_table WHERE d = :run_date")
    before = with_history.snapshot()

    result = with_history.run(config={"recipe": "bad_sql", "date": DAY}, ok=False)

    assert "recipe 'bad_sql': query failed" in result.output
    assert not with_history.marker("bad_sql", DAY).exists()
    assert not with_history.leads("bad_sql", DAY).exists()
    assert not list((with_history.root / "results").rglob("*.tmp"))
    assert with_history.snapshot() == before


def test_an_sql_typo_names_the_file_line_and_column(with_history):
    """Not valid Redshift SQL: the user's typo in the user's file, never DuckDB's fault."""
    with_history.add_recipe(
        "typo", sql="SELECT lead_id\nFROM leads\nWHERE created_at < :run_date::date\n   FORM"
    )

    result = with_history.run(config={"recipe": "typo", "date": DAY}, ok=False)

    assert "recipe 'typo': recipes/typo/redshift.sql:4:4: syntax error near 'FORM'" in result.output
    assert "DuckDB" not in result.output
    assert not with_history.marker("typo", DAY).exists()
