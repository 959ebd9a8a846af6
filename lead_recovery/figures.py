"""The Snakemake report's own pages: what the markers saved, the last run's account,
and two figures.

``lead-recovery report --html`` opens on the question the report exists for:
over the period, how many warehouse queries ran and how many the markers
avoided, and how much warehouse time was spent and spared, as four figures
and a plot per day (the *overview*, at the top of the account page, which
the report's first screen shows too). Then the last run's account and the
report's totals, and two figures of their own: rows per day per recipe (a
late upstream shows as a dip) and queries run against queries avoided per
day. Everything comes from the run history (history.py), the same events
``lead-recovery report`` adds up.

The figures are SVG drawn with matplotlib, text as paths: an ``<img>`` in the
report page that needs no font, script or network at view time. Text from
the history (recipe names) is drawn as written, never read as mathtext. The
account is a small HTML page with no script at all; every text in it is
escaped, and its style applies only inside it, so it can sit in the report's
own page.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

import yaml

from lead_recovery import account, history

RUN = "queries run"
AVOIDED = "queries avoided"
CHECKS = "watermark checks"
SPENT = "warehouse time spent"
SPARED = "warehouse time spared"
COLOURS = {RUN: "#3b6fd4", AVOIDED: "#2e9d5b", CHECKS: "#e0a030"}
COLOURS[SPENT], COLOURS[SPARED] = COLOURS[RUN], COLOURS[AVOIDED]
# Beyond this many recipes, the rows figure keeps the largest and says how many it left out.
MAX_LINES = 12


def latest_run(events: Sequence[history.Event]) -> list[history.Event]:
    """The events of the run recorded last (what its end-of-run account said)."""
    if not events:
        return []
    last = max(range(len(events)), key=lambda i: (datetime.fromisoformat(events[i].at), i))
    run_id, at = events[last].run_id, events[last].at
    return [e for e in events if e.run_id == run_id and (run_id is not None or e.at == at)]


def account_lines(events: Iterable[history.Event]) -> list[str]:
    """A run's account as it printed it, read back from its history events."""
    return account.render(account.from_event(e) for e in events)


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


def time_per_day(events: Iterable[history.Event], tz: tzinfo | None) -> dict[date, Counter]:
    """Per day the runs happened on (in ``tz``): warehouse seconds spent by the queries
    that ran, and spared by the markers reused (what their queries had taken)."""
    days: dict[date, Counter] = defaultdict(Counter)
    for event in events:
        day = datetime.fromisoformat(event.at).astimezone(tz).date()
        if event.decision == "queried":
            days[day][SPENT] += event.seconds or 0.0
        elif event.decision == "cached":
            days[day][SPARED] += event.seconds or 0.0
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


@contextlib.contextmanager
def _drawing() -> Iterator[None]:
    """Settings every figure is drawn and saved under: text as written (a recipe
    named ``$\\foo{$`` is a name, not mathtext), glyphs as paths and stable ids
    (no font or network at view time, the same bytes for the same figure)."""
    import matplotlib

    with matplotlib.rc_context(
        {"text.parse_math": False, "svg.fonttype": "path", "svg.hashsalt": "lead-recovery"}
    ):
        yield


def _figure(title: str, *, rows: int = 1, size: tuple[float, float] = (9, 4.2)) -> tuple[Any, Any]:
    """A figure and its axes, without pyplot (no GUI backend, no global state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    axes[0].set_title(title, loc="left", fontsize=12)
    for one in axes:
        one.grid(axis="y", color="#dddddd", linewidth=0.8)
        one.set_axisbelow(True)
        for side in ("top", "right"):
            one.spines[side].set_visible(False)
    return figure, (axes[0] if rows == 1 else list(axes))


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


def _save(figure: Any, out: str | Path | io.BytesIO) -> None:
    figure.savefig(out, format="svg", metadata={"Date": None})


def _bars(axes: Any, days: dict[date, Counter], series: Sequence[str], scale: float = 1) -> None:
    """Grouped bars per day, one colour per series, side by side within the day."""
    import matplotlib.dates as mdates

    width = 0.8 / len(series)
    xs = [mdates.date2num(day) for day in days]
    for i, name in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        heights = [counts[name] / scale for counts in days.values()]
        axes.bar([x + offset for x in xs], heights, width, label=name, color=COLOURS[name])


def queries_figure(days: dict[date, Counter], *, since: datetime, now: datetime) -> Any:
    """Grouped bars per day: queries run, queries avoided (a marker reused), watermark checks."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(f"Queries run and avoided per day, since {since:%Y-%m-%d}")
    if not days:
        _nothing(axes, since)
        return figure
    _bars(axes, days, (RUN, AVOIDED, CHECKS))
    _days_axis(axes, days, since, now)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("recipe-days")
    axes.legend(loc="upper left", frameon=False, ncols=3)
    axes.margins(y=0.15)
    return figure


