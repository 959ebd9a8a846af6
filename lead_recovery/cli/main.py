"""``lead-recovery``: the one command line of the workflow.

    lead-recovery run [--recipe R]... [--ignore-redshift-marker] [--skip-redshift]
                      [--date YYYYMMDD] [--since YYYYMMDD] [-n] [-v] [--cores N]
                      [--repo DIR] [-- SNAKEMAKE-ARGS...]
    lead-recovery markers list|check|create|delete|prune ...
    lead-recovery cron [RECIPE]... [--since D] [--wait 30m] ...

``python -m lead_recovery.cli.main run --recipe R`` (the previous system's
spelling) is the same program: ``run`` becomes ``snakemake --config recipe=R
...`` in the workflow folder, and the process *becomes* Snakemake, so its
exit status and the signals from cron or a terminal are Snakemake's.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from lead_recovery import cluster, jobs, recipes, rundate
from lead_recovery import config as lr_config
from lead_recovery.cli import cron, demo, doctor, markers, passthrough, report
from lead_recovery.cli.common import (
    CONTEXT,
    NO,
    Refused,
    UsageError,
    find_repo,
    invoke,
    repo_option,
)
from lead_recovery.errors import LeadRecoveryError

PROG = "lead-recovery"

_EPILOG = """\b
Examples:
  lead-recovery run                                  every recipe, today
  lead-recovery run --recipe simulation_to_handoff --ignore-redshift-marker
  lead-recovery run --since 20250501 -n              what a catch-up would run
  lead-recovery markers list
  lead-recovery cron                                 the unattended daily run
  lead-recovery report --since 30d                   what the markers saved
  lead-recovery demo                                 the demo warehouse's tables

