"""The UNLOAD path against the shim's UNLOAD emulation and a local moto S3 server.

The emulation (tests/support/redshift_limits.py) runs the inner query on
PostgreSQL and writes Parquet parts and a manifest to S3, accepting only
syntax Redshift accepts; it is not Redshift.
"""

from __future__ import annotations

import datetime as dt
import logging

import pyarrow as pa
import pytest
import redshift_connector

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import unload as ul
from tests.redshift.conftest import UNLOAD_BUCKET

PARAMS = {"run_date": dt.date(2025, 5, 12)}
ROLE = "arn:aws:iam::123456789012:role/lead-recovery-unload"


def tag_for(recipe: str) -> str:
    return f"lead_recovery recipe={recipe} run_date=20250512"


@pytest.fixture
def unload_shim(limited_shim, aws_env, monkeypatch):
    monkeypatch.setenv("LEAD_RECOVERY_RUN_ID", "run-test-1")
    return limited_shim(unload=True, unload_slices=3)


@pytest.fixture
def unload_options(request):
    prefix = f"s3://{UNLOAD_BUCKET}/staging/{request.node.name[:40]}"
    return {"s3_prefix": prefix, "iam_role": ROLE}


def sort_table(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by(key)


TYPES_SQL = """
SELECT g AS id,
       (g % 100)::smallint AS small,
       (g * 1000)::integer AS medium,
       (g::bigint * 10000000000) AS big,
       (g * 1.25)::numeric(12, 2) AS amount,
       (g / 3.0)::numeric(18, 6) AS ratio,
       timestamp '2025-05-01 00:00:00' + g * interval '1 hour 1.5 seconds' AS created_at,
       timestamptz '2025-05-01 00:00:00+02' + g * interval '1 minute' AS updated_at,
       date '2025-01-01' + g AS day,
       g % 3 = 0 AS flag,
       CASE WHEN g % 4 = 0 THEN NULL WHEN g % 4 = 1 THEN '' ELSE 'text ' || g END AS note,
       CASE WHEN g % 5 = 0 THEN NULL ELSE ('v' || g)::varchar(20) END AS code,
       (g * 0.5)::double precision AS score,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g % 2 = 0 END AS maybe
FROM generate_series(1, 3000) AS g
WHERE :run_date::date > date '2025-01-01'
"""


def test_unload_gives_the_same_columns_types_and_rows_as_the_cursor(
    unload_shim, make_warehouse, unload_options, s3_server, server_log
):
    cursor_wh = make_warehouse()
    cursor_table = cursor_wh.stream(TYPES_SQL, PARAMS, tag=tag_for("types")).read_all()

    warehouse = make_warehouse(extract="unload", unload=unload_options)
    since = server_log.mark()
    reader = warehouse.stream(TYPES_SQL, PARAMS, tag=tag_for("types"))
    unload_table = reader.read_all()

    assert unload_table.schema == cursor_table.schema
    assert unload_table.schema.field("amount").type == pa.decimal128(12, 2)
    assert unload_table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert unload_table.schema.field("created_at").type == pa.timestamp("us")
    assert unload_table.schema.field("small").type == pa.int16()
    assert sort_table(unload_table, "id").equals(sort_table(cursor_table, "id"))
    assert unload_table.column("note").null_count == 750
    assert "" in unload_table.column("note").to_pylist()

    info = warehouse.last_extract
    assert info["path"] == "unload"
    assert info["rows"] == info["unload_rows"] == 3000
    assert info["parts"] == 3 and info["s3_bytes"] > 0
    assert info["complete"] is True
    assert info["staging"] == (f"{unload_options['s3_prefix']}/types/20250512/run-test-1/")
    # staging deleted; one UNLOAD at the server, no cursor
    assert s3_server.keys(UNLOAD_BUCKET, "staging/") == []
    assert len(server_log.server.statements(since, containing="UNLOAD emulated")) == 1
    assert not server_log.declared(since, tag_for("types"))


def test_empty_result_keeps_its_schema(unload_shim, make_warehouse, unload_options):
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    reader = warehouse.stream(
        "SELECT lead_id, loan_amount, created_at FROM leads WHERE lead_id < 0",
        PARAMS,
        tag=tag_for("empty"),
    )
    table = reader.read_all()
    assert table.num_rows == 0
    assert table.schema.names == ["lead_id", "loan_amount", "created_at"]
    assert table.schema.field("loan_amount").type == pa.decimal128(12, 2)
    assert warehouse.last_extract["parts"] == 0


def test_quotes_backslashes_and_run_date_reach_unload_intact(
    unload_shim, make_warehouse, unload_options
):
    sql = (
        "SELECT 'it''s' AS quoted, 'back\\slash' AS slash, :run_date AS day,\n"
        "       count(*) AS n  -- a comment with 'quotes' and :colons\n"
        "FROM leads WHERE name LIKE 'Lead 1%' AND created_at < :run_date::date\n"
        "GROUP BY 1, 2, 3"
    )
    cursor_table = make_warehouse().stream(sql, PARAMS, tag=tag_for("q")).read_all()
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    table = warehouse.stream(sql, PARAMS, tag=tag_for("q")).read_all()
    assert table.to_pylist() == cursor_table.to_pylist()
    assert table.to_pylist()[0]["quoted"] == "it's"
    assert table.to_pylist()[0]["slash"] == "back\\slash"


def test_outer_limit_is_wrapped_because_unload_rejects_it(
    unload_shim, make_warehouse, unload_options, pg_server, caplog
):
    sql = "SELECT lead_id FROM leads ORDER BY lead_id LIMIT 7"
    # the emulation refuses it as Redshift does ...
    conn = redshift_connector.connect(
        host="127.0.0.1",
        port=unload_shim.port,
        database=pg_server.database,
        user=pg_server.user,
        password=pg_server.password,
        ssl=False,
    )
    try:
        with pytest.raises(redshift_connector.ProgrammingError, match="Limit clause"):
            conn.cursor().execute(
                f"UNLOAD ('{sql}') TO 's3://{UNLOAD_BUCKET}/raw/' IAM_ROLE default "
                "FORMAT AS PARQUET"
            )
    finally:
        conn.close()
    # ... and the extract wraps it
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    with caplog.at_level(logging.INFO, logger="lead_recovery"):
        table = warehouse.stream(sql, PARAMS, tag=tag_for("limit")).read_all()
    assert sorted(table.column("lead_id").to_pylist()) == list(range(1, 8))
    assert warehouse.last_extract["wrapped_limit"] is True
    assert "LIMIT in the outermost SELECT" in caplog.text


def test_auto_switches_to_unload_over_the_cursor_cap_and_says_so(
    limited_shim, aws_env, make_warehouse, unload_options, caplog, s3_server
):
    limited_shim(cursor_cap_rows=100, unload=True)
    warehouse = make_warehouse(extract="auto", unload=unload_options)
    with caplog.at_level(logging.INFO, logger="lead_recovery"):
        table = warehouse.stream(
            "SELECT lead_id FROM leads", PARAMS, tag=tag_for("auto")
        ).read_all()
    assert table.num_rows == 500
    info = warehouse.last_extract
    assert info["path"] == "unload" and info["fallback_from"] == "cursor"
    assert "cursor-data cap" in caplog.text and "extracting it with UNLOAD" in caplog.text
    # under the cap, auto stays on the cursor
    small = warehouse.stream(
        "SELECT lead_id FROM leads WHERE lead_id <= 50", PARAMS, tag=tag_for("auto2")
    )
    assert small.read_all().num_rows == 50
    assert warehouse.last_extract["path"] == "cursor"
    assert s3_server.keys(UNLOAD_BUCKET, "staging/") == []


def test_recipe_override_chooses_unload_for_one_query(unload_shim, make_warehouse, unload_options):
    warehouse = make_warehouse(unload=unload_options)  # extract: cursor by default
    warehouse.stream("SELECT 1 AS one", PARAMS, tag=tag_for("o"), extract="unload").read_all()
    assert warehouse.last_extract["path"] == "unload"
    warehouse.stream("SELECT 1 AS one", PARAMS, tag=tag_for("o")).read_all()
    assert warehouse.last_extract["path"] == "cursor"


def test_failing_unload_is_one_line_and_leaves_no_staging(
    unload_shim, make_warehouse, unload_options, s3_server, aws_env
):
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream(
            "SELECT lead_id, 1 / (lead_id - 250) AS boom FROM leads",
            PARAMS,
            tag=tag_for("boom"),
        )
    message = str(caught.value)
    assert "\n" not in message and "division by zero" in message
    assert message.startswith("UNLOAD failed:")
    assert aws_env["AWS_SECRET_ACCESS_KEY"] not in message
    assert s3_server.keys(UNLOAD_BUCKET, "staging/") == []


def test_sql_error_is_reported_with_its_line_before_unloading(
    unload_shim, make_warehouse, unload_options, server_log
):
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    since = server_log.mark()
    with pytest.raises(LeadRecoveryError, match=r"no_such_column.*line 2"):
        warehouse.stream(
            "SELECT lead_id\n  , no_such_column FROM leads", PARAMS, tag=tag_for("bad")
        )
    assert not server_log.server.statements(since, containing="UNLOAD emulated")


def test_abandoned_reader_deletes_its_staging_on_close(
    unload_shim, make_warehouse, unload_options, s3_server
):
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    reader = warehouse.stream("SELECT lead_id FROM leads", PARAMS, tag=tag_for("abandon"))
    assert s3_server.keys(UNLOAD_BUCKET, "staging/")  # parts and manifest are there
    del reader
    warehouse.close()
    assert s3_server.keys(UNLOAD_BUCKET, "staging/") == []


def test_no_aws_secret_in_logs(unload_shim, make_warehouse, unload_options, aws_env, caplog):
    warehouse = make_warehouse(extract="unload", unload=unload_options)
    with caplog.at_level(logging.DEBUG):  # every logger, botocore's own included
        warehouse.stream("SELECT lead_id FROM leads", PARAMS, tag=tag_for("s")).read_all()
    assert aws_env["AWS_SECRET_ACCESS_KEY"] not in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name == "lead_recovery"]
    assert ours and not any(aws_env["AWS_ACCESS_KEY_ID"] in m for m in ours)


