"""A forced re-query killed at any moment: the next run finds a complete pair.

Each trial forces a new query of a paid-for day (``ignore_redshift_marker``)
and SIGKILLs either the extract job alone (Snakemake lives on and fails the
job) or Snakemake with everything it started (its process group: a reboot,
an OOM kill, a closed terminal). Then a normal run must succeed without
querying and leave either the previous pair, byte for byte, or a new
complete pair (rows and bytes as its marker says), never a mix and never
nothing; the day's analysis must describe that extract, and no temporary file
of the killed writer may stay.

The kill moments are events, not random delays. The recipe's query runs on
the test server (PostgreSQL behind the Redshift shim) and takes a shared
advisory lock at its first row and again at the first row of its second
FETCH; the test holds those locks, so the query waits at the server exactly
where the test wants it:

- ``at_server``: the query arrived and waits for its first row (Snakemake has
  already deleted this checkout's copy of the extract; the store still has it);
- ``mid_stream``: the first batch is in the half-written temporary extract,
  the second FETCH waits;
- ``analysis`` (whole run only): the new pair is committed and the analysis
  waits on a FIFO, before the end of the run.

The narrower moments (between the commit and the marker, a taken-over commit)
are states that tests/unit/test_day_pairs.py puts the day in one by one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import psutil
import pyarrow.parquet as pq
import pytest

from lead_recovery.extract import query_tag

RECIPE = "held_leads"
DAY = "20250512"
FIRST_ROW, SECOND_FETCH = 731_001, 731_002  # advisory lock keys
BATCH = 1000
SQL = f"""\
-- Holds at its first row and at the first row of its second FETCH while
-- someone holds advisory lock {FIRST_ROW} or {SECOND_FETCH}; otherwise instant.
SELECT g AS lead_id, 'Lead ' || g AS name
FROM generate_series(1, {BATCH + 500}) AS g
WHERE :run_date::date IS NOT NULL
  AND CASE g
        WHEN 1 THEN pg_advisory_xact_lock_shared({FIRST_ROW})::text = ''
        WHEN {BATCH + 1} THEN pg_advisory_xact_lock_shared({SECOND_FETCH})::text = ''
        ELSE TRUE
      END
"""
ANALYZER = """\
from pathlib import Path

HOLD = Path(__file__).with_name("hold")  # a FIFO, only while a test holds the analysis


def analyze(leads, run_date):
    if HOLD.exists():
        HOLD.read_text()  # waits for a writer, and then for it to close
    return leads
"""
MOMENTS = {"snakemake": ["at_server", "mid_stream", "analysis"], "job": ["at_server", "mid_stream"]}


def wait_for(condition: Callable[[], object], what: str, proc, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds; fail if the run ends first or it never does."""
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextlib.contextmanager
def holding(pg_server, shim, *keys: int) -> Iterator[Callable[[int], bool]]:
    """Hold advisory locks ``keys`` in a session of our own; yields ``waiting(key)``:
    whether another session waits for that lock."""
    import redshift_connector

    env = pg_server.env(shim.port)
    conn = redshift_connector.connect(
        host=env["REDSHIFT_HOST"],
        port=int(env["REDSHIFT_PORT"]),
        database=env["REDSHIFT_DATABASE"],
        user=env["REDSHIFT_USER"],
        password=env["REDSHIFT_PASSWORD"],
        ssl=False,
    )
    conn.autocommit = True
    cursor = conn.cursor()
    for key in keys:
        cursor.execute(f"SELECT pg_advisory_lock({key})")

    def waiting(key: int) -> bool:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            f"AND objid = {key} AND NOT granted"
        )
        return cursor.fetchone()[0] > 0

    try:
        yield waiting
    finally:
        conn.close()  # releases the locks: a waiting query of a killed job ends at the server
        pg_server.terminate_backends(f"%{RECIPE}%")


