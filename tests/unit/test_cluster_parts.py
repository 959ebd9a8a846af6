"""The parts of a cluster run that need no cluster: what the check says about the answers
Slurm gives, where the plugins come from, the slurm profile, per-recipe resources, and
which process a job names as its run's owner."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lead_recovery import cluster
from lead_recovery import config as lr_config
from lead_recovery import recipes as lr_recipes
from lead_recovery.cli import main as cli_main
from lead_recovery.errors import LeadRecoveryError
from tests.support.workflow import profile

REPO = Path(__file__).resolve().parents[2]


def answers(monkeypatch, ping: tuple[int, str], sinfo: str) -> None:
    """Slurm's client commands as if they answered ``ping`` and ``sinfo``."""
    monkeypatch.setattr(cluster.shutil, "which", lambda name: f"/usr/bin/{name}")

    def run(args: list[str], timeout_s: float) -> tuple[int, str]:
        return ping if args[0] == "scontrol" else (0, sinfo)

    monkeypatch.setattr(cluster, "_run", run)


UP = (0, "Slurmctld(primary) at head is UP")


@pytest.mark.parametrize(
    ("ping", "sinfo", "partition", "message"),
    [
        (
            (1, "Slurmctld(primary) at head is DOWN\n*****\n** RESTORE SLURMCTLD **"),
            "",
            None,
            "slurm: the controller does not answer (scontrol ping: Slurmctld(primary) at head "
            "is DOWN; configuration ",
        ),
        (
            UP,
            "short|up|idle|2\nlong|up|idle|1",
            None,
            "slurm: the cluster has no default partition",
        ),
        (UP, "short*|up|idle|2", "gpu", "slurm: no partition 'gpu' (partitions: short)"),
        (UP, "short*|down|idle|2", None, "slurm: partition 'short' is down"),
        (
            UP,
            "short*|up|down*|1\nshort*|up|drained|3",
            None,
            "slurm: partition 'short' has no node that can start a job (1 down*, 3 drained)",
        ),
        (UP, "short*|up|idle*|1", None, "has no node that can start a job (1 idle*)"),
    ],
)
def test_a_cluster_that_cannot_take_jobs_is_one_line(monkeypatch, ping, sinfo, partition, message):
    answers(monkeypatch, ping, sinfo)
    with pytest.raises(LeadRecoveryError) as err:
        cluster.check_slurm(partition)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("sinfo", "partition", "chosen"),
    [
        ("short*|up|idle|2", None, "short"),
        ("short*|up|down*|1\nshort*|up|mixed|1\nlong|up|idle|1", None, "short"),
        ("short*|up|idle~|4", None, "short"),  # powered down: Slurm boots it for the job
        ("short*|up|down|1\nlong|up|allocated|1", "long", "long"),
    ],
)
def test_a_cluster_with_a_node_that_can_start_a_job_passes(monkeypatch, sinfo, partition, chosen):
    answers(monkeypatch, UP, sinfo)
    assert cluster.check_slurm(partition) == chosen


def test_a_missing_client_command_is_named(monkeypatch):
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    with pytest.raises(LeadRecoveryError, match=r"^slurm: sbatch not found on PATH"):
        cluster.check_slurm()


def test_a_command_that_hangs_is_cut_off(monkeypatch):
    monkeypatch.setattr(cluster.shutil, "which", lambda name: "/bin/sleep")
    real = subprocess.run

    def slow(args, **kw):
        return real(["sleep", "5"], **kw)

    monkeypatch.setattr(cluster.subprocess, "run", slow)
    began = time.monotonic()
    with pytest.raises(LeadRecoveryError, match=r"did not answer within 1 s"):
        cluster.check_slurm(timeout_s=1)
    assert time.monotonic() - began < 4


def test_executor_plugins_are_put_first_on_pythonpath_once(tmp_path):
    env = cluster.with_executors({"PYTHONPATH": "/a:/b"}, prefix=tmp_path)
    assert env["PYTHONPATH"] == f"{tmp_path}/executors:/a:/b"
    assert cluster.with_executors(env, prefix=tmp_path) == env


def test_the_slurm_plugins_are_installed_apart_from_the_venv():
    """Snakemake imports every plugin it can see at each start: the Slurm one (pandas)
    must not be importable from the venv itself, only from .venv/executors."""
    assert cluster.plugin_installed("slurm"), "make venv installs it into .venv/executors"
    assert (cluster.executors_dir() / "snakemake_executor_plugin_slurm_jobstep").is_dir()
    seen = subprocess.run(
        [sys.executable, "-c", "import snakemake_executor_plugin_slurm"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert seen.returncode != 0
    pinned = yaml.safe_load(
        "\n".join(
            line
            for line in (REPO / "requirements.lock").read_text().splitlines()
            if line.startswith("snakemake-executor-plugin-slurm")
        ).replace("==", ": ")
    )
    extra = (REPO / "pyproject.toml").read_text()
    for name, version in pinned.items():
        assert f'"{name}=={version}"' in extra


def test_the_slurm_profile_keeps_the_defaults_and_asks_squeue():
    """It replaces profiles/default for its run (a workflow profile): every default but
    `cores` (local cores are `local-cores` there) and `quiet` (a cluster run shows its
    jobs' submissions) must be in it."""
    default, slurm = profile("default"), profile("slurm")
    for key, value in default.items():
        if key not in ("cores", "quiet"):
            assert slurm.get(key) == value, f"{key}: the cluster run would lose the default"
    assert slurm["executor"] == "slurm" and slurm["slurm-status-command"] == "squeue"
    assert "retries" not in slurm
    resources = dict(item.split("=", 1) for item in slurm["default-resources"])
    assert "slurm_account" not in resources  # checked with sacctmgr, which needs slurmdbd


def test_run_profile_slurm_is_the_workflow_profile_and_an_unknown_one_is_one_line(capsys):
    _, cmd = cli_main.snakemake_command(profile="slurm", repo=str(REPO))
    assert cmd[3:5] == ["--workflow-profile", "profiles/slurm"]
    assert cli_main.main(["run", "--repo", str(REPO), "--profile", "nosuch", "-n"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lead-recovery: error: unknown profile 'nosuch'")
    assert "profiles: cron, default, slurm" in err[0]


def test_a_recipe_asks_for_its_own_resources_and_a_typo_names_the_key(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "leads.csv").write_text("lead_id\n1\n")
    meta = {"output_columns": ["lead_id"], "resources": {"analyze": {"mem_mb": 9000}}}
    (folder / "meta.yml").write_text(yaml.safe_dump(meta))
    assert lr_recipes.load(tmp_path, "r").resources == {"analyze": {"mem_mb": 9000}}
    meta["resources"]["analyze"] = {"mem_gb": 9}
    (folder / "meta.yml").write_text(yaml.safe_dump(meta))
    with pytest.raises(LeadRecoveryError, match=r"resources.analyze.mem_gb: unknown key"):
        lr_recipes.load(tmp_path, "r")
    filled = lr_config.fill_defaults({"warehouse": "duckdb"})
    assert filled["resources"]["redshift_extract"] == {
        "mem_mb": 2000,
        "runtime": 120,
        "cpus_per_task": 1,
    }
