"""The command line: ``lead-recovery run|markers|cron`` (click), and its old aliases.

Importing this package first checks that the dependencies are there, so a
command started with a Python that lacks them (``python3 -m
lead_recovery.cli.main run`` outside the venv) says how to run it in one line
instead of a ``ModuleNotFoundError`` traceback.
"""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("click", "tabulate", "yaml", "snakemake")


def missing_dependencies() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


if missing_dependencies():
    sys.exit(
        f"lead-recovery: {', '.join(missing_dependencies())} not installed for {sys.executable}; "
        f"run `make run` once in {REPO}, then use {REPO}/.venv/bin/lead-recovery ... "
        "(or .venv/bin/python instead of python3)"
    )
