"""Shared helpers of the stop / target / trailing parity tests against vectorbt and
backtesting.py (ThreadX kernel runs on precomputed flags)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threadx.data.bars import as_bars
from threadx.data.io import load_ohlcv
from threadx.engine import kernel
from threadx.engine import layout as L
from threadx.engine.inputs import effective_rules, kernel_args, options_from
from threadx.engine.result import trades_frame
from threadx.strategy.base import ExitRules, Levels

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance"  # (as conftest.py finds it)


def candles(name: str = "BTC_USDT-1h.parquet", n: int | None = 6000) -> pd.DataFrame:
    """The first ``n`` real candles of ``name`` (all with None); skips the test when absent."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (it sits beside the repo in CI)")
    df = load_ohlcv(str(path))
    return df.iloc[:n] if n else df


def cross_flags(close: pd.Series, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
    up = ((f > s) & (f.shift() <= s.shift())).to_numpy()
    down = ((f < s) & (f.shift() >= s.shift())).to_numpy()
    return up, down


def run_threadx(df: pd.DataFrame, sig: np.ndarray, rules: ExitRules, levels: Levels = Levels(), **opts):
    """(metrics vector, trades frame, equity array) of one full kernel run."""
    bars = as_bars(df)
    o = options_from(**{"fill": "close", "min_notional": 0.0, **opts})
    r = effective_rules(rules, o)
    m, rows, eq = kernel.run_full(*kernel_args(bars, sig, levels, r, o))
    return m, trades_frame(rows, bars.index), eq


__all__ = ["L", "ExitRules", "Levels", "candles", "cross_flags", "run_threadx"]


GAPPY = "BTC_USDT-1h-2017-2020.parquet"  # the one real file whose bars open away from the previous close


def gap_flags(df: pd.DataFrame, threshold: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """Bars whose NEXT bar opens more than ``threshold`` below / above their close (entering
    there at the close puts a tight stop or target in the way of the gap)."""
    o, c = df["open"].to_numpy(), df["close"].to_numpy()
    gap = np.zeros(len(df))
    gap[:-1] = o[1:] / c[:-1] - 1
    return gap < -threshold, gap > threshold


def drop_entries_on_stop_bars(df, sig, rules, **opts):
    """Clear entry flags on bars where ThreadX closed a trade at its stop or target, until none
    is left: vectorbt (one order per bar, the stop order replacing the signals) and the
    peers' one-order-per-bar bookkeeping would ignore an entry there, ThreadX takes it at the
    close. Returns (sig, metrics, trades, equity) of the final ThreadX run."""
    sig = sig.copy()
    entry = np.uint8(L.SIG_ENTER_LONG | L.SIG_ENTER_SHORT)
    for _ in range(50):
        m, tr, eq = run_threadx(df, sig, rules, **opts)
        ex = tr.loc[tr.exit_reason.isin(["stop_loss", "take_profit", "trailing_stop"]), "exit_i"].to_numpy()
        clash = ex[(sig[ex] & entry) != 0]
        if not len(clash):
            return sig, m, tr, eq
        sig[clash] &= ~entry
    raise AssertionError("entry flags on stop bars did not settle")


def gap_exits(df, tr, slip: float = 0.0) -> np.ndarray:
    """Stop / target exits filled at the bar's open (less slippage): gaps through the level."""
    o = df["open"].to_numpy()[tr.exit_i.to_numpy()]
    d = np.where(tr.side == "long", 1.0, -1.0)
    lvl = tr.exit_reason.isin(["stop_loss", "take_profit", "trailing_stop"]).to_numpy()
    return lvl & (tr.exit_price.to_numpy() == o * (1 - d * slip))
