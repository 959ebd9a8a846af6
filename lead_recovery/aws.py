"""Every AWS client the project builds, built in one place.

(Interim version: the S3 store's settings; the UNLOAD staging joins it.) Short
timeouts and few retries, the region the standard AWS settings name, and the
AWS libraries' loggers kept at WARNING: their debug lines carry request
headers (the access key id, a session token), and jobs log at DEBUG.
"""

from __future__ import annotations

import logging
import os
from typing import Any

_QUIET = ("boto3", "botocore", "s3transfer", "urllib3")


def quiet_logging() -> None:
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def client(service: str, *, region: str | None = None, **config_overrides: Any) -> Any:
    import boto3
    from botocore.config import Config

    quiet_logging()
    session = boto3.session.Session()
    settings: dict[str, Any] = {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"max_attempts": 3, "mode": "standard"},
        # S3-compatible servers (MinIO, moto) need no trailing checksums
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        **config_overrides,
    }
    name = region or os.environ.get("AWS_REGION", "").strip() or session.region_name or None
    return session.client(service, region_name=name, config=Config(**settings))
