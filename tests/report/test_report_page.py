"""The Snakemake report page as a person sees it: three days of real runs, then
``lead-recovery report --html``, then the page rendered by Debian's headless Chromium:
its first screen (what the markers saved), then the rule graph, account and figures.

Chromium resolves no host name here (``--host-resolver-rules``), so anything the
page tried to fetch from a CDN would fail and show up as a console error; the
page must render from the file alone. Chromium and its driver come from
tests/support/setup_system.sh (``make test``); Selenium is given the driver's
path, so it never downloads one.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from lead_recovery.figures import duration_text
from tests.report.test_report_command import report
from tests.support.workflow import clean_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
RECIPE = "simulation_to_handoff"
# Colours of the figures' series (lead_recovery/figures.py) and matplotlib's first line.
QUERIED, AVOIDED, CHECKED, FIRST_LINE = (
    (59, 111, 212),
    (46, 157, 91),
    (224, 160, 48),
    (31, 119, 180),
)


def at(day: str, hhmm: str) -> dict[str, str]:
    return {"LEAD_RECOVERY_NOW": f"{day[:4]}-{day[4:6]}-{day[6:]}T{hhmm}:00+00:00", "TZ": "UTC"}


@pytest.fixture
def browser(tmp_path: Path):
    """Headless Chromium through /usr/bin/chromedriver, with a fresh profile and no DNS."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make test` "
            "(tests/support/setup_system.sh installs Debian's chromium and chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log")),
        options=options,
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _pixels_like(png: bytes, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    """How many pixels of a screenshot have (about) this colour."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(
        count
        for count, rgb in image.getcolors(maxcolors=image.width * image.height)
        if sum(abs(a - b) for a, b in zip(rgb, colour, strict=True)) <= tolerance
    )


@pytest.mark.timeout(240)
def test_the_report_page_opens_on_what_the_markers_saved_then_account_rule_graph_and_figures(
    workflow, browser, tmp_path
):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    secret = f"lr-secret-{secrets.token_hex(8)}"
    env = {"REDSHIFT_PASSWORD": secret, "AWS_SECRET_ACCESS_KEY": secret}
    runs = [
        workflow.run(env={**at("20250512", "09:00"), **env}),
        workflow.run(env={**at("20250512", "10:00"), **env}),  # cached
        workflow.run(env={**at("20250513", "09:00"), **env}),
        workflow.run(
            config={"ignore_redshift_marker": True}, env={**at("20250513", "10:00"), **env}
        ),
        workflow.run(env={**at("20250514", "09:00"), **env}),
    ]
    data_before = workflow.snapshot()

    # The figures add up what the runs did (queries counted from the jobs Snakemake ran)
    # and what the markers recorded.
    first, forced, last = (
        json.loads(workflow.marker(RECIPE, day).read_text())
        for day in ("20250512", "20250513", "20250514")
    )
    shown = report(workflow, "--since", "7d", "--json", env=at("20250514", "11:00"))
    figures = json.loads(shown.stdout)
    ours = figures["recipes"][RECIPE]
    assert sum(r.queries for r in runs) == 4 and ours["queries"] == 4
    assert ours["avoided"] == 1
    assert ours["seconds_avoided"] == first["duration_s"]  # what the reused marker had cost
    spent = first["duration_s"] + forced["duration_s"] + last["duration_s"]
    assert ours["seconds_spent"] >= round(spent, 3)
    assert ours["rows"] == first["rows"] + 2 * forced["rows"] + last["rows"]
    assert figures["recipes"]["manual_leads"]["skipped"] == 5
    assert figures["total"]["queries"] == 4 and figures["total"]["failures"] == 0
    assert figures["skipped_lines"] == 0
    # numbers rounded to what they measure: seconds to the millisecond, counts as integers
    assert not re.search(r"\d\.\d{4,}", shown.stdout)
    assert all(isinstance(v, int) for k, v in ours.items() if not k.startswith("seconds_"))
    table = report(workflow, env=at("20250514", "11:00")).stdout.splitlines()
    assert next(line for line in table if line.startswith("TOTAL")).split()[1:3] == ["4", "1"]
    later = report(workflow, "--since", "20250513", "--json", env=at("20250514", "11:00"))
    assert json.loads(later.stdout)["total"]["queries"] == 3  # only the 13th's and 14th's

    # --html without a file: the page goes under results/, beside its figures
    made = subprocess.run(
        [sys.executable, "-m", "lead_recovery.cli.main", "report", "--since", "7d", "--html"],
        cwd=workflow.root,
        env=clean_env(**at("20250514", "11:00"), **env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert made.returncode == 0, made.stderr
    page = workflow.root / "results/report/report.html"
    assert made.stderr.strip() == "lead-recovery: report page written to results/report/report.html"
    assert [p.name for p in workflow.root.glob("*.html")] == []  # nothing in the checkout's root
    text = page.read_text(encoding="utf-8")
    assert secret not in text  # neither the environment nor anything read from it
    after = {k: v for k, v in workflow.snapshot().items() if not k.startswith("results/report/")}
    assert after == data_before  # the report read the history: no query, no data file touched

    # The first screen, before any click: the period's queries run and avoided and the
    # warehouse time spent and spared, as figures and per day; not the rule graph.
    wait = WebDriverWait(browser, 30)
    browser.get(page.as_uri())
    wait.until(lambda d: not d.find_element(By.ID, "loading-screen").is_displayed())
    overview = wait.until(lambda d: d.find_element(By.ID, "lr-overview"))
    screen = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    tiles = {
        ident: browser.find_element(By.CSS_SELECTOR, f"#{ident}").text.splitlines()
        for ident in ("lr-queries-run", "lr-queries-avoided", "lr-time-spent", "lr-time-spared")
    }
    assert tiles == {
        "lr-queries-run": ["4", "queries run"],
        "lr-queries-avoided": ["1", "queries avoided"],
        "lr-time-spent": [duration_text(ours["seconds_spent"]), "warehouse time spent"],
        "lr-time-spared": [duration_text(first["duration_s"]), "warehouse time spared"],
    }
    per_day = browser.find_element(By.ID, "lr-per-day")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth > 0", per_day))
    for shown_now in (overview, per_day, *browser.find_elements(By.CSS_SELECTOR, ".lr-tile")):
        box = shown_now.rect
        assert shown_now.is_displayed() and box["y"] >= 0 and box["x"] >= 0
        assert box["y"] + box["height"] <= screen[1] and box["x"] + box["width"] <= screen[0]
    assert per_day.size["width"] > 600 and per_day.size["height"] > 250
    plot = per_day.screenshot_as_png
    assert _pixels_like(plot, QUERIED) > 1500 and _pixels_like(plot, AVOIDED) > 600
    assert not browser.find_elements(By.CSS_SELECTOR, "#rulegraph canvas, #rulegraph svg")
    assert not browser.find_element(By.ID, "last-run").is_displayed()  # on the Account page
    browser.save_screenshot(str(tmp_path / "report_page_first_screen.png"))

    # the rule graph: one click away (Workflow, in the menu)
    browser.find_element(By.XPATH, "//nav//a[span[normalize-space()='Workflow']]").click()
    graph = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#rulegraph canvas, #rulegraph svg")
    )
    assert graph.size["width"] > 100 and graph.size["height"] > 100
    assert (
        _pixels_like(graph.screenshot_as_png, (255, 255, 255), 60)
        < graph.size["width"] * (graph.size["height"])
    )  # something drawn on it
    shown_rules = browser.find_element(By.CSS_SELECTOR, "script#rulegraph").get_attribute("text")
    for rule in ("redshift_extract", "analyze", "report_figures"):
        assert f'"{rule}"' in shown_rules
    browser.save_screenshot(str(tmp_path / "report_page_rulegraph.png"))

    def show(category: str, label: str, expect: str):
        """Back to the menu (the breadcrumb's home), the category, then its result's eye;
        the element ``expect`` (CSS) of the result's view. The page is a single-page
        app: on a loaded machine a click can land while it re-renders and be lost, so
        the way there is walked again (at most 3 times) before the test gives up."""
        eye = f"//tr[td[normalize-space()={label!r}]]//a[@iconname='eye']"
        for _ in range(3):
            home = browser.find_elements(By.XPATH, "//nav//ol/li[1]/a")
            if home:
                home[0].click()
            wait.until(lambda d: d.find_element(By.LINK_TEXT, category)).click()
            wait.until(lambda d: d.find_element(By.XPATH, eye)).click()
            try:
                return WebDriverWait(browser, 10).until(
                    lambda d: d.find_element(By.CSS_SELECTOR, expect)
                )
            except TimeoutException:
                continue
        raise AssertionError(f"the report page never showed {label!r} ({expect})")

    frame = show(
        "Account",
        "what the markers saved, the last run, the totals",
        "iframe[src^='data:text/html']",
    )
    assert frame.size["width"] > 300 and frame.size["height"] > 200
    browser.save_screenshot(str(tmp_path / "report_page_account.png"))
    browser.switch_to.frame(frame)
    in_account = browser.find_element(By.ID, "lr-queries-avoided").text.splitlines()[0]
    last_run = browser.find_element(By.ID, "last-run").text
    total_row = browser.find_element(By.CSS_SELECTOR, "#totals tr.total").text.split()
    browser.switch_to.default_content()
    assert in_account == "1"
    assert f"{RECIPE} 20250514 queried (" in last_run
    assert "total: 2 recipe-days: 1 queried, 0 cached, 1 skipped, 0 failed" in last_run
    assert total_row[:4] == ["TOTAL", "4", "1", "0"]  # queries, avoided, watermark checks

    drawn = {}
    for label, name in [
        ("queries run and avoided per day", "queries_per_day.svg"),
        ("rows per day per recipe", "rows_per_day.svg"),
    ]:
        image = show("Figures", label, f"img[src*='filename={name}']")
        wait.until(
            lambda d, image=image: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image
            )
        )
        assert image.size["width"] > 400 and image.size["height"] > 200
        drawn[label] = image.screenshot_as_png
        browser.save_screenshot(str(tmp_path / f"report_page_{name.split('_')[0]}.png"))

    queries = drawn["queries run and avoided per day"]
    # bars for 4 queries and 1 avoided are far more than their legend keys; no watermark check
    assert _pixels_like(queries, QUERIED) > 1500
    assert _pixels_like(queries, AVOIDED) > 1000
    assert _pixels_like(queries, CHECKED) < 400
    assert _pixels_like(drawn["rows per day per recipe"], FIRST_LINE) > 300

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [u for u in fetched if not u.startswith(("data:", "file:", "blob:"))] == []
