"""The marker index on S3 (lead_recovery/markerindex.py): ``markers list`` reads one
object instead of listing and reading every marker, and stays right through the
changes lead-recovery makes. moto's server stands in for AWS; requests are
counted at the server.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib

import pytest

from lead_recovery import markerindex, markers
from lead_recovery.store import S3Store
from tests.s3.conftest import DAY, SQL, OnS3
from tests.support.workflow import clean_env

FOLDER, RESULTS = "markers", ""  # the store's marker folder; the index needs no results folder
INDEX_KEY = "team/markers/.index.json.gz"


@pytest.fixture
def st(on_s3: OnS3, monkeypatch) -> S3Store:
    """The test's bucket as a store, reached through the server's standard AWS settings."""
    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    return S3Store(on_s3.url)


def _marker(st: S3Store, day: str, rows: int, recipe: str = SQL) -> str:
    """A marker written straight to the store, as another tool would; returns its name.
    It names the day's extract as a run's marker does (``<recipe>/<day>/extracts/q1``)."""
    record = {"recipe": recipe, "run_date": day, "queried_at": f"{day[:4]}-{day[4:6]}-"
              f"{day[6:]}T06:00:00+00:00", "rows": rows,
              "extract": f"{recipe}/{day}/extracts/q1.parquet"}  # fmt: skip
    st.put(markers.marker_path(FOLDER, recipe, day), markers.render(record))
    return markers.marker_name(recipe, day)


def _listings_of_markers(on_s3: OnS3, since: int) -> list[dict]:
    """Requests that list the marker folder itself (not its .leases/ sub-folder)."""
    return [
        r
        for r in on_s3.requests()[since:]
        if r["method"] == "GET"
        and not r["key"]
        and "prefix=team%2Fmarkers%2F&" in (r["query"] + "&")
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
    st.put(f"{SQL}/{DAY}/extracts/q1.parquet", b"PAR1")
    st.put(f"{FOLDER}/redshift_queried_{SQL}_20261124.marker", b"\xff not utf-8")

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


# -- the index is untrusted input: bounded, every entry checked, names only names --------


def _plant(on_s3: OnS3, data: bytes) -> None:
    """Replace the index as anyone who can write the prefix can."""
    on_s3.server.client().put_object(Bucket=on_s3.bucket, Key=INDEX_KEY, Body=data)


def _index(entries: dict, **record) -> bytes:
    return gzip.compress(
        json.dumps(
            {"format": markerindex.FORMAT, "seq": 3, "listed_at": time.time(), **record}
            | {"entries": entries}
        ).encode()
    )


def _entry(st: S3Store, name: str, **changes) -> dict:
    body = st.get(f"{FOLDER}/{name}").data.decode()
    entry = {"etag": "e", "size": len(body), "mtime": 1.7e9, "body": body, "cache": False}
    return {**entry, "seq": 1, **changes}


@functools.cache
def _bomb() -> bytes:
    """About 4 MB that inflate to 4 GiB: 64 gzip members of 64 MiB of zeros each (one
    member, then copies: building it takes a second, not the minute 4 GiB would)."""
    member = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    one = member.compress(bytes(64 * 1024**2)) + member.flush()
    return one * 64


CRAFTED = {
    # the crashes: entries of the wrong type, and a sequence number as text
    "entry is text": lambda st, name: _index({name: "text"}),
    "seq is text": lambda st, name: _index({name: _entry(st, name, seq="9")}),
    "index seq is text": lambda st, name: _index({name: _entry(st, name)}, seq="3"),
    "size is text": lambda st, name: _index({name: _entry(st, name, size="12")}),
    "mtime is NaN": lambda st, name: gzip.compress(
        gzip.decompress(_index({name: _entry(st, name)})).replace(b"1700000000.0", b"NaN")
    ),
    "body is a number": lambda st, name: _index({name: _entry(st, name, body=5)}),
    "body larger than kept": lambda st, name: _index({name: _entry(st, name, body="x" * 9000)}),
    "cache is text": lambda st, name: _index({name: _entry(st, name, cache="yes")}),
    "gone is 2": lambda st, name: _index({name: {"seq": 1, "gone": 2}}),
    "seq after the index's": lambda st, name: _index({name: _entry(st, name, seq=10**9)}),
    "listed_at is text": lambda st, name: _index({name: _entry(st, name)}, listed_at="now"),
    "name is no marker's": lambda st, name: _index({"notes.txt": _entry(st, name)}),
    "name climbs out": lambda st, name: _index(
        {f"redshift_queried_x/../../../../otherteam/secret_{DAY}.marker": _entry(st, name)}
    ),
    "name has ..": lambda st, name: _index({f"redshift_queried_a..b_{DAY}.marker": {}}),
    "not gzip": lambda st, name: b"{}",
    "truncated": lambda st, name: _index({name: _entry(st, name)})[:-12],
    "bytes after it": lambda st, name: _index({name: _entry(st, name)}) * 2,
    "deep nesting": lambda st, name: gzip.compress(b"[" * 200_000),
}


def test_a_crafted_index_is_never_used_the_store_is_listed_and_it_is_rebuilt(
    on_s3: OnS3, st, caplog
):
    """Each crafted index in turn (one bucket: the store listing is the costly part), read
    by ``markers list`` and by ``markers list --refresh``."""
    name = _marker(st, DAY, rows=7)
    for crafted, make in CRAFTED.items():
        for refresh in (False, True):
            case = f"{crafted}, refresh={refresh}"
            _plant(on_s3, make(st, name))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="lead_recovery.markerindex"):
                found = markerindex.listing(st, FOLDER, RESULTS, None, None, refresh=refresh)
            listed = [(m.recipe, m.run_date, m.record.get("rows")) for m in found.markers]
            assert listed == [(SQL, DAY, 7)], case
            if not refresh:
                assert found.source.startswith("the marker index was unreadable ("), case
            warnings = [r.getMessage() for r in caplog.records]
            assert len(warnings) == 1 and "\n" not in warnings[0], (case, warnings)
            assert warnings[0].startswith(
                f"the marker index s3://{on_s3.bucket}/{INDEX_KEY} is unreadable ("
            ), case
            rebuilt = markerindex.read(st, FOLDER)  # a sound index again, of the store
            assert rebuilt is not None and list(rebuilt.entries) == [name], case


def test_a_gzip_bomb_stops_inflating_at_tens_of_megabytes_not_gigabytes(on_s3: OnS3, st):
    _plant(on_s3, _bomb())
    tracemalloc.start()
    try:
        with pytest.raises(markerindex.Unreadable, match="inflates to more than"):
            markerindex.read(st, FOLDER)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # what is inflated stops at 32 MiB (the download and its copies come on top); the
    # whole stream would be 4 GiB. No time limit: tracemalloc makes every allocation
    # slow, and a busy machine slower (the bound on memory is the bound on work)
    assert peak < 2 * markerindex.MAX_INFLATED


def test_an_index_of_many_small_values_is_refused_before_it_is_parsed(on_s3: OnS3, st):
    """Under the inflated bound, JSON of tiny values would still allocate ~20 bytes per
    byte: the values are counted first."""
    _plant(on_s3, gzip.compress(b"[" + b"[]," * (markerindex.MAX_VALUES + 1) + b"[]]"))
    tracemalloc.start()
    try:
        with pytest.raises(markerindex.Unreadable, match="JSON values"):
            markerindex.read(st, FOLDER)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 3 MB of text: parsed, a million lists would take over 60 MB
    assert peak < 32 * 1024**2


def test_an_index_asking_for_many_reads_is_refused(on_s3: OnS3, st, monkeypatch):
    monkeypatch.setattr(markerindex, "MAX_UNKEPT", 2)
    names = [_marker(st, f"2026112{i}", rows=i) for i in range(3)]
    _plant(on_s3, _index({n: _entry(st, n, body=None, size=9000) for n in names}))
    with pytest.raises(markerindex.Unreadable, match="3 entries without their marker's bytes"):
        markerindex.read(st, FOLDER)


def _markers_list(on_s3: OnS3, *args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    """``markers list ARGS`` as a user runs it, with its wall time and its own peak memory
    (the child's rusage from wait4, so no other process of the test counts)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lead_recovery.cli.markers", "list", *args],
            cwd=on_s3.root,
            env=clean_env(**on_s3.server.env, LEAD_RECOVERY_NOW=NOW, TZ="UTC"),
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    return done, took, usage.ru_maxrss * 1024


NOW = "2026-11-27T12:00:00+00:00"


def test_markers_list_over_a_gzip_bomb_warns_in_one_line_and_lists_the_store(on_s3: OnS3, st):
    _marker(st, DAY, rows=7)
    baseline, _, base_rss = _markers_list(on_s3)  # builds the index; the usual cost
    assert baseline.returncode == 0, baseline.stderr
    _plant(on_s3, _bomb())  # a 1 MB one took 2.1 GB and 15 s; a 4 MB one, MemoryError
    shown, took, rss = _markers_list(on_s3)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.splitlines() == [
        f"the marker index s3://{on_s3.bucket}/{INDEX_KEY} is unreadable (inflates to more "
        f"than {markerindex.MAX_INFLATED} bytes); listed the store instead and rebuilt it"
    ]
    assert "1 marker(s), 0 counting; the marker index was unreadable (inflates" in shown.stdout
    assert f"{SQL}  {DAY}*" in shown.stdout
    assert took < 20 and rss < base_rss + 3 * markerindex.MAX_INFLATED


def test_an_index_entry_naming_a_key_outside_the_prefix_is_never_read(on_s3: OnS3, st):
    """``redshift_queried_x/../../../../otherteam/secret_<day>.marker``, once joined to the
    marker folder and normalised, is ``otherteam/secret_<day>.marker``."""
    secret_key = f"otherteam/secret_{DAY}.marker"
    on_s3.server.client().put_object(
        Bucket=on_s3.bucket, Key=secret_key, Body=b'{"queried_at": "their secret"}'
    )
    name = _marker(st, DAY, rows=7)
    climbing = f"redshift_queried_x/../../../../otherteam/secret_{DAY}.marker"
    _plant(on_s3, _index({name: _entry(st, name), climbing: _entry(st, name, body=None)}))
    since = len(on_s3.requests())
    shown, _, _ = _markers_list(on_s3)
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stderr.splitlines()) == 1
    assert 'is unreadable (entry "redshift_queried_x/../../' in shown.stderr
    assert "listed the store instead" in shown.stderr
    assert [r for r in on_s3.requests()[since:] if "otherteam" in r["key"]] == []
    assert "their secret" not in shown.stdout and "1 marker(s), 0 counting; " in shown.stdout


def test_entries_of_the_wrong_type_fail_neither_list_nor_refresh(on_s3: OnS3, st):
    """The issue's two crashes: AttributeError ('str' object has no attribute 'get') in
    ``markers list``, TypeError ('>' between 'str' and 'int') in ``--refresh``."""
    name = _marker(st, DAY, rows=7)
    for args, entries in [
        ((), {name: "text"}),
        (("--refresh",), {name: _entry(st, name, seq="9")}),
    ]:
        _plant(on_s3, _index(entries))
        shown, _, _ = _markers_list(on_s3, *args)
        assert shown.returncode == 0, shown.stderr
        assert len(shown.stderr.splitlines()) == 1 and "is unreadable (entry " in shown.stderr
        assert "1 marker(s), 0 counting; " in shown.stdout  # the store's (no extract: 0)
