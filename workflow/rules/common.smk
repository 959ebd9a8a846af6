# Helpers for the rules: configuration, recipe selection, run dates, targets,
# and the one mechanism that makes Snakemake re-query a marker that no longer
# counts. What runs at parse and DAG time (dry runs too) only reads; the
# kept pairs are written only in onstart and at exit of a real run (cache.py).
import atexit
import functools
import os
import signal
import sys
import time
from pathlib import Path

from snakemake.common import get_function_params, overwrite_function_params
from snakemake.logging import logger

from lead_recovery import (
    account,
    cache,
    cluster,
    freshness,
    history,
    jobs,
    layout,
    lease,
    markerindex,
    markers,
    rundate,
    s3cache,
    store,
)
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.lease import LeaseTimeout


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
    for _key, _folder in (
        ("results_dir", RESULTS),
        ("marker_dir", MARKER_DIR),
        ("logs_dir", LOGS),
    ):
        store.writable_folder(_key, Path(_folder))
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
    SELECTED = {}
    # In a run of every recipe, one broken recipe is reported and fails the
    # run (rule broken_recipe), but never stops the others; a recipe named
    # on the command line fails fast.
    BROKEN = {}
    # Parsed meta.yml files by their stat; a real run saves it at exit.
    META_CACHE = lr_recipes.MetaCache(".snakemake/lead_recovery/meta_yml.json")
    for _name in _chosen or ALL_RECIPES:
        try:
            _recipe = lr_recipes.load(RECIPES_DIR, _name, META_CACHE)
        except LeadRecoveryError as err:
            if _chosen:
                raise
            BROKEN[str(_name)] = str(err)
            logger.error(f"lead-recovery: skipping recipe '{_name}': {err}")
        else:
            SELECTED[_recipe.name] = _recipe
    # ignore_all_markers set in any config file holds "whatever the command
    # line says": a --config override cannot switch it back off.
    if any(
        (lr_config.load_yaml(f, "config file") or {}).get("ignore_all_markers") is True
        for f in dict.fromkeys(workflow.configfiles)
    ):
        config["ignore_all_markers"] = True
    if config.get("marker_ttl"):
        freshness.parse_duration(config["marker_ttl"])
    REPORT_SINCE = history.since_instant(
        str(config["report_since"]), RUN.decided_at, "report_since"
    )
except LeadRecoveryError as err:
    _stop(err)

jobs.announce_invocation(RUN)


# -- the store: local folders, or s3://bucket/prefix (lead_recovery/store.py) ------


def open_the_store():
    """The store; on S3 proven usable now (one line if not), before any warehouse query."""
    try:
        opened = store.open_store(config, remember=True)
        if store.is_remote(opened):
            opened.preflight()
    except LeadRecoveryError as err:
        _stop(err)
    return opened


STORE = open_the_store()
REMOTE = STORE if store.is_remote(STORE) else None


if REMOTE:

    # Snakemake's S3 plugin takes endpoint and credentials from the standard AWS
    # settings (boto3's chain), but its region from its own setting, which
    # defaults to us-east-1 whatever AWS_REGION or the profile says. Hand it the
    # region our own requests are signed for (store.aws_region); nothing else,
    # and never a credential.
    storage:
        provider="s3",
        region=REMOTE.region,


def stored(path, published_by_job=False):
    """A marker's or cached extract's path as the rules name it.

    On S3, a Snakemake storage object whose key is the local-layout path under
    the store's prefix, so Snakemake itself still decides whether the extract
    runs; on a folder, the path itself. Analyses, summaries and logs stay local.

    ``published_by_job``: an output of redshift_extract, which the job itself
    publishes on S3 under the day's lease (lead_recovery/s3cache.py). With
    ``retrieve=False``, Snakemake (9.27.1, dag.handle_storage) does not upload
    it again after the job, so a new extract crosses the network once.
    """
    if not REMOTE:
        return path
    if published_by_job:
        return storage(REMOTE.location(path), retrieve=False)
    return storage(REMOTE.location(path))


def cached_dates(name):
    """Dates (oldest first) with a cached extract of ``name``, on the store."""
    if not REMOTE:
        return layout.cached_extract_dates(RESULTS, name)
    return layout.dates_listed(REMOTE.listing(f"{RESULTS}/{name}"), "leads.parquet")


_alternatives = lr_recipes.names_pattern


