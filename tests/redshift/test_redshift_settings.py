"""Where the Redshift warehouse takes its connection settings from."""

from __future__ import annotations

import datetime as dt

import pytest
import redshift_connector

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.redshift import RedshiftWarehouse, read_settings

ALL_PASSWORD_VARS = ["REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_USER", "REDSHIFT_PASSWORD"]


@pytest.fixture
def no_redshift_env(monkeypatch, tmp_path):
    """No REDSHIFT_* variables and an empty working folder (no .env)."""
    import os

    for key in [k for k in os.environ if k.startswith("REDSHIFT_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_missing_settings_are_named_all_at_once(no_redshift_env):
    with pytest.raises(LeadRecoveryError) as caught:
        RedshiftWarehouse.from_config({"redshift": {}})
    message = str(caught.value)

    assert "\n" not in message
    for name in ALL_PASSWORD_VARS:
        assert name in message
    assert "REDSHIFT_PORT" not in message  # it has a default
    assert ".env (not found)" in message


def test_only_the_missing_settings_are_named(no_redshift_env, monkeypatch):
    monkeypatch.setenv("REDSHIFT_HOST", "example.redshift.amazonaws.com")
    monkeypatch.setenv("REDSHIFT_USER", "analyst")
    monkeypatch.setenv("REDSHIFT_PASSWORD", "   ")  # blank counts as missing
    with pytest.raises(LeadRecoveryError) as caught:
        RedshiftWarehouse.from_config({})
    message = str(caught.value)
    assert "REDSHIFT_DATABASE" in message and "REDSHIFT_PASSWORD" in message
    assert "REDSHIFT_HOST" not in message and "REDSHIFT_USER" not in message


def test_missing_iam_settings_are_named_all_at_once(no_redshift_env, monkeypatch):
    monkeypatch.setenv("REDSHIFT_IAM", "true")
    with pytest.raises(LeadRecoveryError) as caught:
        RedshiftWarehouse.from_config({})
    message = str(caught.value)
    for name in [
        "REDSHIFT_HOST",
        "REDSHIFT_DATABASE",
        "REDSHIFT_CLUSTER_IDENTIFIER",
        "REDSHIFT_DB_USER",
    ]:
        assert name in message
    assert "REDSHIFT_PASSWORD" not in message
    assert "IAM" in message


def test_port_defaults_to_5439_and_tls_is_on(no_redshift_env, monkeypatch):
    for name in ALL_PASSWORD_VARS:
        monkeypatch.setenv(name, "x")
    settings = read_settings()
    assert settings.port == 5439
    assert settings.ssl is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("REDSHIFT_PORT", "54x9", "REDSHIFT_PORT='54x9' is not a port number"),
        ("REDSHIFT_SSL", "nope", "REDSHIFT_SSL='nope' is not a boolean"),
        ("REDSHIFT_IAM", "maybe", "REDSHIFT_IAM='maybe' is not a boolean"),
    ],
)
def test_malformed_settings_are_named(no_redshift_env, monkeypatch, name, value, expected):
    for var in ALL_PASSWORD_VARS:
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv(name, value)
    with pytest.raises(LeadRecoveryError, match=expected):
        read_settings()


def test_settings_repr_hides_the_password(no_redshift_env, monkeypatch):
    for var in ALL_PASSWORD_VARS:
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("REDSHIFT_PASSWORD", "hunter2-very-secret")
    settings = read_settings()
    warehouse = RedshiftWarehouse(settings)
    assert "hunter2-very-secret" not in repr(settings)
    assert "hunter2-very-secret" not in repr(warehouse)


def test_env_file_is_read_and_the_environment_wins(redshift_env, monkeypatch, tmp_path):
    """A .env holding every setting, one of them wrong and overridden by the environment."""
    lines = [f"{k}={v}" for k, v in redshift_env.items() if k != "REDSHIFT_DATABASE"]
    lines += ["REDSHIFT_DATABASE=no_such_database", "# a comment", ""]
    (tmp_path / ".env").write_text("\n".join(lines))
    for key in redshift_env:
        if key != "REDSHIFT_DATABASE":
            monkeypatch.delenv(key)  # only the database comes from the environment

    warehouse = RedshiftWarehouse.from_config({"redshift": {"retries": 0}})
    try:
        assert warehouse.settings.database == redshift_env["REDSHIFT_DATABASE"]
        assert warehouse.settings.port == int(redshift_env["REDSHIFT_PORT"])
        reader = warehouse.stream(
            "SELECT :run_date::date AS d", {"run_date": dt.date(2025, 5, 12)}, tag="env file"
        )
        assert reader.read_all().to_pylist() == [{"d": dt.date(2025, 5, 12)}]
    finally:
        warehouse.close()


def test_env_file_path_comes_from_the_config(redshift_env, monkeypatch, tmp_path):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "redshift.env").write_text(
        f"REDSHIFT_PASSWORD={redshift_env['REDSHIFT_PASSWORD']}\n"
    )
    monkeypatch.delenv("REDSHIFT_PASSWORD")

    warehouse = RedshiftWarehouse.from_config({"redshift": {"env_file": "secrets/redshift.env"}})
    try:
        assert warehouse.settings.password == redshift_env["REDSHIFT_PASSWORD"]
    finally:
        warehouse.close()


