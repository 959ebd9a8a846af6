"""An index of the markers on S3, kept beside them: ``markers list`` reads one object.

Listing 10,000 keys takes ten LIST requests at best; on a slow S3-compatible
server (moto's: 5 to 9 s for those ten pages) the listing alone misses the
helper's target, and reading each marker costs a GET more. So the marker
folder on S3 also holds ``.index.json.gz``: for each marker, the ETag, size
and time S3 gives it, its bytes, and whether the day's extract was there.

What keeps it right:

- it is built only from a full listing of the store (``markers list`` builds
  it when it is missing, unreadable or older than :data:`MAX_AGE_S`, and on
  ``--refresh``), so an index that exists covered every marker once;
- every change lead-recovery makes to a marker on S3 is then noted in it, by
  a conditional rewrite (``If-Match`` on the index's ETag, tried again when
  another writer won): the end of each run notes every day whose extract job
  ran or whose pair it kept (what the job wrote, what Snakemake deleted
  before or after it, what was put back), and the helper notes what it
  creates and deletes. A writer reads the marker *after* it has read the
  index it is about to replace, so the last rewrite to succeed holds what
  the store held after every earlier one;
- a rebuild does not lose a note made while it was listing: each note takes
  the index's next sequence number, and the rebuild keeps what was noted
  after it started over what its listing saw;
- a note that cannot be made deletes the index, so the next listing lists.

What it cannot see: a marker written or deleted by other means (the AWS
console, ``aws s3 rm``, the previous system) and a run killed between
Snakemake's removal of its outputs and the end of the run. Those show at the
next rebuild, at most :data:`MAX_AGE_S` later or at once with
``markers list --refresh``. No decision reads the index: runs and
``markers check`` read the marker itself.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_recovery import markers
from lead_recovery.day import Day
from lead_recovery.markers import Marker
from lead_recovery.store import Entry, S3Store, StoreError, TooLarge

log = logging.getLogger(__name__)

NAME = ".index.json.gz"
FORMAT = "lead-recovery marker index 1"
MAX_AGE_S = 24 * 3600  # a full listing at least daily catches what other tools changed
LIMIT = 256 * 1024**2  # far above 10,000 markers (~0.5 MB); larger is not an index of ours
TRIES = 30


def index_path(marker_dir: str) -> str:
    """The index's store path: in the marker folder, under a name no marker has."""
    return f"{marker_dir}/{NAME}"


@dataclass
class Index:
    """The index as read: ``etag`` is the object's own (``None``: not on the store)."""

    seq: int = 0
    listed_at: float | None = None  # when the last full listing began (None: never)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    etag: str | None = None

    def note(self, name: str, state: dict[str, Any] | None) -> bool:
        """Record ``state`` (``None``: deleted) for ``name``; ``False`` if already so."""
        held = self.entries.get(name)
        if state is None and (held is None or held.get("gone")):
            return False
        if state is not None and held is not None and _same(held, state):
            return False
        self.seq += 1
        self.entries[name] = {**state, "seq": self.seq} if state else {"seq": self.seq, "gone": 1}
        return True


def _same(held: dict[str, Any], state: dict[str, Any]) -> bool:
    return all(held.get(key) == value for key, value in state.items())


class Unreadable(Exception):
    """Not an index this code wrote (a foreign, truncated or newer-format object)."""


def _encode(index: Index) -> bytes:
    record = {
        "format": FORMAT,
        "seq": index.seq,
        "listed_at": index.listed_at,
        "entries": index.entries,
    }
    return gzip.compress(json.dumps(record, separators=(",", ":")).encode(), compresslevel=5)


