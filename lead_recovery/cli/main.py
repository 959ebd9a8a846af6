"""``lead-recovery``: the previous system's command line, running the Snakemake workflow.

    lead-recovery run [--recipe R] [--ignore-redshift-marker] [--skip-redshift]
                      [--date YYYYMMDD] [--since YYYYMMDD] [-n] [--cores N]
                      [--repo DIR] [-- SNAKEMAKE-ARGS...]
    lead-recovery markers ...        (the ``markers`` helper)

``python -m lead_recovery.cli.main run --recipe R`` keeps existing crontabs
and docs working: it becomes ``snakemake --config recipe=R ...`` run in the
workflow folder, and the exit status is Snakemake's (the process *becomes*
Snakemake, so signals from cron or a terminal reach it directly).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from lead_recovery.cli.markers import UsageError, _Parser, find_repo
from lead_recovery.errors import LeadRecoveryError

PROG = "lead-recovery"
USAGE = 2

_RUN_EPILOG = """\
Equivalent Snakemake flags (run in the workflow folder):
  --recipe R                  --config recipe=R   (repeat for several: recipes=[A,B])
  --ignore-redshift-marker    --config ignore_redshift_marker=true
  --skip-redshift             --config skip_redshift=true
  --date D / --since D        --config date=D / since=D
  -n / --dry-run, --cores N   -n, --cores N
Anything after `--` goes to snakemake unchanged. The exit status is Snakemake's.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Run the lead-recovery workflow (Snakemake) the way the previous CLI did.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run the workflow for one recipe (or all) through Snakemake",
        description="Run the workflow through Snakemake for one recipe (default: every "
        "recipe) and today's run date (or --date).",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--recipe",
        action="append",
        metavar="RECIPE",
        help="the recipe to run (repeatable; default: every recipe)",
    )
    run.add_argument(
        "--ignore-redshift-marker",
        action="store_true",
        help="query Redshift again even if today's marker exists",
    )
    run.add_argument(
        "--skip-redshift",
        action="store_true",
        help="do not query Redshift or check/create markers; use the newest cached "
        "extract or leads.csv",
    )
    run.add_argument("--date", metavar="YYYYMMDD", help="run date (default: today)")
    run.add_argument(
        "--since", metavar="YYYYMMDD", help="catch up: every run date from this one to --date"
    )
    run.add_argument("-n", "--dry-run", action="store_true", help="only show what would run")
    run.add_argument("--cores", metavar="N", help="Snakemake --cores (default: the profile's)")
    run.add_argument(
        "--repo",
        metavar="DIR",
        help="the workflow folder (default: the current directory if it has "
        "config/config.yaml, else the folder of the installed workflow)",
    )
    sub.add_parser(
        "markers",
        help="the marker helper: list, check, create, delete, prune (see 'markers --help')",
        add_help=False,
    )
    return parser


def snakemake_command(args: argparse.Namespace, extra: list[str]) -> tuple[Path, list[str]]:
    """The workflow folder and the ``snakemake`` command line equivalent to ``args``."""
    from lead_recovery import config as lr_config
    from lead_recovery import recipes, rundate

    repo = find_repo(args.repo)
    config = lr_config.load(repo)
    recipes_dir = Path(config["recipes_dir"])
    if not recipes_dir.is_absolute():
        recipes_dir = repo / recipes_dir
    settings: list[str] = []
    names = args.recipe or []
    for name in names:
        recipes.validate_name(name)
        if not (recipes_dir / name).is_dir():
            recipes.load(recipes_dir, name)  # raises "unknown recipe ... known recipes: ..."
    if len(names) == 1:
        settings.append(f"recipe={names[0]}")
    elif names:
        settings.append(f"recipes=[{','.join(names)}]")
    if args.ignore_redshift_marker:
        settings.append("ignore_redshift_marker=true")
    if args.skip_redshift:
        settings.append("skip_redshift=true")
    if args.date is not None:
        settings.append(f"date={rundate.parse_date(args.date)}")
    if args.since is not None:
        settings.append(f"since={rundate.parse_date(args.since)}")
    cmd = [sys.executable, "-m", "snakemake"]
    if args.dry_run:
        cmd.append("-n")
    if args.cores is not None:
        cmd += ["--cores", args.cores]
    cmd += extra
    if settings:
        cmd += ["--config", *settings]
    return repo, cmd


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "markers":
        from lead_recovery.cli import markers

        return markers.main(argv[1:])
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: run or markers (see '{PROG} --help')")
        repo, cmd = snakemake_command(args, extra)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else USAGE
    except LeadRecoveryError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return USAGE
    shown = shlex.join(["snakemake", *cmd[3:]])
    print(f"{PROG}: running in {repo}: {shown}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    try:
        os.chdir(repo)
        os.execv(cmd[0], cmd)  # Snakemake's exit status and signals are ours
    except OSError as err:
        print(f"{PROG}: error: cannot run snakemake: {err}", file=sys.stderr)
        return 1
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
