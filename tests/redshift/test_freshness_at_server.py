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
    """``redshift_run(now, **config)``: one run; returns the server's queries per recipe since."""
    bare_workflow.add_recipe(RECIPE, sql=SQL.format(prefix="+52"), meta=META)
    bare_workflow.add_recipe(OTHER, sql=SQL.format(prefix="+34"), meta=META)

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


@pytest.mark.parametrize(
    ("config", "steps"),
    [
        pytest.param(
            {"marker_ttl": "2h"},
            [
                ("2025-05-12T10:00:00+00:00", BOTH),
                ("2025-05-12T11:59:59+00:00", NOTHING),
                ("2025-05-12T12:00:00+00:00", BOTH),
            ],
            id="ttl_expiry",
        ),
        pytest.param(
            {"refresh_after": ["14:00"]},
            [
                ("2025-05-12T13:00:00+00:00", BOTH),
                ("2025-05-12T13:59:59+00:00", NOTHING),
                ("2025-05-12T14:00:01+00:00", BOTH),
                ("2025-05-12T15:00:00+00:00", NOTHING),
            ],
            id="refresh_time",
        ),
    ],
)
def test_an_expired_marker_queries_the_server_again_and_a_fresh_one_does_not(
    redshift_run, config, steps
):
    for now, expected in steps:
        assert redshift_run(now, **config) == expected, f"at {now}"


def test_only_the_recipe_whose_sql_changed_queries_the_server(redshift_run, bare_workflow):
    now = "2025-05-12T10:00:00+00:00"
    assert redshift_run(now) == BOTH
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


def test_ignore_markers_environment_queries_the_server_for_every_recipe(redshift_run):
    now = "2025-05-12T10:00:00+00:00"
    assert redshift_run(now) == BOTH
    assert redshift_run(now) == NOTHING

    ignored = redshift_run(now, env={"LEAD_RECOVERY_IGNORE_MARKERS": "1"}, ignore_all_markers=False)

    assert ignored == BOTH
