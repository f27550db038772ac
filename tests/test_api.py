"""The public API: threadx.load_ohlcv, threadx.backtest, threadx.strategies."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.errors import DataError, ParamError


@pytest.fixture
def sample(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    return threadx.load_ohlcv("sample:BTC_USDT-1h")


def test_load_ohlcv_sample_is_canonical(sample):
    assert isinstance(sample.index, pd.DatetimeIndex) and str(sample.index.tz) == "UTC"
    assert sample.index.name == "timestamp" and sample.index.is_monotonic_increasing
    assert list(sample.columns) == ["open", "high", "low", "close", "volume"]
    assert all(sample[c].dtype == np.float64 for c in sample.columns)
    assert sample.attrs["synthetic"] is True and sample.attrs["timeframe"] == "1h"


def test_load_ohlcv_slices_and_resamples(sample):
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h", timeframe="4h", start="2023-02-01", end="2023-03-01")
    assert df.attrs["timeframe"] == "4h" and len(df) == 28 * 6
    assert df.index[0] == pd.Timestamp("2023-02-01", tz="UTC")
    assert df.index[-1] < pd.Timestamp("2023-03-01", tz="UTC")


def test_backtest_result_shape(sample):
    result = threadx.backtest(sample, "bb_atr", {"entry_z": 1.5})
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "n_trades", "win_rate",
                "profit_factor", "exposure", "total_fees", "final_equity"):
        assert key in result.metrics
    assert list(result.trades.columns[:11]) == ["entry_time", "exit_time", "side", "qty", "entry_price",
                                                "exit_price", "fees", "funding", "pnl", "return_pct", "bars_held"]
    assert "exit_reason" in result.trades
    assert result.equity.index.equals(sample.index)
    assert result.params["entry_z"] == 1.5 and result.params["bb_period"] == 20
    assert result.metrics["final_equity"] == pytest.approx(result.equity.iloc[-1])
    assert result.drawdown.min() == pytest.approx(result.metrics["max_drawdown"])
    payload = json.loads(result.to_json())
    assert payload["metrics"]["n_trades"] == len(payload["trades"])


def test_backtest_is_deterministic_and_cache_transparent(sample, tmp_path):
    from threadx.indicators import IndicatorBank

    a = threadx.backtest(sample, "donchian_breakout", bank=IndicatorBank(cache_dir=tmp_path / "c1"))
    b = threadx.backtest(sample, "donchian_breakout", bank=IndicatorBank(cache_dir=tmp_path / "c1"))  # disk hit
    c = threadx.backtest(sample, "donchian_breakout", bank=IndicatorBank(disk=False))
    assert a.metrics == b.metrics == c.metrics
    pd.testing.assert_frame_equal(a.trades, b.trades)


def test_engine_options_change_results(sample):
    base = threadx.backtest(sample, "ma_crossover")
    costly = threadx.backtest(sample, "ma_crossover", fee_bps=30, slippage_bps=5)
    assert costly.metrics["final_equity"] < base.metrics["final_equity"]
    assert costly.metrics["total_fees"] > base.metrics["total_fees"]
    half = threadx.backtest(sample, "ma_crossover", sizing="fraction", fraction=0.5)
    assert half.trades.qty.iloc[0] * half.trades.entry_price.iloc[0] == pytest.approx(5_000, rel=1e-9)


def test_strategies_registry_declarations():
    specs = {k: v for k, v in threadx.strategies().items() if not k.startswith("test_")}  # test-only ones aside
    assert set(specs) == {"ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend",
                          "envelope_dca", "envelope_dca_short", "grid_atr", "amplitude_hunter"}
    bb = specs["bb_atr"]
    defaults = bb.defaults()
    assert defaults["bb_period"] == 20 and defaults["entry_z"] == 1.0 and defaults["max_hold_bars"] == 72
    assert bb.param("atr_multiplier").opt_range == (1.0, 3.0, 0.1)
    for spec in specs.values():
        assert spec.normalize({}) == spec.defaults()  # declared defaults are valid as declared
        json.dumps(spec.to_dict())


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(strategy="nope"), ParamError),
        (dict(strategy="ma_crossover", params={"fast_period": 50, "slow_period": 20}), ParamError),
        (dict(strategy="bb_atr", params={"bb_period": 0}), ParamError),
        (dict(strategy="bb_atr", fill="tomorrow"), ParamError),
        (dict(strategy="bb_atr", fee_bps=-1), ParamError),
        (dict(strategy="bb_atr", leverage=0.5), ParamError),
        (dict(strategy="ma_crossover", sizing="risk"), ParamError),  # risk sizing needs a stop
    ],
)
def test_bad_arguments_raise_typed_errors(sample, kwargs, error):
    with pytest.raises(error):
        threadx.backtest(sample, **kwargs)


def test_bad_data_raises_data_error(tmp_path):
    with pytest.raises(DataError):
        threadx.load_ohlcv(tmp_path / "missing.parquet")
    with pytest.raises(DataError):
        threadx.backtest(pd.DataFrame({"close": [1.0, 2.0]}), "bb_atr")


@pytest.mark.parametrize("damage", ["nan", "negative", "duplicate", "unsorted"])
def test_backtest_rejects_damaged_frames(sample, damage):
    df = sample.iloc[:500].copy()
    if damage == "nan":
        df.iloc[100, df.columns.get_loc("close")] = np.nan
    elif damage == "negative":
        df.iloc[100, df.columns.get_loc("low")] = -1.0
    elif damage == "duplicate":
        df = pd.concat([df.iloc[:200], df.iloc[199:]])
    else:
        df = df.iloc[::-1]
    with pytest.raises(DataError):
        threadx.backtest(df, "ma_crossover")


def test_no_trades_note_names_indicators_that_never_warmed_up():
    """A span shorter than an indicator's warm-up books no trade and says which indicator had no
    value (it read as a strategy whose conditions never held); a run that trades says nothing."""
    from candles import candles

    short = candles(30, pd.Timestamp("2024-01-01", tz="UTC"))
    idle = threadx.backtest(short, "ma_crossover", {"fast_period": 10, "slow_period": 50})
    assert idle.metrics["n_trades"] == 0 and idle.meta["never_defined"] == ["slow"]
    note = idle.no_trades_note()
    assert note.startswith("No trades") and "30 bars: slow had no value" in note
    long = candles(400, pd.Timestamp("2024-01-01", tz="UTC"))
    traded = threadx.backtest(long, "ma_crossover", {"fast_period": 5, "slow_period": 20})
    assert traded.metrics["n_trades"] > 0 and traded.no_trades_note() is None
    assert "never_defined" not in traded.meta


_BOTH_WAYS = """
import numpy as np
from threadx.strategy import SIG_ENTER_LONG, SIG_ENTER_SHORT, ExitRules, Levels, Param, StrategySpec


