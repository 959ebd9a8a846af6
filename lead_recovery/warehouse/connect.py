"""Opening a Redshift connection: retried when the failure is transient, one line when not.

This is the one retry layer for connections (config ``redshift.retries``,
default 3, so at most 4 attempts): no Snakemake profile sets ``retries``, so
a failed job is not rerun on top of it. A rejected login, a TLS refusal or
an SQL error is reported at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse.messages import (
    AUTH_STATES,
    describe_os_error,
    is_transient_connect_error,
    one_line,
    os_error,
    server_error,
)
from lead_recovery.warehouse.settings import ConnectionSettings

log = logging.getLogger("lead_recovery")

MAX_BACKOFF_S = 60.0
APPLICATION_NAME_MAX = 63  # PostgreSQL/Redshift truncate longer names


_ssl_env_lock = threading.Lock()


@contextlib.contextmanager
def trusting(root_cert: str | None) -> Iterator[None]:
    """Let the driver's TLS handshake trust the CAs in ``root_cert`` too.

    redshift_connector 2.2.0 has no option for a CA file: it trusts its
    bundled Redshift CAs plus the system's default locations, which OpenSSL
    reads from ``SSL_CERT_FILE`` when set. So that variable names the bundle
    for the length of the connect call (under a lock: it is process-wide),
    and is put back afterwards.
    """
    if not root_cert:
        yield
        return
    with _ssl_env_lock:
        before = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = root_cert
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = before


class ConnectError(LeadRecoveryError):
    """A connection that could not be made; ``kind`` says which step failed.

    ``login`` (the server or AWS refused the credentials), ``tls`` (the
    handshake or the certificate), ``network`` (unreachable, refused, timed
    out), ``server`` (the server refused for another reason) or ``other``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


_AWS_LOGIN_ERRORS = (
    "ClientError",
    "NoCredentialsError",
    "PartialCredentialsError",
    "NoRegionError",
    "ParamValidationError",
)


@dataclass(frozen=True)
class ConnectPolicy:
    """How long to wait for a connection, and how often to try again."""

    connect_timeout_s: float | None = 30
    statement_timeout_s: float | None = 3600
    retries: int = 3
    retry_backoff_s: float = 2.0


def connect_error(
    settings: ConnectionSettings, err: BaseException, attempts: int, timeout: float | None
) -> ConnectError:
    """The failure of a connection attempt as one line without secrets."""
    s = settings
    where = f"{s.host}:{s.port}"
    tried = f" (tried {attempts} times)" if attempts > 1 else ""

    def say(text: str, kind: str = "other") -> ConnectError:
        return ConnectError(one_line(text, s.secrets), kind)

    fields = server_error(err)
    if fields is not None:
        state = fields.get("C", "")
        if state in AUTH_STATES:
            who = s.user if not s.iam else (s.db_user or "the IAM identity's database user")
            fix = "check the IAM settings" if s.iam else "check REDSHIFT_USER and REDSHIFT_PASSWORD"
            return say(
                f"Redshift at {where} rejected the login of user '{who}': "
                f"{fields['M']} (SQLSTATE {state}); {fix}",
                "login",
            )
        return say(
            f"cannot connect to Redshift at {where}: {fields['M']} (SQLSTATE {state}){tried}",
            "server",
        )
    oserr = os_error(err)
    if oserr is not None:
        cause = describe_os_error(oserr, timeout)
        kind = "tls" if isinstance(oserr, ssl.SSLError) else "network"
        return say(f"cannot connect to Redshift at {where}: {cause}{tried}", kind)
    message = str(err.args[0]) if getattr(err, "args", None) else str(err)
    if "refuses SSL" in message:
        return say(
            f"the server at {where} refused TLS, which Redshift always offers; "
            "for a local PostgreSQL behind the test shim set REDSHIFT_SSL=false",
            "tls",
        )
    if "server socket closed" in message:
        message = "the server closed the connection during the handshake"
    kind = "login" if s.iam and type(err).__name__ in _AWS_LOGIN_ERRORS else "other"
    if kind == "login":
        message = f"AWS refused the IAM login ({s.auth}): {message}"
    return say(
        f"cannot connect to Redshift at {where}: {type(err).__name__}: {message}{tried}", kind
    )


def connect(settings: ConnectionSettings, application_name: str, policy: ConnectPolicy) -> Any:
    """A driver connection, after up to ``policy.retries`` retries of transient failures."""
    import redshift_connector

    from lead_recovery import aws

    # With IAM the driver makes its own boto3 clients, whose DEBUG lines carry the
    # request's credentials and the temporary database password.
    aws.configure_logging()
    kwargs = settings.connect_kwargs(
        timeout=policy.connect_timeout_s,
        application_name=application_name[:APPLICATION_NAME_MAX],
    )
    attempts = policy.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            with trusting(settings.ssl_root_cert):
                conn = redshift_connector.connect(**kwargs)
        except Exception as err:  # the driver raises many kinds; all are classified
            if attempt < attempts and is_transient_connect_error(err):
                delay = min(policy.retry_backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                log.warning(
                    "Redshift connection attempt %d of %d failed (%s); retrying in %.1fs",
                    attempt,
                    attempts,
                    connect_error(settings, err, 1, policy.connect_timeout_s),
                    delay,
                )
                time.sleep(delay)
                continue
            raise connect_error(settings, err, attempt, policy.connect_timeout_s) from None
        after_connect(conn, policy)
        return conn
    raise AssertionError("unreachable")


def after_connect(conn: Any, policy: ConnectPolicy) -> None:
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
    if policy.statement_timeout_s:
        sock.settimeout(policy.statement_timeout_s + (policy.connect_timeout_s or 30))
    else:
        sock.settimeout(None)
