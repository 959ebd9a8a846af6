"""Redshift's cursor limits, played by the shim (emulations of documented behaviour).

* single-node clusters refuse FETCH above 1000 rows (and FETCH ALL);
* the total cursor data is capped per node type, checked at the first FETCH.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import redshift_connector

from lead_recovery.errors import LeadRecoveryError
from tests.support.redshift_limits import cursor_cap_message, single_node_message

PARAMS = {"run_date": dt.date(2025, 5, 12)}


def tag_for(recipe: str) -> str:
    return f"lead_recovery recipe={recipe} run_date=20250512"


def connect(pg_server, port):
    conn = redshift_connector.connect(
        host="127.0.0.1",
        port=port,
        database=pg_server.database,
        user=pg_server.user,
        password=pg_server.password,
        ssl=False,
    )
    return conn


def server_error(err: BaseException) -> dict:
    return next(a for a in err.args if isinstance(a, dict))


# -- the emulation itself ------------------------------------------------------------------


def test_single_node_shim_answers_large_fetches_like_redshift(pg_server, limited_shim):
    shim = limited_shim(single_node=True)
    conn = connect(pg_server, shim.port)
    try:
        cursor = conn.cursor()
        for fetch in ("FETCH FORWARD 2000 FROM c", "FETCH ALL FROM c"):
            cursor.execute("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 3000) g")
            with pytest.raises(redshift_connector.ProgrammingError) as caught:
                cursor.execute(fetch)
            fields = server_error(caught.value)
            size = "2000" if "2000" in fetch else "ALL"
            assert fields["C"] == "XX000"
            assert fields["M"] == single_node_message(size)
            conn.rollback()
        cursor.execute("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 3000) g")
        cursor.execute("FETCH FORWARD 1000 FROM c")
        assert len(cursor.fetchall()) == 1000
        conn.rollback()
    finally:
        conn.close()
    assert single_node_message(2000) == (
        "Fetch size 2000 exceeds the limit of 1000 for a single node configuration. "
        "Reduce the client fetch/cache size or upgrade to a multi node installation."
    )


def test_capped_shim_fails_the_first_fetch_of_a_large_result_only(pg_server, limited_shim):
    shim = limited_shim(cursor_cap_rows=100)
    conn = connect(pg_server, shim.port)
    try:
        cursor = conn.cursor()
        cursor.execute("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 101) g ORDER BY g")
        with pytest.raises(redshift_connector.ProgrammingError) as caught:
            cursor.execute("FETCH FORWARD 10 FROM c")
        assert server_error(caught.value)["M"] == cursor_cap_message()
        conn.rollback()
        cursor.execute("DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 100) g ORDER BY g")
        cursor.execute("FETCH FORWARD 1000 FROM c")
        assert [r[0] for r in cursor.fetchall()] == list(range(1, 101))
        conn.rollback()
    finally:
        conn.close()


# -- the extract on a single-node cluster ----------------------------------------------


def test_single_node_extract_retries_with_1000_rows_per_fetch_and_says_so(
    limited_shim, make_warehouse, server_log, caplog
):
    limited_shim(single_node=True)
    warehouse = make_warehouse()  # batch_size 100000, the default
    sql = "SELECT g AS n FROM generate_series(1, 2500) g WHERE :run_date::date IS NOT NULL"
    since = server_log.mark()
    with caplog.at_level(logging.INFO, logger="lead_recovery"):
        reader = warehouse.stream(sql, PARAMS, tag=tag_for("single"))
        table = reader.read_all()
    assert table.column("n").to_pylist() == list(range(1, 2501))
    assert warehouse.last_extract == {
        "path": "cursor",
        "fetch_size": 1000,
        "single_node": True,
        "rows": 2500,
        "complete": True,
    }
    assert "single-node cluster (it refused FETCH FORWARD 100000)" in caplog.text
    assert "1000 rows per FETCH" in caplog.text
    statements = server_log.server.statements(since)  # executed (a failed one too)
    assert sum("single-node refused FETCH FORWARD 100000" in s for s in statements) == 1
    assert sum(s.startswith("FETCH FORWARD 1000 ") for s in statements) == 3
    # one query: the retry re-declares the same cursor in a fresh transaction
    assert len(server_log.declared(since, tag_for("single"))) == 1

    # The warehouse remembers: the next query goes straight to 1000 rows per FETCH.
    since = server_log.mark()
    assert warehouse.stream(sql, PARAMS, tag=tag_for("single2")).read_all().num_rows == 2500
    statements = server_log.server.statements(since, failed=True)
    assert not any("single-node refused" in s for s in statements)


def test_multi_node_keeps_batch_size(make_warehouse, server_log):
    warehouse = make_warehouse(batch_size=2000)
    since = server_log.mark()
    reader = warehouse.stream(
        "SELECT g FROM generate_series(1, 2500) g", PARAMS, tag=tag_for("multi")
    )
    assert reader.read_all().num_rows == 2500
    assert warehouse.last_extract["fetch_size"] == 2000
    assert warehouse.last_extract["single_node"] is False
    fetches = [s for s in server_log.server.statements(since) if s.startswith("FETCH")]
    assert fetches and all(s.startswith("FETCH FORWARD 2000 ") for s in fetches)


def test_batch_size_at_most_1000_never_meets_the_single_node_limit(
    limited_shim, make_warehouse, caplog
):
    limited_shim(single_node=True)
    warehouse = make_warehouse(batch_size=700)
    with caplog.at_level(logging.INFO, logger="lead_recovery"):
        table = warehouse.stream(
            "SELECT g FROM generate_series(1, 1500) g", PARAMS, tag=tag_for("small")
        ).read_all()
    assert table.num_rows == 1500
    assert warehouse.last_extract["fetch_size"] == 700
    assert "single-node" not in caplog.text


# -- the cursor-data cap -------------------------------------------------------------------


def test_result_over_the_cursor_cap_is_one_line_naming_the_cap_and_the_remedy(
    limited_shim, make_warehouse, redshift_env
):
    limited_shim(cursor_cap_rows=100)
    warehouse = make_warehouse()
    with pytest.raises(LeadRecoveryError) as caught:
        warehouse.stream("SELECT lead_id FROM leads", PARAMS, tag=tag_for("big"))
    message = str(caught.value)
    assert "\n" not in message
    assert "exceeded the maximum size allowed for the total set of cursor data: 8000MB" in message
    assert "extract: unload" in message
    assert "redshift.unload.s3_prefix" in message
    assert redshift_env["REDSHIFT_PASSWORD"] not in message
    assert warehouse.last_extract["complete"] is False
    # a result under the cap still reads through the cursor
    table = warehouse.stream(
        "SELECT lead_id FROM leads WHERE lead_id <= 100", PARAMS, tag=tag_for("small")
    ).read_all()
    assert table.num_rows == 100


def test_cursor_cap_with_auto_but_no_unload_settings_still_names_the_remedy(
    limited_shim, make_warehouse
):
    limited_shim(cursor_cap_rows=10, cursor_cap_label="3200MB")
    warehouse = make_warehouse(extract="auto")
    with pytest.raises(LeadRecoveryError, match=r"cursor data: 3200MB.*extract: unload"):
        warehouse.stream("SELECT lead_id FROM leads", PARAMS, tag=tag_for("auto"))


def test_cap_on_bytes_is_emulated_too(limited_shim, make_warehouse):
    limited_shim(cursor_cap_bytes=2000)
    warehouse = make_warehouse()
    with pytest.raises(LeadRecoveryError, match="total set of cursor data"):
        warehouse.stream("SELECT name, email FROM leads", PARAMS, tag=tag_for("bytes"))


def test_unknown_extract_mode_is_named(make_warehouse):
    with pytest.raises(LeadRecoveryError, match="redshift.extract is 'bulk'"):
        make_warehouse(extract="bulk")
    warehouse = make_warehouse()
    with pytest.raises(LeadRecoveryError, match="extract is 'fast'; use one of: cursor, unload"):
        warehouse.stream("SELECT 1", PARAMS, tag=tag_for("x"), extract="fast")


def test_unload_without_settings_is_refused_before_querying(make_warehouse, server_log):
    warehouse = make_warehouse()
    since = server_log.mark()
    with pytest.raises(LeadRecoveryError, match="needs redshift.unload.s3_prefix"):
        warehouse.stream("SELECT 1", PARAMS, tag=tag_for("nounload"), extract="unload")
    assert not server_log.server.statements(since, containing=tag_for("nounload"))
