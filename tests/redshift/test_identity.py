"""The warehouse a run would query, named without connecting (``warehouse.identity``)."""

from __future__ import annotations

import pytest

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import identity

CLUSTER = "Prod.c1a2b3c4d5e6.eu-west-1.redshift.amazonaws.com"
SERVERLESS = "lead-wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com"
REDSHIFT = {"warehouse": "redshift"}


@pytest.fixture(autouse=True)
def empty_folder(monkeypatch, tmp_path):
    """Run where no .env is; the process environment's REDSHIFT_* must not count."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDSHIFT_HOST", "from-the-process-environment")
    return tmp_path


def test_the_demo():
    assert identity({"warehouse": "duckdb"}, {}) == "duckdb demo"


def test_a_provisioned_cluster_is_its_endpoint_port_and_database():
    environ = {"REDSHIFT_HOST": CLUSTER, "REDSHIFT_DATABASE": "analytics"}
    assert identity(REDSHIFT, environ) == (
        "redshift at prod.c1a2b3c4d5e6.eu-west-1.redshift.amazonaws.com:5439/analytics"
    )
    environ["REDSHIFT_PORT"] = "5440"
    assert identity(REDSHIFT, environ).endswith(":5440/analytics")


def test_the_way_in_does_not_change_the_warehouse_and_no_secret_is_in_it():
    place = {"REDSHIFT_HOST": CLUSTER, "REDSHIFT_DATABASE": "analytics"}
    with_password = {**place, "REDSHIFT_USER": "u", "REDSHIFT_PASSWORD": "hunter2-secret"}
    with_iam = {**place, "REDSHIFT_IAM": "true", "REDSHIFT_DB_USER": "bot"}
    assert identity(REDSHIFT, with_password) == identity(REDSHIFT, with_iam)
    assert "hunter2" not in identity(REDSHIFT, with_password)


def test_serverless_is_its_workgroup_and_database_however_it_is_reached():
    by_endpoint = {"REDSHIFT_HOST": SERVERLESS, "REDSHIFT_DATABASE": "dev"}
    by_setting = {
        "REDSHIFT_HOST": "redshift.internal.example",  # an NLB or a custom domain
        "REDSHIFT_WORKGROUP": "lead-wg",
        "REDSHIFT_DATABASE": "dev",
    }
    assert identity(REDSHIFT, by_endpoint) == "redshift serverless lead-wg/dev"
    assert identity(REDSHIFT, by_setting) == "redshift serverless lead-wg/dev"


def test_another_database_or_workgroup_is_another_warehouse():
    base = {"REDSHIFT_HOST": SERVERLESS, "REDSHIFT_DATABASE": "dev"}
    assert identity(REDSHIFT, base) != identity(REDSHIFT, {**base, "REDSHIFT_DATABASE": "prod"})
    other = SERVERLESS.replace("lead-wg", "other-wg")
    assert identity(REDSHIFT, base) != identity(REDSHIFT, {**base, "REDSHIFT_HOST": other})


def test_it_never_connects():
    environ = {"REDSHIFT_HOST": "no-such-host.invalid", "REDSHIFT_DATABASE": "d"}
    assert identity(REDSHIFT, environ) == "redshift at no-such-host.invalid:5439/d"


def test_the_env_file_from_the_config_is_read_and_the_environment_wins(empty_folder):
    (empty_folder / "conf").mkdir()
    (empty_folder / "conf" / "rs.env").write_text(
        f"REDSHIFT_HOST={CLUSTER}\nREDSHIFT_DATABASE=from_file\n"
    )
    config = {"warehouse": "redshift", "redshift": {"env_file": "conf/rs.env"}}
    assert identity(config, {}).endswith("/from_file")
    assert identity(config, {"REDSHIFT_DATABASE": "from_env"}).endswith("/from_env")


@pytest.mark.parametrize(
    ("config", "environ", "expected"),
    [
        (REDSHIFT, {"REDSHIFT_DATABASE": "d"}, "set REDSHIFT_HOST in the environment"),
        (REDSHIFT, {"REDSHIFT_HOST": "h"}, "set REDSHIFT_DATABASE"),
        (REDSHIFT, {"REDSHIFT_HOST": "h", "REDSHIFT_DATABASE": "d", "REDSHIFT_PORT": "x"}, "PORT"),
        ({"warehouse": "oracle"}, {}, "'oracle' is not one of: duckdb, redshift"),
    ],
)
def test_what_cannot_be_named_is_one_line(config, environ, expected):
    with pytest.raises(LeadRecoveryError, match=expected) as caught:
        identity(config, environ)
    assert "\n" not in str(caught.value)
