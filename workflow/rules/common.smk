# Wiring between Snakemake and the lead_recovery package: the invocation's
# settings, targets and recipe selection (lead_recovery/invocation.py), the
# input functions through which each day is decided (lead_recovery/plan.py)
# and the hooks. Snakemake's internals are touched only in
# lead_recovery/engine.py. Nothing here holds state of its own.
import atexit
import os
import signal
import time
from pathlib import Path

from lead_recovery import cluster, engine, history, layout, markers, plan
from lead_recovery import recipes as lr_recipes
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.invocation import Invocation, claim_results, stop

# A quiet run (profiles/default) shows its decisions, not Snakemake's status lines.
if engine.is_main(workflow):
    engine.hide_status_lines(workflow)

try:
    INV = Invocation.build(
        config,
        Path(workflow.current_basedir) / "../schemas/config.schema.yaml",
        engine.configfiles(workflow),
    )
except LeadRecoveryError as err:
    stop(err)

RESULTS, LOGS, RECIPES_DIR = INV.results, INV.logs, INV.recipes_dir
STORE_URL = INV.store.url


wildcard_constraints:
    recipe=r"[^/\\]+",
    date=r"\d{8}",


# Two rules make a day's leads.parquet: recipe_leads for the recipes with only a
# leads.csv (few: their names are its constraint, and `ruleorder` prefers it),
# redshift_extract for any other name (a constraint listing every recipe is a
# regular expression Snakemake scans each time it fills in a path).
CSV_RECIPES = [
    n
    for n in lr_recipes.discover(RECIPES_DIR)
    if not lr_recipes.has_sql(RECIPES_DIR, n)
]
_alternatives = lr_recipes.names_pattern


def views(name, day):
    """This checkout's copies of a day's pair: the extract job's outputs."""
    return INV.views(name, day)


def extract_inputs(wildcards):
    """The demo warehouse when it is the warehouse; deciding the day on the way.

    redshift.sql is not an input: its edits are what the marker's sql_sha256
    tracks, and its time never counts. An unknown name misses its redshift.sql.
    """
    name = wildcards.recipe
    if name not in INV.selected or (
        not INV.uses_redshift(name) and not INV.skip_redshift
    ):
        return {"sql": f"{RECIPES_DIR}/{name}/{lr_recipes.SQL_FILE}"}
    if INV.uses_redshift(name):
        INV.decide_for_job(workflow, name, wildcards.date)
    return dict(_EXTRACT_INPUTS)


_EXTRACT_INPUTS = (
    {"warehouse": ancient(config["duckdb"]["path"])}
    if config["warehouse"] == "duckdb"
    else {}
)


def analyze_inputs(wildcards):
    name, day = wildcards.recipe, wildcards.date
    INV.hold_checkout(workflow)
    inputs = dict(_ANALYZE_INPUTS[name])
    source = INV.leads_source(name)
    if source == "skipped_redshift":
        inputs["leads"] = ancient(INV.skipped(name, day))
    else:
        inputs["leads"] = layout.leads_path(RESULTS, name, day)
    if source == "redshift":
        inputs["marker"] = str(views(name, day).marker)
    return inputs


def latest_analysis_input():
    """latest.csv's input: a plain pattern when every recipe points at this run's last
    date (the daily case), else a function."""
    if all(INV.latest_date(name) == max(INV.dates) for name in INV.selected):
        return layout.analysis_path(RESULTS, "{recipe}", max(INV.dates))
    return engine.signature_once(
        lambda wildcards: layout.analysis_path(
            RESULTS, wildcards.recipe, INV.latest_date(wildcards.recipe)
        )
    )


extract_inputs = engine.signature_once(extract_inputs)
analyze_inputs = engine.signature_once(analyze_inputs)


def job_resources(step):
    """``mem_mb``, ``runtime`` and ``cpus_per_task`` of ``step``'s jobs on a cluster: the
    config's ``resources``, overridden per recipe by its meta.yml."""
    defaults = config["resources"][step]

    def one(key):
        def value(wildcards):
            recipe = INV.selected.get(wildcards.recipe)
            own = recipe.resources.get(step, {}) if recipe is not None else {}
            return own.get(key, defaults[key])

        return engine.signature_once(value)

    return {key: one(key) for key in defaults}


# Per recipe, once: the recipe's own files every day's analysis reads.
_ANALYZE_INPUTS = {
    name: {
        "meta": str(recipe.meta_path),
        **({"analyzer": str(recipe.analyzer)} if recipe.analyzer is not None else {}),
    }
    for name, recipe in INV.selected.items()
}

# Computed once, before the rules: broken_recipe's constraint needs every broken recipe.
TARGETS = INV.targets()


def all_inputs(wildcards):
    """Rule all: the targets (a real run holds this checkout from here on)."""
    INV.hold_checkout(workflow)
    return TARGETS


# -- the Snakemake report's pages (rules/report.smk) --------------------------------

REPORT_PAGES = [
    f"{RESULTS}/report/{name}"
    for name in ("account.html", "rows_per_day.svg", "queries_per_day.svg")
]


def report_history_files(wildcards):
    """The run history's files of the report's period (on a folder store): the figures
    are redrawn when a run was recorded."""
    paths = [
        INV.store.local_path(p) for p in history.files(INV.store, INV.report_since)
    ]
    return [str(p) for p in paths if p is not None]


def report_pages(wildcards):
    """Rule all's report pages: asked for only by `snakemake --report` (a run, a dry run
    too, has an executor and never builds them)."""
    if engine.executing(workflow):
        return []
    if not all(os.path.exists(page) for page in REPORT_PAGES):
        print(
            "lead-recovery: no account or figures for the report yet: run "
            "`snakemake report_figures` first (`lead-recovery report --html` does both)"
        )
        return []
    return REPORT_PAGES


# -- a real run's start and end ------------------------------------------------------


def run_started():
    """onstart: a cluster that cannot take jobs stops the run here, in one line, before
    anything is submitted (lead_recovery/cluster.py); then the invocation starts."""
    if engine.executor_name(workflow) == "slurm":
        try:
            cluster.check_slurm(engine.default_resource(workflow, "slurm_partition"))
        except LeadRecoveryError as err:
            INV.stopped = True
            stop(err)
        lost_after = plan.parse_duration(
            config["slurm"]["controller_timeout"], "slurm.controller_timeout"
        )
        cluster.watch_slurm(lost_after.total_seconds(), _controller_lost)
    INV.started(workflow)
    claim_results(RESULTS)


def _controller_lost(message):
    """A controller gone mid-run: one line, then what Ctrl-C does (Snakemake cancels its
    jobs and ends; the account says what was not done)."""
    print(f"lead-recovery: error: {message}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    # The plugin can swallow one Ctrl-C while an sbatch to the dead controller is under
    # way, then wait on sacct for ever: ask again, then insist.
    for after, signum in ((20, signal.SIGINT), (40, signal.SIGTERM)):
        time.sleep(after)
        os.kill(os.getpid(), signum)


if engine.is_main(workflow):
    atexit.register(lambda: INV.finished(workflow))
