"""``lead-recovery demo``: look at the embedded demo warehouse, and try Redshift SQL on it.

DuckDB's own command line is not in the venv; this is the few lines a recipe's
author needs over :class:`~lead_recovery.warehouse.embedded.EmbeddedWarehouse`:
its tables and columns, or the first rows of a query run exactly as a
recipe's ``redshift.sql`` runs on the demo (parsed as Redshift SQL, transpiled,
``:run_date`` bound). It opens the file read-only, so a run may go on meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pyarrow as pa

from lead_recovery import config as lr_config
from lead_recovery import rundate
from lead_recovery.cli.common import CONTEXT, NO, find_repo, repo_option, show_path, table

_EPILOG = """\b
Examples:
  lead-recovery demo                                        the tables and their columns
  lead-recovery demo "SELECT source, count(*) FROM leads GROUP BY 1"
  lead-recovery demo recipes/simulation_to_handoff/redshift.sql --date 20250512

\b
SQL is Redshift SQL, run as a recipe's redshift.sql runs on the demo warehouse
(sqlglot transpiles it to DuckDB); :run_date is the run date (--date, default today).
The warehouse is results/warehouse/demo.duckdb (config duckdb.path), built by the
first run (or: .venv/bin/snakemake demo_warehouse).
"""


@click.command("demo", context_settings=CONTEXT, epilog=_EPILOG)
@click.argument("query", required=False, metavar="[SQL | FILE]")
@click.option("--date", metavar="YYYYMMDD", help="The value of :run_date (default: today).")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Rows shown."
)
@repo_option
def command(query: str | None, date: str | None, limit: int, repo: str | None) -> int:
    """The demo warehouse's tables, or the first rows of a Redshift query run on it."""
    from lead_recovery.warehouse.embedded import EmbeddedWarehouse

    folder = find_repo(repo)
    config = lr_config.load(folder)
    path = folder / config["duckdb"]["path"]
    if not path.is_file():
        print(
            f"lead-recovery: error: no demo warehouse yet ({show_path(path)}): "
            "`make run` builds it, or .venv/bin/snakemake demo_warehouse",
            file=sys.stderr,
        )
        return NO
    warehouse = EmbeddedWarehouse(path, batch_rows=limit + 1)
    try:
        if query is None:
            show_tables(warehouse, path)
            return 0
        source = Path(query)
        if source.suffix == ".sql" and source.is_file():
            sql = source.read_text(encoding="utf-8")
        else:
            sql, source = query, Path("query")
        day = (
            rundate.parse_date(date)
            if date
            else rundate.resolve(None, config["timezone"], config["day_starts_at"]).date
        )
        reader = warehouse.stream(
            sql, {"run_date": rundate.to_date(day)}, tag="lead-recovery demo", source=source
        )
        show_rows(reader, limit)
    finally:
        warehouse.close()
    return 0


def show_tables(warehouse, path: Path) -> None:
    sys.stdout.write(f"# demo warehouse {show_path(path)}: query it with Redshift SQL\n")
    for name, rows, columns in warehouse.tables():
        sys.stdout.write(f"\n{name} ({rows} rows)\n")
        sys.stdout.write(table(columns, ["COLUMN", "TYPE"]) + "\n")


def show_rows(reader: pa.RecordBatchReader, limit: int) -> None:
    """The first ``limit`` rows; one more is read to say whether there are others."""
    batches, count = [], 0
    for batch in reader:
        batches.append(batch)
        count += batch.num_rows
        if count > limit:
            break
    data = pa.Table.from_batches(batches, schema=reader.schema).slice(0, limit).to_pylist()
    rows = [["NULL" if v is None else str(v) for v in row.values()] for row in data]
    sys.stdout.write(table(rows, reader.schema.names) + "\n")
    more = f"first {limit} rows; --limit N for more" if count > limit else f"{len(rows)} row(s)"
    sys.stdout.write(f"# {more}\n")
