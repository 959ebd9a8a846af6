"""The run history (lead_recovery/history.py): concurrent writers, torn or foreign lines,
and the figures the report adds up."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest

from lead_recovery import history
from lead_recovery.store import FolderStore

T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def event(i: int, decision: str = "queried", seconds: float = 2.0, **changes) -> history.Event:
    fields = {
        "at": (T0 + timedelta(minutes=i)).isoformat(),
        "recipe": "r",
        "run_date": "20261120",
        "decision": decision,
        "reason": "",
        "rows": 10,
        "seconds": seconds,
        "warehouse": "redshift",
        "user_at_host": "ana@etl-1",
        "run_id": f"run{i}",
        **changes,
    }
    return history.Event(**fields)


def write(root, events, run_id):
    """Record ``events`` in a folder store at ``root``; the file it wrote."""
    store = FolderStore(root)
    return store.local_path(history.write(store, events, run_id))


def read(root, since, skipped=None):
    return history.read(FolderStore(root), since, skipped)


def _writer(root: str, i: int) -> None:
    for n in range(25):
        write(root, [event(i * 100 + n, recipe=f"r{i}")] * 3, f"run{i}-{n}")


def test_eight_runs_writing_at_once_lose_and_tear_no_line(tmp_path):
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), i)) for i in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    events = list(read(tmp_path, T0 - timedelta(days=1)))
    assert len(events) == 8 * 25 * 3
    assert {e.recipe for e in events} == {f"r{i}" for i in range(8)}
    assert not list(tmp_path.rglob("*.tmp"))


def test_foreign_or_broken_lines_are_skipped_not_fatal(tmp_path):
    path = write(tmp_path, [event(1)], "run1")
    with open(path, "a") as handle:
        handle.write('{"not": "an event"}\n[[[\n{"decision": {"x": 1}}\n')
    assert [e.run_id for e in read(tmp_path, T0)] == ["run1"]


def test_only_events_since_the_start_are_read(tmp_path):
    write(tmp_path, [event(0)], "old")
    write(tmp_path, [event(60 * 24 * 40, run_id="new")], "new")  # 40 days later
    since = T0 + timedelta(days=30)
    assert [e.run_id for e in read(tmp_path, since)] == ["new"]


def test_the_totals_count_queries_and_what_the_reused_markers_had_cost():
    events = [
        event(0, "queried", 3.0),
        event(1, "cached", 3.0),
        event(2, "cached", 3.0),
        event(3, "skipped", None, rows=None, recipe="csv"),
        event(4, "failed", None, rows=None),
    ]
    per_recipe, total = history.summarize(events)
    assert (per_recipe["r"].queries, per_recipe["r"].avoided, per_recipe["r"].failures) == (1, 2, 1)
    assert (total.seconds_spent, total.seconds_avoided, total.rows, total.skipped) == (
        3.0,
        6.0,
        10,
        1,
    )


def test_a_watermark_check_counts_whether_it_spared_the_query_or_found_a_change():
    events = [
        event(0, "cached", watermark_check=True),  # source unchanged: no query
        event(1, "queried", watermark_check=True),  # source changed: then the query
        event(2, "queried"),
    ]
    _, total = history.summarize(events)
    assert (total.watermark_checks, total.queries, total.avoided) == (2, 2, 1)


# -- what the history holds is untrusted: every field checked, foreign lines skipped ------

GOOD = {
    "at": "2026-11-20T06:00:00+00:00",
    "recipe": "r",
    "run_date": "20261120",
    "decision": "queried",
    "reason": "10 rows, 2.00 s",
    "rows": 10,
    "seconds": 2.0,
    "warehouse": "redshift",
    "user_at_host": "ana@etl-1",
    "run_id": "run1",
}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"at": 5}, '"at" is not a time'),
        ({"at": "2026-11-20T06:00:00"}, '"at" has no UTC offset'),
        ({"at": "yesterday"}, '"at" is not a time'),
        ({"seconds": "abc"}, '"seconds" is not a number'),
        ({"seconds": -1}, '"seconds" is not a warehouse time'),
        ({"seconds": 1e308}, '"seconds" is not a warehouse time'),
        ({"seconds": True}, '"seconds" is not a number'),
        ({"rows": "12x"}, '"rows" is not a count'),
        ({"rows": 1.5}, '"rows" is not a count'),
        ({"rows": -3}, '"rows" is not a count'),
        ({"run_date": "2026-12-07"}, '"run_date" is not YYYYMMDD'),
        ({"run_date": "20261332"}, '"run_date" is not a date'),
        ({"recipe": ""}, '"recipe" is not a short text'),
        ({"recipe": ["r"]}, '"recipe" is not a short text'),
        ({"recipe": "r\x1b[31m"}, '"recipe" has control characters'),
        ({"user_at_host": None}, '"user_at_host" is not a short text'),
        ({"run_id": 7}, '"run_id" is not a short text'),
        ({"warehouse": {"x": 1}}, '"warehouse" is not a short text'),
        ({"reason": None}, '"reason" is not text'),
        ({"decision": {"x": 1}}, '"decision" is not one of'),
        ({"watermark_check": "yes"}, '"watermark_check" is not true or false'),
        ({"rows": None, "run_id": None, "warehouse": None, "seconds": None}, None),
        ({"extra": "a newer writer's field"}, None),
    ],
)
def test_every_field_of_a_line_is_checked(change, why):
    parsed = history.parse_line(json.dumps({**GOOD, **change}))
    if why is None:
        assert isinstance(parsed, history.Event)
    else:
        assert isinstance(parsed, str) and parsed.startswith(why)


@pytest.mark.parametrize(
    "line", ["NaN", '{"seconds": NaN}', "[" * 100_000, "{}", "[1, 2]", '"text"', "12"]
)
def test_lines_that_are_not_events_say_why(line):
    assert isinstance(history.parse_line(line), str)


def test_a_control_character_in_a_reason_is_shown_on_one_line():
    event = history.parse_line(json.dumps({**GOOD, "reason": "failed:\nsecond line"}))
    assert event.reason == "failed: second line"


def test_foreign_lines_are_counted_in_one_warning_line(tmp_path, caplog):
    path = write(tmp_path, [event(1), event(2, recipe="$\\foo{$")], "run1")
    with open(path, "a") as handle:
        for bad in ({"at": 5}, {"seconds": "abc"}, {"run_date": "2026-12-07"}):
            handle.write(json.dumps({**GOOD, **bad}) + "\n")
        handle.write("\n")  # blank lines are not counted
    skipped = history.Skipped()
    with caplog.at_level(logging.WARNING, logger="lead_recovery.history"):
        events = list(read(tmp_path, T0, skipped))
    assert [e.recipe for e in events] == ["r", "$\\foo{$"]
    assert skipped.lines == 3
    assert [r.getMessage() for r in caplog.records] == [
        f'skipped 3 unreadable history lines in {path} (line 3: "at" is not a time)'
    ]


def test_planted_files_cost_neither_memory_nor_time(tmp_path, monkeypatch):
    """A line without end, a file larger than any run writes, bytes that are not UTF-8,
    a FIFO and symlinks: each skipped (or not opened), the good lines still read."""
    monkeypatch.setattr(history, "MAX_FILE", 4 * 1024**2)
    good = write(tmp_path, [event(1)], "run1")
    month = good.parent
    (month / "huge.jsonl").write_bytes(b"x" * (history.MAX_FILE + 1))
    (month / "endless.jsonl").write_bytes(b"{" * (3 * history.MAX_LINE) + b"\n" + good.read_bytes())
    (month / "latin1.jsonl").write_bytes(b'{"recipe": "\xe9"}\n')
    os.mkfifo(month / "fifo.jsonl")
    (month / "link.jsonl").symlink_to(good)
    (month.parent / "209901").symlink_to(month, target_is_directory=True)
    skipped = history.Skipped()
    tracemalloc.start()
    try:
        started = time.monotonic()
        events = list(read(tmp_path, T0, skipped))
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e.run_id for e in events] == ["run1", "run1"]  # good.jsonl, then endless.jsonl's
    assert skipped.lines == 3 and len(skipped.files) == 3
    assert took < 5 and peak < 2 * history.MAX_LINE + 1024**2


def test_report_json_numbers_are_rounded_to_what_they_measure():
    _, total = history.summarize(
        [event(i, seconds=s) for i, s in enumerate((0.1, 0.2, 0.031, 0.0001))]
    )
    assert total.seconds_spent != 0.331  # the binary noise the JSON leaves out
    record = total.as_json()
    assert record["seconds_spent"] == 0.331 and record["queries"] == 4
    assert all(isinstance(record[k], int) for k in ("queries", "avoided", "rows", "skipped"))
