"""The ``markers`` helper against S3, the store's own operations, and clones sharing one
S3 store. moto's server stands in for AWS; nothing else is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from lead_recovery import store as lr_store
from lead_recovery.cli import markers as markers_cli
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import S3Store
from tests.s3.conftest import DAY, SQL, OnS3, account
from tests.support.workflow import TRIALS, clean_env


@dataclass
class Helped:
    returncode: int
    stdout: str
    stderr: str


def helper(on_s3: OnS3, *args: str, env: dict | None = None) -> Helped:
    """``lead-recovery markers ARGS`` in this checkout, in this process (as
    tests/support/doctor.py runs ``doctor``): its entry point, exit code and output, with
    click's isolation for the environment and streams. No Snakemake is involved, so
    nothing needs a process of its own (tests/s3/conftest.py's ``markers`` starts one)."""
    cleared = {k: None for k in os.environ if k.startswith(("LEAD_RECOVERY_", "REDSHIFT_"))}
    with CliRunner().isolation(env={**cleared, **on_s3.server.env, **(env or {})}) as streams:
        code = markers_cli.main(["--repo", str(on_s3.root), *args])
        sys.stdout.flush()
        sys.stderr.flush()
    out, err, _ = streams
    return Helped(code, out.getvalue().decode(), err.getvalue().decode())


def test_markers_helper_lists_checks_creates_deletes_and_prunes_on_s3(on_s3):
    assert on_s3.run("--until", "redshift_extract", config={"date": DAY}).queries == 1
    env = {"LEAD_RECOVERY_NOW": "2026-11-27T12:00:00+00:00", "TZ": "UTC"}

    listed = helper(on_s3, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["recipe"], r["run_date"], r["counts"]) for r in rows] == [(SQL, DAY, True)]
    row = rows[0]
    assert row["path"] == f"{on_s3.url}/markers/redshift_queried_{SQL}_{DAY}.marker"
    assert row["cache_path"] == f"s3://{on_s3.bucket}/{on_s3.extract_key()}"
    assert row["cache_present"] is True and row["lease"] is None and row["rows"] == 142
    assert set(row) == {  # the same keys as on a local store
        *("recipe", "run_date", "current_run_date", "format", "queried_at", "rows", "age_s"),
        *("cache_present", "counts", "reason", "problem", "created_by", "user@host", "path"),
        *("cache_path", "lease"),
    }
    table = helper(on_s3, "list", env=env)
    assert table.returncode == 0 and f"# markers in {on_s3.url}/markers;" in table.stdout

    check = helper(on_s3, "check", SQL, "--date", DAY, "--strict", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "marker counts; the next run does not query" in check.stdout

    refused = helper(on_s3, "create", SQL, "--date", "20261001", env=env)
    assert refused.returncode == 1 and "no cached extract" in refused.stdout + refused.stderr
    then = {**env, "LEAD_RECOVERY_NOW": "2026-10-01T12:00:00+00:00"}  # marked back then
    assert helper(on_s3, "create", SQL, "--date", "20261001", "--force", env=then).returncode == 0
    existing = helper(on_s3, "create", SQL, "--date", DAY, env=env)
    assert "marker already exists" in existing.stdout

    pruned = helper(on_s3, "prune", "--older-than", "30d", env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert f"deleted {on_s3.url}/markers/redshift_queried_{SQL}_20261001.marker" in pruned.stdout
    assert on_s3.get(on_s3.marker_key(day="20261001")) is None
    assert on_s3.get(on_s3.marker_key()) is not None  # today's is never pruned

    deleted = helper(on_s3, "delete", SQL, "--date", DAY, env=env)
    assert deleted.returncode == 0 and on_s3.get(on_s3.marker_key()) is None
    after = helper(on_s3, "check", SQL, "--date", DAY, env=env)
    assert after.returncode == 1 and "no marker" in after.stdout
    assert on_s3.run("-n", config={"date": DAY}).queries == 1  # the next run queries


def test_s3_store_operations(s3_server, monkeypatch, tmp_path):
    """What leases, commits and extracts stand on (store.py), against a real S3 API."""
    monkeypatch.setattr(os, "environ", {**os.environ, **s3_server.env})
    s3_server.client().create_bucket(Bucket="lr-ops")
    st = S3Store("s3://lr-ops/p")
    # conditional writes: only if absent (If-None-Match), only over the version read (If-Match)
    first = st.put_if("x/a.lease", b"1", None)
    assert first and st.put_if("x/a.lease", b"2", None) is None
    got = st.get("x/a.lease")
    assert (got.data, got.etag) == (b"1", first) and st.get("x/none") is None
    second = st.put_if("x/a.lease", b"2", first)
    assert second not in (None, first)
    assert st.put_if("x/a.lease", b"3", first) is None  # a writer that read the old version
    assert st.get("x/a.lease").data == b"2" and st.version("x/a.lease")[0] == second
    assert st.put_if("x/gone", b"1", first) is None  # If-Match on an absent key
    # the store's own clock (S3's Date), against the time S3 wrote the lease
    assert abs(st.clock() - st.get("x/a.lease").written) < 5
    # reads are bounded; what is larger is refused, not read
    st.put("x/big", b"m" * (lr_store.SMALL + 10))
    with pytest.raises(lr_store.TooLarge):
        st.get("x/big")
    assert st.stat("x/big").size == lr_store.SMALL + 10
    st.put("x/sub/deeper/q", b"")
    assert st.get("x/sub/deeper/q").data == b""
    assert sorted(st.names("x")) == ["a.lease", "big", "sub"]
    assert sorted(st.entries("x")) == ["a.lease", "big"]
    assert sorted(st.listing("x")) == ["a.lease", "big", "sub/deeper/q"]
    # an extract larger than a part goes up in parts and comes back whole
    data = os.urandom(11 * 1024 * 1024)
    (tmp_path / "big.parquet").write_bytes(data)
    st.put_file(tmp_path / "big.parquet", "y/big.parquet")
    sent = s3_server.client().get_object(Bucket="lr-ops", Key="p/y/big.parquet")["Body"]
    assert sent.read() == data
    st.fetch("y/big.parquet", tmp_path / "copy.parquet")
    assert (tmp_path / "copy.parquet").read_bytes() == data
    st.delete("y/big.parquet")
    st.delete("y/big.parquet")  # absent is fine
    assert st.stat("y/big.parquet") is None and st.listing("y") == {}
    with pytest.raises(LeadRecoveryError, match="leaves the store's root"):
        st.get("../other/x")  # never a key outside the prefix


SLOW_SQL = """
    SELECT COUNT(*) AS lead_id
    FROM leads AS a
    CROSS JOIN (SELECT lead_id FROM leads LIMIT 3000) AS b
    WHERE a.lead_id + b.lead_id > 0 AND a.created_at < DATEADD(day, 1000, :run_date::date)
"""


@pytest.mark.timeout(400 * TRIALS)
def test_eight_runs_from_four_clones_sharing_an_s3_store_query_once(on_s3: OnS3, tmp_path):
    on_s3.wf.add_recipe("slow_count", sql=SLOW_SQL)
    roots = [on_s3.root]
    for i in range(3):
        roots.append(tmp_path / f"clone{i}")
        shutil.copytree(on_s3.root, roots[-1])
    for trial in range(TRIALS):  # a new run date each
        day = f"202611{27 - trial:02d}"
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "snakemake", "--config", "recipe=slow_count", f"date={day}"],
                cwd=root,
                env=clean_env(**on_s3.server.env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for root in roots * 2  # two runs in each clone: the second waits for the first
        ]
        outputs = [run.communicate(timeout=360)[0] for run in runs]
        assert [run.returncode for run in runs] == [0] * 8, [o[-3000:] for o in outputs]
        said = [
            next(x for x in account(out) if x.startswith(f"slow_count {day}")) for out in outputs
        ]
        assert sum(" queried (" in x for x in said) == 1, said
        assert sum(" cached (" in x for x in said) == 7, said
        assert all("LockException" not in out for out in outputs)
        # the second run in each clone waited for the first, then had nothing to do
        assert sum("is running in this checkout; waiting for it" in out for out in outputs) == 4
        # runs of other clones met in the extract job: one queried, the others waited on
        # its S3 lease and used its pair (without that overlap the test proves nothing)
        assert any(f"recipe slow_count {day}: waiting for" in out for out in outputs), said
        analyses = {(r / f"results/slow_count/{day}/analysis.csv").read_bytes() for r in roots}
        assert len(analyses) == 1
        # one extract in the store, uploaded once; every checkout's copy is that very one
        extract = on_s3.extract_key("slow_count", day)
        assert on_s3.extract_keys("slow_count", day) == [extract]
        assert [k for k in on_s3.uploads() if f"/{day}/" in k] == [extract]
        copies = {(r / f"results/slow_count/{day}/leads.parquet").read_bytes() for r in roots}
        assert copies == {on_s3.get(extract)}


def test_markers_list_shows_who_is_querying_a_day_on_s3(on_s3, monkeypatch):
    from lead_recovery import lease

    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    with lease.held(S3Store(on_s3.url), SQL, DAY, wait_s=5):
        rows = on_s3.markers_json()
    assert [(r["recipe"], r["run_date"], r["reason"]) for r in rows] == [
        (SQL, DAY, "being queried")
    ]
    assert rows[0]["lease"]["pid"] == os.getpid()
    assert rows[0]["path"] == f"{on_s3.url}/markers/redshift_queried_{SQL}_{DAY}.marker"
    assert on_s3.markers_json() == []  # released


@pytest.mark.timeout(300)
def test_a_run_killed_mid_query_leaves_an_s3_lease_the_next_run_takes_over(on_s3, monkeypatch):
    """As tests/keep/test_lease_takeover.py on a folder: SIGKILL of the querying run
    leaves its S3 lease, no marker and no extract; the next run takes the day over, says
    whose lease it took, queries once, and its commit is of a later generation."""
    from lead_recovery import lease

    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    on_s3.wf.add_recipe("slow_count", sql=SLOW_SQL)
    config = {"recipe": "slow_count", "date": DAY, "lease_ttl": "3s"}
    st = S3Store(on_s3.url)
    # both runs stop at the extract: no assertion reads an analysis
    until = ("--until", "redshift_extract")
    killed = on_s3.wf.start(*until, config=config, env=on_s3.server.env)
    # The job logs "querying:" once it holds the lease, just before the query (about
    # 0.35 s): read from a local file, not by asking the S3 server, whose answers take
    # longer than that window on a loaded machine.
    log = on_s3.wf.root / f"logs/slow_count/{DAY}/redshift_extract.log"
    deadline = time.monotonic() + 120
    while ": querying:" not in (log.read_text(errors="replace") if log.is_file() else ""):
        assert killed.poll() is None, "the run ended before it queried"
        assert time.monotonic() < deadline, "never queried"
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(30)

    holder, _ = lease.current(st, "slow_count", DAY)
    assert holder is not None and not holder.released  # left behind, not released
    assert on_s3.marker("slow_count") is None
    assert on_s3.objects("slow_count/") == []  # no extract, whole or partial
    since = len(on_s3.requests())

    after = on_s3.run(*until, config=config)  # no --unlock: the killed run's lock is cleared

    assert after.queries == 1 and on_s3.uploads(since) == [on_s3.extract_key("slow_count")]
    assert "removed the Snakemake lock a killed run left in this checkout" in after.output
    assert f"took over the expired lease of {holder.holder.describe()}" in after.output
    record = on_s3.marker("slow_count")
    assert record["run_id"] != holder.holder.run_id
    assert record["generation"] == holder.generation + 1
    extract = on_s3.get(on_s3.extract_key("slow_count"))
    assert on_s3.wf.leads("slow_count", DAY).read_bytes() == extract
    assert lease.current(st, "slow_count", DAY)[0].released


def test_markers_on_s3_are_read_once_and_again_only_when_rewritten(on_s3, monkeypatch, tmp_path):
    """``markers list`` over thousands of markers cannot GET each one every time: a marker
    already read at the ETag, size and time the listing shows comes from the cache file.
    Counted at the server: GETs of marker keys."""
    from lead_recovery import layout, markers

    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    st = S3Store(on_s3.url)
    folder, cache = layout.MARKERS, tmp_path / "s3_markers.json"

    def record(day: str, rows: int) -> bytes:
        queried = f"2026-11-{day[-2:]}T06:00:00+00:00"
        return markers.render({"recipe": SQL, "run_date": day, "queried_at": queried, "rows": rows})

    for day in ("20261125", "20261126", "20261127"):
        st.put(markers.marker_path(folder, SQL, day), record(day, 1))
    st.put(f"{folder}/redshift_queried_{SQL}_20261124.marker", b"\xff not utf-8")

    def listed() -> tuple[dict[str, int | None], list[str]]:
        since = len(on_s3.requests())
        found = markers.list_markers(st, cache_file=cache)
        gets = [r["key"] for r in on_s3.requests()[since:] if r["method"] == "GET" and r["key"]]
        return {m.run_date: m.rows for m in found}, gets

    first, gets = listed()
    assert first == {"20261124": None, "20261125": 1, "20261126": 1, "20261127": 1}
    assert len(gets) == 4
    again, gets = listed()
    assert again == first and gets == [on_s3.marker_key(day="20261124")]  # not kept: corrupt

    # a rewrite has a new ETag (and time): that marker, and only it, is read again
    st.put(markers.marker_path(folder, SQL, "20261127"), record("20261127", 2))
    st.delete(markers.marker_path(folder, SQL, "20261125"))
    changed, gets = listed()
    assert changed == {"20261124": None, "20261126": 1, "20261127": 2}
    assert sorted(gets) == sorted([on_s3.marker_key(day="20261124"), on_s3.marker_key()])
    assert "20261125" not in cache.read_text()  # a deleted marker is forgotten