def test_s3_failure_is_one_line(unload_shim, make_warehouse, monkeypatch):
    warehouse = make_warehouse(
        extract="unload", unload={"s3_prefix": "s3://no-such-bucket-here/x", "iam_role": ROLE}
    )
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT 1 AS one", PARAMS, tag=tag_for("nob"))
    assert "\n" not in str(caught.value)
    assert "NoSuchBucket" in str(caught.value)


# -- the statement, unit by unit -------------------------------------------------------


def test_unload_statement_quotes_and_inlines():
    query, wrapped = ul.unload_query(
        "SELECT 'a''b' AS x, 'c\\d' AS y, :run_date AS d, x::date -- :nope\nFROM t",
        PARAMS,
    )
    assert not wrapped
    assert "DATE '2025-05-12' AS d" in query and "x::date" in query and "-- :nope" in query
    settings = ul.UnloadSettings.from_config({"s3_prefix": "s3://bkt/p/", "iam_role": "default"})
    statement = ul.unload_statement(query, "s3://bkt/p/r/20250512/1/", settings)
    assert statement.startswith("UNLOAD ('SELECT \\'a\\'\\'b\\' AS x, \\'c\\\\d\\' AS y")
    assert "IAM_ROLE default" in statement and "FORMAT AS PARQUET\nMANIFEST" in statement


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"s3_prefix": "bucket/x"}, "not an s3://bucket/prefix"),
        ({"s3_prefix": "s3://bkt/x", "iam_role": "admin"}, "not an IAM role ARN"),
    ],
)
def test_bad_unload_settings_are_named(options, expected):
    with pytest.raises(LeadRecoveryError, match=expected):
        ul.UnloadSettings.from_config(options)


def test_unknown_parameter_is_named_for_unload():
    with pytest.raises(LeadRecoveryError, match=":since"):
        ul.unload_query("SELECT 1 WHERE x > :since", PARAMS)


def test_staging_client_takes_aws_region_unless_the_config_names_one(monkeypatch):
    """boto3 itself reads only AWS_DEFAULT_REGION and the profile: AWS_REGION, as the AWS
    CLI reads it, must reach the client too (no request is made)."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    plain = ul.UnloadSettings(s3_prefix="s3://bkt/p")
    named = ul.UnloadSettings(s3_prefix="s3://bkt/p", region="ap-south-1")
    assert ul.Staging(plain, "s3://bkt/p/x/").client.meta.region_name == "eu-west-1"
    assert ul.Staging(named, "s3://bkt/p/x/").client.meta.region_name == "ap-south-1"
