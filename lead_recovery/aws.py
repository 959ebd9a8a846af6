"""The one place boto3 clients are made, and the logging that keeps AWS secrets out of logs.

Jobs log at DEBUG, and at DEBUG botocore writes every request it sends: the
``Authorization`` header (access key id and signature), the session token
(``X-Amz-Security-Token``, and ``x-amz-security-token:<token>`` in the
canonical request it signs) and whole response bodies (a
``GetClusterCredentials`` answer holds a database password). So
:func:`configure_logging` runs once per process, before the first client:

* ``boto3``, ``botocore``, ``s3transfer`` and ``urllib3`` log at WARNING and
  above only (their DEBUG and INFO lines are never created);
* every record those libraries (and ``redshift_connector``, which makes its
  own boto3 clients for IAM) still write passes through :func:`redact`,
  whatever handler or level a caller configures later.

:func:`client` builds every client the project uses (S3 for UNLOAD and the
store, ``redshift`` / ``redshift-serverless`` for IAM checks) with bounded
timeouts and standard retries, in the region the standard AWS settings name
(``AWS_REGION`` first, as the AWS CLI reads it).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

QUIETED = ("boto3", "botocore", "s3transfer", "urllib3")
REDACTED = (*QUIETED, "redshift_connector")
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_PATTERNS = [
    # Authorization headers, in dict reprs, raw header lines and canonical requests
    (re.compile(r"(?i)(['\"]?authorization['\"]?\s*[:=]\s*b?['\"]?)[^'\",\r\n}]+"), r"\1***"),
    (
        re.compile(r"(?i)(['\"]?x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\",\s\r\n}&]+"),
        r"\1***",
    ),
    # presigned URLs and signed query strings
    (
        re.compile(r"(?i)(x-amz-(?:signature|credential|security-token)=)[^&\s'\"]+"),
        r"\1***",
    ),
    (re.compile(r"(?i)((?:signature|credential)\s*[=:]\s*)[A-Za-z0-9/+=._-]{8,}"), r"\1***"),
    # access key ids (AKIA long-term, ASIA temporary, ...)
    (re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|ANPA|ANVA|AGPA)[A-Z0-9]{12,}\b"), "***"),
    # temporary database passwords in IAM answers (XML and JSON), and secret keys in dicts
    (re.compile(r"(?i)(<dbpassword>)[^<]*(</dbpassword>)"), r"\1***\2"),
    (
        re.compile(
            r"(?i)(['\"](?:dbpassword|password|secretaccesskey|aws_secret_access_key|"
            r"sessiontoken|aws_session_token|secret_access_key|session_token)['\"]\s*:\s*b?)"
            r"(['\"])[^'\"]*\2"
        ),
        r"\1\2***\2",
    ),
]

_configured = False
_lock = threading.Lock()


def redact(text: str) -> str:
    """``text`` with AWS credentials, signatures and IAM database passwords replaced by ``***``.

    Besides the shapes above, the literal values of ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN`` in this process's
    environment are replaced wherever they appear.
    """
    for name in _CREDENTIAL_VARS:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_aws_record(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in REDACTED)


def configure_logging() -> None:
    """Quiet the AWS libraries and redact what they still log; once per process.

    A log record factory (not a handler filter) does the redacting, because
    handlers come and go (``logging.basicConfig(force=True)`` in every job)
    while the factory sees every record before any handler does.
    """
    global _configured
    with _lock:
        if _configured:
            return
        for name in QUIETED:
            logging.getLogger(name).setLevel(logging.WARNING)
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _is_aws_record(record.name):
                try:
                    message = record.getMessage()
                except Exception:  # a malformed record: keep only its format string
                    message = str(record.msg)
                record.msg = redact(message)
                record.args = ()
            return record

        logging.setLogRecordFactory(factory)
        _configured = True


def region_name(session: Any = None) -> str | None:
    """The region the standard AWS settings name.

    ``AWS_REGION`` first, as the AWS CLI and the other SDKs read it: boto3
    itself reads only ``AWS_DEFAULT_REGION`` and the profile's ``region``
    (what ``session.region_name`` holds).
    """
    explicit = os.environ.get("AWS_REGION", "").strip()
    if explicit:
        return explicit
    if session is None:
        import boto3

        session = boto3.session.Session()
    return session.region_name or None


# Per service, what differs from the defaults below.
_SERVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    # S3-compatible servers (MinIO, moto) need no trailing checksums
    "s3": {
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    },
}


def client(service: str, *, region: str | None = None, **config_overrides: Any) -> Any:
    """A boto3 client for ``service`` with bounded timeouts and standard retries.

    ``region`` wins over the standard settings (:func:`region_name`);
    ``config_overrides`` are ``botocore.config.Config`` options (e.g.
    ``read_timeout=300``, ``retries={"max_attempts": 10, "mode": "standard"}``).
    Endpoint and credentials come from the standard AWS settings only
    (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, the environment, a role).
    """
    configure_logging()
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"max_attempts": 5, "mode": "standard"},
        **_SERVICE_DEFAULTS.get(service, {}),
        **config_overrides,
    }
    session = boto3.session.Session()
    return session.client(
        service, region_name=region or region_name(session), config=Config(**options)
    )
