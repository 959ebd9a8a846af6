"""The day's lease: which run may query a recipe's day now, and the fence of its commit.

Runs that share a store query a recipe's day once between them. The run
about to query takes the day's lease; the others wait for it, then find its
marker. A lease is one small object per day in the store
(``markers/.leases/<recipe>/<YYYYMMDD>.lease``), and every write to it is
conditional on the version its writer read (:meth:`Store.put_if`):

- taking a free lease writes the next *generation* over the version that
  was read, so of two runs that see it free exactly one wins;
- the holder renews it (a heartbeat every third of its life) over its own
  last version; a taker replaces it, so after a takeover every write of the
  old holder fails: it learns it lost the day at its next write;
- **the commit is such a write**: the holder records the day's new marker
  in the lease over its own version (:meth:`Lease.commit`). It succeeds only
  if no one took the day over, at the very moment of the write: a run that
  stalled (SIGSTOP, a suspended laptop, a hung NFS or S3 call) past its
  lease's life can never publish over the run that took over. A commit that
  a stall kept from reaching the marker is published by whoever takes the
  lease next (:attr:`Lease.inherited`).

**Expiry is judged by the store's clock only**: a lease is free once the
store's time now (:meth:`Store.clock`) is its life past the moment the store
wrote it (S3's ``LastModified``, a file's mtime), so two hosts' clocks are
never compared. A lease claims at most the reader's own ``lease_ttl``.
A dead holder frees it at once only when its pid is checked in the very
pid namespace of the same boot of the same host. Anything unreadable in a
lease (garbage, a huge pid, wrong types) is a foreign lease: live until it
expires, never a crash.
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
from datetime import UTC, datetime
from typing import Any

from lead_recovery import jobs, layout
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import Got, Store, StoreError, TooLarge

log = logging.getLogger("lead_recovery")

FORMAT = "lead-recovery lease 2"
DEFAULT_LIFE_S = 120.0
PID_MAX = 4_194_304  # Linux's PID_MAX_LIMIT: no larger pid exists anywhere


class LeaseTimeout(LeadRecoveryError):
    """Another run held the day's lease for longer than this run would wait."""


class LeaseLost(LeadRecoveryError):
    """Another run took the day over: this run's writes to it are refused."""


@dataclass(frozen=True)
class Identity:
    """Who holds a lease, as far as another process can tell."""

    owner: str  # user@host
    host: str
    pid: int
    run_id: str | None = None
    boot_id: str = ""  # /proc/sys/kernel/random/boot_id: the same boot of the same machine
    pid_ns: str = ""  # the pid namespace: a pid means something only inside it

    def describe(self) -> str:
        run = f", run {self.run_id[:12]}" if self.run_id else ""
        return f"{self.owner} (pid {self.pid}{run})"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read(100).strip()
    except (OSError, ValueError):
        return ""


def me() -> Identity:
    """This process."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return Identity(
        owner=jobs.user_at_host(),
        host=socket.gethostname(),
        pid=os.getpid(),
        run_id=jobs.run_id(),
        boot_id=_read_text("/proc/sys/kernel/random/boot_id"),
        pid_ns=pid_ns,
    )


@dataclass(frozen=True)
class Commit:
    """A day's marker as committed under a lease generation (its text, exactly)."""

    generation: int
    marker: str
    published: bool = False  # the marker file holds it (else the next taker publishes it)


@dataclass(frozen=True)
class State:
    """What the lease object says."""

    generation: int
    holder: Identity
    life_s: float
    released: bool = False
    beat: int = 0
    took_over: str | None = None
    commit: Commit | None = None


def render(state: State) -> bytes:
    record = asdict(state)
    record["format"] = FORMAT
    return json.dumps(record, sort_keys=True).encode()


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _str(value: Any, limit: int = 400) -> str | None:
    return value if isinstance(value, str) and len(value) <= limit else None


