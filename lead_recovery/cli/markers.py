"""``lead-recovery markers``: list, check, create, delete and prune the Redshift markers.

Commands::

    lead-recovery markers list   [--recipe R] [--date YYYYMMDD] [--json]
    lead-recovery markers check  RECIPE [--date YYYYMMDD] [--strict]
    lead-recovery markers create RECIPE [--date YYYYMMDD] [--force]
    lead-recovery markers delete RECIPE [--date YYYYMMDD | --all-dates]
    lead-recovery markers prune  --older-than 30d [--recipe R] [--dry-run]

Aliases: the ``markers`` console script, ``python -m lead_recovery.cli.markers``,
``workflow/scripts/markers.py``, and the previous system's spelling
``markers --action list`` / ``markers --recipe R --action check|create|delete``.

Everything it knows comes from the same package functions the workflow uses:
the configuration (``config/config.yaml``), the run date (today in the
configured zone, ``LEAD_RECOVERY_NOW``, ``day_starts_at``), marker and cache
paths, recipe names and the "does this marker count, and if not why"
decision. So the helper looks where the workflow writes and agrees with what
the next ``snakemake`` run will do.

Exit status: 0 done (``check``: the marker and its cached extract are there);
1 not done (``check``: one of them is missing; ``create`` refused); 2 bad
input, in which case nothing was touched.
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from lead_recovery import (
    cache,
    freshness,
    jobs,
    layout,
    lease,
    markerindex,
    markers,
    recipes,
    rundate,
    s3cache,
)
from lead_recovery import config as lr_config
from lead_recovery.cli.common import (
    CONTEXT,
    NO,
    OK,
    Refused,
    UsageError,
    find_repo,
    invoke,
    print_json,
    repo_option,
    show_path,
    table,
)
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.freshness import Policy
from lead_recovery.markers import Marker
from lead_recovery.recipes import Recipe
from lead_recovery.store import S3Store, open_store

PROG = "markers"
ACTIONS = ("list", "check", "create", "delete", "prune")
_show = show_path


@dataclass
class RecipeInfo:
    """What the workflow would use to judge one recipe's markers."""

    name: str
    recipe: Recipe | None = None
    policy: Policy | None = None
    sql_sha256: str | None = None
    problem: str | None = None  # why the workflow never reads this recipe's markers
    exists: bool = False


