"""``warehouse.check``: what ``lead-recovery doctor`` will print, against the local server.

The server is PostgreSQL behind the handshake shim (with TLS, or with the
single-node FETCH limit emulated, where a test says so); S3 is a local moto
server. The Serverless IAM case stubs the one AWS call (GetCredentials) with
botocore's Stubber, as tests/redshift/test_ways_in.py does.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket

import duckdb
import pytest

from lead_recovery.warehouse import Check, check
from tests.redshift.conftest import UNLOAD_BUCKET, database_role

pytestmark = pytest.mark.filterwarnings("ignore:ssl.*deprecated:DeprecationWarning")
REDSHIFT = {"warehouse": "redshift"}


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def assert_clean(checks: list[Check], *secret_values: str) -> None:
    for item in checks:
        line = item.line()
        assert "\n" not in line
        for value in secret_values:
            assert value not in line, line


def test_a_reachable_server_with_a_password(redshift_env):
    checks = check(REDSHIFT, dict(os.environ), timeout_s=5)
    found = by_name(checks)
    assert [c.name for c in checks] == [
        "settings",
        "connection",
        "authentication",
        "tls",
        "single node",
    ]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert found["settings"].detail.startswith("redshift at 127.0.0.1:")
    assert found["authentication"].detail == "password; logged in as 'lr_test'"
    assert "off (REDSHIFT_SSL=false)" in found["tls"].detail
    assert found["single node"].detail.startswith("no: FETCH FORWARD 1001 accepted")
    assert found["connection"].line().startswith("[ok] connection: SELECT 1 answered in")
    assert_clean(checks, redshift_env["REDSHIFT_PASSWORD"])


def test_a_single_node_cluster_is_recognised(limited_shim, redshift_env):
    shim = limited_shim(single_node=True)
    checks = by_name(check(REDSHIFT, {**redshift_env, "REDSHIFT_PORT": str(shim.port)}))
    assert checks["single node"].ok is True
    assert checks["single node"].detail.startswith("yes: the server refuses FETCH above 1000")


@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca"])
def test_tls_says_how_the_certificate_was_checked(tls_env, test_certs, sslmode):
    checks = by_name(check(REDSHIFT, {**tls_env, "REDSHIFT_SSLMODE": sslmode}))
    tls = checks["tls"]
    assert tls.ok is True and tls.detail.startswith("on (TLSv1.")
    assert f"(sslmode {sslmode})" in tls.detail and str(test_certs["ca"]) in tls.detail


def test_an_untrusted_certificate_fails_the_tls_check(tls_env):
    environ = {k: v for k, v in tls_env.items() if k != "REDSHIFT_SSL_ROOT_CERT"}
    checks = by_name(check(REDSHIFT, environ))
    assert checks["connection"].ok is False and checks["tls"].ok is False
    assert "certificate was not accepted" in checks["tls"].detail
    assert checks["authentication"].ok is None and checks["single node"].ok is None


def test_a_wrong_password_fails_authentication_without_showing_it(redshift_env):
    wrong = f"wrong-{secrets.token_hex(6)}"
    checks = check(REDSHIFT, {**redshift_env, "REDSHIFT_PASSWORD": wrong})
    found = by_name(checks)
    assert found["connection"].ok is False and found["authentication"].ok is False
    assert "rejected the login of user 'lr_test'" in found["connection"].detail
    assert found["single node"].ok is None
    assert_clean(checks, wrong, redshift_env["REDSHIFT_PASSWORD"])


def test_an_unreachable_server_is_one_failure_and_the_rest_unknown(redshift_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = dt.datetime.now()
    checks = by_name(check(REDSHIFT, {**redshift_env, "REDSHIFT_PORT": str(port)}, timeout_s=2))
    assert (dt.datetime.now() - started).total_seconds() < 10  # no retries
    assert checks["connection"].ok is False and "connection refused" in checks["connection"].detail
    assert checks["authentication"].ok is None


def test_missing_settings_stop_at_the_first_check(redshift_env):
    checks = check(REDSHIFT, {"REDSHIFT_HOST": "h"})
    assert [c.name for c in checks] == ["settings"]
    assert checks[0].ok is False and "REDSHIFT_DATABASE" in checks[0].detail


def test_serverless_iam_names_the_way_in_and_the_user(
    tls_env,
    aws_stub,
    pg_server,
    monkeypatch,  # noqa: F811
):
    role, password = f"IAMR:doctor-{secrets.token_hex(4)}", f"pw-{secrets.token_hex(8)}"
    database_role(pg_server, role, password)
    aws_stub("redshift-serverless").add_response(
        "get_credentials",
        {"dbUser": role, "dbPassword": password, "expiration": dt.datetime.now(dt.UTC)},
    )
    environ = {k: v for k, v in tls_env.items() if k not in ("REDSHIFT_USER", "REDSHIFT_PASSWORD")}
    environ |= {"REDSHIFT_IAM": "true", "REDSHIFT_WORKGROUP": "lead-wg"}
    environ |= {"REDSHIFT_REGION": "eu-west-1"}
    checks = check(REDSHIFT, environ)
    found = by_name(checks)
    assert found["settings"].detail.startswith("redshift serverless lead-wg/")
    assert found["authentication"].ok is True
    assert "IAM, Serverless workgroup (redshift-serverless:GetCredentials)" in (
        found["authentication"].detail
    )
    assert f"logged in as '{role}'" in found["authentication"].detail
    assert_clean(checks, password)


# -- UNLOAD settings ---------------------------------------------------------------------


def unload_config(**unload) -> dict:
    return {"warehouse": "redshift", "redshift": {"extract": "unload", "unload": unload}}


def test_unload_prefix_writable_and_role_named(redshift_env, aws_env, s3_server):
    role = "arn:aws:iam::123456789012:role/lead-recovery-unload"
    config = unload_config(s3_prefix=f"s3://{UNLOAD_BUCKET}/doctor", iam_role=role)
    found = by_name(check(config, redshift_env))
    assert (
        found["unload s3_prefix"].ok is True and "is writable" in found["unload s3_prefix"].detail
    )
    assert found["unload iam_role"] == Check("unload iam_role", True, role)
    assert s3_server.keys(UNLOAD_BUCKET, "doctor/") == []  # the test object is gone


def test_unload_prefix_in_a_missing_bucket_fails_in_one_line(redshift_env, aws_env):
    found = by_name(check(unload_config(s3_prefix="s3://no-such-bucket-here/x"), redshift_env))
    assert found["unload s3_prefix"].ok is False
    assert "NoSuchBucket" in found["unload s3_prefix"].detail
    assert found["unload iam_role"].ok is None  # not set: the cluster's default role, unseen
    assert_clean(list(found.values()), aws_env["AWS_SECRET_ACCESS_KEY"])


def test_unload_without_a_prefix(redshift_env):
    found = by_name(check(unload_config(), redshift_env))
    assert found["unload s3_prefix"].ok is False
    auto = {"warehouse": "redshift", "redshift": {"extract": "auto"}}
    assert by_name(check(auto, redshift_env))["unload s3_prefix"].ok is None
    cursor = check({"warehouse": "redshift"}, redshift_env)
    assert "unload s3_prefix" not in by_name(cursor)  # not used, not checked


def test_unload_hostile_prefix_is_refused(redshift_env):
    config = unload_config(s3_prefix="s3://bucket/x' IAM_ROLE default FORMAT AS CSV --")
    found = by_name(check(config, redshift_env))
    assert found["unload s3_prefix"].ok is False
    assert "not an s3://bucket/prefix" in found["unload s3_prefix"].detail


# -- the demo ----------------------------------------------------------------------------


def test_the_demo_file(tmp_path):
    path = tmp_path / "demo.duckdb"
    config = {"warehouse": "duckdb", "duckdb": {"path": str(path)}}
    assert by_name(check(config))["demo file"].ok is None  # not built yet
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE leads AS SELECT range AS lead_id FROM range(7)")
    assert by_name(check(config))["demo file"] == Check("demo file", True, f"{path}: 7 leads")
    path.write_bytes(b"not a database")
    assert by_name(check(config))["demo file"].ok is False


def test_an_unknown_warehouse():
    (only,) = check({"warehouse": "oracle"})
    assert only.ok is False and only.line() == (
        "[FAILED] warehouse: 'oracle' is not one of: duckdb, redshift"
    )
