"""The workflow through a real Slurm cluster, with markers and extracts on S3.

Each scenario is one or a few real submissions (``lead-recovery run --profile
slurm``) to the cluster the tests started, against moto's S3 server and, for
Redshift, the test PostgreSQL behind the Redshift shim. Queries are counted at
the server; where a job ran is read from what the job recorded (its Slurm job
id) and from the controller (``scontrol show job``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from lead_recovery.cluster import with_executors
from lead_recovery.extract import query_tag
from tests.cluster.conftest import (
    FAST,
    finish,
    needs_slurm,
    start,
    submission,
    submit,
    submitted,
)
from tests.s3.conftest import DAY, SQL, OnS3, account
from tests.support.slurmcluster import DOWN_PARTITION, SlurmCluster, free_port
from tests.support.workflow import RunResult, copy_workflow

pytestmark = needs_slurm
CSV = "manual_leads"


def outcome(root: Path, step: str, recipe: str, day: str) -> dict:
    return json.loads((root / f"logs/{recipe}/{day}/{step}.outcome.json").read_text())


def run_id(result: RunResult) -> str:
    return re.search(r"what this run did \(run id (\w+)\)", result.output).group(1)


@pytest.mark.timeout(300)
def test_demo_recipes_run_as_slurm_jobs_and_a_job_past_midnight_keeps_the_submission_day(
    on_s3_cluster: OnS3, slurm
):
    """Submitted at 23:59:50; the cluster starts the jobs at 00:00:30 the next day (its
    TaskProlog sets their clock). Everything stays on the submission's run date and run id,
    and the account printed by the submitting process covers the jobs that ran on Slurm."""
    s3 = on_s3_cluster
    with slurm.job_clock("2026-11-28T00:00:30+00:00"):
        result = submit(
            s3.root,
            slurm,
            config={"timezone": "UTC"},
            env={**s3.server.env, "LEAD_RECOVERY_NOW": "2026-11-27T23:59:50+00:00", "TZ": "UTC"},
        )
    # Three Slurm jobs (the query, two analyses); the cheap steps ran here.
    assert len(submitted(result)) == 3, result.output[-4000:]
    assert result.jobs["redshift_extract"] == 1 and result.jobs["analyze"] == 2
    for step, recipe in [("redshift_extract", SQL), ("analyze", SQL), ("analyze", CSV)]:
        ran = outcome(s3.root, step, recipe, DAY)
        assert ran["status"] == "ok" and ran["slurm_job"] in submitted(result), (step, ran)
        assert ran["run_id"] == run_id(result)
    assert "slurm_job" not in outcome(s3.root, "recipe_leads", CSV, DAY)  # a local rule
    assert all(f"{job}|" in " ".join(slurm.squeue_all()) for job in submitted(result))

    # The run date and run id of the submission, the job's own (later) clock for the query.
    marker = json.loads(s3.get(s3.marker_key()))
    assert marker["run_date"] == DAY and marker["run_id"] == run_id(result)
    assert marker["decided_at"].startswith("2026-11-27T23:59:50")
    assert marker["queried_at"].startswith("2026-11-28T00:00:30")  # the job ran past midnight
    assert not [k for k in s3.objects() if "20261128" in k]
    assert not (s3.root / "results" / SQL / "20261128").exists()
    for recipe in (SQL, CSV):
        summary = json.loads(s3.wf.summary(recipe, DAY).read_text())
        assert summary["run_date"] == DAY, summary
        assert summary["decided_at"].startswith("2026-11-27T23:59:50")
        assert s3.wf.latest(recipe).resolve() == s3.wf.analysis(recipe, DAY).resolve()
    assert json.loads(s3.wf.summary(SQL, DAY).read_text())["source"] == "queried"

    lines = account(result.output)
    assert f"{CSV} {DAY} skipped (no redshift.sql; recipes/{CSV}/leads.csv)" in lines
    assert any(x.startswith(f"{SQL} {DAY} queried (142 rows, ") for x in lines), lines
    assert lines[-1] == (
        "total: 2 recipe-days: 1 queried, 0 cached, 1 skipped, 0 failed; 0 queries avoided"
    )


PROBE = "mx_probe"
PROBE_SQL = """\
SELECT lead_id, name, phone FROM leads
WHERE phone LIKE '+52%' AND created_at < :run_date::date ORDER BY lead_id
"""
# The probe asks the cluster for less than the config's defaults: its meta.yml wins.
PROBE_META = {
    "output_columns": ["lead_id", "name", "phone"],
    "resources": {"redshift_extract": {"mem_mb": 700, "runtime": 7}},
}
REDSHIFT_DAY = "20250512"


def slurm_job(cluster, job_id: str) -> dict[str, str]:
    """``scontrol show job``: what the controller granted the job."""
    out = cluster.run("scontrol", "--oneliner", "show", "job", job_id).stdout
    return dict(pair.split("=", 1) for pair in out.split() if "=" in pair)


def found_in(paths: list[Path], secrets: list[bytes]) -> list[str]:
    return [
        str(p)
        for p in paths
        if p.is_file() and not p.is_symlink() and any(s in p.read_bytes() for s in secrets)
    ]


@pytest.mark.timeout(420)
def test_redshift_on_s3_through_slurm_queries_once_a_day_and_no_credential_is_written(
    on_s3_cluster: OnS3, slurm, pg_server, shim, server_log, tmp_path: Path
):
    """Two checkouts submit at once: one query at the server. A second submission that
    day queries nothing and submits no job; a forced one queries once. The password and
    the AWS secret reach the jobs through the environment only."""
    s3 = on_s3_cluster
    s3.wf.add_recipe(PROBE, sql=PROBE_SQL, meta=PROBE_META)
    other = copy_workflow(tmp_path / "other")
    shutil.copy2(s3.root / "config/config.yaml", other.root / "config/config.yaml")
    other.add_recipe(PROBE, sql=PROBE_SQL, meta=PROBE_META)
    settings = {"warehouse": "redshift", "recipe": PROBE, "date": REDSHIFT_DAY}
    env = {**s3.server.env, **pg_server.env(shim.port)}
    tag = query_tag(PROBE, REDSHIFT_DAY)
    since = server_log.mark()

    # Two submissions at once, from two checkouts sharing the S3 store.
    runs = [start(root, submission(settings), slurm, env) for root in (s3.root, other.root)]
    first, second = (finish(run, True, 300) for run in runs)
    assert len(server_log.declared(since, tag)) == 1
    lines = [
        next(x for x in account(r.output) if x.startswith(f"{PROBE} {REDSHIFT_DAY}"))
        for r in (first, second)
    ]
    assert sorted(x.split()[2] for x in lines) == ["cached", "queried"], lines
    queried = first if " queried (" in lines[0] else second
    extract_job = outcome(
        s3.root if queried is first else other.root, "redshift_extract", PROBE, REDSHIFT_DAY
    )["slurm_job"]
    granted = slurm_job(slurm, extract_job)
    assert granted["MinMemoryNode"] == "700M" and granted["TimeLimit"] == "00:07:00", granted
    analyze_job = outcome(s3.root, "analyze", PROBE, REDSHIFT_DAY)["slurm_job"]
    granted = slurm_job(slurm, analyze_job)  # the config's defaults (schema)
    assert granted["MinMemoryNode"] == "2000M" and granted["TimeLimit"] == "00:30:00", granted

    # The same day again: nothing submitted, nothing queried.
    again = submit(s3.root, slurm, config=settings, env=env)
    assert submitted(again) == [] and "Nothing to be done" in again.output
    assert len(server_log.declared(since, tag)) == 1
    assert f"{PROBE} {REDSHIFT_DAY} cached (queried at " in "\n".join(account(again.output))

    # Forced: one more query, through a Slurm job.
    forced = submit(s3.root, slurm, config={**settings, "ignore_redshift_marker": True}, env=env)
    assert len(submitted(forced)) == 2 and forced.jobs["redshift_extract"] == 1
    assert len(server_log.declared(since, tag)) == 2
    marker = s3.marker(PROBE, REDSHIFT_DAY)
    assert marker["run_id"] == run_id(forced) and marker["warehouse"] == "redshift"
    # the re-query's extract stands beside the first one; the marker names the new one,
    # which this checkout's copy is
    extracts = s3.extract_keys(PROBE, REDSHIFT_DAY)
    assert len(extracts) == 2 and s3.extract_key(PROBE, REDSHIFT_DAY) in extracts
    leads = s3.wf.leads(PROBE, REDSHIFT_DAY).read_bytes()
    assert leads == s3.get(s3.extract_key(PROBE, REDSHIFT_DAY))
    assert s3.not_ours() == []  # the jobs on the cluster spoke to S3 through our client only

    # The secrets went to the jobs in their environment (the controller keeps each job's
    # environment beside its script until the job is purged), and nowhere else: not in
    # the job scripts, the node's spool, Slurm's job logs, our logs, nor .snakemake/.
    secrets = [pg_server.password.encode(), s3.server.env["AWS_SECRET_ACCESS_KEY"].encode()]
    state = sorted(slurm.state_dir.rglob("*"))
    scripts = [p for p in state if p.name == "script"]
    environments = [p for p in state if p.name == "environment"]
    assert len(scripts) >= 6 and all(b"--target-jobs" in p.read_bytes() for p in scripts)
    assert found_in(environments, secrets[:1]), "the password never reached a job"
    assert all(p.stat().st_mode & 0o077 == 0 for p in environments)  # the SlurmUser's only
    slurm_logs = [
        p for root in (s3.root, other.root) for p in root.glob(".snakemake/slurm_logs/**/*.log")
    ]
    assert len(slurm_logs) >= 4
    everywhere = [
        *scripts,
        *slurm.spool_dir.rglob("*"),
        *(p for root in (s3.root, other.root) for p in root.rglob("*")),
    ]
    assert found_in(everywhere, secrets) == []
    assert (
        found_in([Path(slurm.base) / "log" / f for f in ("slurmctld.log", "slurmd.log")], secrets)
        == []
    )


@pytest.mark.timeout(240)
def test_a_cluster_that_cannot_take_jobs_stops_the_run_in_one_line(workflow, tmp_path):
    """A controller that does not answer, a partition that takes no job, and a controller
    that goes away once jobs are submitted: each is one line and a non-zero exit within
    seconds, never a run that waits for ever. The test kills its own cluster's controller."""
    with SlurmCluster() as own:
        dead = tmp_path / "slurm.conf"
        dead.write_text(
            re.sub(r"(?m)^SlurmctldPort=\d+$", f"SlurmctldPort={free_port()}", own.conf.read_text())
        )
        began = time.monotonic()
        refused = finish(
            start(workflow.root, submission({"date": DAY}), own, {"SLURM_CONF": str(dead)}),
            False,
            60,
        )
        assert time.monotonic() - began < 20
        assert refused.returncode == 1
        assert refused.output.strip().splitlines() == [
            "lead-recovery: error: slurm: the controller does not answer (scontrol ping: "
            f"Slurmctld(primary) at {own.node} is DOWN; configuration {dead}); "
            "nothing was submitted"
        ]
        assert not (workflow.root / "logs").exists()
        assert not (workflow.root / ".snakemake").exists()

        # Plain Snakemake with the profile: the same check, in the workflow, before any job.
        plain = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", *FAST]
        plain += ["--default-resources", f"slurm_partition={DOWN_PARTITION}", "mem_mb=1000"]
        plain += ["--config", f"date={DAY}"]
        began = time.monotonic()
        stopped = finish(start(workflow.root, plain, own, with_executors({})), False, 90)
        assert time.monotonic() - began < 60
        errors = [x for x in stopped.output.splitlines() if x.startswith("lead-recovery: error:")]
        assert errors == [
            f"lead-recovery: error: slurm: partition '{DOWN_PARTITION}' is down; "
            "nothing was submitted"
        ], stopped.output[-3000:]
        assert "Traceback" not in stopped.output and "what this run did" not in stopped.output
        assert submitted(stopped) == [] and own.squeue_all() == []
        assert not (workflow.root / "results/markers").exists()
        assert not list((workflow.root / ".snakemake/locks").glob("*"))  # the lock is released

        # The controller dies once the first jobs are submitted.
        config = workflow.root / "config/config.yaml"
        config.write_text(config.read_text() + "slurm:\n  controller_timeout: 3s\n")
        run = start(workflow.root, submission({"date": DAY}), own)
        seen = []
        for line in run.stdout:
            seen.append(line)
            if "has been submitted with SLURM jobid" in line:
                break
        own.kill_controller()
        killed = time.monotonic()
        lost = finish(run, False, 150)
        assert time.monotonic() - killed < 90
        lines = [*"".join(seen).splitlines(), *lost.output.splitlines()]
        errors = [x for x in lines if x.startswith("lead-recovery: error:")]
        assert len(errors) == 1 and errors[0].startswith(
            "lead-recovery: error: slurm: the controller stopped answering during the run ("
        ), lost.output[-3000:]
        assert f"{SQL} {DAY} failed: " in "\n".join(account(lost.output))
