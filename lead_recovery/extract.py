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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lead_recovery import jobs, markers, rundate
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.recipes import Recipe, sql_sha256
from lead_recovery.rundate import to_date
from lead_recovery.warehouse import Warehouse

log = logging.getLogger("lead_recovery")


def write_parquet(reader: Any, out: str | Path) -> int:
    """Stream record batches into ``out`` as row groups; returns the row count."""
    import pyarrow.parquet as pq

    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
            for batch in reader:
                if batch.num_rows:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def query_tag(recipe: str, run_date: str) -> str:
    return f"lead_recovery recipe={recipe} run_date={run_date}"


def extract(
    recipe: Recipe,
    run_date: str,
    warehouse: Warehouse,
    leads_out: str | Path,
    marker_out: str | Path,
) -> dict[str, Any]:
    """Query, cache, then mark; returns the marker record."""
    sql = recipe.sql()
    started = time.monotonic()
    queried_at = rundate.now()  # honours LEAD_RECOVERY_NOW, like the run date
    log.info(
        "querying %s warehouse for recipe %s, run date %s", warehouse.name, recipe.name, run_date
    )
    try:
        reader = warehouse.stream(
            sql, {"run_date": to_date(run_date)}, tag=query_tag(recipe.name, run_date)
        )
        rows = write_parquet(reader, leads_out)
    except LeadRecoveryError as err:
        raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
    record = {
        "recipe": recipe.name,
        "run_date": run_date,
        "queried_at": queried_at.isoformat(timespec="seconds"),
        "decided_at": jobs.decided_at(),
        "rows": rows,
        "sql_sha256": sql_sha256(sql),
        "duration_s": round(time.monotonic() - started, 3),
        "warehouse": warehouse.name,
        "user@host": jobs.user_at_host(),
        "run_id": jobs.run_id(),
    }
    markers.write_marker(marker_out, record)
    log.info("recipe %s: %d rows cached in %s; marker %s", recipe.name, rows, leads_out, marker_out)
    return record


def _written_meanwhile(leads_out: Path, marker_out: Path, since: float) -> bool:
    """Whether another process completed this very extract while we waited for it."""
    try:
        return marker_out.stat().st_mtime >= since and leads_out.is_file()
    except FileNotFoundError:
        return False


def extract_with(name: str, config: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Open the configured warehouse, extract, and always close it.

    Runs under a lock beside the marker, so two runs that share a marker and
    results folder (two users, or cron and a person, in different checkouts)
    never query the same recipe and day at once: the second one waits and then
    finds the first one's complete extract and marker, and keeps them.
    """
    from filelock import FileLock, Timeout

    from lead_recovery.warehouse import open_warehouse

    recipe: Recipe = kwargs["recipe"]
    leads_out, marker_out = Path(kwargs["leads_out"]), Path(kwargs["marker_out"])
    locks = marker_out.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    settings = config.get("redshift") or {}
    wait = int(settings.get("statement_timeout_s") or 3600) + 600
    started = time.time()
    try:
        with FileLock(locks / f"{marker_out.name}.lock", timeout=wait):
            if _written_meanwhile(leads_out, marker_out, started):
                log.info(
                    "recipe %s %s: another run queried it while this one waited; keeping its "
                    "extract and marker (no query)",
                    recipe.name,
                    kwargs["run_date"],
                )
                return markers.read_marker(marker_out).record
            try:
                warehouse = open_warehouse(name, config)
            except LeadRecoveryError as err:
                raise LeadRecoveryError(f"recipe '{recipe.name}': {err}") from None
            try:
                return extract(warehouse=warehouse, **kwargs)
            finally:
                warehouse.close()
    except Timeout:
        raise LeadRecoveryError(
            f"recipe '{recipe.name}': another run has held the query lock for over {wait} s "
            f"({locks})"
        ) from None