SKIP_REDSHIFT = bool(config.get("skip_redshift"))
# Two rules make a day's leads.parquet: recipe_leads for the recipes with only
# a leads.csv (usually few: their names are its wildcard constraint, and
# `ruleorder` prefers it), redshift_extract for any other name. A constraint
# listing every Redshift recipe would be a regular expression as long as all
# their names, which Snakemake scans each time it fills in one of the rule's
# paths. With skip_redshift no extract can run: a cached extract is read as
# it is, and nothing can force a query.
CSV_RECIPES = [n for n in ALL_RECIPES if not lr_recipes.has_sql(RECIPES_DIR, n)]
EXTRACT_RECIPE = "(?!)" if SKIP_REDSHIFT else r"[^/\\]+"


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
                targets.append(stored(markers.marker_path(MARKER_DIR, name, day)))
                targets.append(stored(layout.leads_path(RESULTS, name, day)))
            elif (
                leads_source(name) == "skipped_redshift"
                and skipped_redshift_leads(name, day) is None
            ):
                continue
            targets.append(layout.analysis_path(RESULTS, name, day))
            targets.append(layout.summary_path(RESULTS, name, day))
        if latest_date(name) == max(DATES) and name not in BROKEN:
            targets.append(layout.latest_path(RESULTS, name))
    targets += [broken_flag(name) for name in BROKEN]
    return targets


def broken_flag(name):
    """Never written: requesting it runs rule broken_recipe, which fails with the cause."""
    return f"{LOGS}/{name}/broken_recipe.flag"


@functools.cache
def latest_date(name):
    """The date latest.csv should point at: ours, unless a newer analysis exists."""
    newer = layout.analysed_dates(RESULTS, name, after=DATES[-1])
    return newer[-1] if newer else DATES[-1]


def _signature_once(function):
    """Snakemake reads an input function's signature at every call (a thousand
    recipes: thousands of calls); remember it once, as snakemake.ioutils does."""
    overwrite_function_params(function, get_function_params(function))
    return function


def latest_analysis_input():
    """latest.csv's input: a plain pattern when every recipe points at this run's
    last date (the daily case: no input function to call per recipe), else a function.
    """
    if all(latest_date(name) == max(DATES) for name in SELECTED):
        return layout.analysis_path(RESULTS, "{recipe}", max(DATES))
    return _signature_once(
        lambda wildcards: layout.analysis_path(
            RESULTS, wildcards.recipe, latest_date(wildcards.recipe)
        )
    )


_DECIDED = {}
_FOUND = {}  # the marker each decision read, for the account
_ON_CLI = []


def forced_on_cli(name, day):
    """Whether -F, -R redshift_extract or --forcerun <its marker or extract> forces this day.

    Read from the DAG before the workflow adds its own forced files (_force),
    and handed to the jobs, which cannot see the command line. A cluster job
    parses the workflow again, run by a Snakemake that Snakemake started with
    --force: what it sees forced is its own job, not the user's command line,
    so it reads what the main process handed it.
    """
    paths = [
        markers.marker_path(MARKER_DIR, name, day),
        layout.leads_path(RESULTS, name, day),
    ]
    paths += [str(stored(p)) for p in paths]
    if not workflow.is_main_process:
        return jobs.forced_on_cli(paths)
    if not _ON_CLI:
        dag = workflow.dag
        everything = any(
            getattr(r, "name", r) == "redshift_extract" for r in dag.forcerules
        )
        files = {str(f) for f in dag.forcefiles}
        _ON_CLI.append((everything, files))
        jobs.export_forced_on_cli(everything, files)
    everything, files = _ON_CLI[0]
    return everything or not files.isdisjoint(paths)


@functools.cache  # once per run: the first decision holds the checkout for the run
def _one_run_per_checkout():
    """A second run in this checkout waits for the first (jobs.hold_checkout) instead
    of stopping on Snakemake's LockException. Only runs that take Snakemake's lock:
    not dry runs, --nolock (the report), cluster jobs, --unlock or --lint."""
    if not (
        workflow.is_main_process
        and workflow.executor_plugin is not None
        and not workflow.dryrun
        and workflow.execution_settings.lock
    ):
        return
    wait = freshness.parse_duration(config["lock_timeout"], "lock_timeout")
    try:
        waited = jobs.hold_checkout(".snakemake/lead_recovery", wait.total_seconds())
    except LeadRecoveryError as err:
        _stop(err)
    if waited:
        # The run waited for removed Snakemake's lock folder as it ended; this run's
        # Snakemake made it before the DAG and locks there next.
        os.makedirs(os.path.join(workflow.persistence.path, "locks"), exist_ok=True)


