"""``:run_date`` binds in SQL with backslashes and escaped quotes, on both paths alike.

The server is PostgreSQL behind the shim with Redshift's string-literal rules
emulated (``redshift_strings``: a backslash escapes in ``'...'``, as on
Redshift) and the UNLOAD emulation writing to a local moto S3 server.
"""

from __future__ import annotations

import datetime as dt

import pytest
import redshift_connector

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.extract import query_tag
from lead_recovery.warehouse import params
from tests.redshift.conftest import UNLOAD_BUCKET

PARAMS = {"run_date": dt.date(2025, 5, 12)}
ROLE = "arn:aws:iam::123456789012:role/lead-recovery-unload"

# Every kind of quoting Redshift reads, each followed by a ':' that is not a
# parameter inside a literal, then :run_date outside.
TRICKY_SQL = r"""
SELECT 'it\'s 10:30' AS escaped_quote,   -- a comment with 'quotes' and :nope
       E'E-string \'q\' a\\b :x' AS e_string,
       'doubled ''q'' :y' AS doubled,
       'ends in a backslash \\' AS trailing_backslash,
       /* block comment: ':run_date' */ :run_date AS day,
       :run_date::date - 1 AS day_before,
       count(*) AS n
FROM leads
WHERE name LIKE 'Lead 1%' AND created_at < :run_date::date
GROUP BY 1, 2, 3, 4, 5, 6
"""
EXPECTED = {
    "escaped_quote": "it's 10:30",
    "e_string": "E-string 'q' a\\b :x",
    "doubled": "doubled 'q' :y",
    "trailing_backslash": "ends in a backslash \\",
    "day": dt.date(2025, 5, 12),
    "day_before": dt.date(2025, 5, 11),
}


def test_parameters_are_found_by_redshift_rules():
    text, args = params.bind(TRICKY_SQL, PARAMS)
    assert args == (dt.date(2025, 5, 12),)
    assert text.count("$1") == 3 and ":run_date" not in text.replace("':run_date'", "")
    assert ":nope" in text and ":x'" in text and ":y'" in text  # literals and comments kept
    assert r"'it''s 10:30'" in text  # \' sent as '' (the same quote), so the driver agrees
    assert "::date" in text
    params.check_driver_leaves_alone(text)  # the driver's scanner changes nothing

    inlined = params.inline(TRICKY_SQL, PARAMS)
    assert inlined.count("DATE '2025-05-12'") == 3 and r"'it\'s 10:30'" in inlined


def test_an_unknown_parameter_is_named_on_both_paths():
    for rewrite in (params.bind, params.inline):
        with pytest.raises(LeadRecoveryError, match=r"uses the parameter :region, but only"):
            rewrite("SELECT 'a\\'b' AS x WHERE r = :region", PARAMS)


def test_a_colon_the_driver_would_rewrite_is_one_line():
    text, _ = params.bind("SELECT a\nFROM t WHERE b = :1", PARAMS)
    with pytest.raises(LeadRecoveryError, match=r"':1' at line 2.*only :name parameters"):
        params.check_driver_leaves_alone(text)


def test_an_unterminated_string_is_one_line():
    with pytest.raises(LeadRecoveryError, match="cannot be read"):
        params.bind("SELECT 'no end FROM t", PARAMS)


@pytest.fixture
def redshift_strings_shim(limited_shim, aws_env, monkeypatch):
    monkeypatch.setenv("LEAD_RECOVERY_RUN_ID", "run-binding")
    return limited_shim(unload=True, unload_slices=2, redshift_strings=True)


def test_the_driver_s_own_named_binding_fails_on_such_sql(redshift_strings_shim, pg_server):
    """Why the warehouse binds by itself: after a \\' the driver's scanner loses track.

    It leaves :run_date in the text (the server sees a syntax error), or takes
    the '30' of a '10:30' inside a literal for a parameter.
    """
    conn = redshift_connector.connect(
        host="127.0.0.1",
        port=redshift_strings_shim.port,
        database=pg_server.database,
        user=pg_server.user,
        password=pg_server.password,
        ssl=False,
    )
    try:
        cursor = conn.cursor()
        cursor.paramstyle = "named"
        with pytest.raises(redshift_connector.ProgrammingError, match="syntax error"):
            cursor.execute("SELECT 'it\\'s' AS a, :run_date AS d", PARAMS)
        conn.rollback()
        with pytest.raises(KeyError, match="30"):
            cursor.execute(TRICKY_SQL, PARAMS)
    finally:
        conn.close()


def test_cursor_and_unload_give_the_same_rows_for_tricky_sql(
    redshift_strings_shim, make_warehouse, s3_server
):
    cursor_rows = (
        make_warehouse()
        .stream(TRICKY_SQL, PARAMS, tag=query_tag("binding", "20250512"))
        .read_all()
        .to_pylist()
    )
    warehouse = make_warehouse(
        extract="unload",
        unload={"s3_prefix": f"s3://{UNLOAD_BUCKET}/binding", "iam_role": ROLE},
    )
    unload_rows = (
        warehouse.stream(TRICKY_SQL, PARAMS, tag=query_tag("binding", "20250512"))
        .read_all()
        .to_pylist()
    )
    assert warehouse.last_extract["path"] == "unload"
    assert unload_rows == cursor_rows
    (row,) = cursor_rows
    assert {k: row[k] for k in EXPECTED} == EXPECTED
    assert row["n"] > 0
