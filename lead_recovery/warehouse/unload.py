"""Redshift's UNLOAD path: the result goes to S3 as Parquet, the client reads the parts.

A cursor makes the leader node materialize the whole result and caps the
total cursor data per node type; UNLOAD writes the result from every slice
in parallel and has no such cap. The extract then reads the Parquet parts
(record batch by record batch, one part on disk at a time) instead of
decoding rows in Python::

    UNLOAD ('<recipe SQL, :run_date as DATE ''YYYY-MM-DD''>')
    TO 's3://bucket/prefix/<recipe>/<YYYYMMDD>/<run id>/'
    IAM_ROLE '<arn>' | IAM_ROLE default
    FORMAT AS PARQUET MANIFEST

The staging prefix is deleted afterwards, after a failure too. S3 is read
with boto3's standard credential chain (``AWS_PROFILE``, the environment, an
instance or task role; ``AWS_ENDPOINT_URL`` is honoured); no credential is
ever put in the SQL, a file, a log line or a message.

UNLOAD takes no bind parameters, so parameters become typed literals here
(:func:`inline_params`), and every literal in the statement (the query,
the target, the role) is quoted by :func:`~.literals.quote_literal`. A recipe whose
outermost SELECT has LIMIT (which UNLOAD rejects) is wrapped in
``SELECT * FROM (...)``, which Redshift accepts.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.warehouse import params as params_mod
from lead_recovery.warehouse.literals import quote_literal, sql_literal  # noqa: F401
from lead_recovery.warehouse.messages import one_line
from lead_recovery.warehouse.staging import (  # noqa: F401  (part of this module's API)
    READ_BATCH_ROWS,
    Staging,
    conform,
    read_parts,
    s3_error,
    split_s3,
)

log = logging.getLogger("lead_recovery")

EXTRACT_MODES = ("cursor", "unload", "auto")
RUN_ID_ENV = "LEAD_RECOVERY_RUN_ID"
# The bucket as S3 names it; the key prefix without anything that could end or
# escape a SQL literal (quotes, backslashes, backticks), whitespace or control
# characters. The same pattern is in workflow/schemas/config.schema.yaml.
S3_PREFIX_RE = re.compile(r"""^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x20\x7f'"\\`]*)?$""")
# Redshift splits a role chain at commas, so a role name here has none.
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=.@_/-]+$")


def check_s3_prefix(prefix: str) -> str:
    """``prefix`` if it is ``s3://bucket[/prefix]`` that is safe to quote, else one line."""
    if not S3_PREFIX_RE.match(prefix):
        raise LeadRecoveryError(
            f"redshift.unload.s3_prefix {prefix!r} is not an s3://bucket/prefix path "
            "(a lowercase bucket name; no quotes, backslashes, spaces or control characters)"
        )
    return prefix


def check_iam_role(role: str) -> str:
    """``role`` if it is an IAM role ARN (or a comma-separated chain of them), else one line."""
    if not all(ROLE_ARN_RE.match(part) for part in role.split(",")):
        raise LeadRecoveryError(
            f"redshift.unload.iam_role {role!r} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>) or 'default'"
        )
    return role


@dataclass(frozen=True)
class UnloadSettings:
    """Where UNLOAD stages its parts and with which role Redshift writes them.

    Both reach the UNLOAD statement as literals, so they are checked here,
    however the settings were made, before anything is sent.
    """

    s3_prefix: str  # s3://bucket[/prefix], no trailing slash
    iam_role: str | None = None  # None: the cluster's default role
    region: str | None = None  # of the bucket, for the S3 client; None: the chain's

    def __post_init__(self) -> None:
        check_s3_prefix(self.s3_prefix)
        if self.iam_role is not None:
            check_iam_role(self.iam_role)

    @property
    def bucket(self) -> str:
        return self.s3_prefix[len("s3://") :].split("/", 1)[0]

    @property
    def key_prefix(self) -> str:
        rest = self.s3_prefix[len("s3://") :].partition("/")[2]
        return f"{rest}/" if rest else ""

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> UnloadSettings | None:
        """From ``redshift.unload``; None when no ``s3_prefix`` is configured."""
        options = options or {}
        prefix = (options.get("s3_prefix") or "").strip()
        if not prefix:
            return None
        check_s3_prefix(prefix)
        role = (options.get("iam_role") or "").strip() or None
        if role is not None and role.lower() == "default":
            role = None
        if role is not None:
            check_iam_role(role)
        return cls(
            s3_prefix=prefix.rstrip("/"),
            iam_role=role,
            region=(options.get("region") or "").strip() or None,
        )


# -- the statement ---------------------------------------------------------------------


