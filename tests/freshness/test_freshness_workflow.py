"""Marker freshness (issue 6) end to end: the real workflow, run by the real
Snakemake, on the embedded DuckDB warehouse.

The clock is pinned per run with ``LEAD_RECOVERY_NOW`` (the run date, the
freshness decision and the marker's ``queried_at`` all follow it), so the
boundaries are hit to the second without sleeping. A query is a
``redshift_extract`` job Snakemake ran; every decision is read back from the
line the workflow prints for it, and the forced ones from Snakemake's own
"reason: Forced execution".
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.workflow import clean_env

RECIPE = "simulation_to_handoff"
DAY = "20250512"
PINNED_SNAKEMAKE = "9.27.1"
REPO = Path(__file__).resolve().parents[2]
DAY_SQL = "SELECT lead_id FROM leads WHERE created_at::date = :run_date::date ORDER BY lead_id\n"
_EXTRACT_RE = re.compile(
    r"^(?:local)?rule redshift_extract:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: recipe=([^,\s]+), "
    r"date=(\d{8})",
    re.MULTILINE,
)


def run(workflow, now: str, *args: str, config=None, env=None, ok=True):
    """One real ``snakemake`` run with the clock at ``now`` (the machine's zone is UTC)."""
    settings = {"timezone": "UTC", **(config or {})}
    clock = {"LEAD_RECOVERY_NOW": now, "TZ": "UTC", **(env or {})}
    return workflow.run(*args, config=settings, env=clock, ok=ok)


def extracted(result) -> set[tuple[str, str]]:
    """The (recipe, date) pairs Snakemake ran (or, with -n, would run) the query for."""
    return set(_EXTRACT_RE.findall(result.output))


def explanation(result, recipe: str, day: str) -> str:
    """What the workflow said about one recipe's marker for one date."""
    prefix = f"{recipe} {day}: "
    lines = [line[len(prefix) :] for line in result.output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one decision for {recipe} {day}:\n{result.output[-4000:]}"
    return lines[0]


def assert_decision(result, recipe: str, day: str, expected: str | None) -> None:
    """``expected`` None: the marker counts and no query ran; else the query's reason."""
    said = explanation(result, recipe, day)
    if expected is None:
        assert said.startswith("marker counts (queried "), said
        assert (recipe, day) not in extracted(result)
    else:
        assert said == f"will query: {expected}"
        assert (recipe, day) in extracted(result)


def marker(workflow, recipe: str = RECIPE, day: str = DAY) -> dict:
    return json.loads(workflow.marker(recipe, day).read_text())


def configure(workflow, **changes) -> None:
    """Change keys of the copy's config/config.yaml, as a user edits it."""
    path = workflow.root / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


# --- time-to-live and refresh times, to the second --------------------------

MADRID = "Europe/Madrid"
CLOCK_CASES = {
    # (config, run date, [(now, None = marker counts | the reason it queries)])
    "ttl_counts_one_second_before_expiry_and_queries_exactly_at_it": (
        {"marker_ttl": "2h"},
        DAY,
        [
            ("2025-05-12T10:00:00+00:00", "no marker for this date"),
            ("2025-05-12T11:59:59+00:00", None),
            ("2025-05-12T12:00:00+00:00", "expired at 2025-05-12T12:00:00+00:00 (marker_ttl 2h)"),
            ("2025-05-12T13:59:59+00:00", None),  # the new marker's TTL runs from 12:00
        ],
    ),
    "refresh_time_one_second_before_counts_and_one_second_after_queries": (
        {"refresh_after": ["06:00", "14:00"]},
        DAY,
        [
            ("2025-05-12T13:00:00+00:00", "no marker for this date"),
            ("2025-05-12T13:59:59+00:00", None),  # 06:00 has passed, but before the marker
            (
                "2025-05-12T14:00:01+00:00",
                "written before the 2025-05-12T14:00:00+00:00 refresh (refresh_after)",
            ),
            ("2025-05-12T20:00:00+00:00", None),
        ],
    ),
    "ttl_counts_elapsed_time_across_the_spring_forward_change": (
        # 02:00 CET -> 03:00 CEST: two wall-clock hours, one real hour
        {"marker_ttl": "1h", "timezone": MADRID},
        "20250330",
        [
            ("2025-03-30T01:30:00+01:00", "no marker for this date"),
            ("2025-03-30T03:29:59+02:00", None),
            ("2025-03-30T03:30:00+02:00", "expired at 2025-03-30T03:30:00+02:00 (marker_ttl 1h)"),
        ],
    ),
    "refresh_time_in_the_repeated_autumn_hour_counts_from_its_first_occurrence": (
        # 03:00 CEST -> 02:00 CET: 02:30 happens twice; the first one refreshes
        {"refresh_after": ["02:30"], "timezone": MADRID},
        "20251026",
        [
            ("2025-10-26T02:00:00+02:00", "no marker for this date"),
            ("2025-10-26T02:29:59+02:00", None),
            (
                "2025-10-26T02:15:00+01:00",
                "written before the 2025-10-26T02:30:00+02:00 refresh (refresh_after)",
            ),
            ("2025-10-26T02:45:00+01:00", None),
        ],
    ),
    "refresh_time_skipped_by_spring_forward_falls_one_real_hour_after_it": (
        # 02:30 does not exist on 2025-03-30 in Madrid: it is the instant 02:30 CET
        # would have been, 03:30 CEST; runs between 03:00 and 03:30 do not requery
        {"refresh_after": ["02:30"], "timezone": MADRID},
        "20250330",
        [
            ("2025-03-30T01:45:00+01:00", "no marker for this date"),
            ("2025-03-30T03:10:00+02:00", None),
            ("2025-03-30T03:29:59+02:00", None),
            (
                "2025-03-30T03:30:00+02:00",
                "written before the 2025-03-30T03:30:00+02:00 refresh (refresh_after)",
            ),
        ],
    ),
}


# Every case is checked to the second as a pure decision (test_decide_clock.py). A TTL
# and a refresh time also run end to end at their boundaries, explained by the workflow
# and counted at the warehouse: tests/redshift/test_freshness_at_server.py.
# A meta.yml's TTL and refresh times against the global ones: decided in
# tests/unit/test_freshness_decisions.py, explained by a dry run in
# test_dry_run_explains_every_decision_and_changes_nothing below.


# --- ignoring every marker ---------------------------------------------------


# The environment variable's forcing of every recipe, counted at the warehouse:
# tests/redshift/test_freshness_at_server.py.
def test_ignore_all_markers_forces_every_recipe_and_date_whatever_the_command_line(workflow):
    """ignore_all_markers in a config file (here an extra --configfile) forces every recipe
    and date, and --config cannot switch it off."""
    workflow.add_recipe("second", sql=DAY_SQL, meta={"output_columns": ["lead_id"]})
    dates = ("20250511", DAY)
    pairs = {(r, d) for r in (RECIPE, "second") for d in dates}
    days = {"date": DAY, "since": dates[0], "recipes": [RECIPE, "second"]}
    now = "2025-05-12T10:00:00+00:00"
    # only the markers matter here: no analysis
    assert run(workflow, now, "--until", "redshift_extract", config=days).queries == len(pairs)
    run_ids = {pair: marker(workflow, *pair)["run_id"] for pair in pairs}
    ops = workflow.root / "config" / "ops.yaml"
    ops.write_text("ignore_all_markers: true\n")

    forced = run(
        workflow,
        now,
        *("--configfile", "config/config.yaml", str(ops)),
        *("--until", "redshift_extract"),
        config={**days, "ignore_all_markers": False, "ignore_redshift_marker": False},
    )

    assert extracted(forced) == pairs
    assert forced.queries == len(pairs)
    for recipe, day in pairs:
        assert explanation(forced, recipe, day) == "will query: forced by ignore_all_markers=true"
        assert marker(workflow, recipe, day)["run_id"] != run_ids[recipe, day]
    assert forced.output.count("reason: Forced execution") == len(pairs)
    # without that file, the markers count again
    assert run(workflow, now, "-n", config=days).queries == 0


# --- the SQL text ---------------------------------------------------------------
# An edit queries again, a touch or checkout of the same text does not, the marker
# records the SQL's sha256: tests/redshift/test_freshness_at_server.py.


# --- the day boundary ---------------------------------------------------------


def test_day_starting_at_six_puts_a_three_oclock_run_on_yesterdays_date(workflow):
    # Which date each hour belongs to, and a refresh time before the day start ending
    # the business day it belongs to (02:00 of run date 20250512 is 2025-05-13 02:00),
    # to the second, as pure decisions: tests/unit/test_freshness_decisions.py.
    config = {"recipe": RECIPE, "day_starts_at": "06:00"}

    three = run(workflow, "2025-05-13T03:00:00+00:00", config=config)
    still_yesterday = run(workflow, "2025-05-13T05:59:59+00:00", "-n", config=config)
    # only the markers matter from here: no analysis
    new_day = run(
        workflow, "2025-05-13T06:00:00+00:00", "--until", "redshift_extract", config=config
    )

    assert_decision(three, RECIPE, DAY, "no marker for this date")
    recorded = marker(workflow)
    summary = json.loads(workflow.summary(RECIPE, DAY).read_text())
    assert recorded["run_date"] == summary["run_date"] == DAY
    assert recorded["decided_at"] == summary["decided_at"] == "2025-05-13T03:00:00+00:00"
    assert recorded["queried_at"] == "2025-05-13T03:00:00+00:00"
    assert_decision(still_yesterday, RECIPE, DAY, None)
    assert not still_yesterday.jobs
    assert_decision(new_day, RECIPE, "20250513", "no marker for this date")
    assert marker(workflow, day="20250513")["decided_at"] == "2025-05-13T06:00:00+00:00"
    assert marker(workflow) == recorded  # yesterday's kept


# --- the explanation, and the one mechanism behind it -------------------------


def markers_list(workflow, now: str) -> list[dict]:
    """``markers list --json`` in the copy, with the clock and environment of its runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.markers", "list", "--json"],
        cwd=workflow.root,
        env=clean_env(LEAD_RECOVERY_NOW=now, TZ="UTC"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def test_dry_run_explains_every_decision_and_changes_nothing(workflow):
    # global: a 6h TTL and a 12:00 refresh; two recipes' meta.yml override one rule each
    configure(workflow, timezone="UTC", marker_ttl="6h", refresh_after=["12:00"])
    cases = {
        RECIPE: None,
        "ttl_recipe": "expired at 2025-05-12T09:00:00+00:00 (marker_ttl 1h)",
        "refresh_recipe": "written before the 2025-05-12T09:30:00+00:00 refresh (refresh_after)",
        "edited_recipe": "SQL changed since the marker (sha256 ",
        "no_cache_recipe": "marker present but cached extract missing",
        "no_marker_recipe": "no marker for this date",
    }
    meta = {"ttl_recipe": {"marker_ttl": "1h"}, "refresh_recipe": {"refresh_after": ["09:30"]}}
    for name in list(cases)[1:]:
        workflow.add_recipe(
            name, sql=DAY_SQL, meta={"output_columns": ["lead_id"], **meta.get(name, {})}
        )
    # the markers and extracts are what the decisions read: no analysis needed
    assert run(workflow, "2025-05-12T08:00:00+00:00", "--until", "redshift_extract").queries == 6
    sql = workflow.root / "recipes/edited_recipe/redshift.sql"
    sql.write_text(sql.read_text() + "-- edited\n")
    workflow.leads("no_cache_recipe", DAY).unlink()  # the day's extract, gone from everywhere
    for extract in workflow.leads("no_cache_recipe", DAY).parent.glob("extracts/*.parquet"):
        extract.unlink()
    workflow.marker("no_marker_recipe", DAY).unlink()
    workflow.leads(RECIPE, DAY).unlink()  # only this checkout's copy: the store still has it
    before = workflow.snapshot()
    now = "2025-05-12T10:00:00+00:00"

    dry = run(workflow, now, "-n")
    forced = run(workflow, now, "-n", config={"ignore_redshift_marker": True})
    noon = run(workflow, "2025-05-12T12:00:01+00:00", "-n")
    listed = {entry["recipe"]: entry for entry in markers_list(workflow, now)}

    assert workflow.snapshot() == before
    for name, reason in cases.items():
        said = explanation(dry, name, DAY)
        if reason is None:  # its copy comes from the store: a job, but no query
            assert said == (
                "marker counts (queried 2025-05-12T08:00:00+00:00); this checkout's copy comes "
                "from the store (no query)"
            )
            assert (name, DAY) in extracted(dry)
            assert listed[name]["counts"] is True
        else:
            assert said.startswith(f"will query: {reason}"), said
            assert (name, DAY) in extracted(dry)
            if name in listed:  # `markers list` gives the reason the dry run gives
                assert listed[name]["counts"] is False
                assert f"will query: {listed[name]['reason']}" == said
    assert dry.queries == 5
    assert dry.output.count("reason: Forced execution") == 3  # ttl, refresh, edited SQL
    assert "no_marker_recipe" not in listed
    # ignore_redshift_marker forces every marker there is; a missing one needs no forcing
    for name in cases:
        if name == "no_marker_recipe":
            assert explanation(forced, name, DAY) == "will query: no marker for this date"
        elif name == "no_cache_recipe":
            assert explanation(forced, name, DAY) == (
                "will query: marker present but cached extract missing"
            )
        else:
            assert explanation(forced, name, DAY) == (
                "will query: forced by ignore_redshift_marker=true"
            )
    assert forced.queries == 6
    # the global 12:00 refresh; refresh_recipe's meta.yml replaced the list with its 09:30
    assert explanation(noon, RECIPE, DAY) == (
        "will query: written before the 2025-05-12T12:00:00+00:00 refresh (refresh_after)"
    )
    assert explanation(noon, "refresh_recipe", DAY) == f"will query: {cases['refresh_recipe']}"


def test_snakemake_is_the_pinned_version_whose_forcing_internals_we_use():
    """engine.force writes into ``workflow.dag.forcefiles``, where
    ``--forcerun <file>`` puts its files. An upgrade must re-verify that: this
    fails on any other version, or if those internals move."""
    import snakemake
    import snakemake.api  # noqa: F401 - snakemake.dag imports cleanly only after it
    from snakemake.dag import DAG

    assert snakemake.__version__ == PINNED_SNAKEMAKE
    assert f'"snakemake=={PINNED_SNAKEMAKE}"' in (REPO / "pyproject.toml").read_text()
    assert f'min_version("{PINNED_SNAKEMAKE}")' in (REPO / "Snakefile").read_text()
    assert "self.forcefiles = set()" in inspect.getsource(DAG.__init__)
    assert "self.forcefiles.isdisjoint(job.output)" in inspect.getsource(DAG.update_needrun)
    assert "workflow.dag.forcefiles.update(" in (REPO / "lead_recovery/engine.py").read_text()
