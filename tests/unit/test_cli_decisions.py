"""What ``lead-recovery run``, ``markers`` and ``cron`` decide before touching anything:
the one-line answer to bad input, how a marker file reads in ``markers list``, and the
days a catch-up covers. In process, on a copy of the workflow's files.

The same tables' END_TO_END rows run as users start the commands (plain processes):
tests/markers/test_lead_recovery_run.py::test_bad_input and
tests/markers/test_markers_helper.py (bad input, old and corrupt markers).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_recovery import markers, plan, recipes, rundate
from lead_recovery.cli import main as cli_main
from lead_recovery.cli import markers as markers_cli
from tests.support.workflow import copy_workflow

RECIPE = "simulation_to_handoff"
DAY = "20250512"  # the run date of the pinned clock
OLD = "20250401"
NOW = "2025-05-12T10:00:00+00:00"

# `lead-recovery ARGS`: (arguments, the one line's message).
BAD_RUN = [
    (["run", "--recipe", "no_such_recipe"], "unknown recipe 'no_such_recipe'"),
    (["run", "--recipe", "../etc"], "must not contain '/', '\\' or '..'"),
    (["run", "--date", "2025-05-12"], "date '2025-05-12' is not in YYYYMMDD form"),
    (["run", "--bogus"], "No such option '--bogus'"),
    (["run", "stray"], "Got unexpected extra argument (stray)"),
    (["frobnicate"], "No such command 'frobnicate'"),
    ([], "a command is required"),
]
# One of each: the repository's recipes, click's usage, the command's own.
BAD_RUN_END_TO_END = [BAD_RUN[i] for i in (0, 3, 6)]

# `markers ARGS` (with two markers and today's extract present): (arguments, message).
BAD_MARKERS = [
    (["--action", "frobnicate"], "Invalid value for '--action': 'frobnicate'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    ([], "a command is required"),
    (["--action", "check"], "check needs a recipe"),
    (["delete"], "delete needs a recipe"),
    (["check", "no_such_recipe"], "unknown recipe 'no_such_recipe'"),
    (["--recipe", "no_such_recipe", "--action", "delete"], "unknown recipe 'no_such_recipe'"),
    (["create", "no_such_recipe"], "unknown recipe 'no_such_recipe'"),
    (["delete", "../etc"], "must not contain '/', '\\' or '..'"),
    (["--recipe", "a/b", "--action", "create"], "must not contain '/', '\\' or '..'"),
    (["delete", "a\\b"], "must not contain '/', '\\' or '..'"),
    (["delete", ".."], "must not contain '/', '\\' or '..'"),
    (["list", "--recipe", "../results"], "must not contain '/', '\\' or '..'"),
    (["delete", RECIPE, "--date", "2025-05-12"], "date '2025-05-12' is not in YYYYMMDD form"),
    (["create", RECIPE, "--date", "20250231"], "'20250231' is not a real calendar date"),
    (["--recipe", RECIPE, "--action", "check", "--date", "x"], "is not in YYYYMMDD form"),
    (["delete", RECIPE, "--date", DAY, "--all-dates"], "cannot be combined"),
    (["prune"], "--older-than"),
    (["prune", "--older-than", "30 days"], "is not a duration"),
    (["list", "--bogus"], "No such option '--bogus'"),
    (["check", RECIPE, "extra"], "Got unexpected extra argument (extra)"),
]
# One of each kind: the seed's form, a missing command, a recipe name, a date, the
# repository's recipes.
BAD_MARKERS_END_TO_END = [BAD_MARKERS[i] for i in (0, 2, 8, 14, 5)]

# What `markers list` says of a marker file the previous system wrote (its timestamp)...
LEGACY = ["2025-05-12T08:00:00", "2025-05-12 08:00:00.123456\n", "1747036800.0", "1747036800"]
LEGACY_END_TO_END = LEGACY[:1]
# ...and of a broken one: (its bytes, the problem).
CORRUPT = [
    (b"", "neither JSON nor a timestamp"),
    (b"not a time", "neither JSON nor a timestamp"),
    (b'{"queried_at": ', "not valid JSON"),
    (b'{"rows": 3}', "JSON without a valid queried_at"),
    (b"\xff\xfe\x00garbage", "unreadable: UnicodeDecodeError"),
]
CORRUPT_END_TO_END = CORRUPT[2:3]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A copy of the workflow's files as the current folder, the clock pinned, and no
    setting of this tool from the test's own environment (as ``clean_env`` does)."""
    copy = copy_workflow(tmp_path / "repo")
    for key in list(os.environ):
        if key.startswith(("LEAD_RECOVERY_", "REDSHIFT_", "SNAKEMAKE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LEAD_RECOVERY_NOW", NOW)
    monkeypatch.chdir(copy.root)

    def no_exec(*args):  # a run that got past its checks would become Snakemake here
        raise AssertionError(f"would have started {args[1]}")

    monkeypatch.setattr(os, "execve", no_exec)
    return copy


def json_marker(copy, day=DAY, **fields):
    sql = (copy.root / "recipes" / RECIPE / "redshift.sql").read_text()
    record = {
        "recipe": RECIPE,
        "run_date": day,
        "queried_at": "2025-05-12T08:00:00+00:00",
        "rows": 3,
        "sql_sha256": recipes.sql_sha256(sql),
        **fields,
    }
    path = copy.marker(RECIPE, day)
    markers.write_marker(path, record)
    return path


def cache(copy, day=DAY):
    path = copy.leads(RECIPE, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"lead_id": [0, 1, 2]}), path)


