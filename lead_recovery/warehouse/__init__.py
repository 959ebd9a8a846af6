"""The seam between the workflow and a warehouse.

A warehouse turns a recipe's Redshift SQL plus ``{"run_date": date}`` into a
stream of Arrow record batches that carries its schema even when empty. The
extract step writes those batches as Parquet row groups as they arrive, so
memory stays bounded whatever the row count. Two warehouses exist:
``duckdb`` (the embedded demo, SQL transpiled with sqlglot) and ``redshift``
(``redshift_connector``, a server-side cursor, or UNLOAD to S3 as Parquet:
docs/redshift.md).

Besides :func:`open_warehouse`: :func:`identity` names the warehouse a run
would query without connecting (markers count only for the warehouse that
made them), and :func:`check` (``lead-recovery doctor``) connects with a
short timeout and says, one :class:`Check` per line, what works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.doctor import Check, check

__all__ = ["NAMES", "Check", "Warehouse", "check", "identity", "open_warehouse"]

if TYPE_CHECKING:
    import pyarrow as pa

NAMES = ("duckdb", "redshift")


class Warehouse(Protocol):
    """What the extract step needs from a warehouse."""

    name: str

    def stream(
        self, sql: str, params: Mapping[str, Any], *, tag: str, extract: str | None = None
    ) -> pa.RecordBatchReader:
        """Run ``sql`` with ``params`` bound and stream the result.

        ``tag`` names the recipe and run date so the warehouse's operators can
        see who queried. Raises :class:`LeadRecoveryError` with the cause.

        The Redshift warehouse also takes ``extract="cursor"|"unload"|"auto"``
        (None: its configured ``redshift.extract``), e.g. from a recipe's
        ``meta.yml``, and afterwards exposes ``last_extract`` (a dict: ``path``,
        ``rows``, ``complete``, and path details) for the marker.
        """
        ...

    def close(self) -> None: ...


def identity(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The warehouse a run with ``config`` would query, named without connecting.

    A marker counts only for the warehouse that produced it, so this name is
    what markers are compared by: ``duckdb demo``, ``redshift at
    <host>:<port>/<database>`` or ``redshift serverless <workgroup>/<database>``
    (from ``REDSHIFT_*`` in ``environ``, default the process environment, and
    ``redshift.env_file``). It never holds a secret. Raises
    :class:`LeadRecoveryError` (one line) when the settings cannot name one.
    """
    from lead_recovery.config import fill_defaults

    name = config.get("warehouse")
    if name == "duckdb":
        return "duckdb demo"
    if name == "redshift":
        from lead_recovery.warehouse.settings import identity as redshift_identity

        options = fill_defaults(config)["redshift"]
        return redshift_identity(environ, env_file=options["env_file"])
    raise LeadRecoveryError(f"warehouse {name!r} is not one of: {', '.join(NAMES)}")


def named(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """:func:`identity`, or, when the settings cannot name one, what the run would use
    (a decision must never fail on it: the query that follows says what is missing)."""
    try:
        return identity(config, environ)
    except LeadRecoveryError:
        return f"{config.get('warehouse')} (settings incomplete)"


def open_warehouse(name: str, config: Mapping[str, Any]) -> Warehouse:
    """The configured warehouse; imports its driver only when chosen."""
    if name == "duckdb":
        from lead_recovery.warehouse.embedded import EmbeddedWarehouse

        return EmbeddedWarehouse.from_config(config)
    if name == "redshift":
        from lead_recovery.warehouse.redshift import RedshiftWarehouse

        return RedshiftWarehouse.from_config(config)
    raise LeadRecoveryError(f"warehouse '{name}' is not one of: {', '.join(NAMES)}")