def check_day(workflow, previous: dict[str, bytes]) -> str:
    """'previous' or 'new'; fails on anything else."""
    leads, marker = workflow.leads(RECIPE, DAY), workflow.marker(RECIPE, DAY)
    assert leads.is_file() and marker.is_file(), "the day's pair is gone"
    pair = {"leads": leads.read_bytes(), "marker": marker.read_bytes()}
    record = json.loads(pair["marker"])
    assert record["bytes"] == len(pair["leads"]), "marker and extract are from different queries"
    assert record["rows"] == pq.read_metadata(leads).num_rows == BATCH + 500
    summary = json.loads(workflow.summary(RECIPE, DAY).read_text())
    assert summary["rows_in"] == record["rows"], "the analysis is not of this extract"
    if pair == previous:
        return "previous"
    assert record["run_id"] != json.loads(previous["marker"])["run_id"]
    return "new"


def _extract_job(proc: psutil.Process) -> psutil.Process | None:
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any("redshift_extract" in part for part in child.cmdline()):
                return child
    return None


def _analysis_held(fifo) -> bool:
    """Whether the analysis opened the FIFO (a non-blocking writer then gets in)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return False
    os.close(fd)  # the analysis reads to the end and goes on, unless killed first
    return True


@pytest.mark.parametrize("victim", ["snakemake", "job"])
def test_killed_requery_leaves_a_complete_pair(bare_workflow, pg_server, shim, server_log, victim):
    workflow = bare_workflow
    config_file = workflow.root / "config/config.yaml"
    config_file.write_text(
        config_file.read_text().replace("batch_size: 100000", f"batch_size: {BATCH}")
    )
    folder = workflow.add_recipe(RECIPE, sql=SQL, analyzer=ANALYZER)
    base = {"recipe": RECIPE, "date": DAY, "warehouse": "redshift"}
    env = pg_server.env(shim.port)
    # the paid-for day: its pair (the first run after a kill makes its analysis)
    workflow.run("--until", "redshift_extract", config=base, env=env)
    day_dir = workflow.leads(RECIPE, DAY).parent

    outcomes = {}
    for moment in MOMENTS[victim]:
        previous = {
            "leads": workflow.leads(RECIPE, DAY).read_bytes(),
            "marker": workflow.marker(RECIPE, DAY).read_bytes(),
        }
        keys = {"at_server": [FIRST_ROW], "mid_stream": [SECOND_FETCH], "analysis": []}[moment]
        with holding(pg_server, shim, *keys) as waiting:
            if moment == "analysis":
                os.mkfifo(folder / "hold")
            proc = workflow.start(config={**base, "ignore_redshift_marker": True}, env=env)
            try:
                if moment == "at_server":
                    wait_for(lambda: waiting(FIRST_ROW), "the query at the server", proc)
                elif moment == "mid_stream":
                    wait_for(
                        lambda: waiting(SECOND_FETCH) and any(day_dir.glob(".leads.parquet.*.tmp")),
                        "the half-written extract",
                        proc,
                    )
                else:
                    wait_for(lambda: _analysis_held(folder / "hold"), "the analysis", proc)
                    assert (
                        json.loads(workflow.marker(RECIPE, DAY).read_text())["run_id"]
                        != (json.loads(previous["marker"])["run_id"])
                    )
                    assert len(list(day_dir.glob("extracts/*.parquet"))) >= 2  # beside the old
                if victim == "snakemake":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    job = _extract_job(psutil.Process(proc.pid))
                    assert job is not None, "no extract job to kill"
                    job.kill()
                proc.wait(timeout=60)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                (folder / "hold").unlink(missing_ok=True)
        if victim == "snakemake":
            assert proc.returncode == -signal.SIGKILL
            workflow.run("--unlock")  # what Snakemake tells a user to do after a kill
        else:
            assert proc.returncode not in (0, -signal.SIGKILL), "Snakemake did not see the kill"

        since = server_log.mark()
        after_kill = workflow.run(config=base, env=env)
        assert f"{RECIPE} {DAY} cached" in after_kill.output, f"{moment}: queried again"
        assert not server_log.declared(since, query_tag(RECIPE, DAY)), f"{moment}: queried again"
        outcomes[moment] = check_day(workflow, previous)
        if victim == "job":  # the run that saw its job die cleared what the job left
            assert not list(day_dir.glob(".*.tmp")), f"{moment}: a killed writer's file stayed"
        assert not list(day_dir.glob("extracts/.*.tmp")), f"{moment}: a half-written extract"
    expected = {"at_server": "previous", "mid_stream": "previous", "analysis": "new"}
    assert outcomes == {moment: expected[moment] for moment in MOMENTS[victim]}
