"""The Snakemake report's own pages: the last run's account and two figures.

``snakemake --report report.html`` shows, beside Snakemake's rule graph,
what a person wants to see at a glance rather than read in a cron log: the
last run's account, the report's totals, rows per day per recipe (a late
upstream shows as a dip), and queries run against queries avoided per day
(what the markers spare the warehouse). Everything comes from the run
history (history.py), the same events ``lead-recovery report`` adds up.

The figures are SVG drawn with matplotlib, text as paths: an ``<img>`` in the
report page that needs no font, script or network at view time. The account
is a small HTML page with no script at all; every text in it is escaped.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from lead_recovery import account, history

RUN = "queries run"
AVOIDED = "queries avoided"
CHECKS = "watermark checks"
# Beyond this many recipes, the rows figure keeps the largest and says how many it left out.
MAX_LINES = 12


def latest_run(events: Sequence[history.Event]) -> list[history.Event]:
    """The events of the run recorded last (what its end-of-run account said)."""
    if not events:
        return []
    last = max(range(len(events)), key=lambda i: (events[i].at, i))
    run_id, at = events[last].run_id, events[last].at
    return [e for e in events if e.run_id == run_id and (run_id is not None or e.at == at)]


def account_lines(events: Iterable[history.Event]) -> list[str]:
    """A run's account as it printed it, read back from its history events."""
    lines = [
        account.Line(
            e.recipe,
            e.run_date,
            "failed" if e.decision in ("failed", "suspect") else e.decision,
            e.reason,
        )
        for e in events
    ]
    return account.render(lines)


def queries_per_day(events: Iterable[history.Event], tz: tzinfo | None) -> dict[date, Counter]:
    """Per day the runs happened on (in ``tz``): queries run, avoided, watermark checks.

    The day of the run, not the run date: a catch-up run's queries all hit the
    warehouse on the day it ran.
    """
    days: dict[date, Counter] = defaultdict(Counter)
    for event in events:
        day = datetime.fromisoformat(event.at).astimezone(tz).date()
        if event.decision == "queried":
            days[day][RUN] += 1
        elif event.decision == "cached":
            days[day][AVOIDED] += 1
        if event.watermark_check:
            days[day][CHECKS] += 1
    return dict(sorted(days.items()))


def rows_per_day(events: Iterable[history.Event]) -> dict[str, dict[date, int]]:
    """Per recipe and run date, the rows of the day's extract as the last event saw them.

    Queried and cached days carry the extract's rows; a recipe without
    Redshift (or a failed day) has none to show.
    """
    rows: dict[str, dict[date, int]] = defaultdict(dict)
    for event in events:
        if event.decision in ("queried", "cached") and event.rows is not None:
            rows[event.recipe][datetime.strptime(event.run_date, "%Y%m%d").date()] = event.rows
    return {name: dict(sorted(days.items())) for name, days in sorted(rows.items())}


