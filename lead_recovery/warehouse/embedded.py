"""The embedded DuckDB demo warehouse, so a fresh clone runs with no credentials.

Recipe SQL is Redshift SQL; it is transpiled with sqlglot (read ``redshift``,
write ``duckdb``) so the very file that runs in production runs here too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from lead_recovery.config import fill_defaults
from lead_recovery.errors import LeadRecoveryError


def to_duckdb(sql: str) -> str:
    """Redshift SQL as DuckDB SQL; ``:run_date`` becomes ``$run_date``.

    Only a single query (SELECT, WITH, UNION...) is accepted: anything sqlglot
    can only keep as an opaque command (UNLOAD, COPY) cannot run here.
    """
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        parsed = [e for e in sqlglot.parse(sql, read="redshift") if e is not None]
    except ParseError as err:
        raise LeadRecoveryError(f"cannot be transpiled to DuckDB: {_first_line(err)}") from None
    if len(parsed) != 1:
        raise LeadRecoveryError(f"must hold exactly one statement, found {len(parsed)}")
    statement = parsed[0]
    if not isinstance(statement, exp.Query):
        head = " ".join(statement.sql(dialect="redshift").split()[:2])
        raise LeadRecoveryError(
            f"cannot be transpiled to DuckDB: '{head} ...' is not a SELECT query"
        )
    try:
        return statement.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as err:
        raise LeadRecoveryError(f"cannot be transpiled to DuckDB: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    details = getattr(err, "errors", None)
    if details and isinstance(details[0], dict) and details[0].get("description"):
        first = details[0]
        where = (
            f" (line {first.get('line')}, column {first.get('col')})" if first.get("line") else ""
        )
        return f"{first['description'].split(' <Token')[0]}{where}"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class EmbeddedWarehouse:
    """A read-only connection to the demo database built by ``demo_warehouse``."""

    name = "duckdb"

    def __init__(self, path: str | Path, batch_rows: int) -> None:
        if not Path(path).is_file():
            raise LeadRecoveryError(
                f"demo warehouse not found ({path}); run the workflow to build it"
            )
        self.batch_rows = batch_rows
        self._con = duckdb.connect(str(path), read_only=True)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EmbeddedWarehouse:
        settings = fill_defaults(config)["duckdb"]
        return cls(settings["path"], settings["batch_rows"])

    def stream(
        self, sql: str, params: Mapping[str, Any], *, tag: str, extract: str | None = None
    ) -> pa.RecordBatchReader:
        """``extract`` (cursor/unload/auto) is Redshift's choice; one embedded query here."""
        query = to_duckdb(sql)
        used = {k: v for k, v in params.items() if f"${k}" in query}
        try:
            # The relation API streams Arrow batches directly; a DB-API result
            # (``execute``) would copy every row first, and DuckDB warns about it.
            relation = self._con.sql(f"/* {tag} */ {query}", params=used)
            return relation.to_arrow_reader(self.batch_rows)
        except duckdb.Error as err:
            raise LeadRecoveryError(f"query failed: {str(err).splitlines()[0]}") from None

    def close(self) -> None:
        self._con.close()