def test_env_file_does_not_change_the_process_environment(redshift_env, monkeypatch, tmp_path):
    import os

    (tmp_path / ".env").write_text("REDSHIFT_REGION=eu-west-1\nOTHER_SETTING=1\n")
    RedshiftWarehouse.from_config({}).close()
    assert "REDSHIFT_REGION" not in os.environ and "OTHER_SETTING" not in os.environ


@pytest.fixture
def fake_connect(monkeypatch):
    """Record redshift_connector.connect's arguments instead of connecting."""
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        raise redshift_connector.InterfaceError("stop here: no AWS account in tests")

    monkeypatch.setattr(redshift_connector, "connect", fake)
    return calls


def test_iam_settings_map_to_redshift_connector_iam_arguments(
    no_redshift_env, monkeypatch, fake_connect
):
    """IAM authentication needs a real AWS account and cluster, which the tests do not
    have, so ``redshift_connector.connect`` is replaced by a recorder: this test checks
    the keyword arguments it would receive (parameter names as in redshift_connector
    2.2.0's ``connect``), nothing more."""
    monkeypatch.setenv("REDSHIFT_IAM", "true")
    monkeypatch.setenv("REDSHIFT_HOST", "prod.abc123.eu-west-1.redshift.amazonaws.com")
    monkeypatch.setenv("REDSHIFT_DATABASE", "dev")
    monkeypatch.setenv("REDSHIFT_CLUSTER_IDENTIFIER", "prod")
    monkeypatch.setenv("REDSHIFT_REGION", "eu-west-1")
    monkeypatch.setenv("REDSHIFT_PROFILE", "analytics")
    monkeypatch.setenv("REDSHIFT_DB_USER", "lead_bot")

    warehouse = RedshiftWarehouse.from_config({"redshift": {"retries": 0}})
    with pytest.raises(LeadRecoveryError):
        warehouse.stream("SELECT 1", {}, tag="lead_recovery recipe=r run_date=20250512")

    (kwargs,) = fake_connect
    assert kwargs == {
        "host": "prod.abc123.eu-west-1.redshift.amazonaws.com",
        "port": 5439,
        "database": "dev",
        "ssl": True,
        "application_name": "lead_recovery recipe=r run_date=20250512",
        "timeout": 30,
        "iam": True,
        "db_user": "lead_bot",
        "user": "lead_bot",
        "cluster_identifier": "prod",
        "region": "eu-west-1",
        "profile": "analytics",
    }
    assert "password" not in kwargs


def test_iam_takes_db_user_from_redshift_user_and_needs_tls(
    no_redshift_env, monkeypatch, fake_connect
):
    """Mocked connect as above (no AWS account here)."""
    monkeypatch.setenv("REDSHIFT_IAM", "1")
    monkeypatch.setenv("REDSHIFT_HOST", "prod.abc123.eu-west-1.redshift.amazonaws.com")
    monkeypatch.setenv("REDSHIFT_DATABASE", "dev")
    monkeypatch.setenv("REDSHIFT_CLUSTER_IDENTIFIER", "prod")
    monkeypatch.setenv("REDSHIFT_USER", "analyst")
    settings = read_settings()
    kwargs = settings.connect_kwargs(timeout=None, application_name="x")
    assert kwargs["db_user"] == "analyst" and "region" not in kwargs and "profile" not in kwargs

    monkeypatch.setenv("REDSHIFT_SSL", "false")
    with pytest.raises(LeadRecoveryError, match="REDSHIFT_IAM=true requires TLS"):
        read_settings()


def test_password_settings_map_to_redshift_connector_arguments(no_redshift_env, monkeypatch):
    for var in ALL_PASSWORD_VARS:
        monkeypatch.setenv(var, var.lower())
    monkeypatch.setenv("REDSHIFT_PORT", "5440")
    monkeypatch.setenv("REDSHIFT_SSL", "off")
    kwargs = read_settings().connect_kwargs(timeout=5, application_name="tag")
    assert kwargs == {
        "host": "redshift_host",
        "port": 5440,
        "database": "redshift_database",
        "user": "redshift_user",
        "password": "redshift_password",
        "ssl": False,
        "timeout": 5,
        "application_name": "tag",
    }


def test_long_query_tags_fit_application_name(no_redshift_env, monkeypatch, fake_connect):
    for var in ALL_PASSWORD_VARS:
        monkeypatch.setenv(var, "x")
    warehouse = RedshiftWarehouse.from_config({"redshift": {"retries": 0}})
    tag = "lead_recovery recipe=" + "r" * 80 + " run_date=20250512"
    with pytest.raises(LeadRecoveryError):
        warehouse.stream("SELECT 1", {}, tag=tag)
    assert fake_connect[0]["application_name"] == tag[:63]
