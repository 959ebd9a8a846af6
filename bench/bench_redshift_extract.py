"""Benchmark: extracting lead rows from a Redshift-speaking server.

A throw-away PostgreSQL (tests/support/pgserver.py) behind the handshake shim
(tests/support/redshift_shim.py, its own process) stands in for Redshift.
For each row count, four extracts of the same query run, each in its own
subprocess so its peak RSS is its own (``os.wait4`` rusage):

  a  ours     RedshiftWarehouse.stream() -> extract.write_parquet (ParquetWriter,
              one row group per batch, zstd) to a temporary file
  b  bare     redshift_connector DECLARE / FETCH FORWARD loop, rows discarded
              (the driver's floor: what any driver-based extract must pay)
  c  pandas   cursor.execute(sql) + cursor.fetch_dataframe() (the old system)
  d  psql     psql -c "\\copy (query) to file" through the same shim
  u  unload   the UNLOAD path's client side: the Parquet parts an UNLOAD left on
              S3 (a local moto server) -> leads.parquet, as RedshiftWarehouse
              reads them (manifest, schema probe, parts one at a time,
              conform to the cursor's types, ParquetWriter)

The parts for u are written once per row count, before timing, by the shim's
UNLOAD emulation (tests/support/redshift_limits.py: PostgreSQL COPY -> Parquet,
4 emulated slices). What u does not measure: Redshift's own UNLOAD time (its
slices write in parallel on the cluster), nor S3 over a real network.

Targets: a within 1.25x of b; a faster than c; a's peak RSS under 400 MB at
5M rows while c's grows with the row count; u at least 5x faster than a at
5M rows, under 400 MB peak RSS.

    .venv/bin/python bench/bench_redshift_extract.py              # 1M and 5M rows
    .venv/bin/python bench/bench_redshift_extract.py --quick      # 200k rows, a smoke run
    .venv/bin/python bench/bench_redshift_extract.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUN_DATE = date(2025, 5, 12)
BATCH = 100_000
TABLE = "bench_leads"
COLUMNS = "lead_id, created_at, updated_at, full_name, email, phone, amount, is_active, status"


def query(rows: int) -> str:
    """The recipe-style query: Redshift SQL with a :run_date placeholder."""
    return (
        f"SELECT {COLUMNS}\nFROM {TABLE}\n"
        f"WHERE lead_id <= {rows}\n  AND created_at < :run_date::date + 1\n"
        "  AND email LIKE '%@%'"
    )


def literal_query(rows: int) -> str:
    return query(rows).replace(":run_date", f"'{RUN_DATE.isoformat()}'")


def load_table(server, rows: int) -> float:
    started = time.perf_counter()
    server.psql(
        f"""
        DROP TABLE IF EXISTS {TABLE};
        CREATE UNLOGGED TABLE {TABLE} AS
        SELECT g::bigint AS lead_id,
               timestamp '2025-01-01' + (g % 100000) * interval '97 seconds' AS created_at,
               timestamptz '2025-01-01 00:00:00+00' + (g % 86400) * interval '13 minutes'
                   AS updated_at,
               'Lead ' || md5(g::text) AS full_name,
               'lead' || g || '@example' || (g % 97) || '.com' AS email,
               CASE WHEN g % 11 = 0 THEN NULL
                    ELSE '+34 6' || lpad((g * 7919 % 100000000)::text, 8, '0') END AS phone,
               ((g * 37 % 1000000) / 100.0)::numeric(12,2) AS amount,
               g % 3 <> 0 AS is_active,
               (ARRAY['new','contacted','qualified','lost'])[g % 4 + 1]::varchar(20) AS status
        FROM generate_series(1::bigint, {rows}) AS g;
        ALTER TABLE {TABLE} OWNER TO {server.user};
        """
    )
    return time.perf_counter() - started


# -- the workers (each runs in its own process) --------------------------------------


def connect(env: dict[str, str]):
    import redshift_connector

    return redshift_connector.connect(
        host=env["REDSHIFT_HOST"],
        port=int(env["REDSHIFT_PORT"]),
        user=env["REDSHIFT_USER"],
        password=env["REDSHIFT_PASSWORD"],
        database=env["REDSHIFT_DATABASE"],
        ssl=False,
    )


def worker_ours(rows: int, out: Path) -> int:
    from lead_recovery.extract import write_parquet
    from lead_recovery.warehouse.redshift import RedshiftWarehouse, read_settings

    warehouse = RedshiftWarehouse(read_settings(env_file=None), batch_size=BATCH)
    try:
        reader = warehouse.stream(
            query(rows), {"run_date": RUN_DATE}, tag="lead_recovery recipe=bench run_date=20250512"
        )
        return write_parquet(reader, out)
    finally:
        warehouse.close()


def worker_bare(rows: int, out: Path) -> int:
    conn = connect(os.environ)
    cursor = conn.cursor()
    cursor.paramstyle = "named"
    cursor.execute(f"DECLARE bench CURSOR FOR {query(rows)}", {"run_date": RUN_DATE})
    total = 0
    while True:
        cursor.execute(f"FETCH FORWARD {BATCH} FROM bench")
        batch = cursor.fetchall()
        total += len(batch)
        if len(batch) < BATCH:
            break
    cursor.execute("CLOSE bench")
    conn.rollback()
    conn.close()
    return total


def worker_pandas(rows: int, out: Path) -> int:
    conn = connect(os.environ)
    cursor = conn.cursor()
    cursor.paramstyle = "named"
    cursor.execute(query(rows), {"run_date": RUN_DATE})
    frame = cursor.fetch_dataframe()
    conn.close()
    return len(frame)


def unload_target(rows: int) -> str:
    return f"s3://{UNLOAD_BUCKET}/bench/{rows}/"


def worker_unload(rows: int, out: Path) -> int:
    """Client side of the UNLOAD path: probe the schema, read the staged parts, write."""
    import pyarrow as pa

    from lead_recovery.extract import write_parquet
    from lead_recovery.warehouse import unload as ul
    from lead_recovery.warehouse.redshift import result_schema

    conn = connect(os.environ)
    cursor = conn.cursor()
    cursor.paramstyle = "named"
    cursor.execute(f"SELECT * FROM ({query(rows)}) AS p LIMIT 0", {"run_date": RUN_DATE})
    schema, _ = result_schema(cursor)
    conn.rollback()
    conn.close()
    settings = ul.UnloadSettings(s3_prefix=f"s3://{UNLOAD_BUCKET}/bench")
    staging = ul.Staging(settings, unload_target(rows))
    entries = staging.manifest()
    info: dict = {}
    reader = pa.RecordBatchReader.from_batches(
        schema, ul.read_parts(staging, entries, schema, info)
    )
    return write_parquet(reader, out)


def stage_unload(rows: int, env: dict[str, str]) -> float:
    """Run the UNLOAD (emulated) once so the parts wait on S3; returns its seconds."""
    from lead_recovery.warehouse import unload as ul

    settings = ul.UnloadSettings(s3_prefix=f"s3://{UNLOAD_BUCKET}/bench")
    inner, _ = ul.unload_query(query(rows), {"run_date": RUN_DATE})
    statement = ul.unload_statement(inner, unload_target(rows), settings) + " ALLOWOVERWRITE"
    started = time.perf_counter()
    conn = connect(env)
    conn.cursor().execute(statement)
    conn.rollback()
    conn.close()
    return time.perf_counter() - started


UNLOAD_BUCKET = "lr-bench"
WORKERS = {
    "ours": worker_ours,
    "bare": worker_bare,
    "pandas": worker_pandas,
    "unload": worker_unload,
}


def run_worker(mode: str, rows: int, env: dict[str, str], workdir: Path) -> dict:
    """One measured run in a fresh process; wall time of the extract and peak RSS."""
    out = workdir / f"{mode}_{rows}.out"
    if mode == "psql":
        sql = literal_query(rows).replace("\n", " ")
        cmd = [
            shutil.which("psql") or "psql",
            "-X",
            "-q",
            "-h",
            env["REDSHIFT_HOST"],
            "-p",
            env["REDSHIFT_PORT"],
            "-U",
            env["REDSHIFT_USER"],
            "-d",
            env["REDSHIFT_DATABASE"],
            "-c",
            f"\\copy ({sql}) to '{out}' with (format csv)",
        ]
        penv = {**env, "PGPASSWORD": env["REDSHIFT_PASSWORD"], "PGSSLMODE": "prefer"}
    else:
        cmd = [sys.executable, __file__, "--worker", mode, "--rows", str(rows), "--out", str(out)]
        penv = env
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=penv, stdout=stdout, stderr=stderr)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix all children)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out_text, err_text = stdout.read().decode(), stderr.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed: {err_text[-2000:]}")
    result = json.loads(out_text.strip().splitlines()[-1]) if mode != "psql" else {}
    result.setdefault("seconds", wall)
    result.setdefault("rows", rows)
    result["wall"] = wall
    result["peak_rss_mb"] = rusage.ru_maxrss / 1024  # kB on Linux
    result["cpu"] = rusage.ru_utime + rusage.ru_stime  # the client's own CPU, all threads
    if out.exists():
        result["out_mb"] = out.stat().st_size / 1e6
        out.unlink()
    return result


def ratio(res: dict, x: str, y: str) -> str:
    """``x / y`` for wall time and CPU time, formatted."""
    if {x, y} <= res.keys():
        wall = res[x]["seconds"] / res[y]["seconds"]
        cpu = res[x]["cpu"] / res[y]["cpu"]
        return f"{wall:8.2f} ({cpu:4.2f})"
    return f"{'-':>15}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Redshift extract benchmark")
    parser.add_argument("--rows", default="1000000,5000000", help="comma-separated row counts")
    parser.add_argument("--quick", action="store_true", help="200k rows, one repeat")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the best counts")
    parser.add_argument("--modes", default="ours,unload,bare,pandas,psql")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        started = time.perf_counter()
        rows = WORKERS[args.worker](int(args.rows), Path(args.out))
        print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))
        return 0

    from tests.support.pgserver import PostgresServer
    from tests.support.redshift_limits import Limits
    from tests.support.redshift_shim import ShimProcess
    from tests.support.s3server import S3Server

    counts = [200_000] if args.quick else [int(x) for x in args.rows.split(",") if x]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="lr-bench-"))
    conf = {"log_statement": "'none'", "log_connections": "off", "shared_buffers": "512MB"}
    table = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(PostgresServer(extra_conf=conf))
        shim = stack.enter_context(ShimProcess(server.port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_")}
        env.update(server.env(shim.port))
        env["PYTHONPATH"] = str(REPO)
        print(f"PostgreSQL {server.bindir} on :{server.port}, shim on :{shim.port}", flush=True)
        load = load_table(server, max(counts))
        print(f"loaded {max(counts):,} rows in {load:.1f}s", flush=True)
        if "unload" in modes:
            s3 = stack.enter_context(S3Server())
            s3.client().create_bucket(Bucket=UNLOAD_BUCKET)
            env.update(s3.env)
            limits = Limits(
                unload=True,
                unload_psql=server.psql_bin,
                unload_conninfo=server.admin_conninfo,
                unload_slices=4,
            )
            unload_shim = stack.enter_context(
                ShimProcess(server.port, limits=limits, env={**os.environ, **s3.env})
            )
            for rows in counts:
                seconds = stage_unload(rows, {**env, "REDSHIFT_PORT": str(unload_shim.port)})
                parts = s3.keys(UNLOAD_BUCKET, f"bench/{rows}/")
                print(
                    f"  {rows:>9,} rows  staged by the UNLOAD emulation in {seconds:.1f}s "
                    f"({len(parts) - 1} parts; not measured)",
                    flush=True,
                )
        for rows in counts:
            runs: dict[str, list[dict]] = {mode: [] for mode in modes}
            for _ in range(args.repeat):  # interleaved, so a busy moment hits every mode
                for mode in modes:
                    run = run_worker(mode, rows, env, workdir)
                    if run["rows"] != rows:
                        raise RuntimeError(f"{mode} returned {run['rows']} rows, expected {rows}")
                    runs[mode].append(run)
                    print(
                        f"  {rows:>9,} rows  {mode:<7} {run['seconds']:7.2f}s  "
                        f"cpu {run['cpu']:7.2f}s  {rows / run['seconds'] / 1e3:6.0f}k rows/s  "
                        f"peak RSS {run['peak_rss_mb']:6.0f} MB",
                        flush=True,
                    )
            results = {}
            for mode, mode_runs in runs.items():
                results[mode] = {
                    "seconds": min(r["seconds"] for r in mode_runs),
                    "cpu": min(r["cpu"] for r in mode_runs),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in mode_runs),
                }
            table.append((rows, results))
    shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"best of {args.repeat}: wall s (client CPU s) and peak RSS MB per mode")
    header = f"{'rows':>10} " + " ".join(f"{m:>22}" for m in modes)
    print(header + "   a/b wall (cpu)   a/c wall (cpu)   a/u wall (cpu)")
    for rows, res in table:
        cells = " ".join(
            f"{res[m]['seconds']:7.2f}s ({res[m]['cpu']:6.2f}) {res[m]['peak_rss_mb']:4.0f}MB"
            for m in modes
        )
        ab, ac = ratio(res, "ours", "bare"), ratio(res, "ours", "pandas")
        au = ratio(res, "ours", "unload")
        print(f"{rows:>10,} {cells}  {ab}  {ac}  {au}")
    print(
        "a=ours (stream -> Parquet), b=bare DECLARE/FETCH loop, "
        "c=pandas fetch_dataframe, d=psql \\copy, u=UNLOAD client side (S3 parts -> Parquet)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
