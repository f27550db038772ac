"""threadx.units: each metric shown in its unit (fractions as %, counts whole, bytes in GiB),
checked against what the engine actually stores."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from threadx import units
from threadx.engine.layout import METRIC_NAMES, TRADE_COLUMNS
from threadx.engine.metrics import COUNT_METRICS
from threadx.units import (EMPTY, d3_format, format_bytes, format_count, format_metric, table_view,
                           unit_of)


@pytest.mark.parametrize("name, value, text", [
    ("win_rate", 0.4299, "42.99 %"),
    ("n_trades", 99.0, "99"),
    ("n_trades", np.int64(1353), "1,353"),
    ("return_pct", 12.3, "12.30 %"),
    ("return_pct", -4.567, "-4.57 %"),
    ("total_return", 0.1234, "12.34 %"),
    ("max_drawdown", -0.2, "-20.00 %"),
    ("sharpe", 1.2345, "1.23"),
    ("sharpe", -0.68, "-0.68"),
    ("largest_loss", -902.855, "-902.86"),
    ("final_equity", 11234.5, "11,234.50"),
    ("max_drawdown_bars", 10148.0, "10,148"),
    ("avg_bars_held", 26.84, "26.8"),
    ("liquidated", False, "no"),
    ("liquidated", 1.0, "yes"),
    ("entry_price", 22530.68014, "22,530.6801"),
    ("bytes_in_memory", 9_530_000_000, "8.9 GiB"),
    ("compute_seconds", 12.345, "12.3 s"),
    ("oos_total_return", 0.05, "5.00 %"),   # walk-forward columns: the unit of the metric
    ("is_n_trades", 12.0, "12"),
])
def test_format_metric(name, value, text):
    assert format_metric(name, value) == text


@pytest.mark.parametrize("value", [None, float("nan"), np.nan, pd.NA, pd.NaT])
def test_missing_values_are_a_dash(value):
    assert format_metric("win_rate", value) == EMPTY == "–"
    assert format_metric("n_trades", value) == format_bytes(value) == format_count(value) == "–"
    assert format_metric("fast_period", value) == "–"
    assert format_metric("win_rate", value, ascii_only=True) == "-"  # the CLI prints ASCII


def test_infinities():
    assert format_metric("profit_factor", math.inf) == "∞"
    assert format_metric("sortino", -math.inf) == "-∞"
    assert format_metric("cagr", math.inf) == "∞"  # no "inf %"
    assert format_metric("profit_factor", math.inf, ascii_only=True) == "inf"
    assert format_metric("calmar", -math.inf, ascii_only=True) == "-inf"


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (512, "512 B"), (1023, "1,023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (100 * 10**6, "95.4 MiB"),
    (2**30, "1.0 GiB"), (9_530_000_000, "8.9 GiB"), (16 * 2**30, "16.0 GiB"), (2**40, "1.0 TiB"),
    (1024 * 1024 - 1, "1.0 MiB"),  # rounds up to the next unit, never "1,024.0 KiB"
    (-1536, "-1.5 KiB"), (np.int64(4096), "4.0 KiB"), (1.5e3, "1.5 KiB"),
])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("n, text", [(99.0, "99"), (0, "0"), (-3, "-3"), (1_234_567, "1,234,567"), (2.6, "3"),
                                     (np.float32(7), "7")])
def test_format_count(n, text):
    assert format_count(n) == text


def test_names_without_a_unit_are_shown_as_they_are():
    assert unit_of("fast_period") is None
    assert format_metric("fast_period", 10) == "10"
    assert format_metric("entry_z", 1.5) == "1.5"
    assert format_metric("bb_std", 0.1 + 0.2) == "0.3"  # no binary noise
    assert format_metric("allow_short", np.bool_(True)) == "yes"
    assert format_metric("ma_type", "sma") == "sma"
    assert format_metric("status", "damaged: no manifest") == "damaged: no manifest"
    assert format_metric("sharpe", "n/a") == "n/a"  # text where a number was expected stays text


def test_every_engine_metric_and_trade_number_has_a_unit():
    assert [m for m in METRIC_NAMES if unit_of(m) is None] == []
    numeric_trade_columns = set(TRADE_COLUMNS) - {"entry_i", "exit_i", "side", "exit_reason"}
    assert [c for c in numeric_trade_columns if unit_of(c) is None] == []
    assert {m for m in METRIC_NAMES if unit_of(m).kind == "count"} == set(COUNT_METRICS)


def test_units_match_what_the_engine_stores():
    """Fractions are shares (0..1 for rates), return_pct is already in percent: measured, not assumed."""
    import threadx

    result = threadx.backtest(threadx.load_ohlcv("sample:BTC_USDT-1h"), "ma_crossover", {})
    m, trades = result.metrics, result.trades
    assert len(trades) > 10
    capital = result.meta["options"]["initial_capital"]
    assert m["total_return"] == pytest.approx(m["final_equity"] / capital - 1)
    assert m["win_rate"] == pytest.approx((trades["pnl"] > 0).mean())
    assert 0 <= m["exposure"] <= 1 and m["max_drawdown"] <= 0
    np.testing.assert_allclose(trades["return_pct"], 100 * trades["pnl"] / (trades["qty"] * trades["entry_price"]))
    assert m["n_trades"] == len(trades) and isinstance(m["n_trades"], int)
    assert m["total_fees"] == pytest.approx(trades["fees"].sum())  # money: quote currency, like pnl
    for name in ("total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure"):
        assert unit_of(name).kind == "fraction", name
    assert unit_of("return_pct").kind == "percent"
    assert format_metric("win_rate", m["win_rate"]) == f"{m['win_rate'] * 100:.2f} %"


def test_the_backtest_cards_keep_their_text():
    """The cards of the Backtest page (charts.metric_cards) and threadx.units agree."""
    from threadx.ui import charts

    metrics = {"total_return": 0.1234, "cagr": -0.05, "sharpe": 1.2345, "sortino": math.inf, "max_drawdown": -0.2,
               "calmar": math.nan, "n_trades": 1353, "win_rate": 0.4299, "profit_factor": math.inf,
               "exposure": 0.25, "total_fees": 9550.379, "final_equity": 11234.5}
    labels = {card[1]: card[0] for card in charts._CARDS}  # (key, label, ...)
    for label, text, _ in charts.metric_cards(metrics):
        assert text == format_metric(labels[label], metrics[labels[label]]), label


def test_streamlit_tables_keep_numbers_sortable_and_show_the_cards_decimals():
    frame = pd.DataFrame({"fast_period": [5, 10], "win_rate": [0.4, 0.431], "n_trades": [99.0, 120.0],
                          "return_pct": [12.3, -1.0], "rss": [2**30, 2**20], "total_fees": [1.5, 2.0],
                          "oos_sharpe": [1.0, 0.5]})
    shown, config = table_view(frame)
    assert set(config) == {"win_rate", "n_trades", "return_pct", "rss", "total_fees", "oos_sharpe"}
    formats = {name: col["type_config"]["format"] for name, col in config.items()}
    assert formats == {"win_rate": "%.2f %%", "n_trades": "%,d", "return_pct": "%.2f %%", "rss": "%,.1f MiB",
                       "total_fees": "%,.2f", "oos_sharpe": "%,.2f"}
    assert shown["rss"].tolist() == [1024.0, 1.0]  # in MiB as the cards (Streamlit's "bytes" preset is decimal MB)
    # a fraction in percent points with two decimals: Streamlit's "percent" preset wrote 40% and
    # 43.1% in one column beside the cards' "40.00 %" (looked at in Chromium); with a step it cut
    # the digits past it off (1.029885 read 102.98%)
    assert shown["win_rate"].tolist() == [40.0, 43.1] and frame["win_rate"].tolist() == [0.4, 0.431]
    assert (shown.drop(columns=["win_rate", "rss"]) == frame.drop(columns=["win_rate", "rss"])).all().all()
    assert config["win_rate"]["type_config"].get("step") is None
    assert all(col["type_config"]["type"] == "number" for col in config.values())
    aliased, config = table_view(pd.DataFrame({"Return %": [1.0], "Side": ["long"]}), aliases={"Return %": "return_pct"})
    assert list(config) == ["Return %"] and config["Return %"]["type_config"]["format"] == "%.2f %%"
    labelled, config = table_view(pd.DataFrame({"market_return": [0.5], "fast_period": [5], "text_share": ["-"]}),
                                  labels={"market_return": "market return", "fast_period": "fast"},
                                  aliases={"text_share": "win_rate"})
    assert config["market_return"]["label"] == "market return" and labelled["market_return"].tolist() == [50.0]
    assert config["fast_period"]["type_config"]["format"] is None  # never None as a config: None hides a column
    assert labelled["text_share"].tolist() == ["-"] and "text_share" not in config  # not numbers: left alone
    mixed, config = table_view(pd.DataFrame({"win_rate": pd.Series([0.5, None], dtype=object)}))
    assert mixed["win_rate"].iloc[0] == 50.0 and pd.isna(mixed["win_rate"].iloc[1]) and "win_rate" in config


def test_plotly_formats():
    assert d3_format("win_rate") == ".2%" and d3_format("oos_max_drawdown") == ".2%"
    assert d3_format("n_trades") == ",d" and d3_format("sharpe") == ",.2f" and d3_format("dsr") == ",.3f"
    assert d3_format("fast_period") == ",.4g"
    assert units.is_fraction("is_total_return") and not units.is_fraction("return_pct")


def test_a_unit_kind_must_be_known():
    with pytest.raises(ValueError, match="unknown unit kind"):
        units.Unit("furlongs")


def test_units_module_does_not_import_numpy_or_streamlit():
    """The CLI imports threadx.units at start-up: it must stay cheap."""
    import subprocess
    import sys

    code = "import sys, threadx.units; print(sorted(m for m in ('numpy', 'pandas', 'streamlit') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_meme_coin_price_shows_its_digits():
    """PEPE / SHIB-like prices (~1.2e-5) read 0.0000 in the trades table and the CLI."""
    import pandas as pd

    from threadx.units import d3_format, format_metric, table_view

    assert format_metric("entry_price", 1.2345e-05) == "0.0000123450"  # six significant digits
    assert format_metric("entry_price", 1.0805049e-07) != format_metric("exit_price", 1.081084e-07)
    assert format_metric("exit_price", 65432.125) == "65,432.1250"  # (as before: four decimals)
    assert format_metric("stop_at_exit", 1e-20) == "1.0000e-20"
    _, config = table_view(pd.DataFrame({"entry_price": [1.2345e-05, 2.5e-05], "exit_price": [65432.1, 65000.0]}))
    assert config["entry_price"]["type_config"]["format"] == "%,.10f"
    assert config["exit_price"]["type_config"]["format"] == "%,.4f"
    assert d3_format("entry_price") == ",.6~g"