@dataclass
class Context:
    """The workflow's configuration and clock, resolved once per command."""

    repo: Path
    config: dict[str, Any]
    marker_dir: str
    results_dir: str
    recipes_dir: str
    tz: tzinfo | None
    today: str  # today's run date
    now: datetime
    store: S3Store | None = None  # store: s3://... in the config; None: the local folders
    _recipes: dict[str, RecipeInfo] = field(default_factory=dict)
    _dates: dict[str, bool] = field(default_factory=dict)
    _listings: dict[str, frozenset[str]] = field(default_factory=dict)
    _present: dict[tuple[str, str], bool] = field(default_factory=dict)  # from the index

    @classmethod
    def load(cls, args: SimpleNamespace) -> Context:
        repo = find_repo(args.repo)
        config = lr_config.load(repo)
        opened = open_store(config)
        remote = opened if isinstance(opened, S3Store) else None

        def place(value: str) -> str:
            if remote is not None:  # a key under the store's prefix, as the workflow writes it
                return os.path.normpath(value)
            path = Path(value)
            return os.path.normpath(path if path.is_absolute() else repo / path)

        if args.marker_dir and remote is None:
            marker_dir = os.path.abspath(args.marker_dir)
        else:
            marker_dir = place(args.marker_dir or config["marker_dir"])
        run = rundate.resolve(config["date"], config["timezone"], config["day_starts_at"])
        return cls(
            repo=repo,
            config=config,
            marker_dir=marker_dir,
            results_dir=place(config["results_dir"]),
            recipes_dir=place(config["recipes_dir"]),
            tz=rundate.zone(config.get("timezone")),
            today=run.date,
            now=run.decided_at,
            store=remote,
        )

    def listed(self, recipe: str | None, refresh: bool) -> tuple[list[Marker], str | None]:
        """What ``list`` shows, and where it came from (on S3: the marker index, or
        a full listing that rebuilds it; markerindex.py)."""
        if self.store is None:
            return self.markers(recipe), None
        found = markerindex.listing(
            self.store,
            self.marker_dir,
            self.results_dir,
            recipe,
            self.repo / ".snakemake/lead_recovery/s3_markers.json",
            refresh=refresh,
        )
        self._present.update(found.cache)
        return found.markers, found.source

    def markers(self, recipe: str | None = None) -> list[Marker]:
        """The markers (one recipe's) in the marker folder. On S3, those already read
        at the ETag, size and time the listing shows come from this checkout's
        ``.snakemake/lead_recovery/s3_markers.json``, not from a GET each."""
        cache = self.repo / ".snakemake/lead_recovery/s3_markers.json" if self.store else None
        return markers.list_markers(self.marker_dir, recipe, store=self.store, cache_file=cache)

    def show(self, path: str | Path) -> str:
        """A path as the user reads it: ``s3://bucket/key`` on S3, else relative if inside."""
        return self.store.location(path) if self.store is not None else _show(path)

    def where(self, path: str | Path) -> str:
        """A path as ``--json`` gives it: ``s3://bucket/key`` on S3, else the path."""
        return self.store.location(path) if self.store is not None else str(path)

    def exists(self, path: str) -> bool:
        return self.store.exists(path) if self.store is not None else os.path.exists(path)

    def read_marker(self, path: str) -> Marker | None:
        if self.store is not None:
            return markers.read_stored(self.store, path)
        return markers.read_marker(path) if os.path.exists(path) else None

    def day(self, given: str | None) -> str:
        """``--date`` checked, or today's run date."""
        if given is None:
            return self.today
        try:
            return rundate.parse_date(given)
        except LeadRecoveryError as err:
            raise UsageError(f"--date: {err}") from None

    def info(self, name: str) -> RecipeInfo:
        """The recipe, its freshness policy and SQL hash, loaded once per name."""
        if name in self._recipes:
            return self._recipes[name]

        info = RecipeInfo(name)
        folder = Path(self.recipes_dir) / name
        if "/" in name or "\\" in name or not folder.is_dir():
            info.problem = f"no recipe folder {_show(folder)}/; the workflow never reads it"
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
                    info.policy = freshness.policy_for(info.recipe, self.config, os.environ)
                    info.sql_sha256 = recipes.sql_sha256(info.recipe.sql())
        self._recipes[name] = info
        return info

    def recipe_name(self, name: str) -> str:
        """A recipe named on the command line: a safe name, and one we know of.

        Known means a recipe folder exists or markers of that name do (so the
        markers of a removed recipe can still be listed and deleted).
        """
        try:
            recipes.validate_name(name)
        except LeadRecoveryError as err:
            raise UsageError(str(err)) from None
        if self.info(name).exists:
            return name
        prefix = f"{markers.PREFIX}{name}_"
        if self.store is not None:
            names = self.store.names(self.marker_dir)
        elif os.path.isdir(self.marker_dir):
            with os.scandir(self.marker_dir) as entries:
                names = [entry.name for entry in entries]
        else:
            names = []
        for entry in names:
            parsed = markers.parse_marker_name(entry)
            if parsed and parsed[0] == name and entry.startswith(prefix):
                return name
        try:
            known = ", ".join(recipes.discover(self.recipes_dir)) or "none"
        except LeadRecoveryError:
            known = "none"
        raise UsageError(
            f"unknown recipe '{name}' (no folder {_show(Path(self.recipes_dir) / name)}/ and no "
            f"markers of that name; known recipes: {known})"
        )

    def explain(self, marker: Marker | None, cache_present: bool, run_date: str, name: str):
        """(counts, reason): the workflow's own decision for a run of ``run_date`` now.

        ``counts`` is None when the decision does not apply (the workflow never
        reads this recipe's markers); ``reason`` then says why.
        """
        info = self.info(name)
        if info.problem:
            return None, info.problem
        if self.config.get("skip_redshift"):
            return None, "skip_redshift=true in the config: markers are neither checked nor written"
        if not self._real_date(run_date):
            return None, f"'{run_date}' in the file name is not a real date"
        decision = freshness.decide(
            marker,
            cache_present,
            run_date=run_date,
            sql_sha256=info.sql_sha256,
            policy=info.policy,  # type: ignore[arg-type]
            now=self.now,
            tz=self.tz,
        )
        return decision.counts, decision.reason

    def cache(self, recipe: str, run_date: str) -> tuple[str, bool]:
        """The day's cached extract and whether it exists (``os.path.exists``, as assess).

        Listing each grandparent folder once spares a failed ``stat`` for every
        marker whose day has no folder: 10,000 markers, a few caches.
        """
        path = layout.leads_path(self.results_dir, recipe, run_date)
        if (recipe, run_date) in self._present:
            return path, self._present[recipe, run_date]
        folder = os.path.dirname(path)
        parent, name = os.path.split(folder)
        if self.store is not None:  # one LIST per recipe, not a HEAD per marker
            if parent not in self._listings:
                self._listings[parent] = frozenset(self.store.listing(parent))
            return path, f"{name}/leads.parquet" in self._listings[parent]
        if parent not in self._listings:
            try:
                self._listings[parent] = frozenset(os.listdir(parent))
            except OSError:
                self._listings[parent] = frozenset()
        return path, name in self._listings[parent] and os.path.exists(path)

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


