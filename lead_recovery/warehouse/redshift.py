"""The production warehouse: Amazon Redshift through ``redshift_connector``.

This module holds the warehouse itself: its settings, its open connections
and the choice of path for each query. The parts live beside it:

* :mod:`.settings`: ``REDSHIFT_*`` variables and ``.env`` (password, IAM on a
  provisioned cluster or on Serverless, TLS), checked before connecting;
* :mod:`.connect`: connecting, retried when the failure is transient;
* :mod:`.params`: ``:run_date`` found by Redshift's lexical rules, bound as ``$1``;
* :mod:`.cursor_path`: DECLARE/FETCH with a fetch-ahead thread and the
  single-node retry;
* :mod:`.unload` (with :mod:`.staging`): UNLOAD to S3 as Parquet, used for
  ``extract: unload``, or under ``extract: auto`` when a result is over
  Redshift's cursor-data cap; its literals quoted by :mod:`.literals`;
* :mod:`.arrow_types` and :mod:`.messages`: types, and failures in one line.

A recipe's SQL comes back as Arrow record batches, one per FETCH (or per
Parquet row group), so memory stays bounded whatever the row count, and the
reader carries its schema even for an empty result. The session's
``application_name`` and a leading SQL comment carry the query tag, so
operators see which recipe and run date queried. After a stream,
:attr:`RedshiftWarehouse.last_extract` says how it was read. Every failure is
a :class:`LeadRecoveryError` with a one-line message that never contains the
password or another secret.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from lead_recovery.config import fill_defaults
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import cursor_path
from lead_recovery.warehouse import params as params_mod
from lead_recovery.warehouse.arrow_types import (  # noqa: F401  (this module's API before the split)
    arrow_type,
    numeric_type,
    result_schema,
    rows_to_batch,
)
from lead_recovery.warehouse.connect import ConnectPolicy, connect
from lead_recovery.warehouse.cursor_path import SINGLE_NODE_FETCH_LIMIT, OverCursorCap
from lead_recovery.warehouse.messages import one_line, query_error, server_error
from lead_recovery.warehouse.settings import (  # noqa: F401  (this module's API before the split)
    ConnectionSettings,
    read_settings,
)
from lead_recovery.warehouse.unload import (
    EXTRACT_MODES,
    Staging,
    UnloadSettings,
    clean_tag,
    counted,
    unload_reader,
)

log = logging.getLogger("lead_recovery")

# The schema's defaults (their one home), for a warehouse built in code, not from config.
DEFAULTS: dict[str, Any] = fill_defaults({})["redshift"]


def extract_mode(value: Any, where: str) -> str:
    """``cursor``, ``unload`` or ``auto``; anything else is one line naming ``where``."""
    mode = str(value or "cursor").strip().lower()
    if mode not in EXTRACT_MODES:
        raise LeadRecoveryError(f"{where} is {value!r}; use one of: {', '.join(EXTRACT_MODES)}")
    return mode


def strip_statement(sql: str) -> str:
    """The recipe's SQL without trailing semicolons and blank space."""
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


