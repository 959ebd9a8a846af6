"""Date-keyed Redshift markers: their path, their content, reading and writing.

A marker ``redshift_queried_<recipe>_<YYYYMMDD>.marker`` says "this recipe's
query ran for this run date and its cached extract is complete". It is an
output of the same Snakemake job as the cached extract and is written last,
atomically, so its presence never outruns the data. Content is JSON; markers
left by the previous system hold only a timestamp and are still understood.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lead_recovery import atomic
from lead_recovery.jsoncache import JsonCache
from lead_recovery.store import TooLarge, read_at_most

PREFIX = "redshift_queried_"
SUFFIX = ".marker"
_NAME_RE = re.compile(r"^redshift_queried_(?P<recipe>.+)_(?P<date>\d{8})\.marker$")


def marker_name(recipe: str, run_date: str) -> str:
    return f"{PREFIX}{recipe}_{run_date}{SUFFIX}"


def marker_path(marker_dir: str | Path, recipe: str, run_date: str) -> str:
    """The one place a marker's path is computed (rules, helper and tests)."""
    return f"{marker_dir}/{marker_name(recipe, run_date)}"


def parse_marker_name(name: str) -> tuple[str, str] | None:
    """``(recipe, run_date)`` of a marker file name, or ``None`` if it is not one."""
    match = _NAME_RE.match(name)
    return (match.group("recipe"), match.group("date")) if match else None


def render(record: dict[str, Any]) -> bytes:
    """A marker's bytes: sorted, indented JSON, so equal records are equal files."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


def record(
    *,
    recipe: str,
    run_date: str,
    queried_at: str | None,
    rows: int | None,
    sql_sha256: str | None,
    **fields: Any,
) -> dict[str, Any]:
    """A marker's record: what every marker says (a run's query adds how it ran;
    ``markers create`` who made it). The day's extract and the lease generation
    are added when it is committed (day.py)."""
    from lead_recovery import jobs

    return {
        "recipe": recipe,
        "run_date": run_date,
        "queried_at": queried_at,
        "rows": rows,
        "sql_sha256": sql_sha256,
        "user@host": jobs.user_at_host(),
        **fields,
    }


def write_marker(path: str | Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON so that readers see the old file or the whole new one."""
    atomic.write_bytes(path, render(record))  # the store's umask: store.share


@dataclass
class Marker:
    """What a marker file says, however it was written.

    ``path``: a local file, or a marker's path in its store (``markers/<name>``); never
    an S3 location, which a Path would spell ``s3:/bucket/key``: the store's
    ``location()`` shows it (``s3://bucket/key``).
    """

    path: Path
    recipe: str
    run_date: str
    format: str  # "json", "legacy" (timestamp only) or "corrupt"
    queried_at: datetime | None = None
    record: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    @property
    def rows(self) -> int | None:
        rows = self.record.get("rows")
        return rows if isinstance(rows, int) else None

    @property
    def sql_sha256(self) -> str | None:
        return self.record.get("sql_sha256")

    @property
    def counted_from(self) -> datetime | None:
        """When the extract was last known current: queried, or confirmed by an
        unchanged source watermark since (``confirmed_at``). TTLs count from here."""
        confirmed = self.record.get("confirmed_at")
        when = _parse_time(confirmed) if isinstance(confirmed, str) else None
        if when is not None and when.tzinfo is not None and self.queried_at is not None:
            return max(when, self.queried_at)
        return self.queried_at


def _parse_time(text: str) -> datetime | None:
    text = text.strip()
    for candidate in (text, text.replace("Z", "+00:00")):
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            pass
    try:
        return datetime.fromtimestamp(float(text)).astimezone()
    except (ValueError, OverflowError, OSError):
        return None


MAX_BYTES = 64 * 1024  # a marker is a few hundred bytes; anything larger is not one
# The fields a marker's readers use, and the types they must have.
_FIELDS = {"rows": int, "bytes": int, "sql_sha256": str, "run_id": str, "queried_at": str}


class _NotAMarker(Exception):
    pass


