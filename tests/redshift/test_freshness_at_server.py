"""Marker freshness (issue 6) counted where it costs: at the server.

The real workflow, run by the real Snakemake with ``warehouse=redshift``,
against the test PostgreSQL behind the handshake shim. The clock is pinned
per run with ``LEAD_RECOVERY_NOW``; a query is a distinct DECLARE carrying
the recipe's query tag in the server's statement log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import datetime

import pytest

from lead_recovery.extract import query_tag
from tests.freshness.test_freshness_workflow import assert_decision, explanation

RECIPE = "mx_recent_leads"
OTHER = "es_recent_leads"
DAY = "20250512"
SQL = """\
SELECT lead_id, name, phone
FROM leads
WHERE phone LIKE '{prefix}%'
  AND created_at >= :run_date::date - 7
  AND created_at < :run_date::date
ORDER BY lead_id
"""
META = {"description": "freshness at the server", "output_columns": ["lead_id", "name", "phone"]}


@pytest.fixture
def redshift_run(bare_workflow, pg_server, shim, server_log):
    """``redshift_run(now, **config)``: one run; returns the server's queries per recipe since.

    RECIPE's marker lives two hours (its meta.yml), OTHER's until the 14:00 refresh.
    """
    bare_workflow.add_recipe(
        RECIPE, sql=SQL.format(prefix="+52"), meta={**META, "marker_ttl": "2h"}
    )
    bare_workflow.add_recipe(
        OTHER, sql=SQL.format(prefix="+34"), meta={**META, "refresh_after": ["14:00"]}
    )

    def run(now: str, *args: str, env: dict | None = None, **config):
        """``(queries per recipe at the server, the run)``."""
        since = server_log.mark()
        settings = {"warehouse": "redshift", "recipes": [RECIPE, OTHER], "timezone": "UTC"}
        clock = {"LEAD_RECOVERY_NOW": now, "TZ": "UTC"}
        result = bare_workflow.run(
            *args,
            config={**settings, **config},
            env={**pg_server.env(shim.port), **clock, **(env or {})},
        )
        at_server = {
            name: len(server_log.declared(since, query_tag(name, DAY))) for name in (RECIPE, OTHER)
        }
        if "-n" not in args:  # Snakemake's jobs, the server's queries
            assert result.queries == sum(at_server.values())
        return at_server, result

    return run


UNTIL_EXTRACT = ("--until", "redshift_extract")  # runs whose analyses nothing reads
NOTHING = {RECIPE: 0, OTHER: 0}
BOTH = {RECIPE: 1, OTHER: 1}


_FORCED_BLOCK = re.compile(r"^\s+forced:\n\s+redshift_extract$", re.MULTILINE)


def test_expiry_sql_changes_and_the_ignore_variable_are_what_the_server_sees(
    redshift_run, bare_workflow
):
    """One day's runs, each counted at the server and explained by the workflow: a TTL and a
    refresh time expire to the second (each boundary, one second either side, is a unit test:
    tests/freshness/test_decide_clock.py), an edited query runs again where a checkout of
    the same text does not, and LEAD_RECOVERY_IGNORE_MARKERS queries every recipe."""
    new = "no marker for this date"
    steps = [
        # (now, {recipe: None = the marker counts | the reason it queries}, analyses too)
        ("2025-05-12T10:00:00+00:00", {RECIPE: new, OTHER: new}, False),
        (
            "2025-05-12T12:00:00+00:00",  # RECIPE's 2 h are up
            {RECIPE: "expired at 2025-05-12T12:00:00+00:00 (marker_ttl 2h)", OTHER: None},
            False,
        ),
        (
            "2025-05-12T14:00:01+00:00",  # 2 h since 12:00, and OTHER's 14:00 refresh
            {
                RECIPE: "expired at 2025-05-12T14:00:00+00:00 (marker_ttl 2h)",
                OTHER: "written before the 2025-05-12T14:00:00+00:00 refresh (refresh_after)",
            },
            True,  # the analyses the SQL edit below is checked against
        ),
    ]
    for now, expected, analyses in steps:
        if now == "2025-05-12T12:00:00+00:00":
            # What the user sees from Snakemake when a marker no longer counts: the
            # same "Forced execution" a --forcerun gives, in a plain `snakemake -n`.
            _, dry = redshift_run(now, "-n")
            block = dry.output[dry.output.index("rule redshift_extract:") :]
            assert "reason: Forced execution" in block[: block.index("resources:")]
            assert _FORCED_BLOCK.search(dry.output)
            _, forcerun = redshift_run(now, "-n", "--forcerun", "redshift_extract")
            assert _FORCED_BLOCK.search(forcerun.output)
        at_server, result = redshift_run(now, *(() if analyses else UNTIL_EXTRACT))

        assert at_server == {r: int(reason is not None) for r, reason in expected.items()}, now
        for recipe, reason in expected.items():
            assert_decision(result, recipe, DAY, reason)
            if reason is not None:  # queried_at follows the injected clock
                recorded = json.loads(bare_workflow.marker(recipe, DAY).read_text())
                assert datetime.fromisoformat(recorded["queried_at"]) == datetime.fromisoformat(now)
        forced = [r for r in expected.values() if r not in (None, new)]
        assert result.output.count("reason: Forced execution") == len(forced), now

    now = "2025-05-12T14:30:00+00:00"
    sql = bare_workflow.root / "recipes" / RECIPE / "redshift.sql"
    other = bare_workflow.root / "recipes" / OTHER / "redshift.sql"
    original = hashlib.sha256(sql.read_bytes()).hexdigest()
    assert json.loads(bare_workflow.marker(RECIPE, DAY).read_text())["sql_sha256"] == original
    later = time.time() + 3600
    os.utime(other, (later, later))
    text = other.read_text()
    other.unlink()
    other.write_text(text)  # a checkout: same text, new file and time
    sql.write_text(sql.read_text() + "-- reviewed\n")
    edited = hashlib.sha256(sql.read_bytes()).hexdigest()

    at_server, result = redshift_run(now)

    assert at_server == {RECIPE: 1, OTHER: 0}
    assert explanation(result, RECIPE, DAY) == (
        f"will query: SQL changed since the marker (sha256 {original[:12]} -> {edited[:12]})"
    )
    assert_decision(result, OTHER, DAY, None)
    assert result.jobs["analyze"] == 1  # not even OTHER's analysis runs again
    assert json.loads(bare_workflow.marker(RECIPE, DAY).read_text())["sql_sha256"] == edited
    assert redshift_run(now)[0] == NOTHING

    ignored, _ = redshift_run(
        now, *UNTIL_EXTRACT, env={"LEAD_RECOVERY_IGNORE_MARKERS": "1"}, ignore_all_markers=False
    )
    assert ignored == BOTH
