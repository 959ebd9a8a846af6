"""The production warehouse: Amazon Redshift through ``redshift_connector``.

A recipe's SQL runs inside a server-side cursor and comes back in batches::

    BEGIN; SET statement_timeout TO <ms>;
    /* lead_recovery recipe=X run_date=YYYYMMDD */
    DECLARE lr_<id> CURSOR FOR <recipe SQL, :run_date bound by the driver>;
    FETCH FORWARD <batch_size> FROM lr_<id>;   -- until a short batch
    CLOSE lr_<id>; ROLLBACK;

Each FETCH becomes one Arrow record batch (column-wise conversion, types
from the cursor's type OIDs), so memory stays bounded by ``batch_size``
whatever the row count, and the reader carries its schema even for an empty
result. The session's ``application_name`` and a leading SQL comment carry
the query tag, so operators see which recipe and run date queried.

Redshift's cursor limits are handled: a single-node cluster refuses FETCH
above 1000 rows, so on that error the extract retries in a fresh transaction
on the same connection with ``FETCH FORWARD 1000`` (and keeps that size for
the warehouse's later queries); a result over the cursor-data cap (checked
at the first FETCH) is a one-line error naming the remedy, or, with
``redshift.extract: auto`` and ``redshift.unload`` configured, is extracted
with UNLOAD instead (see :mod:`lead_recovery.warehouse.unload`). After a
stream, :attr:`RedshiftWarehouse.last_extract` says how it was read.

Settings come from ``REDSHIFT_*`` environment variables, or from a ``.env``
file (config ``redshift.env_file``) for those not in the environment.
Connecting is retried with exponential backoff when the failure is
transient (refused, reset, timed out, server starting up); a rejected login,
a TLS refusal or an SQL error is reported at once. This is the one retry
layer for connections (config ``redshift.retries``, default 3, so at most 4
attempts): no Snakemake profile sets ``retries``, so a failed job is not
rerun on top of it. Every failure is a
:class:`LeadRecoveryError` with a one-line message that never contains the
password or another secret.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import queue
import re
import secrets as _secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa

from lead_recovery.config import env_file_values, fill_defaults, parse_bool
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.unload import EXTRACT_MODES, UnloadSettings

log = logging.getLogger("lead_recovery")

# The schema's defaults (their one home), for a warehouse built in code, not from config.
DEFAULTS: dict[str, Any] = fill_defaults({})["redshift"]
SINGLE_NODE_FETCH_LIMIT = 1000
DEFAULT_PORT = 5439
MAX_BACKOFF_S = 60.0
APPLICATION_NAME_MAX = 63  # PostgreSQL/Redshift truncate longer names

PASSWORD_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_USER", "REDSHIFT_PASSWORD")
IAM_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_CLUSTER_IDENTIFIER", "REDSHIFT_DB_USER")

# SQLSTATEs: a rejected login is never retried; a server that cannot take the
# connection right now (starting up, shutting down, too many connections) is.
_AUTH_STATES = ("28000", "28P01")
_TRANSIENT_STATES = ("57P01", "57P02", "57P03", "53300", "08000", "08001", "08003", "08006")


# -- connection settings ------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect; ``repr`` never shows the password."""

    host: str
    port: int
    database: str
    user: str | None
    password: str | None = field(default=None, repr=False)
    ssl: bool = True
    iam: bool = False
    cluster_identifier: str | None = None
    region: str | None = None
    profile: str | None = None
    db_user: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        return tuple(s for s in (self.password,) if s)

    def connect_kwargs(self, *, timeout: float | None, application_name: str) -> dict[str, Any]:
        """Keyword arguments for ``redshift_connector.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "ssl": self.ssl,
            "application_name": application_name,
        }
        if timeout:
            kwargs["timeout"] = timeout
        if self.iam:
            kwargs.update(iam=True, db_user=self.db_user, user=self.db_user)
            for key in ("cluster_identifier", "region", "profile"):
                value = getattr(self, key)
                if value:
                    kwargs[key] = value
        else:
            kwargs.update(user=self.user, password=self.password)
        return kwargs


def _flag(values: Mapping[str, str], name: str, default: bool) -> bool:
    if not (values.get(name) or "").strip():
        return default
    parsed = parse_bool(values[name])
    if parsed is not None:
        return parsed
    raise LeadRecoveryError(f"{name}={values[name]!r} is not a boolean; use true or false")


def read_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> ConnectionSettings:
    """Connection settings from the environment, then ``env_file`` (if present).

    The environment wins over the file. Missing settings raise one error that
    names every variable to set.
    """
    environ = os.environ if environ is None else environ
    file_values: dict[str, str] = {}
    file_note = ""
    if env_file:
        path = Path(env_file)
        if path.is_file():
            file_values = env_file_values(path)
            file_note = f" or in {env_file}"
        else:
            file_note = f" or in {env_file} (not found)"
    values = {**file_values, **{k: v for k, v in environ.items() if k.startswith("REDSHIFT_")}}
    values = {k: v.strip() for k, v in values.items() if v is not None and v.strip()}

    iam = _flag(values, "REDSHIFT_IAM", False)
    ssl = _flag(values, "REDSHIFT_SSL", True)
    if iam:
        if "REDSHIFT_DB_USER" not in values and "REDSHIFT_USER" in values:
            values["REDSHIFT_DB_USER"] = values["REDSHIFT_USER"]
        required = list(IAM_VARS)
        if "redshift-serverless" in values.get("REDSHIFT_HOST", ""):
            required.remove("REDSHIFT_CLUSTER_IDENTIFIER")
    else:
        required = list(PASSWORD_VARS)
    missing = [name for name in required if name not in values]
    if missing:
        how = "IAM" if iam else "password"
        raise LeadRecoveryError(
            f"Redshift connection settings missing for {how} authentication: "
            f"set {', '.join(missing)} in the environment{file_note}"
        )
    if iam and not ssl:
        raise LeadRecoveryError("REDSHIFT_IAM=true requires TLS: remove REDSHIFT_SSL=false")
    raw_port = values.get("REDSHIFT_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw_port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise LeadRecoveryError(f"REDSHIFT_PORT={raw_port!r} is not a port number") from None
    return ConnectionSettings(
        host=values["REDSHIFT_HOST"],
        port=port,
        database=values["REDSHIFT_DATABASE"],
        user=values.get("REDSHIFT_USER"),
        password=None if iam else values.get("REDSHIFT_PASSWORD"),
        ssl=ssl,
        iam=iam,
        cluster_identifier=values.get("REDSHIFT_CLUSTER_IDENTIFIER"),
        region=values.get("REDSHIFT_REGION"),
        profile=values.get("REDSHIFT_PROFILE"),
        db_user=values.get("REDSHIFT_DB_USER"),
    )


# -- messages -------------------------------------------------------------------------


def one_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` on one line, with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return re.sub(r"\s+", " ", text).strip()


def _server_error(err: BaseException) -> dict[str, str] | None:
    """The server's ErrorResponse fields when ``err`` carries one."""
    for arg in getattr(err, "args", ()):
        if isinstance(arg, dict) and "M" in arg:
            return arg
    return None


