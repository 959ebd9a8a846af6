"""``lead-recovery report``: what the markers saved over a period, from the run history."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import click

from lead_recovery import history, rundate
from lead_recovery.cli.common import CONTEXT, UsageError, print_json, table
from lead_recovery.cli.markers import Context, _where
from lead_recovery.errors import LeadRecoveryError

_EPILOG = """\b
Examples:
  lead-recovery report                  the last 30 days, per recipe and in total
  lead-recovery report --since 7d
  lead-recovery report --since 20261101 --json

\b
queries avoided: recipe-days served from a marker's cached extract;
seconds avoided: the warehouse time those markers' queries had taken.
"""


def since_instant(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from now (``30d``, ``12h``) or a date (YYYYMMDD)."""
    if text.isdigit() and len(text) == 8:
        day = rundate.to_date(rundate.parse_date(text))
        return datetime.combine(day, datetime.min.time(), now.tzinfo)
    return now - rundate.parse_duration(text, "--since")


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else str(timedelta(seconds=round(value)))


@click.command("report", context_settings=CONTEXT, epilog=_EPILOG)
@click.option("--since", default="30d", show_default=True, metavar="30d|YYYYMMDD")
@click.option("--json", "json", is_flag=True, help="One JSON object instead of a table.")
@_where
def command(since: str, json: bool, repo: str | None, marker_dir: str | None) -> int:
    """How many warehouse queries and seconds the markers spent and avoided."""
    ctx = Context.load(SimpleNamespace(repo=repo, marker_dir=marker_dir))
    try:
        start = since_instant(since, ctx.now)
    except LeadRecoveryError as err:
        raise UsageError(f"--since: {err}") from None
    per_recipe, total = history.summarize(history.read(ctx.marker_dir, start))
    if json:
        print_json(
            {
                "since": start.isoformat(timespec="seconds"),
                "recipes": {name: asdict(t) for name, t in per_recipe.items()},
                "total": asdict(total),
            }
        )
        return 0
    rows: list[list[Any]] = [
        [
            name,
            t.queries,
            t.avoided,
            t.watermark_checks,
            _seconds(t.seconds_spent),
            _seconds(t.seconds_avoided),
            t.rows,
            t.skipped,
            t.suspect,
            t.failures,
        ]
        for name, t in [*per_recipe.items(), ("TOTAL", total)]
    ]
    headers = [
        "RECIPE",
        "QUERIES",
        "AVOIDED",
        "WATERMARK CHECKS",
        "WAREHOUSE TIME",
        "TIME AVOIDED",
        "ROWS",
        "SKIPPED",
        "SUSPECT",
        "FAILED",
    ]
    sys.stdout.write(f"# since {start.isoformat(timespec='seconds')} ({ctx.marker_dir})\n")
    sys.stdout.write(table(rows, headers) + "\n")
    return 0
