"""The Strategies page end to end in headless Chromium (the driver of tests/e2e/browser_driver.py):
a strategy created from the template on the page, edited in the page's editor (a new default,
then a syntax error shown with its line and fixed in place), opened in Backtest and run, then
checked back on the Strategies page. Screenshots and click timings land in tests/e2e/artifacts/
(strategies_*.png, strategies_timing.txt); the server log must hold no warning."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from browser_driver import (ARTIFACTS, CHROMIUM, click_until, open_app, serve,  # noqa: E402
                            settle, shot)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

LOG = ARTIFACTS / "strategies_server.log"
NAME = "rsi_dip"
PEEK = """    sig = np.zeros(len(rsi), dtype=np.uint8)
    ahead = np.roll(bars.close, -1) > bars.close * 1.01  # peeks at the next bar's close: look-ahead
    sig[ahead] |= SIG_ENTER_LONG
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with an empty strategies folder of its own (the server inherits the environment)."""
    work = tmp_path_factory.mktemp("e2e_strategies")
    folder = work / "strategies"
    before = os.environ.get("THREADX_STRATEGY_DIR")
    os.environ["THREADX_STRATEGY_DIR"] = str(folder)
    try:
        with serve(work, LOG) as served:
            yield {**served, "strategies": folder}
    finally:
        if before is None:
            os.environ.pop("THREADX_STRATEGY_DIR", None)
        else:
            os.environ["THREADX_STRATEGY_DIR"] = before


class Clock:
    """Wall time of each step, written to strategies_timing.txt."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, label: str, action) -> None:
        began = time.perf_counter()
        action()
        self.lines.append(f"{label}: {time.perf_counter() - began:.2f} s")

    def write(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "strategies_timing.txt").write_text("\n".join(self.lines) + "\n")


def save_editor(page, text: str, appears) -> None:
    """Put ``text`` in the (only) source editor on the page and press its Save."""
    settle(page)
    box = page.locator("textarea").first
    box.fill(text)
    page.get_by_role("button", name="Save", exact=True).first.click()
    appears.wait_for(timeout=30_000)
    settle(page)


