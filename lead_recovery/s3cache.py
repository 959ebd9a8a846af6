"""cache.py's guarantees on S3: a failed or killed re-query keeps the day's previous pair.

On a folder the day's complete pair is kept as hard links in
``results/<r>/<d>/.kept/``. On S3 the same entries are *server-side copies*
(``CopyObject``: no bytes through this host) under
``<prefix>/results/<r>/<d>/.kept/<id>.{parquet,marker}``, written extract
first and marker last, named with the run id so that a run settles only its
own entries. Snakemake deletes a storage output on S3 before it reruns the
job and after a failed job; these entries are what comes back.

Two more things are specific to S3, where Snakemake would upload a job's
outputs only after the job (and after its lease is released):

- the extract job uploads its new pair into ``.kept/`` itself, under the
  lease, and publishes it (server-side copies into place) before releasing
  the lease. Another run that waited for the lease finds the pair at once.
  Snakemake does not upload the outputs again (they are declared with
  ``retrieve=False``), so the extract is uploaded once, plus one
  server-side copy;
- a job that finds the day's pair gone (another run's Snakemake deleted it
  before its own job, having decided "missing" before this pair was
  published) but a kept pair that counts puts that back instead of querying.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lead_recovery import jobs
from lead_recovery.cache import ABANDONED_S
from lead_recovery.store import Entry, S3Store


@dataclass(frozen=True)
class Kept:
    """A kept pair on S3: store paths (local-layout paths under the prefix)."""

    leads: str
    marker: str


def _run_tag() -> str:
    return jobs.run_id() or "none"


def complete(store: S3Store, leads: str, marker: str) -> bool:
    return store.exists(leads) and store.exists(marker)


def kept(store: S3Store, directory: str) -> list[Kept]:
    """The complete kept pairs in ``directory``, newest first (one LIST)."""
    names = store.listing(directory)
    ids = sorted((n[: -len(".marker")] for n in names if n.endswith(".marker")), reverse=True)
    return [
        Kept(f"{directory}/{i}.parquet", f"{directory}/{i}.marker")
        for i in ids
        if f"{i}.parquet" in names
    ]


def _entry_id(when: float, tag: str, size: int) -> str:
    # newest first by name, like cache.py: the time leads, the run id ends it
    return f"{int(when * 1e9):020d}-{tag}-{size}-{_run_tag()}"


def keep(store: S3Store, leads: str, marker: str, directory: str) -> Kept | None:
    """Keep the day's complete pair by server-side copies (idempotent per run)."""
    info: Entry | None = store.stat(marker)
    if info is None or not store.exists(leads):
        return None
    name = _entry_id(info.mtime, info.etag[:12] or "x", info.size)
    entry = Kept(f"{directory}/{name}.parquet", f"{directory}/{name}.marker")
    if not store.exists(entry.marker):
        store.copy(leads, entry.leads)
        store.copy(marker, entry.marker)  # last: an entry without it is ignored
    return entry


def keep_new(store: S3Store, leads_file: Path, marker_file: Path, directory: str) -> Kept:
    """Upload a job's new pair (local files) into ``directory``: extract first, marker last."""
    name = _entry_id(time.time(), "new", marker_file.stat().st_size)
    entry = Kept(f"{directory}/{name}.parquet", f"{directory}/{name}.marker")
    store.upload(leads_file, entry.leads)
    store.upload(marker_file, entry.marker)
    return entry


def put_back(store: S3Store, entry: Kept, leads: str, marker: str) -> None:
    """Make ``entry`` the day's pair again: the extract first, the marker last."""
    store.copy(entry.leads, leads)
    store.copy(entry.marker, marker)


def settle(store: S3Store, leads: str, marker: str, directory: str) -> str | None:
    """End of a run: put the newest kept pair back if the day's pair is incomplete, then
    drop this run's entries (and abandoned ones a day old); as cache.settle.
    """
    names = store.listing(directory)
    if not names:
        return None
    outcome = "dropped"
    if not complete(store, leads, marker):
        entries = kept(store, directory)
        if entries:
            put_back(store, entries[0], leads, marker)
            outcome = "restored"
    ours, now = f"-{_run_tag()}.", time.time()
    for name, info in names.items():
        if ours in name or now - info.mtime > ABANDONED_S:
            store.delete(f"{directory}/{name}")
    return outcome


def discard(store: S3Store, directory: str) -> None:
    """Forget what was kept (``markers delete``: a deleted marker means a new query)."""
    store.delete_below(directory)
