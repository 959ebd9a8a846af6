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

# -- the store (lead_recovery/store.py): paths relative to its root. With no ``store:``
# the root is the checkout's results_dir, so the seed's layout holds there.

MARKERS = "markers"  # the day's markers: redshift_queried_<recipe>_<YYYYMMDD>.marker
LEASES = f"{MARKERS}/.leases"  # one lease per recipe-day: <recipe>/<YYYYMMDD>.lease
HISTORY = f"{MARKERS}/.history"  # every run's outcomes: <YYYYMM>/<run>.jsonl
EXTRACTS = "extracts"  # below a day's folder: each query's result, written once


def lease_path(recipe: str, run_date: str) -> str:
    """The day's lease in the store: a file, never named like a marker."""
    return f"{LEASES}/{recipe}/{run_date}.lease"


def parse_lease_name(name: str) -> tuple[str, str] | None:
    """``(recipe, run_date)`` of ``<recipe>/<YYYYMMDD>.lease`` (relative to LEASES)."""
    recipe, _, rest = name.partition("/")
    day = rest[: -len(".lease")] if rest.endswith(".lease") else ""
    if not recipe or "/" in rest or len(day) != 8 or not day.isdigit():
        return None
    return recipe, day


def extract_path(recipe: str, run_date: str, query_id: str) -> str:
    """One query's result in the store: written once under a name of its own."""
    return f"{recipe}/{run_date}/{EXTRACTS}/{query_id}.parquet"


def legacy_extract(recipe: str, run_date: str) -> str:
    """Where markers written before extracts had names of their own keep theirs."""
    return f"{recipe}/{run_date}/leads.parquet"


def adopted_extract(recipe: str, run_date: str) -> str:
    """A legacy extract, linked where a checkout's copy can no longer replace it."""
    return f"{recipe}/{run_date}/{EXTRACTS}/legacy.parquet"


def extract_day(path: str | Path) -> str | None:
    """The run date of an extract file: its day folder's name, whether the file is a
    checkout's copy (``<day>/leads.parquet``) or a store's (``<day>/extracts/<id>.parquet``)."""
    parent = Path(path).parent
    day = parent.parent.name if parent.name == EXTRACTS else parent.name
    return day if len(day) == 8 and day.isdigit() else None


# -- the checkout's results_dir


def day_dir(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{results_dir}/{recipe}/{run_date}"


def leads_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    """The checkout's copy of a day's extract (or its converted ``leads.csv``)."""
    return f"{day_dir(results_dir, recipe, run_date)}/leads.parquet"


def suspect_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    """Where an extract that failed the recipe's ``expect:`` checks is kept, unmarked."""
    return f"{day_dir(results_dir, recipe, run_date)}/suspect.parquet"


def analysis_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{day_dir(results_dir, recipe, run_date)}/analysis.csv"


def summary_path(results_dir: str | Path, recipe: str, run_date: str) -> str:
    return f"{day_dir(results_dir, recipe, run_date)}/summary.json"


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
