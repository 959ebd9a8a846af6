"""A run that crosses midnight keys everything to the date it started with.

The clock of the real processes is moved with Debian's ``faketime``, by a
fixed offset so that every process of the run shares one running fake clock:
the run starts at 23:59:40 and its analysis job waits until that clock has
passed midnight before it finishes. (The monotonic clock is left alone, and
the copy's files are dated before the fake "now", so Snakemake sees no skew.)
"""

import json
import os
import shutil
from datetime import UTC, datetime

import pytest

ANALYZER = """
    import select
    import time
    from datetime import datetime

    def analyze(leads, run_date):
        deadline = time.monotonic() + 90
        while datetime.now().date() <= run_date and time.monotonic() < deadline:
            select.select([], [], [], 0.1)  # time.sleep fails under faketime
        out = leads.head(1).copy()
        out["seen_at"] = datetime.now().isoformat()
        return out
"""


@pytest.mark.skipif(shutil.which("faketime") is None, reason="make test installs faketime")
def test_run_crossing_midnight_keeps_its_start_date(workflow):
    workflow.add_recipe(
        "late_night",
        sql="SELECT lead_id FROM leads WHERE created_at::date = :run_date::date",
        meta={"output_columns": ["lead_id", "seen_at"]},
        analyzer=ANALYZER,
    )

    past = datetime(2025, 5, 11, tzinfo=UTC).timestamp()
    for path in workflow.root.rglob("*"):
        os.utime(path, (past, past), follow_symlinks=False)
    start = datetime(2025, 5, 12, 23, 59, 40, tzinfo=UTC)
    offset = int(datetime.now(UTC).timestamp() - start.timestamp())

    workflow.run(
        config={"recipe": "late_night", "timezone": "UTC"},
        env={"TZ": "UTC", "DONT_FAKE_MONOTONIC": "1"},
        prefix=["faketime", "-f", f"-{offset}"],
    )

    summary = json.loads(workflow.summary("late_night", "20250512").read_text())
    assert summary["decided_at"].startswith("2025-05-12T23:59")
    seen_at = workflow.analysis("late_night", "20250512").read_text().splitlines()[1]
    assert seen_at.split(",")[1].startswith("2025-05-13")  # the job ran after midnight
    assert workflow.marker("late_night", "20250512").is_file()
    assert not workflow.marker("late_night", "20250513").exists()
    assert not (workflow.root / "results/late_night/20250513").exists()
    assert (
        workflow.latest("late_night").resolve()
        == workflow.analysis("late_night", "20250512").resolve()
    )
