"""A killed writer's temporary files on a store folder shared between hosts.

The next extract job of the day removes them (cron does not), and only while it
holds the day's lease, which every writer of the day holds while it writes: an
extract another host is writing now is never taken for a killed writer's leftovers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lead_recovery import config as lr_config
from lead_recovery import extract, layout, lease, recipes
from lead_recovery.day import Views
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import FolderStore

REPO = Path(__file__).resolve().parents[2]
R, D = "simulation_to_handoff", "20250514"
LIFE = 60.0


def _lease_of_another_host(store: FolderStore, *, age_s: float) -> None:
    """etl-2 holds the day's lease, last renewed ``age_s`` ago by the store's clock."""
    holder = lease.Identity("etl@etl-2", "etl-2", 1, "feedfacecafe", "boot-x", "ns-x")
    path = store.local_path(layout.lease_path(R, D))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lease.render(lease.State(generation=1, holder=holder, life_s=LIFE)))
    written = time.time() - age_s
    os.utime(path, (written, written))


def test_another_hosts_extract_in_progress_survives_the_clean_up(tmp_path, monkeypatch):
    config = {**lr_config.load(REPO), "lock_timeout": "1s"}
    recipe = recipes.load(REPO / "recipes", R)
    store = FolderStore(tmp_path / "store")
    views = Views(tmp_path / "checkout" / "leads.parquet", tmp_path / "checkout" / "day.marker")
    extracts = store.local_path(f"{R}/{D}/{layout.EXTRACTS}")
    extracts.mkdir(parents=True)
    in_progress = extracts / ".20250514T060000Z-feedfacecafe-g1.parquet.0th3rh0st.tmp"
    in_progress.write_text("rows streaming in on etl-2")
    attempts: list[int] = []  # the lease generation each attempt held (no warehouse here)

    def attempt(job, held, pair, before):
        attempts.append(held.generation)
        return {"outcome": "cached"}

    monkeypatch.setattr(extract._Job, "attempt", attempt)

    def job() -> dict:
        return extract.run_job(
            config, recipe=recipe, run_date=D, views=views, forced_on_command_line=False,
            store=store,
        )  # fmt: skip

    _lease_of_another_host(store, age_s=0)  # etl-2 is writing the day now
    with pytest.raises(LeadRecoveryError, match=r"etl@etl-2 \(pid 1.*has held the query lease"):
        job()
    assert in_progress.exists() and attempts == []

    _lease_of_another_host(store, age_s=LIFE + 5)  # its heartbeat stopped: etl-2 died
    assert job() == {"outcome": "cached"}
    assert attempts == [2], "taken over, then the attempt"
    assert not in_progress.exists()
