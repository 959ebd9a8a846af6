"""What every run decided for every recipe-day, kept beside the markers.

The markers say what the warehouse holds today; the history says what the
markers saved over time ("how much Redshift time did they spare this
month?"). Each run writes its events once, at its end, as one JSON line per
recipe-day into an object of its own in the store, under
``markers/.history/<YYYYMM>/``, so every checkout sharing a store shares its
history. An object per run, created whole and never replaced, is what makes
concurrent runs safe on any store: nothing is ever appended to, so no line is
lost or torn on NFS, and the same holds on S3. The history lies on shared
ground: every line read from it is checked (:func:`parse_line`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from lead_recovery import layout, rundate
from lead_recovery.store import StoreError, TooLarge

FOLDER = layout.HISTORY
DECISIONS = ("queried", "cached", "skipped", "failed", "suspect")


@dataclass(frozen=True)
class Event:
    """One recipe-day's outcome in one run.

    ``seconds`` is the warehouse time: spent by a query, or, for ``cached``,
    the duration recorded in the marker that was reused (what it spared).
    ``analysis_failed``: the day's analysis failed after its extract step, whose
    ``decision`` stands (a query that ran was paid for); added later, so older
    lines have none.
    """

    at: str
    recipe: str
    run_date: str
    decision: str
    reason: str
    rows: int | None
    seconds: float | None
    warehouse: str | None
    user_at_host: str
    run_id: str | None
    watermark_check: bool = False  # counted apart: a query ran, if a cheap one
    analysis_failed: str | None = None  # the cause; counted in FAILED too


def write(store: Any, events: Iterable[Event], run_id: str | None) -> str | None:
    """Record a run's events in an object of their own; its store path (``None``: none)."""
    events = list(events)
    if not events:
        return None
    lines = [json.dumps(asdict(e), sort_keys=True) for e in events]
    now = datetime.fromisoformat(events[0].at).astimezone(UTC)
    path = f"{FOLDER}/{now:%Y%m}/{now:%Y%m%dT%H%M%S}-{run_id or 'norun'}-{os.getpid()}.jsonl"
    if store.put_if(path, ("\n".join(lines) + "\n").encode(), None) is None:
        raise OSError(f"{store.location(path)} exists already")
    return path


# What a run writes is small: one line of a few hundred bytes per recipe-day.
# Anything far larger was not written by a run, and is not read whole.
MAX_LINE = 64 * 1024  # bytes; a longer line is skipped unread
MAX_FILE = 64 * 1024**2  # bytes; about 150,000 recipe-days, more than any run records
MAX_TEXT = 1024  # characters of a name (recipe, run id, user@host, warehouse)
MAX_SECONDS = 30 * 24 * 3600.0  # no query runs for a month: a larger figure is not a time
MAX_ROWS = 2**63 - 1
_RUN_DATE_RE = re.compile(r"^\d{8}$")
_MONTH_RE = re.compile(r"^\d{6}$")
_OPTIONAL = ("watermark_check", "analysis_failed")  # newer fields: older lines lack them
_FIELDS = tuple(f.name for f in fields(Event) if f.name not in _OPTIONAL)

log = logging.getLogger(__name__)


