"""Marker freshness (issue 6) counted where it costs: at the server.

The real workflow, run by the real Snakemake with ``warehouse=redshift``,
against the test PostgreSQL behind the handshake shim. The clock is pinned
per run with ``LEAD_RECOVERY_NOW``; a query is a distinct DECLARE carrying
the recipe's query tag in the server's statement log.
"""

from __future__ import annotations

import os
import time

import pytest

from lead_recovery.extract import query_tag

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

    def run(now: str, env: dict | None = None, **config) -> dict[str, int]:
        since = server_log.mark()
        settings = {"warehouse": "redshift", "recipes": [RECIPE, OTHER], "timezone": "UTC"}
        clock = {"LEAD_RECOVERY_NOW": now, "TZ": "UTC"}
        result = bare_workflow.run(
            config={**settings, **config}, env={**pg_server.env(shim.port), **clock, **(env or {})}
        )
        at_server = {
            name: len(server_log.declared(since, query_tag(name, DAY))) for name in (RECIPE, OTHER)
        }
        assert result.queries == sum(at_server.values())  # Snakemake's jobs, the server's queries
        return at_server

    return run


NOTHING = {RECIPE: 0, OTHER: 0}
BOTH = {RECIPE: 1, OTHER: 1}


def test_expiry_sql_changes_and_the_ignore_variable_are_what_the_server_sees(
    redshift_run, bare_workflow
):
    """One day's runs, each counted at the server: a TTL and a refresh time expire, an
    edited query runs again where a checkout of the same text does not, and
    LEAD_RECOVERY_IGNORE_MARKERS queries every recipe."""
    steps = [
        ("2025-05-12T10:00:00+00:00", BOTH),
        ("2025-05-12T11:59:59+00:00", NOTHING),
        ("2025-05-12T12:00:00+00:00", {RECIPE: 1, OTHER: 0}),  # RECIPE's 2 h are up
        ("2025-05-12T13:59:59+00:00", NOTHING),
        ("2025-05-12T14:00:01+00:00", BOTH),  # 2 h since 12:00, and OTHER's 14:00 refresh
    ]
    for now, expected in steps:
        assert redshift_run(now) == expected, f"at {now}"

    now = "2025-05-12T14:30:00+00:00"
    sql = bare_workflow.root / "recipes" / RECIPE / "redshift.sql"
    other = bare_workflow.root / "recipes" / OTHER / "redshift.sql"
    later = time.time() + 3600
    os.utime(other, (later, later))
    text = other.read_text()
    other.unlink()
    other.write_text(text)  # a checkout: same text, new file and time
    sql.write_text(sql.read_text() + "-- reviewed\n")
    assert redshift_run(now) == {RECIPE: 1, OTHER: 0}
    assert redshift_run(now) == NOTHING

    ignored = redshift_run(now, env={"LEAD_RECOVERY_IGNORE_MARKERS": "1"}, ignore_all_markers=False)
    assert ignored == BOTH
