"""Parity with vectorbt where conventions match: close fills, all-in sizing, 10 bps fees."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

import threadx

vbt = pytest.importorskip("vectorbt")

@pytest.fixture(scope="module")
def btc(btc_1h):
    return btc_1h


@pytest.mark.parametrize("fast,slow", [(10, 30), (5, 100), (21, 55)])
def test_ma_crossover_matches_vectorbt(btc, tmp_path, fast, slow):
    from threadx.indicators import IndicatorBank

    ours = threadx.backtest(btc, "ma_crossover", {"fast_period": fast, "slow_period": slow}, fill="close",
                            sizing="all_in", fee_bps=10, bank=IndicatorBank(cache_dir=tmp_path))
    close = btc.close
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    entries = (f > s) & (f.shift() <= s.shift())
    exits = (f < s) & (f.shift() >= s.shift())
    pf = vbt.Portfolio.from_signals(close, entries, exits, fees=0.001, init_cash=10_000)
    theirs = pf.trades.records_readable
    theirs = theirs[theirs["Status"] == "Closed"].reset_index(drop=True)
    signal_closed = ours.trades[ours.trades.exit_reason == "signal"].reset_index(drop=True)

    assert len(signal_closed) > 30
    assert len(signal_closed) == len(theirs)
    assert (signal_closed.entry_time.to_numpy() == pd.DatetimeIndex(theirs["Entry Timestamp"]).to_numpy()).all()
    assert (signal_closed.exit_time.to_numpy() == pd.DatetimeIndex(theirs["Exit Timestamp"]).to_numpy()).all()
    np.testing.assert_allclose(signal_closed.return_pct.to_numpy() / 100, theirs["Return"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(signal_closed.qty.to_numpy(), theirs["Size"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(signal_closed.pnl.to_numpy(), theirs["PnL"].to_numpy(), rtol=1e-9)
    # the equity curves agree on every bar up to the last signal exit (vectorbt keeps the last trade open)
    last_exit = int(signal_closed.exit_i.iloc[-1])
    np.testing.assert_allclose(ours.equity.to_numpy()[: last_exit + 1], pf.value().to_numpy()[: last_exit + 1],
                               rtol=1e-9)
