"""A forced re-query killed at any moment: the next run finds a complete pair.

Each trial forces a new query of a paid-for day (``ignore_redshift_marker``)
and kills it with SIGKILL at a random moment: either the extract job alone
(Snakemake lives on and fails the job) or Snakemake with everything it
started (its process group: a reboot, an OOM kill, a closed terminal). Then a
normal run must succeed and leave either the previous pair, byte for byte, or
a new complete pair (rows and bytes as its marker says), never a mix and
never nothing; and the day's analysis must describe that extract.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time

import psutil
import pyarrow.parquet as pq
import pytest

RECIPE = "simulation_to_handoff"
DAY = "20250512"
BASE = {"recipe": RECIPE, "date": DAY}
TRIALS = 10


def check_day(workflow, previous: dict[str, bytes]) -> str:
    """'previous' or 'new'; fails on anything else."""
    leads, marker = workflow.leads(RECIPE, DAY), workflow.marker(RECIPE, DAY)
    assert leads.is_file() and marker.is_file(), "the day's pair is gone"
    pair = {"leads": leads.read_bytes(), "marker": marker.read_bytes()}
    record = json.loads(pair["marker"])
    assert record["bytes"] == len(pair["leads"]), "marker and extract are from different queries"
    assert record["rows"] == pq.read_metadata(leads).num_rows
    summary = json.loads(workflow.summary(RECIPE, DAY).read_text())
    assert summary["rows_in"] == record["rows"], "the analysis is not of this extract"
    if pair == previous:
        return "previous"
    assert record["run_id"] != json.loads(previous["marker"])["run_id"]
    return "new"


def _extract_job(proc: psutil.Process) -> psutil.Process | None:
    for child in proc.children(recursive=True):
        try:
            if any("redshift_extract" in part for part in child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.parametrize("victim", ["snakemake", "job"])
def test_killed_requery_leaves_a_complete_pair(workflow, victim):
    rng = random.Random(f"{victim}-20250512")
    workflow.run(config=BASE)
    outcomes = []
    for trial in range(TRIALS):
        previous = {
            "leads": workflow.leads(RECIPE, DAY).read_bytes(),
            "marker": workflow.marker(RECIPE, DAY).read_bytes(),
        }
        proc = workflow.start(config={**BASE, "ignore_redshift_marker": True})
        if victim == "snakemake":
            time.sleep(rng.uniform(0.3, 3.5))
            with contextlib.suppress(ProcessLookupError):  # or it had already finished
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            workflow.run("--unlock")  # what Snakemake tells a user to do after a kill
        else:
            parent, job, deadline = psutil.Process(proc.pid), None, time.monotonic() + 60
            while job is None and proc.poll() is None and time.monotonic() < deadline:
                job = _extract_job(parent)
                time.sleep(0.01)
            if job is not None:
                time.sleep(rng.uniform(0.0, 0.6))
                with contextlib.suppress(psutil.NoSuchProcess):
                    job.kill()
            proc.wait(timeout=60)
        after_kill = workflow.run(config=BASE)
        assert f"{RECIPE} {DAY} cached" in after_kill.output, f"trial {trial} queried again"
        outcomes.append(check_day(workflow, previous))
        assert not list(workflow.root.glob("results/**/.kept")), f"trial {trial}: not settled"
    assert "previous" in outcomes or "new" in outcomes
    print(f"{victim}: {outcomes}")
