"""A folder store: one machine, or NFS. Conditional writes are made under a lock file
every writer of the folder takes; the clock is the time the file server stamps."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from lead_recovery import atomic
from lead_recovery.store.base import (
    LOCK_WAIT_S,
    SMALL,
    Entry,
    Got,
    StoreError,
    TooLarge,
    clean,
    clean_or_root,
    etag_of,
    read_at_most,
)


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
            data = read_at_most(fd, limit)
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
