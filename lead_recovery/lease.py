"""The claim on a recipe-day's query: a lease, not a lock that outlives its owner.

Runs that share a store (two checkouts, cron and a person, hosts sharing a
folder or an S3 prefix) must query a recipe's day once between them. The
run about to query takes the day's lease; the others wait for it and then
find its marker. A lease names its owner (``user@host``, pid, run id), is
renewed by a heartbeat while the query runs, and expires when the
heartbeat stops: a run killed with ``SIGKILL`` mid-query blocks the day only
until its lease expires (at once on its own host, where the dead pid is
seen), and the next run says whose lease it took over.

On the store a lease is a folder of *generations*: ``00000001.lease``,
``00000002.lease``... The newest one is the lease. Taking it means creating
the next generation with create-if-absent (a hard link on a filesystem, a
conditional ``PutObject`` on S3), so of two runs that both see an expired
lease exactly one wins. Releasing rewrites the owner's own generation as
``released``; it is never deleted while it is the newest, which is what
keeps the generation numbers from restarting under a waiting run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lead_recovery import jobs
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import LocalStore, Store

log = logging.getLogger("lead_recovery")

LEASES = ".leases"
SUFFIX = ".lease"
DEFAULT_TTL_S = 120.0


class LeaseTimeout(LeadRecoveryError):
    """Another run held the day's lease for longer than this run would wait."""


class LeaseLost(LeadRecoveryError):
    """Our lease expired and another run took the day over: publish nothing."""


@dataclass(frozen=True)
class Holder:
    """What one generation of a lease says."""

    owner: str  # user@host
    host: str
    pid: int
    run_id: str | None
    generation: int
    taken_at: str
    renewed_at: str
    expires_at: str
    released: bool = False
    took_over: str | None = None  # the owner whose expired lease this one replaced

    def describe(self) -> str:
        run = f", run {self.run_id[:12]}" if self.run_id else ""
        return f"{self.owner} (pid {self.pid}{run})"

    def expiry(self) -> datetime:
        return datetime.fromisoformat(self.expires_at)


def folder(marker: str | Path) -> str:
    """Where the lease of the day whose marker is ``marker`` lives: beside the markers."""
    marker = Path(marker)
    return str(marker.parent / LEASES / marker.name)


def _now() -> datetime:
    # The real clock, never LEAD_RECOVERY_NOW: a pinned clock would never expire a lease.
    return datetime.now(UTC)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def is_live(holder: Holder | None, now: datetime | None = None) -> bool:
    """Whether ``holder`` still holds the day: not released, not expired, owner not dead."""
    if holder is None or holder.released:
        return False
    try:
        if (now or _now()) >= holder.expiry():
            return False
    except (TypeError, ValueError):
        return False
    # A run killed on this host is seen dead at once: no need to wait for the expiry.
    return holder.host != socket.gethostname() or pid_alive(holder.pid)


def _generations(store: Store, where: str) -> list[int]:
    found = []
    for name in store.names(where):
        stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else ""
        if stem.isdigit() and len(stem) == 8:
            found.append(int(stem))
    return sorted(found)


def _path(where: str, generation: int) -> str:
    return f"{where}/{generation:08d}{SUFFIX}"


def _parse(data: bytes | None, generation: int) -> Holder | None:
    """A generation's holder; ``None`` for a hostile or broken file (it holds nothing)."""
    if not data or len(data) > 4096:
        return None
    try:
        record = json.loads(data)
        holder = Holder(**{**record, "generation": generation})
        if not isinstance(holder.pid, int) or not isinstance(holder.expires_at, str):
            return None
        holder.expiry()
        return holder
    except (ValueError, TypeError, RecursionError):
        return None


def current(marker: str | Path, store: Store | None = None) -> Holder | None:
    """The newest generation of the day's lease (live or not), if any."""
    store = store or LocalStore()
    where = folder(marker)
    generations = _generations(store, where)
    if not generations:
        return None
    return _parse(store.read(_path(where, generations[-1])), generations[-1])


def live(marker_dir: str | Path, store: Store | None = None) -> dict[str, Holder]:
    """Every live lease under ``marker_dir``, by the name of the marker it is for."""
    store = store or LocalStore()
    found = {}
    for name in store.names(f"{marker_dir}/{LEASES}"):
        holder = current(Path(marker_dir) / name, store)
        if is_live(holder):
            found[name] = holder
    return found


