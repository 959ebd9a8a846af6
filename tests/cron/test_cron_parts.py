"""The unattended run's parts that need no Snakemake run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from lead_recovery import account, cronlog, history, jobs
from lead_recovery import config as lr_config
from lead_recovery.cli import cron
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import FolderStore
from tests.support.workflow import profile

REPO = Path(__file__).resolve().parents[2]


def test_cron_profile_replaces_the_workflow_profile():
    """`--workflow-profile profiles/cron` replaces profiles/default: it keeps its defaults,
    but not its quiet (the day's log keeps everything: profiles/cron says why)."""
    default, unattended = profile("default"), profile("cron")
    assert default["quiet"] == ["host", "progress", "rules"]
    assert "quiet" not in profile("default", verbose=True), "LEAD_RECOVERY_VERBOSE=1"
    assert "quiet" not in unattended
    for key, value in default.items():
        if key != "quiet":
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


def _event(recipe: str, decision: str, reason: str, rows: int | None, run: str):
    return history.Event(
        at="2025-05-14T06:00:00+00:00",
        recipe=recipe,
        run_date="20250514",
        decision=decision,
        reason=reason,
        rows=rows,
        seconds=0.1,
        warehouse="duckdb demo",
        user_at_host="cron@etl-1",
        run_id=run,
    )


def test_the_summary_is_what_that_run_recorded_in_the_history(tmp_path):
    """Not what Snakemake printed: the events the run wrote to the store's history under
    its run id; a suspect extract counts as failed, and a run that recorded nothing
    (stopped before its end) has no summary lines."""
    cfg = {"results_dir": "results", "store": "shared"}  # a store of its own
    store = FolderStore(tmp_path / "shared")
    mine = "c68060bfa49e4cfb8be79d12b256d54c"
    history.write(
        store,
        [
            _event("a", "queried", "20 rows, 0.10 s", 20, mine),
            _event("b", "suspect", "suspect: 0 rows, fewer than min_rows 1", 0, mine),
            _event("c", "skipped", "no redshift.sql; recipes/c/leads.csv", None, mine),
        ],
        mine,
    )
    history.write(store, [_event("a", "cached", "queried at ...", 20, "other")], "other")

    assert cron.recorded(cfg, tmp_path, mine) == [
        account.Line("a", "20250514", "queried", "20 rows, 0.10 s", rows=20),
        account.Line("b", "20250514", "failed", "suspect: 0 rows, fewer than min_rows 1", rows=0),
        account.Line("c", "20250514", "skipped", "no redshift.sql; recipes/c/leads.csv"),
    ]
    assert cron.recorded(cfg, tmp_path, "0123456789abcdef") is None


def test_an_impatient_run_names_the_wait_it_was_given(tmp_path, monkeypatch, capsys):
    """The one line of a run that gave up says which setting to change (cron's wait,
    not lock_timeout) in units that show a wait shorter than a minute."""
    monkeypatch.setattr(jobs, "_CHECKOUT", [])  # this process holds no checkout yet
    (tmp_path / "checkout.holder").write_text("ana@etl-1 (pid 4242)")
    with (
        FileLock(tmp_path / "checkout.lock"),  # another run holds the checkout
        pytest.raises(LeadRecoveryError) as gave_up,
    ):
        jobs.hold_checkout(str(tmp_path), 1.0, "cron.wait or --wait")
    assert capsys.readouterr().err == (
        "lead-recovery: ana@etl-1 (pid 4242) is running in this checkout; waiting for it to "
        "finish (at most 1 s, cron.wait or --wait)\n"
    )
    assert str(gave_up.value) == (
        "ana@etl-1 (pid 4242) still runs in this checkout after 1 s (cron.wait or --wait); "
        "nothing was run"
    )
    assert jobs._CHECKOUT == []
