"""The run plan: for each recipe-day, whether its marker counts, why not, and what to do.

Pure: from the configuration, a recipe's facts, the day's state in the store
and in this checkout (read beforehand by the caller), the clock and what the
command line forced, it decides, and says the line the user reads. The DAG
(through lead_recovery/invocation.py), the extract job, ``markers list`` and
``markers check`` all decide with these functions, so they never disagree.
Nothing here reads a file or the time.

What a run does with a day (:class:`Action`):

- ``none``: the marker counts and this checkout's copies are of it;
- ``link``: the marker counts; the checkout gets its copies (no query);
- ``check``: only time ran out, and the recipe's source watermark may
  confirm the extract: a cheap query first, the recipe's only if it changed;
- ``query``: the recipe's query runs;
- ``skip``: ``skip_redshift``, or a recipe without ``redshift.sql``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from lead_recovery.config import env_flag
from lead_recovery.markers import Marker
from lead_recovery.rundate import local_time, parse_duration, parse_hhmm, to_date

__all__ = [
    "Action",
    "DayPlan",
    "Decision",
    "Facts",
    "Policy",
    "decide",
    "forced_by",
    "parse_duration",
    "plan_day",
    "policy_for",
    "refresh_instants",
]

Action = Literal["none", "link", "check", "query", "skip"]
IGNORE_ENV = "LEAD_RECOVERY_IGNORE_MARKERS"
ON_COMMAND_LINE = "the command line (--forcerun/-R/-F)"
DEMO = "duckdb demo"  # lead_recovery.warehouse.identity of the embedded demo


@dataclass(frozen=True)
class Policy:
    """The freshness rules that apply to one recipe."""

    ttl: str | None = None
    refresh_after: tuple[str, ...] = ()
    day_starts_at: str = "00:00"
    forced_by: str | None = None  # e.g. "ignore_redshift_marker=true"


@dataclass(frozen=True)
class Decision:
    """``counts`` is whether the marker spares a query; ``reason`` says why not."""

    counts: bool
    reason: str
    force: bool  # marker and extract exist, so only forcing makes Snakemake rerun
    expired: bool = False  # only time ran out (TTL, refresh): a watermark may confirm it


def _fmt(moment: datetime, tz: tzinfo | None) -> str:
    shown = moment.astimezone(tz) if tz is not None else moment.astimezone()
    return shown.isoformat(timespec="seconds")


def refresh_instants(run_date: str, policy: Policy, tz: tzinfo | None) -> list[datetime]:
    """The refresh times that belong to the run date's business day, as instants (UTC).

    In UTC because two datetimes sharing one zone compare by wall clock, which
    is wrong across a daylight-saving change: in the repeated hour, and for a
    time the clock skips (02:30 on a spring-forward day is the instant 02:30
    would have been before the jump, i.e. 03:30 summer time).
    """
    if not policy.refresh_after:
        return []  # the common case, asked once per marker by `markers list`
    day = to_date(run_date)
    start = parse_hhmm(policy.day_starts_at, "day_starts_at")
    instants = []
    for text in policy.refresh_after:
        at = parse_hhmm(text, "refresh_after")
        on = day if at >= start else day + timedelta(days=1)
        instants.append(local_time(on, at, tz).astimezone(UTC))
    return sorted(instants)


def queried_on(marker: Marker) -> str | None:
    """The warehouse a marker's query ran on, as :func:`lead_recovery.warehouse.identity`
    names it; for markers from before that was recorded, ``duckdb demo`` or plain
    ``redshift`` (which cluster, it cannot tell); ``None``: it does not say."""
    named = marker.record.get("warehouse_id")
    if isinstance(named, str) and named:
        return named
    legacy = marker.record.get("warehouse")
    return {"duckdb": DEMO, "redshift": "redshift"}.get(legacy) if isinstance(legacy, str) else None


def same_warehouse(recorded: str | None, current: str | None) -> bool:
    """Whether a marker of ``recorded`` counts for a run on ``current``: the same one, or
    one that cannot be told apart (a marker that does not say, a Redshift marker from
    before clusters were named, for a Redshift run)."""
    if recorded is None or current is None or recorded == current:
        return True
    return recorded == "redshift" and current.startswith("redshift")


def _said(identity: str) -> str:
    return f"the {identity}" if identity == DEMO else identity


def decide(
    marker: Marker | None,
    extract_present: bool,
    *,
    run_date: str,
    sql_sha256: str | None,
    policy: Policy,
    now: datetime,
    tz: tzinfo | None,
    warehouse: str | None = None,
) -> Decision:
    """Apply the policy to one marker; the first reason that applies is given.

    ``warehouse`` is the identity of the warehouse this run queries: a marker
    counts only for the warehouse that produced it (the demo never stands in
    for production).
    """
    now = now.astimezone(UTC)  # compare instants, never wall clocks (DST)
    if marker is None:
        return Decision(False, "no marker for this date", force=False)
    if not extract_present:
        return Decision(False, "marker present but cached extract missing", force=False)
    if policy.forced_by:
        return Decision(False, f"forced by {policy.forced_by}", force=True)
    if marker.format == "corrupt" or marker.queried_at is None:
        return Decision(False, f"marker unreadable ({marker.problem})", force=True)
    recorded_on = queried_on(marker)
    if not same_warehouse(recorded_on, warehouse):
        return Decision(
            False,
            f"queried on {_said(recorded_on or '')}; this run uses {_said(warehouse or '')}",
            force=True,
        )
    recorded = marker.sql_sha256
    if recorded and sql_sha256 and recorded != sql_sha256:
        return Decision(
            False,
            f"SQL changed since the marker (sha256 {recorded[:12]} -> {sql_sha256[:12]})",
            force=True,
        )
    since = marker.counted_from or marker.queried_at
    if policy.ttl:
        expires = since + parse_duration(policy.ttl)
        if now >= expires:
            return Decision(
                False,
                f"expired at {_fmt(expires, tz)} (marker_ttl {policy.ttl})",
                force=True,
                expired=True,
            )
    passed = [r for r in refresh_instants(run_date, policy, tz) if r <= now]
    if passed and since < passed[-1]:
        return Decision(
            False,
            f"written before the {_fmt(passed[-1], tz)} refresh (refresh_after)",
            force=True,
            expired=True,
        )
    return Decision(True, "", force=False)


def forced_by(
    config: Mapping[str, Any], environ: Mapping[str, str], on_command_line: bool = False
) -> str | None:
    """Which setting, if any, makes the marker not count."""
    if on_command_line:
        return ON_COMMAND_LINE
    if config.get("ignore_redshift_marker"):
        return "ignore_redshift_marker=true"
    if config.get("ignore_all_markers"):
        return "ignore_all_markers=true"
    if env_flag(environ.get(IGNORE_ENV)):
        return f"{IGNORE_ENV}=1"
    return None


def policy_for(
    recipe: Any,
    config: Mapping[str, Any],
    environ: Mapping[str, str],
    on_command_line: bool = False,
) -> Policy:
    """The recipe's freshness rules: its meta.yml overrides the global config."""
    refresh = recipe.refresh_after
    if refresh is None:
        refresh = config["refresh_after"]
    return Policy(
        ttl=recipe.marker_ttl or config["marker_ttl"],
        refresh_after=tuple(refresh),
        day_starts_at=config["day_starts_at"],
        forced_by=forced_by(config, environ, on_command_line),
    )


