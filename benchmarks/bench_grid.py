"""Grids against single positions: grid_atr's fast-mode rate beside bb_atr's, and a grid sweep.

Usage: python benchmarks/bench_grid.py [--repeat 5] [--combos 2000] [PARQUET]

PARQUET (default: the real BTC/USDT 1h candles, see ``benchlib.find_btc_1h``; without them
the synthetic sample, with a note). Printed side by side, measured in the same run:

1. fast-mode backtests per second, one thread, warm (numba compiled, indicators prepared):
   ``--combos`` random combos of each strategy's declared space through the sweep's own path
   (``Evaluator.evaluate``: the plan, then one kernel call); best of ``--repeat``. Issue 14's
   target: grid_atr at least half of bb_atr's rate; the work each random combo does is printed too
   (exposure and positions: grid_atr's combos hold 8-9 times the bars and close 4 times the positions).
2. a grid_atr grid sweep of 3,240 combos (ma_period 10..30 step 5, atr_multiplier_start
   1.0..2.5, atr_multiplier_step 0.5..1.5, num_levels 2..4, sl_percent 0.1/0.2/0.3,
   max_hold_bars 0/48/96, sides long/both) with ``threadx.sweep`` on 2 workers, wall clock from
   the call (worker start-up, indicators, store included), first run and warm.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import data_file, load_frame

GRID_SPACE = {"ma_period": "10:30:5", "atr_multiplier_start": "1.0:2.5:0.5", "atr_multiplier_step": "0.5:1.5:0.5",
              "num_levels": "2:4:1", "sl_percent": [0.1, 0.2, 0.3], "max_hold_bars": [0, 48, 96],
              "sides": ["long", "both"]}


def fast_rate(frame, name: str, combos: int, repeat: int) -> tuple[float, float]:
    """(best backtests per second, mean trades per backtest) of ``combos`` random combos."""
    from threadx.data.bars import as_bars
    from threadx.engine.layout import M_N_TRADES
    from threadx.gpu.workload import evaluator_for, random_ids

    ev = evaluator_for(name, as_bars(frame))
    ids = random_ids(ev, combos, seed=7)
    ev.evaluate(ids)  # compile, indicators, signals cached by the plan
    best = float("inf")
    for _ in range(repeat):
        fresh = evaluator_for(name, ev.bars)
        fresh.indicators = ev.indicators  # indicators prepared: the rate of planning and kernel
        start = time.perf_counter()
        result = fresh.evaluate(ids)
        best = min(best, time.perf_counter() - start)
    return len(ids) / best, float(np.nanmean(result.metrics[:, M_N_TRADES]))


def work_of(frame, name: str, combos: int) -> tuple[float, float]:
    """(mean exposure, mean cycles) of the random combos ``fast_rate`` times: the work a
    backtest does grows with the bars held and the positions opened and closed."""
    from threadx.data.bars import as_bars
    from threadx.engine.layout import M_EXPOSURE, M_N_CYCLES
    from threadx.gpu.workload import evaluator_for, random_ids

    ev = evaluator_for(name, as_bars(frame))
    m = ev.evaluate(random_ids(ev, combos, seed=7)).metrics
    return float(np.nanmean(m[:, M_EXPOSURE])), float(np.nanmean(m[:, M_N_CYCLES]))


def grid_sweep(frame, workers: int) -> list[float]:
    import threadx
    from threadx.indicators import IndicatorBank

    times = []
    with tempfile.TemporaryDirectory() as store:
        for k in range(2):
            start = time.perf_counter()
            run = threadx.sweep(frame, "grid_atr", GRID_SPACE, sampler="grid", workers=workers, store=Path(store),
                                run_id=f"grid-{k}", objective="sharpe", bank=IndicatorBank(disk=False))
            times.append(time.perf_counter() - start)
            assert len(run.results) == 3240, len(run.results)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", nargs="?", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--combos", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path, note = data_file(args.parquet, Path(tmp))
        frame = load_frame(path)
    if note:
        print(note)
    print(f"data: {path} ({len(frame):,} bars)")
    rates = {}
    for name in ("bb_atr", "grid_atr"):
        rate, trades = fast_rate(frame, name, args.combos, args.repeat)
        rates[name] = rate
        print(f"{name:<10} {rate:>10,.0f} backtests/s  ({1e6 / rate:,.1f} us each, {trades:,.0f} trades on average)")
    ratio = rates["grid_atr"] / rates["bb_atr"]
    print(f"grid_atr / bb_atr: {ratio:.2f} (target >= 0.50)")
    work = {name: work_of(frame, name, args.combos) for name in rates}
    print("work per random combo (why the rates differ): " + ", ".join(
        f"{name} exposure {exp:.3f}, {cyc:,.0f} positions" for name, (exp, cyc) in work.items()))
    first, warm = grid_sweep(frame, args.workers)
    print(f"grid_atr 3,240-combo grid sweep, {args.workers} workers: first {first:.2f} s, warm {warm:.2f} s "
          f"({3240 / warm:,.0f} combos/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