def _os_error(err: BaseException) -> OSError | None:
    """The socket-level cause of a driver error, if that is what it is."""
    if isinstance(err, OSError):
        return err
    for arg in getattr(err, "args", ()):
        if isinstance(arg, OSError):
            return arg
    cause = err.__cause__ or err.__context__
    return cause if isinstance(cause, OSError) else None


def _describe_os_error(err: OSError, timeout: float | None) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s" if timeout else "timed out"
    if isinstance(err, socket.gaierror):
        return f"host name not resolved ({err.strerror or err})"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, ConnectionResetError):
        return "connection reset by the server"
    return err.strerror or str(err) or type(err).__name__


def _is_single_node_refusal(err: BaseException) -> bool:
    fields = _server_error(err) or {}
    return "for a single node configuration" in fields.get("M", "")


def _is_cursor_cap(err: BaseException) -> bool:
    fields = _server_error(err) or {}
    return "total set of cursor data" in fields.get("M", "")


def _is_transient_connect_error(err: BaseException) -> bool:
    fields = _server_error(err)
    if fields is not None:
        return fields.get("C", "") in _TRANSIENT_STATES
    oserr = _os_error(err)
    if oserr is not None:
        if isinstance(oserr, socket.gaierror):
            return oserr.errno == socket.EAI_AGAIN
        return True  # refused, reset, timed out, unreachable
    # The server closed the socket during the handshake (e.g. restarting).
    return "server socket closed" in str(err)


