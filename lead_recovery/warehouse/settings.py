"""Where and how to connect to Redshift, from ``REDSHIFT_*`` variables or ``.env``.

Three ways in, each a different set of ``redshift_connector.connect`` options:

* **password**: ``REDSHIFT_USER`` and ``REDSHIFT_PASSWORD``, provisioned or Serverless;
* **IAM, provisioned cluster** (``REDSHIFT_IAM=true``): the driver calls
  ``redshift:GetClusterCredentials`` for ``REDSHIFT_DB_USER`` in
  ``REDSHIFT_CLUSTER_IDENTIFIER`` (optionally creating the user,
  ``REDSHIFT_AUTO_CREATE``, and joining ``REDSHIFT_DB_GROUPS``);
* **IAM, Serverless** (``REDSHIFT_IAM=true`` with ``REDSHIFT_WORKGROUP``, or a
  ``<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com`` host):
  the driver calls ``redshift-serverless:GetCredentials`` for the workgroup;
  Redshift names the database user after the caller's IAM identity.

TLS is on unless ``REDSHIFT_SSL=false``; ``REDSHIFT_SSLMODE`` (``verify-ca`` or
``verify-full``) and ``REDSHIFT_SSL_ROOT_CERT`` (a PEM bundle of extra CAs)
tighten it. Everything is read and checked here, before anything connects:
a missing setting is one line naming every variable to set, and settings
that contradict each other are one line naming them. Nothing here imports
the driver, and nothing here puts a secret in a message.
"""

from __future__ import annotations

import os
import re
import ssl as _ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_recovery.config import env_file_values, parse_bool
from lead_recovery.errors import LeadRecoveryError

DEFAULT_PORT = 5439
PASSWORD = "password"
IAM_PROVISIONED = "iam-provisioned"
IAM_SERVERLESS = "iam-serverless"
AUTH_LABELS = {
    PASSWORD: "password",
    IAM_PROVISIONED: "IAM, provisioned cluster (redshift:GetClusterCredentials)",
    IAM_SERVERLESS: "IAM, Serverless workgroup (redshift-serverless:GetCredentials)",
}
SSLMODES = ("verify-ca", "verify-full")

PASSWORD_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_USER", "REDSHIFT_PASSWORD")
IAM_VARS = ("REDSHIFT_HOST", "REDSHIFT_DATABASE", "REDSHIFT_CLUSTER_IDENTIFIER", "REDSHIFT_DB_USER")
# Only GetClusterCredentials takes a database user, auto-create and groups.
PROVISIONED_IAM_ONLY = ("REDSHIFT_DB_USER", "REDSHIFT_AUTO_CREATE", "REDSHIFT_DB_GROUPS")

_AWS = r"\.amazonaws\.com(?:\.cn)?"
SERVERLESS_HOST_RE = re.compile(
    r"^(?:(?P<workgroup>[a-z0-9-]+)\.)?(?P<account>\d{12})\.(?P<region>[a-z0-9-]+)"
    r"\.redshift-serverless(?:-dev)?" + _AWS + "$"
)
PROVISIONED_HOST_RE = re.compile(
    r"^(?P<cluster>[a-z0-9-]+)\.(?P<id>[a-z0-9]+)\.(?P<region>[a-z0-9-]+)"
    r"\.redshift(?:-dev)?" + _AWS + "$"
)


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
    workgroup: str | None = None
    auto_create: bool | None = None
    db_groups: tuple[str, ...] = ()
    sslmode: str | None = None
    ssl_root_cert: str | None = None

    @property
    def auth(self) -> str:
        """``password``, ``iam-provisioned`` or ``iam-serverless``."""
        if not self.iam:
            return PASSWORD
        return IAM_SERVERLESS if self.workgroup else IAM_PROVISIONED

    @property
    def serverless(self) -> bool:
        return self.workgroup is not None

    @property
    def login(self) -> str:
        """Who logs in, as far as the settings tell (Serverless IAM: the IAM identity)."""
        if self.auth == PASSWORD:
            return f"user '{self.user}'"
        if self.auth == IAM_PROVISIONED:
            return f"database user '{self.db_user}'"
        return "the database user named after the caller's IAM identity"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a message."""
        return tuple(s for s in (self.password,) if s)

    def connect_kwargs(self, *, timeout: float | None, application_name: str) -> dict[str, Any]:
        """Keyword arguments for ``redshift_connector.connect`` (redshift_connector 2.2.0)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "ssl": self.ssl,
            "application_name": application_name,
        }
        if timeout:
            kwargs["timeout"] = timeout
        if self.ssl and self.sslmode:
            kwargs["sslmode"] = self.sslmode
        if self.auth == PASSWORD:
            kwargs.update(user=self.user, password=self.password)
            return kwargs
        kwargs["iam"] = True
        if self.auth == IAM_PROVISIONED:
            kwargs.update(db_user=self.db_user, user=self.db_user)
            kwargs["cluster_identifier"] = self.cluster_identifier
            if self.auto_create is not None:
                kwargs["auto_create"] = self.auto_create
            if self.db_groups:
                kwargs["db_groups"] = list(self.db_groups)
        else:
            kwargs.update(is_serverless=True, serverless_work_group=self.workgroup)
        for key in ("region", "profile"):
            value = getattr(self, key)
            if value:
                kwargs[key] = value
        return kwargs


