"""``lead-recovery report`` checked where the cost is paid: at the server.

A day of real runs with ``warehouse=redshift`` against the test PostgreSQL
behind the handshake shim (clock pinned with ``LEAD_RECOVERY_NOW``), then the
report's figures are compared with the statements the server logged: every
query is a DECLARE whose comment carries the recipe's query tag, and a
watermark query's tag ends in ``watermark``. Nothing is counted from
Snakemake's jobs or the markers.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections import Counter

from tests.support.workflow import clean_env

WATERMARKED = "wm_report_leads"
PLAIN = "plain_report_leads"
_DECLARE_RE = re.compile(
    r"/\* lead_recovery recipe=(\S+) run_date=\d{8}( watermark)? \*/\s*DECLARE (lr_\w+) CURSOR"
)


def at(moment: str) -> dict[str, str]:
    return {"LEAD_RECOVERY_NOW": f"{moment}:00+00:00", "TZ": "UTC"}


def seen_at_server(pg_server, since: int) -> tuple[Counter, Counter]:
    """Distinct queries per recipe the server was asked to run: (recipe queries, watermark
    queries). A cursor name is unique per query, so a statement logged twice counts once."""
    cursors = {
        (match[1], bool(match[2]), match[3])
        for sql in pg_server.statements(since, containing="DECLARE", failed=True)
        if (match := _DECLARE_RE.search(sql))
    }
    queries = Counter(recipe for recipe, watermark, _ in cursors if not watermark)
    watermarks = Counter(recipe for recipe, watermark, _ in cursors if watermark)
    return queries, watermarks


def test_the_reports_queries_avoided_and_watermark_checks_are_what_the_server_saw(
    bare_workflow, pg_server, shim
):
    source = f"report_src_{secrets.token_hex(4)}"
    pg_server.psql(
        f"CREATE TABLE {source} (lead_id bigint, loaded_on date, loaded_at timestamp);"
        f"INSERT INTO {source} VALUES (1, '2025-05-01', '2025-05-11 23:00');"
        f"ALTER TABLE {source} OWNER TO lr_test;"
    )
    meta = {"description": "report at the server", "output_columns": ["lead_id"]}
    folder = bare_workflow.add_recipe(
        WATERMARKED,
        sql=f"SELECT lead_id FROM {source} WHERE loaded_on <= :run_date::date ORDER BY lead_id",
        meta=meta,
    )
    (folder / "watermark.sql").write_text(f"SELECT max(loaded_at) FROM {source}")
    bare_workflow.add_recipe(
        PLAIN,
        sql="SELECT lead_id FROM leads WHERE created_at < :run_date::date ORDER BY lead_id",
        meta={**meta, "marker_ttl": "1d"},  # its marker outlives the global 2h
    )
    config = {
        "warehouse": "redshift",
        "recipes": [WATERMARKED, PLAIN],
        "timezone": "UTC",
        "marker_ttl": "2h",
    }
    redshift = pg_server.env(shim.port)
    start = pg_server.mark()

    def run(moment: str) -> None:
        # the report counts queries and checks, which the extract jobs do: no analysis
        bare_workflow.run(
            "--until", "redshift_extract", config=config, env={**redshift, **at(moment)}
        )

    run("2025-05-12T06:00")  # both query (the watermarked one reads its watermark first)
    run("2025-05-12T09:00")  # 2h expired: source unchanged, one watermark check; plain counts
    pg_server.psql(f"INSERT INTO {source} VALUES (2, '2025-05-02', '2025-05-12 10:00')")
    run("2025-05-12T11:00")  # 2h since the check: changed, a check then the query; plain counts
    runs, recipe_days_per_run = 3, 2

    queries, watermarks = seen_at_server(pg_server, start)
    shown = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "report", "--since", "7d", "--json"],
        cwd=bare_workflow.root,
        env=clean_env(**at("2025-05-12T12:00")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)

    assert queries == {WATERMARKED: 2, PLAIN: 1}  # the scenario did what it says
    for name in (WATERMARKED, PLAIN):
        assert figures["recipes"][name]["queries"] == queries[name]
    total = figures["total"]
    assert total["queries"] == sum(queries.values())
    # every recipe-day a run asked for that the server never got a query for was avoided
    assert total["avoided"] == runs * recipe_days_per_run - sum(queries.values())
    # each query of a recipe with watermark.sql reads the watermark once, to record it in
    # the marker; every other watermark query the server ran was a check
    checks = watermarks[WATERMARKED] - queries[WATERMARKED]
    assert checks == 2
    assert (
        total["watermark_checks"] == figures["recipes"][WATERMARKED]["watermark_checks"] == checks
    )
    assert total["failures"] == total["suspect"] == 0
