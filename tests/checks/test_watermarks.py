"""Source watermarks: when a marker would expire, the recipe's cheap ``watermark.sql``
decides. Unchanged source: the marker keeps counting and the recipe's query does not
run (the marker keeps the first query's run id and time); changed: one query."""

from __future__ import annotations

import json

import duckdb

from tests.support.workflow import DEMO_DB

SQL = "SELECT lead_id FROM sourced WHERE loaded_on <= :run_date::date"
WATERMARK = "SELECT max(loaded_at) FROM sourced"
DAY = "20250512"
UNTIL = ("--until", "redshift_extract")  # the marker, the extract, the account: no analysis


def load(workflow, lead_id: int, loaded_at: str) -> None:
    with duckdb.connect(str(workflow.root / DEMO_DB)) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS sourced (lead_id INT, loaded_on DATE, loaded_at TIMESTAMP)"
        )
        db.execute(
            "INSERT INTO sourced VALUES (?, DATE '2025-05-01', ?::TIMESTAMP)", [lead_id, loaded_at]
        )


def at(hhmm: str) -> dict[str, str]:
    return {"LEAD_RECOVERY_NOW": f"2025-05-12T{hhmm}:00+00:00", "TZ": "UTC"}


def test_an_unchanged_source_keeps_the_marker_counting_and_a_changed_one_queries(workflow):
    folder = workflow.add_recipe("sourced", sql=SQL)
    (folder / "watermark.sql").write_text(WATERMARK)
    load(workflow, 1, "2025-05-12 05:00:00")
    config = {"recipe": "sourced", "date": DAY, "marker_ttl": "1h"}

    first = workflow.run(*UNTIL, config=config, env=at("06:00"))
    marker = json.loads(workflow.marker("sourced", DAY).read_text())
    assert first.queries == 1 and marker["watermark"] == "2025-05-12 05:00:00"

    preview = workflow.run("-n", *UNTIL, config=config, env=at("08:00"))
    assert "will check the source watermark and query only if it changed" in preview.output

    unchanged = workflow.run(*UNTIL, config=config, env=at("08:00"))
    after = json.loads(workflow.marker("sourced", DAY).read_text())
    assert after["run_id"] == marker["run_id"]  # the recipe's query did not run
    assert after["queried_at"] == marker["queried_at"]
    assert after["confirmed_at"].startswith("2025-05-12T08:00")
    assert "marker counts: source unchanged since" in unchanged.output
    assert "sourced 20250512 cached (" in unchanged.output
    assert "source unchanged (watermark checked)" in unchanged.output
    # the TTL now counts from the check: no watermark query within the hour
    assert workflow.run(*UNTIL, config=config, env=at("08:30")).queries == 0

    paid = (
        workflow.marker("sourced", DAY).read_bytes(),
        workflow.leads("sourced", DAY).read_bytes(),
    )
    (folder / "watermark.sql").write_text("SELECT no_such_column FROM sourced")
    workflow.run(*UNTIL, config=config, env=at("09:40"), ok=False)  # the watermark query fails
    assert (
        workflow.marker("sourced", DAY).read_bytes(),
        workflow.leads("sourced", DAY).read_bytes(),
    ) == paid  # the day's pair survives a failed check
    (folder / "watermark.sql").write_text(WATERMARK)

    load(workflow, 2, "2025-05-12 09:00:00")
    changed = workflow.run(*UNTIL, config=config, env=at("09:45"))
    final = json.loads(workflow.marker("sourced", DAY).read_text())
    assert final["run_id"] != marker["run_id"] and final["rows"] == 2
    assert final["watermark"] == "2025-05-12 09:00:00"
    assert "source changed (watermark 2025-05-12 05:00:00 -> 2025-05-12 09:00:00)" in (
        changed.output
    )