# --------------------------------------------------------------------------- commands


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    left = abs(int(seconds))
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{sign}{days}d{hours}h"
    if hours:
        return f"{sign}{hours}h{minutes}m"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _status(counts: bool | None, reason: str) -> str:
    if counts:
        return "COUNTS"
    return f"{'NO' if counts is False else 'n/a'}: {reason}"


def describe(ctx: Context, marker: Marker) -> dict[str, Any]:
    """One marker as ``list`` shows it (and as ``--json`` prints it)."""
    cache, present = ctx.cache(marker.recipe, marker.run_date)
    counts, reason = ctx.explain(marker, present, marker.run_date, marker.recipe)
    if marker.format == "corrupt" and marker.problem and "unreadable" not in reason:
        reason = f"{reason}; marker unreadable ({marker.problem})"
    age = (ctx.now - marker.queried_at).total_seconds() if marker.queried_at else None
    record = marker.record
    return {
        "recipe": marker.recipe,
        "run_date": marker.run_date,
        "current_run_date": marker.run_date == ctx.today,
        "format": marker.format,
        "queried_at": ctx.when(marker.queried_at),
        "rows": marker.rows,
        "age_s": None if age is None else int(age),
        "cache_present": present,
        "counts": counts,
        "reason": reason or None,
        "problem": marker.problem,
        "created_by": record.get("created_by"),
        "user@host": record.get("user@host"),
        "path": ctx.where(marker.path),
        "cache_path": ctx.where(cache),
    }


def _lease(ctx: Context, holder: lease.Holder | None) -> dict[str, Any] | None:
    """A live lease as ``list`` shows it: who is querying the day now, until when."""
    if holder is None:
        return None
    return {
        "held_by": holder.describe(),
        "owner": holder.owner,
        "pid": holder.pid,
        "run_id": holder.run_id,
        "renewed_at": holder.renewed_at,
        "expires_at": holder.expires_at,
    }


