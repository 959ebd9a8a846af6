"""A store folder whose disk is full when a query's extract is published: one line
naming the store, no traceback, the day's lease released, the day's previous pair
untouched, and the run's account still printed; the run's history, on a disk just as
full, costs a warning line and never the account.

The store is a small tmpfs (root mounts it; skipped otherwise), the checkout is on
another filesystem, so the extract is copied into the store rather than linked: it
is larger than what a ballast file left free. Its ``markers/.history`` is a second
tmpfs, full from the start. One run. The same refusals, each write at a time and with
an I/O error too: tests/unit/test_store_write_failures.py.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_recovery import layout, lease, markers
from lead_recovery.day import Day
from lead_recovery.store import FolderStore

BIG, DAY = "big_extract", "20250512"
# About 60,000 rows of 64 hex digits: over a megabyte of Parquet, whatever its codec.
BIG_SQL = (
    "SELECT lead_id, MD5(name) || MD5(phone) AS noise FROM leads ORDER BY lead_id LIMIT 60000\n"
)
FREE = 256 * 1024  # what the ballast leaves: leases and their probes fit, the extract not


def _mount(folder: Path, size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def _fill(folder: Path, leave: int) -> None:
    """A ballast file taking all but ``leave`` bytes of ``folder``'s filesystem."""
    with open(folder / "ballast", "wb") as out:
        while True:
            info = os.statvfs(folder)
            room = info.f_bavail * info.f_frsize - leave
            if room <= 0:
                return
            try:
                out.write(b"\0" * min(room, 1 << 20))
                out.flush()
            except OSError as err:
                assert err.errno == errno.ENOSPC
                return


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs store whose markers/.history is a tmpfs of its own (unmounted after)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    store = tmp_path / "store"
    history = store / layout.HISTORY
    _mount(store, "2m")
    try:
        _mount(history, "64k")
        yield store
    finally:
        for folder in (history, store):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _previous_pair(store: Path, tmp_path: Path) -> bytes:
    """The day's pair from an earlier query, as a run publishes it: its marker bytes."""
    local = tmp_path / "earlier.parquet"
    pq.write_table(pa.table({"lead_id": [1, 2, 3], "noise": ["a", "b", "c"]}), local)
    record = markers.record(
        recipe=BIG, run_date=DAY, queried_at="2025-05-12T06:00:00+00:00", rows=3, sql_sha256=None
    )
    folder = FolderStore(store)
    with lease.held(folder, BIG, DAY, wait_s=5) as held:
        return Day(folder, BIG, DAY).publish(held, local, record).text


def test_a_full_store_at_publish_is_one_line_and_the_account_still_prints(
    workflow, full_store, tmp_path
):
    store = full_store
    workflow.add_recipe(
        BIG, sql=BIG_SQL, meta={"description": "large", "output_columns": ["lead_id", "noise"]}
    )
    before = _previous_pair(store, tmp_path)
    _fill(store / layout.HISTORY, 0)
    _fill(store, FREE)

    result = workflow.run(
        config={"recipe": BIG, "date": DAY, "store": str(store), "ignore_redshift_marker": True},
        ok=False,
    )

    out = result.output
    said = (
        f"recipe '{BIG}' {DAY}: the store {store} has no space left (No space left on device); "
        "nothing was published"
    )
    assert "Traceback" not in out, out[-4000:]
    assert [ln for ln in out.splitlines() if " ERROR " in ln][0].endswith(f"ERROR {said}")
    assert result.account == [
        f"{BIG} {DAY} failed: {said}; the previous extract and marker were kept",
        "total: 1 recipe-day: 0 queried, 0 cached, 0 skipped, 1 failed; 0 queries avoided",
    ], out[-4000:]
    warnings = [ln for ln in out.splitlines() if "history was not recorded" in ln]
    assert warnings == [
        "lead-recovery: warning: this run's history was not recorded in "
        f"{store / layout.HISTORY} ([Errno 28] No space left on device)"
    ], out[-4000:]
    folder = FolderStore(store)
    state, _ = lease.current(folder, BIG, DAY)
    assert state is not None and state.released and state.generation == 2
    assert Day(folder, BIG, DAY).read().text == before
    extracts = list((store / BIG / DAY / layout.EXTRACTS).iterdir())
    assert len(extracts) == 1, extracts  # the earlier query's; no temporary file left
    assert os.statvfs(store).f_bavail * os.statvfs(store).f_frsize >= FREE - 64 * 1024
