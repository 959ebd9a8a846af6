"""The freshness rules the end-to-end freshness tests used to walk through with one real
Snakemake run per step, decided here by the pure functions the workflow calls
(:func:`plan.policy_for`, :func:`plan.decide`, :func:`rundate.resolve`): a recipe's
meta.yml against the global settings, and a business day that starts at 06:00.
The wiring runs end to end in tests/freshness/test_freshness_workflow.py and, counted at
the server, tests/redshift/test_freshness_at_server.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lead_recovery import plan, rundate
from lead_recovery.markers import Marker

DAY = "20250512"


@dataclass
class Recipe:
    """What policy_for reads of a recipe: its meta.yml's freshness keys (None: unset)."""

    marker_ttl: str | None = None
    refresh_after: list[str] | None = None


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def written(moment: str, day: str = DAY) -> Marker:
    return Marker(Path("m"), "r", day, "json", queried_at=at(moment), record={})


def decided(marker: Marker, policy: plan.Policy, now: str, day: str = DAY) -> plan.Decision:
    return plan.decide(
        marker, True, run_date=day, sql_sha256=None, policy=policy, now=at(now), tz=UTC
    )


GLOBAL = {"marker_ttl": "6h", "refresh_after": ["12:00"], "day_starts_at": "00:00"}


def test_a_meta_yml_overrides_only_the_rule_it_sets():
    half_hourly = plan.policy_for(Recipe(marker_ttl="30m"), GLOBAL, {})
    mornings = plan.policy_for(Recipe(refresh_after=["09:00"]), GLOBAL, {})
    default = plan.policy_for(Recipe(), GLOBAL, {})

    assert (half_hourly.ttl, half_hourly.refresh_after) == ("30m", ("12:00",))
    # a refresh list replaces the global one; it is not added to it
    assert (mornings.ttl, mornings.refresh_after) == ("6h", ("09:00",))
    assert (default.ttl, default.refresh_after) == ("6h", ("12:00",))


def test_meta_yml_overrides_over_a_day_of_runs():
    """Global 6h TTL and a 12:00 refresh; one recipe's meta.yml sets a 30m TTL, another's
    a 09:00 refresh. Everything queried at 08:00, and again at 09:00:01 what expired."""
    half_hourly = plan.policy_for(Recipe(marker_ttl="30m"), GLOBAL, {})
    mornings = plan.policy_for(Recipe(refresh_after=["09:00"]), GLOBAL, {})
    default = plan.policy_for(Recipe(), GLOBAL, {})
    eight, nine = written("2025-05-12T08:00:00+00:00"), written("2025-05-12T09:00:01+00:00")

    at_nine = "2025-05-12T09:00:01+00:00"
    assert decided(eight, half_hourly, at_nine).reason == (
        "expired at 2025-05-12T08:30:00+00:00 (marker_ttl 30m)"
    )
    assert decided(eight, mornings, at_nine).reason == (
        "written before the 2025-05-12T09:00:00+00:00 refresh (refresh_after)"
    )
    assert decided(eight, default, at_nine).counts  # 6h, and 12:00 is still to come

    noon = "2025-05-12T12:00:01+00:00"
    assert decided(eight, default, noon).reason == (
        "written before the 2025-05-12T12:00:00+00:00 refresh (refresh_after)"
    )
    assert not decided(nine, half_hourly, noon).counts  # its 30m, from 09:00:01
    assert decided(nine, mornings, noon).counts  # 12:00 is not one of its refresh times


@pytest.fixture
def clock(monkeypatch):
    """``clock(now)``: pin LEAD_RECOVERY_NOW as a run does, with no inherited run date."""
    monkeypatch.delenv(rundate.RUN_DATE_ENV, raising=False)
    monkeypatch.delenv(rundate.DECIDED_AT_ENV, raising=False)
    return lambda now: monkeypatch.setenv(rundate.NOW_ENV, now)


@pytest.mark.parametrize(
    ("now", "run_date"),
    [
        ("2025-05-12T23:59:59+00:00", "20250512"),
        ("2025-05-13T00:00:00+00:00", "20250512"),
        ("2025-05-13T03:00:00+00:00", "20250512"),
        ("2025-05-13T05:59:59+00:00", "20250512"),
        ("2025-05-13T06:00:00+00:00", "20250513"),
    ],
)
def test_the_hours_before_the_day_start_belong_to_the_day_before(clock, now, run_date):
    clock(now)
    run = rundate.resolve(None, "UTC", "06:00")
    assert run.date == run_date
    assert run.decided_at == at(now)


def test_a_configured_date_wins_over_the_day_start(clock):
    clock("2025-05-13T03:00:00+00:00")
    assert rundate.resolve("20250510", "UTC", "06:00").date == "20250510"


def test_a_refresh_time_before_the_day_start_ends_that_business_day():
    """Run date 20250512 with a 06:00 day start: its 02:00 refresh is 2025-05-13 02:00."""
    config = {**GLOBAL, "marker_ttl": None, "refresh_after": ["02:00"], "day_starts_at": "06:00"}
    policy = plan.policy_for(Recipe(), config, {})
    assert policy.day_starts_at == "06:00"
    assert plan.refresh_instants(DAY, policy, UTC) == [at("2025-05-13T02:00:00+00:00")]

    before = written("2025-05-13T01:59:59+00:00")
    refreshed = decided(before, policy, "2025-05-13T03:00:00+00:00")
    assert (refreshed.counts, refreshed.force) == (False, True)
    assert refreshed.reason == (
        "written before the 2025-05-13T02:00:00+00:00 refresh (refresh_after)"
    )
    assert decided(before, policy, "2025-05-13T01:59:59+00:00").counts  # not yet 02:00
    # queried again at 03:00: counts until the day ends at 06:00, whatever the hour
    assert decided(written("2025-05-13T03:00:00+00:00"), policy, "2025-05-13T05:59:59+00:00").counts
