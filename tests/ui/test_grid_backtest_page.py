"""A grid strategy on the Backtest page: the legs as trades, their cycle, and the cycle cards."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402


def test_a_grid_backtest_shows_its_legs_and_cycles() -> None:
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("grid_atr").run()
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["backtest"]["result"]
    m, trades = result.metrics, result.trades
    assert m["n_trades"] > m["n_cycles"] > 0  # several legs per cycle on the sample
    cards = {c.label: c.value for c in at.metric}
    assert cards["Trades"] == f"{int(m['n_trades']):,}" and cards["Cycles"] == f"{int(m['n_cycles']):,}"
    assert cards["Cycle win rate"].endswith("%")
    assert trades["cycle"].nunique() == m["n_cycles"]


def test_amplitude_hunter_shows_its_partial_exits_and_added_legs() -> None:
    at = open_page("2_Backtest.py")
    at.selectbox(key="bt_strategy").set_value("amplitude_hunter").run()
    assert not at.exception
    at.number_input(key="bt:amplitude_hunter:pyramiding_max_adds").set_value(2).run()
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["backtest"]["result"]
    trades = result.trades
    assert result.params["pyramiding_max_adds"] == 2
    assert result.metrics["n_trades"] > result.metrics["n_cycles"] > 0
    assert (trades["exit_reason"] == "take_profit").any()  # the partial exit at the far band, its own row
    cards = {c.label: c.value for c in at.metric}
    assert cards["Cycles"] == f"{int(result.metrics['n_cycles']):,}"
