"""``lead-recovery report``: what the markers saved over a period, from the run history;
with ``--html [FILE]``, also the Snakemake report page, which opens on the same figures
(then the account, the figures and the rule graph)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from lead_recovery import config as lr_config
from lead_recovery import history
from lead_recovery.cli.common import CONTEXT, NO, UsageError, print_json, show_path, table
from lead_recovery.cli.markers import Context, _where
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.store import share, shared_ground

_EPILOG = """\b
Examples:
  lead-recovery report                  the last 30 days, per recipe and in total
  lead-recovery report --since 7d
  lead-recovery report --since 20261101 --json
  lead-recovery report --html           also the page, in results/report/report.html
  lead-recovery report --html ~/leads-report.html

\b
queries avoided: recipe-days served from a marker's cached extract;
seconds avoided: the warehouse time those markers' queries had taken.
--html runs `snakemake report_figures` then `snakemake --report FILE` in the
workflow folder: it reads the history and never queries the warehouse.
"""

# Where --html writes the page unless told: beside its figures, under results/ (which
# git ignores), never in the checkout's root.
PAGE = "report/report.html"
_DEFAULT_PAGE = "<results_dir>/" + PAGE

# Kept for callers of the CLI module; the grammar lives in history.py.
since_instant = history.since_instant


class SnakemakeFailed(LeadRecoveryError):
    """A Snakemake step of ``--html`` failed: exit 1, its last line on stderr."""


@click.command("report", context_settings=CONTEXT, epilog=_EPILOG)
@click.option("--since", default="30d", show_default=True, metavar="30d|YYYYMMDD")
@click.option("--json", "json", is_flag=True, help="One JSON object instead of a table.")
@click.option(
    "--html",
    "html",
    metavar="[FILE]",
    type=click.Path(dir_okay=False),
    is_flag=False,
    flag_value=_DEFAULT_PAGE,
    help="Also write the Snakemake report page (self-contained HTML) to FILE "
    f"(default: {_DEFAULT_PAGE}, i.e. results/{PAGE}).",
)
@_where
def command(
    since: str,
    json: bool,
    html: str | None,
    repo: str | None,
    marker_dir: str | None,
    store: str | None,
) -> int:
    """How many warehouse queries and seconds the markers spent and avoided."""
    ctx = Context.load(SimpleNamespace(repo=repo, marker_dir=marker_dir, store=store))
    try:
        start = history.since_instant(since, ctx.now)
    except LeadRecoveryError as err:
        raise UsageError(f"--since: {err}") from None
    if html is not None:  # the page and its figures: on shared ground, as a run writes
        share(ctx.config, shared_ground(ctx.config, ctx.repo))
    page = None if html is None else _page(ctx, html)
    skipped = history.Skipped()
    per_recipe, total = history.summarize(history.read(ctx.store, start, skipped))
    if json:
        print_json(
            {
                "since": start.isoformat(timespec="seconds"),
                "recipes": {name: t.as_json() for name, t in per_recipe.items()},
                "total": total.as_json(),
                "skipped_lines": skipped.lines,
            }
        )
    else:
        where = ctx.store.location(history.FOLDER)
        sys.stdout.write(f"# since {start.isoformat(timespec='seconds')} ({where})\n")
        sys.stdout.write(table(history.table_rows(per_recipe, total), history.HEADERS) + "\n")
    if page is None:
        return 0
    sys.stdout.flush()
    try:
        write_page(ctx.repo, page, since=since, store=ctx.store.url)
    except SnakemakeFailed as err:
        print(f"lead-recovery: error: {err}", file=sys.stderr)
        return NO
    print(f"lead-recovery: report page written to {show_path(page)}", file=sys.stderr)
    return 0


def _page(ctx: Context, given: str) -> Path:
    """The page's path: as given, or results/report/report.html of the workflow (made
    if missing). Checked before anything is read, so bad input touches nothing."""
    if given == _DEFAULT_PAGE:
        page = _results(ctx.config, ctx.repo) / PAGE
        page.parent.mkdir(parents=True, exist_ok=True)
        return page
    if not given.endswith(".html"):
        raise UsageError(f"--html {given}: the page's file name must end in .html")
    page = Path(given).resolve()
    if not page.parent.is_dir():
        raise UsageError(f"--html {given}: no folder {Path(given).parent}/ to write it in")
    return page


def write_page(repo: Path, page: Path, *, since: str, store: str) -> None:
    """Draw the report's pages, then let Snakemake write its report around them.

    Two Snakemake runs in the workflow folder: ``report_figures`` (forced, so
    the page is as of now) builds the account and figures from the history,
    and ``--report`` collects them with the rule graph into one HTML file.
    Neither can query: the first has no recipe in its DAG, the second runs no
    job. ``--nolock``: the report only reads, so a run in progress never stops it.
    ``--report-metadata`` (Snakemake's landing-page metadata) is what makes the
    page open on the overview instead of on the rule graph.
    """
    settings = [f"report_since={since}", f"store={store}"]
    snakemake = [sys.executable, "-m", "snakemake"]
    _step(
        [*snakemake, "report_figures", "--forcerun", "report_figures", "--config", *settings],
        repo,
        "snakemake report_figures",
    )
    metadata = _results(lr_config.load(repo), repo) / "report" / "report_metadata.yaml"
    _step(
        [*snakemake, "--report", str(page), "--report-metadata", str(metadata), "--nolock"]
        + ["--config", *settings],
        repo,
        "snakemake --report",
    )


def _results(config: dict[str, Any], repo: Path) -> Path:
    """The workflow's results folder, where rule report_figures writes its pages."""
    results = Path(config["results_dir"])
    return results if results.is_absolute() else repo / results


def _step(cmd: list[str], repo: Path, what: str) -> None:
    """Run one Snakemake step quietly; on failure, the cause it printed as the error.
    The environment gets what cron's lacks (PATH, HOME, LANG), as cron's runs do:
    Snakemake's report reads ``PATH`` and stopped on ``KeyError: 'PATH'`` under ``env -i``."""
    from lead_recovery.cli.cron import prepare_environment

    env = dict(os.environ)
    prepare_environment(repo, env)
    done = subprocess.run(
        cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if done.returncode != 0:
        raise SnakemakeFailed(f"{what} failed (exit {done.returncode}): {_cause(done.stdout)}")


def _cause(output: str) -> str:
    """The line that says why: ours (``lead-recovery: error:`` or a job's ERROR line),
    else Snakemake's last error line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("lead-recovery: error:") or " ERROR " in line:
            return line.split("error: ", 1)[-1] if line.startswith("lead-recovery") else line
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1]
