"""Is the configured warehouse reachable, and how? One line per check, for ``lead-recovery doctor``.

Each :class:`Check` is a name, ``ok`` (True: fine; False: this will fail a
run; None: unknown, or not checked because an earlier step failed) and a
one-line detail. For Redshift: the settings, a connection with a short
timeout running ``SELECT 1``, the way in that was used, TLS and how the
certificate was checked, whether the cluster is single-node (asked the way
the extract meets it: a ``FETCH FORWARD 1001``, which only a single-node
cluster refuses), and, when UNLOAD may be used, whether the staging prefix
is writable and which role Redshift writes with. For the DuckDB demo: the
file. No detail ever holds a password, a key or a token.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from lead_recovery.config import fill_defaults
from lead_recovery.errors import LeadRecoveryError

_MARKS = {True: "ok", False: "FAILED", None: "unknown"}


class Check(NamedTuple):
    """One answer: ``ok`` is True (fine), False (a run will fail) or None (unknown)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        """``[ok] name: detail`` on one line."""
        return f"[{_MARKS[self.ok]}] {self.name}: {' '.join(self.detail.split())}"


def check(
    config: Mapping[str, Any], environ: Mapping[str, str] | None = None, timeout_s: float = 10
) -> list[Check]:
    """The checks for the configured warehouse; never raises for what it checks."""
    filled = fill_defaults(config)
    name = filled.get("warehouse")
    if name == "duckdb":
        return _duckdb(filled)
    if name == "redshift":
        return _redshift(filled, environ, timeout_s)
    return [Check("warehouse", False, f"{name!r} is not one of: duckdb, redshift")]


# -- the demo ---------------------------------------------------------------------------


def _duckdb(config: Mapping[str, Any]) -> list[Check]:
    path = Path(config["duckdb"]["path"])
    checks = [Check("warehouse", True, "duckdb demo (embedded; no credentials)")]
    if not path.is_file():
        checks.append(Check("demo file", None, f"{path} not built yet; the first run builds it"))
        return checks
    try:
        import duckdb

        with duckdb.connect(str(path), read_only=True) as con:
            (count,) = con.execute("SELECT count(*) FROM leads").fetchone()
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        checks.append(Check("demo file", False, f"{path} cannot be read: {first}"))
        return checks
    checks.append(Check("demo file", True, f"{path}: {count} leads"))
    return checks


# -- Redshift -----------------------------------------------------------------------------


def _redshift(
    config: Mapping[str, Any], environ: Mapping[str, str] | None, timeout_s: float
) -> list[Check]:
    from lead_recovery.warehouse.settings import AUTH_LABELS, identity, read_settings

    options = config["redshift"]
    checks: list[Check] = []
    try:
        settings = read_settings(environ, env_file=options["env_file"])
        where = identity(environ, env_file=options["env_file"])
    except LeadRecoveryError as err:
        checks.append(Check("settings", False, str(err)))
        return checks + _unload(options)
    checks.append(Check("settings", True, f"{where}; {AUTH_LABELS[settings.auth]}"))

    from lead_recovery.warehouse.connect import ConnectError, ConnectPolicy, connect
    from lead_recovery.warehouse.messages import one_line

    policy = ConnectPolicy(
        connect_timeout_s=timeout_s, statement_timeout_s=timeout_s, retries=0, retry_backoff_s=0
    )
    started = time.monotonic()
    try:
        conn = connect(settings, "lead_recovery doctor", policy)
    except ConnectError as err:
        checks.append(Check("connection", False, str(err)))
        login = Check("authentication", None, f"{AUTH_LABELS[settings.auth]}; not reached")
        if err.kind == "login":
            login = Check("authentication", False, f"{AUTH_LABELS[settings.auth]} refused")
        checks.append(login)
        tls = Check("tls", None, "not checked: no connection")
        if err.kind == "tls":
            tls = Check("tls", False, str(err))
        elif not settings.ssl:
            tls = _tls(settings, None)
        checks += [tls, Check("single node", None, "not checked: no connection")]
        return checks + _unload(options)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SET statement_timeout TO {max(1, int(timeout_s * 1000))}")
        cursor.execute("SELECT 1, current_user")
        (_, who) = cursor.fetchone()
        conn.rollback()
        elapsed = time.monotonic() - started
        checks.append(Check("connection", True, f"SELECT 1 answered in {elapsed:.2f}s"))
        checks.append(
            Check("authentication", True, f"{AUTH_LABELS[settings.auth]}; logged in as '{who}'")
        )
        checks.append(_tls(settings, conn))
        checks.append(_single_node(conn))
    except Exception as err:
        checks.append(
            Check("connection", False, one_line(f"SELECT 1 failed: {err}", settings.secrets))
        )
    finally:
        with contextlib.suppress(Exception):  # closing a broken connection fails; fine
            conn.close()
    return checks + _unload(options)


