"""One Snakemake invocation of the workflow: what workflow/rules/common.smk wires.

Built once while the Snakefile is read (dry runs too): the configuration,
the recipes, the run dates and the store. While Snakemake builds its DAG it
reads each selected day's pair in the store and this checkout's copies,
hands them to the run plan (plan.py) and says the decision in one line. A
real run then holds this checkout (a second run waits; a killed run's
Snakemake lock is cleared), and at its end puts back this checkout's copies
of any day whose job failed, prints the account and records it in the store's
history. Nothing here writes before the run is known to be real.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_recovery import (
    account,
    atomic,
    engine,
    history,
    jobs,
    layout,
    markerindex,
    markers,
    plan,
    rundate,
    store,
)
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.day import Day, Pair, Views
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.recipes import Recipe

CHECKOUT_FILE = ".lead-recovery-checkout"  # in results_dir: whose results folder it is


def stop(err: object, code: int = 1) -> None:
    """A one-line error and an exit status instead of a traceback."""
    print(f"lead-recovery: error: {err}", file=sys.stderr, flush=True)
    sys.exit(code)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(eq=False)  # hashed by identity: its methods cache per invocation
class Invocation:
    """The run's settings (read-only once built) and what it decided and did."""

    config: dict[str, Any]
    results: str
    logs: str
    recipes_dir: str
    run: rundate.RunDate
    dates: list[str]
    selected: dict[str, Recipe]
    broken: dict[str, str]
    store: Any
    meta_cache: lr_recipes.MetaCache
    report_since: Any
    decided: dict[tuple[str, str], plan.DayPlan] = field(default_factory=dict)
    found: dict[tuple[str, str], Pair | None] = field(default_factory=dict)
    ran: set[tuple[str, str | None, str | None]] | None = None  # None: no onstart yet
    stopped: bool = False  # onstart stopped the run before any job
    _forced_cli: tuple[bool, set[str]] | None = None
    _skip_noted: set[tuple[str, str]] = field(default_factory=set)
    _held: bool = False

    # -- building it (parse time)

    @classmethod
    def build(cls, config: dict[str, Any], schema: Path, configfiles: Iterable[str]) -> Invocation:
        lr_config.validate(config, schema)
        store.share(config)  # the umask only: the checkout's lock is written before onstart
        results = os.path.normpath(config["results_dir"])
        logs = os.path.normpath(config["logs_dir"])
        _refuse_old_sharing(config, results)
        for key, folder in (("results_dir", results), ("logs_dir", logs)):
            store.writable_folder(key, Path(folder))
        opened = store.open_store(config)
        if opened.local_path(layout.MARKERS) is None:
            opened.preflight()  # on S3: one line now if it cannot be used, before any query
        else:
            store.writable_folder("store", Path(opened.url))
        run = rundate.resolve(config.get("date"), config.get("timezone"), config["day_starts_at"])
        dates = (
            rundate.date_range(config["since"], run.date)
            if config.get("since") not in (None, "")
            else [run.date]
        )
        recipes_dir = os.path.normpath(config["recipes_dir"])
        chosen = [config["recipe"]] if config.get("recipe") not in (None, "") else []
        chosen += config.get("recipes") or []
        meta_cache = lr_recipes.MetaCache(".snakemake/lead_recovery/meta_yml.json")
        selected, broken = {}, {}
        for name in chosen or lr_recipes.discover(recipes_dir):
            try:
                recipe = lr_recipes.load(recipes_dir, name, meta_cache)
            except LeadRecoveryError as err:
                if chosen:
                    raise  # a recipe named on the command line fails fast
                broken[str(name)] = str(err)
                say(f"lead-recovery: skipping recipe '{name}': {err}")
            else:
                selected[recipe.name] = recipe
        # ignore_all_markers set in any config file holds whatever the command line says
        if any(
            (lr_config.load_yaml(f, "config file") or {}).get("ignore_all_markers") is True
            for f in dict.fromkeys(configfiles)
        ):
            config["ignore_all_markers"] = True
        if config.get("marker_ttl"):
            plan.parse_duration(config["marker_ttl"])
        since = history.since_instant(str(config["report_since"]), run.decided_at, "report_since")
        jobs.announce_invocation(run)
        return cls(
            config, results, logs, recipes_dir, run, dates, selected, broken, opened, meta_cache,
            since,
        )  # fmt: skip

    # -- paths

    @property
    def skip_redshift(self) -> bool:
        return bool(self.config.get("skip_redshift"))

    def uses_redshift(self, name: str) -> bool:
        return self.selected[name].sql_path is not None and not self.skip_redshift

    @functools.cache  # noqa: B019 - asked for by targets, decisions and input functions
    def views(self, name: str, day: str) -> Views:
        return Views(
            Path(layout.leads_path(self.results, name, day)),
            Path(markers.marker_path(f"{self.results}/markers", name, day)),
        )

    def leads_source(self, name: str) -> str:
        return lr_recipes.leads_source(self.selected[name], self.skip_redshift)

    # -- targets

    def targets(self) -> list[str]:
        """Each selected recipe's day: marker and extract (so Snakemake checks them), analysis."""
        found = []
        for name in self.selected:
            for day in self.dates:
                if self.uses_redshift(name):
                    views = self.views(name, day)
                    found += [str(views.marker), str(views.leads)]
                elif (
                    self.leads_source(name) == "skipped_redshift"
                    and self.skipped(name, day) is None
                ):
                    continue
                found += [
                    layout.analysis_path(self.results, name, day),
                    layout.summary_path(self.results, name, day),
                ]
            if self.latest_date(name) == max(self.dates) and name not in self.broken:
                found.append(layout.latest_path(self.results, name))
        return found + [self.broken_flag(name) for name in self.broken]

    def broken_flag(self, name: str) -> str:
        """Never written: requesting it runs rule broken_recipe, which fails with the cause."""
        return f"{self.logs}/{name}/broken_recipe.flag"

    @functools.cache  # noqa: B019 - one invocation per process
    def latest_date(self, name: str) -> str:
        """The date latest.csv should point at: ours, unless a newer analysis exists."""
        newer = layout.analysed_dates(self.results, name, after=self.dates[-1])
        return newer[-1] if newer else self.dates[-1]

    # -- skip_redshift: the newest day the store holds

    @functools.cache  # noqa: B019
    def stored_extracts(self, name: str) -> dict[str, str]:
        """For skip_redshift: each day of the recipe with an extract in the store, and
        its newest one (a marker is not needed: skip_redshift reads no marker)."""
        listed = self.store.listing(name)
        days = {rel.partition("/")[0] for rel in listed}
        found = {}
        for day in sorted(d for d in days if len(d) == 8 and d.isdigit()):
            newest = Day(self.store, name, day).newest_extract(listed)
            if newest is not None:
                found[day] = newest
        return found

    def skipped(self, name: str, day: str) -> str | None:
        """With skip_redshift: the newest stored extract dated on or before ``day`` (this
        checkout's copy, else the store's file, else the copy the extract job makes),
        else leads.csv, else ``None`` (the recipe is then reported broken)."""
        extracts = self.stored_extracts(name)
        earlier = [d for d in extracts if d <= day]
        recipe = self.selected[name]
        if earlier:
            copy = layout.leads_path(self.results, name, earlier[-1])
            local = self.store.local_path(extracts[earlier[-1]])
            source = copy if os.path.exists(copy) or local is None else str(local)
            said = f"the extract of {earlier[-1]}"
        elif recipe.leads_csv is not None:
            source, said = str(recipe.leads_csv), str(recipe.leads_csv)
        else:
            self.broken.setdefault(
                name,
                f"recipe '{name}': skip_redshift=true but there is no cached extract on or "
                f"before {day} in the store {self.store.url} and no {recipe.dir}/leads.csv",
            )
            return None
        if (name, day) not in self._skip_noted:
            self._skip_noted.add((name, day))
            say(f"{name} {day}: skip_redshift: using {said}")
        return source

    # -- deciding (DAG time)

    def forced_on_cli(self, workflow: Any, name: str, day: str) -> bool:
        """Whether -F, -R redshift_extract or --forcerun <its files> forces this day.

        A cluster job parses the workflow again, run by a Snakemake started with
        --force: it reads what the main process handed it instead.
        """
        views = self.views(name, day)
        paths = [str(views.marker), str(views.leads)]
        if not engine.is_main(workflow):
            return jobs.forced_on_cli(paths)
        if self._forced_cli is None:
            self._forced_cli = engine.forced_on_cli(workflow, "redshift_extract")
            jobs.export_forced_on_cli(*self._forced_cli)
        everything, files = self._forced_cli
        return everything or (bool(files) and not files.isdisjoint(paths))

    def hold_checkout(self, workflow: Any) -> None:
        """A real run holds this checkout from its first decision to its end: a second run
        waits for it (jobs.hold_checkout), and a Snakemake lock that no live run holds
        is a killed run's, cleared with one line."""
        if self._held or not engine.takes_lock(workflow):
            return
        self._held = True
        wait = plan.parse_duration(self.config["lock_timeout"], "lock_timeout").total_seconds()
        setting = "lock_timeout"
        with contextlib.suppress(KeyError, ValueError):  # `lead-recovery cron --wait`
            wait, setting = float(os.environ[jobs.CHECKOUT_WAIT_ENV]), "cron.wait or --wait"
        try:
            jobs.hold_checkout(".snakemake/lead_recovery", wait, setting)
        except LeadRecoveryError as err:
            stop(err, jobs.EXIT_BUSY)
        if engine.clear_stale_lock(workflow):
            say(
                "lead-recovery: removed the Snakemake lock a killed run left in this checkout "
                "(no run holds it now)"
            )

    def decide(self, workflow: Any, name: str, day: str) -> plan.DayPlan:
        """Decide (recipe, day) once; say it; force Snakemake's job when files exist."""
        key = (name, day)
        if key in self.decided:
            return self.decided[key]
        self.hold_checkout(workflow)  # before any marker is read
        recipe = self.selected[name]
        listed = self._listing(name)
        pair = Day(self.store, name, day).read(listed)
        views = self.views(name, day)
        copies = views.leads.exists() and views.marker.exists()
        current = copies and (self._same_marker(pair, views))
        decided = plan.plan_day(
            name,
            day,
            plan.Facts(
                marker=pair.marker if pair else None,
                extract_present=bool(pair and pair.present),
                copies_present=copies,
                copies_current=current,
                has_watermark=recipe.watermark_path is not None,
            ),
            sql_sha256=recipe.sql_sha256,
            policy=self._policy(name, self.forced_on_cli(workflow, name, day)),
            now=self.run.decided_at,
            tz=rundate.zone(self.config.get("timezone")),
            warehouse=self.warehouse,
        )
        self.decided[key], self.found[key] = decided, pair
        if decided.force:
            engine.force(workflow, [str(views.marker), str(views.leads)])
        return decided

    @functools.cached_property
    def _markers_are_the_stores(self) -> bool:
        """No ``store:``: this checkout's markers are the store's own (no copy to compare)."""
        own = self.store.local_path(layout.MARKERS)
        return own is not None and os.path.abspath(own) == os.path.abspath(
            f"{self.results}/markers"
        )

    def _same_marker(self, pair: Pair | None, views: Views) -> bool:
        if pair is None:
            return False
        if self._markers_are_the_stores:
            return True
        try:
            return views.marker.read_bytes() == pair.text
        except OSError:
            return False

    @functools.cache  # noqa: B019
    def _listing(self, name: str) -> Mapping[str, store.Entry] | None:
        """On S3, one listing of the recipe's folder answers for every day's extract."""
        if self.store.local_path(name) is not None:
            return None
        return self.store.listing(name)

    @functools.cached_property
    def warehouse(self) -> str:
        """The warehouse this run queries, by name: a marker counts only for its own."""
        from lead_recovery.warehouse import named

        return named(self.config, os.environ)

    @functools.cache  # noqa: B019
    def _policy(self, name: str, on_cli: bool) -> plan.Policy:
        return plan.policy_for(self.selected[name], self.config, os.environ, on_cli)

    def decide_for_job(self, workflow: Any, name: str, day: str) -> None:
        """Asked by each extract job as Snakemake creates it. With rule all as the target
        the first one decides every selected day at once and says so in one message
        (Snakemake's logger costs about a millisecond per record)."""
        if (name, day) in self.decided:
            return
        lines = []
        if not self.decided and engine.only_rule_all(workflow):
            for other in self.selected:
                if self.uses_redshift(other):
                    lines += [self.decide(workflow, other, d).line for d in self.dates]
        if (name, day) not in self.decided:
            lines.append(self.decide(workflow, name, day).line)
        say("\n".join(lines))

    # -- a real run: its start and its end

    def started(self, workflow: Any) -> None:
        """onstart: the jobs this run runs are known; make shared files shareable."""
        try:
            store.share(self.config, self._group_folders())
        except LeadRecoveryError as err:
            self.stopped = True
            stop(err)
        self.ran = engine.jobs_to_run(workflow)
        for rule, name, day in self.ran:
            if rule == "redshift_extract" and name in self.selected and day:
                Day(self.store, name, day).adopt_legacy()
                _clear_irregular(self.views(name, day))

    def _group_folders(self) -> list[Path]:
        return store.shared_ground(self.config)

    def job_ran(self, rule: str, name: str, day: str) -> bool:
        if self.ran is not None:
            return (rule, name, day) in self.ran
        return False

    def finished(self, workflow: Any) -> None:
        """The last thing a real run prints: what it did for each recipe and date."""
        if not engine.real_run(workflow) or self.stopped:
            return  # a dry run, --lint, --list, a cluster that said no: nothing ran
        if engine.rules_in_dag(workflow) <= {"report_figures"}:
            return  # `snakemake report_figures`: no recipe-day to account for
        self.meta_cache.save()
        try:
            lines = self.account_lines()
            text = account.render(lines)
        except Exception as err:  # the account must never hide Snakemake's own exit
            lines, text = (
                [],
                [f"lead-recovery: no account of this run ({type(err).__name__}: {err})"],
            )
        say("\n".join(["", f"lead-recovery: what this run did (run id {jobs.run_id()}):", *text]))
        self._record(lines)

    def _record(self, lines: list[account.Line]) -> None:
        """The history and (on S3) the marker index: after the account, never costing it."""
        try:
            history.write(self.store, account.events(lines), jobs.run_id())
        except (OSError, LeadRecoveryError) as err:
            where = self.store.location(layout.HISTORY)
            say(f"lead-recovery: warning: this run's history was not recorded in {where} "
                f"({_first(err)})")  # fmt: skip
        touched = [
            markers.marker_name(name, day)
            for (rule, name, day) in (self.ran or set())
            if rule == "redshift_extract" and name and day
        ]
        if touched and self.store.local_path(layout.MARKERS) is None:
            markerindex.note(self.store, layout.MARKERS, "", touched)

    def _settled(self, name: str, day: str) -> bool:
        """A day whose job ran: its marker and this checkout's copies are the store's last
        commit (day.py); whether the day has a complete pair."""
        try:
            pair = Day(self.store, name, day).settle(self.views(name, day))
            return pair is not None and pair.present
        except (OSError, LeadRecoveryError) as err:
            say(f"lead-recovery: warning: {name} {day}: this checkout's copies were not put "
                f"back ({_first(err)})")  # fmt: skip
            return False

    def account_lines(self) -> list[account.Line]:
        lines = []
        for name in sorted([*self.selected, *self.broken]):
            if name in self.broken:
                lines.append(account.Line(name, self.dates[-1], "failed", self.broken[name]))
                continue
            for day in self.dates:
                lines.append(self._line(name, day))
        return lines

    def _line(self, name: str, day: str) -> account.Line:
        if self.uses_redshift(name):
            log_file = layout.log_path(self.logs, "redshift_extract", name, day)
            outcome = jobs.read_outcome(log_file)  # this run's only (its run id)
            complete = self._settled(name, day) if outcome is not None else False
            line = account.extract_line(
                name,
                day,
                outcome=outcome,
                decided=self.decided.get((name, day)),
                found=self.found.get((name, day)),
                kept=complete,
                log_file=log_file,
            )
        elif self.leads_source(name) == "skipped_redshift":
            source = self.skipped(name, day) or ""  # a copy, a stored extract, or leads.csv
            used = layout.extract_day(source) if source.endswith(".parquet") else None
            said = f"extract of {used}" if used else source
            line = account.Line(name, day, "skipped", f"skip_redshift; {said}")
        else:
            line = account.Line(
                name, day, "skipped", f"no redshift.sql; {self.selected[name].leads_csv}"
            )
        if self.job_ran("analyze", name, day):
            return account.with_analysis(line, self.logs)
        return line


