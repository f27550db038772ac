"""Backtest speed: ThreadX full and fast mode beside backtesting.py.

Usage: python benchmarks/bench_backtest.py [PARQUET]   (default ../shared/data/binance/BTC_USDT-1h.parquet)

Prints, after warm-up (numba compiled, indicators cached in memory):
- a full ``bb_atr`` backtest (signals, kernel, trades frame, equity series, metrics);
- a full ``ma_crossover`` backtest and the same strategy in backtesting.py;
- fast mode per backtest: the kernel alone, and signals + kernel as a sweep worker runs it.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import threadx
from benchlib import DEFAULT_FILE, load_frame
from threadx.data.bars import as_bars
from threadx.engine import kernel
from threadx.contract import prepare_signals
from threadx.engine.inputs import EngineOptions, effective_rules, kernel_args
from threadx.indicators import IndicatorBank
from threadx.strategy import get_strategy

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py progress bars would garble the table


def best_of(fn, repeat: int, number: int = 1) -> float:
    """Median seconds per call over ``repeat`` rounds of ``number`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def bench_backtesting_py(df: pd.DataFrame, fast: int, slow: int) -> tuple[float, int] | None:
    try:
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
    except ImportError:
        return None

    def sma(values, n):
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self):
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    frame = df.rename(columns=str.capitalize)
    frame.index = frame.index.tz_localize(None)
    bt = Backtest(frame, SmaCross, cash=10_000_000, commission=0.001, exclusive_orders=False)
    stats = bt.run()  # warm-up
    seconds = best_of(bt.run, repeat=3)
    return seconds, int(stats["# Trades"])


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_FILE
    df = load_frame(path)
    print(f"data: {path.name}, {len(df):,} bars")
    bank = IndicatorBank(cache_dir=Path(tempfile.mkdtemp()) / "cache")

    for name in ("bb_atr", "ma_crossover"):
        threadx.backtest(df, name, bank=bank)  # warm-up: compile + cache indicators
        seconds = best_of(lambda: threadx.backtest(df, name, bank=bank), repeat=20)
        trades = threadx.backtest(df, name, bank=bank).metrics["n_trades"]
        print(f"threadx full backtest  {name:13s} {seconds * 1e3:8.2f} ms  ({trades} trades)")

    bt = bench_backtesting_py(df, 10, 30)
    if bt is None:
        print("backtesting.py not installed: pip install backtesting")
    else:
        print(f"backtesting.py         ma_crossover  {bt[0] * 1e3:8.2f} ms  ({bt[1]} trades)")

    for name in ("bb_atr", "ma_crossover"):
        spec = get_strategy(name)
        params = spec.normalize({})
        bars = as_bars(df)
        options = EngineOptions()
        rules = effective_rules(spec.exits(params), options)
        _, sig, levels = prepare_signals(spec, bars, params, bank)
        args = kernel_args(bars, sig, levels, rules, options)
        kernel.run_fast(*args)
        k = best_of(lambda: kernel.run_fast(*args), repeat=7, number=200)

        def combo():
            _, s, lv = prepare_signals(spec, bars, params, bank)
            kernel.run_fast(*kernel_args(bars, s, lv, rules, options))

        c = best_of(combo, repeat=7, number=100)
        print(f"threadx fast mode      {name:13s} {k * 1e3:8.3f} ms kernel, {c * 1e3:.3f} ms signals+kernel "
              f"({1 / c:,.0f} backtests/s on one core)")


if __name__ == "__main__":
    main()
