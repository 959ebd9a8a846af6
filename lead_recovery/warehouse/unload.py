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
(:func:`inline_params`), and the statement's quoting follows Redshift's
rules for the query literal (:func:`quote_unload_literal`). A recipe whose
outermost SELECT has LIMIT (which UNLOAD rejects) is wrapped in
``SELECT * FROM (...)``, which Redshift accepts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import aws_region

log = logging.getLogger("lead_recovery")

EXTRACT_MODES = ("cursor", "unload", "auto")
RUN_ID_ENV = "LEAD_RECOVERY_RUN_ID"
READ_BATCH_ROWS = 65_536
_ROLE_RE = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class UnloadSettings:
    """Where UNLOAD stages its parts and with which role Redshift writes them."""

    s3_prefix: str  # s3://bucket[/prefix], no trailing slash
    iam_role: str | None = None  # None: the cluster's default role
    region: str | None = None  # of the bucket, for the S3 client; None: the chain's

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
        if not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", prefix):
            raise LeadRecoveryError(
                f"redshift.unload.s3_prefix {prefix!r} is not an s3://bucket/prefix path"
            )
        role = (options.get("iam_role") or "").strip() or None
        if role is not None and role.lower() == "default":
            role = None
        if role is not None and not all(_ROLE_RE.match(r) for r in role.split(",")):
            raise LeadRecoveryError(
                f"redshift.unload.iam_role {role!r} is not an IAM role ARN "
                "(arn:aws:iam::<account>:role/<name>) or 'default'"
            )
        return cls(
            s3_prefix=prefix.rstrip("/"),
            iam_role=role,
            region=(options.get("region") or "").strip() or None,
        )


# -- the statement ---------------------------------------------------------------------


def sql_literal(value: Any) -> str:
    """A Redshift literal for a bind parameter's value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return f"TIMESTAMPTZ '{value.isoformat(sep=' ')}'"
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "''")
    return f"'{text}'"


def inline_params(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with every ``:name`` replaced by its value as a typed literal.

    Skips quoted strings, quoted identifiers, comments and ``::`` casts, as
    the driver's own named-parameter scanner does.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif ch == '"':
            j = sql.find('"', i + 1)
            j = n - 1 if j < 0 else j
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif sql.startswith("::", i):
            out.append("::")
            i += 2
        elif ch == ":" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
            match = re.match(r"[A-Za-z_]\w*", sql[i + 1 :])
            name = match.group(0)
            if name not in params:
                raise LeadRecoveryError(
                    f"the SQL uses the parameter :{name}, but only "
                    f"{', '.join(':' + k for k in params) or 'none'} can be bound"
                )
            out.append(sql_literal(params[name]))
            i += 1 + len(name)
        else:
            out.append(ch)
            i += 1
    return "".join(out)


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


def quote_unload_literal(query: str) -> str:
    """The query as UNLOAD's single-quoted literal: backslashes and quotes escaped."""
    return "'" + query.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unload_statement(query: str, target: str, settings: UnloadSettings) -> str:
    role = f"'{settings.iam_role}'" if settings.iam_role else "default"
    return (
        f"UNLOAD ({quote_unload_literal(query)})\n"
        f"TO '{target}'\nIAM_ROLE {role}\nFORMAT AS PARQUET\nMANIFEST"
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


# -- S3 ----------------------------------------------------------------------------------


def split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, key = rest.partition("/")
    return bucket, key


def s3_error(err: BaseException, doing: str) -> LeadRecoveryError:
    """A one-line S3 failure; botocore's messages carry no secrets, and are cut short."""
    code = ""
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code", "")
    text = re.sub(r"\s+", " ", str(err)).strip()[:300]
    hint = ""
    if type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        hint = "; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use a role"
    label = f"{type(err).__name__}{f' {code}' if code else ''}"
    return LeadRecoveryError(f"{doing} failed: {label}: {text}{hint}")


class Staging:
    """One UNLOAD's staging prefix on S3: read its manifest and parts, then delete it."""

    def __init__(self, settings: UnloadSettings, target: str, client: Any = None) -> None:
        self.settings = settings
        self.target = target
        self.bucket, self.prefix = split_s3(target)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            self._client = session.client(
                "s3",
                region_name=self.settings.region or aws_region(session),
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
        return self._client

    def delete(self) -> int:
        """Delete every object under the staging prefix; returns how many."""
        deleted = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                for start in range(0, len(keys), 1000):
                    chunk = keys[start : start + 1000]
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
                    )
                    deleted += len(chunk)
        except Exception as err:
            raise s3_error(err, f"deleting the UNLOAD staging {self.target}") from None
        return deleted

    def manifest(self) -> list[dict[str, Any]]:
        """The manifest's entries: ``[{"url": ..., "meta": {...}}, ...]``."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}manifest")
            data = json.loads(body["Body"].read())
        except Exception as err:
            raise s3_error(err, f"reading the UNLOAD manifest {self.target}manifest") from None
        entries = data.get("entries") or []
        for entry in entries:
            if not str(entry.get("url", "")).startswith("s3://"):
                raise LeadRecoveryError(f"the UNLOAD manifest {self.target}manifest is malformed")
        return entries

    def download(self, url: str, path: Path) -> int:
        from boto3.s3.transfer import TransferConfig

        bucket, key = split_s3(url)
        try:
            self.client.download_file(
                bucket,
                key,
                str(path),
                Config=TransferConfig(max_concurrency=4, multipart_chunksize=16 << 20),
            )
        except Exception as err:
            raise s3_error(err, f"reading the UNLOAD part {url}") from None
        return path.stat().st_size


def _one_line(err: BaseException) -> str:
    return re.sub(r"\s+", " ", str(err)).strip()[:200]


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A Parquet part's batch with the cursor path's column names and types."""
    if batch.num_columns != len(schema):
        raise LeadRecoveryError(
            f"the UNLOAD parts have {batch.num_columns} columns, the query {len(schema)}"
        )
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowException, ValueError) as err:
                raise LeadRecoveryError(
                    f"column '{field.name}' from UNLOAD does not fit {field.type}: "
                    f"{_one_line(err)}; cast it in the SQL"
                ) from None
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def read_parts(
    staging: Staging,
    entries: list[dict[str, Any]],
    schema: pa.Schema,
    info: dict[str, Any],
    tmp_dir: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """The parts' rows as batches of the query's schema, one part on disk at a time.

    The next part downloads while the current one is decoded; at most two
    parts are on local disk and one row group's batches in memory.
    """
    import pyarrow.parquet as pq

    with (
        tempfile.TemporaryDirectory(prefix="lr-unload-", dir=tmp_dir) as tmp,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lr-unload-get") as pool,
    ):

        def fetch(index: int):
            path = Path(tmp) / f"part{index}.parquet"
            return path, staging.download(entries[index]["url"], path)

        pending = pool.submit(fetch, 0) if entries else None
        for index in range(len(entries)):
            path, size = pending.result()
            pending = pool.submit(fetch, index + 1) if index + 1 < len(entries) else None
            info["s3_bytes"] = info.get("s3_bytes", 0) + size
            try:
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=True):
                    yield conform(batch, schema)
                parquet.close()
            except LeadRecoveryError:
                raise
            except (pa.ArrowException, OSError) as err:
                raise LeadRecoveryError(
                    f"reading the UNLOAD part {entries[index]['url']} failed: {_one_line(err)}"
                ) from None
            finally:
                with contextlib.suppress(OSError):
                    path.unlink()
