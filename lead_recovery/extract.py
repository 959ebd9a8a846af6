"""The ``redshift_extract`` job: one recipe's day, queried at most once between all runs.

Under the day's lease (lease.py) the job reads the day's pair in the store and
decides with the run plan's own function (plan.py) and clock, so a job that
Snakemake runs for its own reasons never queries a day that is paid for:

- the marker counts: this checkout gets its copies of the pair (no query);
- only time ran out and the recipe has ``watermark.sql``: the source's
  watermark decides whether the extract still stands (a new marker, fenced
  like any commit) or the query runs;
- else the query runs into a temporary file, is checked (``expect:``) and is
  published (day.py): the extract under a name of its own, the marker
  committed under the lease, then the checkout's copies.

If another run took the day over while this one stalled, this run publishes
nothing: it waits for the taker, uses the taker's pair and says so; its own
query was spent. If the taker left the day without a pair, this run's
result, complete and checked, becomes the day's. The job never fails after
a pair of the day is in place: Snakemake's removal of a failed job's outputs
reaches only this checkout's copies anyway.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lead_recovery import atomic, checks, jobs, layout, lease, markers, plan, rundate
from lead_recovery.day import Day, Pair, Views, marker_generation
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.lease import LeaseLost, LeaseTimeout
from lead_recovery.recipes import Recipe, sql_sha256
from lead_recovery.rundate import parse_duration, to_date
from lead_recovery.store import Store, open_store
from lead_recovery.warehouse import Warehouse, named, open_warehouse

log = logging.getLogger("lead_recovery")


def write_parquet(reader: Any, out: str | Path) -> int:
    """Stream record batches into ``out`` as row groups; returns the row count."""
    import pyarrow.parquet as pq

    rows = 0
    with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
    return rows


def query_tag(recipe: str, run_date: str) -> str:
    return f"lead_recovery recipe={recipe} run_date={run_date}"


def watermark(recipe: Recipe, run_date: str, warehouse: Warehouse) -> str | None:
    """The source's watermark now: the first value ``watermark.sql`` returns, as text."""
    if recipe.watermark_path is None:
        return None
    sql = recipe.watermark_path.read_text(encoding="utf-8")
    try:
        batches = list(
            warehouse.stream(
                sql,
                {"run_date": to_date(run_date)},
                tag=query_tag(recipe.name, run_date) + " watermark",
                extract="cursor",
            )
        )
    except LeadRecoveryError as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}' watermark.sql: {err}") from None
    for batch in batches:
        if batch.num_rows:
            return str(batch.column(0)[0].as_py())
    return None


@dataclass
class Result:
    """A query this job ran: its extract (a local file) and the marker it deserves."""

    local: Path
    record: dict[str, Any]


def query(
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    local: Path,
    *,
    store: Store,
    accept_suspect: bool,
) -> Result:
    """Run the recipe's query into ``local`` and check it; the marker record it earns.

    A result that fails the recipe's ``expect:`` checks is kept in the store for
    inspection (``<recipe>/<YYYYMMDD>/suspect.parquet``) and earns no marker.
    """
    sql = recipe.sql()
    started = time.monotonic()
    queried_at = rundate.now()  # honours LEAD_RECOVERY_NOW, like the run date
    log.info(
        "querying %s warehouse for recipe %s, run date %s", warehouse.name, recipe.name, run_date
    )
    mark = watermark(recipe, run_date, warehouse)  # before the data: a change meanwhile shows
    try:
        reader = warehouse.stream(
            sql,
            {"run_date": to_date(run_date)},
            tag=query_tag(recipe.name, run_date),
            extract=recipe.extract,
        )
        rows = write_parquet(reader, local)
    except LeadRecoveryError as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
    except (OSError, pa.ArrowException) as err:  # a result that fails mid-stream, a full disk
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LeadRecoveryError(
            f"recipe '{recipe.name}': the extract failed while streaming: {first}"
        ) from None
    earlier = recent_rows(store, recipe.name, run_date) if "max_drop" in recipe.expect else []
    found = checks.problems(local, recipe.expect, earlier)
    if found and not accept_suspect:
        kept_at = layout.suspect_path("", recipe.name, run_date).lstrip("/")
        store.put_file(local, kept_at, replace=True)
        raise LeadRecoveryError(
            f"recipe '{recipe.name}' {run_date}: suspect: {'; '.join(found)}; the extract is "
            f"kept for inspection in {store.location(kept_at)}, the day is not marked and the "
            "next run queries again (accept_suspect=true marks it anyway)"
        )
    if found:
        log.warning("recipe %s %s: marked although suspect: %s", recipe.name, run_date, found)
    record = markers.record(
        recipe=recipe.name,
        run_date=run_date,
        queried_at=queried_at.isoformat(timespec="seconds"),
        rows=rows,
        sql_sha256=sql_sha256(sql),
        decided_at=jobs.decided_at(),
        bytes=local.stat().st_size,
        duration_s=round(time.monotonic() - started, 3),
        warehouse=warehouse.name,
        run_id=jobs.run_id(),
    )
    if found:
        record["suspect"] = found  # marked anyway: accept_suspect
    if mark is not None:
        record["watermark"] = mark
    how = dict(getattr(warehouse, "last_extract", None) or {})
    if how:  # cursor or unload, and how (fetch size, staging, parts)
        record["path"] = how.pop("path", None)
        record["path_details"] = {k: v for k, v in how.items() if k not in ("rows", "complete")}
    return Result(local, record)


