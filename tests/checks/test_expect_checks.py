"""Each ``expect:`` check at its boundary (lead_recovery/checks.py), read from the Parquet
footer of a real extract."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_recovery import checks, markers
from lead_recovery import extract as extract_module
from lead_recovery.store import FolderStore


def extract(tmp_path, rows: int, nulls: int = 0, statistics: bool = True):
    path = tmp_path / "leads.parquet"
    phones = [None] * nulls + ["555"] * (rows - nulls)
    table = pa.table({"lead_id": list(range(rows)), "phone": pa.array(phones, pa.string())})
    pq.write_table(table, path, write_statistics=statistics, row_group_size=max(1, rows // 3))
    return path


@pytest.mark.parametrize(("rows", "ok"), [(9, False), (10, True), (11, True)])
def test_min_rows(tmp_path, rows, ok):
    found = checks.problems(extract(tmp_path, rows), {"min_rows": 10})
    assert (found == []) is ok
    if not ok:
        assert found == ["9 rows where at least 10 were expected"]


@pytest.mark.parametrize(("rows", "ok"), [(49, False), (50, True)])
def test_max_drop_against_the_median_of_the_last_seven_marked_days(tmp_path, rows, ok):
    recent = [1, 1, 1, 100, 100, 100, 100, 100]  # the oldest 1 is outside the seven
    found = checks.problems(extract(tmp_path, rows), {"max_drop": 0.5}, recent)
    assert (found == []) is ok
    if not ok:
        assert "more than 50% below the median 100 of the last 7 marked days" in found[0]


def test_max_drop_without_history_passes(tmp_path):
    assert checks.problems(extract(tmp_path, 1), {"max_drop": 0.1}, []) == []


@pytest.mark.parametrize("statistics", [True, False])
@pytest.mark.parametrize(("nulls", "ok"), [(0, True), (1, False)])
def test_not_null(tmp_path, nulls, ok, statistics):
    found = checks.problems(
        extract(tmp_path, 30, nulls, statistics), {"not_null": ["phone", "lead_id"]}
    )
    assert found == ([] if ok else ["1 null(s) in phone"])


def test_columns(tmp_path):
    path = extract(tmp_path, 3)
    assert checks.problems(path, {"columns": ["lead_id", "phone"]}) == []
    assert checks.problems(path, {"columns": ["lead_id", "email"], "not_null": ["email"]}) == [
        "missing column(s) email"
    ]


def test_no_expectations_reads_nothing(tmp_path):
    assert checks.problems(tmp_path / "absent.parquet", {}) == []


def test_max_drop_history_is_the_last_seven_marked_days_before_the_run_date(tmp_path):
    """Later days, other recipes and markers without a row count are not history."""
    folder = tmp_path / "markers"
    folder.mkdir()
    for day, rows in [(f"202605{d:02d}", d * 10) for d in range(1, 10)] + [("20260520", 999)]:
        record = {"recipe": "r", "run_date": day, "queried_at": "2026-05-01T06:00:00", "rows": rows}
        (folder / markers.marker_name("r", day)).write_bytes(markers.render(record))
    (folder / markers.marker_name("other", "20260505")).write_bytes(
        markers.render({"recipe": "other", "queried_at": "2026-05-05T06:00:00", "rows": 5})
    )
    (folder / markers.marker_name("r", "20260509")).write_text("2026-05-09T06:00:00")  # legacy

    store = FolderStore(tmp_path)
    assert extract_module.recent_rows(store, "r", "20260515") == [20, 30, 40, 50, 60, 70, 80]
