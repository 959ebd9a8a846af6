"""Benchmark: ``markers list`` over 10,000 markers (target: under 1 s, start-up included;
with ``--s3``, under 5 s against a local S3 server).

Builds a throw-away workflow folder (this repo's config, schema and recipes)
holding 10,000 markers: five recipes x 2,000 run dates, 1% in the previous
system's timestamp-only form, 1% corrupt, and a cached extract for every
tenth day. Then times, as subprocesses and in the same run:

- ``python -c pass``             the interpreter's own start-up (baseline)
- ``ls -l`` of the marker folder  reading the same folder without Python (baseline)
- ``markers list`` and ``markers list --json``

and prints the median of several runs of each and the ratios to the baselines.
Exit status 1 if ``markers list`` misses the target.

With ``--s3`` the same markers and extracts are uploaded to a local S3 server
(moto's, started here: tests/support/s3server.py) and the folder's config says
``store: s3://<bucket>/team``. The baselines are then a plain boto3 listing of
the same marker keys (``ListObjectsV2``, pages of 1,000), and that listing
plus one GET per marker on 16 threads (what reading every marker costs).
``markers list (cold)`` runs without the checkout's cache of markers already
read (``.snakemake/lead_recovery/s3_markers.json``) and without the marker
index on the store: it lists and reads every marker, then writes the index.
``markers list --refresh`` lists the store in full with that cache (a GET
only for what changed) and rebuilds the index; ``markers list`` reads the
index (lead_recovery/markerindex.py), as every listing does within a day of
the last full one. The target applies to that one.

    .venv/bin/python bench/bench_markers_list.py [--markers 10000] [--repeat 5] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from lead_recovery import layout, markerindex, markers, recipes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support.s3server, for --s3
TARGET_S = 1.0
TARGET_S3_S = 5.0
BUCKET, PREFIX = "lr-bench", "team"
INDEX = markerindex.index_path("markers")
RECIPES = ["simulation_to_handoff", "bench_a", "bench_b", "bench_c", "bench_d"]


def build(root: Path, count: int) -> Path:
    """A workflow folder with ``count`` markers; returns the marker folder."""
    for part in ("config", "workflow/schemas", "recipes"):
        shutil.copytree(REPO / part, root / part)
    for name in RECIPES[1:]:
        shutil.copytree(root / "recipes/simulation_to_handoff", root / "recipes" / name)
    marker_dir = root / "results/markers"
    marker_dir.mkdir(parents=True)
    sha = recipes.sql_sha256((root / "recipes/simulation_to_handoff/redshift.sql").read_text())
    per_recipe = -(-count // len(RECIPES))
    start = date(2020, 1, 1)
    made = 0
    for i in range(per_recipe):
        day = (start + timedelta(days=i)).strftime("%Y%m%d")
        queried = datetime(2020, 1, 1, 7, 0, tzinfo=UTC) + timedelta(days=i)
        for name in RECIPES:
            if made == count:
                break
            path = Path(markers.marker_path(marker_dir, name, day))
            if made % 100 == 1:
                path.write_text(queried.isoformat())  # the previous system's form
            elif made % 100 == 2:
                path.write_text("{corrupt")
            else:
                record = {
                    "recipe": name,
                    "run_date": day,
                    "queried_at": queried.isoformat(timespec="seconds"),
                    "rows": 1000 + i,
                    "sql_sha256": sha,
                    "duration_s": 1.5,
                    "user@host": "bench@host",
                }
                # the bytes write_marker writes, without its per-file fsync
                path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            if i % 10 == 0:
                leads = Path(layout.leads_path(root / "results", name, day))
                leads.parent.mkdir(parents=True, exist_ok=True)
                leads.touch()
            made += 1
    return marker_dir


def to_s3(root: Path, server: object) -> None:
    """Move the folder's results/ (the store with no ``store:``: markers and extracts) to
    ``s3://BUCKET/PREFIX/`` and point its config at that store."""
    client = server.client()
    client.create_bucket(Bucket=BUCKET)
    files = [p for p in (root / "results").rglob("*") if p.is_file()]

    def put(path: Path) -> None:
        key = f"{PREFIX}/{path.relative_to(root / 'results').as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, files))
    shutil.rmtree(root / "results")
    config_file = root / "config/config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["store"] = f"s3://{BUCKET}/{PREFIX}"
    config_file.write_text(yaml.safe_dump(config))