def _decide(name, day):
    """Decide whether (recipe, day)'s marker counts; the line that tells the user."""
    _one_run_per_checkout()  # before any marker is read
    if REMOTE:
        REMOTE.prefetch(f"{RESULTS}/{name}")  # one LIST per recipe, not a HEAD per key
    found, decision = freshness.assess(
        SELECTED[name],
        day,
        marker_dir=MARKER_DIR,
        results_dir=RESULTS,
        policy=_policy(name, forced_on_cli(name, day)),
        now=RUN.decided_at,
        tz=TZ,
        store=REMOTE,
    )
    _DECIDED[(name, day)] = decision
    _FOUND[(name, day)] = found
    if decision.force:
        _force(
            stored(markers.marker_path(MARKER_DIR, name, day)),
            stored(layout.leads_path(RESULTS, name, day)),
        )
    when = found.queried_at.isoformat(timespec="seconds") if decision.counts else None
    if decision.restore:
        return (
            f"{name} {day}: an interrupted run left the extract queried {when}; "
            "putting it back (no query)"
        )
    if decision.counts:
        return f"{name} {day}: marker counts (queried {when}); no query"
    if (
        decision.expired
        and SELECTED[name].watermark_path is not None
        and found.record.get("watermark") is not None
    ):
        return (
            f"{name} {day}: {decision.reason}; will check the source watermark "
            "and query only if it changed"
        )
    return f"{name} {day}: will query: {decision.reason}"


@functools.cache
def _policy(name, on_cli):
    return freshness.policy_for(SELECTED[name], config, os.environ, on_cli)


def _only_rule_all():
    """Whether rule all is this run's only target (then every selected Redshift
    recipe's day is in the DAG)."""
    dag = workflow.dag
    return (
        not dag.targetfiles
        and not workflow.dag_settings.target_jobs
        and [rule.name for rule in dag.targetrules] == ["all"]
    )


def marker_decision(name, day):
    """Decide once whether (recipe, day)'s marker counts, and tell the user.

    Asked by each extract job as Snakemake creates it. When rule all is the
    target, the first job decides every selected day at once and says so in
    one message: Snakemake's logger costs about a millisecond per record.
    """
    key = (name, day)
    if key not in _DECIDED:
        if not _DECIDED and _only_rule_all():
            lines = [_decide(r, d) for r in SELECTED if uses_redshift(r) for d in DATES]
            logger.info("\n".join(lines))
        if key not in _DECIDED:
            logger.info(_decide(name, day))
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
    """The demo warehouse, when it is the warehouse; deciding the day's marker on the way.

    redshift.sql is not an input: its edits are what the marker's sql_sha256
    tracks (freshness.py), and its time never counts. Any name matches
    redshift_extract; a leads.csv recipe's file is made by recipe_leads
    (ruleorder), and an unknown name misses its redshift.sql.
    """
    name = wildcards.recipe
    if name not in SELECTED or not uses_redshift(name):
        return {"sql": f"{RECIPES_DIR}/{name}/{lr_recipes.SQL_FILE}"}
    marker_decision(name, wildcards.date)
    return dict(_EXTRACT_INPUTS)


# What every extract job reads: the demo warehouse, built once before them.
_EXTRACT_INPUTS = (
    {"warehouse": ancient(config["duckdb"]["path"])}
    if config["warehouse"] == "duckdb"
    else {}
)


def leads_source(name):
    """Where analyze reads leads from: redshift, recipe_leads_csv or skipped_redshift."""
    return lr_recipes.leads_source(SELECTED[name], SKIP_REDSHIFT)


_SKIP_NOTED = set()