def _render(holder: Holder) -> bytes:
    record = asdict(holder)
    record.pop("generation")
    return json.dumps(record, sort_keys=True).encode()


class Lease:
    """A lease this process holds; renewed in the background until released."""

    def __init__(self, store: Store, where: str, holder: Holder, ttl_s: float) -> None:
        self.store, self.where, self.holder, self.ttl_s = store, where, holder, ttl_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="lease")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except LeaseLost as err:
                self.lost = str(err)
                return
            except OSError as err:  # a store hiccup: try again at the next beat
                log.warning("could not renew the lease %s: %s", self.where, err)

    def renew(self) -> None:
        self.check()
        now = _now()
        self.holder = replace(
            self.holder,
            renewed_at=now.isoformat(timespec="seconds"),
            expires_at=(now + timedelta(seconds=self.ttl_s)).isoformat(timespec="seconds"),
        )
        self.store.write(_path(self.where, self.holder.generation), _render(self.holder))

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another run has taken the day over."""
        if self.lost:
            raise LeaseLost(self.lost)
        newest = _generations(self.store, self.where)
        if newest and newest[-1] > self.holder.generation:
            taker = _parse(self.store.read(_path(self.where, newest[-1])), newest[-1])
            who = taker.describe() if taker else "another run"
            raise LeaseLost(f"this run's lease expired and {who} took the day over")

    def release(self) -> None:
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        with contextlib.suppress(LeaseLost, OSError):
            self.check()
            self.holder = replace(self.holder, released=True)
            self.store.write(_path(self.where, self.holder.generation), _render(self.holder))


def _take(store: Store, where: str, generation: int, ttl_s: float, took_over: str | None) -> Lease:
    now = _now()
    host = socket.gethostname()
    holder = Holder(
        owner=jobs.user_at_host(),
        host=host,
        pid=os.getpid(),
        run_id=jobs.run_id(),
        generation=generation,
        taken_at=now.isoformat(timespec="seconds"),
        renewed_at=now.isoformat(timespec="seconds"),
        expires_at=(now + timedelta(seconds=ttl_s)).isoformat(timespec="seconds"),
        took_over=took_over,
    )
    if not store.create(_path(where, generation), _render(holder)):
        raise FileExistsError(generation)
    for old in _generations(store, where):
        if old < generation:  # the newest generation is never deleted (see the module doc)
            store.delete(_path(where, old))
    return Lease(store, where, holder, ttl_s)


@contextlib.contextmanager
def held(
    marker: str | Path,
    *,
    timeout_s: float,
    ttl_s: float = DEFAULT_TTL_S,
    what: str = "",
    store: Store | None = None,
    say: Callable[[str], None] = log.info,
    poll_s: float = 0.2,
) -> Iterator[Lease]:
    """Hold the day's lease for the ``with`` block, waiting up to ``timeout_s`` for it.

    ``what`` names the day in what the user reads ("recipe foo 20261127").
    Raises :class:`LeaseTimeout` if another run holds it longer.
    """
    store = store or LocalStore()
    where = folder(marker)
    deadline = time.monotonic() + timeout_s
    waited_for: str | None = None
    while True:
        generations = _generations(store, where)
        newest = generations[-1] if generations else 0
        holder = _parse(store.read(_path(where, newest)), newest) if newest else None
        if not is_live(holder):
            took_over = None
            if holder is not None and not holder.released:
                took_over = holder.describe()
            try:
                lease = _take(store, where, newest + 1, ttl_s, took_over)
            except FileExistsError:
                continue  # another run took it first: look again
            if took_over:
                say(f"{what}: took over the expired lease of {took_over}")
            break
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"{what}: {holder.describe()} has held the query lease for longer than "
                f"this run waits ({timeout_s:.0f} s; lock_timeout); lease {where}"
            )
        if waited_for != holder.describe():
            waited_for = holder.describe()
            say(
                f"{what}: waiting for {waited_for}, who is querying it now "
                f"(lease renewed {holder.renewed_at}, up to {timeout_s:.0f} s)"
            )
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    lease._beat.start()
    try:
        yield lease
    finally:
        lease.release()
