"""The run plan (lead_recovery/plan.py), as the pure function it is: every row of the
README's "How the marker decides" table, every forcing reason, the warehouse a marker
belongs to, watermarks, and what the line says. No file, no clock, no Snakemake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lead_recovery import markers, plan

DAY = "20250512"
NOW = datetime(2025, 5, 12, 10, 0, tzinfo=UTC)
SHA = "a" * 64


def marker(**fields) -> markers.Marker:
    record = {"queried_at": "2025-05-12T08:00:00+00:00", "sql_sha256": SHA, **fields}
    return markers.parse_marker(Path(markers.marker_name("r", DAY)), markers.render(record))


def day(facts: plan.Facts, *, policy=None, warehouse="duckdb demo", sha=SHA) -> plan.DayPlan:
    return plan.plan_day(
        "r",
        DAY,
        facts,
        sql_sha256=sha,
        policy=policy or plan.Policy(),
        now=NOW,
        tz=UTC,
        warehouse=warehouse,
    )


# The README's table: the state of the day, and what happens.
F = plan.Facts
TABLE = [
    ("counts, this checkout's copies current", F(marker(), True), "none", False),
    ("counts, no copies here", F(marker(), True, copies_present=False), "link", False),
    ("counts, copies of an earlier marker", F(marker(), True, copies_current=False), "link", True),
    ("marker present, its extract missing", F(marker(), False), "query", True),
    ("... and no copies either", F(marker(), False, copies_present=False), "query", False),
    ("marker missing", F(None, False, copies_present=False), "query", False),
]


@pytest.mark.parametrize(("state", "facts", "action", "force"), TABLE, ids=[t[0] for t in TABLE])
def test_every_row_of_the_readme_table(state, facts, action, force):
    decided = day(facts)
    assert (decided.action, decided.force) == (action, force), state
    assert decided.decision.counts == (action in ("none", "link"))


P = plan.Policy
REASONS = {
    "flag": (
        P(forced_by="ignore_redshift_marker=true"),
        {},
        SHA,
        "forced by ignore_redshift_marker",
    ),
    "command line": (P(forced_by=plan.ON_COMMAND_LINE), {}, SHA, "forced by the command line"),
    "ttl": (P(ttl="1h"), {}, SHA, "expired at 2025-05-12T09:00:00+00:00 (marker_ttl 1h)"),
    "refresh": (P(refresh_after=("09:30",)), {}, SHA, "written before the 2025-05-12T09:30"),
    "sql": (P(), {}, "b" * 64, "SQL changed since the marker (sha256 aaaaaaaaaaaa -> bbbb"),
    "warehouse": (
        P(),
        {"warehouse_id": "redshift at h:5439/dev"},
        SHA,
        "queried on redshift at h:5439/dev; this run uses the duckdb demo",
    ),
}


@pytest.mark.parametrize(
    ("policy", "marker_fields", "sha", "reason"), REASONS.values(), ids=REASONS
)
def test_every_reason_a_present_marker_stops_counting_forces_the_job(
    policy, marker_fields, sha, reason
):
    decided = day(plan.Facts(marker(**marker_fields), True), policy=policy, sha=sha)
    assert decided.action == "query" and decided.force
    assert decided.line.startswith(f"r {DAY}: will query: {reason}")


def test_forcing_names_the_setting_that_forces():
    config = {"ignore_redshift_marker": False, "ignore_all_markers": False}
    assert plan.forced_by(config, {}) is None
    assert plan.forced_by({**config, "ignore_all_markers": True}, {}) == "ignore_all_markers=true"
    assert plan.forced_by(config, {plan.IGNORE_ENV: "yes"}) == f"{plan.IGNORE_ENV}=1"
    assert plan.forced_by(config, {}, on_command_line=True) == plan.ON_COMMAND_LINE


def test_a_marker_counts_only_for_the_warehouse_that_produced_it():
    demo = marker(warehouse="duckdb")  # written before the identity was recorded
    production = "redshift at cluster.example:5439/dev"
    assert day(plan.Facts(demo, True)).action == "none"
    on_production = day(plan.Facts(demo, True), warehouse=production)
    assert on_production.line == (
        f"r {DAY}: will query: queried on the duckdb demo; this run uses {production}"
    )
    old_redshift = marker(warehouse="redshift")  # which cluster, it cannot tell: counts
    assert day(plan.Facts(old_redshift, True), warehouse=production).action == "none"
    assert day(plan.Facts(old_redshift, True)).action == "query"  # never on the demo
    other = marker(warehouse_id="redshift serverless wg/dev")
    assert day(plan.Facts(other, True), warehouse=production).action == "query"
    assert day(plan.Facts(marker(), True), warehouse=production).action == "none"  # unsaid


def test_only_an_expired_marker_with_a_recorded_watermark_is_checked_first():
    ttl = plan.Policy(ttl="1h")
    checked = day(plan.Facts(marker(watermark="42"), True, has_watermark=True), policy=ttl)
    assert checked.action == "check" and checked.force
    assert checked.line.endswith("will check the source watermark and query only if it changed")
    no_mark = day(plan.Facts(marker(), True, has_watermark=True), policy=ttl)
    assert no_mark.action == "query"
    forced = plan.Policy(ttl="1h", forced_by="ignore_redshift_marker=true")
    assert (
        day(plan.Facts(marker(watermark="42"), True, has_watermark=True), policy=forced).action
        == "query"
    )


def test_an_unreadable_marker_is_queried_again():
    broken = markers.parse_marker(Path("m.marker"), b"{not json")
    decided = day(plan.Facts(broken, True))
    assert decided.action == "query" and "marker unreadable (not valid JSON)" in decided.line


def test_a_confirmed_marker_counts_from_its_confirmation():
    confirmed = marker(confirmed_at="2025-05-12T09:45:00+00:00")
    assert day(plan.Facts(confirmed, True), policy=plan.Policy(ttl="1h")).action == "none"


def test_a_recipes_meta_overrides_the_configs_freshness():
    class Recipe:
        marker_ttl, refresh_after = "2h", ["06:00"]

    config = {"marker_ttl": "6h", "refresh_after": [], "day_starts_at": "00:00"}
    policy = plan.policy_for(Recipe(), config, {})
    assert (policy.ttl, policy.refresh_after, policy.forced_by) == ("2h", ("06:00",), None)
