# Helpers for the rules: configuration, recipe selection, run dates, targets,
# and the one mechanism that makes Snakemake re-query a marker that no longer
# counts. Everything here runs at parse time (dry runs too), so it only reads.
import os
import re
import sys
from pathlib import Path

from snakemake.logging import logger

from lead_recovery import freshness, jobs, layout, markers, rundate
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.errors import LeadRecoveryError


def _stop(err):
    """A one-line error and exit 1 instead of a parse-time traceback."""
    print(f"lead-recovery: error: {err}", file=sys.stderr)
    sys.exit(1)


try:
    lr_config.validate(
        config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
    )
    RECIPES_DIR = os.path.normpath(config["recipes_dir"])
    RESULTS = os.path.normpath(config["results_dir"])
    LOGS = os.path.normpath(config["logs_dir"])
    MARKER_DIR = os.path.normpath(config["marker_dir"])
    TZ = rundate.zone(config.get("timezone"))
    RUN = rundate.resolve(
        config.get("date"), config.get("timezone"), config.get("day_starts_at", "00:00")
    )
    DATES = (
        rundate.date_range(config["since"], RUN.date)
        if config.get("since") not in (None, "")
        else [RUN.date]
    )
    ALL_RECIPES = lr_recipes.discover(RECIPES_DIR)
    _chosen = [config["recipe"]] if config.get("recipe") not in (None, "") else []
    _chosen += config.get("recipes") or []
    SELECTED = {
        r.name: r
        for r in (
            lr_recipes.load(RECIPES_DIR, name) for name in (_chosen or ALL_RECIPES)
        )
    }
    SKIP_REDSHIFT = bool(config.get("skip_redshift"))
    # ignore_all_markers set in any config file holds "whatever the command
    # line says": a --config override cannot switch it back off.
    if any(
        (lr_config.load_yaml(f, "config file") or {}).get("ignore_all_markers") is True
        for f in dict.fromkeys(workflow.configfiles)
    ):
        config["ignore_all_markers"] = True
    for _ttl in [config.get("marker_ttl")] + [r.marker_ttl for r in SELECTED.values()]:
        if _ttl:
            freshness.parse_duration(_ttl)
except LeadRecoveryError as err:
    _stop(err)

jobs.announce_invocation(RUN)


def _alternatives(names):
    """A wildcard regex matching exactly these recipe names (nothing if none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


SQL_RECIPES = [n for n in ALL_RECIPES if lr_recipes.has_sql(RECIPES_DIR, n)]
CSV_RECIPES = [n for n in ALL_RECIPES if n not in SQL_RECIPES]


wildcard_constraints:
    recipe=r"[^/\\]+",
    date=r"\d{8}",


def uses_redshift(name):
    return SELECTED[name].sql_path is not None and not SKIP_REDSHIFT


def all_targets():
    """Each selected recipe's day: marker and cache (so Snakemake checks them), analysis."""
    targets = []
    for name in SELECTED:
        for day in DATES:
            if uses_redshift(name):
                targets.append(markers.marker_path(MARKER_DIR, name, day))
                targets.append(layout.leads_path(RESULTS, name, day))
            targets.append(layout.analysis_path(RESULTS, name, day))
            targets.append(layout.summary_path(RESULTS, name, day))
        if latest_date(name) == max(DATES):
            targets.append(layout.latest_path(RESULTS, name))
    return targets


def latest_date(name):
    """The date latest.csv should point at: ours, unless a newer analysis exists."""
    newer = [d for d in layout.analysed_dates(RESULTS, name) if d > max(DATES)]
    return newer[-1] if newer else max(DATES)


_DECIDED = {}


def marker_decision(name, day):
    """Decide once whether (recipe, day)'s marker counts, and tell the user."""
    key = (name, day)
    if key not in _DECIDED:
        found, decision = freshness.assess(
            SELECTED[name],
            day,
            marker_dir=MARKER_DIR,
            results_dir=RESULTS,
            policy=freshness.policy_for(SELECTED[name], config, os.environ),
            now=RUN.decided_at,
            tz=TZ,
        )
        _DECIDED[key] = decision
        if decision.counts:
            when = found.queried_at.isoformat(timespec="seconds")
            logger.info(f"{name} {day}: marker counts (queried {when}); no query")
        else:
            logger.info(f"{name} {day}: will query: {decision.reason}")
        if decision.force:
            _force(
                markers.marker_path(MARKER_DIR, name, day),
                layout.leads_path(RESULTS, name, day),
            )
    return _DECIDED[key]


def _force(*paths):
    """Make Snakemake rerun the job producing ``paths``: the --forcerun mechanism.

    ``--forcerun`` is read before the Snakefile can see it, so a decision taken
    while the DAG is built goes straight into the DAG's forced files, exactly
    where ``--forcerun <file>`` puts them. tests/freshness/ guards this
    against Snakemake upgrades.
    """
    to_storage = workflow.modifier.path_modifier.apply_default_storage
    workflow.dag.forcefiles.update(to_storage(p) for p in paths)


def extract_inputs(wildcards):
    marker_decision(wildcards.recipe, wildcards.date)
    inputs = {"sql": ancient(SELECTED[wildcards.recipe].sql_path)}
    if config["warehouse"] == "duckdb":
        inputs["warehouse"] = ancient(config["duckdb"]["path"])
    return inputs


def leads_source(name):
    """Where analyze reads leads from: redshift, recipe_leads_csv or skipped_redshift."""
    return lr_recipes.leads_source(SELECTED[name], SKIP_REDSHIFT)


def skipped_redshift_leads(name):
    """With skip_redshift: the newest cached extract of any date, else leads.csv."""
    cached = layout.cached_extract_dates(RESULTS, name)
    if cached:
        return ancient(layout.leads_path(RESULTS, name, cached[-1]))
    recipe = SELECTED[name]
    if recipe.leads_csv is not None:
        return str(recipe.leads_csv)
    _stop(
        f"recipe '{name}': skip_redshift=true but there is no cached extract "
        f"under {RESULTS}/{name}/ and no {recipe.dir}/leads.csv"
    )


def analyze_inputs(wildcards):
    name, day = wildcards.recipe, wildcards.date
    recipe = SELECTED[name]
    inputs = {"meta": str(recipe.meta_path)}
    if recipe.analyzer is not None:
        inputs["analyzer"] = str(recipe.analyzer)
    source = leads_source(name)
    if source == "skipped_redshift":
        inputs["leads"] = skipped_redshift_leads(name)
    else:
        inputs["leads"] = layout.leads_path(RESULTS, name, day)
    if source == "redshift":
        inputs["marker"] = markers.marker_path(MARKER_DIR, name, day)
    return inputs