def cmd_list(ctx: Context, args: SimpleNamespace) -> int:
    name = ctx.recipe_name(args.recipe) if args.recipe is not None else None
    day = ctx.day(args.date) if args.date is not None else None
    found, source = ctx.listed(name, args.refresh)
    if day is not None:
        found = [m for m in found if m.run_date == day]
    rows = [describe(ctx, m) for m in found]
    leases = {
        held: holder
        for held, holder in lease.live(ctx.marker_dir, ctx.store).items()
        if (parsed := markers.parse_marker_name(held))
        and (name is None or parsed[0] == name)
        and (day is None or parsed[1] == day)
    }
    for row in rows:
        holder = leases.pop(os.path.basename(row["path"]), None)
        row["lease"] = _lease(ctx, holder)
    for held, holder in sorted(leases.items()):  # a first query in progress: no marker yet
        recipe, run_date = markers.parse_marker_name(held)
        rows.append(
            {
                "recipe": recipe,
                "run_date": run_date,
                "current_run_date": run_date == ctx.today,
                "format": "none",
                "counts": None,
                "reason": "being queried",
                "path": ctx.where(f"{ctx.marker_dir}/{held}"),
                "lease": _lease(ctx, holder),
            }
        )
    if args.json:
        print_json(rows)
        return OK
    out = [
        f"# markers in {ctx.show(ctx.marker_dir)}; run date now {ctx.today} "
        f"(* = that date, read by the next run); now {ctx.when(ctx.now)}"
    ]
    if not rows:
        out.append(
            "no markers"
            + (f" for {name}" if name else "")
            + (f" on {day}" if day else "")
            + (f"; {source}" if source else "")
        )
        sys.stdout.write("\n".join(out) + "\n")
        return OK
    header = ("RECIPE", "RUN_DATE", "FORMAT", "QUERIED_AT", "ROWS", "AGE", "CACHE", "STATUS")
    cells = [
        (
            r["recipe"],
            r["run_date"] + ("*" if r["current_run_date"] else ""),
            r["format"],
            r.get("queried_at") or "-",
            "-" if r.get("rows") is None else str(r["rows"]),
            _age(r.get("age_s")),
            "present" if r.get("cache_present") else "missing",
            _status(r["counts"], r["reason"] or "")
            + (f"; QUERYING NOW by {r['lease']['held_by']}" if r["lease"] else ""),
        )
        for r in rows
    ]
    out.append(table(cells, header))
    counting = sum(1 for r in rows if r["counts"])
    out.append(f"{len(rows)} marker(s), {counting} counting" + (f"; {source}" if source else ""))
    sys.stdout.write("\n".join(out) + "\n")
    return OK


def cmd_check(ctx: Context, args: SimpleNamespace) -> int:
    name = ctx.recipe_name(args.recipe)
    day = ctx.day(args.date)
    path = markers.marker_path(ctx.marker_dir, name, day)
    cache = layout.leads_path(ctx.results_dir, name, day)
    info = ctx.info(name)
    if info.problem is None and not ctx.config.get("skip_redshift"):
        found, decision = freshness.assess(  # exactly what the workflow runs
            info.recipe,  # type: ignore[arg-type]
            day,
            marker_dir=ctx.marker_dir,
            results_dir=ctx.results_dir,
            policy=info.policy,  # type: ignore[arg-type]
            now=ctx.now,
            tz=ctx.tz,
            store=ctx.store,
        )
        counts, reason = decision.counts, decision.reason
        present = ctx.exists(cache)
    else:
        found = ctx.read_marker(path)
        present = ctx.exists(cache)
        counts, reason = ctx.explain(found, present, day, name)

    label = f"{name} {day}"
    cache_text = f"cached extract {'present' if present else 'missing'} ({ctx.show(cache)})"
    if found is None:
        print(f"{label}: no marker ({ctx.show(path)}); {cache_text}")
        ok = False
    elif found.format == "corrupt":
        print(f"{label}: marker unreadable: {found.problem} ({ctx.show(path)}); {cache_text}")
        ok = False
    else:
        rows = "" if found.rows is None else f", {found.rows} rows"
        print(
            f"{label}: marker present (queried_at {ctx.when(found.queried_at)}{rows}, "
            f"{ctx.show(path)}); {cache_text}"
        )
        ok = present
    if counts:
        print(f"{label}: marker counts; the next run does not query")
    elif counts is False:
        print(f"{label}: the next run queries: {reason}")
    else:
        print(f"{label}: {reason}")
    if args.strict:
        ok = ok and bool(counts)
    return OK if ok else NO


def _parquet_rows(path: str, store: S3Store | None = None) -> int:
    # Only `create` reads Parquet; importing pyarrow (~0.2 s) at the top would
    # make every other command (and `markers list` on 10,000 markers) slower.
    import pyarrow.parquet as pq

    if store is None:
        return pq.read_metadata(path).num_rows
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lead-recovery-") as tmp:
        local = Path(tmp) / "leads.parquet"
        store.download(path, local)  # rare (a person marking a day): the whole file
        return pq.read_metadata(local).num_rows


