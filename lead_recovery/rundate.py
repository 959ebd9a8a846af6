"""The run date: chosen once per invocation, in the configured time zone.

Everything a run writes (markers, caches, analyses) is keyed by one
``YYYYMMDD`` string decided when the workflow starts, so a run that crosses
midnight keeps writing under its start date. Tests and users can pin the
clock with ``LEAD_RECOVERY_NOW`` (ISO-8601 with offset), which also moves it
for every process the workflow starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lead_recovery.errors import LeadRecoveryError

NOW_ENV = "LEAD_RECOVERY_NOW"
# Set by the first parse of an invocation for every process it starts (jobs,
# and the Snakefile re-parses of `run:` jobs or cluster executors), so they
# all keep the date the invocation started with, even past midnight.
RUN_DATE_ENV = "LEAD_RECOVERY_RUN_DATE"
DECIDED_AT_ENV = "LEAD_RECOVERY_DECIDED_AT"
_DATE_RE = re.compile(r"^\d{8}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def zone(name: str | None) -> tzinfo | None:
    """The configured zone; ``None`` means the machine's local zone (DST-aware)."""
    if name in (None, "", "local"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise LeadRecoveryError(
            f"timezone '{name}' is not a known IANA time zone (e.g. 'Europe/Madrid')"
        ) from None


def now(tz: tzinfo | None = None) -> datetime:
    """The current time as an aware datetime, honouring ``LEAD_RECOVERY_NOW``."""
    pinned = os.environ.get(NOW_ENV)
    if pinned:
        try:
            current = datetime.fromisoformat(pinned)
        except ValueError:
            raise LeadRecoveryError(f"{NOW_ENV}='{pinned}' is not an ISO-8601 time") from None
        if current.tzinfo is None:
            raise LeadRecoveryError(f"{NOW_ENV}='{pinned}' needs a UTC offset, e.g. +00:00")
    else:
        current = datetime.now().astimezone()
    return current.astimezone(tz) if tz is not None else current.astimezone()


def local_time(day: date, at: time, tz: tzinfo | None) -> datetime:
    """Wall-clock ``at`` on ``day`` in ``tz`` (local zone when ``None``)."""
    naive = datetime.combine(day, at)
    return naive.astimezone() if tz is None else naive.replace(tzinfo=tz)


def parse_date(value: object) -> str:
    """Normalise a configured date (``--config date=20250512`` arrives as int)."""
    text = str(value).strip()
    if not _DATE_RE.match(text):
        raise LeadRecoveryError(f"date '{value}' is not in YYYYMMDD form")
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise LeadRecoveryError(f"date '{value}' is not a real calendar date") from None
    return text


def parse_hhmm(value: object, what: str) -> time:
    """An ``HH:MM`` setting such as ``day_starts_at`` or a refresh time."""
    match = _HHMM_RE.match(str(value).strip())
    if not match:
        raise LeadRecoveryError(f"{what} '{value}' is not a time of day in HH:MM form")
    return time(int(match.group(1)), int(match.group(2)))


_DURATION_RE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: object, what: str = "marker_ttl") -> timedelta:
    """``6h`` / ``30m`` / ``45s`` / ``1d`` as a timedelta: the one duration grammar
    (marker_ttl, markers prune --older-than, cron waits). Zero is refused: a
    zero TTL or wait is always a mistake for "none", which is spelled null."""
    match = _DURATION_RE.match(str(value).strip())
    if not match or int(match.group(1)) == 0:
        raise LeadRecoveryError(f"{what} '{value}' is not a duration such as 6h, 30m or 90s")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def to_date(run_date: str) -> date:
    return datetime.strptime(run_date, "%Y%m%d").date()


def days_before(run_date: str, days: int) -> str:
    """The run date ``days`` days before ``run_date`` (yesterday, a retention limit)."""
    return (to_date(run_date) - timedelta(days=days)).strftime("%Y%m%d")


@dataclass(frozen=True)
class RunDate:
    """The date a run is keyed to and the wall-clock time it was decided at."""

    date: str
    decided_at: datetime


def resolve(
    configured: object | None,
    timezone: str | None,
    day_starts_at: str = "00:00",
) -> RunDate:
    """Decide the run date once: the configured one, else today's business day.

    With ``day_starts_at`` later than midnight, the hours before it belong to
    the previous day, so a 03:00 run with a 06:00 day start uses yesterday.
    """
    tz = zone(timezone)
    inherited = os.environ.get(RUN_DATE_ENV)
    if inherited and os.environ.get(DECIDED_AT_ENV):
        current = datetime.fromisoformat(os.environ[DECIDED_AT_ENV])
    else:
        current = now(tz)
    if configured not in (None, ""):
        return RunDate(parse_date(configured), current)
    if inherited:
        return RunDate(parse_date(inherited), current)
    start = parse_hhmm(day_starts_at, "day_starts_at")
    day = current.date()
    if current.timetz().replace(tzinfo=None) < start:
        day -= timedelta(days=1)
    return RunDate(day.strftime("%Y%m%d"), current)


def pin_for_children(run: RunDate) -> None:
    """Let every process this invocation starts inherit its run date."""
    os.environ.setdefault(RUN_DATE_ENV, run.date)
    os.environ.setdefault(DECIDED_AT_ENV, run.decided_at.isoformat())


def date_range(since: str, until: str) -> list[str]:
    """Every run date from ``since`` to ``until`` inclusive (catch-up runs)."""
    first, last = to_date(parse_date(since)), to_date(parse_date(until))
    if first > last:
        raise LeadRecoveryError(f"since date {since} is after the run date {until}")
    days = (last - first).days
    return [(first + timedelta(days=i)).strftime("%Y%m%d") for i in range(days + 1)]
