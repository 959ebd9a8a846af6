"""The run history (lead_recovery/history.py): concurrent writers, torn or foreign lines,
and the figures the report adds up."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

from lead_recovery import history

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


def _writer(marker_dir: str, i: int) -> None:
    for n in range(25):
        history.write(marker_dir, [event(i * 100 + n, recipe=f"r{i}")] * 3, f"run{i}-{n}")


def test_eight_runs_writing_at_once_lose_and_tear_no_line(tmp_path):
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), i)) for i in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    events = list(history.read(tmp_path, T0 - timedelta(days=1)))
    assert len(events) == 8 * 25 * 3
    assert {e.recipe for e in events} == {f"r{i}" for i in range(8)}
    assert not list(tmp_path.rglob("*.tmp"))


def test_foreign_or_broken_lines_are_skipped_not_fatal(tmp_path):
    path = history.write(tmp_path, [event(1)], "run1")
    with open(path, "a") as handle:
        handle.write('{"not": "an event"}\n[[[\n{"decision": {"x": 1}}\n')
    assert [e.run_id for e in history.read(tmp_path, T0)] == ["run1"]


def test_only_events_since_the_start_are_read(tmp_path):
    history.write(tmp_path, [event(0)], "old")
    history.write(tmp_path, [event(60 * 24 * 40, run_id="new")], "new")  # 40 days later
    since = T0 + timedelta(days=30)
    assert [e.run_id for e in history.read(tmp_path, since)] == ["new"]


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
