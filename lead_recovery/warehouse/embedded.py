"""The embedded DuckDB demo warehouse, so a fresh clone runs with no credentials.

Recipe SQL is Redshift SQL; it is transpiled with sqlglot (read ``redshift``,
write ``duckdb``) so the very file that runs in production runs here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from lead_recovery.errors import LeadRecoveryError


def to_duckdb(sql: str) -> str:
    """Redshift SQL as DuckDB SQL; ``:run_date`` becomes ``$run_date``."""
    try:
        statements = sqlglot.transpile(
            sql, read="redshift", write="duckdb", unsupported_level=ErrorLevel.RAISE
        )
    except (ParseError, UnsupportedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LeadRecoveryError(f"cannot be transpiled to DuckDB: {first}") from None
    statements = [s for s in statements if s.strip()]
    if len(statements) != 1:
        raise LeadRecoveryError(
            f"must hold exactly one statement, found {len(statements)}"
        )
    return statements[0]


class EmbeddedWarehouse:
    """A read-only connection to the demo database built by ``demo_warehouse``."""

    name = "duckdb"

    def __init__(self, path: str | Path, batch_rows: int = 65536) -> None:
        if not Path(path).is_file():
            raise LeadRecoveryError(f"demo warehouse not found ({path}); run the workflow to build it")
        self.batch_rows = batch_rows
        self._con = duckdb.connect(str(path), read_only=True)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EmbeddedWarehouse:
        settings = config.get("duckdb") or {}
        return cls(settings.get("path", "results/warehouse/demo.duckdb"), settings.get("batch_rows", 65536))

    def stream(self, sql: str, params: Mapping[str, Any], *, tag: str) -> pa.RecordBatchReader:
        query = to_duckdb(sql)
        used = {k: v for k, v in params.items() if f"${k}" in query}
        try:
            result = self._con.execute(f"/* {tag} */ {query}", used)
            return result.to_arrow_reader(self.batch_rows)
        except duckdb.Error as err:
            raise LeadRecoveryError(f"query failed: {str(err).splitlines()[0]}") from None

    def close(self) -> None:
        self._con.close()
