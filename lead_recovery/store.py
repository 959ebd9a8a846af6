"""The store: where what a query paid for lives, and where runs coordinate.

A store is a folder (``store: /srv/lead-recovery``, on one machine or NFS) or
an S3 prefix (``store: s3://bucket/prefix``); with no ``store:`` it is the
checkout's own ``results_dir``. The layout below its root is the same on both
(``lead_recovery/layout.py``), and everything that reads or writes it goes
through the few operations of :class:`Store`, written once for each kind:

- ``get`` / ``put_if``: a small object with its version (an ETag) and a write
  that happens only if the object is still at the version the writer read
  (S3's ``If-Match`` / ``If-None-Match: *``; on a folder the same check made
  under a lock every writer of that folder takes). Leases and the commit of a
  day's pair are built on these, so no decision compares two hosts' clocks
  and no stale writer can overwrite a newer one (lease.py);
- ``put_file`` / ``fetch``: an extract, written once under a name of its own
  and never modified, and a checkout's copy of it (a hard link on a folder);
- ``clock``: the store's own time (S3's ``Date``; the time a file server
  stamps on a file written now), the only clock leases are judged by.

Paths are relative to the root, ``/``-separated, and never climb out of it.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from lead_recovery import atomic
from lead_recovery.errors import LeadRecoveryError

SMALL = 64 * 1024  # markers, leases, history lines: a few hundred bytes each
SENTINEL = ".lead-recovery-store"  # proves an S3 store usable, and keeps its bucket non-empty
LOCK_WAIT_S = (
    60.0  # a folder's write lock is held for milliseconds; a minute means a stopped writer
)
_T = TypeVar("_T")


class StoreError(LeadRecoveryError, OSError):
    """The store cannot be used (no bucket, no credentials, unreachable, denied, locked).

    An ``OSError`` too, so a lease heartbeat treats a passing hiccup like a
    filesystem one and tries again at the next beat.
    """


class TooLarge(StoreError):
    """An object larger than the caller will read."""


@dataclass(frozen=True)
class Entry:
    """One object as a listing (or a stat) describes it: no content read."""

    size: int
    mtime: float  # when the store wrote it, by the store's clock
    etag: str = ""


@dataclass(frozen=True)
class Got:
    """A small object's content and version, and when the store wrote it."""

    data: bytes
    etag: str
    written: float  # by the store's clock: S3's LastModified, a folder's mtime
    regular: bool = True  # False: a directory, pipe or link planted where an object was


class Store(Protocol):
    """What the day's operations, the leases, the helper and the history need."""

    url: str  # how the user names it: /srv/lead-recovery or s3://bucket/prefix

    def location(self, path: str) -> str:
        """``path`` as the user reads it (an absolute path, or ``s3://bucket/key``)."""

    def local_path(self, path: str) -> Path | None:
        """The file ``path`` is, on a folder store; ``None`` on S3."""

    def get(self, path: str, limit: int = SMALL) -> Got | None:
        """A small object, ``None`` if absent; :class:`TooLarge` above ``limit``."""

    def version(self, path: str) -> tuple[str, float] | None:
        """The version (for :meth:`put_if`) and write time of ``path`` without reading it,
        ``None`` if absent: how a reader replaces an object too large to read."""

    def put_if(self, path: str, data: bytes, etag: str | None) -> str | None:
        """Write ``data`` only if ``path`` is still at ``etag`` (``None``: only if it is
        absent); the new version, or ``None`` if another writer changed it first."""

    def put(self, path: str, data: bytes) -> None:
        """Replace ``path`` atomically, unconditionally (files no other run writes)."""

    def put_file(self, local: str | Path, path: str, replace: bool = False) -> None:
        """Write the local file ``local`` as the new object ``path``: never over an
        existing one (extracts are written once), unless ``replace``."""

    def fetch(self, path: str, local: str | Path) -> None:
        """Make ``local`` a copy of ``path`` (whole or not at all; a hard link if it can)."""

    def stat(self, path: str) -> Entry | None:
        """Size and time of ``path``, ``None`` if absent."""

    def delete(self, path: str) -> None:
        """Remove ``path``; absent is fine."""

    def names(self, folder: str) -> list[str]:
        """Entry names right below ``folder`` (objects and sub-folders); none if absent."""

    def listing(self, folder: str) -> dict[str, Entry]:
        """Every object below ``folder`` at any depth, by its path relative to it."""

    def entries(self, folder: str) -> dict[str, Entry]:
        """The entries right below ``folder`` with size and time (on a folder store also
        what is not a plain file: a reader of shared ground must see it to refuse it)."""

    def clock(self) -> float:
        """The store's time now (seconds since the epoch, by the store's clock)."""


