"""What every ``lead-recovery`` command shares: running a click command the
project's way (one-line errors, exit codes), finding the workflow folder, and
printing a table or its JSON.

Exit status everywhere: 0 done; 1 not done or refused; 2 bad input (one line
on stderr, nothing touched).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from lead_recovery import config as lr_config
from lead_recovery.errors import LeadRecoveryError

OK, NO, USAGE = 0, 1, 2
# Examples in --help keep their lines (click rewraps paragraphs otherwise).
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UsageError(LeadRecoveryError):
    """Bad input: one line on stderr, exit 2, nothing touched."""


class Refused(LeadRecoveryError):
    """A command that would do the wrong thing and was not forced: exit 1."""


def invoke(command: click.Command, argv: Sequence[str], prog: str, **extra: Any) -> int:
    """Run ``command`` on ``argv``; every error is one line on stderr and an exit code."""
    try:
        code = command.main(
            args=list(argv), prog_name=prog, standalone_mode=False, obj=extra or None
        )
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else prog
        message = err.format_message().rstrip(".")
        print(f"{prog}: error: {message} (see '{where} --help')", file=sys.stderr)
        return USAGE
    except click.Abort:
        return 130
    except Refused as err:
        print(f"{prog}: refused: {err}", file=sys.stderr)
        return NO
    except LeadRecoveryError as err:  # bad input, bad config, bad date: nothing touched
        print(f"{prog}: error: {err}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:  # `lead-recovery markers list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return NO
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        print(f"{prog}: error: {err.strerror or err}{where}", file=sys.stderr)
        return NO
    return code if isinstance(code, int) else OK


def find_repo(given: str | None) -> Path:
    """``--repo``, else the current directory if it is a workflow, else the installed one."""
    if given:
        repo = Path(given)
        if not (repo / lr_config.CONFIG_FILE).is_file():
            raise UsageError(f"--repo {given}: no {lr_config.CONFIG_FILE} there")
        return repo.resolve()
    cwd = Path.cwd()
    if (cwd / lr_config.CONFIG_FILE).is_file():
        return cwd
    return Path(__file__).resolve().parents[2]


def show_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the current directory if inside it;
    a URL as it is (``s3://bucket/key``: relpath would make it ``s3:/bucket/key``)."""
    text = str(path)
    if "://" in text:
        return text
    try:
        rel = os.path.relpath(text)
    except ValueError:
        return text
    return text if rel.startswith("..") else rel


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain text table (tabulate), cells as given: no number reformatting."""
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def repo_option(func):
    return click.option(
        "--repo",
        metavar="DIR",
        help="The workflow folder (default: the current directory if it has "
        "config/config.yaml, else the folder of the installed workflow).",
    )(func)
