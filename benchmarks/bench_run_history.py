"""What a rerun of the Optimisation page costs with many stored runs and a large one shown.

Usage: python benchmarks/bench_run_history.py [RUNS] [COMBOS_PER_RUN] [BIG_RUN_COMBOS]
(defaults 50, 2000, 50000). Everything lives in a temporary folder, or in $BENCH_DIR, which
a second call reuses (the runs are made once); $BENCH_PAGE: another page file to time.

Prints:
- the history read: ``ResultStore.list_runs()`` (what the page read on every rerun before,
  without the best objective), then ``threadx.ui.sweep_runs.history()`` cold (every run
  read once) and warm (a rerun: nothing changed, no part read);
- a page rerun with the large run shown (AppTest, the second and later runs of a session).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _timed(fn, repeat: int = 5) -> tuple[float, float]:
    """(first call, median of the next ``repeat`` calls) in seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    combos = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    big = int(sys.argv[3]) if len(sys.argv) > 3 else 50_000
    base = Path(os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="threadx-bench-history-"))
    os.environ.update(THREADX_DATA_ROOT=str(base / "data"), THREADX_CACHE_DIR=str(base / "cache"),
                      THREADX_RESULTS_DIR=str(base / "results"))
    import threadx
    from threadx.data.synthetic import ensure_sample
    from threadx.optimize.store import ResultStore
    from threadx.ui import sweep_runs

    ensure_sample()
    df = threadx.load_ohlcv("synthetic/BTC_USDT-1h")
    store = ResultStore()
    made = time.perf_counter()
    for k in range(runs if not store.exists("run-000") else 0):  # chunks of 100, each its own part
        threadx.sweep(df, "ma_crossover", {"fast_period": "2:101:1", "slow_period": f"{110 + k}:{130 + k}:1"},
                      sampler="random", n=combos, seed=k, store=store, run_id=f"run-{k:03d}", executor="inline",
                      workers=2, chunk_size=100, flush_seconds=0.0, block_returns=0)
    parts = sum(1 for _ in store.root.glob("run-*/part-*.parquet"))
    stored = len(list(store.root.glob("*/manifest.json")))
    print(f"{runs} runs of {combos:,} combos ({parts:,} parts) ready in {time.perf_counter() - made:.1f} s; "
          f"{stored} runs stored")

    first, again = _timed(store.list_runs)
    print(f"before: ResultStore.list_runs()           first {first * 1000:8.1f} ms, rerun {again * 1000:8.1f} ms")
    first, again = _timed(lambda: sweep_runs.history(store))
    print(f"after:  sweep_runs.history() (best incl.) first {first * 1000:8.1f} ms, rerun {again * 1000:8.1f} ms")

    if not store.exists("big"):
        threadx.sweep(df, "ma_crossover", {"fast_period": "2:101:1", "slow_period": "110:1000:1"},
                      sampler="random", n=big, seed=1, store=store, run_id="big", executor="local", workers=2,
                      block_returns=0)
    from streamlit.testing.v1 import AppTest

    page = Path(os.environ.get("BENCH_PAGE") or Path(__file__).resolve().parents[1] / "views" / "3_Optimisation.py")
    at = AppTest.from_file(str(page), default_timeout=300)
    at.query_params["run"] = "big"
    at.session_state["sweep_run"] = "big"
    first, again = _timed(at.run)
    assert not at.exception, at.exception
    print(f"page with run 'big' ({big:,} combos) shown: first run {first:.2f} s, rerun {again:.2f} s")


if __name__ == "__main__":
    main()
