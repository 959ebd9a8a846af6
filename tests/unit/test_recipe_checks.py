"""Recipe-writing traps: every mistake is one line naming the file and what to write.

Pure functions, no Snakemake: the name rule, meta.yml's keys and YAML's
misread times, Redshift syntax errors with line and column, and
``recipes.check_all`` (what ``make lint`` runs). tests/core/test_bad_input.py
runs one SQL typo through the real workflow.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lead_recovery import recipes, yamlhints
from lead_recovery.config import load_yaml
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.recipes import Problem, RecipeError
from tests.support.workflow import REPO

GOOD_SQL = "SELECT lead_id FROM leads WHERE created_at < :run_date::date AND phone LIKE '+52%'\n"


def make_recipe(base: Path, name: str, meta: str = "output_columns: [lead_id]\n", **files: str):
    """A recipe folder; ``analyzer_py="..."`` writes analyzer.py (redshift.sql: a good one)."""
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "meta.yml").write_text(textwrap.dedent(meta))
    for key, text in {"redshift_sql": GOOD_SQL, **files}.items():
        (folder / ".".join(key.rsplit("_", 1))).write_text(text)
    return folder


def load_error(tmp_path: Path, meta: str) -> str:
    make_recipe(tmp_path, "r", meta)
    with pytest.raises(LeadRecoveryError) as caught:
        recipes.load(tmp_path, "r")
    return str(caught.value)


# -- the name rule ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "simulation_to_handoff", "v2.draft-1", "9lives", "A_b"])
def test_names_the_rule_allows(name):
    assert recipes.validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../etc", "must not contain '/', '\\' or '..'"),
        ("a/b", "must not contain '/', '\\' or '..'"),
        ("a..b", "must not contain '/', '\\' or '..'"),
        ("_draft", "is not valid"),
        (".hidden", "is not valid"),
        ("-x", "is not valid"),
        ("my recipe", "is not valid"),
        ("é", "is not valid"),
        ("", "is not valid"),
    ],
)
def test_names_the_rule_refuses_say_the_rule(name, expected):
    with pytest.raises(LeadRecoveryError) as caught:
        recipes.validate_name(name)
    message = str(caught.value)
    assert expected in message and recipes.NAME_RULE in message


def test_the_documented_name_rule_is_the_enforced_one():
    readme = (REPO / "config/README.md").read_text()
    assert f"A recipe's name is its folder's name: {recipes.NAME_RULE}" in readme


# -- meta.yml ---------------------------------------------------------------------


def test_a_typo_is_reported_with_the_key_it_leaves_missing(tmp_path):
    message = load_error(tmp_path, "ouput_columns: [lead_id]\ndescription: x\n")

    assert message == (
        "recipe 'r' meta.yml: ouput_columns: unknown key (did you mean 'output_columns'?); "
        f"'output_columns' is missing ({tmp_path}/r/meta.yml)"
    )


def test_every_unknown_key_is_named(tmp_path):
    message = load_error(tmp_path, "output_columns: [a]\nmarker_tll: 1h\ndedupe: [a]\n")

    assert "marker_tll: unknown key (did you mean 'marker_ttl'?)" in message
    assert "dedupe: unknown key (did you mean 'dedupe_on'?)" in message


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("refresh_after: [14:00]", "refresh_after: write times in quotes, '14:00'"),
        # 06:00 stays text in YAML 1.1 (a leading zero), 14:00 does not
        ("refresh_after: [06:00, 14:00]", "refresh_after: write times in quotes, '14:00'"),
        ("refresh_after: 9:30", "refresh_after: write times in quotes, '09:30'"),
        (
            "marker_ttl: 1:30",
            "marker_ttl: YAML reads 1:30 as the number 90: write a duration such as 6h, 30m",
        ),
        ("output_columns: [lead_id, yes]", "output_columns: YAML reads yes as true: write it in"),
        ("marker_ttl: 5", "marker_ttl: 5 is not of type 'string', 'null'"),  # not a misreading
    ],
)
def test_values_yaml_misreads_say_how_to_write_them(tmp_path, meta, expected):
    if "output_columns" not in meta:
        meta = "output_columns: [lead_id]\n" + meta
    message = load_error(tmp_path, meta + "\n")

    assert message.startswith(f"recipe 'r' meta.yml: {expected}"), message
    assert "840" not in message


def test_quoted_times_load(tmp_path):
    make_recipe(tmp_path, "r", "output_columns: [a]\nrefresh_after: ['06:00', '14:00']\n")

    assert recipes.load(tmp_path, "r").refresh_after == ["06:00", "14:00"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"day_starts_at": 840}, "day_starts_at: write times in quotes, '14:00'"),
        ({"refresh_after": ["06:00", 870]}, "refresh_after: write times in quotes, '14:30'"),
        ({"refresh_after": 840}, "refresh_after: write times in quotes, '14:00'"),
        ({"timezone": True}, "timezone: YAML read this as true: write it in quotes"),
        ({"marker_ttl": 90}, None),  # a number without a unit: the schema's message
        ({"day_starts_at": "14:00"}, None),
    ],
)
def test_the_config_schema_gets_the_same_explanation(config, expected):
    """What the workflow's config check can ask (Snakemake hands it values, not text)."""
    schema = load_yaml(REPO / "workflow/schemas/config.schema.yaml", "schema")

    assert yamlhints.misread(config, schema) == expected