def parse(data: bytes) -> State | None:
    """The lease's state, or ``None`` when it is not one we can read (garbage: a
    foreign lease). Never raises: everything read from shared ground is untrusted."""
    if not data or len(data) > 64 * 1024:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    holder, commit = record.get("holder"), record.get("commit")
    generation = _int(record.get("generation"), 1, 2**53)
    life = record.get("life_s")
    if not isinstance(holder, dict) or generation is None:
        return None
    if isinstance(life, bool) or not isinstance(life, int | float) or not 0 < life < 1e9:
        return None
    owner, host = _str(holder.get("owner")), _str(holder.get("host"))
    pid = _int(holder.get("pid"), 0, 2**63)
    if owner is None or host is None or pid is None:
        return None
    identity = Identity(
        owner=owner,
        host=host,
        pid=pid,
        run_id=_str(holder.get("run_id")),
        boot_id=_str(holder.get("boot_id")) or "",
        pid_ns=_str(holder.get("pid_ns")) or "",
    )
    parsed_commit = None
    if isinstance(commit, dict):
        committed = _int(commit.get("generation"), 1, 2**53)
        text = _str(commit.get("marker"), 64 * 1024)
        if committed is not None and text is not None:
            parsed_commit = Commit(committed, text, commit.get("published") is True)
    return State(
        generation=generation,
        holder=identity,
        life_s=float(life),
        released=record.get("released") is True,
        beat=_int(record.get("beat"), 0, 2**53) or 0,
        took_over=_str(record.get("took_over")),
        commit=parsed_commit,
    )


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs here; an impossible pid never does."""
    if not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False
    return True


def judge(
    state: State | None,
    written: float,
    now: float,
    life_s: float,
    reader: Identity,
    alive: Callable[[int], bool] = pid_alive,
) -> str | None:
    """``None`` if the day is free to take, else who holds it (for the waiting line).

    ``written`` and ``now`` are both the store's time: the lease's last write and
    the present. The lease lives at most ``life_s`` (the reader's ``lease_ttl``)
    past its last write, less if it claimed less.
    """
    if state is None:  # unreadable: someone's, whose we cannot say
        return None if now - written >= life_s else "an unreadable lease"
    if state.released:
        return None
    if now - written >= min(state.life_s, life_s):
        return None
    holder = state.holder
    same_machine = (
        holder.host == reader.host
        and holder.boot_id
        and holder.boot_id == reader.boot_id
        and holder.pid_ns
        and holder.pid_ns == reader.pid_ns
    )
    if same_machine and not alive(holder.pid):
        return None  # killed on this very machine: no need to wait for its expiry
    return holder.describe()


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


class Lease:
    """A lease this process holds; renewed in the background until released."""

    def __init__(
        self, store: Store, path: str, state: State, etag: str, inherited: Commit | None
    ) -> None:
        self.store, self.path, self.state, self.etag = store, path, state, etag
        # a commit the previous holder made but could not publish: the taker's to publish
        self.inherited = inherited
        self.lost: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="lease")

    @property
    def generation(self) -> int:
        return self.state.generation

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.state.life_s / 3):
            try:
                self._write(replace(self.state, beat=self.state.beat + 1))
            except LeaseLost:
                return
            except OSError as err:  # a store hiccup: try again at the next beat
                log.warning("could not renew the lease %s: %s", self.store.location(self.path), err)

    def _write(self, state: State) -> None:
        """Replace our own version, or learn (and remember) that the day was taken."""
        with self._lock:
            if self.lost:
                raise LeaseLost(self.lost)
            etag = self.store.put_if(self.path, render(state), self.etag)
            if etag is None:
                self.lost = f"this run's lease expired and {self._taker()} took the day over"
                raise LeaseLost(self.lost)
            self.state, self.etag = state, etag

    def _taker(self) -> str:
        with contextlib.suppress(OSError, LeadRecoveryError):
            got = self.store.get(self.path)
            taker = parse(got.data) if got is not None else None
            if taker is not None:
                return taker.holder.describe()
        return "another run"

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another run has taken the day over."""
        self._write(replace(self.state, beat=self.state.beat + 1))

    def commit(self, marker: bytes) -> None:
        """The fence: record ``marker`` as the day's commit, only if this run still holds
        the day at that moment. Raises :class:`LeaseLost` (nothing recorded) if not."""
        self._write(replace(self.state, commit=Commit(self.generation, marker.decode())))

    def published(self) -> None:
        """The marker file now holds our commit: nothing left for a taker to publish."""
        if self.state.commit is not None:
            with contextlib.suppress(LeaseLost, OSError):
                self._write(replace(self.state, commit=replace(self.state.commit, published=True)))

    def release(self) -> None:
        self._stop.set()
        if self._beat.is_alive():
            self._beat.join()
        with contextlib.suppress(LeaseLost, OSError):
            self._write(replace(self.state, released=True))


# Waiting is a timed wait on an event no one sets, not time.sleep: a process whose
# clock is moved (faketime, a VM resuming) gets EINVAL from clock_nanosleep.
_pause = threading.Event()


def _look(store: Store, path: str) -> tuple[Got | None, State | None]:
    """The lease object and what it says; one too large to be a lease is garbage."""
    try:
        got = store.get(path)
    except TooLarge:
        found = store.version(path)
        return (Got(b"", found[0], found[1]) if found else None), None
    return got, (parse(got.data) if got is not None else None)


@contextlib.contextmanager
def held(
    store: Store,
    recipe: str,
    day: str,
    *,
    wait_s: float,
    life_s: float = DEFAULT_LIFE_S,
    what: str = "",
    last_generation: Callable[[], int] = lambda: 0,
    say: Callable[[str], None] = log.info,
    poll_s: float = 0.2,
) -> Iterator[Lease]:
    """Hold the day's lease for the ``with`` block, waiting up to ``wait_s`` for it.

    ``last_generation()`` is the generation of the day's marker, from which a lease
    that is missing or unreadable starts counting again. Raises
    :class:`LeaseTimeout` if another run holds the day longer.
    """
    path = layout.lease_path(recipe, day)
    reader = me()
    deadline = time.monotonic() + wait_s
    waited_for: str | None = None
    while True:
        got, old = _look(store, path)
        holder = None
        if got is not None:
            holder = judge(old, got.written, store.clock(), life_s, reader)
        if holder is None:
            base = old.generation if old is not None else last_generation()
            took_over = old.holder.describe() if old is not None and not old.released else None
            if got is not None and old is None:
                took_over = "an unreadable lease"
            inherited = old.commit if old is not None else None
            state = State(
                generation=base + 1,
                holder=reader,
                life_s=life_s,
                took_over=took_over,
                commit=inherited,
            )
            etag = store.put_if(path, render(state), got.etag if got is not None else None)
            if etag is None:
                continue  # another run took it first: look again
            if took_over:
                say(f"{what}: took over the expired lease of {took_over}")
            unpublished = inherited if inherited is not None and not inherited.published else None
            lease = Lease(store, path, state, etag, unpublished)
            break
        if time.monotonic() >= deadline:
            raise LeaseTimeout(
                f"{what}: {holder} has held the query lease for longer than this run waits "
                f"({wait_s:.0f} s; lock_timeout); lease {store.location(path)}"
            )
        if waited_for != holder:
            waited_for = holder
            renewed = _stamp(got.written) if got is not None else "?"
            say(
                f"{what}: waiting for {holder}, who is querying it now "
                f"(lease renewed {renewed}, up to {wait_s:.0f} s)"
            )
        _pause.wait(min(poll_s, max(0.0, deadline - time.monotonic())))
    lease._beat.start()
    try:
        yield lease
    finally:
        lease.release()


def current(store: Store, recipe: str, day: str) -> tuple[State | None, float | None]:
    """The day's lease as the store holds it, and when it was last written."""
    got, state = _look(store, layout.lease_path(recipe, day))
    return state, (got.written if got is not None else None)


def is_live(store: Store, recipe: str, day: str, life_s: float = DEFAULT_LIFE_S) -> bool:
    """Whether a run holds the day now (tests and the helper)."""
    got, state = _look(store, layout.lease_path(recipe, day))
    if got is None:
        return False
    return judge(state, got.written, store.clock(), life_s, me()) is not None


def live(store: Store, life_s: float = DEFAULT_LIFE_S) -> dict[tuple[str, str], State | None]:
    """Every day some run holds now, by (recipe, date): ``markers list``'s QUERYING NOW.

    Only leases written within their life are read (the listing gives each one's
    time): a store keeps one lease per day ever queried.
    """
    found: dict[tuple[str, str], State | None] = {}
    listed = store.listing(layout.LEASES)
    if not listed:
        return found
    now, reader = store.clock(), me()
    for name, entry in listed.items():
        parsed = layout.parse_lease_name(name)
        if parsed is None or now - entry.mtime >= life_s:
            continue
        try:
            got, state = _look(store, layout.lease_path(*parsed))
        except (StoreError, OSError):
            continue
        if got is not None and judge(state, got.written, now, life_s, reader) is not None:
            found[parsed] = state
    return found
