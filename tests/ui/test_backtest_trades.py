"""Backtest page, issue 11: the trades table zooms the price chart to the selected trade."""
from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402


def price_spec(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def run_default_backtest():
    at = open_page("2_Backtest.py")
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    return at


def test_selecting_a_trade_row_zooms_the_chart_to_it():
    at = run_default_backtest()
    table = at.dataframe(key="bt_trades").value
    assert "Exit reason" in table.columns and table["Entry (UTC)"].dt.tz is None
    assert table["#"].tolist() == list(range(1, len(table) + 1))  # the number a picked trade is called by
    full = at.slider(key="bt_range").value
    # it zooms the charts only: named so (it read "Date range (UTC)" under the cards, which it never changes)
    assert at.slider(key="bt_range").label == "Chart range (UTC)" and "whole run" in at.slider(key="bt_range").help
    assert "markers hidden" in price_spec(at)["layout"]["title"]["text"]  # >1,000 trades at full range

    row = 3
    at.session_state["bt_trades"] = {"selection": {"rows": [row], "columns": []}}  # what a click sends
    at.run()
    assert not at.exception, at.exception
    entry, exit_ = table["Entry (UTC)"].iloc[row], table["Exit (UTC)"].iloc[row]
    start, end = at.slider(key="bt_range").value
    assert full[0] <= start < entry and exit_ < end < full[1]
    spec = price_spec(at)
    assert "resampled" not in spec["layout"]["title"]["text"]  # the real 1h bars of the window
    candle = next(t for t in spec["data"] if t["type"] == "candlestick")
    x = pd.to_datetime(candle["x"]).tz_localize("UTC")  # drawn as naive UTC (charts.plot_times)
    assert x[0] == pd.Timestamp(start, tz="UTC") and x[-1] == pd.Timestamp(end, tz="UTC")
    assert (x[1:] - x[:-1] == pd.Timedelta(hours=1)).all()
    levels = [t["name"] for t in spec["data"] if t.get("legendgroup") == "levels"]
    assert levels[0].startswith("Entry") and levels[1].startswith("Exit")
    assert table["Exit reason"].iloc[row] in levels[1]
    markers = [t for t in spec["data"] if t.get("mode") == "markers"]
    assert markers, "the window's trades are marked"
    assert any(f"Trade #{row + 1}: " in c.value for c in at.caption)  # (numbered from 1, as the table's "#")

    at.toggle(key="bt_log").set_value(True).run()
    assert price_spec(at)["layout"]["yaxis"]["type"] == "log"
    assert at.slider(key="bt_range").value == (start, end)  # the zoom survives other reruns
    at.button(key="bt_full_range").click().run()
    assert at.slider(key="bt_range").value == full
    # and no trade selected: its caption and its levels' legend entries stayed on the whole period
    assert not any("Trade #" in c.value for c in at.caption)
    assert not [t for t in price_spec(at)["data"] if t.get("legendgroup") == "levels"]


def test_equity_chart_has_buy_and_hold_and_the_range_slider_shows_real_bars():
    at = run_default_backtest()
    equity = json.loads(at.get("plotly_chart")[1].proto.spec)
    names = [t.get("name") for t in equity["data"]]
    assert "Buy and hold (no fees)" in names and "Strategy equity" in names
    at.slider(key="bt_range").set_value((pd.Timestamp("2023-03-01").to_pydatetime(),
                                         pd.Timestamp("2023-03-05").to_pydatetime())).run()
    candle = next(t for t in price_spec(at)["data"] if t["type"] == "candlestick")
    assert len(candle["x"]) == 4 * 24 + 1


def test_a_new_run_resets_the_zoom_and_the_selection():
    at = run_default_backtest()
    full = at.slider(key="bt_range").value
    at.session_state["bt_trades"] = {"selection": {"rows": [5], "columns": []}}
    at.run()
    assert at.slider(key="bt_range").value != full
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    assert at.slider(key="bt_range").value == full
    assert not any("Trade #" in c.value for c in at.caption)
    assert not [t for t in price_spec(at)["data"] if t.get("legendgroup") == "levels"]


def test_money_and_prices_say_their_currency():
    """The money columns, the price axis and the equity axis name the dataset's quote currency
    (the charts could say it, but the page never passed it: "PnL 12.30" in what?)."""
    at = run_default_backtest()  # the synthetic BTC_USDT sample: prices in USDT
    columns = json.loads(at.dataframe(key="bt_trades").proto.columns)
    assert columns["PnL"]["label"] == "PnL (USDT)" and columns["Fees"]["label"] == "Fees (USDT)"
    assert "label" not in columns.get("Bars held", {})
    assert price_spec(at)["layout"]["yaxis"]["title"]["text"] == "Price (USDT)"
    equity = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert equity["layout"]["yaxis"]["title"]["text"] == "Equity (USDT)"
    assert any(t.get("name") == "Initial capital 10,000 USDT" for t in equity["data"])


def test_a_value_out_of_bounds_is_said_and_blocks_run_and_the_defaults_can_be_restored():
    """bb_period -5 typed in the box stayed shown (a small red mark) while the run used the last valid
    value; the page said "The defaults are the strategy's declared defaults" over saved values."""
    at = open_page("2_Backtest.py")
    assert not any(b.key == "bt_reset_params" for b in at.button)  # at the declared defaults: nothing to reset
    at.number_input(key="bt:bb_atr:bb_period").set_value(-5).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Parameters: bb_period=-5 is below its minimum 2"]
    assert at.button(key="bt_run").disabled
    at.number_input(key="bt:bb_atr:bb_period").set_value(30).run()
    assert not at.error and not at.button(key="bt_run").disabled
    at.number_input(key="bt:bb_atr:bb_period").set_value(-5).run()  # refused: the saved 30 stays (was 20)
    assert open_page("2_Backtest.py").number_input(key="bt:bb_atr:bb_period").value == 30
    at.number_input(key="bt:bb_atr:bb_period").set_value(30).run()
    assert any("Not the strategy's declared defaults: bb_period" in c.value for c in at.caption)
    again = open_page("2_Backtest.py")  # a new session: the saved value, said as such
    assert again.number_input(key="bt:bb_atr:bb_period").value == 30
    again.button(key="bt_reset_params").click().run()
    assert not again.exception, again.exception
    assert again.number_input(key="bt:bb_atr:bb_period").value == 20
    assert not any(b.key == "bt_reset_params" for b in again.button)
    assert open_page("2_Backtest.py").number_input(key="bt:bb_atr:bb_period").value == 20  # saved as reset



def test_the_downloads_are_named_for_the_run_that_made_them():
    """Every download was trades.csv / metrics.csv / backtest.json, whatever the run: the stem
    names the strategy, the dataset and the backtest id (the name the page gives each file)."""
    from threadx.ui.widgets import download_stem

    at = run_default_backtest()
    assert len(at.get("download_button")) == 3
    shown = at.session_state["backtest"]
    assert shown["bt_id"] and download_stem(shown["strategy"], shown["dataset"], shown["bt_id"]) == (
        f"bb_atr_synthetic-BTC_USDT-1h_{shown['bt_id']}")
    assert download_stem("s", "a/b:c", None, "") == "s_a-b-c"


def test_a_run_without_trades_says_so_in_its_tabs_and_draws_a_readable_drawdown():
    """No trades: nine blank rows under "select a row to zoom the chart", a blank Trade returns
    tab, and a drawdown axis autoscaled over -100 % .. +100 % for a drawdown of 0."""
    at = open_page("2_Backtest.py")
    at.number_input(key="bt:bb_atr:entry_z").set_value(5.0).run()
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    assert at.metric[0] is not None and "No trades in this run." in [c.value for c in at.caption]
    assert not [d for d in at.dataframe if d.key == "bt_trades"]
    equity = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert equity["layout"]["yaxis2"]["range"] == [-0.01, 0.0]
    assert at.get("download_button")[0].proto.disabled  # (an empty Trades CSV was offered)


def test_session_data_says_beside_the_metrics_that_its_sharpe_annualises_every_bar(workspace):
    """Stock-hours data (7 bars a weekday) read a Sharpe about x1.5 too high: said at load in the CLI,
    not on the page showing that Sharpe."""
    from candles import candles

    from threadx.data.io import write_ohlcv

    df = candles(24 * 120, pd.Timestamp("2024-01-01"))
    hours = df[(df.index.hour >= 14) & (df.index.hour < 21) & (df.index.day_of_week < 5)]
    (workspace / "data" / "local").mkdir(parents=True)
    write_ohlcv(hours, workspace / "data" / "local" / "STK_USD-1h.parquet")
    at = open_page("2_Backtest.py")
    at.session_state["dataset"] = "local/STK_USD-1h"
    at.run()
    at.button(key="bt_run").click().run()
    assert not at.exception, at.exception
    notes = [c.value for c in at.caption if "annualise as if every bar were there" in c.value]
    assert len(notes) == 1 and notes[0].startswith("The data holds"), [c.value for c in at.caption]
    at.session_state["dataset"] = "synthetic/BTC_USDT-1h"  # round-the-clock data: nothing to say
    at.run()
    at.button(key="bt_run").click().run()
    assert not [c.value for c in at.caption if "annualise as if" in c.value]
