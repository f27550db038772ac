"""GPU sweep speed: bb_atr, 100,000 random combos on the real BTC/USDT 1h candles, per device
and for the whole machine, beside the CPU; and GPU == CPU on a 1,000-combo sample.

Usage: python benchmarks/bench_gpu.py [--combos 100000] [--check 1000] [--cpu-sample 2000]
                                      [--workers 2] [--bars N] [--threads-per-block 128[,256,...]]
                                      [--max-registers R] [PARQUET]

The combos are drawn at random (seeded) from every bb_atr param over its declared range.
0. Warm-up, untimed: indicators and a plan of a few other combos, so that numba's compilation
   (a machine without ThreadX's kernel cache compiles them on first use: seconds) or cache
   loading is not counted in 1 and 2; its seconds are printed.
1. Indicators: the distinct indicator arrays of the combos, once (as a sweep's parent does).
2. Plan: the distinct signal arrays, lines and parameter rows on the host (threadx.optimize.plan),
   with the seconds of each part.
3. Per device and block size (``--threads-per-block``: one, or several to compare, e.g.
   64,128,256,512): the planned combos on that device alone (upload, kernel, download), after
   a warm-up run that compiles the kernel.
4. Whole machine: GpuExecutor over every device with the active weights, planning included
   (a fresh planner: what a sweep pays), end to end, at the fastest block size of 3.
5. CPU: the fast kernel as sweep workers run it (Evaluator.evaluate: signals, inputs and
   kernel per combo) on a sample, in ``--workers`` threads.
6. Check: the metrics of ``--check`` combos from the GPU run against the CPU, to 1e-9
   relative (NaN and inf where the CPU has them); exit status 1 on a mismatch.
Without a usable GPU the script stops with exit status 2 and says why.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import DEFAULT_FILE, load_frame
from threadx.data.bars import Bars, as_bars
from threadx.engine.layout import METRIC_NAMES
from threadx.gpu.devices import detect
from threadx.settings_file import GPU_REGISTERS_ENV

RTOL = 1e-9


@dataclass
class PlanInputs:
    """What the GPU planner of a bb_atr sweep starts from: the evaluator (task, space, bars and
    the indicators prepared once), the combo ids, and the cost of those indicators."""

    evaluator: Any
    ids: np.ndarray
    n_arrays: int
    indicator_seconds: float


def plan_inputs(bars: Bars, combos: int, seed: int) -> PlanInputs:
    """``combos`` random bb_atr combos over every declared param range and their distinct
    indicator arrays, computed once as a sweep's parent does (no GPU needed)."""
    from threadx.engine.inputs import options_from
    from threadx.gpu.workload import declared_space
    from threadx.indicators import IndicatorBank
    from threadx.optimize.evaluate import Evaluator, SweepTask
    from threadx.optimize.samplers import monte_carlo_ids
    from threadx.optimize.shared import PreparedIndicators, indicator_requests
    from threadx.strategy.base import get_strategy

    task = SweepTask("bb_atr", declared_space(get_strategy("bb_atr")), options_from())
    space = Evaluator(task, bars, IndicatorBank(disk=False)).space
    ids = monte_carlo_ids(space, "random", combos, seed).ids
    started = time.perf_counter()
    bank = IndicatorBank(disk=False)
    arrays = {}
    for (name, key), params in indicator_requests(space, [ids]).items():
        arrays[(name, key)] = bank.ensure(bars, name, params)
    seconds = time.perf_counter() - started
    return PlanInputs(Evaluator(task, bars, PreparedIndicators(arrays.get)), ids, len(arrays), seconds)


def plan_once(evaluator: Any, ids: np.ndarray, planner: Any = None) -> tuple[Any, Any, float]:
    """(plan, planner, seconds): ``planner`` (else a fresh ``Planner``, as a sweep starts with)
    plans ``ids`` on the host: the distinct signal arrays, lines and parameter rows
    (threadx.optimize.plan)."""
    from threadx.optimize.plan import Planner

    started = time.perf_counter()
    planner = planner if planner is not None else Planner(evaluator)
    plan = planner.plan(ids)
    return plan, planner, time.perf_counter() - started


