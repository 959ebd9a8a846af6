"""The report's account page and figures (lead_recovery/figures.py), from history events."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import matplotlib
import pytest

from lead_recovery import account, figures, history

T0 = datetime(2025, 5, 12, 6, 0, tzinfo=UTC)


def event(minutes: int, decision: str, run_id: str, **changes) -> history.Event:
    fields = {
        "at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "recipe": "r",
        "run_date": "20250512",
        "decision": decision,
        "reason": "12 rows, 0.50 s" if decision == "queried" else "queried at x",
        "rows": 12,
        "seconds": 0.5,
        "warehouse": "redshift",
        "user_at_host": "ana@etl-1",
        "run_id": run_id,
        **changes,
    }
    return history.Event(**fields)


def test_queries_per_day_count_the_day_a_run_ran_in_the_configured_zone():
    late = 17 * 60 + 30  # 23:30 UTC is already the next day in Madrid
    events = [
        event(0, "queried", "a"),
        event(60, "cached", "b"),
        event(late, "cached", "c", watermark_check=True),
        event(late, "skipped", "c", recipe="csv", rows=None),
    ]
    utc = figures.queries_per_day(events, UTC)
    madrid = figures.queries_per_day(events, ZoneInfo("Europe/Madrid"))
    assert utc == {
        date(2025, 5, 12): Counter({figures.RUN: 1, figures.AVOIDED: 2, figures.CHECKS: 1})
    }
    assert madrid[date(2025, 5, 13)] == Counter({figures.AVOIDED: 1, figures.CHECKS: 1})


def test_rows_per_day_keep_the_last_extract_seen_for_each_recipe_and_run_date():
    events = [
        event(0, "queried", "a", rows=3),
        event(60, "queried", "b", rows=40),  # re-queried after a late upstream
        event(90, "failed", "c", rows=None),
        event(120, "queried", "d", run_date="20250513", rows=41),
        event(120, "skipped", "d", recipe="csv", rows=None),
    ]
    assert figures.rows_per_day(events) == {"r": {date(2025, 5, 12): 40, date(2025, 5, 13): 41}}


def test_the_account_page_shows_the_last_runs_account_with_every_text_escaped():
    events = [
        event(0, "queried", "first"),
        event(60, "cached", "last"),
        event(60, "failed", "last", recipe="x", reason="recipe 'x': <script>alert(1)</script>"),
    ]
    page = figures.account_html(events, since=T0, now=T0 + timedelta(hours=2), where="m/.history")
    expected = account.render(
        [
            account.Line("r", "20250512", "cached", "queried at x"),
            account.Line("x", "20250512", "failed", "recipe 'x': <script>alert(1)</script>"),
        ]
    )
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    shown = page.split('<pre id="last-run">')[1].split("</pre>")[0]
    assert shown.replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'") == "\n".join(
        expected
    )
    assert "first" not in shown


def test_the_figures_are_svg_with_text_as_paths_and_nothing_to_fetch(tmp_path):
    events = [event(0, "queried", "a"), event(60 * 24, "cached", "b", run_date="20250513")]
    now = T0 + timedelta(days=2)
    for name, draw, data in [
        ("rows", figures.draw_rows, figures.rows_per_day(events)),
        ("queries", figures.draw_queries, figures.queries_per_day(events, UTC)),
        ("empty", figures.draw_queries, {}),
    ]:
        out = tmp_path / f"{name}.svg"
        draw(data, out, since=T0 - timedelta(days=7), now=now)
        svg = out.read_text()
        assert svg.startswith("<?xml") and "<svg" in svg and "<path" in svg
        assert "<text" not in svg and "<script" not in svg and "<image" not in svg
        assert "@font-face" not in svg and "url(http" not in svg


def test_recipe_names_are_drawn_as_written_never_as_mathtext(tmp_path):
    """``$\\foo{$`` is a name: as mathtext it would fail to parse and stop the figure."""
    names = ["$\\foo{$", "_hidden", "$x^2$"]
    events = [event(i, "queried", f"run{i}", recipe=name) for i, name in enumerate(names)]
    rows = figures.rows_per_day(events)
    figures.draw_rows(rows, tmp_path / "rows.svg", since=T0, now=T0)  # text as paths: no error
    with figures._drawing(), matplotlib.rc_context({"svg.fonttype": "none"}):
        out = io.BytesIO()  # the same figure with its text kept as text, to read it back
        figures.rows_figure(rows, since=T0, now=T0).savefig(out, format="svg")
    svg = out.getvalue().decode()
    for name in names:  # every name in the legend, each character as typed
        assert f">{html.escape(name, quote=False)}</text>" in svg


def test_the_overview_says_what_the_markers_saved_in_figures_and_per_day():
    events = [
        event(0, "queried", "a", seconds=0.25),
        event(60, "cached", "b", seconds=0.25),
        event(60 * 24, "queried", "c", run_date="20250513", seconds=125.0),
        event(60 * 24, "skipped", "c", recipe="csv", rows=None, seconds=None),
    ]
    page = figures.account_html(
        events, since=T0 - timedelta(days=1), now=T0 + timedelta(days=2), where="m", tz=UTC
    )
    tiles = {
        ident: page.split(f'id="{ident}"')[1].split('class="lr-value">')[1].split("<")[0]
        for ident in ("lr-queries-run", "lr-queries-avoided", "lr-time-spent", "lr-time-spared")
    }
    assert tiles == {
        "lr-queries-run": "2",
        "lr-queries-avoided": "1",
        "lr-time-spent": "2 min 05 s",
        "lr-time-spared": "0.25 s",
    }
    assert page.index('id="lr-overview"') < page.index('id="last-run"')
    svg = base64.b64decode(page.split("data:image/svg+xml;base64,")[1].split('"')[0])
    assert svg.startswith(b"<?xml") and b"<text" not in svg


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.231, "0.23 s"), (12.34, "12.3 s"), (245, "4 min 05 s"), (7505, "2 h 05 min")],
)
def test_warehouse_time_reads_as_a_person_says_it(seconds, shown):
    assert figures.duration_text(seconds) == shown


def test_the_page_shows_the_time_the_json_gives_rounded_once():
    """A sum of float seconds just above a half (1.80500001) and the JSON's 1.805 read alike."""
    summed = 0.6 + 0.6 + 0.60500001
    assert figures.duration_text(summed) == figures.duration_text(round(summed, 3)) == "1.80 s"
