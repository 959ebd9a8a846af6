"""Shared ground: runs on several checkouts and hosts writing one store (issue 22).

Two checkouts share a store (a folder, or an S3 prefix on a local moto server);
their recipe queries the test server (PostgreSQL behind the Redshift shim),
which counts the queries it received. The query waits at its first row while
the test holds an advisory lock, so a run is stopped exactly while it holds
the day's lease and queries:

- **a stall past the lease's life** (SIGSTOP, as a suspended laptop or a hung
  NFS or S3 call): the other run takes the day over by the store's clock,
  queries and publishes; the stalled run resumes, finds its commit refused,
  and uses the taker's pair. Both exit 0, the taker's pair stays byte for
  byte, the next run queries nothing;
- **a clock ten minutes ahead** (``faketime``) and **another pid namespace**
  (``unshare --pid``, a container sharing the host's name): beside a live,
  renewing lease they wait for it instead of taking it; one query.

The lease lives 2 s here (``lease_ttl``) so that a stall outlives it quickly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from lead_recovery.extract import query_tag
from tests.redshift.test_killed_requery import FIRST_ROW, holding, wait_for
from tests.support.workflow import TRIALS, WorkflowCopy, copy_workflow

RECIPE = "held_leads"
SQL = f"""\
-- Waits at its first row while the test holds advisory lock {FIRST_ROW}.
SELECT g AS lead_id, 'Lead ' || g AS name
FROM generate_series(1, 50) AS g
WHERE :run_date::date IS NOT NULL
  AND CASE g WHEN 1 THEN pg_advisory_xact_lock_shared({FIRST_ROW})::text = '' ELSE TRUE END
