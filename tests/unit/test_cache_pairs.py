"""The kept pair (lead_recovery/cache.py): every state a kill can leave, settled right."""

from __future__ import annotations

import os
import random
import re

import pytest

from lead_recovery import atomic, cache
from lead_recovery.recipes import names_pattern


@pytest.fixture
def day(tmp_path):
    leads, marker, kept = tmp_path / "leads.parquet", tmp_path / "m.marker", tmp_path / ".kept"
    leads.write_bytes(b"old extract")
    marker.write_bytes(b'{"queried_at": "old"}')
    return leads, marker, kept


def test_keeping_is_a_hard_link_and_idempotent(day):
    leads, marker, kept = day
    first = cache.keep(leads, marker, kept)
    assert cache.keep(leads, marker, kept) == first
    assert os.path.samefile(first.leads, leads) and os.path.samefile(first.marker, marker)
    assert cache.kept(kept) == [first]


def test_an_incomplete_pair_is_not_kept(day):
    leads, marker, kept = day
    marker.unlink()
    assert cache.keep(leads, marker, kept) is None
    assert not kept.exists()


@pytest.mark.parametrize(
    "left",
    ["nothing", "extract only", "marker only", "new extract only"],
)
def test_settling_puts_the_kept_pair_back_whatever_a_kill_left(day, left):
    leads, marker, kept = day
    before = (leads.read_bytes(), marker.read_bytes(), leads.stat().st_mtime_ns)
    cache.keep(leads, marker, kept)
    leads.unlink()
    marker.unlink()  # what Snakemake does before the job runs
    if left == "extract only":
        leads.write_bytes(b"old extract")
    elif left == "marker only":
        marker.write_bytes(b"{}")
    elif left == "new extract only":
        leads.write_bytes(b"new, unmarked extract")

    assert cache.settle(leads, marker, kept) == "restored"

    assert (leads.read_bytes(), marker.read_bytes(), leads.stat().st_mtime_ns) == before
    assert not kept.exists()


def test_settling_a_complete_new_pair_only_drops_the_links(day):
    leads, marker, kept = day
    cache.keep(leads, marker, kept)
    atomic.write_bytes(leads, b"new extract")
    atomic.write_bytes(marker, b'{"queried_at": "new"}')

    assert cache.settle(leads, marker, kept) == "dropped"
    assert leads.read_bytes() == b"new extract" and not kept.exists()


def test_a_kept_entry_without_its_marker_is_ignored(day):
    leads, marker, kept = day
    older = cache.keep(leads, marker, kept)
    (kept / "99999999999999999999-unfinished.parquet").write_bytes(b"half kept")
    assert cache.kept(kept) == [older]


def test_the_newest_complete_kept_pair_wins(day):
    leads, marker, kept = day
    cache.keep(leads, marker, kept)
    atomic.write_bytes(leads, b"newer extract")
    atomic.write_bytes(marker, b'{"queried_at": "newer"}')
    os.utime(marker, ns=(10**19, 10**19))
    cache.keep(leads, marker, kept)
    leads.unlink()
    marker.unlink()
    cache.settle(leads, marker, kept)
    assert leads.read_bytes() == b"newer extract"


def test_temporary_files_are_created_exclusively_and_never_follow_a_symlink(tmp_path):
    target = tmp_path / "leads.parquet"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    for i in range(50):  # plant links at plausible temp names
        os.symlink(victim, tmp_path / f".leads.parquet.{i}.tmp")
    atomic.write_bytes(target, b"data")
    assert victim.read_text() == "keep me"
    assert target.read_bytes() == b"data" and not target.is_symlink()


@pytest.mark.parametrize("seed", range(20))
def test_the_recipe_name_pattern_matches_exactly_the_names(seed):
    rng = random.Random(seed)
    alphabet = "ab_.-1"
    names = sorted(
        {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(30)}
    )
    pattern = re.compile(f"(?:{names_pattern(names)})$")
    candidates = {
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(300)
    }
    for candidate in candidates | set(names):
        assert bool(pattern.match(candidate)) == (candidate in names), candidate
    assert re.compile(names_pattern([])).match("anything") is None


def test_settling_drops_a_dead_runs_entries_but_never_a_live_runs(day, monkeypatch):
    import multiprocessing

    leads, marker, kept = day
    dead = multiprocessing.Process(target=int)
    dead.start()
    dead.join()
    monkeypatch.setenv("LEAD_RECOVERY_RUN_ID", "killedrun")
    monkeypatch.setenv("LEAD_RECOVERY_RUN_PID", str(dead.pid))
    killed = cache.keep(leads, marker, kept)
    monkeypatch.setenv("LEAD_RECOVERY_RUN_ID", "liverun")
    monkeypatch.setenv("LEAD_RECOVERY_RUN_PID", str(os.getppid()))  # alive: our parent
    live = cache.keep(leads, marker, kept)
    monkeypatch.setenv("LEAD_RECOVERY_RUN_ID", "thisrun")
    monkeypatch.setenv("LEAD_RECOVERY_RUN_PID", str(os.getpid()))
    ours = cache.keep(leads, marker, kept)

    assert cache.settle(leads, marker, kept) == "dropped"

    assert not killed.marker.exists() and not ours.marker.exists()
    assert live.marker.exists() and live.leads.exists()  # run B never drops run A's