def recent_rows(store: Store, recipe: str, run_date: str) -> list[int]:
    """Row counts of the recipe's marked days before ``run_date``, oldest first (max_drop)."""
    earlier = [
        m
        for m in markers.list_markers(store, recipe)
        if m.run_date < run_date and isinstance(m.rows, int)
    ]
    return [m.rows for m in sorted(earlier, key=lambda m: m.run_date)][-checks.RECENT_DAYS :]


def _described(pair: Pair) -> str:
    record = pair.marker.record
    who = record.get("user@host") or "another run"
    return f"{who} queried at {record.get('queried_at', '?')}"


def run_job(
    config: Mapping[str, Any],
    *,
    recipe: Recipe,
    run_date: str,
    views: Views,
    forced_on_command_line: bool,
    store: Store | None = None,
) -> dict[str, Any]:
    """The job; what it did, for the end-of-run account (``outcome``: queried, cached,
    confirmed or skipped, with the marker's record)."""
    job = _Job(config, recipe, run_date, views, forced_on_command_line, store)
    try:
        return job.run()
    except LeaseTimeout as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
    finally:
        job.local.unlink(missing_ok=True)


class _Job:
    """One extract job's state across its attempts at the day's lease."""

    def __init__(
        self,
        config: Mapping[str, Any],
        recipe: Recipe,
        run_date: str,
        views: Views,
        forced_on_command_line: bool,
        store: Store | None,
    ) -> None:
        self.config, self.recipe, self.run_date, self.views = config, recipe, run_date, views
        self.store = store if store is not None else open_store(config)
        self.day = Day(self.store, recipe.name, run_date)
        self.label = f"recipe {recipe.name} {run_date}"
        self.policy = plan.policy_for(recipe, config, os.environ, forced_on_command_line)
        run = rundate.resolve(
            config.get("date"), config.get("timezone"), config.get("day_starts_at")
        )
        self.now, self.tz = run.decided_at, rundate.zone(config.get("timezone"))
        self.warehouse = named(config, os.environ)  # a marker counts for its own warehouse
        self.local = atomic.temp_beside(views.leads)
        self.spent: Result | None = None  # a query of ours whose commit a taker refused
        self.lost_to: str | None = None

    def marker_generation(self) -> int:
        pair = self.day.read()
        return marker_generation(pair.marker if pair is not None else None)

    def run(self) -> dict[str, Any]:
        if self.config.get("skip_redshift"):
            return _copy_only(self.day, self.views, self.label)
        wait = parse_duration(self.config["lock_timeout"], "lock_timeout").total_seconds()
        life = parse_duration(self.config["lease_ttl"], "lease_ttl").total_seconds()
        before = self.day.read()  # what the store held when this job began
        while True:
            try:
                with lease.held(
                    self.store,
                    self.recipe.name,
                    self.run_date,
                    wait_s=wait,
                    life_s=life,
                    what=self.label,
                    last_generation=self.marker_generation,
                ) as held:
                    self.day.roll_forward(held)
                    self.day.clear_temporaries(self.views, keep=self.local)
                    outcome = self.attempt(held, self.day.read(), before)
            except LeaseLost as lost:
                # Taken over while this run stalled: nothing of it was published. Wait
                # for the taker (its lease), then use what it left.
                self.lost_to = str(lost)
                log.warning("%s: %s; waiting for that run, then using its pair", self.label, lost)
                continue
            if self.lost_to is not None and self.spent is not None:
                return _spent(outcome, self.spent, self.label)
            return outcome

    def attempt(self, held: lease.Lease, pair: Pair | None, before: Pair | None) -> dict[str, Any]:
        """Under the lease: use the day's pair if it counts, else query and publish."""
        label, day, recipe = self.label, self.day, self.recipe
        if self.spent is not None:  # this run's query lost its commit to a taker
            if pair is not None and pair.present:  # the taker's pair stands, whatever it is
                day.link(pair, self.views)
                return {"outcome": "cached", **pair.marker.record}
            published = day.publish(held, self.spent.local, self.spent.record)
            day.link(published, self.views, local=self.spent.local)
            log.info("%s: the run that took the day over left no marker; this run's stands", label)
            self.spent = None
            return {"outcome": "queried", **published.marker.record}
        policy = self.policy
        moved = pair is not None and (before is None or pair.text != before.text)
        if moved and pair is not None and pair.present:
            # Another run published the day while this one waited: its pair is as fresh
            # as a query of ours would be, whatever forced ours (no second query).
            policy = plan.Policy(policy.ttl, policy.refresh_after, policy.day_starts_at, None)
        decision = plan.decide(
            pair.marker if pair else None,
            bool(pair and pair.present),
            run_date=self.run_date,
            sql_sha256=recipe.sql_sha256,
            policy=policy,
            now=self.now,
            tz=self.tz,
            warehouse=self.warehouse,
        )
        if decision.counts and pair is not None:
            day.link(pair, self.views)
            if moved:
                log.info(
                    "%s: another run queried it while this one waited (%s); using its extract "
                    "and marker (no query)",
                    label,
                    _described(pair),
                )
            else:
                log.info("%s: marker counts; this checkout has its copies (no query)", label)
            return {"outcome": "cached", **pair.marker.record}
        warehouse = _open(self.config, recipe)
        try:
            checked = False
            if decision.expired and pair is not None and recipe.watermark_path is not None:
                confirmed = _confirm(recipe, self.run_date, warehouse, day, held, pair, self.views)
                if confirmed is not None:
                    return confirmed
                checked = pair.marker.record.get("watermark") is not None
            log.info("%s: querying: %s", label, decision.reason)
            result = query(
                recipe,
                self.run_date,
                warehouse,
                self.local,
                store=self.store,
                accept_suspect=bool(self.config.get("accept_suspect")),
            )
            result.record["warehouse_id"] = self.warehouse
        finally:
            warehouse.close()
        self.spent = result  # until it is published: a taker may refuse the commit
        published = day.publish(held, result.local, result.record)
        self.spent = None
        day.link(published, self.views, local=result.local)
        log.info(
            "%s: %d rows; extract %s, marker %s",
            label,
            result.record["rows"],
            self.store.location(published.extract),
            self.store.location(day.marker_path),
        )
        return {"outcome": "queried", **published.marker.record, "watermark_checked": checked}


