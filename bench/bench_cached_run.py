"""How much a fully cached daily run costs over Snakemake's own floor.

For 1, 10 and 100 recipes: build a real copy of the workflow with that many
SQL recipes, run it once (queries, caches, markers), then time repeated
fully cached runs ("Nothing to be done"). The floor is a trivial Snakefile
with the same number of up-to-date targets in the same shape (marker and
extract from one job, analysis and summary from another, latest from a
third), run with the same interpreter in the same process tree, alternated
with ours. Prints medians and the ratio; the target is at most 1.3x.

    .venv/bin/python bench/bench_cached_run.py [--sizes 1,10,100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = "20250512"
FLOOR_SNAKEFILE = """
NAMES = [f"r{i:03d}" for i in range(int(config["size"]))]


rule all:
    input:
        expand("out/{r}/{f}", r=NAMES,
               f=["leads.parquet", "marker", "analysis.csv", "summary.json", "latest.csv"]),


rule extract:
    output:
        "out/{r}/leads.parquet",
        "out/{r}/marker",
    shell:
        "touch {output}"


rule analyze:
    input:
        "out/{r}/leads.parquet",
    output:
        "out/{r}/analysis.csv",
        "out/{r}/summary.json",
    shell:
        "touch {output}"


rule latest:
    input:
        "out/{r}/analysis.csv",
    output:
        "out/{r}/latest.csv",
    shell:
        "touch {output}"
"""


def snakemake(cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"snakemake failed in {cwd}:\n{proc.stdout[-3000:]}")
    return elapsed


def ours(base: Path, n: int) -> Path:
    root = base / f"ours-{n}"
    root.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / part)
    template = REPO / "recipes/simulation_to_handoff"
    for i in range(n):
        shutil.copytree(template, root / "recipes" / f"r{i:03d}")
    snakemake(root, "--cores", "2", "--config", f"date={DAY}")
    return root


def floor(base: Path, n: int) -> Path:
    root = base / f"floor-{n}"
    root.mkdir()
    (root / "Snakefile").write_text(FLOOR_SNAKEFILE)
    snakemake(root, "--cores", "2", "--config", f"size={n}")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cached-") as tmp:
        base = Path(tmp)
        print(f"{'recipes':>8} {'ours (s)':>9} {'floor (s)':>9} {'ratio':>6}  target <= 1.30")
        for n in sizes:
            ours_root, floor_root = ours(base, n), floor(base, n)
            ours_times, floor_times = [], []
            for _ in range(args.repeats):  # alternate, so load hits both alike
                ours_times.append(snakemake(ours_root, "--cores", "2", "--config", f"date={DAY}"))
                floor_times.append(snakemake(floor_root, "--cores", "2", "--config", f"size={n}"))
            o, f = statistics.median(ours_times), statistics.median(floor_times)
            print(f"{n:>8} {o:>9.2f} {f:>9.2f} {o / f:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