def test_create_edit_backtest_and_check_a_strategy(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    clock = Clock()
    path = server["strategies"] / f"{NAME}.py"

    began = time.perf_counter()
    open_app(page, server["url"] + "/Strategies")
    page.get_by_role("heading", name="Strategies").first.wait_for(timeout=90_000)
    page.get_by_text("No strategy of your own yet", exact=False).wait_for(timeout=30_000)
    settle(page)
    clock.lines.append(f"open the Strategies page (server up): {time.perf_counter() - began:.2f} s")
    shot(page, "strategies_1_built_ins")

    # New strategy from the template (the form is open while the folder is empty)
    def create() -> None:
        settle(page)
        box = page.locator(".st-key-strat_new_name input")
        box.fill(NAME)
        page.get_by_role("button", name="Create", exact=True).click()
        page.get_by_text("Wrote", exact=False).first.wait_for(timeout=30_000)
        settle(page)

    clock.step("Create (template)", create)
    assert path.exists()
    source = path.read_text()
    assert page.locator("textarea").first.input_value() == source
    shot(page, "strategies_2_created")

    # edit in the page: a new default for oversold, saved and reloaded
    edited = source.replace('Param("oversold", "float", 30.0,', 'Param("oversold", "float", 27.0,', 1)
    assert edited != source
    clock.step("Save an edit", lambda: save_editor(page, edited, page.get_by_text(
        f"Saved {NAME}.py: reloaded", exact=False)))
    assert path.read_text() == edited

    # a syntax error saved from the editor: shown with its line at once, then fixed in place
    broken = edited.replace("def levels(ind, p):", "def levels(ind, p)", 1)
    line = edited[:edited.index("def levels(ind, p):")].count("\n") + 1
    clock.step("Save a syntax error", lambda: save_editor(page, broken, page.get_by_text(
        f"{NAME}.py:{line}", exact=False).first))
    assert page.get_by_text("SyntaxError", exact=False).count() >= 1
    shot(page, "strategies_3_syntax_error")
    clock.step("Save the fix", lambda: save_editor(page, edited, page.get_by_text(
        f"Saved {NAME}.py: reloaded", exact=False)))
    assert page.get_by_text("does not load", exact=False).count() == 0
    assert page.locator(".st-key-strat_pick input").input_value() == NAME

    # Open in Backtest: the strategy at its (edited) defaults, run
    clock.step("Open in Backtest", lambda: click_until(page, "Open in Backtest",
                                                       page.get_by_role("button", name="Run backtest")))
    settle(page)
    assert page.locator(".st-key-bt_strategy input").input_value() == NAME
    assert float(page.locator(f".st-key-bt-{NAME}-oversold input").input_value()) == 27.0
    clock.step("Run backtest", lambda: click_until(page, "Run backtest", page.get_by_text("Sharpe", exact=True).first))
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    settle(page)
    sharpe = page.locator("[data-testid=stMetric]").filter(
        has=page.locator("[data-testid=stMetricLabel]", has_text="Sharpe")).first
    assert sharpe.locator("[data-testid=stMetricValue]").inner_text().strip()
    page.wait_for_timeout(1000)
    shot(page, "strategies_4_backtest")

    # back on the Strategies page: the same strategy, checked
    def back() -> None:
        page.get_by_role("link", name="Strategies").click()
        page.get_by_role("heading", name="Strategies").first.wait_for(timeout=60_000)
        settle(page)

    clock.step("Back to Strategies", back)
    assert page.locator(".st-key-strat_pick input").input_value() == NAME
    page.evaluate("""() => {  // every text the progress bar shows while the check runs
        window.__progress = [];
        new MutationObserver(() => {
            const bar = document.querySelector('[data-testid=stProgress]');
            const text = bar && bar.innerText.trim();
            if (text && window.__progress[window.__progress.length - 1] !== text) window.__progress.push(text);
        }).observe(document.body, {childList: true, subtree: true, characterData: true});
    }""")
    clock.step("Check", lambda: click_until(page, "Check", page.get_by_text("Last check:", exact=False).first))
    settle(page)
    for check in ("lookahead", "determinism", "accounting", "roles", "speed"):
        assert page.get_by_text(check, exact=True).count() >= 1, check
    assert page.get_by_text("PASS", exact=True).count() >= 1
    assert (server["results"] / ".strategy_checks" / f"{NAME}.json").exists()
    progress = page.evaluate("window.__progress")
    # the bar moves with the checks as they run (the browser may merge updates sent within a few ms)
    assert len(progress) >= 2 and any("lookahead" in text for text in progress), progress
    clock.lines.append("progress bar texts during Check: " + " | ".join(progress))
    page.mouse.move(5, 5)  # no tooltip over the table
    page.wait_for_timeout(500)
    shot(page, "strategies_5_checked")

    # a rule edited to read the next bar: Check fails on look-ahead and names where
    peek = edited.replace("    sig = np.zeros(len(rsi), dtype=np.uint8)\n", PEEK, 1)
    assert peek != edited
    clock.step("Save a look-ahead rule", lambda: save_editor(page, peek, page.get_by_text(
        f"Saved {NAME}.py: reloaded", exact=False)))
    page.get_by_text("made on other code", exact=False).first.wait_for(timeout=30_000)  # the report is stale
    clock.step("Check (fails)", lambda: click_until(page, "Check", page.get_by_text("Last check: FAIL",
                                                                                       exact=False).first))
    settle(page)
    assert page.get_by_text("FAIL", exact=True).count() >= 1
    page.mouse.move(5, 5)
    page.wait_for_timeout(500)
    shot(page, "strategies_6_look_ahead")
    clock.write()
    assert not errors, errors


def test_the_server_log_has_no_warning(server):
    # runs last: deprecations, Session State misuse and tracebacks of the page show here
    time.sleep(1)
    text = LOG.read_text(errors="replace")
    bad = [line for line in text.splitlines()
           if any(word in line for word in ("Warning", "warning", "Please replace", "Traceback", "Error"))]
    assert not bad, bad[:10]
