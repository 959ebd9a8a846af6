"""The few operations the coordination between runs needs from the shared ground.

Markers, extracts and leases live on a *store*: a folder (local disk, NFS)
or an S3 prefix (``store: s3://bucket/prefix``). Leases (lease.py) need
exactly five things from it, all of which S3 offers too (a conditional
``PutObject`` with ``If-None-Match: *`` is the create-if-absent), so the lease
logic is written once against this interface. On S3 a path of the local
layout (``results/markers/redshift_queried_x_20261127.marker``) is kept as
the key under the prefix, so the two stores hold the same tree.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lead_recovery import atomic
from lead_recovery.errors import LeadRecoveryError

SMALL = 64 * 1024  # leases and markers are a few hundred bytes; read no more than this


class Store(Protocol):
    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist; ``False`` if it did."""

    def read(self, path: str) -> bytes | None:
        """The content of a small object, ``None`` if it is absent or not a plain file."""

    def write(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically."""

    def delete(self, path: str) -> None:
        """Remove ``path``; absent is fine."""

    def names(self, folder: str) -> list[str]:
        """The entry names in ``folder`` (none if it is absent)."""


class LocalStore:
    """A folder on a filesystem every run can reach (one machine, or NFS)."""

    def create(self, path: str, data: bytes) -> bool:
        """Written in full beside ``path``, then hard-linked to it: ``link`` fails if
        anything (a symlink included) is there, and a reader never sees a torn file."""
        tmp = atomic.temp_beside(path)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, path: str) -> bytes | None:
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # a pipe or device planted on shared ground is not a lease
            return os.read(fd, SMALL + 1)[: SMALL + 1]
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        atomic.write_bytes(path, data)

    def delete(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def names(self, folder: str) -> list[str]:
        try:
            return os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []


def writable_folder(key: str, folder: Path) -> None:
    """A folder this run will write to: writable, or creatable under its nearest existing
    parent; else one line naming it. Read-only (dry runs call it too), and done while
    the workflow is parsed: before Snakemake lists the folder and before any query."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LeadRecoveryError(
            f"{key} {folder}/ cannot be created: {existing} is not a folder; nothing was run"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LeadRecoveryError(
            f"{key} {folder}/ is not writable by this user ({existing}/); nothing was run "
            "(store_group and store_umask: docs/operations.md)"
        )


def share(config: Mapping[str, object]) -> None:
    """Make what this process (and its jobs, which inherit the umask) creates shareable.

    Extracts hold names and phone numbers: by default (``store_umask: 007``)
    files are 660 and folders 770, for the team and nobody else. With
    ``store_group`` the top folders belong to that group and carry the setgid
    bit, so every file and folder below them does too, whoever creates it.
    """
    os.umask(int(str(config.get("store_umask") or "007"), 8))
    group = config.get("store_group")
    if not group:
        return
    try:
        gid = grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise LeadRecoveryError(f"store_group {group!r} is not a group on this machine") from None
    for key in ("results_dir", "marker_dir", "logs_dir"):
        folder = Path(str(config[key]))
        folder.mkdir(parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_gid == gid and info.st_mode & stat.S_ISGID:
            continue
        try:
            os.chown(folder, -1, gid)
            os.chmod(folder, stat.S_IMODE(info.st_mode) | stat.S_ISGID | 0o070)
        except PermissionError:
            raise LeadRecoveryError(
                f"store_group {group!r}: cannot give {folder}/ to that group "
                "(its owner, or root, must do it once: chgrp and chmod g+ws)"
            ) from None


# --------------------------------------------------------------------------- S3

_COPY_PART = 5 * 1024**3  # CopyObject's limit; larger objects are copied in parts
SENTINEL = ".lead-recovery-store"  # keeps the bucket from ever being empty (see preflight)
_T = TypeVar("_T")


class StoreError(LeadRecoveryError, OSError):
    """The store cannot be used (no bucket, no credentials, unreachable, denied).

    An ``OSError`` too, so a lease heartbeat treats a passing hiccup like a
    filesystem one and tries again at the next beat.
    """


class TooLarge(StoreError):
    """An object larger than the caller will read (:meth:`S3Store.get`)."""


@dataclass(frozen=True)
class Entry:
    """One object under a prefix: what a listing says, no GET needed."""

    size: int
    mtime: float  # LastModified, seconds since the epoch (S3's clock)
    etag: str


def _entry(listed: Mapping[str, Any]) -> Entry:
    """An object as a listing describes it."""
    etag = str(listed.get("ETag", "")).strip('"')
    return Entry(int(listed["Size"]), listed["LastModified"].timestamp(), etag)


def aws_region(session: Any) -> str | None:
    """The region the standard AWS settings name, for a boto3 ``session``.

    ``AWS_REGION`` first, as the AWS CLI and the other SDKs read it: boto3
    itself reads only ``AWS_DEFAULT_REGION`` and the profile's ``region``
    (what ``session.region_name`` holds), so without this a store whose
    region is set the usual way would be addressed as ``us-east-1``.
    """
    return os.environ.get("AWS_REGION", "").strip() or session.region_name or None


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``("bucket", "prefix")`` (the prefix may be empty)."""
    if not url.startswith("s3://"):
        raise LeadRecoveryError(f"store {url!r} must be s3://bucket/prefix")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise LeadRecoveryError(f"store {url!r} names no bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


class S3Store:
    """An S3 prefix every run reaches, on any host.

    Endpoint, region and credentials come only from the standard AWS settings
    (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``..._SECRET...``,
    ``AWS_PROFILE``, instance roles): nothing here reads, stores or prints a
    credential. The workflow hands Snakemake's S3 plugin the same region
    (:attr:`region`), the one setting the plugin does not take from them.
    Timeouts are short and retries few, so a wrong endpoint fails in seconds
    with one line instead of hanging the run.

    ``remember=True`` (the DAG build) lets :meth:`prefetch` list a folder once
    and answer :meth:`exists` and :meth:`listing` below it from memory, instead
    of a request per key; jobs never use it, they need the store as it is now.
    """

    def __init__(self, url: str, *, remember: bool = False) -> None:
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client: Any = None
        self._remember = remember
        self._listings: dict[str, dict[str, Entry]] = {}

    # -- keys and errors

    def key(self, path: str | Path) -> str:
        """The object key of a local-layout path: the path, under the prefix."""
        relative = str(path).lstrip("/")
        return posixpath.normpath(f"{self.prefix}/{relative}" if self.prefix else relative)

    def location(self, path: str | Path) -> str:
        """``s3://bucket/key`` of ``path``: what the user reads, and Snakemake's query."""
        return f"s3://{self.bucket}/{self.key(path)}"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # A job logs at DEBUG; botocore's debug lines carry the request headers
            # (the access key id, a session token): never let them reach a log.
            for name in ("boto3", "botocore", "s3transfer", "urllib3"):
                logging.getLogger(name).setLevel(logging.WARNING)

            session = boto3.session.Session()
            self._client = session.client(
                "s3",
                region_name=aws_region(session),
                config=Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # S3-compatible servers (MinIO, moto) need no trailing checksums
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    @property
    def region(self) -> str:
        """The region this store's requests are signed for (:func:`aws_region`)."""
        return str(self._call(lambda: self.client.meta.region_name))

    def _call(self, what: Callable[[], _T]) -> _T:
        """Run one S3 call; a failure the user must fix becomes one line naming the store."""
        import botocore.exceptions as bx

        try:
            return what()
        except bx.NoCredentialsError:
            cause = (
                "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or use an instance role)"
            )
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as err:
            cause = f"cannot reach the S3 endpoint ({err})"
        except bx.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
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
        raise StoreError(f"store {self.url}: {cause}") from None

    @staticmethod
    def _code(err: Exception) -> str:
        return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))

    # -- what the store has to offer (Store)

    def create(self, path: str, data: bytes) -> bool:
        """A conditional ``PutObject`` (``If-None-Match: *``): ``False`` if the key exists."""
        return self.put_if(path, data, None)

    def read(self, path: str) -> bytes | None:
        """A small object's first bytes (a bounded ranged GET); ``None`` if absent."""
        import botocore.exceptions as bx

        try:
            answer = self._call(
                lambda: self.client.get_object(
                    Bucket=self.bucket, Key=self.key(path), Range=f"bytes=0-{SMALL}"
                )
            )
        except bx.ClientError as err:
            code = self._code(err)
            if code in ("NoSuchKey", "404"):
                return None
            if code == "InvalidRange":  # an empty object
                return b""
            raise
        with answer["Body"] as body:
            return body.read(SMALL + 1)

    def get(self, path: str, limit: int) -> tuple[bytes, str] | None:
        """An object's bytes and ETag, ``None`` if absent; a larger object than ``limit``
        is not read (:class:`TooLarge`): what a conditional rewrite (:meth:`put_if`) needs."""
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
                raise TooLarge(f"store {self.location(path)}: more than {limit} bytes")
            return body.read(), str(answer.get("ETag", "")).strip('"')

    def put_if(self, path: str, data: bytes, etag: str | None) -> bool:
        """Replace ``path`` only if it is still at ``etag`` (``If-Match``), or create it only
        if absent (``etag=None``: ``If-None-Match: *``); ``False`` if another writer won."""
        import botocore.exceptions as bx

        condition = {"IfMatch": f'"{etag}"'} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self._call(
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=self.key(path), Body=data, **condition
                )
            )
        except bx.ClientError as err:
            if self._code(err) in (
                *("PreconditionFailed", "412", "ConditionalRequestConflict"),
                *("NoSuchKey", "404"),  # If-Match on a key deleted meanwhile
            ):
                return False
            raise
        return True

    def write(self, path: str, data: bytes) -> None:
        """``PutObject``: S3 replaces an object atomically (readers see old or new)."""
        self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=data)
        )

    def delete(self, path: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key(path)))

    def names(self, folder: str) -> list[str]:
        """Entry names right below ``folder``: objects and "sub-folders" (common prefixes)."""
        base = self.key(folder) + "/"
        found = []
        for page in self._pages(base, delimiter="/"):
            found += [c["Prefix"][len(base) :].rstrip("/") for c in page.get("CommonPrefixes", [])]
            found += [o["Key"][len(base) :] for o in page.get("Contents", [])]
        return found

    # -- what keeping a day's pair and the freshness decision need

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

    def listing(self, folder: str) -> dict[str, Entry]:
        """Every object below ``folder`` (at any depth), by its path relative to it."""
        base = self.key(folder) + "/"
        for known, entries in self._listings.items():
            if base.startswith(known):
                cut = len(base) - len(known)
                return {k[cut:]: e for k, e in entries.items() if k.startswith(base[len(known) :])}
        found = {
            o["Key"][len(base) :]: _entry(o)
            for page in self._pages(base)
            for o in page.get("Contents", [])
        }
        if self._remember:
            self._listings[base] = found
        return found

    def entries(self, folder: str) -> dict[str, Entry]:
        """The objects right below ``folder`` (not in sub-folders), by name, with what
        the listing says of each: a thousand per request, no GET."""
        base = self.key(folder) + "/"
        return {
            o["Key"][len(base) :]: _entry(o)
            for page in self._pages(base, delimiter="/")
            for o in page.get("Contents", [])
        }

    def prefetch(self, folder: str) -> None:
        """List ``folder`` once; later questions below it are answered from memory."""
        if self._remember:
            self.listing(folder)

    def stat(self, path: str) -> Entry | None:
        """Size, LastModified and ETag of ``path``, ``None`` if absent."""
        key = self.key(path)
        for known, entries in self._listings.items():
            if key.startswith(known):
                return entries.get(key[len(known) :])
        import botocore.exceptions as bx

        try:
            head = self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except bx.ClientError as err:
            if self._code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return Entry(
            int(head["ContentLength"]),
            head["LastModified"].timestamp(),
            str(head.get("ETag", "")).strip('"'),
        )

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def copy(self, source: str, target: str) -> None:
        """A server-side copy: no bytes through this host; in parts above 5 GB.

        No thread pool (boto3's managed copy has one): the end of a run settles
        the day's pair from an ``atexit`` handler, where new threads are refused.
        """
        src = {"Bucket": self.bucket, "Key": self.key(source)}
        dst = self.key(target)
        info = self.stat(source)
        if info is None or info.size <= _COPY_PART:
            self._call(lambda: self.client.copy_object(CopySource=src, Bucket=self.bucket, Key=dst))
            return
        upload = self._call(
            lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=dst)
        )["UploadId"]
        parts = []
        for number, start in enumerate(range(0, info.size, _COPY_PART), start=1):
            end = min(start + _COPY_PART, info.size) - 1
            part = self._call(
                lambda n=number, a=start, b=end: self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=dst,
                    UploadId=upload,
                    PartNumber=n,
                    CopySource=src,
                    CopySourceRange=f"bytes={a}-{b}",
                )
            )
            parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
        self._call(
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=dst, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        )

    def download(self, path: str, local: str | Path) -> None:
        """``path`` into the local file ``local``, which appears whole or not at all."""
        atomic.replace_with(
            local,
            lambda tmp: self._call(
                lambda: self.client.download_file(self.bucket, self.key(path), str(tmp))
            ),
        )

    def upload(self, local: str | Path, path: str) -> None:
        self._call(lambda: self.client.upload_file(str(local), self.bucket, self.key(path)))

    def delete_below(self, folder: str) -> None:
        """Remove every object below ``folder``."""
        for name in self.listing(folder):
            self.delete(f"{folder}/{name}")

    def preflight(self) -> None:
        """Prove the store is usable before any warehouse query: one line if it is not.

        Keeps the small object ``<prefix>/.lead-recovery-store``, so the bucket is
        never empty: the storage plugin deletes a bucket that a removal left
        empty, and Snakemake removes a job's outputs before rerunning it.
        """
        self.create(SENTINEL, b"lead-recovery store: markers, extracts and leases live below\n")


def open_store(config: Mapping[str, Any], *, remember: bool = False) -> LocalStore | S3Store:
    """The store the configuration names: ``store: s3://...``, else the local folders."""
    url = config.get("store")
    if url in (None, ""):
        return LocalStore()
    return S3Store(str(url), remember=remember)


def is_remote(store: object) -> bool:
    return isinstance(store, S3Store)
