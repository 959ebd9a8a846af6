"""Stress: clones sharing a store, started together, query a recipe's day once.

For each trial, ``--clones`` checkouts of this workflow (each with the demo
warehouse) run ``snakemake --until redshift_extract`` for one slow recipe and
a new run date at the same moment, sharing one store: a folder
(``store: <folder>``) or, with ``--s3``, an S3 prefix on a local
S3 server (moto's, started here). Each checkout runs ``--per-clone``
invocations (default 2): 8 runs from 4 clones; in one checkout the second
waits for the first (jobs.hold_checkout) instead of meeting Snakemake's
``LockException``.

Counted per trial, from each run's end-of-run account: how many queried
(must be 1) and reused; every run's exit status; whether a
``LockException`` appeared; and how long the waiting runs waited for the
querying run's lease (from "waiting for" to "keeping its extract" in their
job logs). Prints one line per trial and a summary; exit 1 if any trial
queried other than once or any run failed.

    .venv/bin/python bench/stress_shared_store.py [--trials 10] [--clones 4] [--per-clone 2] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lead_recovery import config as lr_config  # noqa: E402
from lead_recovery.warehouse import demo  # noqa: E402
from tests.support.workflow import clean_env, copy_workflow  # noqa: E402

RECIPE = "slow_count"
SLOW_SQL = """SELECT COUNT(*) AS lead_id
FROM leads AS a
CROSS JOIN (SELECT lead_id FROM leads LIMIT 3000) AS b
WHERE a.lead_id + b.lead_id > 0 AND a.created_at < DATEADD(day, 1000, :run_date::date)
"""
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def _when(line: str) -> float | None:
    match = _STAMP.match(line)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def waited(log: Path) -> float | None:
    """Seconds between the job's 'waiting for' line and its next line, if it waited."""
    start = None
    for line in log.read_text(errors="replace").splitlines():
        if start is None and "waiting for" in line:
            start = _when(line)
        elif start is not None and (end := _when(line)) is not None:
            return end - start
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--clones", type=int, default=4)
    parser.add_argument("--per-clone", type=int, default=2)
    parser.add_argument("--s3", action="store_true")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="stress-store-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        root = Path(tmp)
        settings = lr_config.load(REPO)["duckdb"]
        warehouse = root / "demo.duckdb"
        demo.build(warehouse, settings["rows"], settings["seed"])
        env = clean_env()
        clones = []
        for i in range(args.clones):
            wf = copy_workflow(root / f"clone{i}")
            wf.add_recipe(RECIPE, sql=SLOW_SQL)
            db = wf.root / "results/warehouse/demo.duckdb"
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(warehouse, db)
            clones.append(wf.root)
        shared = []
        if args.s3:
            from tests.support.s3server import S3Server

            server = stack.enter_context(S3Server())
            server.client().create_bucket(Bucket="lr-stress")
            env = clean_env(**server.env)
            for clone in clones:
                config_file = clone / "config/config.yaml"
                config = yaml.safe_load(config_file.read_text())
                config["store"] = "s3://lr-stress/team"
                config_file.write_text(yaml.safe_dump(config))
        else:
            shared = [f"store={root}/shared"]

        failures, waits, queries = 0, [], []
        for trial in range(args.trials):
            day = f"202501{trial + 10:02d}"
            argv = [sys.executable, "-m", "snakemake", "--until", "redshift_extract"]
            argv += ["--config", f"recipe={RECIPE}", f"date={day}", *shared]
            started = time.perf_counter()
            runs = [
                subprocess.Popen(
                    argv,
                    cwd=c,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for c in clones * args.per_clone
            ]
            outputs = [run.communicate(timeout=600)[0] for run in runs]
            took = time.perf_counter() - started
            codes = [run.returncode for run in runs]
            outcomes, trial_waits = [], []
            for clone in clones:
                folder = clone / f"logs/{RECIPE}/{day}"
                outcome = folder / "redshift_extract.outcome.json"
                outcomes.append(
                    json.loads(outcome.read_text())["outcome"] if outcome.exists() else "none"
                )
                log = folder / "redshift_extract.log"
                if log.exists() and (w := waited(log)) is not None:
                    trial_waits.append(w)
            said = [
                line
                for out in outputs
                for line in out.splitlines()
                if line.startswith(f"{RECIPE} {day} ")
            ]
            queried = sum(" queried (" in line for line in said)
            reused = sum(" cached (" in line for line in said)
            locked = sum("LockException" in out for out in outputs)
            ok = queried == 1 and codes == [0] * len(codes) and not locked
            failures += not ok
            queries.append(queried)
            waits += trial_waits
            print(
                f"trial {trial + 1:2}: {queried} query, {reused} reused, "
                f"exit {codes}, LockException {locked}, {len(trial_waits)} waited "
                f"(longest {max(trial_waits, default=0):.1f} s), {took:.1f} s"
                + ("" if ok else "  FAILED"),
                flush=True,
            )
            if not ok:
                for out in outputs:
                    print(out[-1500:])
    store = "S3 (moto)" if args.s3 else "a shared folder"
    print(
        f"{args.trials} trials x {args.clones} clones x {args.per_clone} runs on {store}: "
        f"queries per trial {sorted(set(queries))}, {sum(queries)} in all; "
        f"{len(waits)} runs waited on the lease, longest {max(waits, default=0):.1f} s; "
        f"{failures} failed trial(s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
