"""The real workflow, run by the real Snakemake, against the test server as Redshift.

Whether Redshift was queried is counted at the server (distinct DECLAREs
carrying the recipe's query tag), not inferred from Snakemake's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from lead_recovery.extract import query_tag

RECIPE = "mx_recent_leads"
DAY1, DAY2 = "20250512", "20250513"

SQL = """\
-- Mexican leads created in the week before the run date. Runs unchanged on
-- Redshift and on PostgreSQL: :run_date is bound by the driver.
SELECT lead_id, name, phone, email, created_at, loan_amount
FROM leads
WHERE phone LIKE '+52%'
  AND created_at >= :run_date::date - 7
  AND created_at < :run_date::date
  AND NOT is_test
ORDER BY lead_id
"""

# Fails in its second batch (of BATCH rows, set in the copy's config) on DAY2 only.
BATCH = 1000
FAILING_SQL = f"""\
SELECT g AS lead_id, 'Lead ' || g AS name, '+52' || g AS phone
FROM generate_series(1, {BATCH + 1}) AS g
WHERE 1 / (CASE WHEN :run_date::date = '2025-05-13' AND g = {BATCH + 1} THEN 0 ELSE 1 END) = 1
"""

META = {
    "description": "test recipe on the test server",
    "output_columns": ["lead_id", "name", "phone"],
}


def run(workflow, pg_server, shim, day, *args, ok=True, env=None, **config):
    settings = {"warehouse": "redshift", "recipe": RECIPE, "date": day, **config}
    return workflow.run(
        *args, config=settings, env={**pg_server.env(shim.port), **(env or {})}, ok=ok
    )


UNTIL_EXTRACT = ("--until", "redshift_extract")  # runs whose analyses nothing reads


def queries(server_log, since, day):
    return len(server_log.declared(since, query_tag(RECIPE, day)))


def test_two_runs_on_one_day_query_redshift_once_and_the_ignore_flag_again(
    bare_workflow, pg_server, shim, server_log
):
    bare_workflow.add_recipe(RECIPE, sql=SQL, meta=META)
    since = server_log.mark()

    run(bare_workflow, pg_server, shim, DAY1)
    first = json.loads(bare_workflow.marker(RECIPE, DAY1).read_text())
    run(bare_workflow, pg_server, shim, DAY1)

    assert queries(server_log, since, DAY1) == 1
    leads = pq.read_table(bare_workflow.leads(RECIPE, DAY1))
    # created 2025-05-05 00:00 .. 2025-05-11 23:00 = hours 96..263; even (+52), not x0 (test)
    expected = [g for g in range(96, 264) if g % 2 == 0 and g % 10 != 0]
    assert leads.column("lead_id").to_pylist() == expected
    assert str(leads.schema.field("loan_amount").type) == "decimal128(12, 2)"
    assert first["warehouse"] == "redshift"
    assert first["rows"] == len(expected)
    assert first["run_date"] == DAY1
    assert bare_workflow.analysis(RECIPE, DAY1).is_file()

    run(bare_workflow, pg_server, shim, DAY1, *UNTIL_EXTRACT, ignore_redshift_marker=True)
    second = json.loads(bare_workflow.marker(RECIPE, DAY1).read_text())

    assert queries(server_log, since, DAY1) == 2
    assert second["run_id"] != first["run_id"]


def test_failure_mid_stream_leaves_no_marker_no_cache_and_earlier_days_untouched(
    bare_workflow, pg_server, shim, server_log
):
    bare_workflow.add_recipe(RECIPE, sql=FAILING_SQL, meta=META)
    config = bare_workflow.root / "config/config.yaml"
    config.write_text(config.read_text().replace("batch_size: 100000", f"batch_size: {BATCH}"))
    run(bare_workflow, pg_server, shim, DAY1, *UNTIL_EXTRACT)  # the day's marker and extract
    assert json.loads(bare_workflow.marker(RECIPE, DAY1).read_text())["rows"] == BATCH + 1
    day1 = {
        path: stat
        for path, stat in bare_workflow.snapshot().items()
        if f"/{DAY1}/" in path or path.endswith(f"_{DAY1}.marker")
    }
    assert len(day1) >= 2

    since = server_log.mark()
    result = run(bare_workflow, pg_server, shim, DAY2, ok=False)

    assert queries(server_log, since, DAY2) == 1  # not retried
    assert "division by zero" in result.output
    assert f"recipe '{RECIPE}'" in result.output
    assert not bare_workflow.marker(RECIPE, DAY2).exists()
    assert not bare_workflow.leads(RECIPE, DAY2).exists()
    leftovers = [p for p in bare_workflow.snapshot() if f"/{DAY2}/" in p and "logs/" not in p]
    assert leftovers == []
    after = bare_workflow.snapshot()
    assert {path: after.get(path) for path in day1} == day1


def test_wrong_password_fails_without_marker_and_without_leaking_it(
    bare_workflow, pg_server, shim, server_log
):
    bare_workflow.add_recipe(RECIPE, sql=SQL, meta=META)
    wrong = "Wr0ng-Workflow-S3cret"
    since = server_log.mark()

    result = run(bare_workflow, pg_server, shim, DAY1, ok=False, env={"REDSHIFT_PASSWORD": wrong})

    assert server_log.failed_logins(since) == 1
    assert "rejected the login of user 'lr_test'" in result.output
    assert not bare_workflow.marker(RECIPE, DAY1).exists()
    assert not bare_workflow.leads(RECIPE, DAY1).exists()
    logs = [p.read_text() for p in (bare_workflow.root / "logs").rglob("*") if p.is_file()]
    for text in [result.output, *logs]:
        assert wrong not in text and pg_server.password not in text


def test_a_demo_marker_never_counts_on_redshift(workflow, pg_server, shim, server_log):
    """After a run on the DuckDB demo, the first run on Redshift queries: a marker counts
    only for the warehouse that produced it (issue 23). The dry run, the run and
    ``markers list`` say why."""
    workflow.add_recipe(RECIPE, sql=SQL, meta=META)
    demo = workflow.run(*UNTIL_EXTRACT, config={"recipe": RECIPE, "date": DAY1})
    assert (
        demo.queries == 1
        and json.loads(workflow.marker(RECIPE, DAY1).read_text())["warehouse"] == "duckdb"
    )
    since = server_log.mark()
    env = pg_server.env(shim.port)
    where = f"redshift at {env['REDSHIFT_HOST']}:{env['REDSHIFT_PORT']}/{env['REDSHIFT_DATABASE']}"
    reason = f"queried on the duckdb demo; this run uses {where}"

    config = workflow.root / "config/config.yaml"  # the next runs' config, as a team edits it
    config.write_text(config.read_text().replace("warehouse: duckdb", "warehouse: redshift"))
    plan = run(workflow, pg_server, shim, DAY1, "-n", *UNTIL_EXTRACT)
    listed = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.markers", "list", "--json"],
        cwd=workflow.root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    real = run(workflow, pg_server, shim, DAY1, *UNTIL_EXTRACT)

    assert f"{RECIPE} {DAY1}: will query: {reason}" in plan.output
    [row] = [r for r in json.loads(listed.stdout) if r["recipe"] == RECIPE]
    assert (row["counts"], row["reason"]) == (False, reason)
    assert queries(server_log, since, DAY1) == 1 and real.queries == 1
    assert json.loads(workflow.marker(RECIPE, DAY1).read_text())["warehouse"] == "redshift"
