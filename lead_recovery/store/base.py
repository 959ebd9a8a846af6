"""What every store is: its operations (:class:`Store`), what they return, its errors,
and its paths (relative to the root, ``/``-separated, never climbing out of it)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

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


def read_at_most(fd: int, limit: int) -> bytes:
    """All of an open file's bytes, or :class:`TooLarge` once more than ``limit`` came:
    a file on shared ground may be any size, whatever its ``stat`` said a moment ago."""
    chunks, total = [], 0
    while chunk := os.read(fd, 65536):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


def clean_or_root(folder: str) -> str:
    """``folder`` as a store path, or ``""`` for the root itself."""
    text = str(folder).strip().strip("/")
    return "" if text in ("", ".") else clean(text)


# --------------------------------------------------------------------------- opening
