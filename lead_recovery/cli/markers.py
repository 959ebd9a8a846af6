"""``lead-recovery markers``: list, check, create, delete and prune the Redshift markers.

Commands::

    lead-recovery markers list   [--recipe R] [--date YYYYMMDD] [--json] [--refresh]
    lead-recovery markers check  RECIPE [--date YYYYMMDD] [--strict]
    lead-recovery markers create RECIPE [--date YYYYMMDD] [--force]
    lead-recovery markers delete RECIPE [--date YYYYMMDD | --all-dates]
    lead-recovery markers prune  --older-than 30d [--recipe R] [--dry-run]

Aliases: the ``markers`` console script, ``python -m lead_recovery.cli.markers``,
``workflow/scripts/markers.py``, and the previous system's spelling
``markers --action list`` / ``markers --recipe R --action check|create|delete``.

Each command is a few lines over the package: the store and its days
(store/, day.py), the decision (plan.py), the marker record (markers.py).
So the helper looks where the workflow writes and agrees with what the next
``snakemake`` run will do.

Exit status: 0 done (``check``: the marker and its extract are there); 1 not
done (``check``: one of them is missing; ``create`` refused); 2 bad input, in
which case nothing was touched.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from lead_recovery import layout, lease, markerindex, markers, plan, recipes, store
from lead_recovery.cli.common import (
    CONTEXT,
    NO,
    OK,
    Refused,
    UsageError,
    invoke,
    print_json,
    repo_option,
    table,
)
from lead_recovery.cli.markercontext import Context
from lead_recovery.day import Day, Pair, marker_generation
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.markers import Marker

PROG = "markers"
ACTIONS = ("list", "check", "create", "delete", "prune")
WRITING = ("create", "delete", "prune")  # on shared ground: store_umask and store_group


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
    extract, present = ctx.extract(marker)
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
        "path": ctx.location(marker),
        "cache_path": ctx.store.location(extract),
    }


def _lease(state: lease.State | None) -> dict[str, Any] | None:
    """A live lease as ``list`` shows it: who is querying the day now."""
    if state is None:
        return {"held_by": "an unreadable lease", "owner": None, "pid": None, "run_id": None}
    return {
        "held_by": state.holder.describe(),
        "owner": state.holder.owner,
        "pid": state.holder.pid,
        "run_id": state.holder.run_id,
        "generation": state.generation,
    }


def cmd_list(ctx: Context, args: SimpleNamespace) -> int:
    name = ctx.recipe_name(args.recipe) if args.recipe is not None else None
    day = ctx.day(args.date) if args.date is not None else None
    found, source = ctx.listed(name, args.refresh)
    if day is not None:
        found = [m for m in found if m.run_date == day]
    rows = [describe(ctx, m) for m in found]
    leases = {
        held: state
        for held, state in lease.live(ctx.store, ctx.lease_life()).items()
        if (name is None or held[0] == name) and (day is None or held[1] == day)
    }
    for row in rows:
        row["lease"] = (
            _lease(leases.pop((row["recipe"], row["run_date"])))
            if (row["recipe"], row["run_date"]) in leases
            else None
        )
    for (recipe, run_date), state in sorted(leases.items()):  # a first query: no marker yet
        rows.append(
            {
                "recipe": recipe,
                "run_date": run_date,
                "current_run_date": run_date == ctx.today,
                "format": "none",
                "counts": None,
                "reason": "being queried",
                "path": ctx.store.location(markers.marker_path(layout.MARKERS, recipe, run_date)),
                "lease": _lease(state),
            }
        )
    if args.json:
        print_json(rows)
        return OK
    out = [
        f"# markers in {ctx.show(ctx.store.location(layout.MARKERS))}; run date now {ctx.today} "
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
    the_day = Day(ctx.store, name, day)
    pair = the_day.read()
    found = pair.marker if pair is not None else None
    present = bool(pair and pair.present)
    extract = pair.extract if pair is not None else layout.legacy_extract(name, day)
    if pair is None and ctx.store.stat(extract) is not None:
        present = True  # an extract without its marker still says so
    counts, reason = ctx.explain(found, present, day, name)
    path = ctx.store.location(the_day.marker_path)
    label = f"{name} {day}"
    cache_text = (
        f"cached extract {'present' if present else 'missing'} "
        f"({ctx.show(ctx.store.location(extract))})"
    )
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


def _rows_of(ctx: Context, path: str) -> int:
    """Rows of a Parquet file in the store (its footer only; on S3 it is fetched)."""
    import pyarrow.parquet as pq  # only `create` reads Parquet: not at import

    local = ctx.store.local_path(path)
    if local is not None:
        return pq.read_metadata(local).num_rows
    with tempfile.TemporaryDirectory(prefix="lead-recovery-") as tmp:
        copy = Path(tmp) / "leads.parquet"
        ctx.store.fetch(path, copy)  # rare (a person marking a day): the whole file
        return pq.read_metadata(copy).num_rows


def _day_extract(ctx: Context, name: str, day: str) -> str | None:
    """The newest extract of the day in the store, or the legacy one; ``None`` if none."""
    listed = ctx.store.listing(f"{name}/{day}/{layout.EXTRACTS}")
    written = sorted(
        (entry.mtime, n) for n, entry in listed.items()
        if n.endswith(".parquet") and "/" not in n
    )  # fmt: skip
    if written:
        return f"{name}/{day}/{layout.EXTRACTS}/{written[-1][1]}"
    legacy = layout.legacy_extract(name, day)
    return legacy if ctx.store.stat(legacy) is not None else None


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
    label = f"{name} {day}"
    the_day = Day(ctx.store, name, day)
    path = ctx.store.location(the_day.marker_path)
    extract = _day_extract(ctx, name, day)
    suspect = layout.suspect_path("", name, day).lstrip("/")
    if extract is None and args.force and ctx.store.stat(suspect) is not None:
        extract = suspect  # accept the extract that failed its expect: checks
        print(f"{label}: accepted the suspect extract {ctx.show(ctx.store.location(suspect))}")
    rows: int | None = None
    if extract is not None:
        try:
            rows = _rows_of(ctx, extract)
        except Exception as err:  # noqa: BLE001 - any unreadable file is refused the same way
            if not args.force:
                raise Refused(
                    f"{label}: cached extract {ctx.show(ctx.store.location(extract))} is not a "
                    f"readable Parquet file ({err.__class__.__name__}); no marker created "
                    "(--force to create anyway)"
                ) from None
    elif not args.force:
        where = ctx.show(ctx.store.location(layout.legacy_extract(name, day)))
        raise Refused(
            f"{label}: no cached extract ({where}); a marker without it would not spare a "
            "query. Run the workflow for that date, or use --force"
        )
    existing = the_day.read()
    if existing is not None and not args.force:
        if existing.marker.format != "corrupt":
            print(
                f"{label}: marker already exists (queried_at "
                f"{ctx.when(existing.marker.queried_at)}, {ctx.show(path)}); left as is "
                "(--force to replace it)"
            )
            return OK
        print(f"{label}: replacing unreadable marker ({existing.marker.problem})")
    record = markers.record(
        recipe=name,
        run_date=day,
        queried_at=ctx.when(ctx.now),
        rows=rows,
        sql_sha256=info.recipe.sql_sha256 if info.recipe else None,
        duration_s=None,
        created_by="markers create",
    )
    committed = _commit(ctx, the_day, extract, record)
    if extract is not None and ctx.own_store:  # this checkout's copies, as a run makes them
        the_day.link(committed, ctx.views(name, day))
    print(f"{label}: created {ctx.show(path)} ({'no' if rows is None else rows} rows)")
    if extract is None:
        print(f"{label}: warning: no cached extract; the next run still queries")
    return OK


def _commit(ctx: Context, the_day: Day, extract: str | None, record: dict[str, Any]) -> Pair:
    """A marker for an extract the store has, committed as a run commits one."""
    named = extract or layout.extract_path(the_day.recipe, the_day.date, "(none)")
    pair = Pair(Marker(Path(the_day.marker_path), the_day.recipe, the_day.date, "json"), b"", "",
                named, extract is not None)  # fmt: skip
    with lease.held(
        ctx.store,
        the_day.recipe,
        the_day.date,
        wait_s=30,
        life_s=ctx.lease_life(),
        what=f"{the_day.recipe} {the_day.date}",
        last_generation=lambda: marker_generation(getattr(the_day.read(), "marker", None)),
    ) as held:
        committed = the_day.recommit(held, pair, record)
    if ctx.remote:
        markerindex.note(ctx.store, layout.MARKERS, "", [markers.marker_name(the_day.recipe,
                         the_day.date)])  # fmt: skip
        return committed
    # Dated like the extract it stands for, so Snakemake does not rerun the analysis of
    # unchanged data just because the marker is newer than it.
    marker_file = ctx.store.local_path(the_day.marker_path)
    data = ctx.store.local_path(extract) if extract else None
    if marker_file is not None and data is not None and data.exists():
        info = os.stat(data)
        os.utime(marker_file, ns=(info.st_atime_ns, info.st_mtime_ns))
    return committed


def cmd_delete(ctx: Context, args: SimpleNamespace) -> int:
    name = ctx.recipe_name(args.recipe)
    if args.all_dates:
        days = [m.run_date for m in markers.list_markers(ctx.store, name)]
        label = f"{name} (all dates)"
    else:
        day = ctx.day(args.date)
        there = ctx.store.stat(markers.marker_path(layout.MARKERS, name, day)) is not None
        days = [day] if there else []
        label = f"{name} {day}"
    if not days:
        print(f"{label}: no marker to delete")
        return OK
    for day in days:
        the_day = Day(ctx.store, name, day)
        the_day.discard_marker()
        print(f"deleted {ctx.show(ctx.store.location(the_day.marker_path))}")
    if ctx.remote:
        markerindex.forget(
            ctx.store,
            layout.MARKERS,
            [markers.marker_name(name, d) for d in days],  # type: ignore[arg-type]
        )
    print(f"{label}: {len(days)} marker(s) deleted; a run of that date queries again")
    return OK


def cmd_prune(ctx: Context, args: SimpleNamespace) -> int:
    try:
        limit = plan.parse_duration(args.older_than, "--older-than")
    except LeadRecoveryError as err:
        raise UsageError(str(err)) from None
    name = ctx.recipe_name(args.recipe) if args.recipe is not None else None
    found = markers.list_markers(ctx.store, name)
    written = ctx.store.entries(layout.MARKERS)
    doomed = []
    for marker in found:
        if marker.run_date >= ctx.today:
            continue  # the next run reads these: delete them explicitly if meant
        when = marker.queried_at
        if when is None:
            entry = written.get(marker.path.name)
            when = datetime.fromtimestamp(entry.mtime if entry else 0).astimezone()
        if ctx.now - when > limit:
            doomed.append(marker)
    verb = "would delete" if args.dry_run else "deleted"
    for marker in doomed:
        if not args.dry_run:
            the_day = Day(ctx.store, marker.recipe, marker.run_date)
            for extract in ctx.store.listing(
                f"{marker.recipe}/{marker.run_date}/{layout.EXTRACTS}"
            ):
                ctx.store.delete(f"{marker.recipe}/{marker.run_date}/{layout.EXTRACTS}/{extract}")
            the_day.discard_marker()
        print(f"{verb} {ctx.show(ctx.location(marker))}")
    if ctx.remote and not args.dry_run:
        markerindex.forget(ctx.store, layout.MARKERS, [m.path.name for m in doomed])  # type: ignore[arg-type]
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
    "store": None,
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
    ctx = Context.load(args)
    writes = action in WRITING and ctx.own_store  # else only the umask (list's S3 cache)
    store.share(ctx.config, store.shared_ground(ctx.config, ctx.repo) if writes else [])
    return COMMANDS[action](ctx, args)


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
    """--repo, --store and --marker-dir, accepted before or after the command."""
    func = click.option(
        "--marker-dir",
        metavar="DIR",
        help="A folder store's markers folder (DIR/.. is the store; as --store).",
    )(func)
    func = click.option(
        "--store",
        metavar="STORE",
        help="Look at this store (a folder or s3://bucket/prefix) instead of the config's.",
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
    for key in ("repo", "marker_dir", "store"):
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
def cli(ctx: click.Context, repo: str | None, marker_dir: str | None, store: str | None) -> None:
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
