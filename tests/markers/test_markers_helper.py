"""The ``markers`` helper on its own: list, check, create, delete, prune, the seed's
``--action`` form, old and broken markers, and where it looks.

Markers and cached extracts are written here with the package's own functions;
tests/markers/test_markers_workflow.py checks the helper against real runs.
"""

import json
import os

import pyarrow.parquet as pq
import pytest

from lead_recovery import lease, markers, recipes
from lead_recovery.store import FolderStore
from tests.unit.test_cli_decisions import (
    BAD_MARKERS_END_TO_END,
    CORRUPT_END_TO_END,
    LEGACY_END_TO_END,
)

RECIPE = "simulation_to_handoff"
DAY = "20250512"  # the run date of the pinned clock (conftest.NOW)
OLD = "20250401"


def json_marker(workflow, recipe=RECIPE, day=DAY, **fields):
    record = {
        "recipe": recipe,
        "run_date": day,
        "queried_at": "2025-05-12T08:00:00+00:00",
        "rows": 3,
        "sql_sha256": recipes.sql_sha256(
            (workflow.root / "recipes" / RECIPE / "redshift.sql").read_text()
        ),
        **fields,
    }
    path = workflow.marker(recipe, day)
    markers.write_marker(path, record)
    return path


# --------------------------------------------------------------------------- list


def test_list_with_no_markers(helper):
    result = helper("list")

    assert result.returncode == 0, result.output
    assert "no markers" in result.stdout


def test_list_shows_every_marker_with_its_details(workflow, helper, cache):
    json_marker(workflow)
    cache(RECIPE)
    json_marker(workflow, day=OLD, rows=7)

    result = helper("list")

    assert result.returncode == 0, result.output
    today = result.row(RECIPE, DAY)
    assert f"{DAY}*" in today  # the current run date
    assert "2025-05-12T08:00:00+00:00" in today
    assert " 3 " in today and "2h0m" in today and "present" in today
    assert today.rstrip().endswith("COUNTS")
    old = result.row(RECIPE, OLD)
    assert " 7 " in old and "missing" in old
    assert "NO: marker present but cached extract missing" in old
    assert "2 marker(s), 1 counting" in result.stdout


def test_list_json(workflow, helper, cache):
    json_marker(workflow)
    cache(RECIPE)

    [entry] = helper("list", "--json").json()

    assert entry["recipe"] == RECIPE and entry["run_date"] == DAY
    assert entry["current_run_date"] is True
    assert entry["format"] == "json"
    assert entry["queried_at"] == "2025-05-12T08:00:00+00:00"
    assert entry["rows"] == 3
    assert entry["age_s"] == 7200
    assert entry["cache_present"] is True
    assert entry["counts"] is True and entry["reason"] is None
    assert entry["path"] == str(workflow.marker(RECIPE, DAY))


def test_list_filters_by_recipe_and_date(workflow, helper):
    workflow.add_recipe("other", sql="SELECT 1 AS lead_id")
    json_marker(workflow)
    json_marker(workflow, day=OLD)
    json_marker(workflow, recipe="other")

    by_recipe = helper("list", "--recipe", "other", "--json").json()
    by_date = helper("list", "--date", OLD, "--json").json()

    assert [(e["recipe"], e["run_date"]) for e in by_recipe] == [("other", DAY)]
    assert [(e["recipe"], e["run_date"]) for e in by_date] == [(RECIPE, OLD)]


# Each timestamp form and each broken marker, in process: tests/unit/test_cli_decisions.py
# (LEGACY, CORRUPT); one of each here, as users start the helper.
@pytest.mark.parametrize("content", LEGACY_END_TO_END)
def test_list_reads_the_previous_systems_timestamp_markers(workflow, helper, cache, content):
    workflow.marker(RECIPE, DAY).parent.mkdir(parents=True)
    workflow.marker(RECIPE, DAY).write_text(content)
    cache(RECIPE)

    [entry] = helper("list", "--json").json()
    table = helper("list")

    assert entry["format"] == "legacy"
    assert entry["queried_at"].startswith("2025-05-12T08:00:00")
    assert entry["rows"] is None
    assert entry["counts"] is True
    assert "legacy" in table.row(RECIPE, DAY)
    assert table.row(RECIPE, DAY).rstrip().endswith("COUNTS")