def row(stdout: str, day: str) -> str:
    [line] = [ln for ln in stdout.splitlines() if ln.startswith(RECIPE + " ") and f" {day}" in ln]
    return line


@pytest.mark.parametrize(("args", "expected"), BAD_RUN)
def test_bad_run_input_is_one_line_and_exit_2(repo, capsys, args, expected):
    code = cli_main.main(args)

    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("lead-recovery: error: ") and expected in line
    assert not (repo.root / "results").exists(), "bad input touches nothing"


@pytest.mark.parametrize(("args", "expected"), BAD_MARKERS)
def test_bad_markers_input_is_one_line_exit_2_and_touches_nothing(repo, capsys, args, expected):
    json_marker(repo)
    json_marker(repo, day=OLD)
    cache(repo)
    before = repo.snapshot()

    code = markers_cli.main(args, prog="markers")

    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("markers: error: ")
    assert expected in line
    assert repo.snapshot() == before


@pytest.mark.parametrize("content", LEGACY)
def test_list_reads_the_previous_systems_timestamp_markers(repo, capsys, content):
    repo.marker(RECIPE, DAY).parent.mkdir(parents=True)
    repo.marker(RECIPE, DAY).write_text(content)
    cache(repo)

    assert markers_cli.main(["list", "--json"], prog="markers") == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert markers_cli.main(["list"], prog="markers") == 0
    table = row(capsys.readouterr().out, DAY)

    assert entry["format"] == "legacy"
    assert entry["queried_at"].startswith("2025-05-12T08:00:00")
    assert entry["rows"] is None
    assert entry["counts"] is True
    assert "legacy" in table
    assert table.rstrip().endswith("COUNTS")


@pytest.mark.parametrize(("content", "problem"), CORRUPT)
def test_list_shows_a_corrupt_marker_as_such(repo, capsys, content, problem):
    json_marker(repo, day=OLD)
    repo.marker(RECIPE, DAY).write_bytes(content)
    cache(repo)

    assert markers_cli.main(["list"], prog="markers") == 0
    shown = capsys.readouterr()
    assert markers_cli.main(["list", "--json"], prog="markers") == 0
    entries = {e["run_date"]: e for e in json.loads(capsys.readouterr().out)}

    assert "Traceback" not in shown.out + shown.err
    assert "corrupt" in row(shown.out, DAY)
    assert f"NO: marker unreadable ({problem})" in row(shown.out, DAY)
    assert entries[DAY]["format"] == "corrupt" and entries[DAY]["problem"] == problem
    assert entries[DAY]["counts"] is False
    assert entries[OLD]["format"] == "json"  # the others are still listed


def test_a_catch_up_covers_every_day_from_since_to_the_run_date():
    """``cron --since D`` / ``run --since D``: every run date from D to the run date, each
    its own recipe-day (its own marker and decision: tests/unit/test_plan.py)."""
    assert rundate.date_range("20250512", "20250514") == ["20250512", "20250513", "20250514"]
    assert rundate.date_range("20250514", "20250514") == ["20250514"]
    assert rundate.date_range("20250228", "20250301") == ["20250228", "20250301"]


@pytest.mark.parametrize("content", ["2025-05-12T09:30:00", "1747042200.0"])
def test_the_previous_systems_marker_counts_for_the_workflow(tmp_path, content):
    """What Snakemake's plan makes of a timestamp marker (the ISO form and the epoch
    form): it counts, its extract present; the epoch form against Snakemake:
    tests/markers/test_markers_workflow.py::test_a_previous_systems_marker_spares_the_query."""
    path = tmp_path / markers.marker_name(RECIPE, DAY)
    path.write_text(content)
    found = markers.read_marker(path)

    decision = plan.decide(
        found,
        True,
        run_date=DAY,
        sql_sha256="a" * 64,
        policy=plan.Policy(),
        now=datetime(2025, 5, 12, 10, 0, tzinfo=UTC),
        tz=UTC,
        warehouse="duckdb demo",
    )

    assert found.format == "legacy"
    assert found.queried_at == datetime(2025, 5, 12, 9, 30, tzinfo=UTC)
    assert decision.counts, decision
