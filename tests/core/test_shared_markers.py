"""Markers in a shared place (the seed's "centralized location for multi-user
environments"): checkouts that share a store folder query a recipe's day once
between them, even when they run at the same moment, and two runs in one
checkout wait for each other instead of failing on Snakemake's directory lock.
"""

import json
import shutil
import subprocess
import sys

import pytest

from tests.s3.conftest import account
from tests.support.workflow import TRIALS, clean_env

SLOW_SQL = """
    SELECT COUNT(*) AS lead_id
    FROM leads AS a
    CROSS JOIN (SELECT lead_id FROM leads LIMIT 5000) AS b
    WHERE a.lead_id + b.lead_id > 0 AND a.created_at < DATEADD(day, 1000, :run_date::date)
"""


@pytest.mark.timeout(300 * TRIALS)
def test_eight_runs_from_four_checkouts_sharing_markers_query_once(workflow, tmp_path):
    workflow.add_recipe("slow_count", sql=SLOW_SQL)
    roots = [workflow.root]
    for i in range(3):
        roots.append(tmp_path / f"clone{i}")
        shutil.copytree(workflow.root, roots[-1])
    shared = tmp_path / "shared"
    for trial in range(TRIALS):  # a new run date each
        _eight_runs_query_once(roots, shared, f"202505{12 + trial:02d}")


def _eight_runs_query_once(roots, shared, day):
    config = ["--config", "recipe=slow_count", f"date={day}", f"store={shared}"]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "snakemake", *config],
            cwd=root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for root in roots * 2  # two runs in each checkout
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    assert [run.returncode for run in runs] == [0] * 8, outputs
    lines = [next(x for x in account(out) if x.startswith(f"slow_count {day}")) for out in outputs]
    assert sum(" queried (" in x for x in lines) == 1, lines
    assert sum(" cached (" in x for x in lines) == 7, lines
    # the second run in each checkout waited for the first, then had nothing to do
    assert sum("is running in this checkout; waiting for it" in out for out in outputs) == 4
    # Every first run was in the extract job at once (each found no marker when it
    # started, so each ran the job): one queried, the others waited on its lease and
    # kept its result. Without that overlap the test proves nothing, so it fails.
    outcomes = [
        json.loads((root / f"logs/slow_count/{day}/redshift_extract.outcome.json").read_text())
        for root in roots
    ]
    assert sorted(o["outcome"] for o in outcomes) == ["cached"] * 3 + ["queried"], outcomes
    assert all("LockException" not in out for out in outputs)
    waited = [out for out in outputs if f"recipe slow_count {day}: waiting for" in out]
    assert len(waited) >= 1, outputs  # a waiting run says whom it waits for
    marker = json.loads((shared / f"markers/redshift_queried_slow_count_{day}.marker").read_text())
    assert marker["run_id"] in {o["run_id"] for o in outcomes if o["outcome"] == "queried"}
    assert (shared / marker["extract"]).is_file()
    for root in roots:  # each checkout has its own copy of that very extract
        copy = root / f"results/slow_count/{day}/leads.parquet"
        assert copy.read_bytes() == (shared / marker["extract"]).read_bytes()
