"""The suite's runs go through a preloaded Snakemake (tests/support/preloaded.py):
one process per worker that has imported Snakemake and forks a fresh process per
run. This checks that such a run is the run ``python -m snakemake`` makes: same
exit status, same jobs, same files, same account, with the run's own
environment and time zone (the machine's zone decides the run date here).
"""

from __future__ import annotations

import re

from tests.support.workflow import preloaded

# 03:00 UTC is 20:00 the day before in Los Angeles: the run date shows which zone the
# run used, the run's or the worker's (UTC).
ENV = {"LEAD_RECOVERY_NOW": "2025-05-13T03:00:00+00:00", "TZ": "America/Los_Angeles"}
RECIPE = "simulation_to_handoff"
_VARIES = re.compile(r"run id [0-9a-f]+|[0-9.]+ s\b")  # the run id and durations


def account(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("lead-recovery: what"))
    return [_VARIES.sub("-", line) for line in lines[start:]]


def files(root) -> set[str]:
    """The files a run wrote (an extract's name in the store says when and which run)."""
    return {
        str(p.relative_to(root))
        if p.parent.name != "extracts"
        else f"{p.relative_to(root).parent}/<query id>"
        for p in (root / "results").rglob("*")
        if p.is_file() and ".history" not in p.parts and ".leases" not in p.parts
    }


def test_a_preloaded_run_is_the_run_python_m_snakemake_makes(tmp_path, demo_warehouse_file):
    from tests.conftest import workflow_with_warehouse

    assert preloaded() is not None, "LEAD_RECOVERY_TEST_EXEC=1 runs every test as a process"
    forked = workflow_with_warehouse(tmp_path / "forked", demo_warehouse_file)
    started = workflow_with_warehouse(tmp_path / "started", demo_warehouse_file)

    through_server = forked.run(config={"recipe": RECIPE}, env=ENV)
    as_a_user = started.run(config={"recipe": RECIPE}, env=ENV, preload=False)

    assert as_a_user.returncode == through_server.returncode == 0
    assert as_a_user.jobs == through_server.jobs and as_a_user.queries == 1
    assert files(started.root) == files(forked.root)
    assert started.marker(RECIPE, "20250512").is_file()  # LA's date
    assert account(as_a_user.output) == account(through_server.output)
    assert (started.analysis(RECIPE, "20250512").read_bytes()) == (
        forked.analysis(RECIPE, "20250512").read_bytes()
    )

    # a failing run: the same status and the same one-line error
    bad = {"date": "2025-13-45"}
    failed = forked.run(config=bad, ok=False)
    plain = started.run(config=bad, ok=False, preload=False)
    assert plain.returncode == failed.returncode != 0
    errors = [x for x in failed.output.splitlines() if x.startswith("lead-recovery: error")]
    assert errors and errors == [
        x for x in plain.output.splitlines() if x.startswith("lead-recovery: error")
    ]
