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

Whoever can write the prefix can replace the index, so it is read as untrusted
input (:func:`_decode`): at most :data:`LIMIT` bytes downloaded and
:data:`MAX_INFLATED` inflated (a gzip bomb stops there), its JSON values counted
before they are parsed, every entry's fields checked, and every name a marker's
name and nothing more (``markers list`` reads ``<marker_dir>/<name>``: a ``/`` or
``..`` could reach any key in the bucket). An index that fails any of this is
not used: ``markers list`` says so in one line, lists the store and rebuilds it.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import random
import time
import zlib
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
TRIES = 30
# The index lies on shared ground: whoever can write the prefix can replace it, so it is
# read as untrusted input, within bounds. 10,000 markers make about 0.1 MB gzipped, 6 MB
# inflated and 180,000 JSON values; these bounds leave room for five times as many.
LIMIT = 16 * 1024**2  # bytes downloaded
MAX_INFLATED = 32 * 1024**2  # bytes once inflated: a gzip bomb stops here
MAX_VALUES = 1_000_000  # JSON values (commas and brackets): what parsing it may allocate
MAX_UNKEPT = 100  # entries without the marker's bytes, each a GET when listed


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


def _inflate(data: bytes) -> bytes:
    """The gzip member's bytes, at most :data:`MAX_INFLATED` of them, inflated a piece
    at a time: a small object that inflates to gigabytes costs 32 MB, once."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    pieces, size, left = [], 0, data
    try:
        while not inflater.eof:
            piece = inflater.decompress(left, _PIECE)
            left = inflater.unconsumed_tail
            if not piece and not left:
                break  # nothing more to read, nor to write: the stream stops short
            size += len(piece)
            if size > MAX_INFLATED:
                raise Unreadable(f"inflates to more than {MAX_INFLATED} bytes")
            pieces.append(piece)
    except zlib.error:
        raise Unreadable("not gzip") from None
    if not inflater.eof:
        raise Unreadable("truncated")
    if inflater.unused_data:
        raise Unreadable("bytes after the gzip member")
    return b"".join(pieces)


_PIECE = 1024**2


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")  # Python's JSON reads NaN, JSON has none


def _decode(data: bytes, etag: str) -> Index:
    """An index read from the store, every part of it checked (:func:`_check`)."""
    inflated = _inflate(data)
    values = inflated.count(b",") + inflated.count(b"[") + inflated.count(b"{")
    if values > MAX_VALUES:  # counted before parsing: what the parse would allocate
        raise Unreadable(f"more than {MAX_VALUES} JSON values")
    try:
        record = json.loads(inflated, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise Unreadable(f"not JSON ({type(err).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise Unreadable(f"not '{FORMAT}'")
    seq, listed_at, entries = record.get("seq"), record.get("listed_at"), record.get("entries")
    if not _count(seq) or not isinstance(entries, dict):
        raise Unreadable("no sequence number or entries")
    if listed_at is not None and not _number(listed_at):
        raise Unreadable("listed_at is not a time")
    unkept = 0
    for name, entry in entries.items():
        problem = _check(name, entry, seq)
        if problem is not None:
            raise Unreadable(f"entry {_quoted(name)}: {problem}")
        unkept += not entry.get("gone") and entry["body"] is None
    if unkept > MAX_UNKEPT:
        raise Unreadable(f"{unkept} entries without their marker's bytes")
    return Index(seq, listed_at, entries, etag)


def valid_name(name: object) -> bool:
    """Whether ``name`` may stand in the index: a marker's name, and only a name. The
    listing reads ``<marker_dir>/<name>``, and the store's keys are normalised, so a
    ``/`` or ``..`` in it could reach any key in the bucket."""
    return (
        isinstance(name, str)
        and len(name) <= 1024
        and name.isprintable()
        and not any(part in name for part in ("/", "\\", ".."))
        and markers.parse_marker_name(name) is not None
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, entry: object, seq: int) -> str | None:
    """Why an entry is not one this module writes (:meth:`Index.note`, :func:`_entry`),
    or ``None``. Each field is checked for what the listing and the writers do with it."""
    if not valid_name(name):
        return "not a marker's name"
    if not isinstance(entry, dict):
        return "not an object"
    if not _count(entry.get("seq")) or entry["seq"] > seq:
        return "no sequence number up to the index's"
    if "gone" in entry:
        return None if entry["gone"] == 1 and set(entry) == {"seq", "gone"} else "bad 'gone'"
    etag, size, mtime = entry.get("etag"), entry.get("size"), entry.get("mtime")
    if not isinstance(etag, str) or len(etag) > 1024:
        return "etag is not text"
    if not _count(size):
        return "size is not a byte count"
    if not _number(mtime):
        return "mtime is not a time"
    body = entry.get("body", False)
    if body is not None and not (isinstance(body, str) and len(body) <= markers.KEEP_BYTES):
        return "body is not a marker's text"
    if not isinstance(entry.get("cache"), bool):
        return "cache is not true or false"
    return None


def _quoted(name: object) -> str:
    """A name from the index as a warning shows it: short, on one line."""
    text = name if isinstance(name, str) else repr(name)
    return json.dumps(text[:60] + ("..." if len(text) > 60 else ""))


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
    ``refresh``) from a full listing of the store, which then rebuilds the index.
    An index that is not one this module wrote (:func:`_decode`) is never used: the
    store is listed instead, with one warning line, and the index rebuilt."""
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
    removed meanwhile is left absent, and this listing is still returned). A
    marker whose name no reader accepts (:func:`valid_name`: ``..`` in it, say; no
    recipe has one) is left out, so the index it writes is one it can read."""
    path = index_path(marker_dir)
    try:
        start = read(store, marker_dir)
    except Unreadable as err:
        log.warning(
            "the marker index %s is unreadable (%s); listed the store instead and rebuilt it",
            store.location(path),
            err,
        )
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
        if data is None or not valid_name(name):  # a name no reader would accept (_decode)
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
