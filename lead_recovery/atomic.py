"""Writing files so that a reader sees the old file or the whole new one.

Every file the workflow writes (extracts, markers, analyses, summaries, the
``latest.csv`` link, kept pairs) goes through here: the content is written to
a temporary file created exclusively (``O_EXCL``, never through a planted
symlink) beside the target, then renamed over it. A kill at any moment leaves
either the previous file or the new one, plus at worst a temporary file whose
name matches :data:`TEMP_GLOB`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
TEMP_GLOB = f".*{TEMP_SUFFIX}"  # the one temporary-file pattern (clean-up matches it)


def temp_beside(target: str | Path) -> Path:
    """A new, empty, exclusively created temporary file next to ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # what a plain open() would give, not mkstemp's 0600
    finally:
        os.close(fd)
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_with(target: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a fresh temporary file, then rename it over ``target``."""
    tmp = temp_beside(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: str | Path, data: bytes, mode: int | None = None) -> None:
    """``data`` into ``target``, flushed to disk before it takes the target's name."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)

    replace_with(target, write)


def link_over(source: str | Path, target: str | Path) -> None:
    """Make ``target`` the same file as ``source`` (a hard link; a copy where links fail).

    The bytes, and with a link the modification time too, stay exactly those
    of ``source``; that is what lets a kept extract come back byte for byte.
    """
    tmp = temp_beside(target)
    try:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or one without hard links
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
