"""A real server for the Redshift warehouse tests.

One throw-away PostgreSQL per test session (tests/support/pgserver.py), and
the handshake shim in front of it (tests/support/redshift_shim.py) so the
real ``redshift_connector`` can talk to it. What the server received is read
from its statement log, never from mocks: a DECLARE carries the query tag and
a unique cursor name, so "how many queries did the server get" is a count of
distinct cursor names.

Redshift's documented limits (single-node FETCH size, the cursor-data cap,
UNLOAD to S3) are emulated per test by a shim started with them switched on
(``limited_shim``; tests/support/redshift_limits.py): emulations of
documented behaviour, not Redshift. UNLOAD writes to a local moto S3 server
(``s3_server``), one per session.

TLS: ``tls_shim`` speaks real TLS with a throw-away CA (``test_certs``). IAM:
the AWS calls the driver makes for temporary credentials cannot be made
here, so ``aws_stub`` stubs the driver's boto3 clients with botocore's
Stubber; everything after them (the login with those credentials) is real.
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
from tests.support.redshift_limits import Limits  # noqa: E402
from tests.support.redshift_shim import ShimProcess, make_test_certificates  # noqa: E402
from tests.support.s3server import S3Server  # noqa: E402

UNLOAD_BUCKET = "lr-unload-test"

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


@pytest.fixture(scope="session")
def test_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA, a server certificate for ``localhost`` it signed, an unrelated CA."""
    return make_test_certificates(tmp_path_factory.mktemp("tls"), names=("localhost",))


@pytest.fixture(scope="session")
def tls_shim(pg_server, test_certs, tmp_path_factory) -> ShimProcess:
    """A shim that answers SSLRequest and speaks TLS with the ``localhost`` certificate."""
    log = tmp_path_factory.mktemp("tls-shim") / "shim.log"
    with ShimProcess(
        pg_server.port, log_path=log, tls=(str(test_certs["cert"]), str(test_certs["key"]))
    ) as proxy:
        yield proxy


@pytest.fixture
def tls_env(redshift_env, tls_shim, test_certs, monkeypatch) -> dict[str, str]:
    """REDSHIFT_* for the TLS shim as ``localhost``, trusting the test CA (TLS on)."""
    monkeypatch.delenv("REDSHIFT_SSL")
    monkeypatch.setenv("REDSHIFT_HOST", "localhost")
    monkeypatch.setenv("REDSHIFT_PORT", str(tls_shim.port))
    monkeypatch.setenv("REDSHIFT_SSL_ROOT_CERT", str(test_certs["ca"]))
    return {k: v for k, v in __import__("os").environ.items() if k.startswith("REDSHIFT_")}


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    """A local moto S3 server for the session, with the UNLOAD bucket created."""
    with S3Server() as server:
        server.client().create_bucket(Bucket=UNLOAD_BUCKET)
        yield server


@pytest.fixture
def aws_env(s3_server, monkeypatch) -> dict[str, str]:
    """boto3 in this process pointed at the local S3 server (dummy credentials)."""
    for key in [k for k in __import__("os").environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server.env


@pytest.fixture
def limited_shim(pg_server, redshift_env, monkeypatch, tmp_path, request):
    """``limited_shim(single_node=True, cursor_cap_rows=N, unload=True, ...)``.

    Starts a shim with those Redshift limits emulated, points REDSHIFT_PORT
    at it, and stops it after the test. ``unload=True`` needs ``aws_env``.
    """
    import os

    started = []

    def start(**options) -> ShimProcess:
        if options.get("unload"):
            options.setdefault("unload_psql", pg_server.psql_bin)
            options.setdefault("unload_conninfo", pg_server.admin_conninfo)
        limits = Limits(**options)
        proxy = ShimProcess(
            pg_server.port,
            log_path=tmp_path / f"shim{len(started)}.log",
            limits=limits,
            env=dict(os.environ),
        )
        started.append(proxy)
        monkeypatch.setenv("REDSHIFT_PORT", str(proxy.port))
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


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


@pytest.fixture
def aws_stub(monkeypatch):
    """Every boto3 client the driver makes for ``service`` shares one stubbed client.

    Returns ``stub(service) -> botocore.stub.Stubber``; the driver's cache of
    temporary credentials is emptied, so each test's stub is asked.
    """
    import boto3
    from botocore.stub import Stubber
    from redshift_connector.iam_helper import IamHelper

    monkeypatch.setattr(IamHelper, "credentials_cache", {})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, f"stub-{key.lower()}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    real_client = boto3.session.Session.client
    stubbed: dict[str, tuple[object, Stubber]] = {}

    def client(self, service_name, *args, **kwargs):
        if service_name not in ("redshift", "redshift-serverless"):
            return real_client(self, service_name, *args, **kwargs)
        if service_name not in stubbed:
            made = real_client(self, service_name, *args, **kwargs)
            stubber = Stubber(made)
            stubber.activate()
            stubbed[service_name] = (made, stubber)
        return stubbed[service_name][0]

    monkeypatch.setattr(boto3.session.Session, "client", client)

    def stub(service: str) -> Stubber:
        if service not in stubbed:
            made = real_client(boto3.session.Session(), service, region_name="eu-west-1")
            stubber = Stubber(made)
            stubber.activate()
            stubbed[service] = (made, stubber)
        return stubbed[service][1]

    yield stub
    for _, stubber in stubbed.values():
        stubber.assert_no_pending_responses()


def database_role(pg_server, name: str, password: str) -> None:
    """The role AWS would have named, with the password AWS handed out (not logged)."""
    quoted = password.replace("'", "''")
    pg_server.psql(
        f"SET log_statement = 'none'; CREATE ROLE \"{name}\" LOGIN PASSWORD '{quoted}'; "
        f'GRANT SELECT ON leads TO "{name}"'
    )