def skipped_redshift_leads(name, day):
    """With skip_redshift: the newest cached extract dated on or before ``day``, else
    leads.csv, else ``None`` (the recipe is reported broken). No marker is read."""
    cached = [d for d in cached_dates(name) if d <= day]
    recipe = SELECTED[name]
    if cached:
        source, said = (
            stored(layout.leads_path(RESULTS, name, cached[-1])),
            f"the extract of {cached[-1]}",
        )
    elif recipe.leads_csv is not None:
        source, said = str(recipe.leads_csv), str(recipe.leads_csv)
    else:
        BROKEN.setdefault(
            name,
            f"recipe '{name}': skip_redshift=true but there is no cached extract on or "
            f"before {day} under {RESULTS}/{name}/ and no {recipe.dir}/leads.csv",
        )
        return None
    if (name, day) not in _SKIP_NOTED:
        _SKIP_NOTED.add((name, day))
        logger.info(f"{name} {day}: skip_redshift: using {said}")
    return source


def analyze_inputs(wildcards):
    name, day = wildcards.recipe, wildcards.date
    inputs = dict(_ANALYZE_INPUTS[name])
    source = leads_source(name)
    if source == "skipped_redshift":
        inputs["leads"] = ancient(skipped_redshift_leads(name, day))
    else:
        leads = layout.leads_path(RESULTS, name, day)
        inputs["leads"] = stored(leads) if source == "redshift" else leads
    if source == "redshift":
        inputs["marker"] = stored(markers.marker_path(MARKER_DIR, name, day))
    return inputs


extract_inputs = _signature_once(extract_inputs)
analyze_inputs = _signature_once(analyze_inputs)


# -- what a job asks a cluster for (profiles/slurm; docs/cluster.md) -----------------


def job_resources(step):
    """``mem_mb``, ``runtime`` (minutes) and ``cpus_per_task`` of ``step``'s jobs.

    The config's ``resources`` (defaults in the schema), overridden per recipe by
    its meta.yml. Each is a function of the job's recipe, so one recipe can ask for
    more without the others paying for it; local runs ignore them.
    """
    defaults = config["resources"][step]

    def one(key):
        def value(wildcards):
            recipe = SELECTED.get(wildcards.recipe)
            own = recipe.resources.get(step, {}) if recipe is not None else {}
            return own.get(key, defaults[key])

        return _signature_once(value)

    return {key: one(key) for key in defaults}


# Per recipe, once: the recipe's own files every day's analysis reads.
_ANALYZE_INPUTS = {
    name: {
        "meta": str(recipe.meta_path),
        **({"analyzer": str(recipe.analyzer)} if recipe.analyzer is not None else {}),
    }
    for name, recipe in SELECTED.items()
}


# Computed once at parse time, before the rules: broken_recipe's wildcard
# constraint needs every broken recipe, including those skip_redshift finds.
TARGETS = all_targets()


# -- the Snakemake report's pages (rules/report.smk) --------------------------------

REPORT_PAGES = [
    f"{RESULTS}/report/{name}"
    for name in ("account.html", "rows_per_day.svg", "queries_per_day.svg")
]


def report_history_files(wildcards):
    """The run history's files of the report's period: redrawn when a run is recorded."""
    return [str(path) for path in history.files(MARKER_DIR, REPORT_SINCE)]


def report_pages(wildcards):
    """Rule all's report pages: asked for only by `snakemake --report` (and --dag...).

    A run (a dry run too) has an executor and never builds them, so a daily
    run costs nothing more. A report includes the pages as they were built
    (`snakemake report_figures`); Snakemake's report does not run jobs.
    """
    if workflow.executor_plugin is not None:
        return []
    if not all(os.path.exists(page) for page in REPORT_PAGES):
        logger.warning(
            "lead-recovery: no account or figures for the report yet: run "
            "`snakemake report_figures` first (`lead-recovery report --html FILE` does both)"
        )
        return []
    return REPORT_PAGES


# -- after the DAG: keep what a forced query could lose; account for the run ---------


# (rule, recipe, date) of every job this run runs; None until onstart, which
# only a run with something to do reaches.
_RUNS = []
# Set when onstart stopped the run before any job: the account has nothing to say.
_STOPPED = []