def _name(record: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    """A short one-line text (recipe, run id, user@host, warehouse): it is printed in
    tables and the account, so no control character and no newline."""
    value = record[key]
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ValueError(f'"{key}" is not a short text')
    if not value.isprintable():
        raise ValueError(f'"{key}" has control characters')
    return value


def _time(value: object) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError('"at" is not a time')
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError('"at" is not a time') from None
    if at.utcoffset() is None:
        raise ValueError('"at" has no UTC offset')
    return value


def _run_date(value: object) -> str:
    if not isinstance(value, str) or not _RUN_DATE_RE.match(value):
        raise ValueError('"run_date" is not YYYYMMDD')
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise ValueError('"run_date" is not a date') from None
    return value


def _rows(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ROWS:
        raise ValueError('"rows" is not a count')
    return value


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError('"seconds" is not a number')
    if not 0 <= value <= MAX_SECONDS:  # NaN fails both comparisons
        raise ValueError('"seconds" is not a warehouse time')
    return float(value)


def _reason(value: object, key: str = "reason") -> str:
    """Free text (a failure's cause): kept, but on one line wherever it is shown."""
    if not isinstance(value, str):
        raise ValueError(f'"{key}" is not text')
    return value if value.isprintable() else "".join(c if c.isprintable() else " " for c in value)


def parse_line(line: str) -> Event | str:
    """The event a history line records, or why it is not one (shown in the warning).

    The history lies on shared ground: any process that can write the folder
    can leave a line there. Every field is checked for what the report does with
    it (compares times, adds seconds and rows, parses the run date, prints the
    names), so a foreign line is skipped here instead of failing the report
    later. Unknown keys are ignored: a newer writer may add fields.
    """
    try:
        record = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = [key for key in _FIELDS if key not in record]
    if missing:
        return f'no "{missing[0]}"'
    decision = record["decision"]
    if not isinstance(decision, str) or decision not in DECISIONS:
        return '"decision" is not one of ' + ", ".join(DECISIONS)
    watermark_check = record.get("watermark_check", False)
    if not isinstance(watermark_check, bool):
        return '"watermark_check" is not true or false'
    try:
        return Event(
            at=_time(record["at"]),
            recipe=_name(record, "recipe"),
            run_date=_run_date(record["run_date"]),
            decision=decision,
            reason=_reason(record["reason"]),
            rows=_rows(record["rows"]),
            seconds=_seconds(record["seconds"]),
            warehouse=_name(record, "warehouse", optional=True),
            user_at_host=_name(record, "user_at_host"),
            run_id=_name(record, "run_id", optional=True),
            watermark_check=watermark_check,
            analysis_failed=None
            if record.get("analysis_failed") is None
            else _reason(record["analysis_failed"], "analysis_failed"),
        )
    except ValueError as err:
        return str(err)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")  # JSON has no NaN or Infinity


def files(store: Any, since: datetime) -> list[str]:
    """The run files (store paths) that may hold events at or after ``since``, oldest
    first. Only the months from ``since`` on are listed, only month folders named so."""
    month = since.astimezone(UTC).strftime("%Y%m")
    found = []
    for sub in sorted(n for n in store.names(FOLDER) if _MONTH_RE.match(n) and n >= month):
        found += sorted(
            f"{FOLDER}/{sub}/{name}"
            for name in store.entries(f"{FOLDER}/{sub}")
            if name.endswith(".jsonl")
        )
    return found


@dataclass
class Skipped:
    """What a reading of the history could not use, for one warning line."""

    lines: int = 0
    files: list[str] = field(default_factory=list)
    first: str | None = None  # where, and why, the first one was skipped

    def add(self, path: str, count: int, why: str) -> None:
        self.lines += count
        shown = _shown(path)
        if shown not in self.files:
            self.files.append(shown)
        if self.first is None:
            self.first = why

    def warning(self) -> str | None:
        """One line, or ``None`` if nothing was skipped."""
        if not self.lines:
            return None
        what = f"skipped {self.lines} unreadable history line{'s' if self.lines != 1 else ''}"
        where = self.files[0] if len(self.files) == 1 else f"{len(self.files)} files"
        return f"{what} in {where} ({self.first})"


def _shown(where: str) -> str:
    """A store location as the user would type it: a path relative to the current
    directory if inside it."""
    if "://" in where:
        return where
    try:
        relative = os.path.relpath(where)
    except ValueError:
        return where
    return where if relative.startswith("..") else relative


def _lines(store: Any, path: str, skipped: Skipped) -> Iterator[tuple[int, str]]:
    """The lines of one run file, numbered from 1, each at most :data:`MAX_LINE` bytes.

    Read through the store, never following a link or blocking on a pipe; a file
    larger than a run ever writes is skipped unread, so a planted file costs
    neither memory nor time.
    """
    where = store.location(path)
    try:
        got = store.get(path, MAX_FILE)
    except TooLarge:
        skipped.add(where, 1, f"{where}: more than {MAX_FILE} bytes, more than a run writes")
        return
    except (StoreError, OSError) as err:
        skipped.add(where, 1, f"{where}: {err}")
        return
    if got is None or not got.regular:
        return
    for number, raw in enumerate(got.data.split(b"\n"), start=1):
        if len(raw) > MAX_LINE:
            skipped.add(where, 1, f"line {number}: longer than {MAX_LINE} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.add(where, 1, f"line {number}: not UTF-8")
            continue
        if text.strip():
            yield number, text


def read(store: Any, since: datetime, skipped: Skipped | None = None) -> Iterator[Event]:
    """Every event at or after ``since`` (files of older months are not opened).

    Lines that are not events are skipped and counted in ``skipped``; when the
    reading ends, one warning line says how many, where, and the first reason.
    """
    skipped = Skipped() if skipped is None else skipped
    for path in files(store, since):
        for number, line in _lines(store, path, skipped):
            event = parse_line(line)
            if isinstance(event, str):
                skipped.add(store.location(path), 1, f"line {number}: {event}")
            elif datetime.fromisoformat(event.at) >= since:
                yield event
    message = skipped.warning()
    if message:
        log.warning("%s", message)


def of_run(store: Any, run_id: str) -> list[Event]:
    """Every event one run recorded (its files are named with its run id)."""
    found: list[Event] = []
    skipped = Skipped()
    for sub in sorted(n for n in store.names(FOLDER) if _MONTH_RE.match(n)):
        for name in sorted(store.entries(f"{FOLDER}/{sub}")):
            if f"-{run_id}-" in name and name.endswith(".jsonl"):
                for _, line in _lines(store, f"{FOLDER}/{sub}/{name}", skipped):
                    event = parse_line(line)
                    if not isinstance(event, str) and event.run_id == run_id:
                        found.append(event)
    return found


def since_instant(text: str, now: datetime, what: str = "--since") -> datetime:
    """A period's start: a duration back from now (``30d``, ``12h``) or a date (YYYYMMDD,
    its midnight in ``now``'s zone). One grammar for ``lead-recovery report --since``
    and the report's figures (``report_since``)."""
    if text.isdigit() and len(text) == 8:
        day = rundate.to_date(rundate.parse_date(text))
        return datetime.combine(day, datetime.min.time(), now.tzinfo)
    return now - rundate.parse_duration(text, what)


@dataclass
class Totals:
    """What ``lead-recovery report`` shows for one recipe (or all of them)."""

    queries: int = 0
    avoided: int = 0
    skipped: int = 0
    failures: int = 0  # days whose step failed, or whose analysis failed after it
    suspect: int = 0  # extracts that failed their recipe's expect: checks (not marked)
    watermark_checks: int = 0  # cheap source checks run: spared a query, or found a change
    seconds_spent: float = 0.0
    seconds_avoided: float = 0.0
    rows: int = 0

    def add(self, event: Event) -> None:
        seconds = float(event.seconds or 0.0)
        # a watermark query that ran as a check: the source unchanged (cached) or changed (queried)
        self.watermark_checks += int(event.watermark_check)
        if event.decision == "queried":
            self.queries += 1
            self.seconds_spent += seconds
            self.rows += int(event.rows or 0)
        elif event.decision == "cached":
            self.avoided += 1
            self.seconds_avoided += seconds
        elif event.decision == "skipped":
            self.skipped += 1
        elif event.decision == "suspect":
            self.suspect += 1
        else:
            self.failures += 1
        if event.analysis_failed is not None and event.decision != "failed":
            self.failures += 1  # its query (if any) is counted above: it was paid for

    def as_json(self) -> dict[str, int | float]:
        """The totals as ``report --json`` gives them: counts as integers, seconds to the
        millisecond. Sums of float seconds carry binary noise (0.23099999999999998)
        that is no part of what was measured."""
        record: dict[str, int | float] = asdict(self)
        record["seconds_spent"] = round(self.seconds_spent, 3)
        record["seconds_avoided"] = round(self.seconds_avoided, 3)
        return record


def summarize(events: Iterable[Event]) -> tuple[dict[str, Totals], Totals]:
    per_recipe: dict[str, Totals] = {}
    total = Totals()
    for event in events:
        per_recipe.setdefault(event.recipe, Totals()).add(event)
        total.add(event)
    return dict(sorted(per_recipe.items())), total


HEADERS = (
    "RECIPE",
    "QUERIES",
    "AVOIDED",
    "WATERMARK CHECKS",
    "WAREHOUSE TIME",
    "TIME AVOIDED",
    "ROWS",
    "SKIPPED",
    "SUSPECT",
    "FAILED",
)


def seconds_text(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else str(timedelta(seconds=round(value)))


def table_rows(per_recipe: dict[str, Totals], total: Totals) -> list[list[Any]]:
    """The report's table under :data:`HEADERS`: one row per recipe, then TOTAL.

    One home for it: ``lead-recovery report`` prints it, the report page shows it.
    """
    return [
        [
            name,
            t.queries,
            t.avoided,
            t.watermark_checks,
            seconds_text(t.seconds_spent),
            seconds_text(t.seconds_avoided),
            t.rows,
            t.skipped,
            t.suspect,
            t.failures,
        ]
        for name, t in [*per_recipe.items(), ("TOTAL", total)]
    ]
