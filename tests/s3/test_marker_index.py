"""The marker index on S3 (lead_recovery/markerindex.py): ``markers list`` reads one
object instead of listing and reading every marker, and stays right through the
changes lead-recovery makes. moto's server stands in for AWS; requests are
counted at the server.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time

import pytest

from lead_recovery import markerindex, markers
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

    since = len(on_s3.requests())
    first = on_s3.markers("list")
    assert first.returncode == 0, first.stderr
    assert "4 marker(s), 1 counting; listed the store in full; the marker index is rebuilt" in (
        first.stdout
    )
    assert _listings_of_markers(on_s3, since) and len(_marker_gets(on_s3, since)) == 4

    since = len(on_s3.requests())
    second = on_s3.markers("list")
    assert second.returncode == 0, second.stderr
    assert "4 marker(s), 1 counting; from the marker index (store listed in full" in second.stdout
    assert not _listings_of_markers(on_s3, since) and not _marker_gets(on_s3, since)
    assert [line.split()[:2] for line in second.stdout.splitlines()[2:6]] == [
        [SQL, d] for d in ("20261124", "20261125", "20261126", DAY)
    ]
    assert "not utf-8" not in second.stdout and "unreadable" in second.stdout  # still corrupt
    by_day = {r["run_date"]: r for r in on_s3.markers_json()}
    assert by_day[DAY]["cache_present"] is True and by_day["20261126"]["cache_present"] is False
    assert by_day["20261125"]["rows"] == 25 and by_day["20261124"]["format"] == "corrupt"

    # the helper's own changes are in the index at once, with no listing
    env = {"LEAD_RECOVERY_NOW": "2026-11-27T12:00:00+00:00", "TZ": "UTC"}
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
    assert "20261126" in {r["run_date"] for r in on_s3.markers_json()}
    refreshed = on_s3.markers("list", "--refresh")
    assert "3 marker(s), 1 counting; listed the store in full" in refreshed.stdout
    assert "20261126" not in {r["run_date"] for r in on_s3.markers_json()}


def test_an_unreadable_or_day_old_index_is_rebuilt_from_a_listing(on_s3: OnS3, st):
    _marker(st, DAY, rows=7)
    on_s3.server.client().put_object(Bucket=on_s3.bucket, Key=INDEX_KEY, Body=b"{not gzip")
    broken = on_s3.markers("list")
    assert broken.returncode == 0, broken.stderr
    assert (
        "1 marker(s), 0 counting; the marker index was unreadable (not gzipped JSON "
        "(BadGzipFile)); listed the store and rebuilt it"
    ) in broken.stdout
    index = markerindex.read(st, FOLDER)
    assert index is not None and list(index.entries) == [markers.marker_name(SQL, DAY)]

    # a day later the index is listed against the store again: what other tools did shows
    _marker(st, "20261126", rows=8)
    st.write(markerindex.index_path(FOLDER), markerindex._encode(
        markerindex.Index(index.seq, time.time() - markerindex.MAX_AGE_S - 60, index.entries)
    ))  # fmt: skip
    aged = on_s3.markers("list")
    assert "2 marker(s), 0 counting; listed the store in full" in aged.stdout


def test_notes_made_together_or_during_a_rebuild_are_all_kept(on_s3: OnS3, st, monkeypatch):
    """Eight writers note at once (conditional writes race at the server), and one notes
    while a rebuild is listing: every note is in the index afterwards."""
    markerindex.rebuild(st, FOLDER, RESULTS, None)  # an empty store: an empty index
    names = [_marker(st, f"202611{10 + i:02d}", rows=i) for i in range(8)]
    threads = [
        threading.Thread(target=markerindex.note, args=(st, FOLDER, RESULTS, [name]))
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    index = markerindex.read(st, FOLDER)
    assert sorted(n for n, e in index.entries.items() if not e.get("gone")) == names

    # a marker written and noted while a rebuild lists the store is kept by the rebuild
    listed = markers.read_folder

    def slow_listing(*args, **kwargs):
        found = listed(*args, **kwargs)
        late = _marker(st, "20261201", rows=99)
        markerindex.note(st, FOLDER, RESULTS, [late])
        st.delete(markers.marker_path(FOLDER, SQL, "20261110"))
        markerindex.forget(st, FOLDER, [names[0]])
        return found

    monkeypatch.setattr(markers, "read_folder", slow_listing)
    markerindex.rebuild(st, FOLDER, RESULTS, None)
    index = markerindex.read(st, FOLDER)
    present = sorted(n for n, e in index.entries.items() if not e.get("gone"))
    assert present == sorted([*names[1:], markers.marker_name(SQL, "20261201")])
    assert index.listed_at is not None


def test_no_index_is_written_by_a_note_and_a_lost_race_removes_it(on_s3: OnS3, st, monkeypatch):
    """A note never creates the index (only a full listing may); a note that cannot be
    made removes it, so the next listing lists the store instead of showing a stale one."""
    name = _marker(st, DAY, rows=1)
    markerindex.note(st, FOLDER, RESULTS, [name])
    assert on_s3.get(INDEX_KEY) is None

    markerindex.rebuild(st, FOLDER, RESULTS, None)
    assert on_s3.get(INDEX_KEY) is not None
    monkeypatch.setattr(st, "put_if", lambda *a, **k: False)  # another writer always wins
    monkeypatch.setattr(markerindex, "TRIES", 2)
    markerindex.note(st, FOLDER, RESULTS, [_marker(st, "20261126", rows=2)])
    assert on_s3.get(INDEX_KEY) is None


def test_a_run_on_s3_notes_its_marker_in_the_index(on_s3: OnS3):
    """Through real Snakemake: a query's new marker, then a forced re-query's, reach the
    index at the end of each run; ``markers list`` shows them without listing the store."""
    built = on_s3.markers("list")
    assert "no markers; listed the store in full" in built.stdout, built.stdout + built.stderr

    def from_index() -> dict:
        since = len(on_s3.requests())
        rows = on_s3.markers_json()
        assert not _listings_of_markers(on_s3, since) and not _marker_gets(on_s3, since)
        return {(r["recipe"], r["run_date"]): r for r in rows}

    assert on_s3.run("--until", "redshift_extract", config={"date": DAY}).queries == 1
    first = from_index()[SQL, DAY]
    assert first["cache_present"] is True and first["counts"] is True and first["rows"] == 142
    stored = json.loads(on_s3.get(on_s3.marker_key()))
    assert first["queried_at"] == stored["queried_at"]

    time.sleep(1.1)  # S3 times are whole seconds: the re-query's marker is a new object
    forced = ("--forcerun", "redshift_extract", "--until", "redshift_extract")
    assert on_s3.run(*forced, config={"date": DAY}).queries == 1
    again = from_index()[SQL, DAY]
    assert again["queried_at"] == json.loads(on_s3.get(on_s3.marker_key()))["queried_at"]
    assert again["queried_at"] != first["queried_at"]
    index = json.loads(gzip.decompress(on_s3.get(INDEX_KEY)))
    assert "secret" not in json.dumps(index).lower()