Each command has its own --help. Run it as .venv/bin/lead-recovery (after
`make run` once), or activate the venv first: . .venv/bin/activate
"""

_RUN_EPILOG = """\b
Examples:
  lead-recovery run --recipe simulation_to_handoff
  lead-recovery run --recipe a --recipe b --date 20250512
  lead-recovery run --skip-redshift -n
  lead-recovery run -v                          (everything Snakemake and the jobs print)
  lead-recovery run --profile slurm             (the jobs go to Slurm: docs/cluster.md)
  lead-recovery run -- --forcerun analyze       (anything after -- goes to snakemake)
  lead-recovery run --recipe R -- --config skip_redshift=true store=s3://b/p
                                                (merged with run's own --config: yours win)

\b
Equivalent Snakemake flags (run in the workflow folder):
  --recipe R                  --config recipe=R   (repeat for several: recipes=[A,B])
  --ignore-redshift-marker    --config ignore_redshift_marker=true
  --skip-redshift             --config skip_redshift=true
  --date D / --since D        --config date=D / since=D
  -n / --dry-run, --cores N   -n, --cores N
  -v / --verbose              LEAD_RECOVERY_VERBOSE=1 snakemake ...
  --profile P                 --workflow-profile profiles/P (with a cluster executor:
                              PYTHONPATH=.venv/executors, and the cluster checked first)
The exit status is Snakemake's.
"""


@click.group(PROG, invoke_without_command=True, context_settings=CONTEXT, epilog=_EPILOG)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Daily lead-recovery recipes as a Snakemake workflow with date-keyed Redshift markers."""
    if ctx.invoked_subcommand is None:
        raise UsageError(
            "a command is required: run, markers, cron, report, demo or doctor "
            f"(see '{PROG} --help')"
        )


@cli.command(context_settings=CONTEXT, epilog=_RUN_EPILOG)
@click.option(
    "--recipe",
    "names",
    multiple=True,
    metavar="RECIPE",
    help="The recipe to run (repeatable; default: every recipe).",
)
@click.option(
    "--ignore-redshift-marker",
    is_flag=True,
    help="Query Redshift again even if today's marker exists.",
)
@click.option(
    "--skip-redshift",
    is_flag=True,
    help="Do not query Redshift or check/create markers; use the newest cached extract "
    "or leads.csv.",
)
@click.option("--date", metavar="YYYYMMDD", help="Run date (default: today).")
@click.option(
    "--since", metavar="YYYYMMDD", help="Catch up: every run date from this one to --date."
)
@click.option("-n", "--dry-run", is_flag=True, help="Only show what would run.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print everything: Snakemake's banner, job blocks and progress, and the jobs' "
    "notes (default: the decisions, warnings, errors and the account).",
)
@click.option("--cores", metavar="N", help="Snakemake --cores (default: the profile's).")
@click.option(
    "--profile",
    metavar="NAME",
    help="Run with profiles/NAME (e.g. slurm: the jobs go to the cluster; docs/cluster.md).",
)
@repo_option
@click.pass_obj
def run(obj: dict | None, **options: object) -> int:
    """Run the workflow through Snakemake for some recipes (default: all) and a run date."""
    extra = (obj or {}).get("extra", [])
    verbose = bool(options.pop("verbose", False))
    repo, cmd = snakemake_command(extra=extra, **options)  # type: ignore[arg-type]
    env = dict(os.environ)
    if verbose:  # profiles/default is quiet without it; the jobs read it too
        env[jobs.VERBOSE_ENV] = "1"
    if options.get("profile"):
        dry_run = bool(options.get("dry_run")) or passthrough.parse(extra).dry_run
        try:
            env = cluster_environment(repo, str(options["profile"]), env, check=not dry_run)
        except Refused as err:  # the cluster cannot take jobs: nothing was submitted
            print(f"{PROG}: error: {err}", file=sys.stderr)
            return NO
    said = shlex.join(["snakemake", *cmd[3:]])
    if verbose:
        said = f"{jobs.VERBOSE_ENV}=1 {said}"
    print(f"{PROG}: running in {repo}: {said}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os.chdir(repo)
    os.execve(cmd[0], cmd, env)  # Snakemake's exit status and signals are ours
    return 1  # not reached


def cluster_environment(
    repo: Path, profile: str, env: dict[str, str], *, check: bool = True
) -> dict[str, str]:
    """The environment of a run with ``profiles/<profile>``: with a cluster executor, its
    plugins on PYTHONPATH (lead_recovery/cluster.py), and (``check``) a Slurm cluster
    proven able to take the jobs before Snakemake starts (one line if not: :class:`Refused`).
    """
    settings = cluster.profile_settings(repo / "profiles" / profile)
    executor = str(settings.get("executor") or "local")
    if executor in ("local", "dryrun", "touch"):
        return env
    if not cluster.plugin_installed(executor):
        raise UsageError(
            f"profile {profile}: executor '{executor}' is not installed (`make venv` "
            f"installs snakemake-executor-plugin-{executor} into {cluster.executors_dir()})"
        )
    if executor == "slurm" and check:
        resources = dict(
            str(item).split("=", 1)
            for item in settings.get("default-resources") or []
            if "=" in str(item)
        )
        try:
            cluster.check_slurm(resources.get("slurm_partition") or None)
        except LeadRecoveryError as err:
            raise Refused(str(err)) from None
    return cluster.with_executors(env)


def snakemake_command(
    *,
    names: tuple[str, ...] = (),
    ignore_redshift_marker: bool = False,
    skip_redshift: bool = False,
    date: str | None = None,
    since: str | None = None,
    dry_run: bool = False,
    cores: str | None = None,
    profile: str | None = None,
    repo: str | None = None,
    extra: list[str] | None = None,
) -> tuple[Path, list[str]]:
    """The workflow folder and the ``snakemake`` command line these options mean.

    ``extra`` (the arguments after ``--``) all reach Snakemake: a list option given
    there and here too (``--config``) becomes one, the user's values last, so they
    win (cli/passthrough.py); the user's ``recipe``/``recipes`` replace ``--recipe``.
    """
    given = passthrough.parse(extra or [])
    folder = find_repo(repo)
    config = lr_config.load(folder)
    recipes_dir = folder / config["recipes_dir"]
    for name in names:
        recipes.validate_name(name)
        if not (recipes_dir / name).is_dir():
            recipes.load(recipes_dir, name)  # raises "unknown recipe ... known recipes: ..."
    settings = []
    if given.config_keys() & {"recipe", "recipes"}:
        pass  # the user's own choice of recipes, whole: not added to --recipe's
    elif len(names) == 1:
        settings.append(f"recipe={names[0]}")
    elif names:
        settings.append(f"recipes=[{','.join(names)}]")
    if ignore_redshift_marker:
        settings.append("ignore_redshift_marker=true")
    if skip_redshift:
        settings.append("skip_redshift=true")
    if date is not None:
        settings.append(f"date={rundate.parse_date(date)}")
    if since is not None:
        settings.append(f"since={rundate.parse_date(since)}")
    cmd = [sys.executable, "-m", "snakemake"]
    if profile is not None:
        if not (folder / "profiles" / profile / "config.yaml").is_file():
            known = sorted(p.parent.name for p in (folder / "profiles").glob("*/config.yaml"))
            raise UsageError(
                f"unknown profile '{profile}' (no profiles/{profile}/config.yaml; "
                f"profiles: {', '.join(known) or 'none'})"
            )
        cmd += ["--workflow-profile", f"profiles/{profile}"]
    if dry_run:
        cmd.append("-n")
    if cores is not None:
        cmd += ["--cores", cores]
    cmd += given.command(settings)
    return folder, cmd


cli.add_command(markers.cli, "markers")
cli.add_command(cron.command, "cron")
cli.add_command(report.command, "report")
cli.add_command(demo.command, "demo")
cli.add_command(doctor.command, "doctor")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["markers"]:  # the helper parses its own two forms (incl. --action)
        return markers.main(argv[1:], prog=f"{PROG} markers")
    extra: list[str] = []
    if argv[:1] == ["run"] and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    return invoke(cli, argv, PROG, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
