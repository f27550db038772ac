"""End to end in headless Chromium: the app as `make app` starts it, driven like a user.

Needs Debian's `chromium` (/usr/bin/chromium) and Playwright's Python package (no
browser download: the system Chromium is used). Screenshots land in
tests/e2e/artifacts/. Skipped with a reason when either is missing.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from browser_driver import (ARTIFACTS, CHROMIUM, click_until, fill_number,  # noqa: E402
                            fill_text, open_app, pick_option, pick_options, serve, settle,
                            shot)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("e2e"), ARTIFACTS / "server.log") as served:
        yield served


def select_trade(page, row: int, attempts: int = 3) -> None:
    """Tick row ``row`` of the trades table (a canvas grid: click its row marker) until the
    chart says it zoomed to that trade."""
    grid = page.locator(".st-key-bt_trades [data-testid=stDataFrame]")
    for attempt in range(attempts):
        settle(page)
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 14, box["y"] + 35 * (row + 1) + 17)  # header row, then 35 px rows
        try:
            page.get_by_text(f"Trade #{row + 1}:", exact=False).wait_for(timeout=15_000)
            return
        except playwright.TimeoutError:
            if attempt == attempts - 1:
                shot(page, "failed_select_trade")
                raise


def cut_cards(page) -> list[str]:
    """Metric labels and values shown cut (an ellipsis: "Max drawdo…" in a sixth of a 1024 px page)."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '[data-testid=stMetric] .stMarkdownEllipsis, [data-testid=stMetricValue] div')]
        .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
        .map(e => e.textContent)""")


def test_backtest_optimise_and_open_best_combo(server, browser):
    # tall viewport: Streamlit scrolls inside its own container, so full_page shots stop at the viewport
    page = browser.new_page(viewport={"width": 1440, "height": 2800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    open_app(page, server["url"])
    page.get_by_role("button", name="Run backtest").wait_for(timeout=90_000)
    interactive_s = time.time() - server["started"]
    (ARTIFACTS.mkdir(parents=True, exist_ok=True), (ARTIFACTS / "timing.txt").write_text(
        f"server start to Backtest page interactive: {interactive_s:.2f} s\n"))
    shot(page, "1_backtest_page")

    # the default backtest
    click_until(page, "Run backtest", page.get_by_text("Sharpe", exact=True).first)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1500)
    shot(page, "2_backtest_result")
    page.set_viewport_size({"width": 1024, "height": 2800})  # a laptop: the cards wrap, no label is cut
    page.wait_for_timeout(1000)
    assert cut_cards(page) == [], "metric cards cut at 1024 px"
    shot(page, "2a_backtest_result_1024")
    page.set_viewport_size({"width": 1440, "height": 2800})
    select_trade(page, row=3)
    page.wait_for_timeout(1500)
    shot(page, "2b_backtest_trade_zoom")

    # the Data and System monitor pages render
    page.get_by_role("link", name="Data").click()
    page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1000)
    shot(page, "3_data_page")
    page.get_by_role("link", name="System monitor").click()
    page.get_by_text("Hit rate").wait_for(timeout=60_000)
    page.wait_for_timeout(2500)
    shot(page, "4_system_monitor")

    # a 50-combo grid: ma_crossover fast 5..45/10 x slow 50..140/10
    page.get_by_role("link", name="Optimisation").click()
    page.get_by_role("heading", name="Optimisation").wait_for(timeout=60_000)
    strategy = page.locator(".st-key-opt_strategy")
    strategy.click()
    page.get_by_role("option", name="ma_crossover").click()
    page.locator(".st-key-opt-ma_crossover-fast_period-min input").wait_for(timeout=30_000)
    for name, (lo, hi, step) in (("fast_period", (5, 45, 10)), ("slow_period", (50, 140, 10))):
        for part, value in (("min", lo), ("max", hi), ("step", step)):
            fill_number(page, f".st-key-opt-ma_crossover-{name}-{part}", value)
    page.get_by_text("combos to run", exact=False).first.wait_for()
    # the count follows the last input once its rerun lands (retried until then)
    playwright.expect(page.locator("[data-testid=stAlertContentInfo]").first).to_contain_text(
        "50 combos to run", timeout=30_000)
    shot(page, "5_optimisation_setup")
    click_until(page, "Launch", page.locator("[data-testid=stProgress]").first)
    try:
        page.get_by_role("button", name="Open in Backtest").wait_for(timeout=120_000)
    except playwright.TimeoutError:
        shot(page, "failed_sweep")
        for status in Path(server["results"]).glob(".jobs/*/status.json"):  # the job's side of the story
            (ARTIFACTS / "failed_sweep_job.txt").write_text(status.read_text() + (status.parent / "log.txt").read_text())
        raise
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1500)
    shot(page, "6_optimisation_results")
    for tab, name in (("Parallel coordinates", "6b_parallel_coordinates"), ("Pareto", "6c_pareto")):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(1500)
        shot(page, name)

    # best combo into the Backtest page
    click_until(page, "Open in Backtest", page.get_by_text("Parameters carried over", exact=False))
    click_until(page, "Run backtest", page.get_by_text("Sharpe", exact=True).first)
    page.wait_for_timeout(1500)
    shot(page, "7_best_combo_in_backtest")
    assert not errors, errors


def test_walk_forward_and_sweep_validation(server, browser):
    # very tall viewport: the results section is long and full_page shots stop at the viewport
    page = browser.new_page(viewport={"width": 1440, "height": 2400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"])
    page.get_by_role("link", name="Validation").click()
    page.get_by_role("heading", name="Validation").wait_for(timeout=90_000)
    settle(page)

    # a 3 x 3 grid of ma_crossover over 10 windows (IS 120 days, OOS 60 days); the picker starts at the
    # session's strategy (the Backtest page's bb_atr in the app)
    pick_option(page, "wf_strategy", "ma_crossover")
    page.get_by_text("Search space", exact=True).click()
    page.locator(".st-key-wf-ma_crossover-fast_period-min input").wait_for(timeout=30_000)
    boxes = [(f".st-key-wf-ma_crossover-{name}-{part}", value)
             for name, (lo, hi, step) in (("fast_period", (5, 15, 5)), ("slow_period", (20, 40, 10)))
             for part, value in (("min", lo), ("max", hi), ("step", step))]
    boxes += [(".st-key-wf_is_days", 120), (".st-key-wf_oos_days", 60), (".st-key-wf_boot", 200), (".st-key-wf_S", 8)]
    for selector, value in boxes:
        fill_number(page, selector, value)
    page.get_by_text("Search space", exact=True).click()  # fold the editor away again
    settle(page)
    plan = page.locator("[data-testid=stAlertContentInfo]").first
    playwright.expect(plan).to_contain_text("10 windows", timeout=30_000)
    playwright.expect(plan).to_contain_text("9 combos", timeout=30_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1000)
    shot(page, "8_validation_walk_forward_setup")

    click_until(page, "Launch walk-forward", page.locator("[data-testid=stProgress]").first)
    try:
        page.get_by_text("Grade card", exact=False).first.wait_for(timeout=120_000)
    except playwright.TimeoutError:
        shot(page, "failed_walk_forward")
        for status in Path(server["results"]).glob(".jobs/*/status.json"):
            (ARTIFACTS / "failed_walk_forward_job.txt").write_text(status.read_text()
                                                                   + (status.parent / "log.txt").read_text())
        raise
    settle(page)
    page.set_viewport_size({"width": 1440, "height": 6200})
    page.wait_for_timeout(2500)
    assert page.locator(".js-plotly-plot").count() >= 8  # timeline, 4 walk-forward charts, bootstrap, 2 PBO
    shot(page, "9_validation_walk_forward_results")

    # validate the sweep the Optimisation step stored (when that test ran first)
    page.set_viewport_size({"width": 1440, "height": 2400})
    page.get_by_role("tab", name="Validate a sweep").click()
    if page.get_by_text("No stored sweep yet", exact=False).count() == 0:
        for selector, value in ((".st-key-val_n", 300), (".st-key-val_S", 8)):
            box = page.locator(f"{selector} input")
            box.fill(str(value))
            box.press("Enter")
            settle(page)
        heatmap = page.get_by_text("Stability: ", exact=False).locator("visible=true").first  # not the hidden tab's
        click_until(page, "Validate", heatmap, attempts=2)
        settle(page)
        page.set_viewport_size({"width": 1440, "height": 4600})
        page.wait_for_timeout(2500)
        shot(page, "10_validation_sweep_report")
    assert not errors, errors


def test_data_import_collision_and_delete_follow_the_picker(server, browser, tmp_path):
    """Issue 11 in a real browser: the picker shows what an import or delete just changed (a
    browser keeps a select box's shown value unless its session key is set), and the open tab
    stays open when the one-off message above the tabs goes away."""
    import numpy as np
    import pandas as pd

    index = pd.date_range("2024-03-01", periods=200, freq="1h", tz="UTC", name="timestamp")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.003, 200)))
    source = tmp_path / "ABC_USDT-1h.csv"
    pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0},
                 index=index).reset_index().to_csv(source, index=False)
    page = browser.new_page(viewport={"width": 1440, "height": 1800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"] + "/Data")
    page.get_by_role("heading", name="Data").wait_for(timeout=90_000)
    picker = page.locator(".st-key-dataset_picker input")  # the select box shows its value in an input

    def import_file() -> None:
        page.get_by_role("tab", name="Import").click()
        settle(page)
        fill_text(page, ".st-key-data_path", str(source))
        page.get_by_role("button", name="Import", exact=True).click()
        settle(page)

    import_file()
    page.get_by_text("Imported 200 bars into local/ABC_USDT-1h", exact=False).wait_for(timeout=60_000)
    assert "local/ABC_USDT-1h" in picker.input_value()
    import_file()  # the same name again: asked, nothing written yet
    page.get_by_text("already exists", exact=False).wait_for(timeout=60_000)
    shot(page, "11_data_import_collision")
    page.get_by_role("button", name="Keep both").click()
    page.get_by_text("into local/ABC_USDT-1h-2024", exact=False).wait_for(timeout=60_000)
    assert "local/ABC_USDT-1h-2024" in picker.input_value()

    page.get_by_role("tab", name="Rename / delete").click()
    settle(page)
    page.get_by_role("button", name="Delete…").click()
    page.get_by_text("cannot be undone", exact=False).wait_for(timeout=30_000)  # still on this tab
    page.get_by_role("button", name="Yes, delete it").click()
    page.get_by_text("Deleted local/ABC_USDT-1h-2024", exact=False).wait_for(timeout=60_000)
    settle(page)
    assert "synthetic/BTC_USDT-1h" in picker.input_value()
    shot(page, "12_data_deleted")
    assert not errors, errors


def test_a_refresh_keeps_the_workspace(server, browser):
    """The issue in a real browser: a refresh, a trip to another page and a new tab on the same
    URL keep the dataset, the strategy, the param values and the backtest on display."""
    page = browser.new_page(viewport={"width": 1440, "height": 2000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"])
    page.get_by_role("button", name="Run backtest").wait_for(timeout=90_000)
    pick_option(page, "bt_strategy", "ma_crossover")
    fill_number(page, ".st-key-bt-ma_crossover-fast_period", 8)
    click_until(page, "Run backtest", page.get_by_text("Sharpe", exact=True).first)
    settle(page)
    values = page.locator("[data-testid=stMetricValue]").all_inner_texts()
    url = page.url
    assert "strategy=ma_crossover" in url and "dataset=" in url and "bt=" in url, url

    def same_view(tab) -> None:
        tab.get_by_text("Sharpe", exact=True).first.wait_for(timeout=90_000)
        settle(tab)
        assert tab.locator("[data-testid=stMetricValue]").all_inner_texts() == values
        assert tab.locator(".st-key-bt_strategy input").input_value() == "ma_crossover"
        assert tab.locator(".st-key-bt-ma_crossover-fast_period input").input_value() == "8"

    page.reload()
    same_view(page)
    shot(page, "13_backtest_after_refresh")
    page.get_by_role("link", name="Data").click()
    page.get_by_role("heading", name="Data").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("link", name="Backtest").click()
    same_view(page)
    assert "bt=" in page.url and "strategy=ma_crossover" in page.url, page.url  # named again after the trip
    other = browser.new_page(viewport={"width": 1440, "height": 2000})  # a new tab: a new session
    other.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(other, url)
    same_view(other)
    # the same view at /Backtest, a link written as every other page's ("Page not found" before)
    typed = browser.new_page(viewport={"width": 1440, "height": 2000})
    typed.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(typed, server["url"].rstrip("/") + "/Backtest?" + url.split("?", 1)[1])
    same_view(typed)
    assert typed.get_by_text("Page not found").count() == 0
    assert not errors, errors


def card(page, label: str) -> str:
    """The value shown by the metric card ``label`` on the Backtest page."""
    metric = page.locator("[data-testid=stMetric]").filter(
        has=page.locator("[data-testid=stMetricLabel]", has_text=label)).first
    return metric.locator("[data-testid=stMetricValue]").inner_text().strip()


def launch_and_wait(page, finished_text: str, timeout_ms: int = 180_000) -> None:
    click_until(page, "Launch", page.locator("[data-testid=stProgress]").first)
    page.get_by_text(finished_text, exact=False).first.wait_for(timeout=timeout_ms)
    settle(page)


def running_done(page) -> int:
    """Combos done, as the Optimisation page's job monitor says ('running k / N combos')."""
    import re

    text = page.locator("[data-testid=stProgress]").first.inner_text()
    match = re.search(r"running ([\d,]+) / ", text)
    return int(match.group(1).replace(",", "")) if match else -1


def stop_and_wait(page) -> None:
    """Press Stop, then wait until the job says it is cancelled and the page offers Resume."""
    page.get_by_role("button", name="Stop", exact=True).click()
    playwright.expect(page.locator("[data-testid=stProgress]").first).to_contain_text("cancelled", timeout=120_000)
    page.get_by_role("button", name="Resume").wait_for(timeout=60_000)
    settle(page)


RUN_B = 150_000  # combos of the Monte Carlo run that is stopped and resumed


def test_monte_carlo_stop_resume_and_reopen_an_older_run(server, browser):
    """Issue 11 in a real browser: a grid run A, then a Monte Carlo run B stopped and resumed
    from the page; A reloaded from the history opens in Backtest with A's stored winner, data
    and options: the cards show A's stored metrics exactly."""
    from threadx import units
    from threadx.optimize.store import ResultStore

    page = browser.new_page(viewport={"width": 1440, "height": 2400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"] + "/Optimisation")  # a link to a page runs the whole app (sidebar)
    page.get_by_role("heading", name="Optimisation").wait_for(timeout=90_000)
    page.locator("[data-testid=stSidebar]").get_by_text("ThreadX", exact=True).wait_for(timeout=30_000)
    pick_option(page, "opt_strategy", "ma_crossover")
    page.locator(".st-key-opt-ma_crossover-fast_period-min input").wait_for(timeout=30_000)

    # run A: a 3 x 2 grid with a fee of 7 bps (not the default: Open in Backtest must carry it)
    for name, (lo, hi, step) in (("fast_period", (8, 12, 2)), ("slow_period", (40, 50, 10))):
        for part, value in (("min", lo), ("max", hi), ("step", step)):
            fill_number(page, f".st-key-opt-ma_crossover-{name}-{part}", value)
    fill_number(page, ".st-key-opt_fee", 7.0)
    playwright.expect(page.locator("[data-testid=stAlertContentInfo]").first).to_contain_text(
        "6 combos to run", timeout=30_000)
    launch_and_wait(page, "Open in Backtest")
    run_a = page.locator("[data-testid=stCode]").first.inner_text().strip()
    shot(page, "13_run_a")

    # run B: Monte Carlo over a wide space, stopped while it runs, then resumed from the page. One
    # worker and 150,000 combos (about 7 s of work here): a job starts at once in the standby job
    # process, and a shorter run could end before Stop is pressed
    for name, (lo, hi, step) in (("fast_period", (2, 400, 1)), ("slow_period", (3, 1000, 1))):
        for part, value in (("min", lo), ("max", hi), ("step", step)):
            fill_number(page, f".st-key-opt-ma_crossover-{name}-{part}", value)
    page.get_by_text("Monte Carlo", exact=True).click()
    settle(page)
    fill_number(page, ".st-key-opt_n", RUN_B)
    fill_number(page, ".st-key-opt_workers", 1)
    click_until(page, "Launch", page.get_by_text("running", exact=False).first)
    playwright.expect(page.locator("[data-testid=stProgress]").first).to_contain_text(f" / {RUN_B:,} combos",
                                                                                      timeout=60_000)
    shot(page, "14_run_b_running")
    stop_and_wait(page)
    run_b = page.locator("[data-testid=stCode]").first.inner_text().strip()
    assert run_b != run_a
    stopped = ResultStore(server["results"]).load(run_b)
    assert stopped.manifest["status"] == "cancelled" and 0 < stopped.manifest["done"] < RUN_B
    shot(page, "15_run_b_stopped")
    page.get_by_role("button", name="Resume").click()
    deadline = time.time() + 60
    progress = page.locator("[data-testid=stProgress]").first
    # the same run goes on from where it stopped (a fast machine may finish it before a poll sees it run)
    while time.time() < deadline and running_done(page) <= stopped.manifest["done"] \
            and "completed" not in progress.inner_text():
        page.wait_for_timeout(500)
    assert running_done(page) > stopped.manifest["done"] or "completed" in progress.inner_text()
    shot(page, "16_run_b_resumed")
    playwright.expect(progress).to_contain_text(f"completed ({RUN_B:,} / {RUN_B:,} combos)", timeout=180_000)
    resumed = ResultStore(server["results"]).load(run_b)  # the same run id, every combo stored once
    assert resumed.manifest["status"] == "completed" and resumed.manifest["done"] == RUN_B
    assert resumed.results["combo_id"].is_unique and len(resumed.results) == RUN_B

    # the older run A from the history, opened in Backtest: A's winner on A's data and options
    page.get_by_text("Run history", exact=False).first.click()
    pick_option(page, "opt_history", run_a)
    click_until(page, "Show this run", page.get_by_text(f"Run {run_a}", exact=False).first)
    click_until(page, "Open in Backtest", page.get_by_text("Parameters carried over", exact=False))
    settle(page)
    page.wait_for_timeout(1000)
    shot(page, "17_older_run_reopened")
    stored = ResultStore(server["results"]).load(run_a)
    best = stored.top(1, min_trades=int(stored.manifest.get("min_trades", 0))).iloc[0]
    for key, label in (("sharpe", "Sharpe"), ("n_trades", "Trades"), ("total_return", "Total return"),
                       ("max_drawdown", "Max drawdown")):
        assert card(page, label) == units.format_metric(key, float(best[key])), label
    assert "fee 7" in page.get_by_text("Options:", exact=False).first.inner_text()
    assert not errors, errors


def backtest_of(browser, url: str, strategy: str, errors: list[str]):
    """A tall page with ``strategy`` backtested on the sample, up to its cycle cards and charts."""
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, url)
    page.get_by_role("button", name="Run backtest").wait_for(timeout=90_000)
    settle(page)
    page.locator(".st-key-bt_strategy").click()
    page.keyboard.type(strategy)  # the list is longer than its box: filter it
    page.get_by_role("option", name=strategy, exact=True).click(timeout=10_000)
    settle(page)
    click_until(page, "Run backtest", page.get_by_text("Cycle win rate", exact=True).first)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_timeout(1500)
    return page


def test_a_grid_backtest_shows_every_leg_and_its_cycles(server, browser):
    errors: list[str] = []
    page = backtest_of(browser, server["url"], "envelope_dca", errors)
    shot(page, "18_grid_backtest")  # one entry marker per level filled, the cycles beside the trades
    cards = page.locator("[data-testid=stMetric]")
    labels = [cards.nth(k).inner_text().split("\n")[0].strip() for k in range(cards.count())]
    assert {"Trades", "Cycles", "Cycle win rate"} <= set(labels), labels
    assert not errors, errors


def test_amplitude_hunter_its_timings_and_the_log_on_the_monitor(server, browser):
    errors: list[str] = []
    page = backtest_of(browser, server["url"], "amplitude_hunter", errors)
    shot(page, "19_amplitude_hunter")  # partial exits at the far band as their own rows, the armed exits
    page.get_by_role("tab", name="Run details").click()
    page.get_by_text("Where the time went", exact=False).first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    shot(page, "20_backtest_timings")  # the stage bar chart
    open_app(page, server["url"] + "/System_monitor")
    page.get_by_text("lines of the log", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    shot(page, "21_monitor_log")
    assert page.get_by_text("backtest amplitude_hunter", exact=False).count() > 0
    assert not errors, errors


def test_the_research_page_shows_a_stored_matrix_and_opens_a_cell(server, browser):
    import os
    import subprocess
    import sys

    # a research of ma_crossover on the sample and a second synthetic asset, stored in the server's workspace
    script = ("from threadx.data.io import write_ohlcv; from threadx.data.synthetic import generate_synthetic; "
              "from threadx.validation.research import research; import os; "
              "p = os.path.join(os.environ['THREADX_DATA_ROOT'], 'test', 'XYZ_USDT-1h.parquet'); "
              "write_ohlcv(generate_synthetic('XYZ_USDT', days=730, seed=11), p); "
              "research('ma_crossover', ['synthetic/BTC_USDT-1h', p], "
              "{'fast_period': [5, 10], 'slow_period': [30, 60]}, research_id='two-assets', sampler='grid', "
              "is_days=180, oos_days=120, bootstrap=200, S=8, workers=1)")
    subprocess.run([sys.executable, "-c", script], env=server["env"], check=True, capture_output=True,
                   cwd=os.getcwd())
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"] + "/Research")
    page.get_by_text("Strategy × asset", exact=False).first.wait_for(timeout=90_000)
    settle(page)
    page.wait_for_timeout(1500)
    shot(page, "22_research")  # the strategy x asset matrix, the kept lines, the transfer heatmap
    click_until(page, "Open report", page.get_by_text("Grade card", exact=False).first)
    page.get_by_text("two-assets-c0", exact=False).first.wait_for(timeout=30_000)
    page.locator("[data-testid=stMetricValue]").first.wait_for(timeout=30_000)
    settle(page)
    page.wait_for_timeout(2000)
    shot(page, "23_research_cell_report")  # the cell's own walk-forward report on the Validation page
    assert not errors, errors


def test_portfolio_from_the_winners_of_a_research_on_real_btc_and_eth(server, browser):
    import re
    import shutil

    from threadx.ui.research import list_research

    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "binance"
    files = [real / "BTC_USDT-1h.parquet", real / "ETH_USDT-1h.parquet"]
    if not all(f.exists() for f in files):
        pytest.skip(f"the real Binance candles are not under {real}")
    # the real BTC and ETH hours in the server's data root, as binance/BTC_USDT-1h and binance/ETH_USDT-1h
    binance = Path(server["env"]["THREADX_DATA_ROOT"]) / "binance"
    binance.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, binance / f.name)  # a writable copy (the shared files are read-only)
    before = {r["research_id"] for r in list_research(server["results"])}
    page = browser.new_page(viewport={"width": 1440, "height": 4200})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    open_app(page, server["url"] + "/Research")
    page.get_by_role("button", name="Launch research").wait_for(timeout=90_000)

    # a small research from the page: ma_crossover, 4 random combos per window, IS 180 / OOS 90 days
    pick_options(page, "rs_strategies", ["ma_crossover"])
    pick_options(page, "rs_datasets", ["binance/BTC_USDT-1h", "binance/ETH_USDT-1h"])
    pick_option(page, "rs_sampler", "random")
    for selector, value in ((".st-key-rs_is_days", 180), (".st-key-rs_oos_days", 90), (".st-key-rs_n", 4),
                            (".st-key-rs_boot", 100)):
        fill_number(page, selector, value)
    plan = page.locator("[data-testid=stAlertContentInfo]").first
    playwright.expect(plan).to_contain_text("2 cells", timeout=30_000)
    playwright.expect(plan).to_contain_text("4 random combos", timeout=30_000)
    began = time.time()
    click_until(page, "Launch research", page.locator("[data-testid=stProgress]").first)
    progress = page.locator("[data-testid=stProgress]").first
    try:
        # the job counts its 2 walk-forwards and its transfer backtests ('completed (6 / 6 steps)')
        playwright.expect(progress).to_contain_text(re.compile(r"· completed \(\d+ / \d+ steps\)"), timeout=300_000)
    except AssertionError:
        shot(page, "failed_research")
        for status in Path(server["results"]).glob(".jobs/*/status.json"):
            (ARTIFACTS / "failed_research_job.txt").write_text(status.read_text()
                                                               + (status.parent / "log.txt").read_text())
        raise
    new = [r["research_id"] for r in list_research(server["results"]) if r["research_id"] not in before]
    assert len(new) == 1, new
    research_id = new[0]
    page.get_by_role("heading", name=f"Research {research_id}").wait_for(timeout=60_000)
    settle(page)  # the run that shows it has ended: a chart of the run before is no longer on the page
    page.locator(".st-key-rs_matrix .js-plotly-plot").first.wait_for(timeout=60_000)  # (a rerun may hold two)
    matrix_s = time.time() - began
    settle(page)
    page.wait_for_timeout(1500)
    shot(page, "23b_research_real_btc_eth")  # the matrix of the research just run: ma_crossover on BTC and ETH
    matrix = page.locator(".st-key-rs_matrix").text_content()
    assert "BTC_USDT-1h" in matrix and "ETH_USDT-1h" in matrix, matrix

    began = time.time()
    click_until(page, "Portfolio from winners", page.get_by_text(f"Runners from research {research_id}",
                                                                 exact=False).first)
    prefilled_s = time.time() - began
    settle(page)
    page.wait_for_timeout(1000)
    shot(page, "24_portfolio_prefilled")  # one runner per cell, on the params its walk-forward chose
    began = time.time()
    click_until(page, "Launch portfolio", page.get_by_role("button", name="Stop").or_(
        page.get_by_text("Peak margin share", exact=True)).first)
    page.get_by_text("Peak margin share", exact=True).first.wait_for(timeout=180_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    result_s = time.time() - began
    settle(page)
    page.wait_for_timeout(2500)
    shot(page, "25_portfolio_result")  # metrics, equity and drawdown, margin and positions, runners, heatmap
    with open(ARTIFACTS / "timing.txt", "a") as handle:
        handle.write(f"Launch research (ma_crossover, 4 random combos, real BTC and ETH 1h) to its matrix: "
                     f"{matrix_s:.2f} s\n"
                     f"Portfolio from winners to prefilled runners: {prefilled_s:.2f} s\n"
                     f"Launch portfolio (2 runners, real BTC and ETH 1h) to its result: {result_s:.2f} s\n")
    assert page.locator(".js-plotly-plot").count() >= 4
    labels = page.locator("[data-testid=stMetric]")
    names = {labels.nth(k).inner_text().split("\n")[0].strip() for k in range(labels.count())}
    assert {"Return", "Sharpe", "Max drawdown", "Cycles", "Peak legs"} <= names, names
    assert not errors, errors

def test_the_server_log_of_the_whole_session_has_no_warning(server):
    # runs last: every page above was used; deprecations, Session State misuse and tracebacks show here
    time.sleep(1)
    text = (ARTIFACTS / "server.log").read_text(errors="replace")
    bad = [line for line in text.splitlines()
           if any(word in line for word in ("Warning", "warning", "Please replace", "Traceback", "Error"))]
    assert not bad, bad[:10]
