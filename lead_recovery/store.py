"""The few operations the coordination between runs needs from the shared ground.

Markers, extracts and leases live on a *store*: a folder (local disk, NFS)
or, later, an S3 prefix. Leases (lease.py) need exactly four things from it,
all of which S3 offers too (a conditional ``PutObject`` with
``If-None-Match: *`` is the create-if-absent), so the lease logic is written
once against this interface.
"""

from __future__ import annotations

import errno
import grp
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

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
