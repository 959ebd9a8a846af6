"""A marker folder is shared ground: a hostile or broken marker reads as corrupt,
with its reason, quickly and in bounded memory, and never stops anything else."""

from __future__ import annotations

import os
import time

import pytest

from lead_recovery import markers
from lead_recovery.store import FolderStore

NAME = "redshift_queried_r_20250512.marker"


def _plant(path, kind):
    if kind == "sql_sha256 is an object":
        path.write_text('{"queried_at": "2025-05-12T10:00:00+00:00", "sql_sha256": {"x": 1}}')
    elif kind == "100,000 nested brackets":
        path.write_text("{" + '"a":' + "[" * 100_000 + "]" * 100_000 + "}")
    elif kind == "a 5,000-digit integer":
        path.write_text('{"queried_at": "2025-05-12T10:00:00+00:00", "rows": ' + "9" * 5000 + "}")
    elif kind == "1 GB":
        with open(path, "wb") as handle:
            handle.truncate(1 << 30)  # sparse: costs no disk
    elif kind == "a named pipe":
        os.mkfifo(path)
    elif kind == "a symlink to /dev/zero":
        os.symlink("/dev/zero", path)
    elif kind == "a list":
        path.write_text("[1, 2]")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("sql_sha256 is an object", "'sql_sha256' is not a str"),
        ("100,000 nested brackets", "more than a marker holds"),
        ("a 5,000-digit integer", "not valid JSON"),
        ("1 GB", "more than a marker holds"),
        ("a named pipe", "not a regular file"),
        ("a symlink to /dev/zero", "not a regular file"),
        ("a list", "neither JSON nor a timestamp"),
    ],
)
def test_a_hostile_marker_reads_as_corrupt_with_its_reason(tmp_path, kind, reason):
    path = tmp_path / NAME
    _plant(path, kind)
    started = time.monotonic()

    found = markers.read_marker(path)

    assert time.monotonic() - started < 1
    assert found.format == "corrupt" and reason in found.problem, found.problem
    folder = tmp_path / "store" / "markers"
    folder.mkdir(parents=True)
    os.rename(path, folder / NAME)
    assert [m.format for m in markers.list_markers(FolderStore(tmp_path / "store"))] == ["corrupt"]


def test_deep_nesting_under_the_size_limit_is_invalid_json_not_a_crash(tmp_path):
    path = tmp_path / NAME
    path.write_text("{" + '"a":' + "[" * 20_000 + "]" * 20_000 + "}")
    assert markers.read_marker(path).problem == "not valid JSON"
