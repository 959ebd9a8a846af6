"""Two checkouts sharing one store folder, running every recipe at once (issue 22).

What a query paid for lives in the store, and each checkout's analyses are its
own: so two checkouts running at the same moment query each recipe-day once
between them, and neither run can fail on the other's files. Then the same
two checkouts under faults: runs started at random moments, sometimes one
forcing a re-query, one of them SIGKILLed or SIGSTOPped past its lease's life
(then resumed) at a random moment. After every trial each recipe-day has a
complete pair (its extract is what its marker records), every run that was
not killed exited 0, and the next run in either checkout queries nothing.

The fault test prints its seed (in every failure message too);
``LEAD_RECOVERY_FAULT_SEED=<seed>`` replays it and ``LEAD_RECOVERY_FAULT_TRIALS=N``
runs more trials (``make test``: 10). Trials run in batches of two, each batch a
test of its own, so that the test workers run them side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import workflow_with_warehouse
from tests.support.workflow import TRIALS, RunResult, WorkflowCopy

SQL_RECIPE, CSV_RECIPE = "simulation_to_handoff", "manual_leads"
LIFE_S = 2  # lease_ttl: a stall of 3 s outlives it
# Trials come in batches of two, each batch a test of its own: xdist runs them side by side.
BATCH = 2
TOGETHER_BATCHES = (max(10, TRIALS) + BATCH - 1) // BATCH
FAULT_TRIALS = max(10, int(os.environ.get("LEAD_RECOVERY_FAULT_TRIALS", "10")))
FAULT_BATCHES = (FAULT_TRIALS + BATCH - 1) // BATCH
SEED = int(os.environ.get("LEAD_RECOVERY_FAULT_SEED") or random.SystemRandom().randrange(10**9))


@pytest.fixture
def checkouts(tmp_path, demo_warehouse_file) -> tuple[WorkflowCopy, WorkflowCopy, Path]:
    store = tmp_path / "store"
    pair = []
    for name in ("a", "b"):
        copy = workflow_with_warehouse(tmp_path / name, demo_warehouse_file)
        config = copy.root / "config/config.yaml"
        settings = yaml.safe_load(config.read_text())
        settings.update(store=str(store), lease_ttl=f"{LIFE_S}s")
        config.write_text(yaml.safe_dump(settings))
        pair.append(copy)
    return pair[0], pair[1], store


def start(copy: WorkflowCopy, *args: str):
    """A run in its own process group, its output in a file (a test may stop it)."""
    out = copy.root / f"run-{time.monotonic_ns()}.out"
    return copy.start(*args, output=out), out


def finished(proc, out: Path, timeout: float = 180) -> RunResult:
    proc.wait(timeout=timeout)
    return RunResult(proc.returncode, out.read_text(errors="replace"))


def complete_pair(store: Path, day: str) -> dict:
    """The day's committed marker, checked against the extract it names."""
    marker = store / "markers" / f"redshift_queried_{SQL_RECIPE}_{day}.marker"
    record = json.loads(marker.read_text())
    extract = store / record["extract"]
    assert extract.stat().st_size == record["bytes"], f"{day}: extract and marker disagree"
    assert pq.read_metadata(extract).num_rows == record["rows"], f"{day}: rows disagree"
    return record


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch", range(TOGETHER_BATCHES))
def test_two_checkouts_running_every_recipe_at_once_query_each_day_once(checkouts, batch):
    a, b, store = checkouts
    for trial in range(batch * BATCH, (batch + 1) * BATCH):
        day = f"2025{5 + trial // 28:02d}{1 + trial % 28:02d}"
        runs = [start(copy, "--config", f"date={day}") for copy in (a, b)]
        results = [finished(*run) for run in runs]

        for result in results:
            assert result.returncode == 0, f"trial {trial}:\n{result.output[-4000:]}"
        lines = [
            line for result in results for line in result.account or []
            if line.startswith(f"{SQL_RECIPE} {day} ")
        ]  # fmt: skip
        assert sum(" queried (" in line for line in lines) == 1, (trial, lines)
        assert sum(" cached (" in line for line in lines) == 1, (trial, lines)
        record = complete_pair(store, day)
        for copy in (a, b):  # each checkout's own analysis of the one extract
            summary = json.loads(copy.summary(SQL_RECIPE, day).read_text())
            assert summary["rows_in"] == record["rows"]
            assert copy.analysis(CSV_RECIPE, day).is_file()
        assert not (store / SQL_RECIPE / day / "analysis.csv").exists()  # never in the store


@pytest.mark.timeout(300)
@pytest.mark.parametrize("batch", range(FAULT_BATCHES))
def test_runs_under_random_kills_and_stalls_leave_every_day_complete(checkouts, batch):
    a, b, store = checkouts
    seed = SEED
    print(f"fault test seed: {seed} (LEAD_RECOVERY_FAULT_SEED={seed} replays it)")
    for trial in range(batch * BATCH, min((batch + 1) * BATCH, FAULT_TRIALS)):
        rng = random.Random(seed * 1000 + trial)
        day = f"2025{6 + trial // 28:02d}{1 + trial % 28:02d}"
        plan = {
            "forced": rng.random() < 0.3,  # the second run forces a re-query
            "delay": rng.uniform(0.0, 2.0),  # before the second run starts
            "victim": rng.choice([0, 1]),
            "fault": rng.choice(["SIGKILL", "SIGSTOP"]),
            "at": rng.uniform(0.3, 5.0),  # after the victim started
        }
        where = f"seed {seed} trial {trial} {plan}"
        first = start(a, "--config", f"date={day}")
        time.sleep(plan["delay"])
        second_args = ["--config", f"date={day}"]
        if plan["forced"]:
            second_args.append("ignore_redshift_marker=true")
        second = start(b, *second_args)
        runs = [first, second]
        victim = runs[plan["victim"]][0]
        time.sleep(max(0.0, plan["at"] - (plan["delay"] if plan["victim"] == 0 else 0.0)))
        if plan["fault"] == "SIGKILL":
            _signal(victim, signal.SIGKILL)
        else:
            _signal(victim, signal.SIGSTOP)
            time.sleep(LIFE_S + 1)  # past its lease's life
            _signal(victim, signal.SIGCONT)
        results = [finished(*run) for run in runs]

        for index, result in enumerate(results):
            killed = plan["fault"] == "SIGKILL" and index == plan["victim"]
            if not killed or result.returncode != -signal.SIGKILL:
                assert result.returncode == 0, f"{where}:\n{result.output[-4000:]}"
        record = complete_pair(store, day)
        last = trial % BATCH == BATCH - 1
        for copy in (a, b):  # the next run of that day in either checkout queries nothing
            again = copy.run(*([] if last else ["-n"]), config={"date": day})  # a plan, or a run
            assert again.queries == 0, f"{where}:\n{again.output[-4000:]}"
            if last:  # with this checkout's copy of that pair, whatever happened to it
                copy_bytes = copy.leads(SQL_RECIPE, day).read_bytes()
                assert copy_bytes == (store / record["extract"]).read_bytes(), where
        assert record == complete_pair(store, day), f"{where}: the next runs moved the pair"


def _signal(proc, signum: int) -> None:
    """To the run and everything it started (its process group), if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
