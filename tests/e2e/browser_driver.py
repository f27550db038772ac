"""Driving the served workstation in headless Chromium: start the server as `make app` does,
wait for Streamlit's script runs, fill inputs, click until something shows.

Used by the end-to-end tests (tests/e2e/test_browser.py) and the click-timing benchmark
(benchmarks/ui_timing.py). Needs Playwright's Python package and Debian's `chromium`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@contextlib.contextmanager
def serve(work: Path, log_path: Path) -> Iterator[dict]:
    """The app served as `make app` serves it (sample data, kernel warm-up, then streamlit), with
    its data, cache and results under ``work``; yields {"url", "started", "proc", "results",
    "env", "warmup_s"}."""
    port = free_port()
    env = dict(os.environ, THREADX_DATA_ROOT=str(work / "data"), THREADX_CACHE_DIR=str(work / "cache"),
               THREADX_RESULTS_DIR=str(work / "results"), THREADX_APP_STANDBY="on")
    began = time.time()
    for module in ("threadx.data", "threadx.warmup"):  # what `make app` runs before the server
        subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, check=True, capture_output=True)
    started = time.time()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield {"url": f"http://127.0.0.1:{port}", "started": started, "proc": proc, "results": work / "results",
                   "env": env, "warmup_s": started - began}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def shot(page, name: str) -> None:
    """A full-page screenshot ``name``.png in the artifacts folder."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has finished its script run (no 'Running...' status widget)."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=timeout_ms)


def fill_number(page, selector: str, value: float, attempts: int = 3) -> None:
    """Type ``value`` into the number input under ``selector``, again if a rerun in flight reset it."""
    box = page.locator(f"{selector} input")
    for _ in range(attempts):
        settle(page)
        box.fill(str(value))
        box.press("Enter")
        settle(page)
        try:
            if float(box.input_value()) == float(value):
                return
        except ValueError:
            pass
    raise AssertionError(f"{selector} shows {box.input_value()!r}, not {value}")


def click_until(page, button: str, appears, attempts: int = 3) -> None:
    """Click a button once the app is idle, again if what it should show does not come."""
    for attempt in range(attempts):
        settle(page)
        page.get_by_role("button", name=button).click()
        try:
            appears.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                shot(page, f"failed_{button.replace(' ', '_')}")
                raise


def open_app(page, url: str, deadline_s: float = 90.0) -> None:
    deadline = time.time() + deadline_s
    while True:
        try:
            page.goto(url, timeout=10_000)
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def pick_option(page, key: str, option: str, attempts: int = 3) -> None:
    """Choose ``option`` in the select box with widget key ``key``, again if a rerun closed the list."""
    for attempt in range(attempts):
        settle(page)
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=option).click(timeout=5_000)
            settle(page)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            if attempt == attempts - 1:
                shot(page, f"failed_pick_{option}")
                raise


def fill_text(page, selector: str, value: str) -> None:
    """Type ``value`` into the text input under ``selector`` and submit it."""
    box = page.locator(f"{selector} input")
    box.fill(value)
    box.press("Enter")
    settle(page)


def pick_options(page, key: str, options: list[str], attempts: int = 3) -> None:
    """Make ``options`` the whole choice of the multiselect with widget key ``key``: clear it, then per
    option click the widget, type the option's text and click it in the filtered list; again if a
    rerun closed the list."""
    widget = page.locator(f".st-key-{key}")
    settle(page)
    clear = widget.get_by_role("button", name="Clear all")
    if clear.count():
        clear.click()
        settle(page)
    for option in options:
        for attempt in range(attempts):
            settle(page)
            widget.locator("input").click()
            page.keyboard.type(option)
            try:
                page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
                settle(page)
                break
            except PlaywrightTimeout:
                page.keyboard.press("Escape")
                if attempt == attempts - 1:
                    shot(page, f"failed_pick_{option.replace('/', '_')}")
                    raise
    page.keyboard.press("Escape")
    settle(page)
    shown = widget.inner_text()
    missing = [option for option in options if option not in shown]
    assert not missing, f"{key} shows {shown!r}, without {missing}"
