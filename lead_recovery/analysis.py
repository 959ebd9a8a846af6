"""A recipe's processing: leads in, ``analysis.csv`` and ``summary.json`` out.

A recipe may ship ``analyzer.py`` with ``analyze(leads, run_date)``
returning a DataFrame; without one the leads pass through. Either way the
output has exactly the recipe's ``output_columns``, in that order.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lead_recovery import atomic
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.recipes import Recipe
from lead_recovery.rundate import to_date

log = logging.getLogger("lead_recovery")


def load_leads(path: str | Path, recipe: str) -> pd.DataFrame:
    """Leads from a cached Parquet extract or a recipe's ``leads.csv``."""
    path = Path(path)
    try:
        if path.suffix == ".csv":
            # Text, not numbers: phone numbers and ids keep their "+" and leading zeros.
            return pd.read_csv(path, dtype="string")
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LeadRecoveryError(f"recipe '{recipe}': cannot read leads {path}: {first}") from None


def _recipe_code_error(recipe: Recipe, err: Exception, what: str = "raised") -> LeadRecoveryError:
    """``analyzer.py:LINE raised ValueError: boom``: the line in the recipe's own file.

    The whole traceback goes to the job's log (debug level: the log file, not
    the console), where the recipe's author needs it.
    """
    log.debug(
        "recipe %s: analyzer.py %s:\n%s",
        recipe.name,
        what,
        "".join(traceback.format_exception(err)),
    )
    where = os.path.realpath(str(recipe.analyzer))
    frames = traceback.extract_tb(err.__traceback__)
    lines = [f.lineno for f in frames if os.path.realpath(f.filename) == where]
    if isinstance(err, SyntaxError) and os.path.realpath(err.filename or "") == where:
        lines.append(err.lineno)
    at = f"analyzer.py:{lines[-1]}" if lines else "analyzer.py"
    message = str(err).splitlines()[0] if str(err) else ""
    return LeadRecoveryError(
        f"recipe '{recipe.name}': {at} {what} {type(err).__name__}"
        + (f": {message}" if message else "")
        + " (traceback in the job log)"
    )


def _analyzer(recipe: Recipe):
    path = recipe.analyzer
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location(f"lead_recovery_recipe_{recipe.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a recipe's own code: report it, whatever it raised
        raise _recipe_code_error(recipe, err, "failed to load") from None
    func = getattr(module, "analyze", None)
    if not callable(func):
        raise LeadRecoveryError(
            f"recipe '{recipe.name}': analyzer.py must define analyze(leads, run_date) ({path})"
        )
    return func


def analyze(leads: pd.DataFrame, recipe: Recipe, run_date: str) -> pd.DataFrame:
    """Dedupe, run the recipe's analyzer, and keep the declared columns."""
    if recipe.dedupe_on:
        missing = [c for c in recipe.dedupe_on if c not in leads.columns]
        if missing:
            raise LeadRecoveryError(
                f"recipe '{recipe.name}': dedupe_on names column(s) {', '.join(missing)} "
                f"that the leads lack (have: {', '.join(map(str, leads.columns))})"
            )
        leads = leads.drop_duplicates(subset=recipe.dedupe_on, keep="first")
    func = _analyzer(recipe)
    result = leads
    if func is not None:
        try:
            result = func(leads, to_date(run_date))
        except Exception as err:  # a recipe's own code: report it, whatever it raised
            raise _recipe_code_error(recipe, err) from None
        if not isinstance(result, pd.DataFrame):
            raise LeadRecoveryError(
                f"recipe '{recipe.name}': analyze() returned "
                f"{type(result).__name__}, not a DataFrame"
            )
    missing = [c for c in recipe.output_columns if c not in result.columns]
    if missing:
        raise LeadRecoveryError(
            f"recipe '{recipe.name}': output_columns names column(s) {', '.join(missing)} "
            f"that the data lacks (has: {', '.join(map(str, result.columns))})"
        )
    return result.loc[:, recipe.output_columns]


def write_outputs(
    result: pd.DataFrame,
    summary: dict[str, Any],
    analysis_out: str | Path,
    summary_out: str | Path,
) -> None:
    atomic.replace_with(analysis_out, lambda p: result.to_csv(p, index=False))
    summary = {
        **summary,
        "rows_out": len(result),
        "written_at": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
    }
    atomic.replace_with(
        summary_out, lambda p: p.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    )