def draw_queries(
    days: dict[date, Counter], out: str | Path, *, since: datetime, now: datetime
) -> None:
    """Grouped bars per day: queries run, queries avoided (a marker reused), watermark checks."""
    with _drawing():
        _save(queries_figure(days, since=since, now=now), out)


def rows_figure(rows: dict[str, dict[date, int]], *, since: datetime, now: datetime) -> Any:
    """One line per recipe: the rows of each run date's extract."""
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure(f"Rows per day per recipe (extracts), runs since {since:%Y-%m-%d}")
    if not rows:
        _nothing(axes, since)
        return figure
    shown = sorted(rows, key=lambda name: -sum(rows[name].values()))[:MAX_LINES]
    lines = []
    for name in sorted(shown):
        days = rows[name]
        lines += axes.plot(list(days), list(days.values()), marker="o", linewidth=1.6)
    _days_axis(axes, [day for name in shown for day in rows[name]], since, now)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max(max(rows[name].values()) for name in shown) * 1.15 or 1)
    axes.set_ylabel("rows")
    left_out = len(rows) - len(shown)
    title = f"recipes ({left_out} smaller ones not shown)" if left_out else None
    # labels given with their lines: matplotlib would hide a name that starts with "_"
    axes.legend(
        lines, sorted(shown), loc="lower left", frameon=False, title=title, fontsize="small"
    )
    return figure


def draw_rows(
    rows: dict[str, dict[date, int]], out: str | Path, *, since: datetime, now: datetime
) -> None:
    """One line per recipe: the rows of each run date's extract."""
    with _drawing():
        _save(rows_figure(rows, since=since, now=now), out)


def _time_unit(seconds: float) -> tuple[float, str]:
    """The unit a day's warehouse time reads best in: seconds, minutes or hours."""
    if seconds >= 2 * 3600:
        return 3600.0, "hours"
    if seconds >= 2 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def overview_figure(
    queries: dict[date, Counter], seconds: dict[date, Counter], *, since: datetime, now: datetime
) -> Any:
    """The first screen's plot: per day, queries run and avoided (above) and the
    warehouse time they spent and spared (below)."""
    from matplotlib.ticker import MaxNLocator

    figure, (counts, times) = _figure(f"Per day since {since:%Y-%m-%d}", rows=2, size=(9, 4.4))
    if not queries:
        _nothing(counts, since)
        _nothing(times, since)
        return figure
    _bars(counts, queries, (RUN, AVOIDED))
    counts.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts.set_ylabel("recipe-days")
    counts.legend(loc="upper left", frameon=False, ncols=2, fontsize="small")
    counts.margins(y=0.25)
    scale, unit = _time_unit(max((max(c.values(), default=0) for c in seconds.values()), default=0))
    _bars(times, seconds, (SPENT, SPARED), scale)
    times.set_ylabel(f"warehouse {unit}")
    times.legend(loc="upper left", frameon=False, ncols=2, fontsize="small")
    times.margins(y=0.25)
    _days_axis(times, queries, since, now)
    return figure


def overview_svg(
    queries: dict[date, Counter], seconds: dict[date, Counter], *, since: datetime, now: datetime
) -> bytes:
    with _drawing():
        out = io.BytesIO()
        _save(overview_figure(queries, seconds, since=since, now=now), out)
    return out.getvalue()


def duration_text(seconds: float) -> str:
    """Warehouse time as a person reads it: 0.23 s, 12.3 s, 4 min 05 s, 2 h 05 min.
    Rounded to the millisecond first, as ``report --json`` gives it: a sum of float
    seconds (1.80500001) would otherwise read 1.81 s on the page and 1.80 s from the
    JSON's 1.805."""
    seconds = round(seconds, 3)
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


# Scoped to the page's own element: the page is also shown inside the report's first
# screen, whose own styles must not change. Inside that screen (Snakemake puts the
# workflow description in a ".prose" column) only the overview shows, wider, and from
# the top (Snakemake centres its first screen: a taller one would lose its top).
_STYLE = """
#lr-account { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 1em; }
#lr-account h1 { font-size: 1.3em; margin: 0 0 0.2em; color: #222; }
#lr-account h2 { font-size: 1.05em; margin: 1.4em 0 0.4em; color: #222; }
#lr-account p { margin: 0.3em 0; }
#lr-account p.when { color: #555; }
#lr-account pre { background: #f6f6f6; color: #222; padding: 0.8em; overflow-x: auto;
  font-size: 12px; border-radius: 0; }
#lr-account table { border-collapse: collapse; font-size: 13px; margin: 0; }
#lr-account th, #lr-account td { padding: 0.2em 0.55em; text-align: right;
  border-bottom: 1px solid #ddd; }
#lr-account th:first-child, #lr-account td:first-child { text-align: left; }
#lr-account tr.total td { font-weight: bold; }
#lr-overview .lr-tiles { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr));
  gap: 0.6em; margin: 0.8em 0; }
#lr-overview .lr-tile { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.7em;
  border-top: 4px solid var(--lr-colour); }
#lr-overview .lr-value { font-size: 1.9em; font-weight: 600; line-height: 1.2; }
#lr-overview .lr-label { color: #555; font-size: 0.9em; }
#lr-overview { max-width: 60rem; }
#lr-overview img { display: block; width: 100%; height: auto; margin: 0.4em 0 0; }
.prose:has(#lr-account) { max-width: 60rem; }
.overflow-auto:has(#lr-account) { align-items: flex-start; }
.prose #lr-account { margin: 0; }
.prose #lr-account .lr-details { display: none; }
"""


