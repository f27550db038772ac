"""Sweep speed: ThreadX against vectorbt on the same grid, bb_atr throughput, 1M-combo memory.

Usage: python benchmarks/bench_sweep_vs_vectorbt.py [--skip-million] [PARQUET]

1. ``ma_crossover`` grid fast 5..54 x slow 20..215 step 5 (2,000 points, the valid ones run),
   fill at the close, all-in, 10 bps: ``threadx.sweep`` with 2 workers vs
   ``vectorbt.Portfolio.from_signals`` on the same entries/exits. Wall clock includes the
   indicators; each side runs 1 + ``WARM_RUNS`` times in its process: the first (it pays
   numba's cache loading or compilation) and the median of the others are printed. Both
   must find the same best total return.
2. ``bb_atr`` random sweep of 10,000 combos, the default executor: backtests per second.
3. ``bb_atr`` random sweep of 1,000,000 combos: peak RSS of the whole process tree.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import threadx
from benchlib import DEFAULT_FILE, TreeRss, first_and_warm, load_frame, run_json_step
from threadx.indicators import IndicatorBank

FAST, SLOW = range(5, 55), range(20, 216, 5)
# warm runs per process after the first, both sides: the warm figure is their median (one warm run, on this
# noisy 2-core host, read ThreadX 0.09 s in one process and 0.17 s in the next)
WARM_RUNS = 3
BB_SPACE = {"bb_period": "10:50:1", "bb_std": "1.5:3.0:0.25", "entry_z": "0.5:2.5:0.1", "atr_period": "7:21:1",
            "atr_multiplier": "1.0:3.0:0.1", "max_hold_bars": "10:500:10", "spacing_bars": "0:50:1"}


def run_threadx(df: pd.DataFrame, store: Path, tag: str) -> tuple[float, pd.Series]:
    start = time.perf_counter()
    run = threadx.sweep(df, "ma_crossover", {"fast_period": "5:54:1", "slow_period": "20:215:5"}, fill="close",
                        sizing="all_in", fee_bps=10, objective="total_return", workers=2, store=store,
                        run_id=f"ma-{tag}", bank=IndicatorBank(disk=False))
    elapsed = time.perf_counter() - start
    best = run.top(1).iloc[0]
    return elapsed, best


def run_vectorbt(df: pd.DataFrame) -> tuple[float, float, tuple[int, int]]:
    import vectorbt as vbt

    start = time.perf_counter()
    pairs = [(f, s) for f in FAST for s in SLOW if f < s]
    fast = vbt.MA.run(df.close, [f for f, _ in pairs], short_name="fast")
    slow = vbt.MA.run(df.close, [s for _, s in pairs], short_name="slow")
    entries = fast.ma_crossed_above(slow)
    exits = fast.ma_crossed_below(slow)
    pf = vbt.Portfolio.from_signals(df.close, entries, exits, fees=0.001, init_cash=10_000)
    total = pf.total_return()
    elapsed = time.perf_counter() - start
    best = total.idxmax()
    return elapsed, float(total.max()), (int(best[0]), int(best[1]))


def step(name: str, path: Path, store: Path) -> None:
    """One measurement, run in a fresh process so that none pollutes another's timing
    or memory (a process that just ran vectorbt's 1,860-column portfolio is far larger)."""
    df = load_frame(path)
    if name == "threadx-ma":
        ours = [run_threadx(df, store, f"run{k}") for k in range(1 + WARM_RUNS)]
        best = ours[-1][1]
        print(json.dumps({"times": [t for t, _ in ours], "best": float(best.total_return),
                          "params": [int(best.fast_period), int(best.slow_period)]}))
    elif name == "vectorbt-ma":
        theirs = [run_vectorbt(df) for _ in range(1 + WARM_RUNS)]
        print(json.dumps({"times": [t for t, _, _ in theirs], "best": theirs[-1][1], "params": list(theirs[-1][2])}))
    elif name in ("bb-10k", "bb-10k-local"):
        print(json.dumps(bb_10k(df, store, "local" if name == "bb-10k-local" else None)))
    elif name == "bb-10k-job":
        print(json.dumps(job_sweep(path, store)))
    elif name == "bb-1m":
        start = time.perf_counter()
        run = threadx.sweep(df, "bb_atr", BB_SPACE, sampler="random", n=1_000_000, seed=2, workers=2,
                            executor="local", store=store, run_id="bb-1m", bank=IndicatorBank(disk=False))
        elapsed = time.perf_counter() - start
        swept_at = time.time()  # the memory peaks of the sweep are those sampled before this moment
        print(json.dumps({"n": len(run.results), "elapsed": elapsed, "swept_at": swept_at,
                          "results_mib": float(run.results.memory_usage(deep=True).sum() / 2**20)}))


def bb_10k(df: pd.DataFrame, store: Path, executor: str | None) -> dict:
    """bb_atr, 10,000 random combos, 2 workers: the wall clock of the first call in this process
    and of a second sweep (new seed, run id and bank: one-time costs paid, workers anew), and
    the steady state rate; ``executor`` None is the default (``auto``: the manifest says what
    it chose), else that executor."""
    chosen = {} if executor is None else {"executor": executor}
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    run = threadx.sweep(df, "bb_atr", BB_SPACE, sampler="random", n=10_000, seed=1, workers=2, store=store,
                        run_id=f"bb-10k-{executor}", bank=IndicatorBank(disk=False),
                        progress=lambda p: marks.append((time.perf_counter(), p.done)), **chosen)
    elapsed = time.perf_counter() - start
    first = next((m for m in marks if m[1] > 0), marks[-1])
    last = max(marks, key=lambda m: m[1])
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    start = time.perf_counter()
    threadx.sweep(df, "bb_atr", BB_SPACE, sampler="random", n=10_000, seed=3, workers=2, store=store,
                  run_id=f"bb-10k-{executor}-again", bank=IndicatorBank(disk=False), **chosen)
    again = time.perf_counter() - start
    return {"n": len(run.results), "elapsed": elapsed, "steady": steady, "again": again,
            "executor": run.manifest["machine"]["executor"]}


def job_sweep(path: Path, store: Path) -> dict:
    """The bb_atr 10,000-combo sweep as the workstation runs it: a job handed to the job process
    it keeps started ahead (threadx.ui.standby), idle as on an idle workstation; timed from
    submit to the job's completed status, on a cold indicator cache (the job computes and
    caches its indicators, and reads the data file, as a user's first run of it does)."""
    import os

    import psutil

    from threadx.requests import SweepRequest
    from threadx.ui import standby
    from threadx.ui.jobs import JobRegistry

    os.environ.update(THREADX_APP_STANDBY="on", THREADX_CACHE_DIR=str(store / "job-indicator-cache"),
                      THREADX_RESULTS_DIR=str(store / "workstation"))  # the jobs' log file too, not the cwd's
    params = {"data": str(path), "strategy": "bb_atr", "space": BB_SPACE, "sampler": "random", "n": 10_000, "seed": 1,
              "workers": 2}  # the page's default executor, auto
    SweepRequest.from_dict(params)  # what the page has loaded before the click: the request's checks
    registry = JobRegistry(store / "workstation")
    standby.keep_one()
    process = psutil.Process(standby._waiting[0][0].pid)
    used, deadline = -1.0, time.monotonic() + 60
    while time.monotonic() < deadline:  # started ahead: idle once its warm-up is done
        time.sleep(0.5)
        now = sum(process.cpu_times()[:2])
        if now == used:
            break
        used = now
    start = time.perf_counter()
    job = registry.submit({"kind": "sweep", "params": params})
    while not registry.get(job).is_finished:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    info = registry.get(job)
    standby.release()
    return {"n": info.done, "elapsed": elapsed, "state": info.state,
            "standby": "running in the standby process" in registry.log(job)}


def run_step(name: str, path: Path, store: Path, measure_memory: bool = False) -> tuple[dict, TreeRss | None]:
    """Measurement ``name`` in a fresh process: its JSON result (and memory peaks if asked)."""
    return run_json_step(__file__, [name, path, store], measure_memory)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = Path(args[0]) if args else DEFAULT_FILE
    store = Path(tempfile.mkdtemp(prefix="threadx-bench-"))
    print(f"data: {path.name}; each measurement in a fresh process; results in {store}")

    print("\n1. ma_crossover grid 5..54 x 20..215/5, fill=close, all_in, 10 bps, 2 workers")
    ours, _ = run_step("threadx-ma", path, store)
    theirs, _ = run_step("vectorbt-ma", path, store)
    for k, label in enumerate(("first run (numba cache load / compile)", f"warm (median of {WARM_RUNS} more runs)")):
        tx, vb = first_and_warm(ours["times"])[k], first_and_warm(theirs["times"])[k]
        print(f"   {label:40s} threadx {tx:6.2f} s   vectorbt {vb:6.2f} s   ratio {vb / tx:5.1f}x")
    same = np.isclose(ours["best"], theirs["best"], rtol=1e-9) and ours["params"] == theirs["params"]
    print(f"   best total return: threadx {ours['best']:.9f} {tuple(ours['params'])}   "
          f"vectorbt {theirs['best']:.9f} {tuple(theirs['params'])}   same: {'yes' if same else 'NO'}")

    print("\n2. bb_atr random sweep, 10,000 combos, 2 workers")
    bb, _ = run_step("bb-10k", path, store)
    print(f"   {bb['n']:,} combos in {bb['elapsed']:.2f} s ({bb['executor']}): "
          f"{bb['n'] / bb['elapsed']:,.0f} backtests/s wall clock "
          f"(worker start-up, indicators and store included); steady state {bb['steady']:,.0f}/s; "
          f"a second sweep in the same process {bb['n'] / bb['again']:,.0f}/s")

    if "--skip-million" not in sys.argv:
        print("\n3. bb_atr random sweep, 1,000,000 combos, 2 workers: memory of the whole process tree")
        big, rss = run_step("bb-1m", path, store, measure_memory=True)
        print(f"   {big['n']:,} combos in {big['elapsed']:,.0f} s ({big['n'] / big['elapsed']:,.0f}/s); results "
              f"frame {big['results_mib']:,.0f} MiB")
        sweep_rss, sweep_pss = rss.peaks_until(big["swept_at"])
        print(f"   peak during the sweep: RSS summed {sweep_rss / 2**30:.2f} GiB, PSS summed {sweep_pss / 2**30:.2f} GiB; "
              f"with the whole results frame loaded after it: RSS {rss.peak_rss / 2**30:.2f} GiB")


if __name__ == "__main__":
    if "--step" in sys.argv:
        at = sys.argv.index("--step")
        step(sys.argv[at + 1], Path(sys.argv[at + 2]), Path(sys.argv[at + 3]))
    else:
        main()
