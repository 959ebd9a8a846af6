"""How much a fully cached daily run costs over Snakemake's own floor.

Cases: N recipes for one day (N = 1, 100, 1000 by default), and a history
case (one recipe, ``since=`` 365 days back, every day cached). For each, a
real copy of the workflow is run once for real (one recipe, one day: query,
cache, marker, analysis), and that day's files are then copied to the other
recipes and days with their times kept, which is what a year of daily runs
leaves (running a thousand real queries would only make the set-up slow).
Then fully cached runs ("Nothing to be done") are timed.

The floor is a trivial Snakefile of our DAG's exact shape for the same
recipes and days: an extract job reading the warehouse file (``ancient``) and
writing the checkout's leads and ``update()`` marker, an analyze job reading
those and the recipe's meta.yml and analyzer and writing analysis and summary,
a latest job, every rule with a ``log:`` as ours, all files up to date. So the
ratio is what our code adds to what Snakemake itself does for the same files.
It runs with the same interpreter and is alternated with ours, so load on the
machine hits both alike. Prints medians of wall and CPU time (user + system,
Snakemake and what it started) and their ratios; the target is a CPU ratio
<= 1.25x at 1,000 recipes, 1.15x the aim: CPU time is the measure a busy
machine distorts least.

    .venv/bin/python bench/bench_cached_run.py [--sizes 1,100,1000] [--history 365] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = "20250512"
FLOOR_SNAKEFILE = """
NAMES = str(config["names"]).split(",")
DAYS = str(config["days"]).split(",")


rule all:
    input:
        expand("out/{r}/{d}/{f}", r=NAMES, d=DAYS,
               f=["leads.parquet", "analysis.csv", "summary.json"]),
        expand("out/markers/redshift_queried_{r}_{d}.marker", r=NAMES, d=DAYS),
        expand("out/{r}/latest.csv", r=NAMES),


rule extract:
    input:
        warehouse=ancient("warehouse.duckdb"),
    output:
        leads="out/{r}/{d}/leads.parquet",
        marker=update("out/markers/redshift_queried_{r}_{d}.marker"),
    log:
        "logs/{r}/{d}/extract.log",
    shell:
        "touch {output}"


rule analyze:
    input:
        leads="out/{r}/{d}/leads.parquet",
        marker="out/markers/redshift_queried_{r}_{d}.marker",
        meta="recipes/{r}/meta.yml",
        analyzer="recipes/{r}/analyzer.py",
    output:
        analysis="out/{r}/{d}/analysis.csv",
        summary="out/{r}/{d}/summary.json",
    log:
        "logs/{r}/{d}/analyze.log",
    shell:
        "touch {output}"


rule latest:
    input:
        "out/{r}/" + DAYS[-1] + "/analysis.csv",
    output:
        "out/{r}/latest.csv",
    log:
        "logs/{r}/latest.log",
    shell:
        "touch {output}"
