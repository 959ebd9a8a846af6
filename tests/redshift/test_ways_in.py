"""The three ways in (password, IAM on a provisioned cluster, IAM on Serverless) and TLS.

How far each goes here:

* settings: read and checked in full, no server needed;
* TLS: the real driver against the handshake shim speaking real TLS with a
  throw-away CA (tests/support/redshift_shim.py ``make_test_certificates``),
  so ``sslmode`` and ``REDSHIFT_SSL_ROOT_CERT`` are exercised for real;
* IAM: the real driver does its real IAM flow and logs in to PostgreSQL (over
  TLS, which IAM requires) with the credentials AWS handed out. The one
  thing that cannot happen here is the AWS call itself
  (``redshift:GetClusterCredentials``, ``redshift-serverless:GetCredentials``):
  the driver's boto3 client for it is STUBBED with botocore's Stubber, which
  also checks the request the driver sends. The database role the stub names
  exists on the test server with the password the stub hands out.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets

import pytest

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import settings as rs_settings
from lead_recovery.warehouse.settings import read_settings
from tests.redshift.conftest import database_role

PARAMS = {"run_date": dt.date(2025, 5, 12)}
TAG = "lead_recovery recipe=ways_in run_date=20250512"
SERVERLESS_HOST = "lead-wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com"
CLUSTER_HOST = "lead-prod.c1a2b3c4d5e6.eu-west-1.redshift.amazonaws.com"

# the driver builds SSLContext() without a protocol, which Python deprecates
pytestmark = pytest.mark.filterwarnings("ignore:ssl.*deprecated:DeprecationWarning")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No REDSHIFT_* variables and no .env; ``env(NAME=value, ...)`` sets some."""
    for key in [k for k in os.environ if k.startswith("REDSHIFT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"REDSHIFT_{key}", value)

    return set_env


# -- settings: what goes where ------------------------------------------------------------


def test_serverless_iam_takes_the_workgroup_from_the_host(env):
    env(IAM="true", HOST=SERVERLESS_HOST, DATABASE="dev")
    settings = read_settings()
    assert settings.auth == "iam-serverless" and settings.workgroup == "lead-wg"
    kwargs = settings.connect_kwargs(timeout=10, application_name="t")
    assert kwargs["iam"] is True and kwargs["is_serverless"] is True
    assert kwargs["serverless_work_group"] == "lead-wg"
    for absent in ("db_user", "user", "password", "cluster_identifier", "db_groups"):
        assert absent not in kwargs


def test_serverless_iam_through_another_host_names_workgroup_and_region(env):
    env(IAM="1", HOST="redshift.internal.example", WORKGROUP="lead-wg", DATABASE="dev")
    with pytest.raises(LeadRecoveryError, match="REDSHIFT_REGION is needed"):
        read_settings()
    env(REGION="eu-west-1", PROFILE="analytics", SSLMODE="verify-full")
    kwargs = read_settings().connect_kwargs(timeout=None, application_name="t")
    assert kwargs["serverless_work_group"] == "lead-wg" and kwargs["region"] == "eu-west-1"
    assert kwargs["profile"] == "analytics" and kwargs["sslmode"] == "verify-full"


def test_serverless_endpoint_without_a_workgroup_asks_for_it(env):
    env(IAM="true", HOST="123456789012.eu-west-1.redshift-serverless.amazonaws.com")
    with pytest.raises(LeadRecoveryError) as caught:
        read_settings()
    message = str(caught.value)
    assert "Serverless" in message and "REDSHIFT_WORKGROUP" in message
    assert "REDSHIFT_DATABASE" in message and "REDSHIFT_DB_USER" not in message


def test_provisioned_iam_maps_db_user_auto_create_and_groups(env):
    env(IAM="true", HOST=CLUSTER_HOST, DATABASE="dev", DB_USER="lead_bot")
    env(AUTO_CREATE="yes", DB_GROUPS="analysts, readers")
    settings = read_settings()
    assert settings.auth == "iam-provisioned"
    assert settings.cluster_identifier == "lead-prod"  # read from the endpoint
    kwargs = settings.connect_kwargs(timeout=None, application_name="t")
    assert kwargs["db_user"] == "lead_bot" and kwargs["auto_create"] is True
    assert kwargs["db_groups"] == ["analysts", "readers"]
    assert kwargs["cluster_identifier"] == "lead-prod" and "is_serverless" not in kwargs


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"IAM": "true", "HOST": CLUSTER_HOST, "DATABASE": "d", "DB_USER": "u"}
            | {"PASSWORD": "pw"},
            "REDSHIFT_PASSWORD is set, but REDSHIFT_IAM=true",
        ),
        (
            {"HOST": "h", "DATABASE": "d", "USER": "u", "PASSWORD": "pw", "DB_USER": "u"},
            "REDSHIFT_DB_USER is an IAM setting: set REDSHIFT_IAM=true",
        ),
        (
            {"IAM": "true", "HOST": SERVERLESS_HOST, "DATABASE": "d", "DB_USER": "bot"},
            "REDSHIFT_DB_USER cannot be used with Redshift Serverless IAM",
        ),
        (
            {"IAM": "true", "HOST": SERVERLESS_HOST, "DATABASE": "d", "DB_GROUPS": "g"},
            "REDSHIFT_DB_GROUPS cannot be used with Redshift Serverless IAM",
        ),
        (
            {"IAM": "true", "HOST": SERVERLESS_HOST, "DATABASE": "d", "CLUSTER_IDENTIFIER": "c"},
            "names a provisioned cluster, but REDSHIFT_WORKGROUP",
        ),
        (
            {"HOST": CLUSTER_HOST, "WORKGROUP": "wg", "DATABASE": "d", "USER": "u"},
            "is a provisioned cluster's endpoint",
        ),
        (
            {"HOST": SERVERLESS_HOST, "WORKGROUP": "other", "DATABASE": "d"},
            "REDSHIFT_HOST names workgroup 'lead-wg'",
        ),
        (
            {"IAM": "true", "HOST": CLUSTER_HOST, "DATABASE": "d", "DB_USER": "a", "USER": "b"},
            "REDSHIFT_DB_USER='a' and REDSHIFT_USER='b' disagree",
        ),
        (
            {"HOST": "h", "DATABASE": "d", "USER": "u", "PASSWORD": "pw", "SSL": "false"}
            | {"SSLMODE": "verify-ca"},
            "REDSHIFT_SSLMODE set, but REDSHIFT_SSL=false turns TLS off",
        ),
        (
            {"HOST": "h", "DATABASE": "d", "USER": "u", "PASSWORD": "pw", "SSLMODE": "require"},
            "REDSHIFT_SSLMODE='require' is not supported by redshift_connector",
        ),
        (
            {"HOST": "h", "DATABASE": "d", "USER": "u", "PASSWORD": "pw"}
            | {"SSL_ROOT_CERT": "/no/such/ca.pem"},
            "REDSHIFT_SSL_ROOT_CERT='/no/such/ca.pem': no such file",
        ),
    ],
)
def test_contradictory_settings_are_one_line_before_connecting(env, values, expected):
    env(**values)
    with pytest.raises(LeadRecoveryError) as caught:
        read_settings()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and "pw" not in message.replace("REDSHIFT_PASSWORD", "")