def _tile(ident: str, value: str, label: str, colour: str) -> str:
    esc = html.escape
    return (
        f'<div class="lr-tile" id="{ident}" style="--lr-colour: {colour}">'
        f'<div class="lr-value">{esc(value)}</div><div class="lr-label">{esc(label)}</div></div>'
    )


def _days(count: int) -> str:
    return f"{count} recipe-day{'' if count == 1 else 's'}"


def overview_html(
    events: Sequence[history.Event],
    *,
    since: datetime,
    now: datetime,
    tz: tzinfo | None,
) -> str:
    """The answer first: queries run and avoided, warehouse time spent and spared,
    then the same per day."""
    esc = html.escape
    _, total = history.summarize(events)
    decided = total.queries + total.avoided
    share = f"{100 * total.avoided / decided:.0f}%" if decided else "none"
    svg = overview_svg(queries_per_day(events, tz), time_per_day(events, tz), since=since, now=now)
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    tiles = [
        _tile("lr-queries-run", str(total.queries), RUN, COLOURS[RUN]),
        _tile("lr-queries-avoided", str(total.avoided), AVOIDED, COLOURS[AVOIDED]),
        _tile("lr-time-spent", duration_text(total.seconds_spent), SPENT, COLOURS[SPENT]),
        _tile("lr-time-spared", duration_text(total.seconds_avoided), SPARED, COLOURS[SPARED]),
    ]
    return "\n".join(
        [
            '<section id="lr-overview">',
            "<h1>What the markers saved the warehouse</h1>",
            f'<p class="when">Since {esc(f"{since:%Y-%m-%d %H:%M}")} up to '
            f"{esc(f'{now:%Y-%m-%d %H:%M %Z}'.strip())}: of {_days(decided)} that needed the "
            f"warehouse's data, the markers served {share} without a query.</p>",
            '<div class="lr-tiles">' + "".join(tiles) + "</div>",
            f'<img id="lr-per-day" alt="queries run and avoided, and warehouse time spent and '
            f'spared, per day" src="{uri}">',
            "</section>",
        ]
    )


def account_html(
    events: Sequence[history.Event],
    *,
    since: datetime,
    now: datetime,
    where: str,
    tz: tzinfo | None = None,
) -> str:
    """The report's account page: the overview, the last run's account, then the
    period's totals per recipe."""
    esc = html.escape
    last = latest_run(events)
    per_recipe, total = history.summarize(events)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Lead recovery: account</title>',
        f"<style>{_STYLE}</style></head><body>",
        '<div id="lr-account">',
        overview_html(events, since=since, now=now, tz=tz),
        '<div class="lr-details">',
        f'<p class="when">From the run history in {esc(where)}, since '
        f"{esc(since.isoformat(timespec='seconds'))} up to "
        f"{esc(now.isoformat(timespec='seconds'))}.</p>",
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
        "</div></div></body></html>",
    ]
    return "\n".join(parts) + "\n"


# The report's first screen (``snakemake --report --report-metadata FILE``): Snakemake
# opens on these figures, under the workflow description, instead of on the rule graph.
# Numbers only: Snakemake 9.27 renders a text value as a list of docutils' parts.
def landing_metadata(events: Sequence[history.Event], skipped: history.Skipped) -> dict[str, int]:
    return {
        "runs recorded": len({e.run_id or e.at for e in events}),
        "recipe-days recorded": len(events),
        "unreadable history lines skipped": skipped.lines,
    }


def write(
    store: Any,
    *,
    since: datetime,
    now: datetime,
    tz: tzinfo | None,
    account_out: str | Path,
    rows_out: str | Path,
    queries_out: str | Path,
    metadata_out: str | Path | None = None,
) -> dict[str, Any]:
    """Write the account page, both figures and the first screen's figures for the
    events since ``since``."""
    skipped = history.Skipped()
    events = list(history.read(store, since, skipped))
    Path(account_out).write_text(
        account_html(events, since=since, now=now, where=store.location(history.FOLDER), tz=tz),
        encoding="utf-8",
    )
    draw_rows(rows_per_day(events), rows_out, since=since, now=now)
    draw_queries(queries_per_day(events, tz), queries_out, since=since, now=now)
    metadata = landing_metadata(events, skipped)
    if metadata_out is not None:
        Path(metadata_out).write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
    return {"events": len(events), "runs": metadata["runs recorded"], "skipped": skipped.lines}