# The S3 baselines, run like the helper: a new interpreter that imports boto3.
LIST_KEYS = f"""
import boto3
pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(
    Bucket="{BUCKET}", Prefix="{PREFIX}/markers/", Delimiter="/")
keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
"""
LIST_AND_GET = (
    LIST_KEYS
    + """
from concurrent.futures import ThreadPoolExecutor
client = boto3.client("s3")
def get(key):
    return client.get_object(Bucket="{bucket}", Key=key)["Body"].read()
with ThreadPoolExecutor(max_workers=16) as pool:
    list(pool.map(get, keys))
""".replace("{bucket}", BUCKET)
)


def timed(
    cmd: list[str],
    cwd: Path,
    repeat: int,
    env: dict[str, str] | None = None,
    before: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Median wall-clock and CPU (user + sys) seconds of ``repeat`` runs, after a warm-up.

    CPU time is reported too because it barely moves when other work shares
    the machine, while wall-clock time does.
    """
    walls, cpus = [], []
    for attempt in range(repeat + 1):
        if before is not None:
            before()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"{cmd} failed: {proc.stderr.decode()[-2000:]}")
        if attempt:
            walls.append(elapsed)
            cpus.append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="markers on a local S3 server")
    args = parser.parse_args()

    exe = Path(sys.executable).parent / "markers"
    helper = [str(exe)] if exe.exists() else [sys.executable, "-m", "lead_recovery.cli.markers"]
    with (
        tempfile.TemporaryDirectory(prefix="bench-markers-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        started = time.perf_counter()
        marker_dir = build(root, args.markers)
        found = len(list(marker_dir.iterdir()))
        env = None
        if args.s3:
            from tests.support.s3server import S3Server

            server = stack.enter_context(S3Server())
            env = {**os.environ, **server.env}
            to_s3(root, server)
        built = time.perf_counter() - started
        listed = subprocess.run(
            [*helper, "list"], cwd=root, env=env, capture_output=True, text=True, check=True
        ).stdout
        assert f"{found} marker(s)" in listed, listed[-500:]

        figures = {"python -c pass": timed([sys.executable, "-c", "pass"], root, args.repeat)}
        if args.s3:
            baselines = {
                "boto3 list": timed([sys.executable, "-c", LIST_KEYS], root, args.repeat, env),
                # about a minute each against moto: once (after a warm-up), like the cold list
                "boto3 list + GETs": timed([sys.executable, "-c", LIST_AND_GET], root, 1, env),
            }
        else:
            baselines = {
                "ls -l <marker dir>": timed(["ls", "-l", str(marker_dir)], root, args.repeat)
            }
        figures.update(baselines)
        if args.s3:
            cache = root / ".snakemake/lead_recovery/s3_markers.json"
            client = server.client()

            def cold() -> None:  # a new host, and a store whose index is gone
                cache.unlink(missing_ok=True)
                client.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{INDEX}")

            figures["markers list (cold)"] = timed([*helper, "list"], root, 1, env, cold)
            figures["markers list --refresh"] = timed(
                [*helper, "list", "--refresh"], root, args.repeat, env
            )
        figures["markers list"] = timed([*helper, "list"], root, args.repeat, env)
        figures["markers list --json"] = timed([*helper, "list", "--json"], root, args.repeat, env)

    load = os.getloadavg()[0]
    where = f"s3://{BUCKET}/{PREFIX}/markers/" if args.s3 else f"{marker_dir.name}/"
    base = next(iter(baselines))
    print(f"markers: {found} in {where} (built in {built:.1f} s)")
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}; median of {args.repeat} runs each:")
    print(f"  {'':22} {'wall':>8} {'cpu':>8}   wall vs python start-up, vs {base}")
    python_start, floor = figures["python -c pass"][0], figures[base][0]
    for name, (wall, cpu) in figures.items():
        ratio = (
            f"{wall / python_start:6.1f}x {wall / floor:6.1f}x" if name != "python -c pass" else ""
        )
        print(f"  {name:22} {wall * 1000:6.0f}ms {cpu * 1000:6.0f}ms   {ratio}")
    target = TARGET_S3_S if args.s3 else TARGET_S
    table = figures["markers list"][0]
    ok = table < target
    print(f"target: markers list under {target:.0f} s wall: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
