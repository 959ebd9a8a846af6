"""Where each file of a recipe's day lives.

The rules, the scripts, the marker helper and the tests all compute paths
here; Snakemake rules call these functions with ``"{recipe}"`` and ``"{date}"``
to get their wildcard patterns, so a path is spelled in exactly one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lead_recovery import atomic


def day_dir(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{results_dir}/{recipe}/{run_date}"


def leads_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    """The cached extract (or converted ``leads.csv``) of one recipe and day."""
    return f"{day_dir(results_dir, recipe, run_date)}/leads.parquet"


def suspect_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    """Where an extract that failed the recipe's ``expect:`` checks is kept, unmarked."""
    return f"{day_dir(results_dir, recipe, run_date)}/suspect.parquet"


def analysis_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{day_dir(results_dir, recipe, run_date)}/analysis.csv"


def summary_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{day_dir(results_dir, recipe, run_date)}/summary.json"


def kept_dir(results_dir: str | Path, recipe: str, run_date: str) -> str:
    """Where a day's complete extract and marker are kept while a re-query runs (cache.py)."""
    return f"{day_dir(results_dir, recipe, run_date)}/.kept"


def latest_path(results_dir: str | Path, recipe: str) -> str:
    """A symlink to the newest day's ``analysis.csv`` of the recipe."""
    return f"{results_dir}/{recipe}/latest.csv"


def log_path(logs_dir: str | Path, step: str, recipe: str, run_date: str) -> str:
    return f"{logs_dir}/{recipe}/{run_date}/{step}.log"


def dates_with(results_dir: str | Path, recipe: str, filename: str, after: str = "") -> list[str]:
    """Run dates (oldest first, later than ``after``) whose folder holds ``filename``."""
    base = Path(results_dir) / recipe
    if not base.is_dir():
        return []
    return sorted(
        entry.name
        for entry in base.iterdir()
        if len(entry.name) == 8
        and entry.name.isdigit()
        and entry.name > after
        and (entry / filename).is_file()
    )


def dates_listed(names: Iterable[str], filename: str) -> list[str]:
    """Run dates (oldest first) holding ``filename`` in a listing of one recipe's folder
    (names relative to it, as an S3 listing gives them: ``20261127/leads.parquet``)."""
    found = set()
    for name in names:
        day, _, rest = name.partition("/")
        if rest == filename and len(day) == 8 and day.isdigit():
            found.add(day)
    return sorted(found)


def cached_extract_dates(results_dir: str | Path, recipe: str) -> list[str]:
    """Dates (oldest first) for which a cached ``leads.parquet`` exists."""
    return dates_with(results_dir, recipe, "leads.parquet")


def analysed_dates(results_dir: str | Path, recipe: str, after: str = "") -> list[str]:
    """Dates (oldest first, later than ``after``) for which an ``analysis.csv`` exists."""
    return dates_with(results_dir, recipe, "analysis.csv", after)


def point_latest(latest: str | Path, analysis: str | Path) -> None:
    """Make ``latest`` a relative symlink to ``analysis``, replaced atomically."""
    latest = Path(latest)
    relative = os.path.relpath(Path(analysis), latest.parent)
    tmp = atomic.temp_beside(latest)
    try:
        tmp.unlink()
        os.symlink(relative, tmp)
        os.replace(tmp, latest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