def signals(bars, ind, p):
    sig = np.zeros(len(bars.close), dtype=np.uint8)
    sig[10::20] = SIG_ENTER_LONG | SIG_ENTER_SHORT
    return sig


SPEC = StrategySpec(name="both_ways", description="both entries on one bar",
                    params=(Param("unused", "int", 1, 1, 5, 1, opt_range=(1, 5, 1), feeds=()),),
                    indicators=lambda p: {}, signals=signals, levels=lambda ind, p: Levels(),
                    exits=lambda p: ExitRules())
"""


def test_no_trades_note_names_bars_flagged_both_ways(strategy_dir):
    """Entries long and short on one bar (neither taken, counted in n_skipped) read as entries of a
    zero quantity or below min_notional."""
    from candles import candles

    (strategy_dir / "both_ways.py").write_text(_BOTH_WAYS)
    result = threadx.backtest(candles(200, pd.Timestamp("2024-01-01", tz="UTC")), "both_ways")
    assert result.metrics["n_trades"] == 0 and result.metrics["n_skipped"] == 10 and result.meta["both_sides"] == 10
    assert result.no_trades_note() == ("No trades: 10 bars were flagged to enter both long and short, and neither side "
                                       "is taken on such a bar.")


def test_no_trades_note_names_the_minimum_order_value_as_the_page_and_cli_do():
    """It read "below the smallest one (min_notional)", beside a box labelled Min order value."""
    from threadx.data.synthetic import generate_synthetic

    result = threadx.backtest(generate_synthetic(days=60, seed=2), "ma_crossover", min_notional=1e9)
    assert result.metrics["n_trades"] == 0 and result.metrics["n_skipped"] > 0
    assert result.no_trades_note() == (f"No trades: {int(result.metrics['n_skipped']):,} entries were skipped: each "
                                       "gave an order below the minimum order value (min_notional 1,000,000,000) or a "
                                       "quantity of zero (under risk sizing: no stop distance, a level line of NaN or "
                                       "at the price).")
