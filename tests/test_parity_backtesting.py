"""Pyramiding and partial exits against backtesting.py, trade for trade.

A simple add/reduce rule, decided from precomputed flags so that both engines act on the same
bars: enter long on an SMA(10) / SMA(30) cross up, add a leg (the first leg's notional again,
at most 3 legs) when the close makes a 20-bar high, close half of every leg when RSI(14)
crosses above 70, close everything on the cross down. Both fill at the signal bar's close
(backtesting.py's ``trade_on_close``), without commission. backtesting.py buys whole units: a
cash value of 1e13 makes that rounding negligible (sizes and PnL agree to 1e-5); bars and
prices must be equal exactly. ``Position.close(portion)`` closes that portion of every trade,
as ThreadX's reduce does (one row per leg). Legs open at the end of the data are compared on
their entries only (the engines close them on different bars by convention).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from threadx.data.bars import as_bars
from threadx.data.io import load_ohlcv
from threadx.engine import kernel
from threadx.engine import layout as L
from threadx.engine.inputs import options_from, effective_rules, kernel_args
from threadx.engine.result import trades_frame
from threadx.strategy.base import ExitRules, Levels

backtesting = pytest.importorskip("backtesting")

CASH = 1e13  # with BTC near 10,000 USD: about 1e8 units a leg, so whole units round by 1e-8
FIRST = 0.1  # the first leg's share of equity


def flags(df: pd.DataFrame) -> np.ndarray:
    close = df["close"]
    fast, slow = close.rolling(10).mean(), close.rolling(30).mean()
    up = (fast > slow) & (fast.shift() <= slow.shift())
    down = (fast < slow) & (fast.shift() >= slow.shift())
    high20 = close >= close.rolling(20).max()
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    rsi = 100 - 100 / (1 + gain / loss)
    hot = (rsi > 70) & (rsi.shift() <= 70)
    sig = np.zeros(len(df), np.uint8)
    sig[up.to_numpy()] |= L.SIG_ENTER_LONG
    sig[high20.to_numpy()] |= L.SIG_ADD_LONG  # only while long
    sig[hot.to_numpy()] |= L.SIG_REDUCE_LONG
    sig[down.to_numpy()] = L.SIG_EXIT_LONG  # the exit alone on its bar
    return sig


def threadx_trades(df: pd.DataFrame, sig: np.ndarray) -> pd.DataFrame:
    bars = as_bars(df)
    opts = options_from(fill="close", fee_bps=0.0, initial_capital=CASH, min_notional=0.0)
    rules = effective_rules(ExitRules(sizing="fraction", fraction=FIRST, max_legs=3, reduce_fraction=0.5), opts)
    _, rows, _ = kernel.run_full(*kernel_args(bars, sig, Levels(), rules, opts))
    return trades_frame(rows, bars.index)


def backtesting_trades(df: pd.DataFrame, sig: np.ndarray) -> pd.DataFrame:
    from backtesting import Backtest, Strategy

    data = df.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    last = len(data) - 1

    class AddReduce(Strategy):
        def init(self):
            self.first_notional = 0.0

        def next(self):
            i = len(self.data) - 1
            s, price = int(sig[i]), self.data.Close[-1]
            if i == last:
                return  # a signal on the last bar is not filled (SPEC §3)
            if s & L.SIG_EXIT_LONG:
                if self.position:
                    self.position.close()
                return
            if self.position and s & L.SIG_REDUCE_LONG:
                self.position.close(0.5)  # half of every open trade
            if not self.position and s & L.SIG_ENTER_LONG:
                units = int(FIRST * self.equity / price)
                self.first_notional = units * price
                self.buy(size=units)
            elif self.position and s & (L.SIG_ENTER_LONG | L.SIG_ADD_LONG) and len(self.trades) < 3:
                self.buy(size=int(self.first_notional / price))  # the first leg's notional again

    stats = Backtest(data, AddReduce, cash=CASH, commission=0.0, trade_on_close=True, finalize_trades=True).run()
    return stats["_trades"]


@pytest.fixture
def candles(shared_data):
    return load_ohlcv(str(shared_data / "binance" / "BTC_USDT-1h.parquet")).iloc[:4000]


def test_pyramiding_and_partial_exits_match_backtesting_py(candles):
    sig = flags(candles)
    ref = backtesting_trades(candles, sig).sort_values(["EntryBar", "ExitBar"], kind="stable").reset_index(drop=True)
    mine = threadx_trades(candles, sig).sort_values(["entry_i", "exit_i"], kind="stable").reset_index(drop=True)
    # legs still open at the end: backtesting.py closes them on the bar before the last with
    # trade_on_close, ThreadX at the last close (end_of_data): the same legs, compared on entries
    last = len(candles) - 1
    open_ref, open_mine = ref[ref["ExitBar"] >= last - 1], mine[mine["exit_reason"] == "end_of_data"]
    assert list(open_mine["entry_i"]) == list(open_ref["EntryBar"])
    ref, mine = ref.drop(open_ref.index).reset_index(drop=True), mine.drop(open_mine.index).reset_index(drop=True)
    assert len(ref) > 30
    assert (mine["cycle"].value_counts() > 1).any()  # several legs per position happen
    assert (mine.groupby(["cycle", "entry_i"]).size() > 1).any()  # and partial closes of a leg
    assert len(mine) == len(ref)
    assert list(mine["entry_i"]) == list(ref["EntryBar"]) and list(mine["exit_i"]) == list(ref["ExitBar"])
    np.testing.assert_array_equal(mine["entry_price"], ref["EntryPrice"])
    np.testing.assert_array_equal(mine["exit_price"], ref["ExitPrice"])
    np.testing.assert_allclose(mine["qty"], ref["Size"], rtol=1e-5)
    np.testing.assert_allclose(mine["pnl"], ref["PnL"], rtol=1e-4, atol=1.0)
