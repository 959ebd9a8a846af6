"""RedshiftWarehouse against a real server: the real driver, a real PostgreSQL
behind the handshake shim, counting what the server actually received."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from decimal import Decimal

import pyarrow as pa
import pytest
import redshift_connector

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import open_warehouse
from lead_recovery.warehouse import redshift as rs

RUN_DATE = dt.date(2025, 5, 12)
PARAMS = {"run_date": RUN_DATE}


def tag_for(recipe: str) -> str:
    return f"lead_recovery recipe={recipe} run_date=20250512"


def assert_one_line(message: str, *secrets: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    for secret in secrets:
        assert secret not in message, f"secret leaked into {message!r}"


def read(reader: pa.RecordBatchReader) -> tuple[list[pa.RecordBatch], pa.Table]:
    batches = list(reader)
    return batches, pa.Table.from_batches(batches, schema=reader.schema)


# -- happy path --------------------------------------------------------------------------


def test_streams_the_rows_in_batches_of_batch_size_with_run_date_bound(make_warehouse, server_log):
    warehouse = make_warehouse(batch_size=3)
    since = server_log.mark()
    reader = warehouse.stream(
        "SELECT lead_id, name FROM leads\nWHERE created_at < :run_date::date - 10 ORDER BY lead_id",
        PARAMS,
        tag=tag_for("happy"),
    )
    batches, table = read(reader)

    # 2025-05-01 + g hours < 2025-05-02: g = 1..23
    assert table.column("lead_id").to_pylist() == list(range(1, 24))
    assert [b.num_rows for b in batches] == [3] * 7 + [2]
    assert reader.schema.field("lead_id").type == pa.int64()
    assert len(server_log.declared(since, tag_for("happy"))) == 1
    fetches = [s for s in server_log.server.statements(since) if s.startswith("FETCH FORWARD 3")]
    assert len(fetches) == 8


def test_open_warehouse_builds_it_from_the_workflow_config(redshift_env):
    warehouse = open_warehouse("redshift", {"redshift": {"batch_size": 7, "retries": 1}})
    try:
        assert warehouse.name == "redshift"
        assert warehouse.batch_size == 7
        assert warehouse.retries == 1
        assert redshift_env["REDSHIFT_PASSWORD"] not in repr(warehouse)
    finally:
        warehouse.close()


def test_empty_result_keeps_its_schema(make_warehouse):
    reader = make_warehouse().stream(
        "SELECT lead_id, name, loan_amount, created_at FROM leads\n"
        "WHERE created_at > :run_date::date + 365",
        PARAMS,
        tag=tag_for("empty"),
    )
    batches, table = read(reader)

    assert table.num_rows == 0
    assert batches == []
    assert reader.schema == pa.schema(
        [
            ("lead_id", pa.int64()),
            ("name", pa.string()),
            ("loan_amount", pa.decimal128(12, 2)),
            ("created_at", pa.timestamp("us")),
        ]
    )


TYPED_TABLE = """
DROP TABLE IF EXISTS typed;
CREATE TABLE typed (
  i2 int2, i4 int4, i8 int8, num numeric(12,2), f4 float4, f8 float8,
  txt text, vc varchar(10), ch char(4), flag boolean,
  d date, ts timestamp, tstz timestamptz, num_free numeric
);
INSERT INTO typed VALUES
  (1, 2, 3, 12.34, 1.25, 2.5, 'text', 'varchar', 'ab', true,
   '2025-05-12', '2025-05-12 13:14:15.123456', '2025-05-12 13:14:15.5+02', 0.1234567891),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