def _tls(settings: Any, conn: Any) -> Check:
    if not settings.ssl:
        return Check(
            "tls", True, "off (REDSHIFT_SSL=false): not encrypted; Redshift always offers TLS"
        )
    sock = getattr(conn, "_usock", None)
    version = sock.version() if hasattr(sock, "version") else None
    if settings.sslmode == "verify-full":
        how = "certificate verified and the host name checked (sslmode verify-full)"
    elif settings.sslmode == "verify-ca":
        how = "certificate verified, the host name not checked (sslmode verify-ca)"
    else:
        how = (
            "certificate verified; a host name mismatch is only warned "
            "(sslmode not set: the driver's default)"
        )
    trusted = "the driver's Redshift CAs and the system's"
    if settings.ssl_root_cert:
        trusted += f", plus {settings.ssl_root_cert} (REDSHIFT_SSL_ROOT_CERT)"
    return Check("tls", True, f"on ({version or 'TLS'}); {how}; trusted: {trusted}")


def _single_node(conn: Any) -> Check:
    """Ask the question the extract meets: does the server refuse FETCH above 1000 rows?"""
    from lead_recovery.warehouse.cursor_path import SINGLE_NODE_FETCH_LIMIT
    from lead_recovery.warehouse.messages import is_single_node_refusal, one_line, server_error

    name = f"lr_doctor_{uuid.uuid4().hex[:8]}"
    try:
        cursor = conn.cursor()
        cursor.execute(f"DECLARE {name} CURSOR FOR SELECT 1")
        cursor.execute(f"FETCH FORWARD {SINGLE_NODE_FETCH_LIMIT + 1} FROM {name}")
        cursor.fetchall()
        conn.rollback()
    except Exception as err:
        with contextlib.suppress(Exception):  # the connection is gone; said below
            conn.rollback()
        if is_single_node_refusal(err):
            return Check(
                "single node",
                True,
                f"yes: the server refuses FETCH above {SINGLE_NODE_FETCH_LIMIT} rows; the "
                f"extract fetches {SINGLE_NODE_FETCH_LIMIT} rows at a time",
            )
        fields = server_error(err) or {}
        cause = fields.get("M") or str(err)
        return Check("single node", None, one_line(f"unknown: the probe failed ({cause})"))
    return Check(
        "single node",
        True,
        f"no: FETCH FORWARD {SINGLE_NODE_FETCH_LIMIT + 1} accepted; "
        "redshift.batch_size rows per FETCH apply",
    )


# -- UNLOAD ----------------------------------------------------------------------------------


def _unload(options: Mapping[str, Any]) -> list[Check]:
    """The UNLOAD settings, when a run may use them (extract unload/auto, or a prefix set)."""
    from lead_recovery.warehouse.unload import UnloadSettings

    unload = options.get("unload") or {}
    mode = str(options.get("extract") or "cursor")
    if mode == "cursor" and not unload.get("s3_prefix"):
        return []
    try:
        settings = UnloadSettings.from_config(unload)
    except LeadRecoveryError as err:
        return [Check("unload s3_prefix", False, str(err))]
    if settings is None:
        if mode == "unload":
            prefix = Check(
                "unload s3_prefix", False, "extract: unload needs redshift.unload.s3_prefix"
            )
        else:
            prefix = Check(
                "unload s3_prefix",
                None,
                "not set: extract: auto cannot switch to UNLOAD when a result is over "
                "Redshift's cursor-data cap",
            )
        return [prefix, Check("unload iam_role", None, "not checked: no s3_prefix")]
    return [_writable(settings), _role(unload)]


def _writable(settings: Any) -> Check:
    from lead_recovery import aws
    from lead_recovery.warehouse.staging import s3_error

    key = f"{settings.key_prefix}.lead-recovery-doctor/{uuid.uuid4().hex}"
    try:
        client = aws.client("s3", region=settings.region)
        client.put_object(Bucket=settings.bucket, Key=key, Body=b"lead-recovery doctor\n")
        client.delete_object(Bucket=settings.bucket, Key=key)
    except Exception as err:
        doing = f"writing a test object under {settings.s3_prefix}/"
        return Check("unload s3_prefix", False, str(s3_error(err, doing)))
    return Check(
        "unload s3_prefix",
        True,
        f"{settings.s3_prefix}/ is writable (a test object put and deleted); Redshift's role "
        "needs s3:PutObject there too",
    )


def _role(unload: Mapping[str, Any]) -> Check:
    role = (unload.get("iam_role") or "").strip()
    if not role:
        return Check(
            "unload iam_role",
            None,
            "not set: UNLOAD uses the cluster's default IAM role (IAM_ROLE default), which "
            "this check cannot see; set redshift.unload.iam_role to name it",
        )
    if role.lower() == "default":
        return Check("unload iam_role", True, "default: the cluster's default IAM role")
    return Check("unload iam_role", True, role)
