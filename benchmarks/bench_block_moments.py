"""What PBO's block moments cost a sweep: the kernel on the same planned combos with and without them.

Usage: python benchmarks/bench_block_moments.py [--combos 4000] [--blocks 32] [PARQUET]

A sweep stores, per combo, the per-bar returns summed over time blocks (``block_returns``,
32 by default) so that ``threadx.pbo`` can run on it. This plans ``--combos`` random bb_atr
combos once (PARQUET, default the real BTC/USDT 1h candles, else the synthetic sample) and
times ``optimize.plan.run_plan`` over them with and without the block moments (best of 5,
numba warm), in this process. It also checks that the metrics are the same either way.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import data_file, load_frame


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", nargs="?", default=None)
    parser.add_argument("--combos", type=int, default=4000)
    parser.add_argument("--blocks", type=int, default=32)
    args = parser.parse_args(argv)

    from threadx.data.bars import as_bars
    from threadx.engine.inputs import EngineOptions
    from threadx.gpu.workload import declared_space
    from threadx.indicators import IndicatorBank
    from threadx.optimize.evaluate import Evaluator, SweepTask
    from threadx.optimize.plan import run_plan
    from threadx.strategy import get_strategy

    path, note = data_file(args.parquet, Path(tempfile.mkdtemp(prefix="threadx-bench-")))
    bars = as_bars(load_frame(path))
    space = declared_space(get_strategy("bb_atr"))
    bank = IndicatorBank(disk=False)
    times, metrics = {}, {}
    for n_blocks in (0, args.blocks):
        ev = Evaluator(SweepTask("bb_atr", space, EngineOptions(), n_blocks=n_blocks), bars, bank)
        ids = np.unique(np.random.default_rng(1).integers(0, ev.space.size, args.combos))
        plan = ev.planner.plan(ids)
        run_plan(plan.subset(plan.ok[:1]), bars, ev.funding, ev.block_end)  # numba warm
        times[n_blocks] = best_of(5, lambda: run_plan(plan, bars, ev.funding, ev.block_end))
        metrics[n_blocks] = run_plan(plan, bars, ev.funding, ev.block_end)[0]
    same = np.array_equal(metrics[0], metrics[args.blocks], equal_nan=True)
    print(f"{path.name}{' (' + note + ')' if note else ''}: {len(ids):,} random bb_atr combos, {len(bars):,} bars")
    print(f"kernel without block moments {times[0]:.3f} s, with {args.blocks} blocks {times[args.blocks]:.3f} s: "
          f"block moments cost {100 * (times[args.blocks] / times[0] - 1):+.1f} %; same metrics: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
