"""A real server for the Redshift warehouse tests.

One throw-away PostgreSQL per test session (tests/support/pgserver.py), and
the handshake shim in front of it (tests/support/redshift_shim.py) so the
real ``redshift_connector`` can talk to it. What the server received is read
from its statement log, never from mocks: a DECLARE carries the query tag and
a unique cursor name, so "how many queries did the server get" is a count of
distinct cursor names.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.pgserver import PostgresServer  # noqa: E402
from tests.support.redshift_shim import ShimProcess  # noqa: E402

_CURSOR_RE = re.compile(r"DECLARE (lr_\w+) CURSOR")


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """A private PostgreSQL for the whole session (stopped and deleted at the end)."""
    server = PostgresServer()
    server.start()
    try:
        server.psql(
            """
            CREATE TABLE leads (
                lead_id bigint PRIMARY KEY,
                name text NOT NULL,
                phone varchar(20),
                email text,
                created_at timestamp NOT NULL,
                loan_amount numeric(12, 2),
                is_test boolean NOT NULL DEFAULT false
            );
            INSERT INTO leads
            SELECT g, 'Lead ' || g,
                   CASE WHEN g % 2 = 0 THEN '+52' ELSE '+34' END || lpad(g::text, 9, '0'),
                   CASE WHEN g % 5 = 0 THEN NULL ELSE 'lead' || g || '@example.com' END,
                   timestamp '2025-05-01' + g * interval '1 hour',
                   (g * 100.25)::numeric(12, 2),
                   g % 10 = 0
            FROM generate_series(1, 500) AS g;
            ALTER TABLE leads OWNER TO lr_test;
            """
        )
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shim(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> ShimProcess:
    """The handshake shim in its own process, in front of ``pg_server``."""
    log = tmp_path_factory.mktemp("shim") / "shim.log"
    with ShimProcess(pg_server.port, log_path=log) as proxy:
        yield proxy


@pytest.fixture
def redshift_env(pg_server, shim, monkeypatch, tmp_path) -> dict[str, str]:
    """REDSHIFT_* pointing at the shim; run from an empty folder so no stray .env is read."""
    for key in [k for k in __import__("os").environ if k.startswith("REDSHIFT_")]:
        monkeypatch.delenv(key)
    values = pg_server.env(shim.port)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def make_warehouse(redshift_env):
    """``make_warehouse(**redshift_settings)``: a RedshiftWarehouse from a workflow config."""
    from lead_recovery.warehouse.redshift import RedshiftWarehouse

    made = []

    def make(**settings):
        options = {"retries": 0, "retry_backoff_s": 0.01, "connect_timeout_s": 10}
        options.update(settings)
        warehouse = RedshiftWarehouse.from_config({"warehouse": "redshift", "redshift": options})
        made.append(warehouse)
        return warehouse

    yield make
    for warehouse in made:
        warehouse.close()


class ServerLog:
    """What the server received since a mark, read from its log."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def mark(self) -> int:
        return self.server.mark()

    def declared(self, since: int, tag: str) -> set[str]:
        """Distinct cursors the server was asked to DECLARE for ``tag``.

        Counts a DECLARE whether it ran or failed (a statement that fails to
        parse is logged only with its error).
        """
        names = set()
        for sql in self.server.statements(since, containing=tag, failed=True):
            match = _CURSOR_RE.search(sql)
            if match:
                names.add(match.group(1))
        return names

    def failed_logins(self, since: int) -> int:
        return sum(
            1
            for entry in self.server.entries(since)
            if entry.level == "FATAL" and "password authentication failed" in entry.message
        )


@pytest.fixture
def server_log(pg_server: PostgresServer) -> ServerLog:
    return ServerLog(pg_server)