def _decode(data: bytes, etag: str) -> Index:
    try:
        record = json.loads(gzip.decompress(data))
    except (OSError, EOFError, ValueError, RecursionError) as err:
        raise Unreadable(f"not gzipped JSON ({type(err).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise Unreadable(f"not '{FORMAT}'")
    seq, listed_at, entries = record.get("seq"), record.get("listed_at"), record.get("entries")
    if not isinstance(seq, int) or not isinstance(entries, dict):
        raise Unreadable("no sequence number or entries")
    if listed_at is not None and not isinstance(listed_at, (int, float)):
        raise Unreadable("listed_at is not a time")
    return Index(seq, listed_at, entries, etag)


def read(store: S3Store, marker_dir: str) -> Index | None:
    """The index on the store, ``None`` if there is none; :class:`Unreadable` if broken."""
    try:
        got = store.get(index_path(marker_dir), LIMIT)
    except TooLarge:
        raise Unreadable(f"more than {LIMIT} bytes") from None
    return None if got is None else _decode(got.data, got.etag)


def _text(data: bytes) -> str:
    # bytes that are not UTF-8 survive the JSON round trip (they are a corrupt marker)
    return data.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _state(store: S3Store, marker_dir: str, results_dir: str, name: str) -> dict[str, Any] | None:
    """What the store holds now for the marker ``name``: ``None`` if it is absent."""
    path = f"{marker_dir}/{name}"
    info = store.stat(path)
    got = store.get(path, markers.MAX_BYTES) if info is not None else None
    if info is None or got is None:
        return None
    return _entry(info, got.data, _extract_present(store, name, got.data))


def _extract_present(
    store: S3Store, name: str, data: bytes, listed: frozenset[str] | None = None
) -> bool:
    """Whether the extract the marker ``name`` (its bytes ``data``) names is in the store;
    ``listed``: a listing of the recipe's folder that answers without a request."""
    recipe, day = markers.parse_marker_name(name) or ("?", "?")
    marker = markers.parse_marker(Path(name), data)
    extract = Day(store, recipe, day).extract_of(marker)
    if listed is not None:
        return extract[len(recipe) + 1 :] in listed
    return store.stat(extract) is not None


def _entry(info: Entry, data: bytes, cache: bool) -> dict[str, Any]:
    """A marker's entry: what S3 says of it, its bytes (unless too large to keep: read
    when listed) and whether the day's extract is there."""
    return {
        "etag": info.etag,
        "size": info.size,
        "mtime": info.mtime,
        "body": _text(data) if len(data) <= markers.KEEP_BYTES else None,
        "cache": cache,
    }


def _rewrite(store: S3Store, marker_dir: str, change: Callable[[Index], bool]) -> bool:
    """Apply ``change`` to the index on the store and write it back if it changed
    anything, unless another writer replaced it meanwhile (then again, from what
    that writer wrote). ``True`` when done or when there is no index to keep
    (none, or unreadable: then it is removed and the next listing rebuilds it);
    ``False`` if it never won."""
    path = index_path(marker_dir)
    for attempt in range(TRIES):
        try:
            index = read(store, marker_dir)
        except Unreadable:
            store.delete(path)
            return True
        if index is None:
            return True  # no index: the next listing lists the store and builds it
        if not change(index):
            return True
        if store.put_if(path, _encode(index), index.etag):
            return True
        time.sleep(random.uniform(0.01, 0.05 * min(attempt + 1, 10)))
    return False


def _invalidate(store: S3Store, marker_dir: str, why: str) -> None:
    log.warning(
        "the marker index %s was not updated (%s); the next `markers list` lists the store",
        store.location(index_path(marker_dir)),
        why,
    )
    try:
        store.delete(index_path(marker_dir))
    except (StoreError, OSError) as err:  # the index may now be stale; say so
        log.warning("and it could not be removed either (%s)", err)


def note(store: S3Store, marker_dir: str, results_dir: str, names: Iterable[str]) -> None:
    """Record in the index what the store holds now for these markers (read after the
    index, each time it is tried). Never raises: a note that cannot be made removes
    the index instead."""
    wanted = sorted(set(names))
    if not wanted:
        return

    def change(index: Index) -> bool:
        states = [_state(store, marker_dir, results_dir, name) for name in wanted]
        return any([index.note(name, state) for name, state in zip(wanted, states, strict=True)])

    _apply(store, marker_dir, change)


def forget(store: S3Store, marker_dir: str, names: Iterable[str]) -> None:
    """Record in the index that these markers were deleted (by this process, just now)."""
    gone = sorted(set(names))
    if gone:
        _apply(store, marker_dir, lambda index: any([index.note(name, None) for name in gone]))


def _apply(store: S3Store, marker_dir: str, change: Callable[[Index], bool]) -> None:
    try:
        if not _rewrite(store, marker_dir, change):
            _invalidate(store, marker_dir, f"other writers won {TRIES} times")
    except Exception as err:  # noqa: BLE001 - the index must never fail a run or a command
        _invalidate(store, marker_dir, f"{type(err).__name__}: {err}")


@dataclass
class Listed:
    """What ``markers list`` shows on S3, and where it came from."""

    markers: list[Marker]
    cache: dict[tuple[str, str], bool]  # (recipe, run date) -> whether the extract is there
    source: str  # said under the table


def listing(
    store: S3Store,
    marker_dir: str,
    results_dir: str,
    recipe: str | None,
    cache_file: str | Path | None,
    *,
    refresh: bool = False,
    now: float | None = None,
) -> Listed:
    """The markers on S3 from the index if it is there and recent; else (or with
    ``refresh``) from a full listing of the store, which then rebuilds the index."""
    now = time.time() if now is None else now
    problem = None
    index = None
    if not refresh:
        try:
            index = read(store, marker_dir)
        except Unreadable as err:
            problem = f"the marker index was unreadable ({err}); listed the store and rebuilt it"
    if (
        index is not None
        and index.listed_at is not None
        and abs(now - index.listed_at) <= MAX_AGE_S  # abs: another host's clock may lead
    ):
        found = from_index(store, marker_dir, index, recipe)
        age = _age(max(0.0, now - index.listed_at))
        source = f"from the marker index (store listed in full {age} ago; --refresh lists it now)"
        return Listed(*found, source)
    rebuilt = rebuild(store, marker_dir, results_dir, cache_file, now=now)
    found = from_index(store, marker_dir, rebuilt, recipe)
    return Listed(*found, problem or "listed the store in full; the marker index is rebuilt")


def from_index(
    store: S3Store, marker_dir: str, index: Index, recipe: str | None
) -> tuple[list[Marker], dict[tuple[str, str], bool]]:
    found, cache = [], {}
    for name, entry in index.entries.items():
        parsed = markers.parse_marker_name(name)
        if entry.get("gone") or parsed is None or (recipe is not None and parsed[0] != recipe):
            continue
        body = entry.get("body")
        if isinstance(body, str):
            data: bytes | None = _bytes(body)
        else:
            got = store.get(f"{marker_dir}/{name}", markers.MAX_BYTES)
            data = got.data if got is not None else None
        if data is None:
            continue
        found.append(markers.parse_marker(Path(f"{marker_dir}/{name}"), data))
        cache[parsed] = bool(entry.get("cache"))
    return sorted(found, key=lambda m: (m.recipe, m.run_date)), cache


def rebuild(
    store: S3Store,
    marker_dir: str,
    results_dir: str,
    cache_file: str | Path | None,
    *,
    now: float | None = None,
) -> Index:
    """List the store in full and write the index from it, keeping any note made
    meanwhile. Returns what it wrote (or would have: an index another process
    removed meanwhile is left absent, and this listing is still returned)."""
    path = index_path(marker_dir)
    try:
        start = read(store, marker_dir)
    except Unreadable:
        start = None
        store.delete(path)
    if start is None:  # writers note only into an index that exists: make one first
        store.put_if(path, _encode(Index()), None)
        try:
            start = read(store, marker_dir) or Index()
        except Unreadable:
            start = Index()
    began = time.time() if now is None else now
    stored = markers.read_folder(store, None, cache_file)
    extracts: dict[str, frozenset[str]] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, (info, data, _problem) in stored.items():
        if data is None:
            continue
        recipe, day = markers.parse_marker_name(name) or ("?", "?")
        if recipe not in extracts:  # one listing per recipe, not a HEAD per marker
            extracts[recipe] = frozenset(store.listing(recipe))
        entries[name] = {
            **_entry(info, data, _extract_present(store, name, data, extracts[recipe])),
            "seq": 0,
        }
    built = Index(start.seq, began, entries)

    def merge(index: Index) -> bool:
        noted = {n: e for n, e in index.entries.items() if e.get("seq", 0) > start.seq}
        index.entries = {**entries, **noted}
        index.listed_at = began
        built.seq, built.entries = index.seq, index.entries
        return True

    try:
        if not _rewrite(store, marker_dir, merge):
            log.warning("the marker index was not rebuilt: other writers won %d times", TRIES)
    except StoreError as err:  # reading worked; the store refuses writes to this user
        log.warning("the marker index was not rebuilt (%s)", err)
    return built


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"
