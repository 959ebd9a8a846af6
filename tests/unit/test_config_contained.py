"""The configuration's folders never climb with ``..``: results_dir, logs_dir,
recipes_dir, cron's log folder, a store folder and an S3 store's prefix are each
refused in one line naming the setting, before anything runs (the workflow and every
command read the configuration through config.validate, and open the store through
store.open_store)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lead_recovery import config as lr_config
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.invocation import Invocation
from lead_recovery.store import open_store, parse_url

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / lr_config.SCHEMA_FILE


@pytest.fixture(autouse=True)
def _umask_kept():
    """Invocation.build takes store_umask for its process: this one's is put back."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


def _config(**given) -> dict:
    return {"warehouse": "duckdb", **given}


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"results_dir": "../shared/results"}, "results_dir"),
        ({"results_dir": "results/../../elsewhere"}, "results_dir"),
        ({"logs_dir": "/srv/lr/../../etc"}, "logs_dir"),
        ({"recipes_dir": ".."}, "recipes_dir"),
        ({"cron": {"log_dir": "logs/../../cron"}}, "cron.log_dir"),
    ],
)
def test_a_folder_naming_dotdot_is_one_line(given, key):
    with pytest.raises(LeadRecoveryError) as refused:
        lr_config.validate(_config(**given), SCHEMA)
    message = str(refused.value)
    assert message.startswith(f"config: {key} '") and "'..' may not appear" in message
    assert "\n" not in message


def test_folders_without_dotdot_are_fine():
    config = lr_config.validate(
        _config(results_dir="/srv/lr/results", logs_dir="..logs", recipes_dir="./recipes"),
        SCHEMA,
    )
    assert config["logs_dir"] == "..logs"  # a name that starts with dots climbs nowhere


@pytest.mark.parametrize("store", ["../store", "/srv/../store", "team/../../store"])
def test_a_store_folder_naming_dotdot_is_one_line(store):
    with pytest.raises(LeadRecoveryError, match=r"'\.\.' may not appear in the store's folder"):
        open_store({"store": store, "results_dir": "results"})


@pytest.mark.parametrize("url", ["s3://b/team/../other", "s3://b/..", "s3://b/../team"])
def test_an_s3_prefix_naming_dotdot_is_one_line(url):
    with pytest.raises(LeadRecoveryError, match=r"'\.\.' may not appear in the prefix"):
        parse_url(url)
    assert parse_url("s3://b/team/./2025") == ("b", "team/2025")


@pytest.mark.parametrize(
    "given",
    [{"results_dir": "../results"}, {"logs_dir": "../logs"}, {"store": "../store"}],
)
def test_the_workflow_refuses_it_before_writing_anything(tmp_path, monkeypatch, given):
    """Invocation.build, as the Snakefile calls it: the error, and an untouched folder."""
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(LeadRecoveryError, match=r"'\.\.' may not appear"):
        Invocation.build(_config(**given), SCHEMA, [])
    assert list(tmp_path.rglob("*")) == [work]
