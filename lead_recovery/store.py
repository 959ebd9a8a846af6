"""The few operations the coordination between runs needs from the shared ground.

Markers, extracts and leases live on a *store*: a folder (local disk, NFS)
or, later, an S3 prefix. Leases (lease.py) need exactly four things from it,
all of which S3 offers too (a conditional ``PutObject`` with
``If-None-Match: *`` is the create-if-absent), so the lease logic is written
once against this interface.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Protocol

from lead_recovery import atomic

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
