"""The unattended run's parts that need no Snakemake run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lead_recovery import cron
from lead_recovery.errors import LeadRecoveryError

REPO = Path(__file__).resolve().parents[2]


def _profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_cron_profile_agrees_with_the_workflow_profile():
    """Snakemake lets profiles/default win key by key over --profile profiles/cron."""
    default, unattended = _profile("default"), _profile("cron")
    for key in default.keys() & unattended.keys():
        assert unattended[key] == default[key], f"{key}: profiles/default would override it"
    assert unattended["keep-going"] is True
    assert unattended["rerun-incomplete"] is True
    assert unattended["printshellcmds"] is False
    assert unattended["retries"] >= 1


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("2h", 7200), ("90s", 90), ("90", 90), ("0", 0)]
)
def test_wait_durations(text, seconds):
    assert cron.parse_wait(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "1.5h", "30 m"])
def test_bad_wait_is_one_line(text):
    with pytest.raises(LeadRecoveryError, match="is not a duration"):
        cron.parse_wait(text)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/repo/.venv/bin/python", "-m", "snakemake", "--cores", "2"], True),
        (["/repo/.venv/bin/python", "/repo/.venv/bin/snakemake", "-n"], True),
        (["snakemake", "--unlock"], True),
        (["/usr/bin/python3", "/repo/.snakemake/scripts/tmpab12.redshift_extract.py"], True),
        (["/repo/.venv/bin/python", "workflow/scripts/cron.py"], False),
        (["vim", "Snakefile"], False),
        (["less", "logs/cron/20250514.log"], False),
    ],
)
def test_what_counts_as_snakemake_running_here(argv, expected):
    assert cron.is_snakemake(argv) is expected


def test_old_logs_are_pruned_and_nothing_else(tmp_path):
    for name in (
        "20250401.log",
        "20250413.log",
        "20250414.log",
        "20250514.log",
        "notes.txt",
        "2025041.log",
    ):
        (tmp_path / name).write_text("x")
    removed = cron.prune_logs(tmp_path, "20250514", keep_days=30)
    assert removed == ["20250401.log", "20250413.log"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2025041.log",
        "20250414.log",
        "20250514.log",
        "notes.txt",
    ]


def test_environment_for_cron_fills_only_what_is_missing(tmp_path):
    env: dict[str, str] = {}
    filled = cron.prepare_environment(tmp_path, env)
    assert set(filled) == {"PATH", "HOME", "LANG"}
    assert env["PATH"].split(":")[0].endswith("/bin")
    assert env["HOME"] and env["LANG"] == "C.UTF-8"
    mine = {"PATH": "/opt/bin", "HOME": "/home/me", "LANG": "de_DE.UTF-8"}
    assert cron.prepare_environment(tmp_path, mine) == []
    assert mine["HOME"] == "/home/me" and mine["PATH"].endswith(":/opt/bin")


def test_dotenv_never_overrides_the_environment(tmp_path):
    (tmp_path / ".env").write_text("REDSHIFT_HOST=from-file\nREDSHIFT_USER=etl\n")
    env = {"REDSHIFT_HOST": "from-env"}
    assert cron.load_dotenv_file(tmp_path / ".env", env) == ["REDSHIFT_USER"]
    assert env == {"REDSHIFT_HOST": "from-env", "REDSHIFT_USER": "etl"}
    assert cron.load_dotenv_file(tmp_path / "missing.env", env) == []
