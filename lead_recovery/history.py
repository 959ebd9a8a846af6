"""What every run decided for every recipe-day, kept beside the markers.

The markers say what the warehouse holds today; the history says what the
markers saved over time ("how much Redshift time did they spare this
month?"). Each run writes its events once, at its end, as one JSON line per
recipe-day into an object of its own in the store, under
``markers/.history/<YYYYMM>/``, so every checkout sharing a store shares its
history. An object per run, created whole and never replaced, is what makes
concurrent runs safe on any store: nothing is ever appended to, so no line is
lost or torn on NFS, and the same holds on S3.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lead_recovery import layout, rundate

FOLDER = layout.HISTORY
LIMIT = 64 * 1024**2  # one run's file: a line per recipe-day, far below this
DECISIONS = ("queried", "cached", "skipped", "failed", "suspect")


@dataclass(frozen=True)
class Event:
    """One recipe-day's outcome in one run.

    ``seconds`` is the warehouse time: spent by a query, or, for ``cached``,
    the duration recorded in the marker that was reused (what it spared).
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


def _parse(line: str) -> Event | None:
    try:
        record: dict[str, Any] = json.loads(line)
        event = Event(**record)
    except (ValueError, TypeError, RecursionError):
        return None  # a hand-edited or foreign line: skipped, never fatal
    return event if event.decision in DECISIONS else None


def files(store: Any, since: datetime) -> list[str]:
    """The run files (store paths) that may hold events at or after ``since``, oldest
    first. Only the months from ``since`` on are listed."""
    month = since.astimezone(UTC).strftime("%Y%m")
    found = []
    for sub in sorted(n for n in store.names(FOLDER) if n.isdigit() and n >= month):
        found += sorted(
            f"{FOLDER}/{sub}/{name}"
            for name in store.entries(f"{FOLDER}/{sub}")
            if name.endswith(".jsonl")
        )
    return found


def read(store: Any, since: datetime) -> Iterator[Event]:
    """Every event at or after ``since`` (files of older months are not opened)."""
    for path in files(store, since):
        got = store.get(path, LIMIT)
        if got is None:
            continue
        for line in got.data.decode("utf-8", errors="replace").splitlines():
            event = _parse(line)
            if event is not None and datetime.fromisoformat(event.at) >= since:
                yield event


def of_run(store: Any, run_id: str) -> list[Event]:
    """Every event one run recorded (its files are named with its run id)."""
    found: list[Event] = []
    for sub in sorted(n for n in store.names(FOLDER) if n.isdigit()):
        for name in sorted(store.entries(f"{FOLDER}/{sub}")):
            if f"-{run_id}-" not in name or not name.endswith(".jsonl"):
                continue
            got = store.get(f"{FOLDER}/{sub}/{name}", LIMIT)
            lines = got.data.decode("utf-8", errors="replace").splitlines() if got else []
            found += [e for e in map(_parse, lines) if e is not None and e.run_id == run_id]
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
    failures: int = 0
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