# -- SQL ---------------------------------------------------------------------------

TYPO = """\
SELECT lead_id, name
FROM leads
WHERE created_at >= :run_date::date
  AND status = 'x'
   FORM
"""


def sql_error(text: str, path: str = "recipes/x/redshift.sql") -> RecipeError:
    with pytest.raises(RecipeError) as caught:
        recipes.parse_sql(text, path)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TYPO, "recipes/x/redshift.sql:5:4: syntax error near 'FORM'"),
        (
            "SELECT lead_id\nFROM leads\nWHERE",
            "recipes/x/redshift.sql:3:1: syntax error near 'WHERE'",
        ),
        (
            "SELECT a FROM t WHERE a IN (1, 2",
            "recipes/x/redshift.sql:1:32: syntax error near '2': ')' expected",
        ),
        (
            "SELECT a\nFROM t WHERE b = 'abc",
            "recipes/x/redshift.sql:2:18: syntax error: unclosed string",
        ),
        (
            "SELECT 1; SELECT 2",
            "recipes/x/redshift.sql: holds 2 statements; redshift.sql must be one",
        ),
        ("-- nothing\n", "recipes/x/redshift.sql: holds no statement"),
        (
            "-- export\nUNLOAD ('select 1') TO 's3://b/x'",
            "recipes/x/redshift.sql:2:1: 'UNLOAD ...' is not a SELECT query",
        ),
        (
            "SELECT a FROM t\nWHERE d = :run_date AND e = :day",
            "recipes/x/redshift.sql:2:29: unknown parameter ':day' (only :run_date is bound)",
        ),
    ],
)
def test_sql_errors_name_the_file_line_and_column(text, expected):
    err = sql_error(text)

    assert str(err).startswith(expected), str(err)
    assert "DuckDB" not in str(err)


def test_run_date_placeholders_casts_and_patterns_parse():
    sql = (REPO / "recipes/simulation_to_handoff/redshift.sql").read_text()

    assert recipes.parse_sql(sql, "x.sql") is not None
    assert recipes.parse_sql(GOOD_SQL, "x.sql") is not None


def test_the_demo_warehouse_reports_a_typo_in_the_recipes_file(tmp_path):
    """The run's message: the extract step names the recipe only in the query's tag."""
    import duckdb

    from lead_recovery.warehouse.embedded import EmbeddedWarehouse

    db = tmp_path / "demo.duckdb"
    duckdb.connect(str(db)).close()
    warehouse = EmbeddedWarehouse(db, batch_rows=10, recipes_dir="recipes")
    try:
        with pytest.raises(LeadRecoveryError) as caught:
            warehouse.stream(TYPO, {}, tag="lead_recovery recipe=x run_date=20250512")
        with pytest.raises(LeadRecoveryError) as watermark:
            warehouse.stream(
                "SELEC 1 FROM t", {}, tag="lead_recovery recipe=x run_date=1 watermark"
            )
    finally:
        warehouse.close()
    assert str(caught.value) == "recipes/x/redshift.sql:5:4: syntax error near 'FORM'"
    assert str(watermark.value).startswith("recipes/x/watermark.sql:1:")


# -- check_all: make lint ----------------------------------------------------------


def test_check_all_finds_every_problem_of_every_recipe(tmp_path):
    make_recipe(tmp_path, "good", analyzer_py="def analyze(leads, run_date):\n    return leads\n")
    make_recipe(tmp_path, "typo", "ouput_columns: [a]\n", redshift_sql=TYPO)
    make_recipe(tmp_path, "imports", analyzer_py="import no_such_module_here\n")
    make_recipe(
        tmp_path, "noanalyze", analyzer_py="x = 1\n", watermark_sql="SELECT max(x) FORM t\n"
    )
    make_recipe(tmp_path, "_draft", "not: [valid\n")  # not a recipe: skipped

    problems = recipes.check_all(tmp_path)

    assert [str(p).replace(f"{tmp_path}/", "") for p in problems] == [
        "imports/analyzer.py:1: cannot be imported: ModuleNotFoundError: "
        "No module named 'no_such_module_here'",
        "noanalyze/watermark.sql:1:20: syntax error near 't'",
        "noanalyze/analyzer.py: must define analyze(leads, run_date)",
        "typo/meta.yml: ouput_columns: unknown key (did you mean 'output_columns'?); "
        "'output_columns' is missing",
        "typo/redshift.sql:5:4: syntax error near 'FORM'",
    ]
    assert all(isinstance(p, Problem) for p in problems)
    assert problems[0].recipe == "imports" and problems[0].line == 1


def test_check_all_on_the_shipped_recipes_finds_nothing():
    assert recipes.check_all(REPO / "recipes") == []


def test_make_lints_recipe_check_exits_non_zero_on_a_problem(tmp_path, capsys):
    make_recipe(tmp_path, "typo", redshift_sql=TYPO)

    assert recipes.main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"{tmp_path}/typo/redshift.sql:5:4: syntax error near 'FORM'\n"
    assert "1 problem(s)" in err
    (tmp_path / "typo/redshift.sql").write_text(GOOD_SQL)
    assert recipes.main([str(tmp_path)]) == 0
    assert "python -m lead_recovery.recipes" in (REPO / "Makefile").read_text()
