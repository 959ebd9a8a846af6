"""The marker index on S3 (lead_recovery/markerindex.py): ``markers list`` reads one
object instead of listing and reading every marker, and stays right through the
changes lead-recovery makes. moto's server stands in for AWS; requests are
counted at the server.
"""

from __future__ import annotations

import os

import pytest

from lead_recovery import markers
from lead_recovery.store import S3Store
from tests.s3.conftest import DAY, SQL, OnS3

FOLDER, RESULTS = "results/markers", "results"
INDEX_KEY = "team/results/markers/.index.json.gz"


@pytest.fixture
def st(on_s3: OnS3, monkeypatch) -> S3Store:
    """The test's bucket as a store, reached through the server's standard AWS settings."""
    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    return S3Store(on_s3.url)


def _marker(st: S3Store, day: str, rows: int, recipe: str = SQL) -> str:
    """A marker written straight to the store, as another tool would; returns its name."""
    record = {"recipe": recipe, "run_date": day, "queried_at": f"{day[:4]}-{day[4:6]}-"
              f"{day[6:]}T06:00:00+00:00", "rows": rows}  # fmt: skip
    st.write(markers.marker_path(FOLDER, recipe, day), markers.render(record))
    return markers.marker_name(recipe, day)


def _listings_of_markers(on_s3: OnS3, since: int) -> list[dict]:
    """Requests that list the marker folder itself (not its .leases/ sub-folder)."""
    return [
        r
        for r in on_s3.requests()[since:]
        if r["method"] == "GET"
        and not r["key"]
        and "prefix=team%2Fresults%2Fmarkers%2F&" in (r["query"] + "&")
    ]


def _marker_gets(on_s3: OnS3, since: int) -> list[str]:
    return [
        r["key"]
        for r in on_s3.requests()[since:]
        if r["method"] == "GET" and r["key"].endswith(".marker")
    ]


def test_markers_list_on_s3_lists_the_store_once_then_reads_the_index(on_s3: OnS3, st):
    for day in ("20261125", "20261126", DAY):
        _marker(st, day, rows=int(day[-2:]))
    st.write(f"{RESULTS}/{SQL}/{DAY}/leads.parquet", b"PAR1")
    st.write(f"{FOLDER}/redshift_queried_{SQL}_20261124.marker", b"\xff not utf-8")

    env = {"LEAD_RECOVERY_NOW": "2026-11-27T12:00:00+00:00", "TZ": "UTC"}
    since = len(on_s3.requests())
    first = on_s3.markers("list", env=env)
    assert first.returncode == 0, first.stderr
    assert "4 marker(s), 1 counting; listed the store in full; the marker index is rebuilt" in (
        first.stdout
    )
    assert _listings_of_markers(on_s3, since) and len(_marker_gets(on_s3, since)) == 4

    since = len(on_s3.requests())
    second = on_s3.markers("list", env=env)
    assert second.returncode == 0, second.stderr
    assert "4 marker(s), 1 counting; from the marker index (store listed in full" in second.stdout
    assert not _listings_of_markers(on_s3, since) and not _marker_gets(on_s3, since)
    rows = [line.split() for line in second.stdout.splitlines()[2:6]]
    assert [row[:2] for row in rows] == [[SQL, d] for d in ("20261124", "20261125", "20261126")] + [
        [SQL, f"{DAY}*"]
    ]
    assert [row[4:7] for row in rows[1:]] == [  # rows, age, cache: as the markers say
        ["25", "2d6h", "missing"],
        ["26", "1d6h", "missing"],
        ["27", "6h0m", "present"],
    ]
    assert "unreadable" in second.stdout and "not utf-8" not in second.stdout

    # the helper's own changes are in the index at once, with no listing
    assert on_s3.markers("delete", SQL, "--date", "20261125", env=env).returncode == 0
    created = on_s3.markers("create", SQL, "--date", "20261120", "--force", env=env)
    assert created.returncode == 0, created.stderr
    since = len(on_s3.requests())
    days = {r["run_date"]: r for r in on_s3.markers_json()}
    assert sorted(days) == ["20261120", "20261124", "20261126", DAY]
    assert days["20261120"]["created_by"] == "markers create"
    assert not _listings_of_markers(on_s3, since)

    # a change made by other means shows once the store is listed again (--refresh)
    on_s3.delete(on_s3.marker_key(day="20261126"))
    refreshed = on_s3.markers("list", "--refresh", env=env)
    assert "3 marker(s), 1 counting; listed the store in full" in refreshed.stdout
    assert " 20261126 " not in refreshed.stdout
