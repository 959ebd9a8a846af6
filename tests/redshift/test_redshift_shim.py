"""The test rig itself: why the shim exists and that it changes only the handshake."""

from __future__ import annotations

import os
import subprocess

import pytest
import redshift_connector

from tests.support.pgserver import find_bindir


def connect(pg_server, port):
    return redshift_connector.connect(
        host="127.0.0.1",
        port=port,
        user=pg_server.user,
        password=pg_server.password,
        database=pg_server.database,
        ssl=False,
    )


def test_the_driver_cannot_talk_to_postgresql_directly(pg_server):
    """If this starts passing, a driver upgrade made the shim unnecessary."""
    with pytest.raises(redshift_connector.ProgrammingError) as caught:
        connect(pg_server, pg_server.port)
    assert "unrecognized configuration parameter" in str(caught.value)


def test_through_the_shim_the_server_reports_a_redshift_version(pg_server, shim):
    conn = connect(pg_server, shim.port)
    try:
        statuses = dict(conn.parameter_statuses)
        assert statuses[b"server_version"] == b"8.0.2"
        cursor = conn.cursor()
        cursor.execute("SELECT current_setting('server_version_num')::int >= 150000")
        assert cursor.fetchall() == ([True],)  # the real server answers behind it
    finally:
        conn.close()


def test_shim_reports_the_startup_parameters_it_dropped(pg_server, shim):
    connect(pg_server, shim.port).close()
    log = shim.log_path.read_text()
    assert "dropped startup parameters: client_protocol_version, driver_version" in log


def test_psql_works_through_the_shim_with_its_tls_request_declined(pg_server, shim):
    proc = subprocess.run(
        [
            str(find_bindir() / "psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            str(shim.port),
            "-U",
            pg_server.user,
            "-d",
            pg_server.database,
            "-c",
            "SELECT count(*) FROM leads WHERE phone LIKE '+52%'",
        ],
        env={**os.environ, "PGPASSWORD": pg_server.password, "PGSSLMODE": "prefer"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "250"