@pytest.mark.parametrize(("content", "problem"), CORRUPT_END_TO_END)
def test_list_shows_a_corrupt_marker_as_such(workflow, helper, cache, content, problem):
    json_marker(workflow, day=OLD)
    path = workflow.marker(RECIPE, DAY)
    path.write_bytes(content)
    cache(RECIPE)

    result = helper("list")
    entries = {e["run_date"]: e for e in helper("list", "--json").json()}

    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output
    assert "corrupt" in result.row(RECIPE, DAY)
    assert f"NO: marker unreadable ({problem})" in result.row(RECIPE, DAY)
    assert entries[DAY]["format"] == "corrupt" and entries[DAY]["problem"] == problem
    assert entries[DAY]["counts"] is False
    assert entries[OLD]["format"] == "json"  # the others are still listed


def test_list_shows_an_unreadable_marker_file(workflow, helper):
    if os.geteuid() == 0:
        # root reads any file; a directory with a marker's name is unreadable for everyone
        workflow.marker(RECIPE, DAY).mkdir(parents=True)
    else:
        json_marker(workflow).chmod(0)

    result = helper("list", "--json")

    assert result.returncode == 0, result.output
    [entry] = result.json()
    assert entry["format"] == "corrupt"
    assert entry["problem"] == "not a regular file"


# --------------------------------------------------------------------------- why not


def test_list_says_why_a_marker_does_not_count(workflow, helper, cache, set_config):
    """Each reason the workflow can have, in the workflow's own words."""
    workflow.add_recipe(
        "ttl_recipe",
        sql="SELECT 1 AS lead_id",
        meta={"output_columns": ["lead_id"], "marker_ttl": "1h"},
    )
    workflow.add_recipe(
        "refreshed",
        sql="SELECT 2 AS lead_id",
        meta={"output_columns": ["lead_id"], "refresh_after": ["09:00"]},
    )
    workflow.add_recipe("edited", sql="SELECT 3 AS lead_id")
    workflow.add_recipe("by_hand", csv="lead_id\n1\n")
    for name in ("ttl_recipe", "refreshed", "edited", "by_hand"):
        json_marker(workflow, recipe=name, sql_sha256=None)
        cache(name)
    json_marker(workflow, recipe="edited", sql_sha256="0" * 64)
    json_marker(workflow, recipe="removed_recipe")
    json_marker(workflow)  # no cache for this one

    result = helper("list")

    assert result.returncode == 0, result.output
    assert "NO: expired at 2025-05-12T09:00:00+00:00 (marker_ttl 1h)" in result.row(
        "ttl_recipe", DAY
    )
    assert "NO: written before the 2025-05-12T09:00:00+00:00 refresh (refresh_after)" in (
        result.row("refreshed", DAY)
    )
    assert "NO: SQL changed since the marker (sha256 000000000000 ->" in result.row("edited", DAY)
    assert "n/a: recipe has no redshift.sql" in result.row("by_hand", DAY)
    assert "n/a: no recipe folder recipes/removed_recipe/" in result.row("removed_recipe", DAY)
    assert "NO: marker present but cached extract missing" in result.row(RECIPE, DAY)


def test_list_says_when_markers_are_forced(workflow, helper, cache, set_config):
    json_marker(workflow)
    cache(RECIPE)

    by_env = helper("list", env={"LEAD_RECOVERY_IGNORE_MARKERS": "1"})
    set_config(ignore_all_markers=True)
    by_config = helper("list")

    assert "NO: forced by LEAD_RECOVERY_IGNORE_MARKERS=1" in by_env.row(RECIPE, DAY)
    assert "NO: forced by ignore_all_markers=true" in by_config.row(RECIPE, DAY)


def test_global_ttl_from_the_config(workflow, helper, cache, set_config):
    json_marker(workflow)
    cache(RECIPE)
    set_config(marker_ttl="3h")

    counts = helper("list").row(RECIPE, DAY)
    later = helper("list", env={"LEAD_RECOVERY_NOW": "2025-05-12T11:30:00+00:00"})

    assert counts.rstrip().endswith("COUNTS")
    assert "NO: expired at 2025-05-12T11:00:00+00:00 (marker_ttl 3h)" in later.row(RECIPE, DAY)


def test_list_shows_who_is_querying_now(workflow, helper, cache):
    json_marker(workflow)
    cache(RECIPE)
    other = "manual_leads_2"
    store = FolderStore(workflow.root / "results")
    with (
        lease.held(store, RECIPE, DAY, wait_s=1),
        lease.held(store, other, DAY, wait_s=1),
    ):
        shown = helper("list")
        as_json = json.loads(helper("list", "--json").stdout)
    assert shown.returncode == 0, shown.output
    holder = f"pid {os.getpid()}"
    assert "QUERYING NOW by" in shown.row(RECIPE, DAY) and holder in shown.row(RECIPE, DAY)
    assert "being queried" in shown.row(other, DAY)  # its first query: no marker yet
    leases = {(r["recipe"], r["lease"]["pid"]) for r in as_json if r["lease"]}
    assert leases == {(RECIPE, os.getpid()), (other, os.getpid())}
    after = json.loads(helper("list", "--json").stdout)
    assert [r["lease"] for r in after] == [None]  # released: nobody is querying


