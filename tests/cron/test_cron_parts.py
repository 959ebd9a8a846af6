"""The unattended run's parts that need no Snakemake run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from lead_recovery import account, cache, cronlog, layout, markers
from lead_recovery import config as lr_config
from lead_recovery.cli import cron
from lead_recovery.errors import LeadRecoveryError

REPO = Path(__file__).resolve().parents[2]


def _profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_cron_profile_replaces_the_workflow_profile():
    """`--workflow-profile profiles/cron` replaces profiles/default: it keeps its defaults."""
    default, unattended = _profile("default"), _profile("cron")
    for key, value in default.items():
        assert unattended.get(key) == value, f"{key}: the cron run would lose the default"
    assert unattended["printshellcmds"] is False
    assert "retries" not in unattended, "connections are retried in redshift.py only"
    assert "workflow-profile" not in (REPO / "profiles/cron/config.yaml").read_text().split("#")[0]


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2h", 7200), ("90s", 90), ("0", 0)])
def test_wait_durations(text, seconds):
    assert cron.parse_wait(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "1.5h", "30 m", "90", "0s"])
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
        (["/repo/.venv/bin/python", "-m"], False),
        (["vim", "Snakefile"], False),
        (["less", "logs/cron/20250514.log"], False),
    ],
)
def test_what_counts_as_snakemake_running_here(argv, expected):
    assert cron.is_snakemake(argv) is expected


def test_old_logs_are_pruned_and_nothing_else(tmp_path):
    names = ("20250401.log", "20250413.log", "20250414.log", "20250514.log")
    for name in (*names, "notes.txt", "2025041.log"):
        (tmp_path / name).write_text("x")
    removed = cronlog.prune_logs(tmp_path, "20250514", keep_days=30)
    assert removed == ["20250401.log", "20250413.log"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2025041.log",
        "20250414.log",
        "20250514.log",
        "notes.txt",
    ]


def test_environment_for_cron_fills_only_what_is_missing(tmp_path):
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    assert venv_bin not in cron.DEFAULT_PATH.split(":")  # else the check below proves nothing
    env: dict[str, str] = {}
    filled = cron.prepare_environment(tmp_path, env)
    assert set(filled) == {"PATH", "HOME", "LANG"}
    assert env["PATH"].split(":") == [venv_bin, *cron.DEFAULT_PATH.split(":")]
    assert os.path.isdir(env["HOME"]) and env["LANG"] == "C.UTF-8"
    mine = {"PATH": "/opt/bin", "HOME": "/home/me", "LANG": "de_DE.UTF-8"}
    assert cron.prepare_environment(tmp_path, mine) == []
    assert mine["PATH"].split(":") == [venv_bin, "/opt/bin"]
    assert mine["HOME"] == "/home/me" and mine["LANG"] == "de_DE.UTF-8"


def test_dotenv_never_overrides_the_environment(tmp_path):
    (tmp_path / ".env").write_text("REDSHIFT_HOST=from-file\nREDSHIFT_USER=etl\n")
    env = {"REDSHIFT_HOST": "from-env"}
    assert lr_config.add_env_file(tmp_path / ".env", env) == ["REDSHIFT_USER"]
    assert env == {"REDSHIFT_HOST": "from-env", "REDSHIFT_USER": "etl"}
    assert lr_config.add_env_file(tmp_path / "missing.env", env) == []


def test_the_account_of_this_run_is_read_from_snakemakes_output():
    printed = [
        "lead-recovery: what this run did (run id older):",
        "a 20250514 queried (1 rows, 0.10 s)",
        "total: 1 recipe-day: 1 queried, 0 cached, 0 skipped, 0 failed; 0 queries avoided",
        "rule analyze:",
        "lead-recovery: what this run did (run id abc):",
        "a 20250514 cached (queried at 2025-05-14T06:00:00+00:00)",
        "b 20250514 failed: query failed: Binder Error: no_such_column (x)",
        "c 20250514 skipped (no redshift.sql; recipes/c/leads.csv)",
        "total: 3 recipe-days: 0 queried, 1 cached, 1 skipped, 1 failed; 1 query avoided",
    ]
    assert account.parse(printed, "abc") == [
        account.Line("a", "20250514", "cached", "queried at 2025-05-14T06:00:00+00:00"),
        account.Line("b", "20250514", "failed", "query failed: Binder Error: no_such_column (x)"),
        account.Line("c", "20250514", "skipped", "no redshift.sql; recipes/c/leads.csv"),
    ]
    assert account.parse(printed[:3], "abc") is None  # Snakemake stopped before its account


def test_temporaries_of_killed_writers_go_and_work_in_progress_stays(tmp_path):
    leads = Path(layout.leads_path(tmp_path / "results", "r", "20250514"))
    marker = Path(markers.marker_path(tmp_path / "markers", "r", "20250514"))
    day_dir = leads.parent
    day_dir.mkdir(parents=True)
    marker.parent.mkdir(parents=True)
    extract_tmp = day_dir / ".leads.parquet.k1ll3d.tmp"
    marker_tmp = marker.parent / f".{marker.name}.k1ll3d.tmp"
    fresh_analysis = day_dir / ".analysis.csv.wr1t1ng.tmp"  # another host may be writing it
    stale_analysis = day_dir / ".summary.json.0ld.tmp"
    kept = day_dir / "leads.parquet"
    for path in (extract_tmp, marker_tmp, fresh_analysis, stale_analysis, kept):
        path.write_text("x")
    long_ago = time.time() - cache.STALE_TEMP_S - 60
    os.utime(stale_analysis, (long_ago, long_ago))

    with cache.day_lock(marker, timeout=1):  # a writer is extracting this day now
        assert cache.remove_dead_temporaries(leads, marker) == 1
    assert extract_tmp.exists() and marker_tmp.exists() and not stale_analysis.exists()

    assert cache.remove_dead_temporaries(leads, marker) == 2
    assert not extract_tmp.exists() and not marker_tmp.exists()
    assert fresh_analysis.exists() and kept.exists()
