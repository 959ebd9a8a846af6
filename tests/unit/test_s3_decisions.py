"""The decisions tests/s3/ used to make Snakemake take on a marker read from S3, as the
pure function that takes them (lead_recovery/plan.py): the marker's times against
``marker_ttl`` and ``refresh_after``, each boundary and the line that says it.
tests/s3/test_s3_workflow.py keeps one dry run of each outcome reading the S3 marker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lead_recovery import markers, plan

DAY = "20261127"
SQL = "simulation_to_handoff"
SHA = "a" * 64


def decided(hhmm: str, ss: int = 0, **policy) -> plan.DayPlan:
    """The day's plan at ``hhmm:ss`` UTC, for the marker the S3 tests' 06:00 query wrote."""
    record = {"queried_at": "2026-11-27T06:00:00+00:00", "sql_sha256": SHA}
    marker = markers.parse_marker(Path(markers.marker_name(SQL, DAY)), markers.render(record))
    hh, mm = map(int, hhmm.split(":"))
    return plan.plan_day(
        SQL,
        DAY,
        plan.Facts(marker, True),
        sql_sha256=SHA,
        policy=plan.Policy(**policy),
        now=datetime(2026, 11, 27, hh, mm, ss, tzinfo=UTC),
        tz=UTC,
        warehouse="duckdb demo",
    )


BOTH = {"ttl": "2h", "refresh_after": ("05:00", "09:15")}
EXPIRED = "will query: expired at 2026-11-27T08:00:00+00:00 (marker_ttl 2h)"
REFRESHED = "will query: written before the 2026-11-27T09:15:00+00:00 refresh (refresh_after)"
COUNTS = "marker counts (queried 2026-11-27T06:00:00+00:00); no query"
CASES = {
    "ttl: one second before it expires": (("07:59", 59), {"ttl": "2h"}, COUNTS),
    "ttl: exactly at its end": (("08:00", 0), {"ttl": "2h"}, EXPIRED),
    "ttl: long after": (("09:00", 0), {"ttl": "2h"}, EXPIRED),
    "refresh: a time before the query does not matter": (
        ("09:14", 59),
        {"refresh_after": ("05:00", "09:15")},
        COUNTS,
    ),
    "refresh: at the next refresh time": (
        ("09:15", 0),
        {"refresh_after": ("05:00", "09:15")},
        REFRESHED,
    ),
    "refresh: after it": (("09:30", 0), {"refresh_after": ("05:00", "09:15")}, REFRESHED),
    "both, neither due": (("07:59", 0), BOTH, COUNTS),
    "both, the ttl first": (("08:30", 0), BOTH, EXPIRED),
}


@pytest.mark.parametrize(("at", "policy", "line"), CASES.values(), ids=CASES)
def test_the_s3_markers_times_against_ttl_and_refresh_times(at, policy, line):
    day = decided(*at, **policy)
    assert day.line == f"{SQL} {DAY}: {line}"
    assert day.decision.counts == (line == COUNTS)
    assert (day.action, day.force) == (("none", False) if line == COUNTS else ("query", True))