"""


def snakemake(cwd: Path, *args: str) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of Snakemake and every process it
    waited for: CPU time is what a busy machine distorts least."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--cores", "2", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            sys.exit(f"snakemake failed in {cwd}:\n{out.read()[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def days_back(n: int) -> list[str]:
    last = date(2025, 5, 12)
    return [(last - timedelta(days=i)).strftime("%Y%m%d") for i in reversed(range(n))]


def ours(base: Path, names: list[str], days: list[str]) -> tuple[Path, list[str]]:
    """A workflow copy whose every recipe and day is cached; the args of a cached run."""
    root = base / f"ours-{len(names)}x{len(days)}"
    root.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    template = REPO / "recipes/simulation_to_handoff"
    for name in names:
        shutil.copytree(template, root / "recipes" / name)
    first, last = names[0], days[-1]
    snakemake(root, "--config", f"recipe={first}", f"date={last}")
    results, markers = root / "results", root / "results/markers"
    marker = markers / f"redshift_queried_{first}_{last}.marker"
    record = json.loads(marker.read_text())
    extract = results / record["extract"]
    times = marker.stat()
    for name in names:
        for day in days:
            if (name, day) == (first, last):
                continue
            src, dst = results / first / last, results / name / day
            (dst / "extracts").mkdir(parents=True, exist_ok=True)
            own = dst / "extracts" / extract.name  # each day's extract is its own, in the store
            shutil.copy2(extract, own)
            os.link(own, dst / "leads.parquet")  # this checkout's copy of it: a hard link
            for f in ("analysis.csv", "summary.json"):
                shutil.copy2(src / f, dst / f)
            copy = markers / f"redshift_queried_{name}_{day}.marker"
            named = {**record, "recipe": name, "run_date": day}
            named["extract"] = f"{name}/{day}/extracts/{extract.name}"
            copy.write_text(json.dumps(named, indent=2, sort_keys=True) + "\n")
            os.utime(copy, ns=(times.st_atime_ns, times.st_mtime_ns))
        if name != first:
            shutil.copy2(
                results / first / "latest.csv", results / name / "latest.csv", follow_symlinks=False
            )
    args = ["--config", f"date={last}"]
    if len(days) > 1:
        args += [f"since={days[0]}", f"recipe={first}"]
    snakemake(root, *args)  # settles anything the copies left to do (the latest links)
    return root, args


def floor(base: Path, names: list[str], days: list[str]) -> tuple[Path, list[str]]:
    """The floor's copy: every file ours has, as old as ours are relative to each other."""
    root = base / f"floor-{len(names)}x{len(days)}"
    root.mkdir()
    (root / "Snakefile").write_text(FLOOR_SNAKEFILE)
    stamp = time.time() - 3600
    sources = [root / "warehouse.duckdb"]
    for name in names:
        (root / "recipes" / name).mkdir(parents=True)
        sources += [root / "recipes" / name / f for f in ("meta.yml", "analyzer.py")]
    steps = [sources, [], [], []]
    for name in names:
        for day in days:
            folder = root / "out" / name / day
            folder.mkdir(parents=True, exist_ok=True)
            steps[1] += [folder / "leads.parquet"]
            steps[1] += [root / "out/markers" / f"redshift_queried_{name}_{day}.marker"]
            steps[2] += [folder / "analysis.csv", folder / "summary.json"]
        steps[3] += [root / "out" / name / "latest.csv"]
    (root / "out/markers").mkdir(parents=True, exist_ok=True)
    for step, files in enumerate(steps):
        for f in files:
            f.touch()
            os.utime(f, (stamp + step, stamp + step))
    args = ["--config", f"names={','.join(names)}", f"days={','.join(days)}"]
    snakemake(root, *args)
    return root, args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--history", type=int, default=365, help="days (0: skip)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = [
        (f"{n} recipes", [f"r{i:04d}" for i in range(n)], [DAY])
        for n in map(int, args.sizes.split(","))
    ]
    if args.history:
        cases.append((f"1 recipe x {args.history} days", ["r0000"], days_back(args.history)))
    with tempfile.TemporaryDirectory(prefix="bench-cached-") as tmp:
        base = Path(tmp)
        print(
            f"{'case':>22} {'wall ours':>9} {'floor':>6} {'ratio':>6}"
            f" {'CPU ours':>9} {'floor':>6} {'ratio':>6}  target: CPU ratio <= 1.25 (aim 1.15)"
        )
        for label, names, days in cases:
            (ours_root, ours_args), (floor_root, floor_args) = (
                ours(base, names, days),
                floor(base, names, days),
            )
            ours_runs, floor_runs = [], []
            for _ in range(args.repeats):  # alternate, so load hits both alike
                ours_runs.append(snakemake(ours_root, *ours_args))
                floor_runs.append(snakemake(floor_root, *floor_args))
            ow, fw = (statistics.median(r[0] for r in runs) for runs in (ours_runs, floor_runs))
            oc, fc = (statistics.median(r[1] for r in runs) for runs in (ours_runs, floor_runs))
            print(
                f"{label:>22} {ow:>9.2f} {fw:>6.2f} {ow / fw:>6.2f}"
                f" {oc:>9.2f} {fc:>6.2f} {oc / fc:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