def launch_host_once(plan: Any) -> tuple[tuple, float]:
    """(host arrays, seconds): what ``GpuExecutor.execute`` and ``DeviceRunner`` do on the host
    between a plan and its one-device launch: the combos' order by signal (``Plan.by_signal``)
    and the arrays copied to the device (``threadx.gpu.kernel.launch_inputs``). No CUDA needed."""
    from threadx.gpu.kernel import launch_inputs

    started = time.perf_counter()
    arrays = launch_inputs(plan, plan.by_signal())
    return arrays, time.perf_counter() - started


def _sizes(text: str) -> list[int]:
    """``--threads-per-block``: "128" or "64,128,256" (each a multiple of 32, the warp size)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"block sizes are whole numbers such as 128 or 64,128,256, not {text!r}")
    if not sizes or any(size < 32 or size > 1024 or size % 32 for size in sizes):
        raise argparse.ArgumentTypeError(f"each block size is a multiple of 32 from 32 to 1024, not {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", nargs="?", default=str(DEFAULT_FILE))
    parser.add_argument("--combos", type=int, default=100_000)
    parser.add_argument("--check", type=int, default=1_000, help="combos compared with the CPU")
    parser.add_argument("--cpu-sample", type=int, default=2_000, help="combos timed on the CPU")
    parser.add_argument("--workers", type=int, default=2, help="CPU threads of the CPU figure")
    parser.add_argument("--bars", type=int, default=None, help="use only the last N bars")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads-per-block", type=_sizes, default=[None],
                        help="CUDA block size, or several to compare: 64,128,256 (default: the kernel's, 128)")
    parser.add_argument("--max-registers", type=int, default=None,
                        help="register cap of the kernel (THREADX_GPU_MAX_REGISTERS; default: none)")
    args = parser.parse_args(argv)
    if args.max_registers:
        os.environ[GPU_REGISTERS_ENV] = str(args.max_registers)  # read when the kernel is built

    status = detect()
    if not status.available:
        print(f"error: no usable GPU, nothing to benchmark: {status.reason or 'no CUDA device found'}",
              file=sys.stderr)
        return 2

    from threadx.gpu.balance import active_weights
    from threadx.gpu.executor import GpuExecutor
    from threadx.gpu.kernel import DeviceRunner

    frame = load_frame(args.parquet)
    if args.bars:
        frame = frame.iloc[-args.bars:]
    bars = as_bars(frame)
    weights = active_weights(status.devices)

    # 0. numba's compilation or cache loading, untimed
    started = time.perf_counter()
    warm = plan_inputs(bars, 64, args.seed + 1)
    plan_once(warm.evaluator, warm.ids)
    print(f"warm-up (numba's compilation or cache loading, not counted below): {time.perf_counter() - started:.2f} s")

    # 1. indicators, once
    inputs = plan_inputs(bars, args.combos, args.seed)
    evaluator, ids = inputs.evaluator, inputs.ids
    task, indicators = evaluator.task, evaluator.indicators
    print(f"bb_atr on {Path(args.parquet).name}: {len(bars):,} bars, {len(ids):,} random combos of "
          f"{evaluator.space.size:.3g}")
    print(f"devices: {', '.join(f'GPU {d.index} {d.name}' for d in status.devices)} "
          f"({status.backend}); split {'/'.join(f'{w:.2f}' for w in weights.values)} ({weights.source})")
    print(f"indicators: {inputs.n_arrays:,} distinct arrays in {inputs.indicator_seconds:.2f} s")

    # 2. plan
    plan, planner, plan_s = plan_once(evaluator, ids)
    stats = planner.stats
    print(f"plan: {len(plan.signals):,} distinct signals, {len(plan.line_values):,} lines, "
          f"{stats['exit_groups']:,} distinct exit keys, {int((plan.status != 0).sum())} failed combos "
          f"in {plan_s:.2f} s ({len(ids) / plan_s:,.0f} combos/s: rows {stats['rows_s']:.2f} s, "
          f"signals {stats['signals_s']:.2f} s, lines {stats['lines_s']:.2f} s)")

    # 3. each device alone, at each block size
    rows, fastest = [], {}
    for device in status.devices:
        for size in args.threads_per_block:
            runner = DeviceRunner(device, bars, evaluator.funding, evaluator.block_end,
                                  **({"threads_per_block": size} if size else {}))
            runner.run(plan.subset(plan.ok[:1024]))  # compiles and loads the kernel: not timed
            started = time.perf_counter()
            runner.run(plan)
            rate = len(plan.ok) / (time.perf_counter() - started)
            runner.close()
            label = f"GPU {device.index} {device.name}" + (f", {size} threads/block" if size else "")
            rows.append((label, rate))
            fastest[size] = fastest.get(size, 0.0) + rate
    size = max(fastest, key=fastest.get)
    block = {"threads_per_block": size} if size else {}

    # 4. the whole machine, planning included
    executor = GpuExecutor(task, bars, indicators, devices=status.devices, weights=weights,
                           runner_factory=lambda *a: DeviceRunner(*a, **block))
    started = time.perf_counter()
    results = list(executor.run(iter(np.array_split(ids, max(1, len(ids) // 8192)))))
    machine_s = time.perf_counter() - started
    executor.close()
    got_ids = np.concatenate([r.ids for r in results])
    got = np.concatenate([r.metrics for r in results])
    rows.append(("whole machine (plan + all GPUs)" + (f", {size} threads/block" if len(fastest) > 1 else ""),
                 len(ids) / machine_s))

    # 5. the CPU, as sweep workers run it
    sample = ids[: min(args.cpu_sample, len(ids))]
    evaluator.evaluate(sample[:8])  # numba's kernels loaded
    parts = np.array_split(sample, max(1, args.workers * 4))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(evaluator.evaluate, parts))
    cpu_s = time.perf_counter() - started
    cpu_rate = len(sample) / cpu_s
    rows.append((f"CPU fast kernel, {args.workers} threads", cpu_rate))

    print()
    width = max(36, *(len(label) for label, _ in rows))
    print(f"{'':{width}s} {'combos/s':>12s} {'x CPU':>8s} {'s per 100k':>11s}")
    for label, rate in rows:
        print(f"{label:{width}s} {rate:12,.0f} {rate / cpu_rate:8.1f} {100_000 / rate:11.2f}")
    if executor.failures:
        print(f"device failures: {[f.error for f in executor.failures]}")

    # 6. GPU == CPU on a sample
    check = np.sort(ids[: min(args.check, len(ids))])
    order = np.argsort(got_ids)
    gpu = got[order][np.searchsorted(got_ids[order], check)]
    cpu = evaluator.evaluate(check).metrics
    problems = _compare(gpu, cpu)
    if problems:
        print(f"\nMISMATCH on {len(problems)} of {len(check)} combos (first: {problems[:3]})")
        return 1
    finite = np.isfinite(cpu)
    rel = np.abs(gpu[finite] - cpu[finite]) / np.maximum(np.abs(cpu[finite]), 1e-300)
    print(f"\ncheck: {len(check):,} combos, GPU == CPU to {RTOL:g} relative (max {rel.max() if rel.size else 0:.2e})")
    return 0


def _compare(gpu: np.ndarray, cpu: np.ndarray) -> list[tuple[int, str]]:
    bad = []
    for k in range(len(cpu)):
        for j, name in enumerate(METRIC_NAMES):
            a, b = gpu[k, j], cpu[k, j]
            if np.isnan(b) or np.isinf(b):
                ok = (np.isnan(a) and np.isnan(b)) or a == b
            else:
                ok = abs(a - b) <= RTOL * max(abs(b), 1e-300)
            if not ok:
                bad.append((k, name))
                break
    return bad


if __name__ == "__main__":
    sys.exit(main())