# --------------------------------------------------------------------------- check


def test_check_both_present(workflow, helper, cache):
    json_marker(workflow)
    cache(RECIPE)

    result = helper("check", RECIPE)

    assert result.returncode == 0, result.output
    assert "marker present" in result.stdout and "cached extract present" in result.stdout
    assert "marker counts; the next run does not query" in result.stdout


def test_check_says_which_is_missing(workflow, helper, cache):
    nothing = helper("check", RECIPE)
    cache(RECIPE)
    no_marker = helper("check", RECIPE)
    json_marker(workflow, day=OLD)
    no_cache = helper("check", RECIPE, "--date", OLD)

    assert nothing.returncode == 1
    assert "no marker" in nothing.stdout and "cached extract missing" in nothing.stdout
    assert no_marker.returncode == 1
    assert "no marker" in no_marker.stdout and "cached extract present" in no_marker.stdout
    assert "the next run queries: no marker for this date" in no_marker.stdout
    assert no_cache.returncode == 1
    assert "marker present" in no_cache.stdout and "cached extract missing" in no_cache.stdout


def test_check_an_unreadable_marker(workflow, helper, cache):
    json_marker(workflow).write_text("{broken")
    cache(RECIPE)

    result = helper("check", RECIPE)

    assert result.returncode == 1
    assert "marker unreadable: not valid JSON" in result.stdout


def test_check_strict_also_needs_the_marker_to_count(workflow, helper, cache, set_config):
    json_marker(workflow)
    cache(RECIPE)
    set_config(marker_ttl="1h")

    plain = helper("check", RECIPE)
    strict = helper("check", RECIPE, "--strict")

    assert plain.returncode == 0
    assert strict.returncode == 1
    assert "the next run queries: expired at 2025-05-12T09:00:00+00:00" in strict.stdout


# --------------------------------------------------------------------------- create


def test_create_needs_the_cached_extract(workflow, helper):
    before = workflow.snapshot()

    result = helper("create", RECIPE)

    assert result.returncode == 1
    assert result.stderr.startswith("markers: refused:")
    assert "no cached extract" in result.stderr and "--force" in result.stderr
    assert not workflow.marker(RECIPE, DAY).exists()
    assert workflow.snapshot() == before


def test_create_writes_a_marker_like_the_workflows(workflow, helper, cache):
    leads = cache(RECIPE, rows=5)

    result = helper("create", RECIPE)

    assert result.returncode == 0, result.output
    path = workflow.marker(RECIPE, DAY)
    record = json.loads(path.read_text())
    sql = (workflow.root / "recipes" / RECIPE / "redshift.sql").read_text()
    assert record["recipe"] == RECIPE and record["run_date"] == DAY
    assert record["queried_at"] == "2025-05-12T10:00:00+00:00"
    assert record["rows"] == 5 == pq.read_metadata(leads).num_rows
    assert record["sql_sha256"] == recipes.sql_sha256(sql)
    assert record["duration_s"] is None
    assert "@" in record["user@host"]
    assert record["created_by"] == "markers create"
    assert markers.read_marker(path).format == "json"
    assert path.stat().st_mtime_ns == leads.stat().st_mtime_ns  # dated like its data
    assert helper("check", RECIPE).returncode == 0


def test_create_for_another_date(workflow, helper, cache):
    cache(RECIPE, OLD)

    assert helper("create", RECIPE, "--date", OLD).returncode == 0
    assert json.loads(workflow.marker(RECIPE, OLD).read_text())["run_date"] == OLD
    assert not workflow.marker(RECIPE, DAY).exists()


def test_create_leaves_an_existing_marker_unless_forced(workflow, helper, cache):
    cache(RECIPE)
    path = json_marker(workflow)
    original = path.read_text()

    kept = helper("create", RECIPE)
    assert kept.returncode == 0 and "already exists" in kept.stdout
    assert path.read_text() == original

    forced = helper("create", RECIPE, "--force")
    assert forced.returncode == 0
    assert json.loads(path.read_text())["created_by"] == "markers create"


def test_create_replaces_a_corrupt_marker(workflow, helper, cache):
    cache(RECIPE)
    json_marker(workflow).write_text("garbage")

    result = helper("create", RECIPE)

    assert result.returncode == 0, result.output
    assert "replacing unreadable marker" in result.stdout
    assert markers.read_marker(workflow.marker(RECIPE, DAY)).format == "json"