def _read_bytes(path: str | Path) -> bytes:
    """A small regular file's bytes, in a few system calls (``markers list`` reads
    thousands), never blocking on a named pipe or reading a device or a huge file:
    a marker folder may be shared ground."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotAMarker("not a regular file")
        if info.st_size > MAX_BYTES:
            raise _NotAMarker(f"{info.st_size} bytes, more than a marker holds")
        try:
            return read_at_most(fd, MAX_BYTES)
        except TooLarge as err:
            raise _NotAMarker(str(err)) from None
    finally:
        os.close(fd)


def _bad_field(record: dict[str, Any]) -> str | None:
    for key, kind in _FIELDS.items():
        value = record.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"'{key}' is not a {kind.__name__}"
    return None


def read_marker(path: str | Path) -> Marker:
    """Read a marker; an unreadable or hostile one comes back as ``format="corrupt"``
    with its reason, quickly and in bounded memory; this never raises."""
    path = Path(path)
    try:
        data = _read_bytes(path)
    except _NotAMarker as err:
        return _corrupt(path, str(err))
    except OSError as err:
        return _corrupt(path, f"unreadable: {err.__class__.__name__}")
    return parse_marker(path, data)


def _corrupt(path: Path, problem: str) -> Marker:
    recipe, run_date = parse_marker_name(path.name) or ("?", "?")
    return Marker(path=path, recipe=recipe, run_date=run_date, format="corrupt", problem=problem)


def read_stored(store: Any, path: str) -> Marker | None:
    """A marker read through a store (one bounded GET on S3); ``None`` if absent."""
    data = store.read(path)
    return None if data is None else parse_marker(Path(path), data)


def parse_marker(path: str | Path, data: bytes) -> Marker:
    """What the bytes ``data`` of the marker at ``path`` say (never raises)."""
    path = Path(path)
    if len(data) > MAX_BYTES:
        return _corrupt(path, f"more than {MAX_BYTES} bytes")
    marker = _corrupt(path, "")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        marker.problem = f"unreadable: {err.__class__.__name__}"
        return marker
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except (ValueError, RecursionError):  # bad JSON, deep nesting, huge integers
            marker.problem = "not valid JSON"
            return marker
        if not isinstance(record, dict):
            marker.problem = "not a JSON object"
            return marker
        problem = _bad_field(record)
        if problem is not None:
            marker.problem = problem
            return marker
        queried = _parse_time(str(record.get("queried_at", "")))
        if queried is None:
            marker.problem = "JSON without a valid queried_at"
            return marker
        if queried.tzinfo is None:
            queried = queried.astimezone()
        marker.format, marker.record, marker.queried_at = "json", record, queried
        return marker
    queried = _parse_time(stripped) if stripped else None
    if queried is None:
        marker.problem = "neither JSON nor a timestamp"
        return marker
    if queried.tzinfo is None:
        queried = queried.astimezone()
    marker.format, marker.queried_at = "legacy", queried
    return marker


def list_markers(
    store: Any,
    recipe: str | None = None,
    cache_file: str | Path | None = None,
) -> list[Marker]:
    """Every marker in the store (optionally one recipe's), by recipe then date.

    See :func:`read_folder`; ``cache_file`` keeps what was read from a remote
    store for the next listing.
    """
    found = [
        parse_marker(Path(f"{MARKERS}/{name}"), got)  # in the store: see Marker.path
        if problem is None
        else _corrupt(Path(f"{MARKERS}/{name}"), problem)
        for name, (_, got, problem) in read_folder(store, recipe, cache_file).items()
        if got is not None or problem is not None
    ]
    return sorted(found, key=lambda m: (m.recipe, m.run_date))


MARKERS = "markers"  # the marker folder below a store's root (layout.MARKERS)
S3_CACHE_KEY = "s3-markers:1"
KEEP_BYTES = 8 * 1024  # markers are a few hundred bytes; a larger one is read every time
READERS = 16  # concurrent GETs on a remote store: the bound on what a listing asks of it


def read_folder(
    store: Any, recipe: str | None, cache_file: str | Path | None
) -> dict[str, tuple[Any, bytes | None, str | None]]:
    """The store's markers by name, with what the listing says of each, their bytes
    (``None``: gone between the listing and the read) and why they cannot be read
    (``None``: they can).

    On a folder that is a directory listing and a small read per marker. On S3
    one GET after another would take minutes over thousands of markers, and
    even concurrent ones cost a request each: the listing gives each object's
    ETag, size and time, and a marker read before at exactly those
    (``cache_file``, a :class:`~lead_recovery.jsoncache.JsonCache`) is not read
    again; the rest are read :data:`READERS` at a time. A rewritten marker has a
    new time (and ETag), so an old copy is never used.
    """
    from concurrent.futures import ThreadPoolExecutor

    listed = {
        name: entry
        for name, entry in store.entries(MARKERS).items()
        if (parsed := parse_marker_name(name)) and (recipe is None or parsed[0] == recipe)
    }
    remote = store.local_path(MARKERS) is None
    cache = JsonCache(cache_file, S3_CACHE_KEY) if cache_file is not None and remote else None
    base = store.location(MARKERS) + "/"

    def stamp(name: str) -> list[Any]:
        entry = listed[name]
        return [entry.etag, entry.size, entry.mtime]

    problems: dict[str, str] = {}

    def read(name: str) -> bytes | None:
        try:
            got = store.get(f"{MARKERS}/{name}", MAX_BYTES)
        except TooLarge:
            problems[name] = f"more than {MAX_BYTES} bytes, more than a marker holds"
            return None
        except OSError as err:  # unreadable: a corrupt marker, shown as such
            problems[name] = f"unreadable: {err.__class__.__name__}"
            return None
        if got is not None and not got.regular:
            problems[name] = "not a regular file"
            return None
        return None if got is None else got.data

    data: dict[str, bytes | None] = {}
    for name in listed:
        kept = cache.get(base + name, stamp(name)) if cache and listed[name].etag else None
        if isinstance(kept, str):
            data[name] = kept.encode("utf-8")
    unread = [name for name in listed if name not in data]
    if remote:
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            got_all = list(pool.map(read, unread))
    else:
        got_all = [read(name) for name in unread]
    for name, got in zip(unread, got_all, strict=True):
        data[name] = got
        if cache and got is not None and listed[name].etag and len(got) <= KEEP_BYTES:
            with contextlib.suppress(UnicodeDecodeError):
                cache.put(base + name, stamp(name), got.decode("utf-8"))
    if cache is not None:
        if recipe is None:  # the whole folder was listed: what is not there is gone
            cache.forget(lambda key: key.startswith(base) and key[len(base) :] not in listed)
        cache.save()
    return {name: (listed[name], data[name], problems.get(name)) for name in listed}