def check_the_cluster():
    """onstart: a run whose jobs go to a cluster that cannot take them stops here, in
    one line, before anything is kept or submitted (lead_recovery/cluster.py)."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    try:
        cluster.check_slurm(_default_resource("slurm_partition"))
    except LeadRecoveryError as err:
        _STOPPED.append(err)
        _stop(err)
    lost_after = freshness.parse_duration(
        config["slurm"]["controller_timeout"], "slurm.controller_timeout"
    )
    cluster.watch_slurm(lost_after.total_seconds(), _controller_lost)


def _controller_lost(message):
    """The watch's answer to a controller gone mid-run: one line, then what Ctrl-C does
    (Snakemake cancels its jobs and ends; the account says what was not done)."""
    print(f"lead-recovery: error: {message}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    # The plugin can swallow one Ctrl-C while an sbatch to the dead controller is
    # under way, then wait on sacct for ever: ask again, then insist.
    for after, signum in ((20, signal.SIGINT), (40, signal.SIGTERM)):
        time.sleep(after)
        os.kill(os.getpid(), signum)


def _default_resource(name):
    """A value of the run's --default-resources (the profile's) as written, or None."""
    resources = workflow.resource_settings.default_resources
    value = resources.get(name) if resources is not None else None
    value = str(getattr(value, "raw", value) or "").strip("'\"")
    return value or None


def keep_before_extracts_run():
    """onstart: keep each complete pair an extract job of this run may replace.

    Snakemake deletes a job's outputs before it reruns it: for a forced
    query, and for its own reasons too (an interrupted run's incomplete
    files, a changed set of inputs). The kept links (lead_recovery/cache.py)
    are what the job puts back when its day still counts, or what the end of
    the run puts back when a new query failed or was killed. Hard links: no
    data is copied. Only the days whose extract job runs are kept, and a run
    with nothing to do never gets here.
    """
    try:
        store.share(config)  # umask and group of what this run and its jobs create
    except LeadRecoveryError as err:
        _stop(err)
    _RUNS.append(
        {
            (
                job.rule.name,
                job.wildcards_dict.get("recipe"),
                job.wildcards_dict.get("date"),
            )
            for job in workflow.dag.needrun_jobs(exclude_finished=False)
        }
    )
    if REMOTE:
        keep_on_s3_before_extracts_run()
        return
    for name, day in _DECIDED:
        if ("redshift_extract", name, day) not in _RUNS[0]:
            continue
        marker = markers.marker_path(MARKER_DIR, name, day)
        leads = layout.leads_path(RESULTS, name, day)
        if not cache.complete(leads, marker):
            continue
        kept = _under_day_lock(
            marker, cache.keep, leads, marker, layout.kept_dir(RESULTS, name, day)
        )
        if kept is _BUSY:
            logger.warning(f"{name} {day}: another run holds the query lease; not kept")


_BUSY = object()


def _under_day_lock(marker, work, *args):
    """``work(*args)`` under the day's query lock, or _BUSY if another run holds it 10 s."""
    try:
        with cache.day_lock(marker, timeout=10):
            return work(*args)
    except LeaseTimeout:
        return _BUSY


def _ran(rule, name, day):
    """Whether that job may have run in this invocation (else it left no outcome)."""
    if _RUNS:
        return (rule, name, day) in _RUNS[0]
    # No onstart: nothing ran, unless hooks were off (then we cannot tell).
    return bool(workflow.execution_settings.no_hooks)


def _settle(name, day):
    """Put a kept pair back if the day's pair is incomplete (a failed or killed query)."""
    if REMOTE:
        return _settle_on_s3(name, day)
    marker = markers.marker_path(MARKER_DIR, name, day)
    kept = layout.kept_dir(RESULTS, name, day)
    if not os.path.isdir(kept):
        return None
    settled = _under_day_lock(
        marker, cache.settle, layout.leads_path(RESULTS, name, day), marker, kept
    )
    return None if settled is _BUSY else settled  # busy: the querying run settles it


def _extract_line(name, day):
    restored = _settle(name, day) == "restored"
    decision, found = _DECIDED.get((name, day)), _FOUND.get((name, day))
    if (
        not restored
        and not _ran("redshift_extract", name, day)
        and decision is not None
        and decision.counts
        and found is not None
        and found.queried_at is not None
    ):
        # Not run, and nothing put back: the marker this run decided on.
        return account.Line(
            name,
            day,
            "cached",
            f"queried at {found.queried_at.isoformat()}",
            **account.facts(found.record),
        )
    return account.extract_line(
        name,
        day,
        logs_dir=LOGS,
        marker_dir=MARKER_DIR,
        decided_query=decision is not None and not decision.counts,
        restored_at_exit=restored,
        store=REMOTE,
    )