def _figure(title: str) -> tuple[Any, Any]:
    """A figure and its axes, without pyplot (no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=12)
    axes.grid(axis="y", color="#dddddd", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _days_axis(axes: Any, days: Iterable[date], since: datetime, now: datetime) -> None:
    """An x axis of whole days covering the period and every day drawn (a catch-up
    run's older run dates too), at most about ten labels."""
    import matplotlib.dates as mdates

    first = min(since.date(), *days)
    last = max(now.date(), *days)
    axes.set_xlim(mdates.date2num(first) - 0.6, mdates.date2num(last) + 0.6)
    locator = mdates.DayLocator(interval=max(1, math.ceil(((last - first).days + 1) / 10)))
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _nothing(axes: Any, since: datetime) -> None:
    axes.text(
        0.5,
        0.5,
        f"no runs recorded since {since:%Y-%m-%d %H:%M}",
        transform=axes.transAxes,
        ha="center",
        va="center",
        color="#666666",
    )
    axes.set_yticks([])
    axes.set_xticks([])


def _save(figure: Any, out: str | Path) -> None:
    """SVG with every glyph as a path and stable ids: no font or network at view time."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "lead-recovery"}):
        figure.savefig(out, format="svg", metadata={"Date": None})


def draw_queries(
    days: dict[date, Counter], out: str | Path, *, since: datetime, now: datetime
) -> None:
    """Grouped bars per day: queries run, queries avoided (a marker reused), watermark checks."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(f"Queries run and avoided per day, since {since:%Y-%m-%d}")
    if not days:
        _nothing(axes, since)
    else:
        series = ((RUN, "#3b6fd4"), (AVOIDED, "#2e9d5b"), (CHECKS, "#e0a030"))
        width = 0.27
        xs = [mdates.date2num(day) for day in days]
        for i, (name, colour) in enumerate(series):
            heights = [counts[name] for counts in days.values()]
            axes.bar([x + (i - 1) * width for x in xs], heights, width, label=name, color=colour)
        _days_axis(axes, days, since, now)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("recipe-days")
        axes.legend(loc="upper left", frameon=False, ncols=3)
        axes.margins(y=0.15)
    _save(figure, out)


def draw_rows(
    rows: dict[str, dict[date, int]], out: str | Path, *, since: datetime, now: datetime
) -> None:
    """One line per recipe: the rows of each run date's extract."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(f"Rows per day per recipe (extracts), runs since {since:%Y-%m-%d}")
    if not rows:
        _nothing(axes, since)
    else:
        shown = sorted(rows, key=lambda name: -sum(rows[name].values()))[:MAX_LINES]
        for name in sorted(shown):
            days = rows[name]
            axes.plot(list(days), list(days.values()), marker="o", linewidth=1.6, label=name)
        _days_axis(axes, [day for name in shown for day in rows[name]], since, now)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylim(0, max(max(rows[name].values()) for name in shown) * 1.15 or 1)
        axes.set_ylabel("rows")
        left_out = len(rows) - len(shown)
        title = f"recipes ({left_out} smaller ones not shown)" if left_out else None
        axes.legend(loc="lower left", frameon=False, title=title, fontsize="small")
    _save(figure, out)


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 0.2em; }
h2 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
p.when { color: #555; margin: 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
table { border-collapse: collapse; }
table { font-size: 13px; }
th, td { padding: 0.2em 0.55em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; }
"""


def account_html(
    events: Sequence[history.Event], *, since: datetime, now: datetime, where: str
) -> str:
    """The report's account page: the last run's account, then the period's totals."""
    esc = html.escape
    last = latest_run(events)
    per_recipe, total = history.summarize(events)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Lead recovery: account</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Lead recovery: what the runs did</h1>",
        f'<p class="when">since {esc(since.isoformat(timespec="seconds"))} up to '
        f"{esc(now.isoformat(timespec='seconds'))}, from the run history in {esc(where)}</p>",
    ]
    if last:
        who = f"{last[0].run_id or 'unknown'} at {last[0].at} by {last[0].user_at_host}"
        parts += [
            f"<h2>The last run ({esc(who)})</h2>",
            '<pre id="last-run">' + esc("\n".join(account_lines(last))) + "</pre>",
        ]
    else:
        parts.append('<h2>The last run</h2><p id="last-run">No run recorded in this period.</p>')
    cells = history.table_rows(per_recipe, total)
    head = "".join(f"<th>{esc(h)}</th>" for h in history.HEADERS)
    body = "".join(
        f"<tr{' class=total' if i == len(cells) - 1 else ''}>"
        + "".join(f"<td>{esc(str(cell))}</td>" for cell in row)
        + "</tr>"
        for i, row in enumerate(cells)
    )
    parts += [
        "<h2>Queries run and avoided in this period (lead-recovery report)</h2>",
        f'<table id="totals"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(
    store: Any,
    *,
    since: datetime,
    now: datetime,
    tz: tzinfo | None,
    account_out: str | Path,
    rows_out: str | Path,
    queries_out: str | Path,
) -> dict[str, Any]:
    """Write the account page and both figures for the events since ``since``."""
    events = list(history.read(store, since))
    Path(account_out).write_text(
        account_html(events, since=since, now=now, where=store.location(history.FOLDER)),
        encoding="utf-8",
    )
    draw_rows(rows_per_day(events), rows_out, since=since, now=now)
    draw_queries(queries_per_day(events, tz), queries_out, since=since, now=now)
    return {"events": len(events), "runs": len({e.run_id for e in events})}