def test_create_refuses_an_unreadable_cache(workflow, helper):
    workflow.leads(RECIPE, DAY).parent.mkdir(parents=True)
    workflow.leads(RECIPE, DAY).write_text("not parquet")

    refused = helper("create", RECIPE)
    forced = helper("create", RECIPE, "--force")

    assert refused.returncode == 1 and "not a readable Parquet file" in refused.stderr
    assert forced.returncode == 0
    assert json.loads(workflow.marker(RECIPE, DAY).read_text())["rows"] is None


def test_create_with_force_and_no_cache_warns(workflow, helper):
    result = helper("create", RECIPE, "--force")

    assert result.returncode == 0
    assert "warning: no cached extract" in result.stdout
    assert json.loads(workflow.marker(RECIPE, DAY).read_text())["rows"] is None


def test_create_refuses_a_recipe_without_sql(workflow, helper, cache):
    cache("manual_leads")
    before = workflow.snapshot()

    result = helper("create", "manual_leads")

    assert result.returncode == 2
    assert "has no redshift.sql" in result.stderr
    assert workflow.snapshot() == before


# --------------------------------------------------------------------------- delete and prune


def test_delete_one_date(workflow, helper):
    json_marker(workflow)
    json_marker(workflow, day=OLD)

    today = helper("delete", RECIPE)
    old = helper("delete", RECIPE, "--date", OLD)
    again = helper("delete", RECIPE)

    assert today.returncode == old.returncode == 0
    assert not workflow.marker(RECIPE, DAY).exists()
    assert not workflow.marker(RECIPE, OLD).exists()
    assert again.returncode == 0 and "no marker to delete" in again.stdout


def test_delete_all_dates_leaves_other_recipes_and_caches(workflow, helper, cache):
    workflow.add_recipe("other", sql="SELECT 1 AS lead_id")
    for day in (DAY, OLD, "20250301"):
        json_marker(workflow, day=day)
    json_marker(workflow, recipe="other")
    leads = cache(RECIPE)

    result = helper("delete", RECIPE, "--all-dates")

    assert result.returncode == 0, result.output
    assert "3 marker(s) deleted" in result.stdout
    listed = markers.list_markers(FolderStore(workflow.root / "results"))
    assert [(m.recipe, m.run_date, m.record) for m in listed] == [
        ("other", DAY, markers.read_marker(workflow.marker("other", DAY)).record)
    ]
    assert leads.is_file()


def test_markers_of_a_removed_recipe_can_be_deleted(workflow, helper):
    json_marker(workflow, recipe="gone")

    result = helper("delete", "gone")

    assert result.returncode == 0, result.output
    assert not workflow.marker("gone", DAY).exists()


