"""The workflow on a real Slurm cluster: one started by the tests on this machine.

One single-node cluster per test session and worker (tests/support/slurmcluster.py:
its own munged, slurmctld and slurmd in a temporary folder, found through
``SLURM_CONF``), stopped at the end. Runs go through the documented entry point,
``lead-recovery run --profile slurm``, so the executor plugins come from
``.venv/executors`` exactly as for a user. Only the status-check interval is
shortened (5 s instead of the profile's 10 s), and successful jobs' Slurm logs
are kept so that tests can search them.

What the cluster ran is read from the cluster and from what the jobs wrote
(``squeue``, ``scontrol show job``, the jobs' outcome records with their Slurm
job id); what Redshift received is counted at the PostgreSQL server (the
fixtures of tests/redshift/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redshift.conftest import pg_server, server_log, shim  # noqa: F401 - fixtures
from tests.s3.conftest import OnS3, s3_server  # noqa: F401 - fixtures
from tests.support.slurmcluster import SlurmCluster, missing_binaries
from tests.support.workflow import RunResult, clean_env, config_args

_MISSING = missing_binaries()

# The profile as shipped, with status checks every 5 s instead of every 10 (a test's
# jobs take 10-15 s), and the Slurm logs of successful jobs kept. Not 1 s: the
# plugin adds 10 s to the interval after each check that saw no job end, so a
# check 1 s after a submission puts the next one 11 s later and, for a job that
# takes 12 s, the one after that 32 s later; from 5 s the second check comes
# 15-20 s after the submission, when the job is done.
FAST = [
    "--slurm-init-seconds-before-status-checks",
    "5",
    "--seconds-between-status-checks",
    "5",
    "--slurm-keep-successful-logs",
]


# Skip only where the programs are truly absent; `make test` installs them.
needs_slurm = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"Slurm not installed ({', '.join(_MISSING)} missing); `make test` installs "
    "Debian's slurmctld, slurmd, slurm-client and munge (tests/support/setup_system.sh)",
)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A private single-node Slurm cluster for the session; killed at the end."""
    with SlurmCluster() as cluster:
        yield cluster


def submission(
    config: dict[str, object] | None = None, extra: list[str] | None = None
) -> list[str]:
    """``lead-recovery run --profile slurm -- ...``: a run submitted as a user submits it
    (every setting through ``--config``, so the wrapper adds no second one)."""
    cmd = [sys.executable, "-m", "lead_recovery.cli.main", "run", "--profile", "slurm", "--"]
    return [*cmd, *FAST, *(extra or []), *config_args(config or {})]


def start(
    root: Path, cmd: list[str], cluster: SlurmCluster, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``cmd`` in ``root`` against ``cluster`` (its SLURM_CONF) with ``env``."""
    return subprocess.Popen(
        cmd,
        cwd=root,
        env=clean_env(**{**cluster.env, **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def submit(
    root: Path,
    cluster: SlurmCluster,
    *,
    config: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    ok: bool | None = True,
    timeout: float = 240,
) -> RunResult:
    """Submit a run and wait for it; ``ok`` asserts success (True) or failure (False)."""
    return finish(start(root, submission(config), cluster, env), ok, timeout)


def finish(proc: subprocess.Popen, ok: bool | None, timeout: float) -> RunResult:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(
            f"the run did not end within {timeout:.0f} s:\n{out[-6000:]}"
        ) from None
    result = RunResult(proc.returncode, out)
    if ok is True:
        assert proc.returncode == 0, f"the run failed:\n{out[-6000:]}"
    elif ok is False:
        assert proc.returncode != 0, f"the run unexpectedly succeeded:\n{out[-6000:]}"
    return result


def submitted(result: RunResult) -> list[str]:
    """The Slurm job ids Snakemake says it submitted."""
    marker = "has been submitted with SLURM jobid "
    return [
        line.split(marker, 1)[1].split()[0] for line in result.output.splitlines() if marker in line
    ]


@pytest.fixture
def on_s3_cluster(workflow, s3_server) -> OnS3:  # noqa: F811 - the imported fixture
    """A workflow copy (demo warehouse built) with ``store: s3://<own bucket>/team``."""
    bucket = f"lr-slurm-{os.getpid()}-{id(workflow) % 100000}"
    s3_server.client().create_bucket(Bucket=bucket)
    return OnS3(workflow, s3_server, bucket)
