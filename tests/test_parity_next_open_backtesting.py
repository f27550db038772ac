"""Fills at the next open, with percent stops and targets, against backtesting.py on other
markets than the BTC file of the other parity tests (ETH and SOL 1h), trade by trade.

Conventions aligned (ThreadX: fill="next_open", sizing all_in, fee_bps=10, no slippage,
ambiguity "conservative", min_notional 0; backtesting.py: ``trade_on_close=False``,
commission 0.001, ``finalize_trades=True``):

* a signal at the close of bar t fills at the open of t + 1 (backtesting.py's market orders);
* the stop and target are set from the fill price (ThreadX's ``stop_pct`` / ``tp_pct``); the
  peer takes absolute levels with the order, so they are computed here from the next open
  (the test reads ahead, the engines do not). backtesting.py tests them on the fill bar too,
  as ThreadX does; both fill a gap through a level at the open, the stop first when one bar
  holds both;
* backtesting.py refuses an order whose levels are on the wrong side of the signal bar's
  close: those entries are dropped for both engines;
* whole units: a cash of 1e9 x the price makes that rounding negligible (sizes to one unit,
  PnL and fees to 2e-6 of the notional).
"""
from __future__ import annotations

import numpy as np
import pytest

from parity_helpers import ExitRules, L, candles, cross_flags, run_threadx

backtesting = pytest.importorskip("backtesting")

FEE_BPS = 10.0
FEE = FEE_BPS / 1e4
SL, TP = 0.006, 0.012
N_BARS = 4000


def flags(df, side: str, d: int) -> np.ndarray:
    """SMA 10/30 cross entries of one side (exits on the opposite cross), less the entries whose
    levels backtesting.py refuses."""
    up, down = cross_flags(df["close"], 10, 30)
    sig = np.zeros(len(df), np.uint8)
    if side == "long":
        sig[up] |= L.SIG_ENTER_LONG
        sig[down] |= L.SIG_EXIT_LONG
    else:
        sig[down] |= L.SIG_ENTER_SHORT
        sig[up] |= L.SIG_EXIT_SHORT
    o, c = df["open"].to_numpy(), df["close"].to_numpy()
    fill = np.r_[o[1:], np.nan]
    stop, target = fill * (1 - d * SL), fill * (1 + d * TP)
    refused = ~((d * (c - stop) > 0) & (d * (target - c) > 0))
    entry = np.uint8(L.SIG_ENTER_LONG | L.SIG_ENTER_SHORT)
    sig[((sig & entry) != 0) & refused] &= ~entry
    return sig


def run_backtesting(df, sig, d: int, cash: float):
    from backtesting import Backtest, Strategy

    data = df.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    last = len(data) - 1
    opens = df["open"].to_numpy()

    class Flags(Strategy):
        def init(self):
            pass

        def next(self):
            i = len(self.data) - 1
            if i == last:
                return
            s, pos = int(sig[i]), self.position
            if pos and ((pos.is_long and s & L.SIG_EXIT_LONG) or (pos.is_short and s & L.SIG_EXIT_SHORT)):
                pos.close()
                pos = None
            if not pos and s & (L.SIG_ENTER_LONG | L.SIG_ENTER_SHORT):
                fill = opens[i + 1]
                (self.buy if d > 0 else self.sell)(size=1 - 1e-12, sl=fill * (1 - d * SL), tp=fill * (1 + d * TP))

    stats = Backtest(data, Flags, cash=cash, commission=FEE, trade_on_close=False, finalize_trades=True).run()
    return stats["_trades"].sort_values("EntryBar", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("name", ["ETH_USDT-1h.parquet", "SOL_USDT-1h.parquet"])
@pytest.mark.parametrize("side", ["long", "short"])
def test_next_open_fills_with_percent_stops_match_backtesting_py(name, side):
    df = candles(name, None).iloc[-N_BARS:]
    d = 1 if side == "long" else -1
    sig = flags(df, side, d)
    cash = 1e9 * float(df["close"].median())
    _, mine, _ = run_threadx(df, sig, ExitRules(stop_pct=SL, tp_pct=TP, sizing="all_in"), fill="next_open",
                             fee_bps=FEE_BPS, slippage_bps=0.0, initial_capital=cash, ambiguity="conservative")
    reasons = mine.exit_reason.value_counts()
    assert reasons.get("stop_loss", 0) > 30 and reasons.get("take_profit", 0) > 10 and reasons.get("signal", 0) > 0
    assert (mine.entry_i == mine.exit_i).sum() > 0  # exits on the fill bar are compared too
    ref = run_backtesting(df, sig, d, cash)

    last = len(df) - 1
    open_mine, open_ref = mine[mine.exit_reason == "end_of_data"], ref[ref.ExitBar >= last]
    assert list(open_mine.entry_i) == list(open_ref.EntryBar)
    mine, ref = mine.drop(open_mine.index).reset_index(drop=True), ref.drop(open_ref.index).reset_index(drop=True)
    assert len(mine) == len(ref)
    np.testing.assert_array_equal(mine.entry_i, ref.EntryBar)
    np.testing.assert_array_equal(mine.exit_i, ref.ExitBar)
    np.testing.assert_array_equal(np.full(len(ref), d), np.sign(ref.Size))
    np.testing.assert_allclose(mine.entry_price, ref.EntryPrice, rtol=1e-12, atol=0)
    np.testing.assert_allclose(mine.exit_price, ref.ExitPrice, rtol=1e-11, atol=0)
    assert (np.abs(mine.qty - ref.Size.abs()) <= 1.0 + 1e-9 * mine.qty).all()  # whole units
    notional = (mine.qty * mine.entry_price).to_numpy()
    assert (np.abs(mine.fees - ref.Commission) <= 2e-6 * notional).all()
    assert (np.abs(mine.pnl - ref.PnL) <= 2e-6 * notional).all()
