"""Marker freshness to the second, as the pure decision it is: every clock case of
test_freshness_workflow.py (TTLs, refresh times, both daylight-saving changes)
walked through :func:`plan.decide`, each query writing a marker at its time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from lead_recovery import plan, rundate
from lead_recovery.markers import Marker
from tests.freshness.test_freshness_workflow import CLOCK_CASES


@pytest.mark.parametrize("case", list(CLOCK_CASES))
def test_each_clock_case_decides_as_specified(case):
    config, day, steps = CLOCK_CASES[case]
    policy = plan.Policy(
        ttl=config.get("marker_ttl"), refresh_after=tuple(config.get("refresh_after", ()))
    )
    tz = rundate.zone(config.get("timezone", "UTC"))
    marker = None
    for now, expected in steps:
        at = datetime.fromisoformat(now)
        decision = plan.decide(
            marker,
            marker is not None,
            run_date=day,
            sql_sha256=None,
            policy=policy,
            now=at,
            tz=tz,
        )
        if expected is None:
            assert decision.counts, f"{case} at {now}: {decision.reason}"
            continue
        assert (decision.counts, decision.reason) == (False, expected), f"{case} at {now}"
        assert decision.force is (marker is not None)
        marker = Marker(Path("m"), "r", day, "json", queried_at=at, record={})


@pytest.mark.parametrize(
    ("forced_by", "reason"),
    [
        ("ignore_redshift_marker=true", "forced by ignore_redshift_marker=true"),
        (plan.ON_COMMAND_LINE, "forced by the command line (--forcerun/-R/-F)"),
    ],
)
def test_forcing_wins_over_a_fresh_marker(forced_by, reason):
    now = datetime.fromisoformat("2025-05-12T10:00:00+00:00")
    marker = Marker(Path("m"), "r", "20250512", "json", queried_at=now, record={})
    decision = plan.decide(
        marker,
        True,
        run_date="20250512",
        sql_sha256=None,
        policy=plan.Policy(forced_by=forced_by),
        now=now,
        tz=None,
    )
    assert (decision.counts, decision.reason, decision.force) == (False, reason, True)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("6h", True),
        ("30m", True),
        ("90s", True),
        ("1d", True),
        ("0", False),
        ("0h", False),
        ("90", False),
        ("6 h", False),
        ("-1h", False),
        ("1w", False),
    ],
)
def test_one_duration_grammar(text, ok):
    if ok:
        assert rundate.parse_duration(text).total_seconds() > 0
    else:
        with pytest.raises(Exception, match="is not a duration"):
            rundate.parse_duration(text)
