"""The day's lease (lead_recovery/lease.py): one holder, waiting, expiry, take-over."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lead_recovery import lease


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "markers" / "redshift_queried_a_20261127.marker"


def plant(marker, *, host, pid, expires_in_s, owner="ana@elsewhere", generation=1):
    where = lease.folder(marker)
    os.makedirs(where, exist_ok=True)
    now = datetime.now(UTC)
    record = {
        "owner": owner,
        "host": host,
        "pid": pid,
        "run_id": "feedfacecafe",
        "taken_at": now.isoformat(),
        "renewed_at": now.isoformat(),
        "expires_at": (now + timedelta(seconds=expires_in_s)).isoformat(),
        "released": False,
        "took_over": None,
    }
    path = f"{where}/{generation:08d}.lease"
    with open(path, "w") as handle:
        json.dump(record, handle)
    return path


def test_a_lease_names_its_owner_and_is_released_at_the_end(marker):
    with lease.held(marker, timeout_s=1) as held:
        now = lease.current(marker)
        assert lease.is_live(now) and now.pid == os.getpid() and "@" in now.owner
        assert held.holder.generation == 1
    assert not lease.is_live(lease.current(marker))
    assert lease.current(marker).released


def test_a_live_lease_elsewhere_makes_the_run_wait_then_give_up_naming_it(marker):
    plant(marker, host="other-host", pid=1, expires_in_s=60)
    said = []
    started = time.monotonic()
    who = r"ana@elsewhere \(pid 1, run feedfacecafe\)"
    with (
        pytest.raises(lease.LeaseTimeout, match=who),
        lease.held(marker, timeout_s=0.5, what="recipe a 20261127", say=said.append),
    ):
        pass
    assert 0.5 <= time.monotonic() - started < 5
    assert said and said[0].startswith("recipe a 20261127: waiting for ana@elsewhere")


def test_an_expired_lease_elsewhere_is_taken_over_saying_whose(marker):
    plant(marker, host="other-host", pid=1, expires_in_s=0.6)
    said = []
    started = time.monotonic()
    with lease.held(marker, timeout_s=10, what="recipe a", say=said.append) as held:
        assert time.monotonic() - started >= 0.5  # it waited for the expiry
        assert held.holder.generation == 2 and held.holder.took_over.startswith("ana@elsewhere")
    assert any("took over the expired lease of ana@elsewhere" in s for s in said)
    assert os.listdir(lease.folder(marker)) == ["00000002.lease"]  # the dead one is gone


def test_a_run_killed_on_this_host_is_taken_over_without_waiting_for_the_expiry(marker):
    dead = multiprocessing.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    plant(marker, host=socket.gethostname(), pid=dead.pid, expires_in_s=3600)
    started = time.monotonic()
    with lease.held(marker, timeout_s=0, say=lambda _: None) as held:
        assert held.holder.took_over
    assert time.monotonic() - started < 1


def test_a_run_whose_lease_was_taken_over_publishes_nothing(marker):
    with lease.held(marker, timeout_s=1, ttl_s=60) as held:
        plant(marker, host="other-host", pid=1, expires_in_s=60, generation=2)
        with pytest.raises(lease.LeaseLost, match="ana@elsewhere"):
            held.check()


def test_the_heartbeat_renews_the_lease_while_it_is_held(marker):
    with lease.held(marker, timeout_s=1, ttl_s=0.6) as held:
        first = lease.current(marker).expires_at
        deadline = time.monotonic() + 5
        while lease.current(marker).expires_at == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.current(marker).expires_at > first
        held.check()


@pytest.mark.parametrize("kind", ["garbage", "nested", "symlink", "fifo", "huge"])
def test_a_hostile_lease_file_holds_nothing_and_never_hangs(marker, tmp_path, kind):
    where = lease.folder(marker)
    os.makedirs(where)
    path = f"{where}/00000001.lease"
    if kind == "garbage":
        Path(path).write_text('{"owner": {"x": 1}}')
    elif kind == "nested":
        Path(path).write_text("[" * 100_000)
    elif kind == "symlink":
        os.symlink("/dev/zero", path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        Path(path).write_bytes(b" " * 10_000_000)
    started = time.monotonic()
    with lease.held(marker, timeout_s=0, say=lambda _: None) as held:
        assert held.holder.generation == 2
    assert time.monotonic() - started < 2


def _hold(marker: str, log: str) -> None:
    with lease.held(marker, timeout_s=30, say=lambda _: None):
        with open(log, "a") as handle:
            handle.write(f"in {os.getpid()} {time.monotonic()}\n")
        time.sleep(0.05)
        with open(log, "a") as handle:
            handle.write(f"out {os.getpid()} {time.monotonic()}\n")


def test_runs_started_together_hold_the_lease_one_at_a_time(marker, tmp_path):
    log = tmp_path / "holders.log"
    procs = [multiprocessing.Process(target=_hold, args=(str(marker), str(log))) for _ in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out"] * 8  # never two holders at once
