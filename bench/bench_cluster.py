"""Wall time of the same run through Slurm and on this machine.

Starts the single-node Slurm cluster the tests use (tests/support/slurmcluster.py:
its own munged, slurmctld and slurmd in a temporary folder) and times, for the
recipes given (default: the demo recipes, on the embedded warehouse), a first
run of the day (query, analyses) and a second, fully cached run, each
    locally:      snakemake                                 (profiles/default)
    on Slurm:     lead-recovery run --profile slurm         (profiles/slurm as shipped)
    on Slurm, 5s: the same with status checks every 5 s     (what tests/cluster uses)
in fresh copies of the workflow, alternated so that load hits all alike. Prints
the median wall time of each and its ratio to the local run.

    .venv/bin/python bench/bench_cluster.py [--repeats 3] [--recipes a,b]

Needs Slurm's and munge's Debian packages (`make test` installs them).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.slurmcluster import SlurmCluster  # noqa: E402
from tests.support.workflow import DEMO_DB, clean_env, copy_workflow  # noqa: E402

DAY = "20261127"
FAST = ["--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5"]


def commands(recipes: list[str]) -> dict[str, list[str]]:
    config = ["--config", f"date={DAY}", f"recipes=[{','.join(recipes)}]"]
    slurm = [sys.executable, "-m", "lead_recovery.cli.main", "run", "--profile", "slurm", "--"]
    return {
        "local": [sys.executable, "-m", "snakemake", *config],
        "slurm": [*slurm, *config],
        "slurm, 5s checks": [*slurm, *FAST, *config],
    }


def timed(root: Path, cmd: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:6])}... failed:\n{done.stdout[-3000:]}")
    return took


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # `kill` stops the cluster too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipes", default="simulation_to_handoff,manual_leads")
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    from lead_recovery import config as lr_config
    from lead_recovery.warehouse import demo

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, SlurmCluster() as cluster:
        base = Path(tmp)
        settings = lr_config.load(REPO)["duckdb"]
        warehouse = base / "demo.duckdb"
        demo.build(warehouse, settings["rows"], settings["seed"])
        env = clean_env(**cluster.env)
        cases = commands(recipes)
        first: dict[str, list[float]] = {name: [] for name in cases}
        cached: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(args.repeats):  # alternate, so load hits every case alike
            for name, cmd in cases.items():
                copy = copy_workflow(base / f"{i}-{name.replace(' ', '').replace(',', '')}")
                (copy.root / DEMO_DB).parent.mkdir(parents=True)
                shutil.copy2(warehouse, copy.root / DEMO_DB)
                first[name].append(timed(copy.root, cmd, env))
                cached[name].append(timed(copy.root, cmd, env))
        print(f"{len(recipes)} recipes ({', '.join(recipes)}), medians of {args.repeats} runs")
        print(
            f"{'case':>18} {'first run (s)':>14} {'ratio':>6} {'cached run (s)':>15} {'ratio':>6}"
        )
        for name in cases:
            f, c = statistics.median(first[name]), statistics.median(cached[name])
            f0, c0 = statistics.median(first["local"]), statistics.median(cached["local"])
            print(f"{name:>18} {f:>14.2f} {f / f0:>6.2f} {c:>15.2f} {c / c0:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
