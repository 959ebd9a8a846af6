"""The end-of-run account: what one invocation did for each recipe and date.

Printed last by every run (``snakemake``, ``make run``, ``lead-recovery run``,
cron), after Snakemake's own output, so the answer to "did we hit Redshift,
and did anything fail?" is the last thing on the screen and in the cron log::

    manual_leads 20261127 skipped (recipes/manual_leads/leads.csv)
    simulation_to_handoff 20261127 queried (7452 rows, 0.41 s)
    total: 2 recipe-days: 1 queried, 0 cached, 1 skipped, 0 failed; 0 queries avoided

A day keeps what its extract step did (a query that ran was paid for) when its
analysis fails after it: ``queried (139 rows, 0.20 s); analysis failed: ...``,
and the total says how many analyses failed.

It is built from what the jobs recorded beside their logs (jobs.py) and from
the markers, never from Snakemake's private metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

from lead_recovery import history, jobs, layout, rundate

STATES = ("queried", "cached", "skipped", "failed")


@dataclass(frozen=True)
class Line:
    recipe: str
    day: str
    state: str  # one of STATES
    detail: str
    rows: int | None = None
    seconds: float | None = None  # warehouse time: spent (queried) or spared (cached)
    warehouse: str | None = None
    # a cheap watermark query decided the day: cached (unchanged) or queried (changed)
    watermark_check: bool = False
    # the day's analysis failed after its extract step (the state stays): the cause
    analysis_failed: str | None = None

    @property
    def failed(self) -> bool:
        """The day failed: its own step, or its analysis."""
        return self.state == "failed" or self.analysis_failed is not None

    def __str__(self) -> str:
        if self.state == "failed":
            return f"{self.recipe} {self.day} failed: {self.detail}"
        text = f"{self.recipe} {self.day} {self.state} ({self.detail})"
        if self.analysis_failed is not None:
            text += f"; analysis failed: {self.analysis_failed}"
        return text


def failure(outcome: dict | None, log_file: str) -> str | None:
    """The one-line cause if this run's job failed or died, else ``None``."""
    if outcome is None:
        return None
    if outcome.get("status") == "failed":
        return str(outcome.get("error") or f"see {log_file}")
    if outcome.get("status") == "running":
        return f"the job was killed or crashed (see {log_file})"
    return None


def _seconds(value: object) -> str:
    return f"{float(value):.2f} s" if isinstance(value, int | float) else "? s"


def _empty(rows: int | None) -> str:
    """What a line adds when the day's extract has no row: an empty result says so."""
    return "; empty result" if rows == 0 else ""


def extract_line(
    recipe: str,
    day: str,
    *,
    outcome: dict | None,
    decided: Any,
    found: Any,
    kept: bool,
    log_file: str,
) -> Line:
    """A Redshift recipe's day: queried, cached, or failed.

    ``outcome``: what this run's extract job recorded (``None``: it did not run);
    ``decided``: the run plan's decision for the day (plan.DayPlan); ``found``:
    the day's pair as the decision read it; ``kept``: a failed job's day still
    has its pair (this checkout's copies were put back from the store).
    """
    failed = failure(outcome, log_file)
    if failed is not None:
        if kept:
            failed += "; the previous extract and marker were kept"
        return Line(recipe, day, "failed", failed)
    if outcome is not None and outcome.get("status") == "ok" and outcome.get("queried_at"):
        known = facts(outcome)
        if outcome.get("outcome") == "queried":
            detail = f"{outcome.get('rows')} rows, {_seconds(outcome.get('duration_s'))}"
            detail += _empty(known["rows"])
            checked = bool(outcome.get("watermark_checked"))
            if checked:
                detail += "; source changed (watermark checked)"
            if outcome.get("spent"):
                detail += f"; {outcome['spent']}"
            return Line(recipe, day, "queried", detail, **known, watermark_check=checked)
        confirmed = outcome.get("outcome") == "confirmed"
        detail = f"queried at {outcome['queried_at']}" + _empty(known["rows"])
        if confirmed:
            detail += "; source unchanged (watermark checked)"
        return Line(recipe, day, "cached", detail, **known, watermark_check=confirmed)
    if decided is not None and not decided.decision.counts:
        return Line(recipe, day, "failed", "not run: the run stopped before this query")
    marker = getattr(found, "marker", None)
    if marker is None or marker.queried_at is None:
        return Line(recipe, day, "failed", "no complete extract and marker")
    known = facts(marker.record)
    detail = f"queried at {marker.queried_at.isoformat()}" + _empty(known["rows"])
    return Line(recipe, day, "cached", detail, **known)


def facts(record: dict) -> dict:
    """Rows, warehouse seconds and warehouse of a marker (or a job's copy of one)."""
    rows, seconds = record.get("rows"), record.get("duration_s")
    return {
        "rows": rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        "seconds": float(seconds) if isinstance(seconds, int | float) else None,
        "warehouse": record.get("warehouse") if isinstance(record.get("warehouse"), str) else None,
    }


def with_analysis(line: Line, logs_dir: str) -> Line:
    """The day's line once its analysis ran: a failed analysis is added to what the day's
    extract step did (a query that ran is still counted as queried)."""
    log_file = layout.log_path(logs_dir, "analyze", line.recipe, line.day)
    failed = failure(jobs.read_outcome(log_file), log_file)
    if failed is None or line.state == "failed":
        return line
    return replace(line, analysis_failed=failed)


def render(lines: Iterable[Line]) -> list[str]:
    """The account's lines, then the total (queries avoided = days served from a cache:
    the ``cached`` lines, each a marker this run reused)."""
    lines = list(lines)
    counts = Counter(line.state for line in lines)
    total = (
        f"total: {len(lines)} recipe-day{'s' if len(lines) != 1 else ''}: "
        + ", ".join(f"{counts[s]} {s}" for s in STATES)
        + f"; {counts['cached']} quer{'ies' if counts['cached'] != 1 else 'y'} avoided"
    )
    analyses = sum(line.analysis_failed is not None for line in lines)
    if analyses:
        total += f"; {analyses} analys{'es' if analyses != 1 else 'is'} failed"
    return [str(line) for line in lines] + [total]


def events(lines: Iterable[Line]) -> list[history.Event]:
    """The account as history events (history.py), stamped now, with who ran it."""
    at = rundate.now().astimezone(UTC).isoformat(timespec="seconds")  # LEAD_RECOVERY_NOW too
    who, run = jobs.user_at_host(), jobs.run_id()
    return [
        history.Event(
            at=at,
            recipe=line.recipe,
            run_date=line.day,
            decision="suspect"
            if line.state == "failed" and "suspect: " in line.detail
            else line.state,
            reason=line.detail,
            rows=line.rows,
            seconds=line.seconds,
            warehouse=line.warehouse,
            user_at_host=who,
            run_id=run,
            watermark_check=line.watermark_check,
            analysis_failed=line.analysis_failed,
        )
        for line in lines
    ]


def from_event(event: history.Event) -> Line:
    """A history event as the account line its run printed (a suspect extract failed)."""
    return Line(
        event.recipe,
        event.run_date,
        "failed" if event.decision == "suspect" else event.decision,
        event.reason,
        rows=event.rows,
        analysis_failed=event.analysis_failed,
    )
