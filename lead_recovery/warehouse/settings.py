"""Where and how to connect to Redshift, from ``REDSHIFT_*`` variables or ``.env``.

The settings are read and checked here, before anything connects, so a
missing or malformed one is a single line naming every variable to set.
Nothing here imports the driver.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_recovery.config import env_file_values, parse_bool
from lead_recovery.errors import LeadRecoveryError

DEFAULT_PORT = 5439

PASSWORD_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_USER", "REDSHIFT_PASSWORD")
IAM_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_CLUSTER_IDENTIFIER", "REDSHIFT_DB_USER")


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
