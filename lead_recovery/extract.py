"""One recipe's query for one run date: cached extract first, marker last.

The extract is streamed into a temporary Parquet file next to its final
place and renamed when complete; only then is the marker written, itself
atomically. A failure or a kill at any point leaves no marker and no
partial cache, and never touches other days' files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from lead_recovery import (
    atomic,
    cache,
    checks,
    freshness,
    jobs,
    layout,
    lease,
    markers,
    rundate,
    s3cache,
)
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.lease import Lease, LeaseTimeout
from lead_recovery.recipes import Recipe, sql_sha256
from lead_recovery.rundate import parse_duration, to_date
from lead_recovery.store import S3Store, open_store
from lead_recovery.warehouse import Warehouse, open_warehouse

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


def extract(
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    leads_out: str | Path,
    marker_out: str | Path,
    kept_dir: str | Path,
    claim: Lease | None = None,
    accept_suspect: bool = False,
    results_dir: str = "results",
    keep_new: Callable[[Path, Path], object] | None = None,
    store: S3Store | None = None,
    marker_dir: str | None = None,
) -> dict[str, Any]:
    """Query, then keep the new pair, then publish it (extract first, marker last).

    The new pair is kept before it is published, so a kill between the two
    renames still leaves a complete pair for the next run to put back.
    ``keep_new(leads_tmp, marker_tmp)`` keeps it elsewhere than in the local
    ``kept_dir`` (on S3: s3cache.keep_new). ``store`` and ``marker_dir`` say where
    the recipe's earlier markers are (``max_drop``) when it is not beside ``marker_out``.
    """
    sql = recipe.sql()
    started = time.monotonic()
    queried_at = rundate.now()  # honours LEAD_RECOVERY_NOW, like the run date
    log.info(
        "querying %s warehouse for recipe %s, run date %s", warehouse.name, recipe.name, run_date
    )
    leads_tmp = atomic.temp_beside(leads_out)
    marker_tmp = None
    try:
        # Read before the data, so a source that changes meanwhile is seen as changed next time.
        mark = watermark(recipe, run_date, warehouse)
        try:
            reader = warehouse.stream(
                sql,
                {"run_date": to_date(run_date)},
                tag=query_tag(recipe.name, run_date),
                extract=recipe.extract,
            )
            rows = write_parquet(reader, leads_tmp)
        except LeadRecoveryError as err:
            raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
        except (OSError, pa.ArrowException) as err:  # a result that fails mid-stream, a full disk
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise LeadRecoveryError(
                f"recipe '{recipe.name}': the extract failed while streaming: {first}"
            ) from None
        earlier = (
            recent_rows(marker_dir or Path(marker_out).parent, recipe.name, run_date, store)
            if "max_drop" in recipe.expect
            else []
        )
        found = checks.problems(leads_tmp, recipe.expect, earlier)
        if found and not accept_suspect:
            kept_at = layout.suspect_path(results_dir, recipe.name, run_date)
            if store is not None:  # beside the day's pair, where the team looks, not on this host
                store.upload(leads_tmp, kept_at)
                kept_at = store.location(kept_at)
            else:
                os.replace(leads_tmp, kept_at)
            raise LeadRecoveryError(
                f"recipe '{recipe.name}' {run_date}: suspect: {'; '.join(found)}; the extract is "
                f"kept for inspection in {kept_at}, the day is not marked and the next run "
                "queries again (accept_suspect=true marks it anyway)"
            )
        if found:
            log.warning("recipe %s %s: marked although suspect: %s", recipe.name, run_date, found)
        record = {
            "recipe": recipe.name,
            "run_date": run_date,
            "queried_at": queried_at.isoformat(timespec="seconds"),
            "decided_at": jobs.decided_at(),
            "rows": rows,
            "bytes": leads_tmp.stat().st_size,
            "sql_sha256": sql_sha256(sql),
            "duration_s": round(time.monotonic() - started, 3),
            "warehouse": warehouse.name,
            "user@host": jobs.user_at_host(),
            "run_id": jobs.run_id(),
        }
        if found:
            record["suspect"] = found  # marked anyway: accept_suspect
        if mark is not None:
            record["watermark"] = mark
        how = dict(getattr(warehouse, "last_extract", None) or {})
        if how:  # cursor or unload, and how (fetch size, staging, parts)
            record["path"] = how.pop("path", None)
            record["extract"] = {k: v for k, v in how.items() if k not in ("rows", "complete")}
        marker_tmp = atomic.temp_beside(marker_out)
        atomic.write_bytes(marker_tmp, markers.render(record))
        if claim is not None:
            claim.check()  # a run that lost its lease (expired, taken over) publishes nothing
        if keep_new is not None:
            keep_new(leads_tmp, marker_tmp)
        else:
            cache.keep(leads_tmp, marker_tmp, kept_dir)
        os.replace(leads_tmp, leads_out)
        os.replace(marker_tmp, marker_out)
    finally:
        leads_tmp.unlink(missing_ok=True)
        if marker_tmp is not None:
            marker_tmp.unlink(missing_ok=True)
    log.info("recipe %s: %d rows cached in %s; marker %s", recipe.name, rows, leads_out, marker_out)
    return record


def _extract_for(
    config: Mapping[str, Any],
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    leads_out: Path,
    marker_out: Path,
    claim: Lease,
    keep_new: Callable[[Path, Path], object] | None = None,
    store: S3Store | None = None,
) -> dict[str, Any]:
    """:func:`extract` with what the configuration decides (kept pairs, checks)."""
    return extract(
        recipe,
        run_date,
        warehouse,
        leads_out,
        marker_out,
        layout.kept_dir(config["results_dir"], recipe.name, run_date),
        claim,
        accept_suspect=bool(config.get("accept_suspect")),
        results_dir=config["results_dir"],
        keep_new=keep_new,
        store=store,
        marker_dir=os.path.normpath(config["marker_dir"]) if store is not None else None,
    )


def recent_rows(
    marker_dir: str | Path, recipe: str, run_date: str, store: S3Store | None = None
) -> list[int]:
    """Row counts of the recipe's marked days before ``run_date``, oldest first (max_drop).

    On S3 they are read there (one listing, a small GET per marker): the job's
    local folder holds only the files Snakemake fetched for this run.
    """
    earlier = [
        m
        for m in markers.list_markers(marker_dir, recipe, store=store)
        if m.run_date < run_date and isinstance(m.rows, int)
    ]
    return [m.rows for m in sorted(earlier, key=lambda m: m.run_date)][-checks.RECENT_DAYS :]


@dataclass(frozen=True)
class _Day:
    """What differs between a folder and S3 for one day's pair, in the steps they share.

    Everything else (putting back, the watermark check, the query) is the same
    code on both stores: :func:`_carry_out`.
    """

    kept: Callable[[], bool]  # a complete pair of the day was kept before this job
    put_back: Callable[[], None]  # make the newest kept pair the day's pair again
    mark: Callable[[bytes], None]  # (re)write the day's marker, last


def _confirmed(
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    decision: freshness.Decision,
    found: markers.Marker | None,
    day: _Day,
) -> bool | None:
    """Whether an expired marker still counts because the source has not changed;
    ``None`` if no watermark query ran (``False``: it ran and the source changed).

    Only time ran out (TTL, refresh), the recipe has ``watermark.sql``, the
    marker recorded a watermark and its extract was kept: then the cheap
    watermark query decides instead of the expensive one. A check that finds
    the source changed is still a query the warehouse ran: the account and
    the history count it (``watermark_checked``).
    """
    if not (decision.expired and recipe.watermark_path is not None and found is not None):
        return None
    before = found.record.get("watermark")
    if before is None or not day.kept():
        return None
    now = watermark(recipe, run_date, warehouse)
    if now != before:
        log.info(
            "recipe %s %s: source changed (watermark %s -> %s)", recipe.name, run_date, before, now
        )
    return now == before


def _carry_out(
    config: Mapping[str, Any],
    recipe: Recipe,
    run_date: str,
    decision: freshness.Decision,
    found: markers.Marker | None,
    day: _Day,
    query: Callable[[Warehouse], dict[str, Any]],
) -> dict[str, Any]:
    """What the job does once the day is decided, the same on either store: put the
    kept pair back, keep what is there, confirm an expired marker by the source's
    watermark, or query (``query(warehouse)``, which publishes the new pair)."""
    if decision.restore:
        day.put_back()
        log.info(
            "recipe %s %s: put back the extract queried at %s, kept from an interrupted run "
            "(no query)",
            recipe.name,
            run_date,
            found.record.get("queried_at") if found else "?",
        )
        return {"outcome": "restored", **(found.record if found else {})}
    if decision.counts:  # another run put the pair back or completed it meanwhile
        log.info("recipe %s %s: marker counts; no query", recipe.name, run_date)
        return {"outcome": "cached", **(found.record if found else {})}
    try:
        warehouse = open_warehouse(config["warehouse"], config)
    except LeadRecoveryError as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
    try:
        checked = _confirmed(recipe, run_date, warehouse, decision, found, day)
        if checked and found is not None:
            day.put_back()
            record = {**found.record, "confirmed_at": rundate.now().isoformat()}
            day.mark(markers.render(record))
            log.info(
                "recipe %s %s: marker counts: source unchanged since %s (watermark %s); no query",
                recipe.name,
                run_date,
                found.record.get("queried_at"),
                found.record.get("watermark"),
            )
            return {"outcome": "confirmed", **record}
        log.info("recipe %s %s: querying: %s", recipe.name, run_date, decision.reason)
        return {"outcome": "queried", **query(warehouse), "watermark_checked": checked is False}
    finally:
        warehouse.close()


def _written_meanwhile(leads_out: Path, marker_out: Path, since: float) -> bool:
    """Whether another process completed this very extract while we waited for it."""
    try:
        return marker_out.stat().st_mtime >= since and leads_out.is_file()
    except FileNotFoundError:
        return False


def run_job(
    config: Mapping[str, Any],
    *,
    recipe: Recipe,
    run_date: str,
    leads_out: str | Path,
    marker_out: str | Path,
    forced_on_command_line: bool,
) -> dict[str, Any]:
    """The ``redshift_extract`` job: put the kept pair back if it counts, else query.

    Snakemake has already deleted this job's outputs, so what remains of the
    day is the pair kept before the job (cache.py). Whether it still counts is
    decided by the same :func:`freshness.assess` as the DAG's explanation,
    with the same clock (the invocation's) and the same command-line forcing,
    so a job that Snakemake reruns for its own reasons (an interrupted run's
    incomplete outputs) never queries a day that is paid for. Runs under the
    day's query lock: two runs sharing the marker and results folders (two
    users, or cron and a person, in different checkouts) never query the same
    recipe and day at once; the second finds the first one's pair and keeps it.
    """
    leads_out, marker_out = Path(leads_out), Path(marker_out)
    kept_dir = layout.kept_dir(config["results_dir"], recipe.name, run_date)
    wait = parse_duration(config["lock_timeout"], "lock_timeout").total_seconds()
    ttl = parse_duration(config["lease_ttl"], "lease_ttl").total_seconds()
    started = time.time()
    run = rundate.resolve(config.get("date"), config.get("timezone"), config.get("day_starts_at"))
    store = open_store(config)
    if isinstance(store, S3Store):
        return _run_job_s3(
            store,
            config,
            recipe=recipe,
            run_date=run_date,
            leads_out=leads_out,
            marker_out=marker_out,
            policy=freshness.policy_for(recipe, config, os.environ, forced_on_command_line),
            now=run.decided_at,
            wait=wait,
            ttl=ttl,
        )
    try:
        with cache.day_lock(
            marker_out, timeout=wait, ttl_s=ttl, what=f"recipe {recipe.name} {run_date}"
        ) as claim:
            for left in cache.temporaries(leads_out, marker_out):  # a killed writer's
                left.unlink(missing_ok=True)
            if _written_meanwhile(leads_out, marker_out, started):
                log.info(
                    "recipe %s %s: another run queried it while this one waited; keeping its "
                    "extract and marker (no query)",
                    recipe.name,
                    run_date,
                )
                return {"outcome": "cached", **markers.read_marker(marker_out).record}
            found, decision = freshness.assess(
                recipe,
                run_date,
                marker_dir=str(marker_out.parent),
                results_dir=config["results_dir"],
                policy=freshness.policy_for(recipe, config, os.environ, forced_on_command_line),
                now=run.decided_at,
                tz=rundate.zone(config.get("timezone")),
            )
            return _carry_out(
                config,
                recipe,
                run_date,
                decision,
                found,
                _Day(
                    kept=lambda: bool(cache.kept(kept_dir)),
                    put_back=lambda: cache.put_back(cache.kept(kept_dir)[0], leads_out, marker_out),
                    mark=lambda data: atomic.write_bytes(marker_out, data),
                ),
                lambda warehouse: _extract_for(
                    config, recipe, run_date, warehouse, leads_out, marker_out, claim
                ),
            )
    except LeaseTimeout as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None


def _run_job_s3(
    store: S3Store,
    config: Mapping[str, Any],
    *,
    recipe: Recipe,
    run_date: str,
    leads_out: Path,
    marker_out: Path,
    policy: freshness.Policy,
    now: Any,
    wait: float,
    ttl: float,
) -> dict[str, Any]:
    """run_job on S3: the job alone writes the day's pair on S3, under the day's lease.

    The day's lease lives under ``<prefix>/<marker_dir>/.leases/``. Snakemake
    removed this job's S3 outputs before the job, so a complete S3 pair found
    under the lease was written by another run meanwhile (or put back by one):
    no query runs. A new pair is uploaded once, into ``.kept/``, and published
    by server-side copies before the lease is released, so a run waiting for
    the lease finds it at once (s3cache.py). Snakemake does not upload the
    outputs again (``retrieve=False``, workflow/rules/common.smk): the local
    files are only its copies for the analysis, written when this job queried,
    else downloaded by Snakemake from S3 when the analysis needs them.
    """
    results = os.path.normpath(config["results_dir"])
    leads = layout.leads_path(results, recipe.name, run_date)
    marker = markers.marker_path(os.path.normpath(config["marker_dir"]), recipe.name, run_date)
    kept_dir = layout.kept_dir(results, recipe.name, run_date)
    label = f"recipe {recipe.name} {run_date}"
    # A local copy left by an earlier run is not the day's pair: Snakemake would
    # touch it after the job and read it instead of downloading what is on S3.
    leads_out.unlink(missing_ok=True)
    marker_out.unlink(missing_ok=True)

    started = time.time()
    try:
        with lease.held(marker, timeout_s=wait, ttl_s=ttl, what=label, store=store) as claim:
            written = store.stat(marker)
            # S3 times are whole seconds: a pair written in the second this job began counts
            if written is not None and written.mtime >= int(started) and store.exists(leads):
                log.info(
                    "%s: another run queried it while this one waited; keeping its extract "
                    "and marker (no query)",
                    label,
                )
                found = markers.read_stored(store, marker)
                return {"outcome": "cached", **(found.record if found else {})}
            found, decision = freshness.assess(
                recipe,
                run_date,
                marker_dir=os.path.dirname(marker),
                results_dir=results,
                policy=policy,
                now=now,
                tz=rundate.zone(config.get("timezone")),
                store=store,
            )

            def query(warehouse: Warehouse) -> dict[str, Any]:
                new: list[s3cache.Kept] = []
                record = _extract_for(
                    config,
                    recipe,
                    run_date,
                    warehouse,
                    leads_out,
                    marker_out,
                    claim,
                    keep_new=lambda lt, mt: new.append(s3cache.keep_new(store, lt, mt, kept_dir)),
                    store=store,
                )
                claim.check()
                s3cache.put_back(store, new[0], leads, marker)  # published before the lease goes
                return record

            return _carry_out(
                config,
                recipe,
                run_date,
                decision,
                found,
                _Day(
                    kept=lambda: bool(s3cache.kept(store, kept_dir)),
                    put_back=lambda: s3cache.put_back(
                        store, s3cache.kept(store, kept_dir)[0], leads, marker
                    ),
                    mark=lambda data: store.write(marker, data),
                ),
                query,
            )
    except LeaseTimeout as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
