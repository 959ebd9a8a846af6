"""Whether a new extract deserves a marker: the recipe's ``expect:`` checks.

A query that runs before the upstream load has finished returns a handful of
rows; marked, that near-empty extract would be reused all day. So a new
extract is checked before its marker is written, from the Parquet footer
only (row count, schema, per-column null counts): no data is read back.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

RECENT_DAYS = 7


def _null_counts(meta: pq.FileMetaData) -> dict[str, int | None]:
    """Nulls per top-level column; ``None`` when a row group lacks statistics."""
    counts: dict[str, int | None] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema.split(".")[0]
            stats = column.statistics
            if name in counts and counts[name] is None:
                continue
            if stats is None or not stats.has_null_count:
                counts[name] = None
            else:
                counts[name] = (counts.get(name) or 0) + stats.null_count
    return counts


def problems(
    extract: str | Path, expect: Mapping[str, Any], recent_rows: Sequence[int] = ()
) -> list[str]:
    """What is wrong with ``extract`` by the recipe's ``expect:``; empty means it passes.

    ``recent_rows`` are the row counts of the recipe's previous marked days,
    newest last; ``max_drop`` compares with the median of the last seven.
    """
    if not expect:
        return []
    meta = pq.ParquetFile(extract).metadata
    rows = meta.num_rows
    names = list(meta.schema.to_arrow_schema().names)
    found: list[str] = []
    if "min_rows" in expect and rows < int(expect["min_rows"]):
        found.append(f"{rows} rows where at least {expect['min_rows']} were expected")
    recent = list(recent_rows)[-RECENT_DAYS:]
    if "max_drop" in expect and recent:
        usual = statistics.median(recent)
        floor = usual * (1 - float(expect["max_drop"]))
        if rows < floor:
            found.append(
                f"{rows} rows, more than {float(expect['max_drop']):.0%} below the median "
                f"{usual:g} of the last {len(recent)} marked days"
            )
    missing = [c for c in expect.get("columns") or [] if c not in names]
    if missing:
        found.append(f"missing column(s) {', '.join(missing)}")
    nulls = _null_counts(meta)
    for column in expect.get("not_null") or []:
        if column not in names:
            if column not in missing:
                found.append(f"not_null column {column} is not in the extract")
            continue
        count = nulls.get(column)
        if count is None:
            table = pq.read_table(extract, columns=[column])  # no statistics: count them
            count = table.column(column).null_count
        if count:
            found.append(f"{count} null(s) in {column}")
    return found
