"""UNLOAD's staging prefix on S3: the manifest, the Parquet parts, and their deletion.

The client reads the parts Redshift wrote (one part on local disk at a time,
the next downloading while the current one is decoded), casts them to the
cursor path's schema, and deletes the prefix afterwards. Every S3 failure is
one line; botocore's messages carry no credentials and are cut short. The
S3 client comes from :func:`lead_recovery.aws.client`, which also keeps
credentials out of the DEBUG log.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lead_recovery.errors import LeadRecoveryError

if TYPE_CHECKING:
    from lead_recovery.warehouse.unload import UnloadSettings

READ_BATCH_ROWS = 65_536


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
            from lead_recovery import aws

            self._client = aws.client("s3", region=self.settings.region)
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
