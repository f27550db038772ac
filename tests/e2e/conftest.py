"""The headless Chromium the end-to-end tests share (see browser_driver.py)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module."""
    playwright = pytest.importorskip("playwright.sync_api")
    from browser_driver import BROWSER_ARGS, CHROMIUM

    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()
