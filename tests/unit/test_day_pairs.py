"""What publishing a day means (lead_recovery/day.py), on a folder store: each query's
extract written once, the marker committed under the lease (the fence), the checkout's
copies, a stalled commit published by the next holder, markers never going back."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_recovery import layout, lease, markers
from lead_recovery.day import Day, Views
from lead_recovery.store import FolderStore

R, D = "r", "20250512"


def quiet(_: str) -> None:
    pass


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


def extract(tmp_path: Path, rows: int, name: str = "tmp.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(pa.table({"lead_id": list(range(rows))}), path)
    return path


def record(rows: int, **extra) -> dict:
    return markers.record(
        recipe=R,
        run_date=D,
        queried_at="2025-05-12T10:00:00+00:00",
        rows=rows,
        sql_sha256=None,
        **extra,
    )


def views(tmp_path: Path) -> Views:
    return Views(
        tmp_path / "checkout" / R / D / "leads.parquet", tmp_path / "checkout" / "m.marker"
    )


def test_a_published_pair_names_its_extract_written_once(store, tmp_path):
    day = Day(store, R, D)
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        pair = day.publish(held, extract(tmp_path, 3), record(3))
    read = day.read()
    assert read.text == pair.text and read.present
    assert read.extract.startswith(f"{R}/{D}/{layout.EXTRACTS}/") and read.generation == 1
    assert pq.read_metadata(store.local_path(read.extract)).num_rows == 3
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:  # a forced re-query
        again = day.publish(held, extract(tmp_path, 5, "new.parquet"), record(5))
    assert again.extract != pair.extract and day.read().generation == 2
    assert store.local_path(pair.extract).is_file()  # the paid-for extract stays


def test_the_checkout_gets_copies_and_snakemake_removing_them_costs_nothing(store, tmp_path):
    day = Day(store, R, D)
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        pair = day.publish(held, extract(tmp_path, 3), record(3))
    copies = views(tmp_path)
    day.link(pair, copies)
    assert os.path.samefile(copies.leads, store.local_path(pair.extract))  # no byte copied
    assert copies.marker.read_bytes() == pair.text
    copies.leads.unlink()
    copies.marker.unlink()  # what Snakemake does before a forced job, or after a failed one
    assert day.read().text == pair.text
    day.link(day.read(), copies)
    assert copies.leads.is_file() and copies.marker.read_bytes() == pair.text


def test_a_run_taken_over_before_it_commits_publishes_nothing(store, tmp_path):
    day = Day(store, R, D)
    with lease.held(store, R, D, wait_s=1, say=quiet) as first:
        kept = day.publish(first, extract(tmp_path, 3), record(3))
    with lease.held(store, R, D, wait_s=1, say=quiet) as stalled:
        got = store.get(layout.lease_path(R, D))  # a taker, while this run stalls
        taker = replace(lease.parse(got.data), generation=stalled.generation + 1, commit=None)
        assert store.put_if(layout.lease_path(R, D), lease.render(taker), got.etag)
        before = set(store.listing(f"{R}/{D}/{layout.EXTRACTS}"))
        with pytest.raises(lease.LeaseLost):
            day.publish(stalled, extract(tmp_path, 1, "late.parquet"), record(1))
    assert (day.read().text, day.read().extract) == (kept.text, kept.extract)  # byte for byte
    assert set(store.listing(f"{R}/{D}/{layout.EXTRACTS}")) == before  # its upload removed


def test_a_commit_that_a_stall_kept_from_the_marker_is_published_by_the_next_holder(
    store, tmp_path
):
    day = Day(store, R, D)
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        path = layout.extract_path(R, D, "stalled")
        store.put_file(extract(tmp_path, 4), path)
        text = markers.render({**record(4), "extract": path, "generation": held.generation})
        held.commit(text)  # fenced: committed ... and then the run stopped
        held._stop.set()  # no release either: it is killed here
        lease_file = store.local_path(layout.lease_path(R, D))
    os.utime(lease_file, (1, 1))  # its lease expired long ago
    assert day.read() is None
    with lease.held(store, R, D, wait_s=1, say=quiet) as taker:
        assert day.roll_forward(taker)
    assert day.read().text == text and day.read().present


def test_a_marker_never_goes_back_to_an_earlier_generation(store, tmp_path):
    day = Day(store, R, D)
    newer = markers.render({**record(2), "generation": 7})
    day.point(newer, 7)
    day.point(markers.render({**record(1), "generation": 6}), 6)  # a late writer
    assert day.read().text == newer


def test_a_marker_naming_an_extract_outside_its_day_names_nothing(store, tmp_path):
    day = Day(store, R, D)
    for named in ("../../other/secret.parquet", "other/20250512/extracts/x.parquet", 7):
        hostile = markers.render({**record(1), "extract": named})
        store.put(day.marker_path, hostile)
        pair = day.read()
        assert not pair.present and "(invalid)" in pair.extract


def test_a_marker_from_before_named_extracts_reads_its_days_leads_parquet(store, tmp_path):
    day = Day(store, R, D)
    store.put(day.marker_path, markers.render(record(3)))
    legacy = store.local_path(layout.legacy_extract(R, D))
    legacy.parent.mkdir(parents=True)
    extract(tmp_path, 3).rename(legacy)
    assert day.read().extract == layout.legacy_extract(R, D) and day.read().present
    assert day.adopt_legacy()  # linked where removing leads.parquet cannot reach it
    legacy.unlink()
    assert day.read().extract == layout.adopted_extract(R, D) and day.read().present


def test_a_killed_writers_temporaries_go_and_the_jobs_own_stays(store, tmp_path):
    day = Day(store, R, D)
    copies = views(tmp_path)
    copies.leads.parent.mkdir(parents=True)
    left = copies.leads.parent / ".leads.parquet.killed.tmp"
    left.write_bytes(b"half")
    own = copies.leads.parent / ".leads.parquet.mine.tmp"
    own.write_bytes(b"writing")
    extracts = store.local_path(f"{R}/{D}/{layout.EXTRACTS}")
    extracts.mkdir(parents=True)
    (extracts / ".x.parquet.killed.tmp").write_bytes(b"half")
    relative = Path(os.path.relpath(own))  # the job's own path, however it is spelled

    assert day.clear_temporaries(copies, keep=relative) == 2
    assert own.exists() and not left.exists() and not list(extracts.iterdir())


def test_a_checkout_that_cannot_take_its_copies_is_one_line_and_the_pair_stands(store, tmp_path):
    """A full checkout disk (here: its folder is a file) after a commit: one line naming
    the folder, and the store's pair as it was."""
    from lead_recovery.errors import LeadRecoveryError

    day = Day(store, R, D)
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        pair = day.publish(held, extract(tmp_path, 3), record(3))
    blocked = views(tmp_path)
    blocked.leads.parent.parent.mkdir(parents=True)
    blocked.leads.parent.write_text("not a folder")
    with pytest.raises(LeadRecoveryError, match=r"this checkout's folder .* could not be written"):
        day.link(pair, blocked)
    assert day.read().text == pair.text and day.read().present