@dataclass(frozen=True)
class Facts:
    """What was read of one recipe-day before deciding (by the caller, once)."""

    marker: Marker | None  # the store's marker
    extract_present: bool  # the extract it names exists in the store
    copies_present: bool = True  # this checkout's copies (extract and marker) exist
    copies_current: bool = True  # ... and are of this very marker
    has_watermark: bool = False  # the recipe ships watermark.sql


@dataclass(frozen=True)
class DayPlan:
    """One recipe-day in one run: the decision, what to do, and the line that says so."""

    recipe: str
    date: str
    decision: Decision
    action: Action
    force: bool  # Snakemake must be told to rerun the job (its outputs all exist)
    line: str


def plan_day(
    recipe: str,
    date: str,
    facts: Facts,
    *,
    sql_sha256: str | None,
    policy: Policy,
    now: datetime,
    tz: tzinfo | None,
    warehouse: str | None = None,
) -> DayPlan:
    """Decide one recipe-day and say it in one line (dry runs and real runs alike)."""
    decision = decide(
        facts.marker,
        facts.extract_present,
        run_date=date,
        sql_sha256=sql_sha256,
        policy=policy,
        now=now,
        tz=tz,
        warehouse=warehouse,
    )
    head = f"{recipe} {date}"
    if decision.counts:
        when = facts.marker.queried_at.isoformat(timespec="seconds")  # type: ignore[union-attr]
        if facts.copies_present and facts.copies_current:
            return DayPlan(
                recipe,
                date,
                decision,
                "none",
                False,
                f"{head}: marker counts (queried {when}); no query",
            )
        return DayPlan(
            recipe,
            date,
            decision,
            "link",
            facts.copies_present,  # present but of another marker: only forcing reruns the job
            f"{head}: marker counts (queried {when}); this checkout's copy comes from the store "
            "(no query)",
        )
    force = facts.copies_present  # Snakemake reruns a job whose outputs are missing by itself
    if (
        decision.expired
        and facts.has_watermark
        and facts.marker is not None
        and facts.marker.record.get("watermark") is not None
    ):
        return DayPlan(
            recipe,
            date,
            decision,
            "check",
            force,
            f"{head}: {decision.reason}; will check the source watermark and query only if it "
            "changed",
        )
    return DayPlan(recipe, date, decision, "query", force, f"{head}: will query: {decision.reason}")