def _open(config: Mapping[str, Any], recipe: Recipe) -> Warehouse:
    try:
        return open_warehouse(config["warehouse"], config)
    except LeadRecoveryError as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None


def _confirm(
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    day: Day,
    held: lease.Lease,
    pair: Pair,
    views: Views,
) -> dict[str, Any] | None:
    """An expired marker that still stands because the source has not changed: the
    cheap watermark query instead of the expensive one. ``None`` if it changed."""
    before = pair.marker.record.get("watermark")
    if before is None:
        return None
    label = day.label
    now = watermark(recipe, run_date, warehouse)
    if now != before:
        log.info("%s: source changed (watermark %s -> %s)", label, before, now)
        return None
    record = {**pair.marker.record, "confirmed_at": rundate.now().isoformat()}
    confirmed = day.recommit(held, pair, record)
    day.link(confirmed, views)
    log.info(
        "%s: marker counts: source unchanged since %s (watermark %s); no query",
        label,
        record.get("queried_at"),
        before,
    )
    return {"outcome": "confirmed", **confirmed.marker.record}


def _spent(outcome: dict[str, Any], spent: Result, label: str) -> dict:
    """A query this run paid for whose result gave way to the run that took the day over."""
    taker = outcome.get("user@host") or "another run"
    said = (
        f"another run took over: {taker} queried at {outcome.get('queried_at', '?')}; "
        "this run's own query was spent and discarded"
    )
    log.warning("%s: %s", label, said)
    record = spent.record
    return {
        **outcome,
        "outcome": "queried",
        "spent": said,
        "rows": record.get("rows", outcome.get("rows")),
        "duration_s": record.get("duration_s", outcome.get("duration_s")),
    }


def _copy_only(day: Day, views: Views, label: str) -> dict[str, Any]:
    """``skip_redshift``: this checkout's copy of a day the store holds; never a query."""
    pair = day.read()
    if pair is None or not pair.present:
        raise LeadRecoveryError(
            f"{label}: skip_redshift, and the store has no marked extract of it to copy"
        )
    day.link(pair, views)
    return {"outcome": "skipped", **pair.marker.record}
