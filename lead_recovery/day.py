"""What publishing a recipe's day means, written once for every store.

A day's pair in the store is its marker and the extract the marker names:

- each query's result is written once, under a name of its own
  (``<recipe>/<YYYYMMDD>/extracts/<query id>.parquet``), and never modified;
- it becomes the day's extract when the marker naming it is **committed**:
  recorded under the day's lease by a write that succeeds only if this run
  still holds the lease at that moment (:meth:`lease.Lease.commit`), then
  written to ``markers/redshift_queried_<recipe>_<YYYYMMDD>.marker``, never
  over a marker of a later lease generation.

So no run's failure, kill, stall or re-query can take a committed pair away
from the store: a failed query commits nothing, a run that lost its lease
commits nothing, and a re-query's result stands beside the one it replaces.
What a checkout reads (its ``results/<recipe>/<YYYYMMDD>/leads.parquet`` and
its copy of the marker) are copies made by :meth:`Day.link`: the outputs
Snakemake may delete are only ever those. With no ``store:`` the store is the
checkout's own results folder and its marker is the store's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lead_recovery import atomic, jobs, layout, markers
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.lease import Commit, Lease, LeaseLost
from lead_recovery.lease import current as current_lease
from lead_recovery.markers import Marker
from lead_recovery.store import Entry, Store, StoreError, clean

log = logging.getLogger("lead_recovery")

_POINT_TRIES = 50


def _refusal(err: OSError) -> str:
    """What a refused write says of the folder or store that refused it."""
    return {
        errno.ENOSPC: "has no space left",
        errno.EDQUOT: "is over its quota",
        errno.EROFS: "is read-only",
    }.get(err.errno or 0, "could not be written")


@dataclass(frozen=True)
class Pair:
    """What the store holds for a day: its marker (exact bytes) and the extract it names."""

    marker: Marker
    text: bytes
    etag: str
    extract: str  # the extract's store path
    present: bool  # whether that extract exists

    @property
    def generation(self) -> int:
        return marker_generation(self.marker)


@dataclass(frozen=True)
class Views:
    """A checkout's copies of a day's pair: what its analyses read, and Snakemake's outputs."""

    leads: Path
    marker: Path


def marker_generation(marker: Marker | None) -> int:
    """The lease generation that committed a marker (0: legacy, created by hand, unreadable)."""
    value = marker.record.get("generation") if marker is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def query_id(generation: int) -> str:
    """A name no other query of the day can have: when, which run, which generation."""
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = (jobs.run_id() or f"pid{os.getpid()}")[:12]
    return f"{when}-{run}-g{generation}"