def inline_params(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with every ``:name`` replaced by its value as a typed literal.

    The parameters are found as the cursor path finds them (:mod:`.params`:
    Redshift's lexical rules, so literals, comments and ``::`` casts are skipped).
    """
    return params_mod.inline(sql, params)


def has_outer_limit(sql: str) -> bool:
    """Whether the outermost SELECT (or set operation) has LIMIT/TOP/OFFSET."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="redshift")
    except Exception:  # not parseable here: Redshift will say what is wrong
        return bool(re.search(r"\blimit\s+\d+\s*$", sql, re.IGNORECASE))
    if not isinstance(tree, exp.Query):
        return False
    return any(tree.args.get(key) is not None for key in ("limit", "offset"))


def unload_query(sql: str, params: Mapping[str, Any]) -> tuple[str, bool]:
    """The query UNLOAD runs, and whether it had to be wrapped for an outer LIMIT."""
    inlined = inline_params(sql, params)
    if has_outer_limit(inlined):
        return f"SELECT * FROM (\n{inlined}\n) AS lr_unload", True
    return inlined, False


def unload_statement(query: str, target: str, settings: UnloadSettings) -> str:
    """The UNLOAD statement; every literal in it goes through :func:`quote_literal`."""
    role = quote_literal(settings.iam_role) if settings.iam_role else "default"
    return (
        f"UNLOAD ({quote_literal(query)})\n"
        f"TO {quote_literal(check_s3_prefix(target.rstrip('/')) + '/')}\n"
        f"IAM_ROLE {role}\nFORMAT AS PARQUET\nMANIFEST"
    )


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", part)[:120] or "_"


def staging_target(settings: UnloadSettings, tag: str, params: Mapping[str, Any]) -> str:
    """``s3://bucket/prefix/<recipe>/<YYYYMMDD>/<run id>/`` for this query."""
    recipe_match = re.search(r"\brecipe=(\S+)", tag)
    date_match = re.search(r"\brun_date=(\d{8})\b", tag)
    recipe = recipe_match.group(1) if recipe_match else "adhoc"
    if date_match:
        day = date_match.group(1)
    elif isinstance(params.get("run_date"), dt.date):
        day = params["run_date"].strftime("%Y%m%d")
    else:
        day = dt.date.today().strftime("%Y%m%d")
    run_id = os.environ.get(RUN_ID_ENV) or uuid.uuid4().hex
    return f"s3://{settings.bucket}/{settings.key_prefix}{_safe(recipe)}/{day}/{_safe(run_id)}/"


# -- the UNLOAD path ------------------------------------------------------------------


class Owner(Protocol):
    """What the UNLOAD path needs from the warehouse that opened the connection."""

    def discard(self, conn: Any) -> None: ...

    def say(self, text: str) -> str: ...

    def query_error(
        self, err: BaseException, statement: str, prefix_lines: int, conn: Any = None
    ) -> str: ...

    def set_timeout(self, cursor: Any) -> None: ...

    def track(self, staging: Staging) -> None: ...

    def cleanup(self, staging: Staging) -> None: ...


def unload_reader(
    owner: Owner,
    settings: UnloadSettings,
    conn: Any,
    cursor: Any,
    body: str,
    params: Mapping[str, Any],
    tag: str,
    info: dict[str, Any],
    *,
    reason: str | None,
) -> pa.RecordBatchReader:
    """UNLOAD the result to S3 as Parquet, then stream the parts; staging always deleted."""
    from lead_recovery.warehouse.arrow_types import result_schema

    try:
        query, wrapped = unload_query(body, params)
        target = staging_target(settings, tag, params)
    except LeadRecoveryError:
        owner.discard(conn)
        raise
    staging = Staging(settings, target)
    info.update(path="unload", staging=target, wrapped_limit=wrapped)
    if reason:
        info["fallback_from"] = "cursor"
        info["reason"] = reason
    probe_head = f"/* {clean_tag(tag)} */\nSELECT * FROM (\n"
    bound_body, args = params_mod.bind(body, params)
    probe = f"{probe_head}{bound_body}\n) AS lr_probe LIMIT 0"
    statement = f"/* {clean_tag(tag)} */\n" + unload_statement(query, target, settings)
    doing = "probe"
    owner.track(staging)
    try:
        staging.delete()  # leftovers of an earlier attempt with the same run id
        owner.set_timeout(cursor)
        # The column names and types: exactly what the cursor path gives (same query).
        params_mod.check_driver_leaves_alone(probe, probe_head.count("\n"))
        cursor.paramstyle = params_mod.PARAMSTYLE
        cursor.execute(probe, args or None)
        schema, _ = result_schema(cursor)
        cursor.fetchall()
        doing = "unload"
        if wrapped:
            log.info("redshift: LIMIT in the outermost SELECT; UNLOAD runs it wrapped")
        log.info("redshift: UNLOAD to %s", target)
        cursor.execute(statement)
        conn.rollback()  # read-only; the files are on S3 whatever the transaction does
        owner.discard(conn)
        entries = staging.manifest()
    except LeadRecoveryError:
        owner.discard(conn)
        owner.cleanup(staging)
        raise
    except Exception as err:
        owner.discard(conn)
        owner.cleanup(staging)
        prefix_lines = 2 if doing == "probe" else 1
        statement_text = probe if doing == "probe" else statement
        cause = owner.query_error(err, statement_text, prefix_lines, conn)
        if doing == "unload":
            cause = cause.replace("query failed:", "UNLOAD failed:", 1)
        raise LeadRecoveryError(owner.say(cause)) from None
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
            yield from read_parts(staging, entries, schema, info)
        finally:
            owner.cleanup(staging)

    return pa.RecordBatchReader.from_batches(schema, counted(batches(), info))


def counted(batches: Iterator[pa.RecordBatch], info: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """Pass the batches on, counting rows into ``info``; ``complete`` once exhausted."""
    for batch in batches:
        info["rows"] += batch.num_rows
        yield batch
    info["complete"] = True


def clean_tag(tag: str) -> str:
    """The query tag, safe inside a ``/* ... */`` comment and on one line."""
    return one_line(tag).replace("*/", "* /")
