"""Whether a day's marker still counts, and if not, why.

Snakemake reruns ``redshift_extract`` on its own when the marker or the cached
extract is missing. For the cases where both exist but the marker should not
count (a forced query, an expired TTL, a refresh time that has passed, the
query text changed), the workflow asks Snakemake to force the job; this
module is the single place that decides, so the dry run, the rules and the
``markers`` helper give the same answer and the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from lead_recovery import cache, layout, s3cache
from lead_recovery.config import env_flag
from lead_recovery.markers import Marker, marker_path, read_marker, read_stored
from lead_recovery.recipes import Recipe
from lead_recovery.rundate import local_time, parse_duration, parse_hhmm, to_date
from lead_recovery.store import S3Store

__all__ = ["Decision", "Policy", "assess", "decide", "parse_duration", "policy_for"]


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
    force: bool  # marker and cache exist, so only forcing makes Snakemake rerun
    restore: bool = False  # the pair that counts is the one kept from an interrupted run
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


def decide(
    marker: Marker | None,
    cache_present: bool,
    *,
    run_date: str,
    sql_sha256: str | None,
    policy: Policy,
    now: datetime,
    tz: tzinfo | None,
) -> Decision:
    """Apply the policy to one marker; the first reason that applies is given."""
    now = now.astimezone(UTC)  # compare instants, never wall clocks (DST)
    if marker is None:
        return Decision(False, "no marker for this date", force=False)
    if not cache_present:
        return Decision(False, "marker present but cached extract missing", force=False)
    if policy.forced_by:
        return Decision(False, f"forced by {policy.forced_by}", force=True)
    if marker.format == "corrupt" or marker.queried_at is None:
        return Decision(False, f"marker unreadable ({marker.problem})", force=True)
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


IGNORE_ENV = "LEAD_RECOVERY_IGNORE_MARKERS"
ON_COMMAND_LINE = "the command line (--forcerun/-R/-F)"


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
    recipe: Recipe,
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


def assess(
    recipe: Recipe,
    run_date: str,
    *,
    marker_dir: str,
    results_dir: str,
    policy: Policy,
    now: datetime,
    tz: tzinfo | None,
    store: S3Store | None = None,
) -> tuple[Marker | None, Decision]:
    """Read a recipe's marker and cache for a date and decide whether the marker counts.

    When the day's pair is incomplete but a complete pair was kept by an
    interrupted re-query (cache.py), that pair is the one judged: if it
    counts, it is put back instead of querying. On S3 (``store``) the marker
    is read with one small GET and the extract is never downloaded: whether
    it exists comes from a listing (or a HEAD).
    """
    path = marker_path(marker_dir, recipe.name, run_date)
    leads = layout.leads_path(results_dir, recipe.name, run_date)
    kept_dir = layout.kept_dir(results_dir, recipe.name, run_date)
    if store is not None:
        found = read_stored(store, path)
        cache_present = store.exists(leads)
        entries: list[Any] = (
            [] if found is not None and cache_present else s3cache.kept(store, kept_dir)
        )
        if entries:
            found, cache_present = read_stored(store, entries[0].marker), True
    else:
        complete = cache.complete(leads, path)
        entries = [] if complete else cache.kept(kept_dir)
        if entries:
            found, cache_present = read_marker(entries[0].marker), True
        elif complete:  # the everyday case: no more stat calls
            found, cache_present = read_marker(path), True
        else:
            found = read_marker(path) if os.path.exists(path) else None
            cache_present = os.path.exists(leads)
    decision = decide(
        found,
        cache_present,
        run_date=run_date,
        sql_sha256=recipe.sql_sha256,
        policy=policy,
        now=now,
        tz=tz,
    )
    if entries and decision.counts:
        decision = Decision(True, "", force=False, restore=True)
    return found, decision
