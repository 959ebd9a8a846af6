"""What every ``lead-recovery markers`` command (and ``report``) works from: the
checkout's configuration, its store and clock, and each recipe's policy, resolved
once per command. The decisions themselves are the package's (plan.py, day.py),
so the helper agrees with what the next ``snakemake`` run will do.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lead_recovery import config as lr_config
from lead_recovery import layout, markerindex, markers, plan, recipes, rundate
from lead_recovery.cli.common import UsageError, find_repo, show_path
from lead_recovery.day import Day, Views
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.markers import Marker
from lead_recovery.store import FolderStore, Store, open_store


@dataclass
class RecipeInfo:
    """What the workflow would use to judge one recipe's markers."""

    name: str
    recipe: recipes.Recipe | None = None
    policy: plan.Policy | None = None
    problem: str | None = None  # why the workflow never reads this recipe's markers
    exists: bool = False


@dataclass
class Context:
    """The workflow's configuration, store and clock, resolved once per command."""

    repo: Path
    config: dict[str, Any]
    store: Store
    recipes_dir: str
    results_dir: Path  # this checkout's: its copies of the store's pairs
    tz: tzinfo | None
    today: str  # today's run date
    now: datetime
    own_store: bool = True  # the store this checkout's config names (no --store)
    _recipes: dict[str, RecipeInfo] = field(default_factory=dict)
    _dates: dict[str, bool] = field(default_factory=dict)
    _listings: dict[str, frozenset[str]] = field(default_factory=dict)
    _present: dict[tuple[str, str], bool] = field(default_factory=dict)  # from the index

    @classmethod
    def load(cls, args: SimpleNamespace) -> Context:
        repo = find_repo(args.repo)
        config = lr_config.load(repo)
        opened = open_store(config, base=repo)
        if args.store:
            opened = open_store({"store": args.store}, base=Path.cwd())
        elif args.marker_dir:
            folder = Path(args.marker_dir).resolve()
            if folder.name != layout.MARKERS:
                raise UsageError(
                    f"--marker-dir {args.marker_dir}: name a store's markers folder "
                    f"(.../{layout.MARKERS}), or the store itself with --store"
                )
            opened = FolderStore(folder.parent)
        run = rundate.resolve(config["date"], config["timezone"], config["day_starts_at"])
        return cls(
            repo=repo,
            config=config,
            store=opened,
            recipes_dir=os.path.normpath(repo / config["recipes_dir"]),
            results_dir=repo / config["results_dir"],
            own_store=not (args.store or args.marker_dir),
            tz=rundate.zone(config.get("timezone")),
            today=run.date,
            now=run.decided_at,
        )

    def views(self, name: str, day: str) -> Views:
        return Views(
            Path(layout.leads_path(self.results_dir, name, day)),
            Path(markers.marker_path(self.results_dir / layout.MARKERS, name, day)),
        )

    @property
    def remote(self) -> bool:
        return self.store.local_path(layout.MARKERS) is None

    def listed(self, recipe: str | None, refresh: bool) -> tuple[list[Marker], str | None]:
        """What ``list`` shows, and where it came from (on S3: the marker index, or
        a full listing that rebuilds it; markerindex.py)."""
        cache = self.repo / ".snakemake/lead_recovery/s3_markers.json"
        if not self.remote:
            return markers.list_markers(self.store, recipe), None
        found = markerindex.listing(
            self.store,
            layout.MARKERS,
            "",
            recipe,
            cache,
            refresh=refresh,  # type: ignore[arg-type]
        )
        self._present.update(found.cache)
        return found.markers, found.source

    def location(self, marker: Marker) -> str:
        """Where ``marker`` is, as the user reads it (a path, or ``s3://bucket/key``)."""
        return self.store.location(f"{layout.MARKERS}/{marker.path.name}")

    def show(self, path: str | Path) -> str:
        """A path as the user reads it: relative to here if inside it, else as the store says."""
        return show_path(path) if not self.remote else str(path)

    def day(self, given: str | None) -> str:
        """``--date`` checked, or today's run date."""
        if given is None:
            return self.today
        try:
            return rundate.parse_date(given)
        except LeadRecoveryError as err:
            raise UsageError(f"--date: {err}") from None

    def info(self, name: str) -> RecipeInfo:
        """The recipe and its freshness policy, loaded once per name."""
        if name in self._recipes:
            return self._recipes[name]
        info = RecipeInfo(name)
        folder = Path(self.recipes_dir) / name
        if "/" in name or "\\" in name or not folder.is_dir():
            info.problem = f"no recipe folder {show_path(folder)}/; the workflow never reads it"
        else:
            info.exists = True
            try:
                info.recipe = recipes.load(self.recipes_dir, name)
            except LeadRecoveryError as err:
                info.problem = f"recipe cannot be loaded: {err}"
            else:
                if info.recipe.sql_path is None:
                    info.problem = (
                        f"recipe has no {recipes.SQL_FILE}; the workflow never reads its markers"
                    )
                else:
                    info.policy = plan.policy_for(info.recipe, self.config, os.environ)
        self._recipes[name] = info
        return info

    def recipe_name(self, name: str) -> str:
        """A recipe named on the command line: a safe name, and one we know of (a recipe
        folder, or markers of that name: a removed recipe's can still be deleted)."""
        try:
            recipes.validate_name(name)
        except LeadRecoveryError as err:
            raise UsageError(str(err)) from None
        if self.info(name).exists:
            return name
        for entry in self.store.names(layout.MARKERS):
            parsed = markers.parse_marker_name(entry)
            if parsed and parsed[0] == name:
                return name
        try:
            known = ", ".join(recipes.discover(self.recipes_dir)) or "none"
        except LeadRecoveryError:
            known = "none"
        raise UsageError(
            f"unknown recipe '{name}' (no folder {show_path(Path(self.recipes_dir) / name)}/ "
            f"and no markers of that name; known recipes: {known})"
        )

    def explain(self, marker: Marker | None, present: bool, run_date: str, name: str):
        """(counts, reason): the workflow's own decision for a run of ``run_date`` now;
        ``counts`` is None when the decision does not apply (reason: why)."""
        info = self.info(name)
        if info.problem:
            return None, info.problem
        if self.config.get("skip_redshift"):
            return None, "skip_redshift=true in the config: markers are neither checked nor written"
        if not self._real_date(run_date):
            return None, f"'{run_date}' in the file name is not a real date"
        decision = plan.decide(
            marker,
            present,
            run_date=run_date,
            sql_sha256=info.recipe.sql_sha256 if info.recipe else None,
            policy=info.policy,  # type: ignore[arg-type]
            now=self.now,
            tz=self.tz,
            warehouse=self.warehouse,
        )
        return decision.counts, decision.reason

    def extract(self, marker: Marker) -> tuple[str, bool]:
        """The extract ``marker`` names in the store, and whether it is there (a listing
        of each recipe's folder, once, answers for all its markers)."""
        path = Day(self.store, marker.recipe, marker.run_date).extract_of(marker)
        if (marker.recipe, marker.run_date) in self._present:
            return path, self._present[marker.recipe, marker.run_date]
        folder, _, rest = path.partition("/")
        if folder not in self._listings:
            self._listings[folder] = frozenset(self.store.listing(folder))
        return path, rest in self._listings[folder]

    def _real_date(self, run_date: str) -> bool:
        """Whether a marker file name's eight digits are a calendar date (cached: hot path)."""
        if run_date not in self._dates:
            try:
                date(int(run_date[:4]), int(run_date[4:6]), int(run_date[6:]))
                self._dates[run_date] = True
            except ValueError:
                self._dates[run_date] = False
        return self._dates[run_date]

    def when(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        shown = moment.astimezone(self.tz) if self.tz is not None else moment.astimezone()
        return shown.isoformat(timespec="seconds")

    @functools.cached_property
    def warehouse(self) -> str:
        """The warehouse the next run queries (a marker counts only for its own)."""
        from lead_recovery.warehouse import named

        return named(self.config, os.environ)

    def lease_life(self) -> float:
        return plan.parse_duration(self.config["lease_ttl"], "lease_ttl").total_seconds()
