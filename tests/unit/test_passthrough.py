"""``lead-recovery run ... -- ARGS``: every passed-through argument reaches Snakemake.

Each documented form is built in-process (``snakemake_command``) and then read
by the installed Snakemake's own argument parser, so the test sees what
Snakemake would run with: before the merge, ``-- --config KEY=VALUE`` was
dropped because the wrapper's own ``--config`` came last.
tests/markers/test_lead_recovery_run.py runs one form end to end.
"""

from __future__ import annotations

import pytest

from lead_recovery.cli import passthrough
from lead_recovery.cli.common import UsageError
from lead_recovery.cli.main import main, snakemake_command
from tests.support.workflow import REPO

RECIPE = "simulation_to_handoff"


@pytest.fixture(scope="module")
def snakemake_parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


@pytest.fixture
def snakemake_reads(snakemake_parser):
    """``snakemake_reads(**options)``: (Snakemake's parsed arguments, its config) for
    ``lead-recovery run`` with these options."""
    from snakemake.cli import parse_config

    def read(**options):
        _, cmd = snakemake_command(repo=str(REPO), **options)
        assert cmd[1:3] == ["-m", "snakemake"]
        args = snakemake_parser.parse_args(cmd[3:])
        return args, parse_config(args.config)

    return read


@pytest.mark.parametrize(
    "extra",
    [
        ["--config", "ignore_redshift_marker=true", "store=s3://bucket/prefix"],
        ["-C", "ignore_redshift_marker=true", "store=s3://bucket/prefix"],
        ["--config=ignore_redshift_marker=true", "-Cstore=s3://bucket/prefix"],
        ["-nC", "ignore_redshift_marker=true", "--config", "store=s3://bucket/prefix"],
    ],
)
def test_passed_through_config_is_merged_with_runs_own(snakemake_reads, extra):
    args, config = snakemake_reads(names=(RECIPE,), date="20250512", extra=extra)

    assert config == {
        "recipe": RECIPE,
        "date": 20250512,
        "ignore_redshift_marker": "true",  # the workflow reads it as a boolean
        "store": "s3://bucket/prefix",
    }


def test_where_both_set_a_key_yours_win(snakemake_reads):
    _, config = snakemake_reads(
        names=(RECIPE,),
        ignore_redshift_marker=True,
        extra=["--config", "ignore_redshift_marker=false"],
    )
    assert config["ignore_redshift_marker"] == "false"

    _, config = snakemake_reads(names=(RECIPE, "manual_leads"), extra=["-C", "recipe=manual_leads"])
    assert config == {"recipe": "manual_leads"}  # not also --recipe's recipes=[...]


def test_every_other_documented_form_reaches_snakemake(snakemake_reads):
    args, config = snakemake_reads(
        names=(RECIPE,),
        cores="1",
        extra=[
            "--configfile",
            "a.yaml",
            "--forcerun",
            "redshift_extract",
            "-n",
            "--cores",
            "3",
            "-R",
            "analyze",
            "--configfile",
            "b.yaml",
            "--quiet",
            "rules",
        ],
    )

    assert [str(p) for p in args.configfile] == ["a.yaml", "b.yaml"]
    assert args.forcerun == {"redshift_extract", "analyze"}
    assert args.dryrun and args.cores == 3  # yours, after run's --cores 1
    assert config == {"recipe": RECIPE}


def test_targets_stay_targets(snakemake_reads):
    args, config = snakemake_reads(names=(RECIPE,), extra=["redshift_extract", "-R", "analyze"])

    assert args.targets == ["redshift_extract"]
    assert args.forcerun == {"analyze"} and config == {"recipe": RECIPE}


def test_the_command_line_shows_one_config():
    _, cmd = snakemake_command(
        repo=str(REPO), names=(RECIPE,), dry_run=True, extra=["--config", "skip_redshift=true"]
    )

    assert cmd[3:] == ["-n", "--config", f"recipe={RECIPE}", "skip_redshift=true"]


def test_a_dry_run_given_through_is_seen():
    """It spares the cluster check of ``--profile slurm`` (nothing is submitted)."""
    assert passthrough.parse(["-n"]).dry_run
    assert passthrough.parse(["-pn", "--forcerun", "x"]).dry_run
    assert passthrough.parse(["--dry-run"]).dry_run
    assert not passthrough.parse(["--config", "n=1", "-p"]).dry_run


def test_an_abbreviated_list_option_is_refused_in_one_line(capsys):
    with pytest.raises(UsageError, match=r"write Snakemake's option in full \(--forcerun\)"):
        passthrough.parse(["--forcer", "x"])

    assert main(["run", "--repo", str(REPO), "--", "--conf", "a=1"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("lead-recovery: error: -- --conf: write Snakemake's option in full")
    assert "--config or --configfile" in line


def test_the_list_options_are_snakemakes(snakemake_parser):
    """Every option of the installed Snakemake that keeps only its last list (plugins'
    aside), with every spelling; no other option a prefix of one (abbreviations)."""
    lists, others = {}, set()
    for group in snakemake_parser._action_groups:
        if group.title.endswith("plugin settings"):
            continue
        for action in group._group_actions:
            is_list = action.nargs in ("*", "+") and type(action).__name__ != "_AppendAction"
            for spelling in action.option_strings:
                if is_list:
                    lists[spelling] = action.option_strings[0]
                else:
                    others.add(spelling)

    assert lists == passthrough.LIST_OPTIONS
    flags = {
        s[1]
        for a in snakemake_parser._actions
        if a.nargs == 0
        for s in a.option_strings
        if len(s) == 2 and s[1] != "-"
    }
    assert flags == passthrough.SHORT_FLAGS
    prefixes = {o for o in others for name in lists if name.startswith(o) and o.startswith("--")}
    assert prefixes == passthrough.WHOLE_NAMES