class RedshiftWarehouse:
    """Recipe SQL on Redshift, streamed through a server-side cursor (or UNLOAD)."""

    name = "redshift"

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        batch_size: int = DEFAULTS["batch_size"],
        statement_timeout_s: float | None = DEFAULTS["statement_timeout_s"],
        connect_timeout_s: float | None = DEFAULTS["connect_timeout_s"],
        retries: int = DEFAULTS["retries"],
        retry_backoff_s: float = DEFAULTS["retry_backoff_s"],
        extract: str = DEFAULTS["extract"],
        unload: UnloadSettings | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise LeadRecoveryError(f"redshift.batch_size must be at least 1, not {batch_size}")
        self.extract = extract_mode(extract, "redshift.extract")
        self.unload = unload
        self.single_node = False  # learnt from the server's refusal of a large FETCH
        self.last_extract: dict[str, Any] = {}
        self._staged: set[Staging] = set()
        self.settings = settings
        self.batch_size = int(batch_size)
        self.statement_timeout_s = statement_timeout_s or None
        self.connect_timeout_s = connect_timeout_s or None
        self.retries = max(0, int(retries))
        self.retry_backoff_s = max(0.0, float(retry_backoff_s))
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RedshiftWarehouse:
        options = fill_defaults(config)["redshift"]
        settings = read_settings(env_file=options["env_file"])
        return cls(
            settings,
            batch_size=options["batch_size"],
            statement_timeout_s=options["statement_timeout_s"],
            connect_timeout_s=options["connect_timeout_s"],
            retries=options["retries"],
            retry_backoff_s=options["retry_backoff_s"],
            extract=options["extract"],
            unload=UnloadSettings.from_config(options["unload"]),
        )

    def __repr__(self) -> str:
        s = self.settings
        who = s.user or s.db_user or f"workgroup {s.workgroup}"
        return f"RedshiftWarehouse({s.auth}: {who}@{s.host}:{s.port}/{s.database})"

    # -- what the paths ask of their owner ------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def say(self, text: str) -> str:
        """``text`` on one line, without this warehouse's secrets."""
        return one_line(text, self.settings.secrets)

    def query_error(
        self, err: BaseException, statement: str, prefix_lines: int, conn: Any = None
    ) -> str:
        return query_error(
            err,
            statement,
            prefix_lines,
            where=self.where,
            conn=conn,
            statement_timeout_s=self.statement_timeout_s,
        )

    def set_timeout(self, cursor: Any) -> None:
        if self.statement_timeout_s:
            ms = max(1, int(self.statement_timeout_s * 1000))
            cursor.execute(f"SET statement_timeout TO {ms}")

    def track(self, staging: Staging) -> None:
        with self._lock:
            self._staged.add(staging)

    def cleanup(self, staging: Staging) -> None:
        """Delete an UNLOAD staging prefix; a failure is a warning naming it."""
        with self._lock:
            self._staged.discard(staging)
        try:
            staging.delete()
        except LeadRecoveryError as err:
            log.warning("redshift: %s; delete it by hand", self.say(str(err)))

    def discard(self, conn: Any) -> None:
        with self._lock:
            if conn not in self._connections:
                return
            self._connections.remove(conn)
        with contextlib.suppress(Exception):  # closing a dead connection fails; that is fine
            conn.close()

    # -- connecting --------------------------------------------------------------
    def _connect(self, tag: str) -> Any:
        policy = ConnectPolicy(
            connect_timeout_s=self.connect_timeout_s,
            statement_timeout_s=self.statement_timeout_s,
            retries=self.retries,
            retry_backoff_s=self.retry_backoff_s,
        )
        conn = connect(self.settings, clean_tag(tag), policy)
        with self._lock:
            self._connections.append(conn)
        return conn

    # -- streaming -----------------------------------------------------------------
    @property
    def fetch_size(self) -> int:
        """Rows per FETCH: ``batch_size``, at most 1000 once the cluster is known single-node."""
        if self.single_node:
            return min(self.batch_size, SINGLE_NODE_FETCH_LIMIT)
        return self.batch_size

    def stream(
        self, sql: str, params: Mapping[str, Any], *, tag: str, extract: str | None = None
    ) -> pa.RecordBatchReader:
        """Run ``sql`` and stream its result.

        ``extract`` (``cursor``, ``unload`` or ``auto``; None means the
        configured ``redshift.extract``) chooses the path for this query, e.g.
        from the recipe's ``meta.yml``. Afterwards :attr:`last_extract` says
        how the result was read (``path``, ``rows``, ...).
        """
        mode = self.extract if extract is None else extract_mode(extract, "extract")
        body = strip_statement(sql)
        if not body:
            raise LeadRecoveryError("the SQL is empty")
        if mode == "unload" and self.unload is None:
            raise LeadRecoveryError(
                "extract: unload needs redshift.unload.s3_prefix (and redshift.unload.iam_role, "
                "or the cluster's default role) in the config"
            )
        name = cursor_path.cursor_name()
        header = f"/* {clean_tag(tag)} */\nDECLARE {name} CURSOR FOR\n"
        bound_body, args = params_mod.bind(body, params)
        declare = header + bound_body
        params_mod.check_driver_leaves_alone(declare, header.count("\n"))

        info: dict[str, Any] = {"path": mode, "rows": 0, "complete": False}
        self.last_extract = info
        conn = self._connect(tag)
        cursor = conn.cursor()
        cursor.paramstyle = params_mod.PARAMSTYLE
        if mode == "unload":
            return self._unload(conn, cursor, body, params, tag, info, reason=None)

        started = time.monotonic()
        try:
            opened = cursor_path.open_cursor(
                conn,
                cursor,
                declare,
                args or None,
                name,
                batch_size=self.batch_size,
                single_node=self.single_node,
                set_timeout=self.set_timeout,
            )
        except OverCursorCap as over:
            return self._over_cursor_cap(conn, cursor, over.cause, body, params, tag, info)
        except LeadRecoveryError:
            self.discard(conn)
            raise
        except Exception as err:
            self.discard(conn)
            raise LeadRecoveryError(
                self.say(self.query_error(err, declare, header.count("\n"), conn))
            ) from None
        self.single_node = opened.single_node
        info.update(path="cursor", fetch_size=opened.fetch_size, single_node=self.single_node)
        log.info(
            "redshift: cursor %s open, %d rows per FETCH%s, first batch %d rows after %.2fs",
            name,
            opened.fetch_size,
            " (single-node cluster)" if self.single_node else "",
            opened.first_rows,
            time.monotonic() - started,
        )
        batches = cursor_path.batches(self, conn, cursor, opened)
        return pa.RecordBatchReader.from_batches(opened.schema, counted(batches, info))

    def _unload(
        self,
        conn: Any,
        cursor: Any,
        body: str,
        params: Mapping[str, Any],
        tag: str,
        info: dict[str, Any],
        *,
        reason: str | None,
    ) -> pa.RecordBatchReader:
        assert self.unload is not None
        return unload_reader(
            self, self.unload, conn, cursor, body, params, tag, info, reason=reason
        )

    def _over_cursor_cap(
        self,
        conn: Any,
        cursor: Any,
        err: BaseException,
        body: str,
        params: Mapping[str, Any],
        tag: str,
        info: dict[str, Any],
    ) -> pa.RecordBatchReader:
        """The first FETCH hit Redshift's cursor-data cap: UNLOAD if allowed, else say how."""
        fields = server_error(err) or {}
        cap = fields.get("M", "cursor data cap").strip().rstrip(".")
        if info["path"] == "auto" and self.unload is not None:
            conn.rollback()
            log.warning(
                "redshift: the result is over Redshift's cursor-data cap (%s); "
                "extracting it with UNLOAD instead (extract: auto)",
                cap,
            )
            return self._unload(conn, cursor, body, params, tag, info, reason="cursor cap")
        self.discard(conn)
        if self.unload is None:
            remedy = (
                "set extract: unload (redshift.extract, or extract: in the recipe's meta.yml) "
                "with redshift.unload.s3_prefix and redshift.unload.iam_role"
            )
        else:
            remedy = "set extract: unload (or auto) in the config or the recipe's meta.yml"
        raise LeadRecoveryError(
            self.say(
                f"the result is too large for a Redshift cursor ({cap}; SQLSTATE "
                f"{fields.get('C', '?')}): no fetch size reads past that cap; {remedy}"
            )
        )

    def close(self) -> None:
        for conn in list(self._connections):
            self.discard(conn)
        for staging in list(self._staged):  # a reader that was never read to its end
            self.cleanup(staging)
