"""A run killed mid-query leaves a lease, never a forever-lock: the next run takes the
day over, says whose lease it took, and queries once; the killed run left no marker and
no partial extract.
"""

from __future__ import annotations

import os
import signal
import time

from lead_recovery import lease
from lead_recovery.store import FolderStore
from tests.core.test_shared_markers import SLOW_SQL

DAY = "20250512"


def test_a_run_killed_mid_query_is_taken_over_by_the_next_run(workflow):
    workflow.add_recipe("slow_count", sql=SLOW_SQL)
    config = {"recipe": "slow_count", "date": DAY}
    marker = workflow.marker("slow_count", DAY)
    store = FolderStore(workflow.root / "results")
    killed = workflow.start(config=config)
    deadline = time.monotonic() + 120
    while not lease.is_live(store, "slow_count", DAY):  # the extract job holds the lease
        assert killed.poll() is None and time.monotonic() < deadline, "never took the lease"
        time.sleep(0.05)
    holder, _ = lease.current(store, "slow_count", DAY)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(30)

    assert lease.current(store, "slow_count", DAY)[0] == holder  # left behind, not released
    assert not marker.exists() and not workflow.leads("slow_count", DAY).exists()
    day = workflow.leads("slow_count", DAY).parent
    assert not list(day.glob("extracts/*.parquet"))  # nothing published

    after = workflow.run(config=config)  # no --unlock: the killed run's lock is cleared

    assert after.queries == 1
    assert "removed the Snakemake lock a killed run left in this checkout" in after.output
    assert f"took over the expired lease of {holder.holder.describe()}" in after.output
    assert marker.is_file() and workflow.leads("slow_count", DAY).is_file()
    assert lease.current(store, "slow_count", DAY)[0].released
    leftovers = [p.name for p in day.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []  # the taker cleared what the killed writer left