def test_prune_older_than(workflow, helper):
    old = json_marker(workflow, day=OLD, queried_at="2025-04-01T08:00:00+00:00")
    recent = json_marker(workflow, day="20250510", queried_at="2025-05-10T08:00:00+00:00")
    today = json_marker(workflow, queried_at="2025-01-01T08:00:00+00:00")  # never pruned
    # A later run date (a run with --date ahead, or another zone's today): never pruned either.
    ahead = json_marker(workflow, day="20250513", queried_at="2025-01-01T08:00:00+00:00")
    broken = workflow.marker(RECIPE, "20250101")
    broken.write_text("garbage")
    os.utime(broken, (1735718400, 1735718400))  # 2025-01-01: its file time is its age

    dry = helper("prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0 and "would delete 2 of 5" in dry.stdout
    assert old.exists() and broken.exists()

    result = helper("prune", "--older-than", "30d")

    assert result.returncode == 0, result.output
    assert "deleted 2 of 5" in result.stdout
    assert not old.exists() and not broken.exists()
    assert recent.exists() and today.exists() and ahead.exists()


# --------------------------------------------------------------------------- the seed's form


def test_the_seeds_action_form(workflow, helper, cache):
    cache(RECIPE)

    listed_empty = helper("--action", "list")
    checked_before = helper("--recipe", RECIPE, "--action", "check")
    created = helper("--recipe", RECIPE, "--action", "create")
    listed = helper("--action", "list")
    checked = helper("--recipe", RECIPE, "--action", "check")
    deleted = helper("--recipe", RECIPE, "--action", "delete")
    checked_after = helper("--action", "check", "--recipe", RECIPE)

    assert listed_empty.returncode == 0 and "no markers" in listed_empty.stdout
    assert checked_before.returncode == 1
    assert created.returncode == 0
    assert listed.returncode == 0 and "COUNTS" in listed.row(RECIPE, DAY)
    assert checked.returncode == 0
    assert deleted.returncode == 0 and not workflow.marker(RECIPE, DAY).exists()
    assert checked_after.returncode == 1


# --------------------------------------------------------------------------- where it looks


def test_it_looks_where_the_config_says(workflow, helper, cache, set_config, tmp_path):
    shared = tmp_path / "shared store"
    set_config(store=str(shared))
    markers.write_marker(
        markers.marker_path(shared / "markers", RECIPE, DAY),
        {"queried_at": "2025-05-12T08:00:00+00:00"},
    )
    json_marker(workflow, day=OLD)  # in results/markers, which is no longer the store's

    listed = helper("list", "--json").json()

    assert [(e["run_date"], e["path"]) for e in listed] == [
        (DAY, markers.marker_path(shared / "markers", RECIPE, DAY))
    ]


def test_store_and_marker_dir_options(workflow, helper, tmp_path):
    other = tmp_path / "elsewhere"
    markers.write_marker(
        markers.marker_path(other / "markers", RECIPE, OLD),
        {"queried_at": "2025-04-01T08:00:00+00:00"},
    )
    json_marker(workflow)

    listed = helper("list", "--store", str(other), "--json").json()
    relative = helper("--marker-dir", "../elsewhere/markers", "list", "--json", cwd=workflow.root)
    not_markers = helper("list", "--marker-dir", str(other), "--json")

    assert [e["run_date"] for e in listed] == [OLD]
    assert [e["run_date"] for e in relative.json()] == [OLD]
    assert not_markers.returncode == 2 and "name a store's markers folder" in not_markers.stderr


def test_repo_option_from_another_directory(workflow, helper, tmp_path):
    json_marker(workflow)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = helper("list", "--json", "--repo", str(workflow.root), cwd=elsewhere)

    assert result.returncode == 0, result.output
    assert [e["path"] for e in result.json()] == [str(workflow.marker(RECIPE, DAY))]


def test_today_follows_the_configured_zone_and_day_start(workflow, helper, cache, set_config):
    set_config(timezone="America/Mexico_City", day_starts_at="06:00")
    # 2025-05-12 10:00 UTC is 04:00 in Mexico City: before the day starts -> 20250511
    cache(RECIPE, "20250511")

    result = helper("create", RECIPE)

    assert result.returncode == 0, result.output
    assert workflow.marker(RECIPE, "20250511").exists()
    record = json.loads(workflow.marker(RECIPE, "20250511").read_text())
    assert record["queried_at"] == "2025-05-12T04:00:00-06:00"


# --------------------------------------------------------------------------- bad input


# Every bad input's line, in process: tests/unit/test_cli_decisions.py (BAD_MARKERS); one
# of each kind here, as users start the helper.
@pytest.mark.parametrize(("args", "expected"), BAD_MARKERS_END_TO_END)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(workflow, helper, cache, args, expected):
    json_marker(workflow)
    json_marker(workflow, day=OLD)
    cache(RECIPE)
    before = workflow.snapshot()

    result = helper(*args)

    assert result.returncode == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("markers: error: ")
    assert expected in line
    assert workflow.snapshot() == before


def test_a_bad_config_is_a_one_line_error(workflow, helper, set_config):
    set_config(timezone="Mars/Olympus")

    result = helper("list")

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "markers: error: timezone 'Mars/Olympus' is not a known IANA time zone "
        "(e.g. 'Europe/Madrid')"
    )


def test_help_describes_both_forms(helper):
    result = helper("--help")

    assert result.returncode == 0
    for word in ("list", "check", "create", "delete", "prune", "--action", "--marker-dir"):
        assert word in result.stdout
    assert "Examples:" in result.stdout
    assert "lead-recovery markers prune --older-than 30d --dry-run" in result.stdout


@pytest.mark.parametrize("via", ["lead-recovery", "console", "script", "module"])
def test_every_way_in_lists_the_same_markers(workflow, helper, lead_recovery, cache, via):
    """`lead-recovery markers`, and its aliases: `markers`, the script, the module (these
    two in the seed's ``--action`` form)."""
    cache(RECIPE)
    json_marker(workflow)

    if via == "lead-recovery":
        result = lead_recovery("markers", "list", "--json", via="console")
    elif via == "console":
        result = helper("list", "--json", via=via)
    else:  # the script and the module, in the seed's form
        result = helper("--action", "list", "--json", via=via)

    assert result.returncode == 0, result.output
    assert [(e["recipe"], e["run_date"], e["counts"]) for e in result.json()] == [
        (RECIPE, DAY, True)
    ]