def clean(path: str | Path) -> str:
    """A store path: relative, ``/``-separated, no ``.``/``..``/empty parts."""
    text = str(path)
    if (
        text
        and text[0] != "/"
        and "\\" not in text
        and "//" not in text
        and ".." not in text
        and "/./" not in text
        and not text.startswith("./")
        and not text.endswith(("/", "/."))
        and text != "."
    ):
        return text  # already clean: the everyday case, a thousand times a run
    parts = [p for p in PurePosixPath(text.replace("\\", "/")).parts if p not in ("", ".")]
    if not parts or parts[0] == "/" or ".." in parts:
        raise LeadRecoveryError(f"store path {str(path)!r} leaves the store's root")
    return "/".join(parts)


def etag_of(data: bytes) -> str:
    """A folder object's version: its content's hash (every write of ours differs)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# --------------------------------------------------------------------------- folder


class FolderStore:
    """A folder every run can reach (one machine, or NFS)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = str(self.root)
        self._clock: tuple[float, float] | None = None  # (store time, monotonic) of the probe

    def location(self, path: str) -> str:
        return str(self.root / clean(path))

    def local_path(self, path: str) -> Path | None:
        return self.root / clean(path)

    # -- small objects

    def get(self, path: str, limit: int = SMALL) -> Got | None:
        target = self.root / clean(path)
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            if err.errno == errno.ELOOP:  # a symlink planted on shared ground: not ours
                return Got(b"", f"link-{etag_of(str(target).encode())}", 0.0, regular=False)
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # a pipe, device or folder: never read
                return Got(b"", f"irregular-{info.st_ino}", info.st_mtime, regular=False)
            if info.st_size > limit:
                raise TooLarge(f"{self.location(path)}: more than {limit} bytes")
            data = _read_all(fd, limit)
        finally:
            os.close(fd)
        return Got(data, etag_of(data), info.st_mtime)

    def version(self, path: str) -> tuple[str, float] | None:
        target = self.root / clean(path)
        try:
            got = self.get(path)
        except TooLarge:
            info = os.lstat(target)
            return f"large-{info.st_ino}-{info.st_size}-{info.st_mtime_ns}", info.st_mtime
        return None if got is None else (got.etag, got.written)

    def _version(self, target: Path) -> str | None:
        found = self.version(str(target.relative_to(self.root)))
        return None if found is None else found[0]

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        """The lock every conditional writer of ``folder`` takes (``flock``: the kernel
        drops it with its holder, so a killed writer never leaves it behind)."""
        from filelock import FileLock, Timeout

        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / ".lock"), mode=0o666 & ~_umask())
        try:
            lock.acquire(timeout=LOCK_WAIT_S)
        except Timeout:
            raise StoreError(
                f"store {self.url}: {folder}/.lock has been held for {LOCK_WAIT_S:.0f} s "
                "(a writer stopped mid-write? it is released when that process ends or resumes)"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def put_if(self, path: str, data: bytes, etag: str | None) -> str | None:
        target = self.root / clean(path)
        with self._locked(target.parent):
            if self._version(target) != etag:
                return None
            tmp = _write_temp(target, data)
            try:
                if etag is None:
                    os.link(tmp, target)  # fails if anything appeared, a symlink included
                else:
                    os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return etag_of(data)

    def put(self, path: str, data: bytes) -> None:
        atomic.write_bytes(self.root / clean(path), data)

    # -- extracts

    def put_file(self, local: str | Path, path: str, replace: bool = False) -> None:
        target = self.root / clean(path)
        tmp = atomic.temp_beside(target)
        try:
            tmp.unlink()
            try:
                os.link(local, tmp)  # the same filesystem: no byte is copied
            except OSError:  # another filesystem, or one without hard links
                shutil.copyfile(local, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            if replace:
                os.replace(tmp, target)
                return
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise StoreError(
                    f"{self.location(path)} exists: extracts are written once"
                ) from None
        finally:
            tmp.unlink(missing_ok=True)

    def fetch(self, path: str, local: str | Path) -> None:
        atomic.link_over(self.root / clean(path), local)

    # -- listing

    def stat(self, path: str) -> Entry | None:
        try:
            info = os.stat(self.root / clean(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Entry(info.st_size, info.st_mtime)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self.root / clean(path))

    def names(self, folder: str) -> list[str]:
        base = self._folder(folder)
        try:
            return os.listdir(base) if base is not None else []
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _folder(self, folder: str) -> Path | None:
        """A folder to list: never through a symlink (on shared ground it may point
        anywhere)."""
        path = self.root / clean_or_root(folder)
        return None if path.is_symlink() else path

    def entries(self, folder: str) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        base = self._folder(folder)
        if base is None:
            return found
        try:
            with os.scandir(base) as listed:
                for entry in listed:
                    with contextlib.suppress(FileNotFoundError):
                        info = entry.stat(follow_symlinks=False)
                        found[entry.name] = Entry(info.st_size, info.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            pass
        return found

    def listing(self, folder: str) -> dict[str, Entry]:
        base = self._folder(folder)
        found: dict[str, Entry] = {}
        if base is None:
            return found
        for top, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(top, name)
                with contextlib.suppress(FileNotFoundError):
                    info = os.lstat(full)
                    if stat.S_ISREG(info.st_mode):
                        rel = os.path.relpath(full, base).replace(os.sep, "/")
                        found[rel] = Entry(info.st_size, info.st_mtime)
        return found

    def clock(self) -> float:
        """The time the file server stamps on a file written now.

        Written, never ``utime``'d: a write is stamped by the server (NFS) or the
        kernel, never by this process's clock (``faketime`` cannot move it).
        Reused for a tenth of a second, extrapolated by the monotonic clock.
        """
        if self._clock is not None and time.monotonic() - self._clock[1] < 0.1:
            return self._clock[0] + (time.monotonic() - self._clock[1])
        # One small file for every process: each one's own write stamps it with "now".
        probe = self.root / "markers" / ".leases" / ".clock"
        probe.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, b".")
            now = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
        self._clock = (now, time.monotonic())
        return now


def _read_all(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while chunk := os.read(fd, 65536):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _write_temp(target: Path, data: bytes) -> Path:
    tmp = atomic.temp_beside(target)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- S3

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


def clean_or_root(folder: str) -> str:
    """``folder`` as a store path, or ``""`` for the root itself."""
    text = str(folder).strip().strip("/")
    return "" if text in ("", ".") else clean(text)


# --------------------------------------------------------------------------- opening


def open_store(config: Mapping[str, Any], *, base: str | Path = ".") -> FolderStore | S3Store:
    """The store the configuration names: ``store:`` (an S3 prefix or a folder, relative
    to ``base``), else the checkout's own ``results_dir``."""
    url = config.get("store")
    if url in (None, ""):
        return FolderStore(Path(base) / str(config["results_dir"]))
    url = str(url)
    if url.startswith("s3://"):
        return S3Store(url)
    if "://" in url:
        raise LeadRecoveryError(f"store {url!r}: only folders and s3://bucket/prefix are stores")
    if ".." in Path(url).parts:
        raise LeadRecoveryError(f"store {url!r}: '..' may not appear in the store's folder")
    return FolderStore(Path(base) / url)


def is_checkout_store(config: Mapping[str, Any]) -> bool:
    """Whether the store is the checkout's own results folder (no ``store:``)."""
    return config.get("store") in (None, "")


def writable_folder(key: str, folder: Path) -> None:
    """A folder this run will write to: writable, or creatable under its nearest existing
    parent; else one line naming it. Read-only (dry runs call it too)."""
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


def shared_ground(config: Mapping[str, Any], base: str | Path = ".") -> list[Path]:
    """The folders a checkout writes on shared ground, for :func:`share`: its results
    and logs, and the store when it is a folder (with no ``store:``, its results)."""
    base = Path(base)
    folders = [base / str(config["results_dir"]), base / str(config["logs_dir"])]
    opened = open_store(config, base=base)
    if isinstance(opened, FolderStore):
        folders.append(opened.root)
    found: dict[str, Path] = {}
    for folder in folders:
        found.setdefault(os.path.abspath(folder), folder)
    return list(found.values())


def share(config: Mapping[str, object], folders: list[Path] | None = None) -> None:
    """Make what this process (and its jobs, which inherit the umask) creates shareable:
    every command that writes on shared ground calls it first, with the folders it
    writes below (:func:`shared_ground`; none: the umask alone).

    Extracts hold names and phone numbers: by default (``store_umask: 007``)
    files are 660 and folders 770, for the team and nobody else. With
    ``store_group`` the given top folders belong to that group and carry the
    setgid bit, so every file and folder below them does too, whoever creates it.
    """
    os.umask(int(str(config.get("store_umask") or "007"), 8))
    group = config.get("store_group")
    if not group:
        return
    try:
        gid = grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise LeadRecoveryError(f"store_group {group!r} is not a group on this machine") from None
    for folder in folders or []:
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