GRANT SELECT ON typed TO lr_test;
"""


def test_every_type_round_trips_into_arrow_with_its_type_and_nulls(make_warehouse, pg_server):
    pg_server.psql(TYPED_TABLE)
    reader = make_warehouse().stream(
        "SELECT * FROM typed ORDER BY i2 NULLS LAST", PARAMS, tag=tag_for("types")
    )
    _, table = read(reader)

    assert dict(zip(table.schema.names, table.schema.types, strict=True)) == {
        "i2": pa.int16(),
        "i4": pa.int32(),
        "i8": pa.int64(),
        "num": pa.decimal128(12, 2),
        "f4": pa.float32(),
        "f8": pa.float64(),
        "txt": pa.string(),
        "vc": pa.string(),
        "ch": pa.string(),
        "flag": pa.bool_(),
        "d": pa.date32(),
        "ts": pa.timestamp("us"),
        "tstz": pa.timestamp("us", tz="UTC"),
        "num_free": pa.decimal128(38, 10),
    }
    first, second = table.to_pylist()
    assert first["i2"] == 1 and first["i4"] == 2 and first["i8"] == 3
    assert first["num"] == Decimal("12.34")  # exact, not a float
    assert first["f4"] == 1.25 and first["f8"] == 2.5
    assert (first["txt"], first["vc"], first["ch"]) == ("text", "varchar", "ab  ")
    assert first["flag"] is True
    assert first["d"] == dt.date(2025, 5, 12)
    assert first["ts"] == dt.datetime(2025, 5, 12, 13, 14, 15, 123456)
    # the server's session time zone is America/New_York; the value arrives as UTC
    assert first["tstz"] == dt.datetime(2025, 5, 12, 11, 14, 15, 500000, tzinfo=dt.UTC)
    assert first["num_free"] == Decimal("0.1234567891")
    assert all(value is None for value in second.values())


def test_unconstrained_numeric_that_does_not_fit_names_the_column(make_warehouse):
    with pytest.raises(LeadRecoveryError) as caught:
        make_warehouse().stream(
            "SELECT 1::numeric / 3 AS ratio", PARAMS, tag=tag_for("ratio")
        ).read_all()
    message = str(caught.value)
    assert_one_line(message)
    assert "column 'ratio'" in message and "::numeric" in message


def test_percent_in_like_and_double_colon_casts_work_with_run_date(make_warehouse):
    reader = make_warehouse().stream(
        """
        -- a comment with a colon: and a 100% sign
        SELECT lead_id, phone, loan_amount::float8 AS amount, :run_date::date AS run_date
        FROM leads
        WHERE phone LIKE '+52%'
          AND name LIKE 'Lead 1%'
          AND created_at::date < :run_date
          AND '50%' LIKE '%\\%'
        ORDER BY lead_id
        """,
        PARAMS,
        tag=tag_for("like"),
    )
    rows = reader.read_all().to_pylist()

    assert rows, "no rows"
    assert all(r["phone"].startswith("+52") for r in rows)
    assert {r["run_date"] for r in rows} == {RUN_DATE}
    assert rows[0] == {
        "lead_id": 10,
        "phone": "+52000000010",
        "amount": 1002.5,
        "run_date": RUN_DATE,
    }


def test_trailing_semicolon_is_accepted(make_warehouse):
    reader = make_warehouse().stream("SELECT 1 AS one;\n\n", PARAMS, tag=tag_for("semi"))
    assert reader.read_all().to_pylist() == [{"one": 1}]


def test_query_tag_is_visible_at_the_server_while_the_query_runs(make_warehouse, pg_server):
    warehouse = make_warehouse(batch_size=10)
    since = pg_server.mark()
    reader = warehouse.stream(
        "SELECT lead_id FROM leads ORDER BY lead_id", PARAMS, tag=tag_for("tagged")
    )
    next(iter(reader))
    active = pg_server.psql(
        "SELECT application_name FROM pg_stat_activity WHERE usename = 'lr_test'"
    ).split("\n")
    reader.read_all()

    assert tag_for("tagged") in active
    logged = pg_server.statements(since, containing="DECLARE")
    assert logged and logged[0].startswith(f"/* {tag_for('tagged')} */")
    apps = {e.app for e in pg_server.entries(since) if e.sql and "DECLARE" in e.sql}
    assert apps == {tag_for("tagged")}


# -- failures ----------------------------------------------------------------------------


def test_sql_error_is_one_line_with_its_line_and_is_not_retried(
    make_warehouse, server_log, redshift_env
):
    warehouse = make_warehouse(retries=3)
    since = server_log.mark()
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream(
            "SELECT lead_id\nFROM leads\nWHERE no_such_column = :run_date",
            PARAMS,
            tag=tag_for("sqlerror"),
        )
    message = str(caught.value)

    assert_one_line(message, redshift_env["REDSHIFT_PASSWORD"])
    assert message.startswith('query failed: column "no_such_column" does not exist')
    assert "SQLSTATE 42703" in message and "line 3" in message
    assert len(server_log.declared(since, tag_for("sqlerror"))) == 1


def test_error_while_fetching_is_one_line_and_is_not_retried(make_warehouse, server_log):
    warehouse = make_warehouse(retries=3, batch_size=50)
    since = server_log.mark()
    reader = warehouse.stream(
        "SELECT lead_id, 1 / (lead_id - 120) AS boom FROM leads ORDER BY lead_id",
        PARAMS,
        tag=tag_for("latefail"),
    )
    with pytest.raises(LeadRecoveryError) as caught:
        reader.read_all()

    assert_one_line(str(caught.value))
    assert "division by zero" in str(caught.value)
    assert "after 100 rows" in str(caught.value)
    assert len(server_log.declared(since, tag_for("latefail"))) == 1


def test_unknown_parameter_is_named_before_anything_is_sent(make_warehouse, server_log):
    since = server_log.mark()
    with pytest.raises(LeadRecoveryError, match=r"uses the parameter :region, but only :run_date"):
        make_warehouse().stream("SELECT 1 WHERE :region = 'x'", PARAMS, tag=tag_for("unknownparam"))
    assert server_log.declared(since, tag_for("unknownparam")) == set()


def test_statement_timeout_cancels_a_long_query_without_retrying(make_warehouse, server_log):
    warehouse = make_warehouse(statement_timeout_s=1, retries=2)
    since = server_log.mark()
    started = time.monotonic()
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT pg_sleep(5) AS slept", PARAMS, tag=tag_for("slow")).read_all()

    assert time.monotonic() - started < 4
    assert_one_line(str(caught.value))
    assert "statement timeout" in str(caught.value)
    assert "statement_timeout_s is 1" in str(caught.value)
    assert len(server_log.declared(since, tag_for("slow"))) == 1


def test_query_may_run_longer_than_the_connect_timeout(make_warehouse):
    """The driver keeps its connect timeout on the socket; the warehouse lifts it."""
    warehouse = make_warehouse(connect_timeout_s=1, statement_timeout_s=30)
    reader = warehouse.stream("SELECT 1 AS one FROM pg_sleep(2)", PARAMS, tag=tag_for("longer"))
    assert reader.read_all().to_pylist() == [{"one": 1}]


def test_wrong_password_is_one_line_without_secrets_and_not_retried(
    make_warehouse, server_log, monkeypatch, redshift_env
):
    wrong = "Wr0ng-S3cret-Passw0rd"
    monkeypatch.setenv("REDSHIFT_PASSWORD", wrong)
    warehouse = make_warehouse(retries=3)
    since = server_log.mark()
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT 1", PARAMS, tag=tag_for("badpw"))
    message = str(caught.value)

    assert_one_line(message, wrong, redshift_env["REDSHIFT_PASSWORD"])
    assert "rejected the login of user 'lr_test'" in message
    assert "REDSHIFT_PASSWORD" in message  # says what to fix
    assert server_log.failed_logins(since) == 1


# the driver builds SSLContext() without a protocol, which Python deprecates
@pytest.mark.filterwarnings("ignore:ssl.*deprecated:DeprecationWarning")
def test_tls_refusal_says_how_to_reach_a_local_server(make_warehouse, monkeypatch, server_log):
    monkeypatch.delenv("REDSHIFT_SSL")  # TLS is on by default; the shim answers 'N'
    warehouse = make_warehouse(retries=3)
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT 1", PARAMS, tag=tag_for("tls"))
    assert_one_line(str(caught.value))
    assert "refused TLS" in str(caught.value) and "REDSHIFT_SSL=false" in str(caught.value)


@pytest.fixture
def connect_calls(monkeypatch):
    """Every call of redshift_connector.connect (the real one still runs)."""
    calls = []
    real = redshift_connector.connect

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(redshift_connector, "connect", spy)
    return calls


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff delays the warehouse waited (without waiting)."""
    waited = []
    monkeypatch.setattr(rs.time, "sleep", waited.append)
    return waited


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once closed