class Day:
    """One recipe's day in one store."""

    def __init__(self, store: Store, recipe: str, date: str) -> None:
        self.store, self.recipe, self.date = store, recipe, date
        self.marker_path = markers.marker_path(layout.MARKERS, recipe, date)
        self.label = f"recipe {recipe} {date}"

    # -- reading

    def extract_of(self, marker: Marker, listed: Mapping[str, Entry] | None = None) -> str:
        """The store path of the extract ``marker`` names; a marker naming a path outside
        its own day (untrusted input) names nothing, so its day is queried again."""
        named = marker.record.get("extract")
        day_folder = f"{self.recipe}/{self.date}/"
        if named is not None:
            try:
                path = clean(str(named))
            except LeadRecoveryError:
                return f"{day_folder}{layout.EXTRACTS}/(invalid)"
            return (
                path
                if path.startswith(day_folder) and isinstance(named, str)
                else (f"{day_folder}{layout.EXTRACTS}/(invalid)")
            )
        adopted = layout.adopted_extract(self.recipe, self.date)
        if self._exists(adopted, listed):
            return adopted
        return layout.legacy_extract(self.recipe, self.date)

    def _exists(self, path: str, listed: Mapping[str, Entry] | None) -> bool:
        if listed is not None:
            return path[len(self.recipe) + 1 :] in listed
        return self.store.stat(path) is not None

    def read(self, listed: Mapping[str, Entry] | None = None) -> Pair | None:
        """The day's pair as the store holds it now (``None``: no marker).

        ``listed``: a listing of the recipe's folder, relative to it, that answers
        whether the extract exists without a request per day (the DAG's decisions).
        """
        got = self.store.get(self.marker_path)
        if got is None:
            return None
        marker = markers.parse_marker(Path(self.marker_path), got.data)
        extract = self.extract_of(marker, listed)
        return Pair(marker, got.data, got.etag, extract, self._exists(extract, listed))

    # -- committing

    def publish(self, lease: Lease, local_extract: Path, record: dict) -> Pair:
        """Write ``local_extract`` as this query's extract, commit its marker under
        ``lease`` (the fence), then make the marker the day's.

        Raises :class:`LeaseLost` when another run took the day over first: then
        nothing was committed and this query's extract is removed again. A store
        that refuses a write (a full disk, an I/O error) is one line naming it.
        """
        path = layout.extract_path(self.recipe, self.date, query_id(lease.generation))
        try:
            self.store.put_file(local_extract, path)
        except LeadRecoveryError:
            raise
        except OSError as err:  # a full disk, an I/O error: its temporary file is gone
            raise LeadRecoveryError(self._unwritten(err)) from None
        text = markers.render({**record, "extract": path, "generation": lease.generation})
        try:
            lease.commit(text)
        except LeaseLost:
            self._discard(path)
            raise
        except LeadRecoveryError:
            raise
        except OSError as err:  # the lease's new version was never renamed into place
            self._discard(path)
            raise LeadRecoveryError(self._unwritten(err)) from None
        try:
            self.point(text, lease.generation)
        except LeadRecoveryError:
            raise
        except OSError as err:  # committed under the lease: its next holder writes it out
            raise LeadRecoveryError(self._unwritten(err, committed=True)) from None
        lease.published()
        marker = markers.parse_marker(Path(self.marker_path), text)
        return Pair(marker, text, "", path, True)

    def _discard(self, path: str) -> None:
        """Remove this query's extract, which no marker ever named (best effort)."""
        with contextlib.suppress(StoreError, OSError):
            self.store.delete(path)

    def _unwritten(self, err: OSError, committed: bool = False) -> str:
        """One line for a store that refused a write of the day's commit (full, an I/O
        error): the store, why, and what became of the day."""
        cause = _refusal(err)
        became = (
            "its marker is committed and the next run of the day writes it"
            if committed
            else "nothing was published"  # the account adds that the previous pair stands
        )
        return (
            f"recipe '{self.recipe}' {self.date}: the store {self.store.url} {cause} "
            f"({err.strerror or type(err).__name__}); {became}"
        )

    def recommit(self, lease: Lease, pair: Pair, record: dict) -> Pair:
        """Commit a new marker for the extract the day already has (a source watermark
        confirmed it; ``markers create``): the same fence, no new extract."""
        text = markers.render({**record, "extract": pair.extract, "generation": lease.generation})
        lease.commit(text)
        self.point(text, lease.generation)
        lease.published()
        marker = markers.parse_marker(Path(self.marker_path), text)
        return Pair(marker, text, "", pair.extract, True)

    def roll_forward(self, lease: Lease) -> bool:
        """Publish the commit the previous holder made but never wrote out (it stalled or
        died between the two); ``True`` if there was one."""
        commit: Commit | None = lease.inherited
        if commit is None:
            return False
        self.point(commit.marker.encode(), commit.generation)
        lease.published()
        log.info("%s: published the marker another run committed before it stopped", self.label)
        return True

    def point(self, text: bytes, generation: int) -> None:
        """Make ``text`` the day's marker, never over one of a later generation."""
        for _ in range(_POINT_TRIES):
            got = self.store.get(self.marker_path)
            if got is not None:
                held = markers.parse_marker(Path(self.marker_path), got.data)
                if marker_generation(held) >= generation:
                    return  # this commit, published already, or a later one
            if self.store.put_if(self.marker_path, text, got.etag if got else None) is not None:
                return
        raise StoreError(f"{self.store.location(self.marker_path)}: could not be written")

    def clear_temporaries(
        self, views: Views, keep: Path | None = None, *, leased: bool = True
    ) -> int:
        """Remove what killed writers of this day left (:data:`atomic.TEMP_GLOB`): beside
        this checkout's copy (this run holds the checkout) and, when this run holds the
        day's lease (``leased``: every writer of them holds it), among the day's extracts
        on a folder store. ``keep``: this job's own temporary file. How many went."""
        folders = [views.leads.parent]
        extracts = self.store.local_path(f"{self.recipe}/{self.date}/{layout.EXTRACTS}")
        if extracts is not None and leased:
            folders.append(extracts)
        removed, kept = 0, os.path.abspath(keep) if keep is not None else None
        for folder in folders:
            for path in folder.glob(atomic.TEMP_GLOB):
                if os.path.abspath(path) == kept:
                    continue
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def settle(self, views: Views) -> Pair | None:
        """After this run's job of the day ended, whichever way: the day's marker is at
        least the last commit the lease records as published (a restore of an older
        copy, Snakemake's after a failed job, never outlives the run), and this
        checkout's copies are the store's pair. The day's pair, if it has one."""
        state, _ = current_lease(self.store, self.recipe, self.date)
        pair = self.read()
        commit = state.commit if state is not None else None
        behind = (
            pair is not None
            and pair.marker.format == "json"
            and commit is not None
            and commit.published
            and commit.generation > marker_generation(pair.marker)
        )
        if behind and commit is not None:  # never a marker someone deleted or spoiled
            self.point(commit.marker.encode(), commit.generation)
            pair = self.read()
        if pair is not None and pair.present:
            self.link(pair, views)
        self.clear_temporaries(views, leased=False)  # this run's job of the day has ended
        return pair

    def discard_marker(self) -> None:
        """``markers delete``: the next run of the day queries again (its extracts stay)."""
        self.store.delete(self.marker_path)

    # -- the checkout's copies

    def link(self, pair: Pair, views: Views, local: Path | None = None) -> None:
        """Make the checkout's copies those of ``pair``: the extract first, the marker last.

        On a folder store the extract is a hard link (no byte copied); with no
        ``store:`` the checkout's marker is the store's own and is left alone. On S3
        the extract is downloaded only when this checkout has no copy of this very
        pair (its marker copy is the pair's and its extract copy is there: this method
        writes them in that order). ``local``: this job's own result, the very file it
        just published: linked, never downloaded back.

        A checkout that cannot take its copies (a full disk, an I/O error) is one line
        naming its folder: the store's pair is untouched, and the next run makes them.
        """
        try:
            self._link(pair, views, local)
        except LeadRecoveryError:
            raise
        except OSError as err:
            raise LeadRecoveryError(
                f"recipe '{self.recipe}' {self.date}: this checkout's folder "
                f"{views.leads.parent} {_refusal(err)} "
                f"({err.strerror or type(err).__name__}); the store's extract and marker "
                "are intact and the next run makes this checkout's copies"
            ) from None

    def _link(self, pair: Pair, views: Views, local: Path | None) -> None:
        source = self.store.local_path(pair.extract)
        if local is not None:
            atomic.link_over(local, views.leads)
        elif source is not None:
            if not _same_file(source, views.leads):
                self.store.fetch(pair.extract, views.leads)
        elif not (views.leads.is_file() and _bytes(views.marker) == pair.text):
            self.store.fetch(pair.extract, views.leads)
        own = self.store.local_path(self.marker_path)
        if own is not None and _same_path(own, views.marker):
            return
        if _bytes(views.marker) != pair.text:
            atomic.write_bytes(views.marker, pair.text)

    def newest_extract(self, listed: Mapping[str, Entry]) -> str | None:
        """The day's newest extract in a listing of its recipe's folder (relative to it):
        queries' extracts are named by when they ran; else a legacy ``leads.parquet``."""
        prefix = f"{self.date}/{layout.EXTRACTS}/"
        named = sorted(
            rel
            for rel in listed
            if rel.startswith(prefix) and rel.endswith(".parquet") and "/" not in rel[len(prefix) :]
        )
        if named:
            return f"{self.recipe}/{named[-1]}"
        legacy = layout.legacy_extract(self.recipe, self.date)
        return legacy if legacy[len(self.recipe) + 1 :] in listed else None

    def adopt_legacy(self) -> bool:
        """A marker from before extracts had names of their own names the checkout's
        ``leads.parquet`` itself when the store is the checkout: link that extract where
        Snakemake's removal of the checkout's copy cannot reach it (once, before a job
        that may replace the day runs). ``True`` if it did."""
        pair = self.read()
        if pair is None or "extract" in pair.marker.record or not pair.present:
            return False
        if pair.extract != layout.legacy_extract(self.recipe, self.date):
            return False
        source = self.store.local_path(pair.extract)
        target = self.store.local_path(layout.adopted_extract(self.recipe, self.date))
        if source is None or target is None:
            return False  # on S3 nothing of a checkout's is in the store
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(source, target)
        return True


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _same_path(a: Path, b: Path) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