def account_lines():
    lines = []
    for name in sorted([*SELECTED, *BROKEN]):
        if name in BROKEN:
            lines.append(account.Line(name, DATES[-1], "failed", BROKEN[name]))
            continue
        for day in DATES:
            if uses_redshift(name):
                line = _extract_line(name, day)
            elif leads_source(name) == "skipped_redshift":
                source = skipped_redshift_leads(name, day)
                said = (
                    f"extract of {Path(source).parent.name}"
                    if source.endswith(".parquet")
                    else source
                )
                line = account.Line(name, day, "skipped", f"skip_redshift; {said}")
            else:
                line = account.Line(
                    name, day, "skipped", f"no redshift.sql; {SELECTED[name].leads_csv}"
                )
            failed = (
                account.analysis_failure(name, day, LOGS)
                if _ran("analyze", name, day)
                else None
            )
            lines.append(failed if failed and line.state != "failed" else line)
    return lines


# -- on S3: the same keeping with server-side copies (lead_recovery/s3cache.py) ------

_KEPT_ON_S3 = set()
_TOUCHED_ON_S3 = set()  # markers this run may have changed: noted in the marker index


def keep_on_s3_before_extracts_run():
    """onstart on S3: keep the complete pair of each extract job that will run.

    Only those: a server-side copy costs requests, where a hard link cost
    nothing, and a cached run keeps nothing. Snakemake removes a job's S3
    outputs when it prepares the job, after this.
    """
    for job in workflow.dag.needrun_jobs():
        if job.rule.name != "redshift_extract":
            continue
        name, day = job.wildcards.recipe, job.wildcards.date
        marker = markers.marker_path(MARKER_DIR, name, day)
        kept = layout.kept_dir(RESULTS, name, day)
        if not s3cache.complete(REMOTE, layout.leads_path(RESULTS, name, day), marker):
            continue  # a first query: nothing to keep
        try:
            with lease.held(
                marker,
                timeout_s=10,
                what=f"{name} {day}",
                store=store.S3Store(REMOTE.url),
            ) as held:
                s3cache.keep(
                    held.store, layout.leads_path(RESULTS, name, day), marker, kept
                )
        except LeaseTimeout:
            logger.warning(f"{name} {day}: another run holds the query lease; not kept")
        except LeadRecoveryError as err:
            _stop(err)
        _KEPT_ON_S3.add((name, day))


def _settle_on_s3(name, day):
    """As _settle, for the days this run kept or whose extract job ran."""
    ran = jobs.read_outcome(layout.log_path(LOGS, "redshift_extract", name, day))
    if (name, day) not in _KEPT_ON_S3 and ran is None:
        return None
    fresh = store.S3Store(REMOTE.url)  # the store as it is now, not the DAG's listing
    marker = markers.marker_path(MARKER_DIR, name, day)
    _TOUCHED_ON_S3.add(os.path.basename(marker))
    try:
        with lease.held(marker, timeout_s=10, what=f"{name} {day}", store=fresh):
            return s3cache.settle(
                fresh,
                layout.leads_path(RESULTS, name, day),
                marker,
                layout.kept_dir(RESULTS, name, day),
            )
    except LeaseTimeout:
        return None  # a run that is querying it now settles it


def _only_report_pages():
    """Whether this run only built the report's pages (no recipe in its DAG)."""
    return {job.rule.name for job in workflow.dag.jobs} <= {"report_figures"}


def at_exit():
    """The last thing a real run prints: what it did for each recipe and date."""
    if workflow.executor_plugin is None or workflow.dryrun or _STOPPED:
        return  # a dry run, --lint, --list, a cluster that said no: nothing ran
    if _only_report_pages():
        return  # `snakemake report_figures`: no recipe-day to account for or record
    META_CACHE.save()
    try:
        lines = account_lines()
        if REMOTE and _TOUCHED_ON_S3:
            # what the jobs wrote, what Snakemake removed, what settling put back
            markerindex.note(
                store.S3Store(REMOTE.url), MARKER_DIR, RESULTS, _TOUCHED_ON_S3
            )
        text = account.render(lines)
        history.write(MARKER_DIR, account.events(lines), jobs.run_id())
    except Exception as err:  # the account must never hide Snakemake's own exit
        text = [f"lead-recovery: no account of this run ({type(err).__name__}: {err})"]
    print(
        "\n".join(
            ["", f"lead-recovery: what this run did (run id {jobs.run_id()}):", *text]
        ),
        file=sys.stderr,
        flush=True,
    )


if workflow.is_main_process:
    atexit.register(at_exit)
