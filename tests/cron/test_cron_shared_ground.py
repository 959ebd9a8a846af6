"""The cron clean-up on a folder shared between hosts: a writer on another host holds the
day's lease, so its extract in progress is never taken for a killed writer's leftovers.
"""

from __future__ import annotations

from pathlib import Path

from lead_recovery import cache, layout, markers
from tests.unit.test_leases import plant


def test_another_hosts_extract_in_progress_survives_the_clean_up(tmp_path):
    leads = Path(layout.leads_path(tmp_path / "results", "r", "20250514"))
    marker = Path(markers.marker_path(tmp_path / "markers", "r", "20250514"))
    day_dir = leads.parent
    day_dir.mkdir(parents=True)
    in_progress = day_dir / ".leads.parquet.0th3rh0st.tmp"
    in_progress.write_text("rows streaming in on etl-2")
    lease_file = plant(marker, host="etl-2", pid=1, expires_in_s=60)  # pid 1 there, not here

    assert cache.remove_dead_temporaries(leads, marker) == 0
    assert in_progress.exists()

    plant(marker, host="etl-2", pid=1, expires_in_s=-1)  # its heartbeat stopped: expired
    assert Path(lease_file).exists()
    assert cache.remove_dead_temporaries(leads, marker) == 1
    assert not in_progress.exists()
