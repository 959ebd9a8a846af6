"""What the driver's failures mean, said in one line.

``redshift_connector`` raises many exception types, some wrapping the
socket error, some carrying the server's ErrorResponse fields as a dict.
These functions read them once, so the connect step, the cursor path and the
UNLOAD path classify and word failures alike, and never echo a secret.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

# SQLSTATEs: a rejected login is never retried; a server that cannot take the
# connection right now (starting up, shutting down, too many connections) is.
AUTH_STATES = ("28000", "28P01")
TRANSIENT_STATES = ("57P01", "57P02", "57P03", "53300", "08000", "08001", "08003", "08006")


def one_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` on one line, with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return re.sub(r"\s+", " ", text).strip()


def server_error(err: BaseException | None) -> dict[str, str] | None:
    """The server's ErrorResponse fields when ``err`` carries one."""
    for arg in getattr(err, "args", ()):
        if isinstance(arg, dict) and "M" in arg:
            return arg
    return None


def os_error(err: BaseException) -> OSError | None:
    """The socket-level cause of a driver error, if that is what it is."""
    if isinstance(err, OSError):
        return err
    for arg in getattr(err, "args", ()):
        if isinstance(arg, OSError):
            return arg
    cause = err.__cause__ or err.__context__
    return cause if isinstance(cause, OSError) else None


def describe_os_error(err: OSError, timeout: float | None) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        reason = getattr(err, "verify_message", "") or "certificate verify failed"
        return (
            f"the server's TLS certificate was not accepted ({reason.rstrip('.')}); "
            "REDSHIFT_SSL_ROOT_CERT adds CAs to trust, REDSHIFT_SSLMODE=verify-ca "
            "skips the host name check"
        )
    if isinstance(err, ssl.SSLError):
        return f"TLS failed ({err.reason or err})"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g}s" if timeout else "timed out"
    if isinstance(err, socket.gaierror):
        return f"host name not resolved ({err.strerror or err})"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, ConnectionResetError):
        return "connection reset by the server"
    return err.strerror or str(err) or type(err).__name__


def is_single_node_refusal(err: BaseException) -> bool:
    fields = server_error(err) or {}
    return "for a single node configuration" in fields.get("M", "")


def is_cursor_cap(err: BaseException) -> bool:
    fields = server_error(err) or {}
    return "total set of cursor data" in fields.get("M", "")


def is_transient_connect_error(err: BaseException) -> bool:
    fields = server_error(err)
    if fields is not None:
        return fields.get("C", "") in TRANSIENT_STATES
    oserr = os_error(err)
    if oserr is not None:
        if isinstance(oserr, socket.gaierror):
            return oserr.errno == socket.EAI_AGAIN
        # refused, reset, timed out, unreachable; an untrusted certificate stays untrusted
        return not isinstance(oserr, ssl.SSLError)
    # The server closed the socket during the handshake (e.g. restarting).
    return "server socket closed" in str(err)


def query_error(
    err: BaseException,
    statement: str,
    prefix_lines: int,
    *,
    where: str,
    conn: Any = None,
    statement_timeout_s: float | None = None,
) -> str:
    """A failed statement as one line (not yet stripped of secrets).

    ``prefix_lines`` is how many lines we put before the recipe's SQL, so the
    line number points into the recipe's own file.
    """
    fields = server_error(err)
    if fields is None:
        # A server ending the session sends a FATAL error and closes; the
        # driver keeps that error aside and reports the closed socket.
        pending = getattr(conn, "error", None)
        fields = server_error(pending) if pending is not None else None
        if fields is not None:
            fields = {**fields, "S": "FATAL"}
    if fields is None:
        oserr = os_error(err)
        if oserr is not None:
            cause = describe_os_error(oserr, None)
        else:
            cause = str(err.args[0]) if getattr(err, "args", None) else str(err)
            if "server socket closed" in cause:
                cause = "the server closed the connection"
        return f"connection to Redshift at {where} lost: {cause}"
    if fields.get("S") in ("FATAL", "PANIC"):
        return (
            f"connection to Redshift at {where} lost: {fields['M']} "
            f"(SQLSTATE {fields.get('C', '?')})"
        )
    text = f"query failed: {fields['M']} (SQLSTATE {fields.get('C', '?')}"
    position = fields.get("P")
    if position and position.isdigit():
        line = statement[: int(position) - 1].count("\n") + 1 - prefix_lines
        if line >= 1:
            text += f", line {line}"
    text += ")"
    if fields.get("C") == "57014" and statement_timeout_s:
        text += f"; redshift.statement_timeout_s is {statement_timeout_s:g}"
    if fields.get("H"):
        text += f"; hint: {fields['H']}"
    if "multiple commands" in fields["M"]:
        text += "; the SQL must be a single SELECT"
    return text