def cmd_create(ctx: Context, args: SimpleNamespace) -> int:
    name = args.recipe
    try:
        recipes.validate_name(name)
        info = ctx.info(name)
        if not info.exists:
            recipes.load(ctx.recipes_dir, name)  # raises the "unknown recipe" message
    except LeadRecoveryError as err:
        raise UsageError(str(err)) from None
    if info.problem:
        raise UsageError(f"cannot create a marker for '{name}': {info.problem}")
    day = ctx.day(args.date)
    path = markers.marker_path(ctx.marker_dir, name, day)
    cache = layout.leads_path(ctx.results_dir, name, day)
    label = f"{name} {day}"

    suspect = layout.suspect_path(ctx.results_dir, name, day)
    if ctx.store is None and args.force and not os.path.isfile(cache) and os.path.isfile(suspect):
        os.replace(suspect, cache)  # accept the extract that failed its expect: checks
        print(f"{label}: accepted the suspect extract {_show(suspect)} as {_show(cache)}")
    present = ctx.exists(cache) if ctx.store is not None else os.path.isfile(cache)
    rows: int | None = None
    if present:
        try:
            rows = _parquet_rows(cache, ctx.store)
        except Exception as err:  # noqa: BLE001 - any unreadable file is refused the same way
            if not args.force:
                raise Refused(
                    f"{label}: cached extract {ctx.show(cache)} is not a readable Parquet file "
                    f"({err.__class__.__name__}); no marker created (--force to create anyway)"
                ) from None
    elif not args.force:
        raise Refused(
            f"{label}: no cached extract ({ctx.show(cache)}); a marker without it would not "
            "spare a query. Run the workflow for that date, or use --force"
        )

    existing = ctx.read_marker(path) if not args.force else None
    if existing is not None:
        if existing.format != "corrupt":
            print(
                f"{label}: marker already exists (queried_at {ctx.when(existing.queried_at)}, "
                f"{ctx.show(path)}); left as is (--force to replace it)"
            )
            return OK
        print(f"{label}: replacing unreadable marker ({existing.problem})")

    record = {
        "recipe": name,
        "run_date": day,
        "queried_at": ctx.when(ctx.now),
        "rows": rows,
        "sql_sha256": info.sql_sha256,
        "duration_s": None,
        "user@host": jobs.user_at_host(),
        "created_by": "markers create",
    }
    if ctx.store is not None:
        # S3 dates the marker itself (now): the next run may redo the analysis, never the query
        ctx.store.write(path, markers.render(record))
        markerindex.note(ctx.store, ctx.marker_dir, ctx.results_dir, [os.path.basename(path)])
    else:
        markers.write_marker(path, record)
    if present and ctx.store is None:
        # Dated like the extract it stands for, so Snakemake does not rerun the
        # analysis of unchanged data just because the marker is newer than it.
        stat = os.stat(cache)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    print(f"{label}: created {ctx.show(path)} ({'no' if rows is None else rows} rows)")
    if not present:
        print(
            f"{label}: warning: no cached extract ({ctx.show(cache)}); the next run still queries"
        )
    return OK


def cmd_delete(ctx: Context, args: SimpleNamespace) -> int:
    name = ctx.recipe_name(args.recipe)
    if args.all_dates:
        found = ctx.markers(name)
        targets = [str(m.path) for m in found]
        label = f"{name} (all dates)"
    else:
        day = ctx.day(args.date)
        path = markers.marker_path(ctx.marker_dir, name, day)
        there = ctx.exists(path) if ctx.store is not None else os.path.lexists(path)
        targets = [path] if there else []
        label = f"{name} {day}"
    if not targets:
        print(f"{label}: no marker to delete")
        return OK
    for target in targets:
        _, day = markers.parse_marker_name(os.path.basename(target)) or (name, "")
        kept = layout.kept_dir(ctx.results_dir, name, day)
        # what an interrupted re-query kept would otherwise come back instead of a query
        if ctx.store is not None:
            ctx.store.delete(target)
            s3cache.discard(ctx.store, kept)
        else:
            os.unlink(target)
            cache.discard(kept)
        print(f"deleted {ctx.show(target)}")
    if ctx.store is not None:
        markerindex.forget(ctx.store, ctx.marker_dir, [os.path.basename(t) for t in targets])
    print(f"{label}: {len(targets)} marker(s) deleted; a run of that date queries again")
    return OK


