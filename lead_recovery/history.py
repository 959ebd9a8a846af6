"""What every run decided for every recipe-day, kept beside the markers.

The markers say what the warehouse holds today; the history says what the
markers saved over time ("how much Redshift time did they spare this
month?"). Each run writes its events once, at its end, as one JSON line per
recipe-day into a file of its own under ``<marker_dir>/.history/<YYYYMM>/``.
A file per run, created exclusively and renamed into place whole, is what
makes concurrent runs safe on any store: nothing is ever appended to, so no
line is lost or torn on NFS, and the same holds for an object store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lead_recovery import atomic

FOLDER = ".history"
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


def folder(marker_dir: str | Path) -> Path:
    return Path(marker_dir) / FOLDER


def write(marker_dir: str | Path, events: Iterable[Event], run_id: str | None) -> Path | None:
    """Record a run's events in a file of their own; ``None`` if there were none."""
    events = list(events)
    if not events:
        return None
    lines = [json.dumps(asdict(e), sort_keys=True) for e in events]
    now = datetime.fromisoformat(events[0].at).astimezone(UTC)
    target = (
        folder(marker_dir)
        / now.strftime("%Y%m")
        / (f"{now:%Y%m%dT%H%M%S}-{run_id or 'norun'}-{os.getpid()}.jsonl")
    )
    atomic.write_bytes(target, ("\n".join(lines) + "\n").encode())
    return target


def _parse(line: str) -> Event | None:
    try:
        record: dict[str, Any] = json.loads(line)
        event = Event(**record)
    except (ValueError, TypeError, RecursionError):
        return None  # a hand-edited or foreign line: skipped, never fatal
    return event if event.decision in DECISIONS else None


def read(marker_dir: str | Path, since: datetime) -> Iterator[Event]:
    """Every event at or after ``since`` (files of older months are not opened)."""
    base = folder(marker_dir)
    if not base.is_dir():
        return
    month = since.astimezone(UTC).strftime("%Y%m")
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name >= month):
        for path in sorted(sub.glob("*.jsonl")):
            if not path.is_file() or path.is_symlink():
                continue
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    event = _parse(line)
                    if event is not None and datetime.fromisoformat(event.at) >= since:
                        yield event


@dataclass
class Totals:
    """What ``lead-recovery report`` shows for one recipe (or all of them)."""

    queries: int = 0
    avoided: int = 0
    skipped: int = 0
    failures: int = 0
    suspect: int = 0  # extracts that failed their recipe's expect: checks (not marked)
    watermark_checks: int = 0  # cheap source checks that spared a query
    seconds_spent: float = 0.0
    seconds_avoided: float = 0.0
    rows: int = 0

    def add(self, event: Event) -> None:
        seconds = float(event.seconds or 0.0)
        if event.decision == "queried":
            self.queries += 1
            self.seconds_spent += seconds
            self.rows += int(event.rows or 0)
        elif event.decision == "cached":
            self.avoided += 1
            self.seconds_avoided += seconds
            self.watermark_checks += int(event.watermark_check)
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