"""
STALL_TRIALS = max(5, TRIALS)
UNTIL = ("--until", "redshift_extract")  # the day's pair is what these runs are about


class Store:
    """Where the two checkouts' store is, and how to read its day's pair."""

    def __init__(self, kind: str, tmp_path: Path, s3_server=None) -> None:
        self.kind, self.s3 = kind, s3_server
        if kind == "folder":
            self.url, self.env = str(tmp_path / "store"), {}
        else:
            bucket = f"lr-ground-{os.getpid()}-{time.monotonic_ns() % 10**9}"
            s3_server.client().create_bucket(Bucket=bucket)
            self.bucket, self.url, self.env = bucket, f"s3://{bucket}/team", dict(s3_server.env)

    def read(self, path: str) -> bytes:
        if self.kind == "folder":
            return (Path(self.url) / path).read_bytes()
        client = self.s3.client()
        return client.get_object(Bucket=self.bucket, Key=f"team/{path}")["Body"].read()

    def pair(self, day: str) -> tuple[bytes, bytes]:
        marker = self.read(f"markers/redshift_queried_{RECIPE}_{day}.marker")
        return marker, self.read(json.loads(marker)["extract"])


def checkout(root: Path, store: Store) -> WorkflowCopy:
    copy = copy_workflow(root)
    copy.add_recipe(RECIPE, sql=SQL)
    config = copy.root / "config/config.yaml"
    settings = yaml.safe_load(config.read_text())
    settings.update(store=store.url, lease_ttl="2s", warehouse="redshift")
    config.write_text(yaml.safe_dump(settings))
    return copy


def start(copy: WorkflowCopy, day: str, env: dict, *prefix: str):
    """A run in its own process group, its output in a file (a test may stop it)."""
    out = copy.root / f"run-{time.monotonic_ns()}.out"
    config = {"recipe": RECIPE, "date": day}
    run = copy.start(*UNTIL, config=config, env=env, output=out, prefix=list(prefix) or None)
    return run, out


def finish(proc, out: Path, timeout: float = 120) -> str:
    proc.wait(timeout=timeout)
    text = out.read_text(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    return text


def queries_at(pg_server, since: int, day: str) -> int:
    """Queries the server received for the day (distinct cursors of its tag)."""
    from tests.redshift.conftest import ServerLog

    return len(ServerLog(pg_server).declared(since, query_tag(RECIPE, day)))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("trial", range(STALL_TRIALS))  # each trial a test: run side by side
@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_a_run_stalled_past_its_lease_uses_the_takers_pair_and_both_exit_0(
    tmp_path, pg_server, shim, s3_server, kind, trial
):
    store = Store(kind, tmp_path, s3_server)
    a, b = checkout(tmp_path / "a", store), checkout(tmp_path / "b", store)
    env = {**pg_server.env(shim.port), **store.env}
    day = f"202505{10 + trial:02d}"
    since = pg_server.mark()
    with holding(pg_server, shim, FIRST_ROW) as waiting:
        stalled, stalled_out = start(a, day, env)
        try:
            wait_for(lambda: waiting(FIRST_ROW), "A's query at the server", stalled)
            os.killpg(stalled.pid, signal.SIGSTOP)  # A holds the lease, and stops
        except BaseException:
            os.killpg(stalled.pid, signal.SIGKILL)
            raise
    try:
        taker = finish(*start(b, day, env))  # waits out A's lease by the store's clock
        published = store.pair(day)
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    resumed = finish(stalled, stalled_out)

    assert "took over the expired lease of" in taker, taker[-3000:]
    assert "another run took over:" in resumed and "this run's own query was spent" in resumed
    assert f"{RECIPE} {day} queried (" in resumed.split("what this run did")[-1]  # spent
    assert store.pair(day) == published, f"trial {trial}: the taker's pair changed"
    assert a.leads(RECIPE, day).read_bytes() == published[1]  # A's copy: the taker's
    assert queries_at(pg_server, since, day) == 2  # A's spent query and B's
    last = trial == STALL_TRIALS - 1  # and a real next run once per store
    for copy in (a, b):  # the next run queries nothing: its plan, and at the end a run
        args = UNTIL if last else ("-n", *UNTIL)
        assert copy.run(*args, config={"recipe": RECIPE, "date": day}, env=env).queries == 0
    assert queries_at(pg_server, since, day) == 2


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("folder", ("faketime", "-f", "+10m")),
        ("s3", ("faketime", "-f", "+10m")),
        ("folder", ("unshare", "--pid", "--fork", "--mount-proc")),
    ],
    ids=["clock-ahead-folder", "clock-ahead-s3", "other-pid-namespace"],
)
def test_a_live_lease_is_waited_for_whatever_the_clock_or_pid_namespace(
    tmp_path, pg_server, shim, s3_server, kind, prefix
):
    if shutil.which(prefix[0]) is None:
        pytest.fail(f"{prefix[0]} is not installed (tests/support/setup_system.sh installs it)")
    if prefix[0] == "unshare" and os.geteuid() != 0:
        pytest.skip("unshare --pid needs root here")
    store = Store(kind, tmp_path, s3_server)
    a, b = checkout(tmp_path / "a", store), checkout(tmp_path / "b", store)
    env = {**pg_server.env(shim.port), **store.env}
    day, since = "20250512", pg_server.mark()
    with holding(pg_server, shim, FIRST_ROW) as waiting:
        holder, holder_out = start(a, day, env)
        wait_for(lambda: waiting(FIRST_ROW), "A's query at the server", holder)
        # faketime's own monotonic clock hangs Python's timed waits: only the wall clock
        # (the one hosts disagree on) is moved. A host's monotonic clock is never compared.
        other, other_out = start(b, day, {**env, "DONT_FAKE_MONOTONIC": "1"}, *prefix)
        wait_for(lambda: "waiting for" in other_out.read_text(), "B waiting for A", other)
        time.sleep(3)  # longer than the lease's life: A renews it, B must keep waiting
        assert other.poll() is None, other_out.read_text()[-3000:]
    finish(holder, holder_out)
    waited = finish(other, other_out)

    assert "took over" not in waited
    assert f"{RECIPE} {day} cached (" in waited.split("what this run did")[-1]
    assert queries_at(pg_server, since, day) == 1
    assert b.leads(RECIPE, day).read_bytes() == store.pair(day)[1]