def cmd_prune(ctx: Context, args: SimpleNamespace) -> int:
    try:
        limit = freshness.parse_duration(args.older_than, "--older-than")
    except LeadRecoveryError as err:
        raise UsageError(str(err)) from None
    name = ctx.recipe_name(args.recipe) if args.recipe is not None else None
    found = ctx.markers(name)
    doomed = []
    for marker in found:
        if marker.run_date >= ctx.today:
            continue  # the next run reads these: delete them explicitly if meant
        when = marker.queried_at
        if when is None:
            if ctx.store is not None:
                written = ctx.store.stat(str(marker.path))
                when = datetime.fromtimestamp(written.mtime if written else 0).astimezone()
            else:
                when = datetime.fromtimestamp(marker.path.stat().st_mtime).astimezone()
        if ctx.now - when > limit:
            doomed.append(marker)
    verb = "would delete" if args.dry_run else "deleted"
    for marker in doomed:
        if args.dry_run:
            pass
        elif ctx.store is not None:
            ctx.store.delete(str(marker.path))
        else:
            marker.path.unlink(missing_ok=True)
        print(f"{verb} {ctx.show(marker.path)}")
    if ctx.store is not None and not args.dry_run:
        markerindex.forget(ctx.store, ctx.marker_dir, [m.path.name for m in doomed])
    print(f"{verb} {len(doomed)} of {len(found)} marker(s) older than {args.older_than}")
    return OK


COMMANDS = {
    "list": cmd_list,
    "check": cmd_check,
    "create": cmd_create,
    "delete": cmd_delete,
    "prune": cmd_prune,
}

_DEFAULTS: dict[str, Any] = {
    "recipe": None,
    "date": None,
    "all_dates": False,
    "force": False,
    "strict": False,
    "json": False,
    "older_than": None,
    "dry_run": False,
    "refresh": False,
    "repo": None,
    "marker_dir": None,
}


def execute(action: str, **given: Any) -> int:
    """Check the combination of options, then run ``action`` on the workflow's markers."""
    args = SimpleNamespace(**{**_DEFAULTS, **{k: v for k, v in given.items() if v is not None}})
    if action in ("check", "create", "delete") and args.recipe is None:
        raise UsageError(f"{action} needs a recipe (see '{PROG} --help')")
    if action == "prune" and not args.older_than:
        raise UsageError(f"prune needs --older-than DURATION, e.g. 30d (see '{PROG} --help')")
    if args.all_dates and args.date is not None:
        raise UsageError("--date and --all-dates cannot be combined")
    if args.all_dates and action != "delete":
        raise UsageError("--all-dates only applies to delete")
    return COMMANDS[action](Context.load(args), args)


# --------------------------------------------------------------------------- command line

_EPILOG = """\b
Examples:
  lead-recovery markers list
  lead-recovery markers list --recipe simulation_to_handoff --json
  lead-recovery markers check simulation_to_handoff --strict
  lead-recovery markers create simulation_to_handoff --date 20250512
  lead-recovery markers delete simulation_to_handoff --all-dates
  lead-recovery markers prune --older-than 30d --dry-run

\b
The previous system's form also works:
  markers --action list
  markers --recipe RECIPE --action check|create|delete [--date YYYYMMDD]

\b
Dates default to today's run date: today in the configured timezone, with
day_starts_at and LEAD_RECOVERY_NOW honoured, as in the workflow.
Exit status: 0 done, 1 not done (check: marker or cache missing; create
refused), 2 bad input (nothing touched).
"""


def _where(func):
    """--repo and --marker-dir, accepted before or after the command."""
    func = click.option(
        "--marker-dir", metavar="DIR", help="Look here instead of marker_dir of the config."
    )(func)
    return repo_option(func)


def _recipe(func):
    func = click.option("--recipe", "recipe_opt", metavar="RECIPE", hidden=True)(func)
    return click.argument("recipe", required=False, metavar="[RECIPE]")(func)


def _date(what: str):
    return click.option("--date", metavar="YYYYMMDD", help=f"{what} (default: today's run date).")