def test_a_root_cert_that_is_not_pem_is_refused(env, tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    env(HOST="h", DATABASE="d", USER="u", PASSWORD="pw", SSL_ROOT_CERT=str(tmp_path / "ca.pem"))
    with pytest.raises(LeadRecoveryError, match="holds no PEM certificate"):
        read_settings()


# -- TLS against the shim -------------------------------------------------------------------


def rows(make_warehouse, **options):
    warehouse = make_warehouse(**options)
    return (
        warehouse.stream(
            "SELECT current_user AS who, count(*) AS n FROM leads WHERE created_at < :run_date",
            PARAMS,
            tag=TAG,
        )
        .read_all()
        .to_pylist()
    )


@pytest.mark.parametrize("sslmode", ["verify-full", "verify-ca", None])
def test_tls_with_the_ca_bundle_connects(tls_env, make_warehouse, monkeypatch, sslmode):
    if sslmode:
        monkeypatch.setenv("REDSHIFT_SSLMODE", sslmode)
    before = os.environ.get("SSL_CERT_FILE")
    assert rows(make_warehouse)[0]["n"] == 263
    assert os.environ.get("SSL_CERT_FILE") == before  # put back after the handshake


def test_tls_without_the_ca_is_refused_in_one_line(tls_env, make_warehouse, monkeypatch):
    monkeypatch.delenv("REDSHIFT_SSL_ROOT_CERT")
    with pytest.raises(LeadRecoveryError) as caught:
        rows(make_warehouse, retries=2)
    message = str(caught.value)
    assert "certificate was not accepted" in message and "REDSHIFT_SSL_ROOT_CERT" in message
    assert "tried" not in message  # not retried: it would fail the same way
    assert tls_env["REDSHIFT_PASSWORD"] not in message


def test_tls_with_an_unrelated_ca_is_refused(tls_env, make_warehouse, monkeypatch, test_certs):
    monkeypatch.setenv("REDSHIFT_SSL_ROOT_CERT", str(test_certs["other_ca"]))
    with pytest.raises(LeadRecoveryError, match="certificate was not accepted"):
        rows(make_warehouse)


def test_verify_full_checks_the_host_name_and_verify_ca_does_not(
    tls_env, make_warehouse, monkeypatch, caplog
):
    """The certificate names localhost; 127.0.0.1 is the same server under another name."""
    monkeypatch.setenv("REDSHIFT_HOST", "127.0.0.1")
    monkeypatch.setenv("REDSHIFT_SSLMODE", "verify-full")
    with pytest.raises(LeadRecoveryError, match="certificate was not accepted.*127.0.0.1"):
        rows(make_warehouse)
    monkeypatch.setenv("REDSHIFT_SSLMODE", "verify-ca")
    assert rows(make_warehouse)[0]["n"] == 263
    # sslmode not set: the driver's default verifies the chain and only warns on the name
    monkeypatch.delenv("REDSHIFT_SSLMODE")
    with caplog.at_level(logging.WARNING, logger="redshift_connector"):
        assert rows(make_warehouse)[0]["n"] == 263
    assert 'does not name host "127.0.0.1"' in caplog.text


# -- IAM, as far as it goes here: the AWS call stubbed ---------------------------------------


def test_provisioned_iam_logs_in_as_the_user_getclustercredentials_named(
    tls_env, make_warehouse, monkeypatch, aws_stub, pg_server, caplog
):
    from botocore.stub import ANY

    suffix = secrets.token_hex(4)
    db_user, password = f"lead_bot_{suffix}", f"iam-pw-{secrets.token_hex(8)}"
    for name in ("USER", "PASSWORD"):
        monkeypatch.delenv(f"REDSHIFT_{name}")
    for name, value in {
        "IAM": "true",
        "CLUSTER_IDENTIFIER": "lead-prod",
        "DB_USER": db_user,
        "AUTO_CREATE": "true",
        "DB_GROUPS": "readers,analysts",
        "REGION": "eu-west-1",
        "SSLMODE": "verify-full",
    }.items():
        monkeypatch.setenv(f"REDSHIFT_{name}", value)
    database_role(pg_server, f"IAMA:{db_user}", password)
    stub = aws_stub("redshift")
    # "localhost" is no cluster endpoint, so the driver treats it as a custom domain
    # name first (as for an NLB), then falls back to the cluster identifier.
    stub.add_client_error("describe_custom_domain_associations", "CustomDomainAssociationNotFound")
    stub.add_client_error(
        "get_cluster_credentials",
        "ClusterNotFound",
        expected_params={
            "DbUser": db_user,
            "DbName": tls_env["REDSHIFT_DATABASE"],
            "DbGroups": ["analysts", "readers"],
            "AutoCreate": True,
            "CustomDomainName": "localhost",
        },
    )
    stub.add_response(
        "get_cluster_credentials",
        {
            "DbUser": f"IAMA:{db_user}",
            "DbPassword": password,
            "Expiration": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
        },
        expected_params={
            "DbUser": db_user,
            "DbName": ANY,
            "DbGroups": ["analysts", "readers"],
            "AutoCreate": True,
            "ClusterIdentifier": "lead-prod",
        },
    )
    with caplog.at_level(logging.DEBUG):
        result = rows(make_warehouse)
    assert result == [{"who": f"IAMA:{db_user}", "n": 263}]
    assert password not in caplog.text


def test_serverless_iam_logs_in_as_the_user_getcredentials_named(
    tls_env, make_warehouse, monkeypatch, aws_stub, pg_server, caplog
):
    role, password = f"IAMR:lead-runner-{secrets.token_hex(4)}", f"sl-pw-{secrets.token_hex(8)}"
    for name in ("USER", "PASSWORD"):
        monkeypatch.delenv(f"REDSHIFT_{name}")
    for name, value in {"IAM": "true", "WORKGROUP": "lead-wg", "REGION": "eu-west-1"}.items():
        monkeypatch.setenv(f"REDSHIFT_{name}", value)
    database_role(pg_server, role, password)
    aws_stub("redshift-serverless").add_response(
        "get_credentials",
        {
            "dbUser": role,
            "dbPassword": password,
            "expiration": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15),
        },
        expected_params={"dbName": tls_env["REDSHIFT_DATABASE"], "workgroupName": "lead-wg"},
    )
    with caplog.at_level(logging.DEBUG):
        result = rows(make_warehouse)
    assert result == [{"who": role, "n": 263}]
    assert password not in caplog.text


def test_iam_refused_by_aws_is_one_line_without_secrets(
    tls_env, make_warehouse, monkeypatch, aws_stub
):
    for name in ("USER", "PASSWORD"):
        monkeypatch.delenv(f"REDSHIFT_{name}")
    for name, value in {"IAM": "true", "WORKGROUP": "lead-wg", "REGION": "eu-west-1"}.items():
        monkeypatch.setenv(f"REDSHIFT_{name}", value)
    aws_stub("redshift-serverless").add_client_error(
        "get_credentials",
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: "
        "redshift-serverless:GetCredentials",
    )
    with pytest.raises(LeadRecoveryError) as caught:
        rows(make_warehouse)
    message = str(caught.value)
    assert "\n" not in message and "redshift-serverless:GetCredentials" in message
    assert "stub-aws_secret_access_key" not in message


def test_auth_labels_name_the_aws_permission():
    assert "redshift:GetClusterCredentials" in rs_settings.AUTH_LABELS["iam-provisioned"]
    assert "redshift-serverless:GetCredentials" in rs_settings.AUTH_LABELS["iam-serverless"]
