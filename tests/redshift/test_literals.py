"""What reaches Redshift SQL as a literal: one quoting function, and checked settings.

The property tests parse :func:`quote_literal`'s output back with sqlglot's
Redshift dialect (and with the UNLOAD emulation's reader of Redshift's
quoting rules), for any text hypothesis can think of.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlglot
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from lead_recovery.config import CONFIG_SCHEMA, schema_problem
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import unload as ul
from lead_recovery.warehouse.literals import quote_literal, sql_literal
from lead_recovery.warehouse.redshift import RedshiftWarehouse
from tests.support.redshift_limits import read_quoted

# Text that can travel in a SQL string: no NUL (the wire protocol ends strings
# with it), no lone surrogates (not encodable as UTF-8).
SQL_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=200,
)
# ... with the characters that matter over-represented
TRICKY = st.text(alphabet=st.sampled_from(list("'\\\"`;-/*:$%?\n\t EeNn")), max_size=60)
HOSTILE_PREFIX = "s3://bucket/x' IAM_ROLE default FORMAT AS CSV --"


def parsed_back(literal: str) -> str:
    tree = sqlglot.parse_one(f"SELECT {literal} AS v", read="redshift")
    (value,) = list(tree.find_all(exp.Literal))
    assert value.is_string
    return value.this


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(SQL_TEXT, TRICKY))
def test_a_quoted_literal_parses_back_to_the_same_text(text):
    literal = quote_literal(text)
    assert parsed_back(literal) == text
    # and by Redshift's rules as the UNLOAD emulation reads them
    value, end = read_quoted(literal, 1)
    assert (value, end) == (text, len(literal))


@settings(max_examples=200, deadline=None, database=None)
@given(TRICKY)
def test_a_query_quoted_for_unload_comes_back_whole(text):
    """A recipe's query inside UNLOAD('...'): the statement's literal is exactly the query."""
    query = f"SELECT {quote_literal(text)} AS v -- {text}\n"
    settings_ = ul.UnloadSettings(s3_prefix="s3://bkt/p")
    statement = ul.unload_statement(query, "s3://bkt/p/r/20250512/run/", settings_)
    start = statement.index("(") + 2
    value, end = read_quoted(statement, start)
    assert value == query
    assert statement[end:].startswith(")\nTO 's3://bkt/p/r/20250512/run/'\nIAM_ROLE default")


def test_nul_is_refused_in_one_line():
    with pytest.raises(LeadRecoveryError, match="NUL character"):
        quote_literal("a\x00b")


def test_parameter_values_become_typed_literals():
    assert sql_literal(dt.date(2025, 5, 12)) == "DATE '2025-05-12'"
    assert sql_literal(dt.datetime(2025, 5, 12, 6, 30)) == "TIMESTAMP '2025-05-12 06:30:00'"
    assert sql_literal("it's \\ here") == "'it\\'s \\\\ here'"
    assert parsed_back(sql_literal("it's \\ here")) == "it's \\ here"
    assert sql_literal(None) == "NULL" and sql_literal(True) == "TRUE" and sql_literal(7) == "7"


@pytest.mark.parametrize(
    "prefix",
    [
        HOSTILE_PREFIX,
        "s3://bucket/with space",
        "s3://bucket/back\\slash",
        's3://bucket/double"quote',
        "s3://bucket/tick`",
        "s3://bucket/new\nline",
        "s3://Bucket/upper",
        "bucket/no-scheme",
    ],
)
def test_an_unsafe_s3_prefix_is_refused_by_the_code_and_the_schema(prefix):
    with pytest.raises(LeadRecoveryError) as caught:
        ul.UnloadSettings.from_config({"s3_prefix": prefix})
    message = str(caught.value)
    assert "\n" not in message and "redshift.unload.s3_prefix" in message
    with pytest.raises(LeadRecoveryError):
        ul.UnloadSettings(s3_prefix=prefix)  # however the settings are made
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    config = {"warehouse": "redshift", "redshift": {"unload": {"s3_prefix": prefix}}}
    problem = schema_problem(config, schema)
    assert problem is not None and problem.startswith("redshift.unload.s3_prefix")


@pytest.mark.parametrize(
    "role",
    [
        "admin",
        "arn:aws:iam::123456789012:role/x' FORMAT AS CSV --",
        "arn:aws:iam::123456789012:user/someone",
        "arn:aws:iam::12345:role/short-account",
    ],
)
def test_an_iam_role_that_is_not_an_arn_is_refused_by_the_code_and_the_schema(role):
    with pytest.raises(LeadRecoveryError, match="not an IAM role ARN"):
        ul.UnloadSettings.from_config({"s3_prefix": "s3://bkt/p", "iam_role": role})
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    config = {"warehouse": "redshift", "redshift": {"unload": {"iam_role": role}}}
    assert (schema_problem(config, schema) or "").startswith("redshift.unload.iam_role")


@pytest.mark.parametrize(
    "options",
    [
        {"s3_prefix": "s3://lr-unload/staging/x=1/", "iam_role": "default"},
        {"s3_prefix": "s3://lr.unload-2/p", "iam_role": "DEFAULT"},
        {
            "s3_prefix": "s3://bkt",
            "iam_role": "arn:aws:iam::123456789012:role/a,arn:aws:iam::210987654321:role/b",
        },
        {"s3_prefix": "s3://bkt/p", "iam_role": "arn:aws-cn:iam::123456789012:role/path/r+x@y"},
    ],
)
def test_good_unload_settings_pass_the_code_and_the_schema(options):
    assert ul.UnloadSettings.from_config(options) is not None
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    config = {"warehouse": "redshift", "redshift": {"unload": options}}
    assert schema_problem(config, schema) is None


def test_schema_and_code_hold_the_same_prefix_pattern():
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    unload = schema["properties"]["redshift"]["properties"]["unload"]["properties"]
    assert unload["s3_prefix"]["pattern"] == ul.S3_PREFIX_RE.pattern


def test_a_hostile_prefix_stops_the_warehouse_before_it_connects(monkeypatch, tmp_path):
    """No REDSHIFT_* connection is even attempted: the config is refused first."""
    for name in ("HOST", "DATABASE", "USER", "PASSWORD"):
        monkeypatch.setenv(f"REDSHIFT_{name}", "x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LeadRecoveryError, match="not an s3://bucket/prefix"):
        RedshiftWarehouse.from_config(
            {"redshift": {"extract": "unload", "unload": {"s3_prefix": HOSTILE_PREFIX}}}
        )
