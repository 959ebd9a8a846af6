"""A store that refuses the writes of a day's commit (a full disk, an I/O error): one
line naming the store and what became of the day, never a traceback, the lease
released, and the day's pair as it was (or, when only the marker file failed, the
commit published by the day's next holder). The same on a real full disk:
tests/core/test_full_store.py."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_recovery import layout, lease, markers
from lead_recovery.day import Day
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import FolderStore

R, D = "r", "20250512"


def quiet(_: str) -> None:
    pass


def extract(tmp_path: Path, rows: int, name: str) -> Path:
    path = tmp_path / name
    pq.write_table(pa.table({"lead_id": list(range(rows))}), path)
    return path


def record(rows: int) -> dict:
    return markers.record(
        recipe=R, run_date=D, queried_at="2025-05-12T10:00:00+00:00", rows=rows, sql_sha256=None
    )


class Refusing(FolderStore):
    """A folder store whose next write of ``refused`` (a path, or ``"extract"``) fails
    with ``code``, once it is armed."""

    def __init__(self, root: Path, refused: str, code: int) -> None:
        super().__init__(root)
        self.refused, self.code, self.armed = refused, code, False

    def _refuse(self, what: str) -> None:
        if self.armed and what == self.refused:
            self.armed = False
            raise OSError(self.code, os.strerror(self.code))

    def put_file(self, local, path, replace=False):
        self._refuse("extract")
        return super().put_file(local, path, replace)

    def put_if(self, path, data, etag):
        self._refuse(path)
        return super().put_if(path, data, etag)


@pytest.fixture
def published(tmp_path) -> tuple[Path, bytes]:
    """A store whose day has a pair already: its root and marker bytes."""
    root = tmp_path / "store"
    store = FolderStore(root)
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        pair = Day(store, R, D).publish(held, extract(tmp_path, 3, "first.parquet"), record(3))
    return root, pair.text


def _publish(store: Refusing, tmp_path: Path) -> str:
    """A forced re-query's publish, whose store fails as armed: the error's message."""
    local = extract(tmp_path, 5, "second.parquet")
    with (
        pytest.raises(LeadRecoveryError) as failed,
        lease.held(store, R, D, wait_s=1, say=quiet) as held,
    ):
        store.armed = True
        Day(store, R, D).publish(held, local, record(5))
    assert not store.armed, "the armed failure happened"
    return str(failed.value)


def _extracts(root: Path) -> list[str]:
    return sorted(p.name for p in (root / R / D / layout.EXTRACTS).iterdir())


@pytest.mark.parametrize(
    ("refused", "code", "cause"),
    [
        ("extract", errno.EIO, "could not be written (Input/output error)"),
        ("extract", errno.ENOSPC, "has no space left (No space left on device)"),
        ("lease", errno.ENOSPC, "has no space left (No space left on device)"),
    ],
)
def test_nothing_is_published_and_the_previous_pair_stands(
    published, tmp_path, refused, code, cause
):
    root, before = published
    path = layout.lease_path(R, D) if refused == "lease" else refused
    store = Refusing(root, path, code)
    message = _publish(store, tmp_path)
    assert message == f"recipe '{R}' {D}: the store {root} {cause}; nothing was published"
    assert Day(store, R, D).read().text == before
    assert len(_extracts(root)) == 1, "the refused query's extract is not left behind"
    state, _ = lease.current(store, R, D)
    assert state.released and state.commit.generation == 1  # the first run's commit


def test_a_commit_whose_marker_failed_is_written_by_the_next_holder(published, tmp_path):
    root, before = published
    marker = markers.marker_path(layout.MARKERS, R, D)
    message = _publish(Refusing(root, marker, errno.ENOSPC), tmp_path)
    assert message.endswith(
        "has no space left (No space left on device); its marker is committed and the next "
        "run of the day writes it"
    )
    store = FolderStore(root)
    day = Day(store, R, D)
    assert day.read().text == before and len(_extracts(root)) == 2
    with lease.held(store, R, D, wait_s=1, say=quiet) as held:
        assert day.roll_forward(held)
    assert day.read().generation == 2 and day.read().marker.rows == 5 and day.read().present
