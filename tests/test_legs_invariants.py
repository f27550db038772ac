"""The accounting invariants of several positions at once, on real candles.

For the grid strategies and amplitude_hunter (adds, partial exits) on the three real 1h files,
long and short, at leverage 1 and 3:
the legs' PnL adds up to the equity change, each row pays one fee per fill, and the whole
equity curve is rebuilt from the trade rows alone (each row is a piece of a leg held from
its entry bar to its exit bar: realised PnL once closed, open PnL less its entry fee before;
``test_strategies.rebuild_equity``).
"""
from __future__ import annotations

import numpy as np
import pytest

import threadx
from threadx.data.io import load_ohlcv

from test_strategies import rebuild_equity

FILES = ("BTC_USDT-1h", "ETH_USDT-1h", "SOL_USDT-1h")
_AMPLITUDE = {"amplitude_score_threshold": 0.45, "volume_zscore_threshold": 0.0, "bbwidth_percentile_threshold": 40.0,
              "pyramiding_max_adds": 2}
CASES = [("envelope_dca", {}), ("envelope_dca_short", {}), ("grid_atr", {"sides": "long"}),
         ("grid_atr", {"sides": "short"}), ("grid_atr", {"sides": "both", "num_levels": 4}),
         ("amplitude_hunter", _AMPLITUDE), ("amplitude_hunter", {**_AMPLITUDE, "trailing_type": "pb_floor"})]
FEE = 0.001


@pytest.fixture(params=FILES)
def candles(request, shared_data):
    return load_ohlcv(str(shared_data / "binance" / f"{request.param}.parquet"))


@pytest.mark.parametrize("leverage", [1.0, 3.0])
@pytest.mark.parametrize("name, params", CASES)
def test_the_books_balance_leg_by_leg(candles, name, params, leverage):
    result = threadx.backtest(candles, name, {**params, "leverage": leverage}, fee_bps=10)
    m, trades, equity = result.metrics, result.trades, result.equity.to_numpy()
    capital = 10_000.0
    assert m["n_trades"] == len(trades) > 0 and m["n_cycles"] == trades["cycle"].nunique()
    assert trades["pnl"].sum() == pytest.approx(m["final_equity"] - capital, rel=0, abs=1e-9 * capital)
    fees = FEE * trades["qty"] * (trades["entry_price"] + trades["exit_price"])
    np.testing.assert_allclose(trades["fees"], fees, rtol=1e-12)
    assert m["total_fees"] == pytest.approx(trades["fees"].sum(), rel=1e-12)
    if not m["liquidated"]:
        np.testing.assert_allclose(equity, rebuild_equity(trades, candles["close"].to_numpy(), capital),
                                   rtol=0, atol=1e-7 * capital)
    # a cycle's legs share one side and one exit, but for its partial closes (take_profit before the end)
    per_cycle = trades.groupby("cycle").agg(sides=("side", "nunique"), exits=("exit_i", "nunique"))
    partials = trades[trades["exit_reason"] == "take_profit"].groupby("cycle")["exit_i"].nunique()
    assert (per_cycle["sides"] == 1).all()
    assert (per_cycle["exits"] <= 1 + partials.reindex(per_cycle.index, fill_value=0)).all()
    if name == "amplitude_hunter":
        assert (trades.groupby("cycle")["entry_i"].nunique() > 1).any() and len(partials) > 0
        # no leg is closed twice over: the quantities closed per leg add up to what it opened
        # (a partial close and the rest share the leg's entry bar and price)
        opened = trades.groupby(["cycle", "entry_i"])["entry_price"].nunique()
        assert (opened == 1).all()
    cycles = trades.groupby("cycle")["pnl"].sum()
    assert m["cycle_win_rate"] == pytest.approx((cycles > 0).mean())
