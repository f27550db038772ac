"""``threadx bench``: how fast this machine backtests and sweeps (SPEC §10).

One warm backtest of a strategy (the median of a few, after a first run that loads the
compiled kernels), then a Monte Carlo sweep of ``n`` random combos of its declared space on
the same data (every param over its declared range, both values of a switch, every choice),
with the workers a sweep gets by default. The figures are what a user plans
with: a backtest's milliseconds, a sweep's backtests per second by the wall clock (worker
start-up included) and in steady state, and the kernel's microseconds per combo.

Example::

    >>> from threadx.machine_bench import measure
    >>> figures = measure(threadx.load_ohlcv("sample:BTC_USDT-1h"), "bb_atr", n=2_000)  # doctest: +SKIP
    >>> figures["sweep_rate"]  # doctest: +SKIP
    9482.1
"""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import pandas as pd

from threadx.config import DEFAULT_SWEEP_SAMPLES

BACKTEST_REPEATS = 5  # timed warm backtests; the median is reported


def measure(df: pd.DataFrame, strategy: str, n: int = DEFAULT_SWEEP_SAMPLES, workers: int | None = None,
            seed: int = 1, executor: str = "auto") -> dict[str, Any]:
    """Figures of one backtest and one sweep of ``n`` random combos of ``strategy`` on ``df``
    (a ParamError for an unknown strategy or a bad ``n``, before anything runs)."""
    import threadx
    from threadx.gpu.workload import declared_space  # every param over its range, both bools, every choice
    from threadx.indicators import IndicatorBank

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        from threadx.errors import ParamError

        raise ParamError(f"n must be a whole number of combos >= 1, got {n!r}")
    spec = threadx.get_strategy(strategy)
    first = threadx.backtest(df, strategy)  # loads (or compiles) the kernels: not timed
    times = []
    for _ in range(BACKTEST_REPEATS):
        started = time.perf_counter()
        threadx.backtest(df, strategy)
        times.append(time.perf_counter() - started)
    marks: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="threadx-bench-") as store:
        started = time.perf_counter()
        run = threadx.sweep(df, strategy, declared_space(spec), sampler="random", n=n, seed=seed, workers=workers,
                            executor=executor, store=store, run_id="bench", bank=IndicatorBank(disk=False),
                            progress=lambda p: marks.append((time.perf_counter(), p.done)))
        wall = time.perf_counter() - started
        done = int(run.manifest.get("done") or 0)
        timings = run.manifest.get("timings") or {}
        used = run.manifest.get("machine", {}).get("workers")
    begun = next((m for m in marks if m[1] > 0), None)
    last = max(marks, key=lambda m: m[1]) if marks else None
    steady = ((last[1] - begun[1]) / (last[0] - begun[0]) if begun and last and last[0] > begun[0] else None)
    kernel_s = (timings.get("workers") or {}).get("kernel")
    return {"strategy": strategy, "data": df.attrs.get("name"), "bars": int(first.metrics["n_bars"]),
            "backtest_s": statistics.median(times), "trades": int(first.metrics["n_trades"]),
            "combos": done, "workers": used, "sweep_s": wall, "sweep_rate": done / wall if wall > 0 else None,
            "steady_rate": steady, "kernel_us_per_combo": kernel_s / done * 1e6 if kernel_s and done else None,
            "stages": timings.get("stages")}