# -- Arrow types from the cursor's type OIDs ----------------------------------------------

_UNCONSTRAINED_NUMERIC = pa.decimal128(38, 10)
_SIMPLE_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),  # bool
    17: pa.binary(),  # bytea
    18: pa.string(),  # "char"
    19: pa.string(),  # name
    20: pa.int64(),  # int8
    21: pa.int16(),  # int2
    23: pa.int32(),  # int4
    25: pa.string(),  # text
    26: pa.int64(),  # oid
    700: pa.float32(),  # float4
    701: pa.float64(),  # float8
    705: pa.string(),  # unknown (untyped literal)
    1042: pa.string(),  # char(n) / bpchar
    1043: pa.string(),  # varchar
    1082: pa.date32(),  # date
    1083: pa.time64("us"),  # time
    1114: pa.timestamp("us"),  # timestamp
    1184: pa.timestamp("us", tz="UTC"),  # timestamptz, always UTC
}


def numeric_type(typmod: int) -> pa.DataType:
    """Exact decimal for NUMERIC(p, s); unconstrained NUMERIC becomes decimal(38, 10)."""
    if typmod is None or typmod < 4:
        return _UNCONSTRAINED_NUMERIC
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0xFFFF
    if not 0 < precision <= 76 or scale > precision:
        return _UNCONSTRAINED_NUMERIC
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def arrow_type(type_oid: int, typmod: int = -1) -> pa.DataType | None:
    """The Arrow type for a column; ``None`` means "not known: kept as text"."""
    if type_oid == 1700:
        return numeric_type(typmod)
    return _SIMPLE_TYPES.get(type_oid)


def result_schema(cursor: Any) -> tuple[pa.Schema, list[bool]]:
    """Schema of the cursor's current result, and which columns are stringified."""
    row_desc = (getattr(cursor, "ps", None) or {}).get("row_desc") or []
    description = cursor.description or []
    fields, stringify = [], []
    for i, column in enumerate(description):
        name, type_oid = column[0], column[1]
        typmod = row_desc[i].get("type_modifier", -1) if i < len(row_desc) else -1
        typ = arrow_type(type_oid, typmod)
        stringify.append(typ is None)
        fields.append(pa.field(str(name), typ if typ is not None else pa.string()))
    return pa.schema(fields), stringify


