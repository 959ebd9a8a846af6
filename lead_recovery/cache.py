"""A day's cache (``leads.parquet`` + marker) that no failed or killed re-query can lose.

Snakemake deletes a job's outputs before it reruns the job, and again when the
job fails. A forced re-query of a day that is already cached (a flag, a TTL,
an SQL edit, ``--forcerun``) would therefore lose the extract that was paid
for as soon as the new query failed or was killed. So before such a job runs,
the workflow *keeps* the complete pair: hard links (no copy, same bytes, same
times) in ``results/<r>/<d>/.kept/``. Whoever comes next *settles* the day:

- the pair is complete (the new query succeeded, or nothing ran): the kept
  links are dropped;
- it is not (the query failed, the job or Snakemake was killed): the newest
  kept pair is put back, byte for byte, then dropped.

A kept entry is ``<id>.parquet`` then ``<id>.marker`` (marker last), so a kill
while keeping leaves an entry without a marker, which is ignored. The id
starts with the marker's mtime (newest wins) and ends with the run id and its
main process (``run@host:pid``): a run settles its own entries and those of
runs that are gone (dead on this host, or a day old), so run B ending never
drops what a live run A kept for a query A has not run yet. Everything
that changes a day's pair does it under the day's query lock, which is shared
by every checkout that shares the marker folder: the day's lease (lease.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lead_recovery import atomic, jobs, lease

ABANDONED_S = 24 * 3600  # a killed run's kept entries: dropped by whoever settles next day
STALE_TEMP_S = 6 * 3600  # a temporary file untouched this long is no one's work in progress


@dataclass(frozen=True)
class Kept:
    leads: Path
    marker: Path


@contextlib.contextmanager
def day_lock(
    marker: str | Path, timeout: float, ttl_s: float = lease.DEFAULT_TTL_S, what: str = ""
) -> Iterator[lease.Lease]:
    """Hold the day's lease; raises :class:`lease.LeaseTimeout` after ``timeout`` s."""
    with lease.held(marker, timeout_s=timeout, ttl_s=ttl_s, what=what or Path(marker).name) as held:
        yield held


def temporaries(leads: str | Path, marker: str | Path) -> list[Path]:
    """What a killed writer of this pair left (:data:`atomic.TEMP_GLOB`).

    Only the holder of the day's lease may remove them: every writer of the
    pair holds it, on every host sharing the store, so under the lease none is
    work in progress.
    """
    leads, marker = Path(leads), Path(marker)
    return [
        *leads.parent.glob(f".{leads.name}.*{atomic.TEMP_SUFFIX}"),
        *marker.parent.glob(f".{marker.name}.*{atomic.TEMP_SUFFIX}"),
    ]


def complete(leads: str | Path, marker: str | Path) -> bool:
    return os.path.isfile(leads) and os.path.isfile(marker)


def kept(directory: str | Path) -> list[Kept]:
    """The complete kept pairs in ``directory``, newest first."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    base = Path(directory)
    ids = sorted(
        (n[: -len(".marker")] for n in names if n.endswith(".marker")),
        reverse=True,
    )
    return [
        Kept(base / f"{i}.parquet", base / f"{i}.marker")
        for i in ids
        if (base / f"{i}.parquet").is_file()
    ]


def keep(leads: str | Path, marker: str | Path, directory: str | Path) -> Kept | None:
    """Keep the complete pair ``leads`` + ``marker`` (idempotent); ``None`` if incomplete."""
    if not complete(leads, marker):
        return None
    info = os.stat(marker)  # never read: a marker on shared ground may be a pipe
    owner = f"{jobs.run_id() or 'none'}@{jobs.run_owner()}"
    name = f"{info.st_mtime_ns:020d}-{info.st_ino}-{info.st_size}-{owner}"
    entry = Kept(Path(directory) / f"{name}.parquet", Path(directory) / f"{name}.marker")
    if not entry.marker.is_file():
        atomic.link_over(leads, entry.leads)
        atomic.link_over(marker, entry.marker)
    return entry


def put_back(entry: Kept, leads: str | Path, marker: str | Path) -> None:
    """Make ``entry`` the day's pair again: the extract first, the marker last."""
    atomic.link_over(entry.leads, leads)
    atomic.link_over(entry.marker, marker)


def settle(leads: str | Path, marker: str | Path, directory: str | Path) -> str | None:
    """End of a run: put the kept pair back if the day's pair is incomplete, then drop
    this run's entries (another run's may still be needed by its own query).

    Returns ``"restored"`` when a kept pair was put back, ``"dropped"`` when the
    kept links were no longer needed, ``None`` when nothing was kept.
    """
    if not os.path.isdir(directory):
        return None
    outcome = "dropped"
    if not complete(leads, marker):
        entries = kept(directory)
        if entries:
            put_back(entries[0], leads, marker)
            outcome = "restored"
    ours, now = f"-{jobs.run_id() or 'none'}@", time.time()
    for entry in Path(directory).iterdir():
        with contextlib.suppress(OSError):
            if ours in entry.name or _abandoned(entry, now):
                entry.unlink()
    with contextlib.suppress(OSError):
        os.rmdir(directory)  # only when empty
    return outcome


def _abandoned(entry: Path, now: float) -> bool:
    """Kept by a run that is gone: dead on this host, or a day old anywhere."""
    owner = entry.stem.rsplit("@", 1)[-1] if "@" in entry.stem else ""
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not lease.pid_alive(int(pid)):
        return True
    return now - entry.lstat().st_ctime > ABANDONED_S


def discard(directory: str | Path) -> None:
    """Forget what was kept (``markers delete``: a deleted marker means a new query)."""
    shutil.rmtree(directory, ignore_errors=True)


def remove_dead_temporaries(leads: str | Path, marker: str | Path) -> int:
    """Remove the temporary files (:data:`atomic.TEMP_GLOB`) killed writers left of a
    day; how many. Never work in progress: those of the extract and the marker only
    when no live lease holds the day (every writer of the pair holds it, on every
    host sharing the store), the day's others (analysis, summary: written
    without it, maybe by another host) once untouched for :data:`STALE_TEMP_S`.
    """
    leads, marker, removed = Path(leads), Path(marker), 0
    pair = temporaries(leads, marker)
    if pair:
        with contextlib.suppress(lease.LeaseTimeout), day_lock(marker, timeout=0):
            for path in pair:
                path.unlink(missing_ok=True)
                removed += 1
    for path in leads.parent.glob(atomic.TEMP_GLOB):
        with contextlib.suppress(OSError):
            if time.time() - path.lstat().st_mtime > STALE_TEMP_S:
                path.unlink()
                removed += 1
    return removed
