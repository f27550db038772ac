"""A number box out of range blocks its page's action and says why, on every page.

Boxes were bounded by the browser: a value typed out of range stayed in the box (in red) while
the last valid value ran, so a backtest under a fee box reading -5 ran at 10 bps and said so
only in its caption. The bounds are now checked by the page (``widgets.number_box``)."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402


def shown(at) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning]


@pytest.mark.parametrize("key, value, words", [
    ("bt_fee", -5.0, "Fee (bps) must be between 0 and 1,000, got -5"),
    ("bt_capital", 0.0, "Initial capital must be at least 1, got 0"),
    ("bt_leverage", 150.0, "Leverage must be between 0 and 100, got 150"),
    ("bt_min_notional", -1.0, "Min order value must be at least 0, got -1"),
])
def test_backtest_refuses_to_run_under_a_cost_box_out_of_range(key, value, words):
    at = open_page("2_Backtest.py", strategy="ma_crossover")
    assert not at.button(key="bt_run").disabled
    at.number_input(key=key).set_value(value).run()
    assert not at.exception, at.exception
    assert any(words in text and "Run backtest waits for" in text for text in shown(at)), shown(at)
    assert at.button(key="bt_run").disabled
    at.number_input(key=key).set_value(1.0).run()  # back in range: runs again
    assert not at.button(key="bt_run").disabled and not at.error


@pytest.mark.parametrize("page, key, value, words, button", [
    ("4_Validation.py", "wf_oos_days", 0.0, "Out-of-sample (days) must be at least 1, got 0", "wf_launch"),
    ("7_Research.py", "rs_boot", 50, "Bootstrap resamples must be between 100 and 20,000, got 50", "rs_launch"),
])
def test_a_walk_forward_or_research_box_out_of_range_blocks_launch(page, key, value, words, button):
    at = open_page(page, strategy="ma_crossover")
    at.number_input(key=key).set_value(value).run()
    assert not at.exception, at.exception
    assert any(words in text for text in shown(at)), shown(at)
    assert at.button(key=button).disabled


def test_portfolio_boxes_out_of_range_block_their_buttons():
    at = open_page("8_Portfolio.py")
    at.number_input(key="pf_weight").set_value(0.0).run()
    assert any("Weight must be at least 0.01, got 0" in text for text in shown(at)), shown(at)
    assert at.button(key="pf_add").disabled
    at.number_input(key="pf_fee").set_value(2000.0).run()
    assert not at.exception, at.exception
    assert any("Fee (bps) must be between 0 and 1,000, got 2,000" in text for text in shown(at)), shown(at)
    assert at.button(key="pf_launch").disabled