def test_connection_refused_is_retried_with_backoff_then_fails(
    make_warehouse, monkeypatch, connect_calls, sleeps, redshift_env
):
    monkeypatch.setenv("REDSHIFT_PORT", str(closed_port()))
    warehouse = make_warehouse(retries=3, retry_backoff_s=0.5)
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT 1", PARAMS, tag=tag_for("refused"))
    message = str(caught.value)

    assert len(connect_calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert_one_line(message, redshift_env["REDSHIFT_PASSWORD"])
    assert "connection refused" in message and "tried 4 times" in message


def test_connect_timeout_is_retried_then_fails(make_warehouse, monkeypatch, connect_calls, sleeps):
    with socket.socket() as silent:  # accepts TCP connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("REDSHIFT_PORT", str(silent.getsockname()[1]))
        warehouse = make_warehouse(retries=1, connect_timeout_s=1)
        with pytest.raises(LeadRecoveryError) as caught:
            warehouse.stream("SELECT 1", PARAMS, tag=tag_for("silent"))

    assert len(connect_calls) == 2
    assert_one_line(str(caught.value))
    assert "timed out after 1s" in str(caught.value)


def test_transient_failure_then_success_returns_the_rows(
    make_warehouse, monkeypatch, connect_calls, sleeps
):
    real = redshift_connector.connect
    failures = iter([ConnectionRefusedError(111, "Connection refused")])

    def flaky(**kwargs):
        for err in failures:
            connect_calls.append(kwargs)
            raise redshift_connector.InterfaceError("communication error", err)
        return real(**kwargs)

    monkeypatch.setattr(redshift_connector, "connect", flaky)
    warehouse = make_warehouse(retries=2, retry_backoff_s=0.25)
    reader = warehouse.stream("SELECT 42 AS answer", PARAMS, tag=tag_for("flaky"))
    assert reader.read_all().to_pylist() == [{"answer": 42}]
    assert sleeps == [0.25]


def test_server_ending_the_session_mid_fetch_raises_from_the_reader(
    make_warehouse, pg_server, redshift_env
):
    warehouse = make_warehouse(batch_size=100)
    reader = warehouse.stream(
        "SELECT g AS n FROM generate_series(1, 100000) AS g", PARAMS, tag=tag_for("killed")
    )
    batches = iter(reader)
    assert next(batches).num_rows == 100
    assert pg_server.terminate_backends(tag_for("killed")) == 1

    with pytest.raises(LeadRecoveryError) as caught:
        for _ in batches:
            pass
    message = str(caught.value)
    assert_one_line(message, redshift_env["REDSHIFT_PASSWORD"])
    assert "terminating connection due to administrator command" in message
    assert "rows)" in message


def test_network_dropping_mid_fetch_raises_from_the_reader(make_warehouse, shim, redshift_env):
    warehouse = make_warehouse(batch_size=100)
    reader = warehouse.stream(
        "SELECT g AS n FROM generate_series(1, 100000) AS g", PARAMS, tag=tag_for("dropped")
    )
    batches = iter(reader)
    assert next(batches).num_rows == 100
    assert shim.drop_connections() >= 2

    with pytest.raises(LeadRecoveryError) as caught:
        for _ in batches:
            pass
    message = str(caught.value)
    assert_one_line(message, redshift_env["REDSHIFT_PASSWORD"])
    assert message.startswith("connection to Redshift at 127.0.0.1:")


def test_abandoned_reader_frees_its_server_session_on_close(make_warehouse, pg_server):
    warehouse = make_warehouse(batch_size=50)
    reader = warehouse.stream(
        "SELECT g AS n FROM generate_series(1, 100000) AS g", PARAMS, tag=tag_for("abandoned")
    )
    next(iter(reader))
    warehouse.close()

    def sessions() -> int:
        out = pg_server.psql(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE application_name = '{tag_for('abandoned')}'"
        )
        return int(out.strip())

    deadline = time.monotonic() + 10
    while sessions() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sessions() == 0


def test_fetching_keeps_gc_state_as_it_was(make_warehouse):
    import gc

    assert gc.isenabled()
    make_warehouse(batch_size=10).stream(
        "SELECT g FROM generate_series(1, 95) AS g", PARAMS, tag=tag_for("gc")
    ).read_all()
    assert gc.isenabled()
    gc.disable()
    try:
        make_warehouse(batch_size=10).stream(
            "SELECT g FROM generate_series(1, 95) AS g", PARAMS, tag=tag_for("gc")
        ).read_all()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_concurrent_streams_are_independent(make_warehouse):
    results = {}

    def run(name: str, n: int) -> None:
        warehouse = make_warehouse(batch_size=7)
        reader = warehouse.stream(
            f"SELECT g FROM generate_series(1, {n}) AS g", PARAMS, tag=tag_for(name)
        )
        results[name] = reader.read_all().num_rows

    threads = [threading.Thread(target=run, args=(f"t{i}", 50 + i)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {"t0": 50, "t1": 51, "t2": 52}
