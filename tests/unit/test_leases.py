"""The day's lease (lead_recovery/lease.py) on a folder store: one holder, waiting,
expiry judged by the store's clock only, take-over, the fence, hostile lease files.

The S3 store runs the same code (tests/s3/test_s3_leases.py checks it at a server).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import replace

import pytest

from lead_recovery import layout, lease
from lead_recovery.store import FolderStore

R, D = "a", "20261127"
LIFE = 60.0


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


def plant(store, state: lease.State | None, *, age_s: float = 0.0, raw: bytes | None = None):
    """A lease written ``age_s`` ago by the store's clock (the file server's stamp)."""
    path = store.local_path(layout.lease_path(R, D))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw if raw is not None else lease.render(state))
    written = time.time() - age_s
    os.utime(path, (written, written))
    return path


def elsewhere(pid: int = 1, **changes) -> lease.State:
    holder = lease.Identity("ana@elsewhere", "other-host", pid, "feedfacecafe", "boot-x", "ns-x")
    return lease.State(**{"generation": 1, "holder": holder, "life_s": LIFE, **changes})


def quiet(_: str) -> None:
    pass


def test_a_lease_names_its_owner_and_is_released_at_the_end(store):
    with lease.held(store, R, D, wait_s=1, life_s=LIFE) as held:
        now, _ = lease.current(store, R, D)
        assert now.holder.pid == os.getpid() and "@" in now.holder.owner
        assert held.generation == 1 and lease.is_live(store, R, D, LIFE)
    assert not lease.is_live(store, R, D, LIFE)
    assert lease.current(store, R, D)[0].released
    assert layout.lease_path(R, D).endswith(".lease")  # a lease is never named like a marker


def test_a_live_lease_elsewhere_makes_the_run_wait_then_give_up_naming_it(store):
    plant(store, elsewhere())
    said: list[str] = []
    started = time.monotonic()
    who = r"ana@elsewhere \(pid 1, run feedfacecafe\)"
    with (
        pytest.raises(lease.LeaseTimeout, match=who),
        lease.held(store, R, D, wait_s=0.5, life_s=LIFE, what="recipe a", say=said.append),
    ):
        pass
    assert 0.5 <= time.monotonic() - started < 5
    assert said and said[0].startswith("recipe a: waiting for ana@elsewhere")


def test_an_expired_lease_is_taken_over_saying_whose(store):
    plant(store, elsewhere(generation=4), age_s=LIFE + 1)
    said: list[str] = []
    with lease.held(store, R, D, wait_s=0, life_s=LIFE, what="recipe a", say=said.append) as held:
        assert held.generation == 5 and held.state.took_over.startswith("ana@elsewhere")
    assert any("took over the expired lease of ana@elsewhere" in s for s in said)


def test_expiry_is_the_stores_time_since_the_last_write_whatever_the_lease_claims():
    """Neither the holder's clock nor a claimed life of years can keep the day: the
    store's stamp of the last write and the reader's lease_ttl decide."""
    reader = lease.me()
    forever = elsewhere(life_s=1e8)  # "expires in 2099"
    assert (
        lease.judge(forever, written=1000.0, now=1000.0 + LIFE, life_s=LIFE, reader=reader) is None
    )
    assert lease.judge(forever, written=1000.0, now=1000.0 + LIFE - 1, life_s=LIFE, reader=reader)
    short = elsewhere(life_s=5.0)  # a lease may claim less than the reader's life
    assert lease.judge(short, written=1000.0, now=1006.0, life_s=LIFE, reader=reader) is None


def test_a_dead_pid_frees_the_day_at_once_only_in_the_same_boot_and_pid_namespace():
    reader = lease.me()
    dead = 4_000_000  # no such process here
    same = replace(
        elsewhere(pid=dead),
        holder=lease.Identity("me@here", reader.host, dead, None, reader.boot_id, reader.pid_ns),
    )
    assert lease.judge(same, 0.0, 1.0, LIFE, reader) is None  # dead here: free
    other_ns = replace(same, holder=replace(same.holder, pid_ns="pid:[1]"))
    assert lease.judge(other_ns, 0.0, 1.0, LIFE, reader)  # a container sharing the name
    other_boot = replace(same, holder=replace(same.holder, boot_id="another-boot"))
    assert lease.judge(other_boot, 0.0, 1.0, LIFE, reader)  # the pid of an earlier boot
    alive = replace(same, holder=replace(same.holder, pid=os.getpid()))
    assert lease.judge(alive, 0.0, 1.0, LIFE, reader)


@pytest.mark.parametrize(
    "record",
    [
        {"pid": 10**30},
        {"pid": "42"},
        {"holder": "ana"},
        {"generation": "2"},
        {"life_s": "forever"},
        {"format": "something else"},
    ],
    ids=[
        "huge pid",
        "pid as text",
        "holder as text",
        "generation as text",
        "life as text",
        "format",
    ],
)
def test_garbage_in_a_lease_is_a_foreign_lease_never_a_crash(store, record):
    good = json.loads(lease.render(elsewhere()))
    if "pid" in record:
        good["holder"]["pid"] = record["pid"]
    else:
        good.update(record)
    plant(store, None, raw=json.dumps(good).encode())
    with (
        pytest.raises(lease.LeaseTimeout, match="an unreadable lease"),
        lease.held(store, R, D, wait_s=0, life_s=LIFE, say=quiet),
    ):
        pass
    plant(store, None, raw=json.dumps(good).encode(), age_s=LIFE + 1)
    with lease.held(store, R, D, wait_s=0, life_s=LIFE, say=quiet) as held:
        assert held.state.took_over == "an unreadable lease"


@pytest.mark.parametrize("kind", ["garbage", "nested", "symlink", "fifo", "huge"])
def test_a_hostile_lease_file_never_hangs_and_is_replaced_once_expired(store, kind):
    path = store.local_path(layout.lease_path(R, D))
    path.parent.mkdir(parents=True)
    if kind == "garbage":
        path.write_text('{"owner": {"x": 1}}')
    elif kind == "nested":
        path.write_text("[" * 100_000)
    elif kind == "symlink":
        os.symlink("/dev/zero", path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(b" " * 10_000_000)
    if kind != "symlink":
        os.utime(path, (time.time() - LIFE - 1,) * 2)
    started = time.monotonic()
    with lease.held(store, R, D, wait_s=0, life_s=LIFE, say=quiet) as held:
        assert held.generation == 1
    assert time.monotonic() - started < 2
    assert lease.current(store, R, D)[0].released


def test_after_a_take_over_the_old_holder_can_neither_renew_nor_commit(store):
    with lease.held(store, R, D, wait_s=1, life_s=LIFE) as held:
        got = store.get(layout.lease_path(R, D))
        taker = replace(elsewhere(), generation=held.generation + 1)
        assert store.put_if(layout.lease_path(R, D), lease.render(taker), got.etag)
        with pytest.raises(lease.LeaseLost, match="ana@elsewhere"):
            held.commit(b'{"marker": 1}')
        with pytest.raises(lease.LeaseLost):
            held.check()
    state, _ = lease.current(store, R, D)
    assert (
        state.holder.owner == "ana@elsewhere" and not state.released
    )  # left as the taker wrote it
    assert state.commit is None


def test_the_heartbeat_rewrites_the_lease_while_it_is_held(store):
    with lease.held(store, R, D, wait_s=1, life_s=0.6) as held:
        first = lease.current(store, R, D)[0].beat
        deadline = time.monotonic() + 5
        while lease.current(store, R, D)[0].beat == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.current(store, R, D)[0].beat > first
        held.check()


def _hold(root: str, log: str) -> None:
    with lease.held(FolderStore(root), R, D, wait_s=30, life_s=LIFE, say=quiet):
        with open(log, "a") as handle:
            handle.write(f"in {os.getpid()} {time.monotonic()}\n")
        time.sleep(0.05)
        with open(log, "a") as handle:
            handle.write(f"out {os.getpid()} {time.monotonic()}\n")


def test_runs_started_together_hold_the_lease_one_at_a_time(store, tmp_path):
    log = tmp_path / "holders.log"
    procs = [
        multiprocessing.Process(target=_hold, args=(str(store.root), str(log))) for _ in range(8)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out"] * 8  # never two holders at once
    assert lease.current(store, R, D)[0].generation == 8