def _flag(values: Mapping[str, str], name: str, default: bool | None) -> bool | None:
    if not (values.get(name) or "").strip():
        return default
    parsed = parse_bool(values[name])
    if parsed is not None:
        return parsed
    raise LeadRecoveryError(f"{name}={values[name]!r} is not a boolean; use true or false")


def read_values(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> tuple[dict[str, str], str]:
    """The non-empty ``REDSHIFT_*`` values (environment over file), and where they were looked for.

    The file never changes the process environment.
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
    return values, file_note


def _port(values: Mapping[str, str]) -> int:
    raw_port = values.get("REDSHIFT_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw_port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise LeadRecoveryError(f"REDSHIFT_PORT={raw_port!r} is not a port number") from None
    return port


def workgroup_of(values: Mapping[str, str]) -> str | None:
    """The Serverless workgroup: ``REDSHIFT_WORKGROUP``, else the one the host names.

    A setting that contradicts the host (a provisioned endpoint, another
    workgroup) is refused here.
    """
    host = values.get("REDSHIFT_HOST", "").lower()
    named = values.get("REDSHIFT_WORKGROUP")
    serverless = SERVERLESS_HOST_RE.match(host)
    if named is not None:
        if PROVISIONED_HOST_RE.match(host):
            raise LeadRecoveryError(
                f"REDSHIFT_WORKGROUP={named!r} is set, but REDSHIFT_HOST {host!r} is a "
                "provisioned cluster's endpoint: remove one of them"
            )
        in_host = serverless.group("workgroup") if serverless else None
        if in_host and in_host != named.lower():
            raise LeadRecoveryError(
                f"REDSHIFT_WORKGROUP={named!r} but REDSHIFT_HOST names workgroup {in_host!r}"
            )
        return named
    if serverless:
        return serverless.group("workgroup") or ""  # "": Serverless, workgroup unknown
    return None


def _ssl_settings(values: Mapping[str, str]) -> tuple[bool, str | None, str | None]:
    ssl = _flag(values, "REDSHIFT_SSL", True)
    sslmode = values.get("REDSHIFT_SSLMODE")
    root_cert = values.get("REDSHIFT_SSL_ROOT_CERT")
    if sslmode is not None and sslmode.lower() not in SSLMODES:
        raise LeadRecoveryError(
            f"REDSHIFT_SSLMODE={sslmode!r} is not supported by redshift_connector; "
            f"use {' or '.join(SSLMODES)}"
        )
    if not ssl:
        given = [n for n in ("REDSHIFT_SSLMODE", "REDSHIFT_SSL_ROOT_CERT") if n in values]
        if given:
            raise LeadRecoveryError(
                f"{' and '.join(given)} set, but REDSHIFT_SSL=false turns TLS off: remove one"
            )
    if root_cert is not None:
        path = Path(root_cert).expanduser()
        if not path.is_file():
            raise LeadRecoveryError(f"REDSHIFT_SSL_ROOT_CERT={root_cert!r}: no such file")
        try:
            _ssl.create_default_context(cafile=str(path))
        except (_ssl.SSLError, ValueError, OSError):
            raise LeadRecoveryError(
                f"REDSHIFT_SSL_ROOT_CERT={root_cert!r} holds no PEM certificate"
            ) from None
        root_cert = str(path.resolve())
    return bool(ssl), sslmode.lower() if sslmode else None, root_cert


def read_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> ConnectionSettings:
    """Connection settings from the environment, then ``env_file`` (if present).

    The environment wins over the file. Missing settings raise one error that
    names every variable to set; contradictory ones, one error naming them.
    """
    values, file_note = read_values(environ, env_file)
    iam = bool(_flag(values, "REDSHIFT_IAM", False))
    ssl, sslmode, root_cert = _ssl_settings(values)
    workgroup = workgroup_of(values)
    host = values.get("REDSHIFT_HOST", "")
    cluster = values.get("REDSHIFT_CLUSTER_IDENTIFIER")

    if not iam:
        given = [name for name in PROVISIONED_IAM_ONLY if name in values]
        if given:
            what = "is an IAM setting" if len(given) == 1 else "are IAM settings"
            raise LeadRecoveryError(
                f"{', '.join(given)} {what}: set REDSHIFT_IAM=true, or remove "
                f"{'it' if len(given) == 1 else 'them'} for password authentication"
            )
        missing = [name for name in PASSWORD_VARS if name not in values]
        if missing:
            raise LeadRecoveryError(
                "Redshift connection settings missing for password authentication: "
                f"set {', '.join(missing)} in the environment{file_note}"
            )
    else:
        if not ssl:
            raise LeadRecoveryError("REDSHIFT_IAM=true requires TLS: remove REDSHIFT_SSL=false")
        if "REDSHIFT_PASSWORD" in values:
            raise LeadRecoveryError(
                "REDSHIFT_PASSWORD is set, but REDSHIFT_IAM=true logs in with temporary "
                "credentials from AWS: remove one of them"
            )
        if workgroup is not None and cluster:
            raise LeadRecoveryError(
                f"REDSHIFT_CLUSTER_IDENTIFIER={cluster!r} names a provisioned cluster, but "
                "REDSHIFT_WORKGROUP (or the host) a Serverless workgroup: set only one"
            )
        if workgroup is not None:
            given = [n for n in (*PROVISIONED_IAM_ONLY, "REDSHIFT_USER") if n in values]
            if given:
                raise LeadRecoveryError(
                    f"{', '.join(given)} cannot be used with Redshift Serverless IAM: "
                    "GetCredentials logs in as the caller's IAM identity (IAM:<user> or "
                    "IAMR:<role>); remove "
                    f"{'it' if len(given) == 1 else 'them'}"
                )
            missing = [n for n in ("REDSHIFT_HOST", "REDSHIFT_DATABASE") if n not in values]
            if not workgroup:
                missing.append("REDSHIFT_WORKGROUP")
            if missing:
                raise LeadRecoveryError(
                    "Redshift connection settings missing for IAM authentication (Serverless): "
                    f"set {', '.join(missing)} in the environment{file_note}"
                )
        else:
            db_user, user = values.get("REDSHIFT_DB_USER"), values.get("REDSHIFT_USER")
            if db_user and user and db_user != user:
                raise LeadRecoveryError(
                    f"REDSHIFT_DB_USER={db_user!r} and REDSHIFT_USER={user!r} disagree: with "
                    "REDSHIFT_IAM=true set only REDSHIFT_DB_USER (the database user to log in as)"
                )
            if db_user is None and user is not None:
                values["REDSHIFT_DB_USER"] = user  # settings written before REDSHIFT_DB_USER
            provisioned = PROVISIONED_HOST_RE.match(host.lower())
            if cluster is None and provisioned:
                values["REDSHIFT_CLUSTER_IDENTIFIER"] = provisioned.group("cluster")
            missing = [name for name in IAM_VARS if name not in values]
            if missing:
                raise LeadRecoveryError(
                    "Redshift connection settings missing for IAM authentication "
                    f"(provisioned cluster): set {', '.join(missing)} in the environment"
                    f"{file_note}; for Redshift Serverless set REDSHIFT_WORKGROUP instead of "
                    "REDSHIFT_CLUSTER_IDENTIFIER and REDSHIFT_DB_USER"
                )
        aws_host = SERVERLESS_HOST_RE.match(host.lower()) or PROVISIONED_HOST_RE.match(host.lower())
        if not aws_host and "REDSHIFT_REGION" not in values:
            raise LeadRecoveryError(
                f"REDSHIFT_REGION is needed with REDSHIFT_IAM=true: the host {host!r} is not "
                "an AWS endpoint name, so the region cannot be read from it"
            )

    groups = tuple(g.strip() for g in values.get("REDSHIFT_DB_GROUPS", "").split(",") if g.strip())
    return ConnectionSettings(
        host=host,
        port=_port(values),
        database=values["REDSHIFT_DATABASE"],
        user=values.get("REDSHIFT_USER"),
        password=None if iam else values.get("REDSHIFT_PASSWORD"),
        ssl=ssl,
        iam=iam,
        cluster_identifier=values.get("REDSHIFT_CLUSTER_IDENTIFIER") if iam else None,
        region=values.get("REDSHIFT_REGION"),
        profile=values.get("REDSHIFT_PROFILE"),
        db_user=values.get("REDSHIFT_DB_USER") if iam else None,
        workgroup=workgroup or None,
        auto_create=_flag(values, "REDSHIFT_AUTO_CREATE", None),
        db_groups=groups,
        sslmode=sslmode,
        ssl_root_cert=root_cert,
    )


def identity(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> str:
    """The Redshift warehouse these settings reach, named without connecting.

    ``redshift serverless <workgroup>/<database>`` when a Serverless workgroup
    is known (``REDSHIFT_WORKGROUP`` or the endpoint), else ``redshift at
    <host>:<port>/<database>``. Read from the same variables as the
    connection, but needing none of the credentials (a teammate listing
    markers has no password); the way in (password or IAM) is not part of it:
    it changes who queries, not what is queried.
    """
    values, file_note = read_values(environ, env_file)
    missing = [n for n in ("REDSHIFT_HOST", "REDSHIFT_DATABASE") if n not in values]
    if missing:
        raise LeadRecoveryError(
            f"cannot name the Redshift warehouse: set {', '.join(missing)} "
            f"in the environment{file_note}"
        )
    workgroup = workgroup_of(values)
    database = values["REDSHIFT_DATABASE"]
    if workgroup:
        return f"redshift serverless {workgroup.lower()}/{database}"
    host = values["REDSHIFT_HOST"].lower().rstrip(".")
    return f"redshift at {host}:{_port(values)}/{database}"
