"""Helpers of the AppTest page tests."""
from __future__ import annotations

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def open_page(name: str, **query: str) -> AppTest:
    """Run ``views/<name>`` once (``query``: the URL's query params, ``strategy="ma_crossover"``
    say); it must not raise."""
    at = AppTest.from_file(str(ROOT / "views" / name), default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def run_until(at: AppTest, done, timeout: float = 120.0) -> AppTest:
    """Rerun ``at`` until ``done(at)`` (a background job finished, say)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        time.sleep(0.5)
    raise AssertionError("condition not reached in time")


def set_ranges(at: AppTest, prefix: str, ranges: dict) -> AppTest:
    """Put each param of ``ranges`` on its (min, max, step) range in the search-space editor whose
    widget keys start with ``prefix`` ("opt:ma_crossover", "wf:bb_atr", ...), then rerun."""
    for name, (lo, hi, step) in ranges.items():
        key = f"{prefix}:{name}"
        at.selectbox(key=f"{key}:mode").set_value("range").run()
        at.number_input(key=f"{key}:min").set_value(lo)
        at.number_input(key=f"{key}:max").set_value(hi)
        at.number_input(key=f"{key}:step").set_value(step)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The values of AppTest elements (``at.info``, ``at.warning``, ...), one per line."""
    return "\n".join(str(e.value) for e in elements)


def charts(at: AppTest) -> dict[str, dict]:
    """The page's Plotly specs by their title's head (a wrapped head's lines joined, its smaller
    detail lines left out)."""
    out = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        lines = str(spec.get("layout", {}).get("title", {}).get("text", "")).split("<br>")
        out[" ".join(line for line in lines if not line.startswith("<span")) or lines[0]] = spec
    return out


def in_order(at: AppTest) -> list[tuple[str, str]]:
    """The main area's elements in page order, as (type, key or the start of its text)."""
    out: list[tuple[str, str]] = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            value = getattr(child, "value", "")
            out.append((getattr(child, "type", ""), getattr(child, "key", None) or (value if isinstance(value, str)
                                                                                   else "")[:60]))
            walk(child)

    walk(at.main)
    return out