def _clear_irregular(views: Views) -> None:
    """A pipe, folder or link where this checkout's copy of a day belongs is no copy:
    removed before the job (Snakemake would try to back it up, or trip over it)."""
    for path in (views.marker, views.leads):
        with contextlib.suppress(OSError):
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(path)
            elif not stat.S_ISREG(info.st_mode):
                os.unlink(path)
            else:
                continue
            say(f"lead-recovery: removed {path}, which was not a regular file")


def _first(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _refuse_old_sharing(config: Mapping[str, Any], results: str) -> None:
    """A checkout still set up the old way (shared results_dir/marker_dir): one line
    saying what to set instead (docs/operations.md, moving to a store)."""
    unset = {"results/markers", os.path.normpath(f"{config['results_dir']}/markers")}
    marker_dir = config.get("marker_dir")
    if marker_dir not in (None, "") and os.path.normpath(str(marker_dir)) not in unset:
        raise LeadRecoveryError(
            f"marker_dir {marker_dir} is no longer a setting: markers live in the store. "
            f"To share queries with other checkouts, remove marker_dir and results_dir and set "
            f"store: {os.path.dirname(os.path.normpath(str(marker_dir)))} "
            "(docs/operations.md#moving-to-a-store)"
        )
    owner = _claimed_by(results)
    if owner and owner != os.path.abspath(".") and os.path.isfile(os.path.join(owner, "Snakefile")):
        raise LeadRecoveryError(
            f"results_dir {results} is also the results folder of the checkout {owner}: "
            f"a checkout's analyses are its own. To share what queries paid for, set "
            f"store: {results} in both and give each its own results_dir "
            "(docs/operations.md#moving-to-a-store)"
        )


def _claimed_by(results: str) -> str | None:
    """The checkout whose results folder ``results`` is, if another run said so. A claim
    made for a folder elsewhere was copied along with a checkout: it claims nothing."""
    try:
        owner, _, where = (
            (Path(results) / CHECKOUT_FILE).read_text(encoding="utf-8").partition("\n")
        )
    except OSError:
        return None
    return owner.strip() if where.strip() == os.path.abspath(results) else None


def claim_results(results: str) -> None:
    """Write whose results folder this is (a real run), for :func:`_refuse_old_sharing`."""
    here = os.path.abspath(".")
    if _claimed_by(results) == here:
        return
    with contextlib.suppress(OSError):
        atomic.write_bytes(
            Path(results) / CHECKOUT_FILE, f"{here}\n{os.path.abspath(results)}\n".encode()
        )


def signature_once(function: Callable[..., Any]) -> Callable[..., Any]:
    return engine.signature_once(function)