def _run(action: str, recipe_opt: str | None = None, **given: Any) -> int:
    """A subcommand: merge --repo/--marker-dir given before it, and --recipe with RECIPE."""
    parent = click.get_current_context().parent
    outer = parent.params if parent is not None else {}
    for key in ("repo", "marker_dir"):
        if given.get(key) is None:
            given[key] = outer.get(key)
    if recipe_opt is not None:
        if given.get("recipe") not in (None, recipe_opt):
            raise UsageError(f"two recipes given: '{given['recipe']}' and '{recipe_opt}'")
        given["recipe"] = recipe_opt
    return execute(action, **given)


@click.group("markers", invoke_without_command=True, context_settings=CONTEXT, epilog=_EPILOG)
@_where
@click.pass_context
def cli(ctx: click.Context, repo: str | None, marker_dir: str | None) -> None:
    """List, check, create, delete and prune the workflow's Redshift markers."""
    if ctx.invoked_subcommand is None:
        raise UsageError(f"a command is required: {', '.join(ACTIONS)} (see '{PROG} --help')")


@cli.command("list", context_settings=CONTEXT)
@click.option("--recipe", metavar="RECIPE", help="Only this recipe's markers.")
@click.option("--date", metavar="YYYYMMDD", help="Only markers of this run date.")
@click.option("--json", "json", is_flag=True, help="One JSON array instead of a table.")
@click.option(
    "--refresh",
    is_flag=True,
    help="On S3: list the store in full, not the marker index (and rebuild the index).",
)
@_where
def list_(**given: Any) -> int:
    """Every marker: run date, queried_at, rows, age, cache, whether it COUNTS and why not."""
    return _run("list", **given)


@cli.command(context_settings=CONTEXT)
@_recipe
@_date("Run date to check")
@click.option(
    "--strict", is_flag=True, help="Exit 0 only if the marker also counts (no query next run)."
)
@_where
def check(**given: Any) -> int:
    """Exit 0 if the day's marker and cached extract exist, 1 if not (says which)."""
    return _run("check", **given)


@cli.command(context_settings=CONTEXT)
@_recipe
@_date("Run date to mark")
@click.option(
    "--force",
    is_flag=True,
    help="Create even without a readable cached extract; replace an existing marker.",
)
@_where
def create(**given: Any) -> int:
    """Mark a day whose cached extract exists, so the next run does not query."""
    return _run("create", **given)


@cli.command(context_settings=CONTEXT)
@_recipe
@_date("Run date whose marker to delete")
@click.option("--all-dates", is_flag=True, help="Every marker of the recipe.")
@_where
def delete(**given: Any) -> int:
    """Delete a day's marker (or all of a recipe's); the next run of that date queries."""
    return _run("delete", **given)


@cli.command(context_settings=CONTEXT)
@click.option("--older-than", metavar="DURATION", help="e.g. 30d, 12h, 90m (required).")
@click.option("--recipe", metavar="RECIPE", help="Only this recipe's markers.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@_where
def prune(**given: Any) -> int:
    """Delete markers older than DURATION (never those of the current run date or later)."""
    return _run("prune", **given)


@click.command("markers", context_settings=CONTEXT)
@click.option("--action", required=True, type=click.Choice(ACTIONS))
@click.option("--recipe", metavar="RECIPE")
@click.option("--date", metavar="YYYYMMDD")
@click.option("--all-dates", is_flag=True)
@click.option("--force", is_flag=True)
@click.option("--strict", is_flag=True)
@click.option("--json", "json", is_flag=True)
@click.option("--older-than", metavar="DURATION")
@click.option("--dry-run", is_flag=True)
@_where
def legacy(action: str, **given: Any) -> int:
    """The previous system's form: markers [--recipe R] --action ACTION."""
    return execute(action, **given)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = legacy if any(a == "--action" or a.startswith("--action=") for a in argv) else cli
    # A short-lived process that builds ~5 objects per marker and frees none
    # until exit: the cyclic collector would only rescan them (a quarter of
    # `markers list` over 10,000 markers). Reference counting still frees.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return invoke(command, argv, prog)
    finally:
        if collecting:
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())
