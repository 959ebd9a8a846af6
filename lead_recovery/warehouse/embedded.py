"""The embedded DuckDB demo warehouse, so a fresh clone runs with no credentials.

Recipe SQL is Redshift SQL; it is transpiled with sqlglot (read ``redshift``,
write ``duckdb``) so the very file that runs in production runs here too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot.errors import ErrorLevel, UnsupportedError

from lead_recovery import recipes
from lead_recovery.config import fill_defaults
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.recipes import SQL_FILE, WATERMARK_FILE


def to_duckdb(sql: str, source: str | Path = SQL_FILE) -> str:
    """Redshift SQL as DuckDB SQL; ``:run_date`` becomes ``$run_date``.

    The text is first parsed as Redshift SQL (recipes.parse_sql): a typo is a
    syntax error in ``source`` at its line and column, never DuckDB's fault.
    Only then can a valid query still be something DuckDB cannot express.
    """
    statement = recipes.parse_sql(sql, source)
    try:
        return statement.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as err:
        raise LeadRecoveryError(
            f"{source}: cannot be transpiled to DuckDB: {_first_line(err)}"
        ) from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# extract.query_tag: "lead_recovery recipe=<name> run_date=<date>[ watermark]"
_TAG_RE = re.compile(r"\brecipe=(\S+)")


class EmbeddedWarehouse:
    """A read-only connection to the demo database built by ``demo_warehouse``."""

    name = "duckdb"

    def __init__(
        self, path: str | Path, batch_rows: int, recipes_dir: str | Path | None = None
    ) -> None:
        if not Path(path).is_file():
            raise LeadRecoveryError(
                f"demo warehouse not found ({path}); run the workflow to build it"
            )
        self.batch_rows = batch_rows
        self.recipes_dir = recipes_dir
        self._con = duckdb.connect(str(path), read_only=True)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EmbeddedWarehouse:
        filled = fill_defaults(config)
        settings = filled["duckdb"]
        return cls(settings["path"], settings["batch_rows"], filled.get("recipes_dir"))

    def source(self, tag: str) -> str:
        """The file a tagged query comes from, for its errors: ``recipes/x/redshift.sql``.

        The extract step names the recipe only in the query's tag; without the
        recipes folder (or a tag of another form) the bare file name.
        """
        file = WATERMARK_FILE if tag.endswith(" watermark") else SQL_FILE
        found = _TAG_RE.search(tag)
        if found is None or self.recipes_dir is None:
            return file
        return os.path.join(os.path.normpath(self.recipes_dir), found.group(1), file)

    def stream(
        self,
        sql: str,
        params: Mapping[str, Any],
        *,
        tag: str,
        extract: str | None = None,
        source: str | Path | None = None,
    ) -> pa.RecordBatchReader:
        """``extract`` (cursor/unload/auto) is Redshift's choice; one embedded query here.

        ``source`` is the file ``sql`` was read from, named by a syntax error
        (default: worked out from ``tag``)."""
        query = to_duckdb(sql, source if source is not None else self.source(tag))
        used = {k: v for k, v in params.items() if f"${k}" in query}
        try:
            # The relation API streams Arrow batches directly; a DB-API result
            # (``execute``) would copy every row first, and DuckDB warns about it.
            relation = self._con.sql(f"/* {tag} */ {query}", params=used)
            return relation.to_arrow_reader(self.batch_rows)
        except duckdb.Error as err:
            raise LeadRecoveryError(f"query failed: {str(err).splitlines()[0]}") from None

    def tables(self) -> list[tuple[str, int, list[tuple[str, str]]]]:
        """Each table with its row count and its columns (name, type): what a recipe's
        author can query here, without DuckDB's own command line (not in the venv)."""
        found = []
        names = self._con.sql(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
        for (table,) in names:
            columns = self._con.sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_name = $t ORDER BY ordinal_position",
                params={"t": table},
            ).fetchall()
            rows = self._con.sql(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
            found.append((table, rows, [(c, t) for c, t in columns]))
        return found

    def close(self) -> None:
        self._con.close()
