"""Issue 12 "done means": each ThreadX figure beside its peer or floor, measured in one run.

Usage: python benchmarks/bench_issue12.py [--repeat 3] [--only abce] [--million] [--workers 2] [PARQUET]

PARQUET (default: the real BTC/USDT 1h candles, see ``benchlib.find_btc_1h``; without them
the synthetic sample, with a note) is the data of b, c, d and e. Every measurement runs in a
fresh process, ``--repeat`` times, and the table shows medians (the runs are listed below it):

a. 10,000 SMA pairs (fast 5..104 x slow 105..600 step 5) on the synthetic sample (17,520 1h
   bars), next-open fills, all-in, 10 bps: ``threadx.sweep`` of ``ma_crossover`` against the
   floor, a fused numba kernel written here (each SMA once per distinct period, then one
   loop per pair: crossings, fills, fees, total return, trades, Sharpe; no Python per pair),
   on the same number of cores. Warm (numba compiled, after a first run of each); both
   must agree on every pair and so on the optimum. Goal: ThreadX within 2x of the floor.
   Each timed run is in a process of its own (after two untimed runs there), ThreadX and the
   floor alternately: run in one process, a floor run slowed the ThreadX run after it (the
   floor's OpenMP threads and freed memory: ThreadX's indicator stage took 0.053-0.059 s
   right after a floor run, 0.019-0.029 s otherwise).
b. ``ma_crossover`` grid of the 1,860 valid combos, fill at the close: ThreadX against
   vectorbt (bench_sweep_vs_vectorbt.py's steps); the first run in a process, and warm: the
   median of the 3 runs after it in that process (each side alike). Goal: >= 50x. Both
   sides run with NumPy's hugepage advice off, as ThreadX's processes do (threadx.hugepages:
   the steps import threadx first): with it on, vectorbt's runs took 13-20 s on the 2-core
   host where they took 7-8 s without (memory compaction on first touch), a ratio that
   would not be ThreadX's doing.
c. ``bb_atr``, 10,000 random combos, 2 workers: wall clock from the call (worker start-up,
   indicators, store) and steady state, with the default executor (``auto``, which runs a sweep
   this size on 2 threads of the process: its estimate puts it under the in-process limit,
   ``threadx.optimize.runner``; the row names what it chose) and with the process pool
   (``executor="local"``: 2 worker processes forked, the data in shared memory). Goal:
   >= 20,000 backtests/s wall clock. Informative:
   the same sweep (other combos) again in that process, as a workstation's second sweep (the
   first call's one-time costs paid: sweep modules imported, kernels loaded: the ahead-of-time
   build of ``threadx.aot`` where the warm-up made one, else numba's start-up and cached
   kernels, about 0.3-0.45 s more of the first call's wall clock);
   and the sweep as the workstation runs it, a job handed to the job process it keeps started
   ahead, from submit to the job's completed status (data read and indicators computed by
   the job, on a cold indicator cache).
d. (``--million``, about 1 minute a run) ``bb_atr``, 1,000,000 random combos: peak of the
   summed RSS of the process tree (parent + workers) during the sweep. Goal: < 1 GB. The
   peak once the step then loads the whole 1M-row results frame is printed below the table.
e. GPU host planning of 100,000 random ``bb_atr`` combos: all the host does for a batch before its
   kernel runs, on the CPU (no CUDA needed), after the indicators are prepared: the plan
   (``threadx.optimize.plan.Planner.plan``: the parameter rows, one per distinct exit key, the
   distinct signal arrays, bb_atr's signal rule making them in one numba call, and the level
   lines; the notes give each part), then the one-device launch's host arrays (the combos'
   order by signal, which the device reads the plan's rows through, and the arrays copied to
   the device: ``bench_gpu.launch_host_once``; the rows were gathered into signal order on
   the host until 2026-12-04, 25-40 ms a batch). A GPU
   sweep plans batch after batch with one planner, each batch while the previous one runs;
   the step does the same, ``PLAN_BATCHES`` (at least ``--repeat`` + 1) batches of the same
   combos with the planner's signal cache off, so that every batch computes all its 18,000
   signals (what a sweep's later batches cost when their signals are new: a cache hit costs
   less). The goal is on the later batches' median; the first batch of the sweep (a fresh
   planner, every array fresh memory: page faults) is on a line of its own. Goal: < 0.2 s.

Exit status 1 when a check fails (floor and ThreadX disagree, or vectorbt finds another optimum).

The floor follows ThreadX's conventions (threadx/engine/kernel.py with the ma_crossover
defaults): a cross at the close of bar t (both SMAs defined on t-1 and t; above means
fast > slow after fast <= slow) fills at the open of t+1; long only; all-in sizing with the
entry fee inside the equity (notional = equity / (1 + fee)); fee = rate x notional on each
fill; an open position is closed at the last close; per-bar returns from the initial
capital, Sharpe with ddof 1 annualised by 8,760 bars a year. Left out, as they cannot change
these runs: liquidation (a 1x long falls to zero equity only at a price of ~0), slippage
(0), funding (off), stops, targets, holding limits and spacing (off in ma_crossover's defaults).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numba import njit, prange

from benchlib import data_file, first_and_warm, fresh_store, load_frame, run_json_step

HERE = Path(__file__).resolve().parent
SWEEP_SCRIPT = HERE / "bench_sweep_vs_vectorbt.py"
FAST = np.arange(5, 105)  # 100 fast periods
SLOW = np.arange(105, 601, 5)  # 100 slow periods, all above every fast one: 10,000 pairs
FEE_BPS, CAPITAL, MIN_NOTIONAL = 10.0, 10_000.0, 5.0  # ThreadX's defaults (threadx.config)
PLAN_COMBOS, PLAN_SEED = 100_000, 42
PLAN_BATCHES = 6  # plans of bench e in one process: the batches of a 600,000-combo GPU sweep
GIB = 2**30
WARM_RUNS = 2  # a's untimed runs in each process before its timed one (both sides alike)


# --------------------------------------------------------------------------- a. the floor
@njit(cache=True, nogil=True, parallel=True)
def sma_rows(close: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """One SMA per period (row), NaN for the first period-1 bars: a plain running sum."""
    n = close.shape[0]
    out = np.full((periods.shape[0], n), np.nan)
    for r in prange(periods.shape[0]):
        p = periods[r]
        s = 0.0
        for i in range(n):
            s += close[i]
            if i >= p:
                s -= close[i - p]
            if i >= p - 1:
                out[r, i] = s / p
    return out


@njit(cache=True, nogil=True, parallel=True)
def cross_pairs(o: np.ndarray, c: np.ndarray, sma: np.ndarray, fast_row: np.ndarray, slow_row: np.ndarray,
                fee: float, capital: float, min_notional: float, bars_per_year: float) -> np.ndarray:
    """(total return, trades, Sharpe) per pair of SMA rows: long on a cross above, flat on a
    cross below, fills at the next open, all-in, ``fee`` per fill. The arithmetic is
    ThreadX's kernel's, in the same order, so that the figures agree to the last bit."""
    n = c.shape[0]
    out = np.empty((fast_row.shape[0], 3))
    ann = math.sqrt(bars_per_year)
    for k in prange(fast_row.shape[0]):
        f = sma[fast_row[k]]
        s = sma[slow_row[k]]
        cash = capital
        qty = entry = margin = 0.0
        held = pend_entry = pend_exit = False
        prev = capital
        r_sum = r_sq = 0.0
        trades = 0
        for i in range(n):
            if pend_exit:  # orders of the previous close fill at this open: exit, then entry
                gross = qty * (o[i] - entry)
                cash = cash + margin + gross - qty * o[i] * fee
                held = False
                trades += 1
                pend_exit = False
            if pend_entry:
                notional = cash / (1.0 + fee)
                if notional > 0.0 and notional >= min_notional and o[i] > 0.0:
                    qty = notional / o[i]
                    entry = o[i]
                    margin = notional
                    cash = cash - margin - notional * fee
                    held = True
                pend_entry = False
            if i == n - 1:
                if held:  # end of data: closed at the last close
                    cash = cash + margin + qty * (c[i] - entry) - qty * c[i] * fee
                    held = False
                    trades += 1
            elif i > 0:
                a0, b0, a1, b1 = f[i - 1], s[i - 1], f[i], s[i]
                if a0 == a0 and b0 == b0 and a1 == a1 and b1 == b1:
                    if held and a1 < b1 and a0 >= b0:
                        pend_exit = True
                    elif not held and a1 > b1 and a0 <= b0:
                        pend_entry = True
            eq = cash + (margin + qty * (c[i] - entry)) if held else cash
            if eq != prev and prev > 0.0:
                r = eq / prev - 1.0
                r_sum += r
                r_sq += r * r
            prev = eq
        mean = r_sum / n
        var = (r_sq - r_sum * mean) / (n - 1.0)
        if var <= 1e-12 * r_sq / n:
            var = 0.0
        std = math.sqrt(var)
        out[k, 0] = prev / capital - 1.0
        out[k, 1] = trades
        out[k, 2] = mean / std * ann if std > 0.0 else 0.0
    return out


def floor_sweep(frame: pd.DataFrame, fast: np.ndarray, slow: np.ndarray, bars_per_year: float) -> np.ndarray:
    """Metrics (total return, trades, Sharpe) of every (fast, slow) pair of the grid, fast-major."""
    o = np.ascontiguousarray(frame["open"].to_numpy(dtype=np.float64))
    c = np.ascontiguousarray(frame["close"].to_numpy(dtype=np.float64))
    periods, rows = np.unique(np.concatenate([fast, slow]), return_inverse=True)
    fast_row = np.repeat(rows[: len(fast)], len(slow))
    slow_row = np.tile(rows[len(fast):], len(fast))
    return cross_pairs(o, c, sma_rows(c, periods), fast_row, slow_row, FEE_BPS / 10_000.0, CAPITAL, MIN_NOTIONAL,
                       bars_per_year)


def step_sma(store: Path, workers: int, side: str) -> dict:
    """Measurement a, one side in this process: ``WARM_RUNS`` untimed runs, then one timed run of ThreadX
    (``side`` "threadx"; then, untimed, the floor's metrics of every pair to compare with) or
    of the floor ("floor")."""
    import numba

    import threadx
    from threadx.data.synthetic import generate_synthetic
    from threadx.data.timeframe import bars_per_year
    from threadx.indicators import IndicatorBank

    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    frame = generate_synthetic("BTC_USDT", "1h")
    bpy = bars_per_year("1h")
    space = {"fast_period": f"{FAST[0]}:{FAST[-1]}:1", "slow_period": f"{SLOW[0]}:{SLOW[-1]}:5"}

    if side == "floor":
        for _ in range(WARM_RUNS):  # numba: compile or load the cached floor; memory of its arrays
            floor_sweep(frame, FAST, SLOW, bpy)
        start = time.perf_counter()
        metrics = floor_sweep(frame, FAST, SLOW, bpy)
        int(np.argmax(metrics[:, 0]))  # the optimum is part of the floor's work
        return {"seconds": time.perf_counter() - start}

    def threadx_run(tag: str) -> tuple[float, object]:
        start = time.perf_counter()
        run = threadx.sweep(frame, "ma_crossover", space, fill="next_open", sizing="all_in", fee_bps=FEE_BPS,
                            objective="total_return", workers=workers, store=store, run_id=f"sma-{tag}",
                            bank=IndicatorBank(disk=False))
        return time.perf_counter() - start, run

    for k in range(WARM_RUNS):  # numba caches of ThreadX loaded, workers' imports paid once
        threadx_run(f"warm-{k}")
    seconds, run = threadx_run("timed")

    res = run.results
    res = res[res["status"] == "ok"].set_index(["fast_period", "slow_period"]).sort_index()
    metrics = floor_sweep(frame, FAST, SLOW, bpy)
    index = pd.MultiIndex.from_arrays([np.repeat(FAST, len(SLOW)), np.tile(SLOW, len(FAST))])
    mine = pd.DataFrame(metrics, index=index, columns=["total_return", "n_trades", "sharpe"]).sort_index()
    top = run.top(1).iloc[0]
    k = int(np.argmax(metrics[:, 0]))
    same_rows = len(res) == len(mine) and res.index.equals(mine.index)

    def diff(column: str) -> np.ndarray:
        return np.abs(res[column].to_numpy() - mine[column].to_numpy())

    return {
        "seconds": seconds, "bars": len(frame), "pairs": len(mine), "threadx_ok": len(res),
        "threadx_best": {"params": [int(top["fast_period"]), int(top["slow_period"])],
                         "total_return": float(top["total_return"]), "n_trades": int(top["n_trades"]),
                         "sharpe": float(top["sharpe"])},
        "floor_best": {"params": [int(index[k][0]), int(index[k][1])], "total_return": float(metrics[k, 0]),
                       "n_trades": int(metrics[k, 1]), "sharpe": float(metrics[k, 2])},
        "all_pairs": {"same_pairs": bool(same_rows),
                      "max_abs_return_diff": float(diff("total_return").max()) if same_rows else None,
                      "trade_mismatches": int((diff("n_trades") != 0).sum()) if same_rows else None,
                      "max_abs_sharpe_diff": float(diff("sharpe").max()) if same_rows else None},
    }


# --------------------------------------------------------------------------- e. GPU host plan
def step_gpu_plan(path: Path, repeat: int) -> dict:
    """Measurement e, in this process: indicators once, then ``PLAN_BATCHES`` (at least
    ``repeat`` + 1) batches of the same 100,000 combos planned by one planner whose signal cache
    is off, each followed by its launch's host arrays, the previous batch alive meanwhile."""
    from bench_gpu import launch_host_once, plan_inputs, plan_once
    from threadx.data.bars import as_bars
    from threadx.optimize.plan import Planner

    bars = as_bars(load_frame(path))
    inputs = plan_inputs(bars, PLAN_COMBOS, PLAN_SEED)
    plan_once(inputs.evaluator, inputs.ids[:256])  # numba caches of the signal kernels loaded
    planner = Planner(inputs.evaluator, cache_bytes=0)  # every batch computes all its signals
    times, launch, parts, plan, arrays = [], [], [], None, None
    for _ in range(max(repeat + 1, PLAN_BATCHES)):  # the previous batch is alive while the next is made, as in GpuExecutor.run
        plan, planner, seconds = plan_once(inputs.evaluator, inputs.ids, planner)
        arrays, launch_s = launch_host_once(plan)
        times.append(seconds)
        launch.append(launch_s)
        parts.append({k: planner.stats[k] for k in ("rows_s", "signals_s", "lines_s")})
    return {"bars": len(bars), "combos": len(inputs.ids), "indicator_s": inputs.indicator_seconds,
            "arrays": inputs.n_arrays, "times": times, "launch": launch, "parts": parts,
            "launch_mib": sum(a.nbytes for a in arrays) / 2**20, "signals": len(plan.signals),
            "lines": len(plan.line_values), "exit_groups": planner.stats["exit_groups"],
            "signal_calls": planner.stats["signal_calls"], "batched": planner.stats.get("batched_signals", 0),
            "ruled": planner.stats.get("rule_signals", 0),
            "failed": int((plan.status != 0).sum())}


# --------------------------------------------------------------------------- the table
@dataclass
class Row:
    """One line of the table; ``ok`` None for an informational line (no goal)."""

    workload: str
    ours: str
    peer: str
    figure: str
    goal: str
    ok: bool | None


def median(values: list[float]) -> float:
    """Median of a list of floats."""
    return float(statistics.median(values))


def runs(values: list[float], fmt: str = "{:.2f}") -> str:
    """The individual runs behind a median, for the notes under the table."""
    return ", ".join(fmt.format(v) for v in values)


def workload_a(parent: Path, repeat: int, workers: int, notes: list[str], checks: list[str]) -> list[Row]:
    """ThreadX against the fused floor on 10,000 SMA pairs (medians); checks the optimum. Each
    side runs in processes of its own, alternately (see the module's docstring)."""
    sides: dict[str, list[dict]] = {"threadx": [], "floor": []}
    for _ in range(repeat):
        for side in sides:
            store = fresh_store(parent, "a")
            sides[side].append(run_json_step(__file__, ["sma", store, workers, side])[0])
            shutil.rmtree(store, ignore_errors=True)
    out = {**sides["threadx"][-1], "threadx_s": [r["seconds"] for r in sides["threadx"]],
           "floor_s": [r["seconds"] for r in sides["floor"]]}
    tx, fl = median(out["threadx_s"]), median(out["floor_s"])
    a, b, every = out["threadx_best"], out["floor_best"], out["all_pairs"]
    agree = (a["params"] == b["params"] and a["n_trades"] == b["n_trades"]
             and math.isclose(a["total_return"], b["total_return"], rel_tol=1e-9))
    notes.append(f"a. {out['pairs']:,} pairs on {out['bars']:,} bars; ThreadX runs {runs(out['threadx_s'])} s, "
                 f"floor runs {runs(out['floor_s'], '{:.3f}')} s (alternate processes; ratios "
                 f"{runs([t / f for t, f in zip(out['threadx_s'], out['floor_s'])], '{:.1f}x')})")
    notes.append(f"   optimum: ThreadX fast/slow {tuple(a['params'])} total return {100 * a['total_return']:.4f} % "
                 f"{a['n_trades']} trades Sharpe {a['sharpe']:.4f} | floor {tuple(b['params'])} "
                 f"{100 * b['total_return']:.4f} % {b['n_trades']} trades Sharpe {b['sharpe']:.4f} | "
                 f"{'agree' if agree else 'DISAGREE'}")
    notes.append(f"   every pair: same pairs {every['same_pairs']}, max |total return diff| "
                 f"{every['max_abs_return_diff']:.3g}, trade-count mismatches {every['trade_mismatches']}, "
                 f"max |Sharpe diff| {every['max_abs_sharpe_diff']:.3g}" if every["same_pairs"] else
                 f"   every pair: ThreadX has {out['threadx_ok']:,} ok rows of {out['pairs']:,}")
    if not agree:
        checks.append("a: ThreadX and the floor disagree on the optimum")
    ratio = tx / fl
    return [Row(f"a. {out['pairs']:,} SMA pairs, {out['bars']:,} 1h bars, next open, {workers} cores",
                f"{tx:.2f} s", f"floor {fl:.3f} s", f"{ratio:.1f}x floor", "<= 2x", ratio <= 2.0)]


def workload_b(path: Path, parent: Path, repeat: int, notes: list[str], checks: list[str]) -> list[Row]:
    """ThreadX against vectorbt on the ma_crossover grid, warm and first run (medians)."""
    ours, theirs = [], []
    for _ in range(repeat):
        store = fresh_store(parent, "b")
        ours.append(run_json_step(SWEEP_SCRIPT, ["threadx-ma", path, store])[0])
        theirs.append(run_json_step(SWEEP_SCRIPT, ["vectorbt-ma", path, store])[0])
        shutil.rmtree(store, ignore_errors=True)
    same = all(math.isclose(o["best"], t["best"], rel_tol=1e-9) and o["params"] == t["params"]
               for o, t in zip(ours, theirs))
    if not same:
        checks.append("b: ThreadX and vectorbt find different optima")
    rows = []
    for k, label in ((1, "warm"), (0, "first run in a process")):
        mine = [first_and_warm(o["times"])[k] for o in ours]
        peer = [first_and_warm(t["times"])[k] for t in theirs]
        tx, vb = median(mine), median(peer)
        notes.append(f"b. {label}: ThreadX runs {runs(mine)} s, vectorbt runs {runs(peer)} s (ratios "
                     f"{runs([v / m for m, v in zip(mine, peer)], '{:.1f}x')})")
        rows.append(Row(f"b. ma_crossover 1,860 combos, {path.stem}, close, {label}", f"{tx:.2f} s",
                        f"vectorbt {vb:.2f} s", f"{vb / tx:.1f}x faster", ">= 50x" if k else "-",
                        vb / tx >= 50.0 if k else None))
    best = ours[-1]
    notes.append(f"   optimum: ThreadX {tuple(best['params'])} {100 * best['best']:.4f} %, vectorbt "
                 f"{tuple(theirs[-1]['params'])} {100 * theirs[-1]['best']:.4f} %: {'same' if same else 'DIFFERENT'}")
    return rows


def workload_c(path: Path, parent: Path, repeat: int, notes: list[str]) -> list[Row]:
    """bb_atr 10,000 random combos: backtests/s by the wall clock and in steady state (medians),
    with the default executor and with the process pool."""
    got, pooled, jobs = [], [], []
    for _ in range(repeat):
        store = fresh_store(parent, "c")
        got.append(run_json_step(SWEEP_SCRIPT, ["bb-10k", path, store])[0])
        pooled.append(run_json_step(SWEEP_SCRIPT, ["bb-10k-local", path, store])[0])
        jobs.append(run_json_step(SWEEP_SCRIPT, ["bb-10k-job", path, store])[0])
        shutil.rmtree(store, ignore_errors=True)
    n = got[0]["n"]
    chosen = ", ".join(sorted({g["executor"] for g in got}))
    for label, side in (("default executor (auto: " + chosen + ")", got), ("process pool (local)", pooled)):
        notes.append(f"c. {label}: wall clock runs {runs([g['elapsed'] for g in side])} s; steady state runs "
                     f"{runs([g['steady'] for g in side], '{:,.0f}')} /s; second sweep in the process runs "
                     f"{runs([g['again'] for g in side])} s")
    where = [j["state"] + (" in the standby process" if j["standby"] else ", NOT in the standby") for j in jobs]
    notes.append(f"c. as a workstation job runs {runs([j['elapsed'] for j in jobs])} s ({', '.join(where)})")
    from threadx import aot

    notes.append("c. kernels: " + ("the ahead-of-time build (threadx.aot, made by `python -m threadx.warmup`)"
                                   if aot.enabled() and aot.is_built() else
                                   "numba's (no ahead-of-time build: run `python -m threadx.warmup` first)"))
    rate = median([g["n"] / g["elapsed"] for g in got])
    wall = median([g["elapsed"] for g in got])
    again = median([g["again"] for g in got])
    pool_wall = median([g["elapsed"] for g in pooled])
    job = median([j["elapsed"] for j in jobs])
    return [Row(f"c. bb_atr {n:,} random, {path.stem}, 2 workers ({chosen}), wall clock", f"{wall:.2f} s", "-",
                f"{rate:,.0f} /s", ">= 20,000 /s", rate >= 20_000),
            Row("c. the same, steady state (first to last progress report)", "-", "-",
                f"{median([g['steady'] for g in got]):,.0f} /s", "-", None),
            Row("c. the same, a second sweep in that process (one-time costs paid)", f"{again:.2f} s", "-",
                f"{n / again:,.0f} /s", "-", None),
            Row("c. the same on the process pool (executor local: 2 worker processes), wall clock",
                f"{pool_wall:.2f} s", "-", f"{median([g['n'] / g['elapsed'] for g in pooled]):,.0f} /s", "-", None),
            Row("c. the same as a workstation job: handed to the job process started ahead, submit -> completed",
                f"{job:.2f} s", "-", f"{n / job:,.0f} /s", "-", None)]


def workload_d(path: Path, parent: Path, repeat: int, notes: list[str]) -> list[Row]:
    """bb_atr 1,000,000 random combos: peak summed RSS (and PSS) of the process tree (medians)."""
    got = []
    for _ in range(repeat):
        store = fresh_store(parent, "d")
        out, rss = run_json_step(SWEEP_SCRIPT, ["bb-1m", path, store], measure_memory=True)
        got.append((out, *rss.peaks_until(out["swept_at"]), rss.peak_rss))
        shutil.rmtree(store, ignore_errors=True)
    peak = median([g[1] for g in got])
    pss = median([g[2] for g in got])
    notes.append(f"d. peak summed RSS during the sweep, runs {runs([g[1] / GIB for g in got])} GiB, PSS runs "
                 f"{runs([g[2] / GIB for g in got])} GiB, wall {runs([g[0]['elapsed'] for g in got], '{:.0f}')} s; "
                 f"then loading the whole results frame ({got[0][0]['results_mib']:,.0f} MiB in pandas) in the same "
                 f"process: peak RSS {runs([g[3] / GIB for g in got])} GiB")
    return [Row(f"d. bb_atr {got[0][0]['n']:,} random, peak RSS parent + workers", f"{peak / GIB:.2f} GiB",
                "-", f"PSS {pss / GIB:.2f} GiB", "< 1 GB (0.93 GiB)", peak < 1e9)]


def workload_e(path: Path, repeat: int, notes: list[str]) -> list[Row]:
    """GPU host planning of 100,000 random bb_atr combos on the CPU: the later batches' median
    seconds (the goal), the first batch apart."""
    out, _ = run_json_step(__file__, ["gpu-plan", path, repeat])
    totals = [p + q for p, q in zip(out["times"], out["launch"])]
    later = totals[1:]
    seconds = median(later)
    part = {k: median([p[k] for p in out["parts"][1:]]) for k in out["parts"][0]}
    notes.append(f"e. {out['combos']:,} combos on {out['bars']:,} bars: indicators ({out['arrays']:,} arrays, not "
                 f"counted) {out['indicator_s']:.2f} s; plan + launch inputs runs {runs(totals)} s (the first batch, "
                 f"then the later ones), of which plan runs {runs(out['times'])} s and launch inputs "
                 f"({out['launch_mib']:,.0f} MiB for the device) runs {runs(out['launch'])} s; {out['signals']:,} "
                 f"distinct signals, {out['lines']:,} lines, {out['failed']} failed combos")
    notes.append(f"e. later batches' plan parts (medians): parameter rows {part['rows_s']:.2f} s "
                 f"({out['exit_groups']:,} distinct exit keys), signal arrays {part['signals_s']:.2f} s "
                 f"({out['signal_calls']:,} calls into the strategy: line lookups or batches, and level groups; "
                 f"{out.get('ruled', 0):,} signal arrays from a signal rule, {out.get('batched', 0):,} from "
                 f"batch_signals), level lines and assembly {part['lines_s']:.2f} s")
    first = totals[0]
    return [Row(f"e. GPU host plan + launch inputs, {out['combos']:,} random bb_atr, {path.stem}, CPU, median of "
                f"{len(later)} later batches", f"{seconds:.2f} s", "-",
                f"{out['combos'] / seconds:,.0f} combos/s", "< 0.2 s", seconds < 0.2),
            Row("e. the same, the first batch of a sweep (a fresh planner; its arrays all fresh memory)",
                f"{first:.2f} s", "-", f"{out['combos'] / first:,.0f} combos/s", "-", None)]


def print_table(rows: list[Row]) -> None:
    """workload | ThreadX | peer/floor | ratio or rate | goal | ok/OVER."""
    head = Row("workload", "ThreadX", "peer/floor", "ratio or rate", "goal", None)
    cells = [[r.workload, r.ours, r.peer, r.figure, r.goal, "" if r.ok is None else ("ok" if r.ok else "OVER")]
             for r in rows]
    cells.insert(0, [head.workload, head.ours, head.peer, head.figure, head.goal, "ok/OVER"])
    widths = [max(len(c[k]) for c in cells) for k in range(6)]
    for k, line in enumerate(cells):
        print(" | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            print("-+-".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", nargs="?", default=None, help="candles of b-e (default: real BTC/USDT 1h)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (medians shown)")
    parser.add_argument("--only", default="abce", help="workloads to run, e.g. 'ae' (d needs --million)")
    parser.add_argument("--million", action="store_true", help="also d: 1,000,000 combos, ~2 min a run")
    parser.add_argument("--workers", type=int, default=2, help="cores of a (ThreadX workers, floor threads)")
    args = parser.parse_args(argv)
    wanted = set(args.only) | ({"d"} if args.million else set())
    if "d" in wanted and not args.million:
        parser.error("d (1,000,000 combos) needs --million")

    import threadx

    parent = Path(tempfile.mkdtemp(prefix="threadx-issue12-"))
    path, note = data_file(args.parquet, parent)
    print(f"threadx {threadx.__version__} from {Path(threadx.__file__).parent}; data of b-e: {path}")
    if note:
        print(note)
    print(f"{args.repeat} run(s) per measurement, each in a fresh process; medians")
    rows: list[Row] = []
    notes: list[str] = []
    checks: list[str] = []
    started = time.perf_counter()
    try:
        if "a" in wanted:
            rows += workload_a(parent, args.repeat, args.workers, notes, checks)
        if "b" in wanted:
            rows += workload_b(path, parent, args.repeat, notes, checks)
        if "c" in wanted:
            rows += workload_c(path, parent, args.repeat, notes)
        if "d" in wanted:
            rows += workload_d(path, parent, args.repeat, notes)
        if "e" in wanted:
            rows += workload_e(path, args.repeat, notes)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    print()
    print_table(rows)
    print()
    print("\n".join(notes))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    for text in checks:
        print(f"CHECK FAILED: {text}")
    return 1 if checks else 0


def step(argv: list[str]) -> None:
    """``--step NAME ARGS...``: one measurement in this (fresh) process; JSON on the last line."""
    name = argv[0]
    if name == "sma":
        out = step_sma(Path(argv[1]), int(argv[2]), argv[3])
    elif name == "gpu-plan":
        out = step_gpu_plan(Path(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown step {name!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    if "--step" in sys.argv:
        step(sys.argv[sys.argv.index("--step") + 1:])
    else:
        sys.exit(main())
