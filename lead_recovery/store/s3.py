"""An S3 store: conditional writes are S3's own (``If-Match``, ``If-None-Match: *``); the
clock is S3's ``Date``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

from lead_recovery import atomic
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store.base import (
    SENTINEL,
    SMALL,
    Entry,
    Got,
    StoreError,
    TooLarge,
    clean,
    clean_or_root,
    etag_of,
)

_T = TypeVar("_T")
_COPY_PART = 5 * 1024**3  # CopyObject's limit


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")`` (the prefix may be empty)."""
    if not url.startswith("s3://"):
        raise LeadRecoveryError(f"store {url!r} must be s3://bucket/prefix or a folder")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise LeadRecoveryError(f"store {url!r} names no bucket (s3://bucket/prefix)")
    prefix = prefix.strip("/")
    if prefix:
        try:
            prefix = clean(prefix)
        except LeadRecoveryError:
            raise LeadRecoveryError(f"store {url!r}: '..' may not appear in the prefix") from None
    return bucket, prefix


class S3Store:
    """An S3 prefix every run reaches, on any host.

    Endpoint, region and credentials come only from the standard AWS settings
    (``AWS_ENDPOINT_URL``, ``AWS_REGION``, the access keys, ``AWS_PROFILE``,
    instance roles): nothing here reads, stores or prints a credential.
    Timeouts are short and retries few, so a wrong endpoint fails in seconds
    with one line instead of hanging the run.
    """

    def __init__(self, url: str) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client: Any = None
        self._date: tuple[float, float] | None = None  # (S3's Date, monotonic) of the last answer

    def key(self, path: str) -> str:
        relative = clean(path)
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def location(self, path: str) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    def local_path(self, path: str) -> Path | None:
        return None

    @property
    def client(self) -> Any:
        if self._client is None:
            from lead_recovery import aws

            # few retries: a wrong endpoint fails in seconds, with one line
            self._client = aws.client("s3", retries={"max_attempts": 3, "mode": "standard"})
        return self._client

    def _call(self, what: Callable[[], _T]) -> _T:
        """One S3 call; a failure the user must fix becomes one line naming the store."""
        import botocore.exceptions as bx

        try:
            answer = what()
        except bx.NoCredentialsError:
            cause = (
                "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or use an instance role)"
            )
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as err:
            cause = f"cannot reach the S3 endpoint ({err})"
        except bx.ClientError as err:
            code = self._code(err)
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or (code == "404" and "HeadBucket" in str(err)):
                cause = f"no such bucket '{self.bucket}'"
            elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                cause = f"the AWS credentials were rejected ({code})"
            elif code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
                cause = f"access denied ({code or status})"
            else:
                raise
        except bx.BotoCoreError as err:
            cause = f"{type(err).__name__}: {err}"
        else:
            self._note_date(answer)
            return answer
        raise StoreError(f"store {self.url}: {cause}") from None

    def _note_date(self, answer: object) -> None:
        """Remember S3's own time from an answer's ``Date`` header (see :meth:`clock`)."""
        if not isinstance(answer, dict):
            return
        headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        with contextlib.suppress(TypeError, ValueError, IndexError):
            self._date = (parsedate_to_datetime(headers["date"]).timestamp(), time.monotonic())

    @staticmethod
    def _code(err: Exception) -> str:
        return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))

    def get(self, path: str, limit: int = SMALL) -> Got | None:
        import botocore.exceptions as bx

        try:
            answer = self._call(
                lambda: self.client.get_object(Bucket=self.bucket, Key=self.key(path))
            )
        except bx.ClientError as err:
            if self._code(err) in ("NoSuchKey", "404"):
                return None
            raise
        with answer["Body"] as body:
            if int(answer.get("ContentLength") or 0) > limit:
                raise TooLarge(f"{self.location(path)}: more than {limit} bytes")
            data = body.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"{self.location(path)}: more than {limit} bytes")
        return Got(data, str(answer.get("ETag", "")).strip('"'), answer["LastModified"].timestamp())

    def put_if(self, path: str, data: bytes, etag: str | None) -> str | None:
        import botocore.exceptions as bx

        condition = {"IfMatch": f'"{etag}"'} if etag is not None else {"IfNoneMatch": "*"}
        try:
            answer = self._call(
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=self.key(path), Body=data, **condition
                )
            )
        except bx.ClientError as err:
            if self._code(err) in (
                *("PreconditionFailed", "412", "ConditionalRequestConflict"),
                *("NoSuchKey", "404"),  # If-Match on a key deleted meanwhile
            ):
                return None
            raise
        return str(answer.get("ETag", "")).strip('"') or etag_of(data)

    def put(self, path: str, data: bytes) -> None:
        self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=data)
        )

    def put_file(self, local: str | Path, path: str, replace: bool = False) -> None:
        from boto3.s3.transfer import TransferConfig

        # No thread pool: the end of a run may fetch from an atexit handler, where new
        # threads are refused; one process writes one extract at a time anyway.
        config = TransferConfig(use_threads=False)
        self._call(
            lambda: self.client.upload_file(str(local), self.bucket, self.key(path), Config=config)
        )

    def fetch(self, path: str, local: str | Path) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(use_threads=False)
        atomic.replace_with(
            local,
            lambda tmp: self._call(
                lambda: self.client.download_file(
                    self.bucket, self.key(path), str(tmp), Config=config
                )
            ),
        )

    def version(self, path: str) -> tuple[str, float] | None:
        entry = self.stat(path)
        return None if entry is None else (entry.etag, entry.mtime)

    def stat(self, path: str) -> Entry | None:
        import botocore.exceptions as bx

        try:
            head = self._call(
                lambda: self.client.head_object(Bucket=self.bucket, Key=self.key(path))
            )
        except bx.ClientError as err:
            if self._code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return Entry(
            int(head["ContentLength"]),
            head["LastModified"].timestamp(),
            str(head.get("ETag", "")).strip('"'),
        )

    def delete(self, path: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key(path)))

    def _pages(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        iterator = iter(pages)
        while True:
            page = self._call(lambda: next(iterator, None))
            if page is None:
                return
            yield page

    def _base(self, folder: str) -> str:
        if clean_or_root(folder):
            return self.key(folder) + "/"
        return self.prefix + "/" if self.prefix else ""

    def names(self, folder: str) -> list[str]:
        base = self._base(folder)
        found = []
        for page in self._pages(base, delimiter="/"):
            found += [c["Prefix"][len(base) :].rstrip("/") for c in page.get("CommonPrefixes", [])]
            found += [o["Key"][len(base) :] for o in page.get("Contents", [])]
        return found

    def listing(self, folder: str) -> dict[str, Entry]:
        base = self._base(folder)
        return {
            o["Key"][len(base) :]: Entry(
                int(o["Size"]), o["LastModified"].timestamp(), str(o.get("ETag", "")).strip('"')
            )
            for page in self._pages(base)
            for o in page.get("Contents", [])
        }

    def entries(self, folder: str) -> dict[str, Entry]:
        """The objects right below ``folder`` (not in sub-folders): a thousand a request."""
        base = self._base(folder)
        return {
            o["Key"][len(base) :]: Entry(
                int(o["Size"]), o["LastModified"].timestamp(), str(o.get("ETag", "")).strip('"')
            )
            for page in self._pages(base, delimiter="/")
            for o in page.get("Contents", [])
        }

    def clock(self) -> float:
        """S3's own time: the ``Date`` of its last answer, moved on by the monotonic clock
        for at most a second, else of a new HEAD."""
        if self._date is None or time.monotonic() - self._date[1] > 1.0:
            import botocore.exceptions as bx

            with contextlib.suppress(bx.ClientError):
                self._call(
                    lambda: self.client.head_object(Bucket=self.bucket, Key=self.key(SENTINEL))
                )
        if self._date is None:
            raise StoreError(f"store {self.url}: its answers carry no Date header")
        return self._date[0] + (time.monotonic() - self._date[1])

    def preflight(self) -> None:
        """Prove the store is usable before any warehouse query: one line if it is not."""
        self.put_if(
            SENTINEL, b"lead-recovery store: markers, extracts and leases live below\n", None
        )