def rows_to_batch(rows: Any, schema: pa.Schema, stringify: list[bool]) -> pa.RecordBatch:
    """Driver rows to one record batch, column by column."""
    arrays = []
    for index, (fld, as_text) in enumerate(zip(schema, stringify, strict=True)):
        values = list(map(itemgetter(index), rows))
        if as_text:
            values = [None if v is None else str(v) for v in values]
        try:
            arrays.append(pa.array(values, type=fld.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as err:
            raise LeadRecoveryError(
                f"column '{fld.name}' does not fit {fld.type}: {one_line(str(err))[:200]}; "
                "cast it in the SQL (e.g. ::numeric(38,4) or ::varchar)"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# -- the warehouse -----------------------------------------------------------------------

_cursor_ids = itertools.count(1)
_DONE = object()
_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while rows are fetched.

    The driver allocates a list per row and keeps a whole batch of them alive
    until it is converted, so the collector repeatedly traverses objects that
    can never form cycles: measured here, 20-25% of the fetch loop's CPU. Rows
    are still freed by reference counting the moment a batch is converted.
    Nested and concurrent pauses are counted; the collector resumes (if it
    was on) when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def _extract_mode(value: Any, where: str) -> str:
    mode = str(value or "cursor").strip().lower()
    if mode not in EXTRACT_MODES:
        raise LeadRecoveryError(f"{where} is {value!r}; use one of: {', '.join(EXTRACT_MODES)}")
    return mode


def _cursor_name() -> str:
    return f"lr_{os.getpid()}_{next(_cursor_ids)}_{_secrets.token_hex(3)}"


def _clean_tag(tag: str) -> str:
    return one_line(tag).replace("*/", "* /")


def _strip_statement(sql: str) -> str:
    """The recipe's SQL without trailing semicolons and blank space."""
    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


class RedshiftWarehouse:
    """Recipe SQL on Redshift, streamed through a server-side cursor."""

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
        self.extract = _extract_mode(extract, "redshift.extract")
        self.unload = unload
        self.single_node = False  # learnt from the server's refusal of a large FETCH
        self.last_extract: dict[str, Any] = {}
        self._staged: set[Any] = set()
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
        return f"RedshiftWarehouse({s.user or s.db_user}@{s.host}:{s.port}/{s.database})"

    # -- messages ----------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _say(self, text: str) -> str:
        return one_line(text, self.settings.secrets)

    def _connect_error(self, err: BaseException, attempts: int) -> LeadRecoveryError:
        s = self.settings
        tried = f" (tried {attempts} times)" if attempts > 1 else ""
        fields = _server_error(err)
        if fields is not None:
            state = fields.get("C", "")
            if state in _AUTH_STATES:
                who = s.db_user if s.iam else s.user
                fix = (
                    "check the IAM settings"
                    if s.iam
                    else "check REDSHIFT_USER and REDSHIFT_PASSWORD"
                )
                text = (
                    f"Redshift at {self._where} rejected the login of user '{who}': "
                    f"{fields['M']} (SQLSTATE {state}); {fix}"
                )
            else:
                text = (
                    f"cannot connect to Redshift at {self._where}: {fields['M']} "
                    f"(SQLSTATE {state}){tried}"
                )
            return LeadRecoveryError(self._say(text))
        oserr = _os_error(err)
        if oserr is not None:
            cause = _describe_os_error(oserr, self.connect_timeout_s)
            return LeadRecoveryError(
                self._say(f"cannot connect to Redshift at {self._where}: {cause}{tried}")
            )
        message = str(err.args[0]) if getattr(err, "args", None) else str(err)
        if "refuses SSL" in message:
            return LeadRecoveryError(
                self._say(
                    f"the server at {self._where} refused TLS, which Redshift always offers; "
                    "for a local PostgreSQL behind the test shim set REDSHIFT_SSL=false"
                )
            )
        if "server socket closed" in message:
            message = "the server closed the connection during the handshake"
        return LeadRecoveryError(
            self._say(
                f"cannot connect to Redshift at {self._where}: "
                f"{type(err).__name__}: {message}{tried}"
            )
        )

    def _query_error(
        self, err: BaseException, statement: str, prefix_lines: int, conn: Any = None
    ) -> str:
        fields = _server_error(err)
        if fields is None:
            # A server ending the session sends a FATAL error and closes; the
            # driver keeps that error aside and reports the closed socket.
            pending = getattr(conn, "error", None)
            fields = _server_error(pending) if pending is not None else None
            if fields is not None:
                fields = {**fields, "S": "FATAL"}
        if fields is None:
            oserr = _os_error(err)
            if oserr is not None:
                cause = _describe_os_error(oserr, None)
            else:
                cause = str(err.args[0]) if getattr(err, "args", None) else str(err)
                if "server socket closed" in cause:
                    cause = "the server closed the connection"
            return f"connection to Redshift at {self._where} lost: {cause}"
        if fields.get("S") in ("FATAL", "PANIC"):
            return (
                f"connection to Redshift at {self._where} lost: {fields['M']} "
                f"(SQLSTATE {fields.get('C', '?')})"
            )
        text = f"query failed: {fields['M']} (SQLSTATE {fields.get('C', '?')}"
        position = fields.get("P")
        if position and position.isdigit():
            line = statement[: int(position) - 1].count("\n") + 1 - prefix_lines
            if line >= 1:
                text += f", line {line}"
        text += ")"
        if fields.get("C") == "57014" and self.statement_timeout_s:
            text += f"; redshift.statement_timeout_s is {self.statement_timeout_s:g}"
        if fields.get("H"):
            text += f"; hint: {fields['H']}"
        if "multiple commands" in fields["M"]:
            text += "; the SQL must be a single SELECT"
        return text

    # -- connecting ----------------------------------------------------------------
    def _connect(self, tag: str) -> Any:
        import redshift_connector

        kwargs = self.settings.connect_kwargs(
            timeout=self.connect_timeout_s,
            application_name=_clean_tag(tag)[:APPLICATION_NAME_MAX],
        )
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                conn = redshift_connector.connect(**kwargs)
            except Exception as err:  # the driver raises many kinds; all are classified
                if attempt < attempts and _is_transient_connect_error(err):
                    delay = min(self.retry_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                    log.warning(
                        "Redshift connection attempt %d of %d failed (%s); retrying in %.1fs",
                        attempt,
                        attempts,
                        self._connect_error(err, 1),
                        delay,
                    )
                    time.sleep(delay)
                    continue
                raise self._connect_error(err, attempt) from None
            self._after_connect(conn)
            return conn
        raise AssertionError("unreachable")

    def _after_connect(self, conn: Any) -> None:
        """Stop connect_timeout_s from limiting queries.

        The driver keeps its ``timeout`` on the socket for the connection's
        whole life, so a FETCH that waits longer than the connect timeout (the
        first FETCH materializes the result on Redshift) would fail. A socket
        read never legitimately outlasts the statement timeout, so that (plus
        the connect timeout) becomes the read timeout; without a statement
        timeout, reads wait for ever (TCP keepalive still detects dead peers).
        """
        sock = getattr(conn, "_usock", None)
        if sock is None:
            return
        if self.statement_timeout_s:
            sock.settimeout(self.statement_timeout_s + (self.connect_timeout_s or 30))
        else:
            sock.settimeout(None)

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
        from redshift_connector.core import convert_paramstyle

        mode = self.extract if extract is None else _extract_mode(extract, "extract")
        body = _strip_statement(sql)
        if not body:
            raise LeadRecoveryError("the SQL is empty")
        if mode == "unload" and self.unload is None:
            raise LeadRecoveryError(
                "extract: unload needs redshift.unload.s3_prefix (and redshift.unload.iam_role, "
                "or the cluster's default role) in the config"
            )
        name = _cursor_name()
        header = f"/* {_clean_tag(tag)} */\nDECLARE {name} CURSOR FOR\n"
        declare = header + body
        converted, make_args = convert_paramstyle("named", declare)
        try:
            args = make_args(params)
        except KeyError as err:
            raise LeadRecoveryError(
                f"the SQL uses the parameter :{err.args[0]}, but only "
                f"{', '.join(':' + k for k in params) or 'none'} can be bound"
            ) from None
        bound = dict(params) if args else None

        info: dict[str, Any] = {"path": mode, "rows": 0, "complete": False}
        self.last_extract = info
        conn = self._connect(tag)
        with self._lock:
            self._connections.append(conn)
        cursor = conn.cursor()
        cursor.paramstyle = "named"
        if mode == "unload":
            return self._unload_reader(conn, cursor, body, params, bound, tag, info, reason=None)

        fetch_size = self.fetch_size
        try:
            while True:
                fetch = f"FETCH FORWARD {fetch_size} FROM {name}"
                try:
                    self._set_timeout(cursor)
                    cursor.execute(declare, bound)
                    with gc_paused():
                        cursor.execute(fetch)
                        schema, stringify = result_schema(cursor)
                        first = cursor.fetchall()
                        first_batch = rows_to_batch(first, schema, stringify) if first else None
                    break
                except LeadRecoveryError:
                    raise
                except Exception as err:
                    if fetch_size > SINGLE_NODE_FETCH_LIMIT and _is_single_node_refusal(err):
                        conn.rollback()  # a fresh transaction on the same connection
                        self.single_node = True
                        fetch_size = self.fetch_size
                        log.info(
                            "redshift: single-node cluster (it refused FETCH FORWARD %d); "
                            "fetching %d rows per FETCH",
                            self.batch_size,
                            fetch_size,
                        )
                        continue
                    if _is_cursor_cap(err):
                        return self._over_cursor_cap(
                            conn, cursor, err, body, params, bound, tag, info
                        )
                    raise
        except LeadRecoveryError:
            self._discard(conn)
            raise
        except Exception as err:
            self._discard(conn)
            raise LeadRecoveryError(
                self._say(self._query_error(err, converted, header.count("\n"), conn))
            ) from None
        info.update(path="cursor", fetch_size=fetch_size, single_node=self.single_node)
        log.info(
            "redshift: cursor %s open, %d rows per FETCH%s, first batch %d rows",
            name,
            fetch_size,
            " (single-node cluster)" if self.single_node else "",
            len(first),
        )
        count = len(first)
        del first
        batches = self._batches(
            conn, cursor, name, fetch, fetch_size, schema, stringify, first_batch, count
        )
        return pa.RecordBatchReader.from_batches(schema, _counted(batches, info))

    def _set_timeout(self, cursor: Any) -> None:
        if self.statement_timeout_s:
            ms = max(1, int(self.statement_timeout_s * 1000))
            cursor.execute(f"SET statement_timeout TO {ms}")

    def _over_cursor_cap(
        self,
        conn: Any,
        cursor: Any,
        err: BaseException,
        body: str,
        params: Mapping[str, Any],
        bound: dict[str, Any] | None,
        tag: str,
        info: dict[str, Any],
    ) -> pa.RecordBatchReader:
        """The first FETCH hit Redshift's cursor-data cap: UNLOAD if allowed, else say how."""
        cap = (_server_error(err) or {}).get("M", "cursor data cap").strip().rstrip(".")
        if info["path"] == "auto" and self.unload is not None:
            conn.rollback()
            log.warning(
                "redshift: the result is over Redshift's cursor-data cap (%s); "
                "extracting it with UNLOAD instead (extract: auto)",
                cap,
            )
            return self._unload_reader(
                conn, cursor, body, params, bound, tag, info, reason="cursor cap"
            )
        if self.unload is None:
            remedy = (
                "set extract: unload (redshift.extract, or extract: in the recipe's meta.yml) "
                "with redshift.unload.s3_prefix and redshift.unload.iam_role"
            )
        else:
            remedy = "set extract: unload (or auto) in the config or the recipe's meta.yml"
        raise LeadRecoveryError(
            self._say(
                f"the result is too large for a Redshift cursor ({cap}; SQLSTATE "
                f"{(_server_error(err) or {}).get('C', '?')}): no fetch size reads past that "
                f"cap; {remedy}"
            )
        )

    # -- the UNLOAD path ------------------------------------------------------------
    def _unload_reader(
        self,
        conn: Any,
        cursor: Any,
        body: str,
        params: Mapping[str, Any],
        bound: dict[str, Any] | None,
        tag: str,
        info: dict[str, Any],
        *,
        reason: str | None,
    ) -> pa.RecordBatchReader:
        """UNLOAD the result to S3 as Parquet, then stream the parts; staging always deleted."""
        from lead_recovery.warehouse import unload as ul

        settings = self.unload
        assert settings is not None
        try:
            query, wrapped = ul.unload_query(body, params)
            target = ul.staging_target(settings, tag, params)
        except LeadRecoveryError:
            self._discard(conn)
            raise
        staging = ul.Staging(settings, target)
        info.update(path="unload", staging=target, wrapped_limit=wrapped)
        if reason:
            info["fallback_from"] = "cursor"
            info["reason"] = reason
        probe = f"/* {_clean_tag(tag)} */\nSELECT * FROM (\n{body}\n) AS lr_probe LIMIT 0"
        statement = f"/* {_clean_tag(tag)} */\n" + ul.unload_statement(query, target, settings)
        doing = "probe"
        with self._lock:
            self._staged.add(staging)
        try:
            staging.delete()  # leftovers of an earlier attempt with the same run id
            self._set_timeout(cursor)
            # The column names and types: exactly what the cursor path gives (same query).
            cursor.execute(probe, bound)
            schema, _ = result_schema(cursor)
            cursor.fetchall()
            doing = "unload"
            if wrapped:
                log.info("redshift: LIMIT in the outermost SELECT; UNLOAD runs it wrapped")
            log.info("redshift: UNLOAD to %s", target)
            cursor.execute(statement)
            conn.rollback()  # read-only; the files are on S3 whatever the transaction does
            self._discard(conn)
            entries = staging.manifest()
        except LeadRecoveryError:
            self._discard(conn)
            self._cleanup(staging)
            raise
        except Exception as err:
            self._discard(conn)
            self._cleanup(staging)
            prefix_lines = 2 if doing == "probe" else 1
            statement_text = probe if doing == "probe" else statement
            cause = self._query_error(err, statement_text, prefix_lines, conn)
            if doing == "unload":
                cause = cause.replace("query failed:", "UNLOAD failed:", 1)
            raise LeadRecoveryError(self._say(cause)) from None
        info["parts"] = len(entries)
        info["unload_rows"] = sum(
            int((entry.get("meta") or {}).get("record_count", 0)) for entry in entries
        )
        log.info(
            "redshift: UNLOAD wrote %d rows in %d parts; reading them",
            info["unload_rows"],
            len(entries),
        )

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from ul.read_parts(staging, entries, schema, info)
            finally:
                self._cleanup(staging)

        return pa.RecordBatchReader.from_batches(schema, _counted(batches(), info))

    def _cleanup(self, staging: Any) -> None:
        with self._lock:
            self._staged.discard(staging)
        try:
            staging.delete()
        except LeadRecoveryError as err:
            log.warning("redshift: %s; delete it by hand", self._say(str(err)))

    def _batches(
        self,
        conn: Any,
        cursor: Any,
        name: str,
        fetch: str,
        fetch_size: int,
        schema: pa.Schema,
        stringify: list[bool],
        first: pa.RecordBatch | None,
        first_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        """The batches: the first one, then those a fetcher thread prepares.

        The fetcher runs the FETCH loop and the conversion one batch ahead of
        the consumer, so the consumer's Parquet encoding (which releases the
        GIL) overlaps the next fetch. At most three batches exist at once: one
        being written, one queued, one being fetched.
        """
        if first_rows < fetch_size:
            try:
                if first is not None:
                    yield first
                self._finish(conn, cursor, name)
            finally:
                self._discard(conn)
            return
        handoff: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()
        fetcher = threading.Thread(
            target=self._fetch_ahead,
            args=(
                conn,
                cursor,
                name,
                fetch,
                fetch_size,
                schema,
                stringify,
                first_rows,
                handoff,
                stop,
            ),
            name=f"redshift-{name}",
            daemon=True,
        )
        fetcher.start()
        try:
            if first is not None:
                yield first
            del first
            while True:
                item = handoff.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                handoff.get_nowait()  # unblock a fetcher waiting to hand over

    def _fetch_ahead(
        self,
        conn: Any,
        cursor: Any,
        name: str,
        fetch: str,
        fetch_size: int,
        schema: pa.Schema,
        stringify: list[bool],
        rows_so_far: int,
        handoff: queue.Queue,
        stop: threading.Event,
    ) -> None:
        def hand_over(item: Any) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            with gc_paused():
                self._fetch_loop(
                    conn, cursor, fetch, fetch_size, schema, stringify, rows_so_far, hand_over, stop
                )
            if not stop.is_set():
                self._finish(conn, cursor, name)
                hand_over(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            hand_over(err)
        finally:
            self._discard(conn)

    def _fetch_loop(
        self,
        conn: Any,
        cursor: Any,
        fetch: str,
        fetch_size: int,
        schema: pa.Schema,
        stringify: list[bool],
        rows_so_far: int,
        hand_over: Any,
        stop: threading.Event,
    ) -> None:
        more = True
        while more and not stop.is_set():
            try:
                cursor.execute(fetch)
                rows = cursor.fetchall()
            except Exception as err:
                cause = self._query_error(err, fetch, 0, conn)
                raise LeadRecoveryError(self._say(f"{cause} (after {rows_so_far} rows)")) from None
            more = len(rows) == fetch_size
            if rows:
                rows_so_far += len(rows)
                batch = rows_to_batch(rows, schema, stringify)
                del rows  # before the next FETCH fills the driver's buffer
                if not hand_over(batch):
                    return
                del batch

    def _finish(self, conn: Any, cursor: Any, name: str) -> None:
        try:
            cursor.execute(f"CLOSE {name}")
            conn.rollback()  # read-only: nothing to commit
        except Exception as err:
            log.warning("redshift: closing cursor %s failed: %s", name, self._say(str(err)))

    def _discard(self, conn: Any) -> None:
        with self._lock:
            if conn not in self._connections:
                return
            self._connections.remove(conn)
        with contextlib.suppress(Exception):  # closing a dead connection fails; that is fine
            conn.close()

    def close(self) -> None:
        for conn in list(self._connections):
            self._discard(conn)
        for staging in list(self._staged):  # a reader that was never read to its end
            self._cleanup(staging)


def _counted(batches: Iterator[pa.RecordBatch], info: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """Pass the batches on, counting rows into ``info``; ``complete`` once exhausted."""
    for batch in batches:
        info["rows"] += batch.num_rows
        yield batch
    info["complete"] = True
