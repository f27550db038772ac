"""GPU sweep speed: bb_atr, 100,000 random combos on the real BTC/USDT 1h candles, per device
and for the whole machine, beside the CPU; and GPU == CPU on a 1,000-combo sample.

Usage: python benchmarks/bench_gpu.py [--combos 100000] [--check 1000] [--cpu-sample 2000]
                                      [--workers 2] [--bars N] [--threads-per-block 128[,256,...]]
                                      [--max-registers R[,R2,...]] [--orders] [--uploads] [PARQUET]

The combos are drawn at random (seeded) from every bb_atr param over its declared range.
0. Warm-up, untimed: indicators and a plan of a few other combos, so that numba's compilation
   (a machine without ThreadX's kernel cache compiles them on first use: seconds) or cache
   loading is not counted in 1 and 2; its seconds are printed.
1. Indicators: the distinct indicator arrays of the combos, once (as a sweep's parent does).
2. Plan: the distinct signal arrays, lines and parameter rows on the host (threadx.optimize.plan),
   with the seconds of each part.
3. Per device and block size (``--threads-per-block``: one, or several to compare, e.g.
   64,128,256,512): the planned combos on that device alone (upload, kernel, download), after
   a warm-up run that compiles the kernel; each with its time split into host inputs, upload,
   kernel and download, and the kernel's registers. ``--max-registers 0,168,128`` compares
   register caps (0: none) as well, ``--orders`` the combos ordered by their exits too.
   ``--uploads``: the first device's upload of those host arrays from pageable memory (as the
   runner does), staged through pinned buffers allocated once, straight from pinned buffers
   (as if the planner wrote there), and page-locked in place; the best of 3 each.
4. Whole machine: GpuExecutor over every device with the active weights, planning included
   (a fresh planner: what a sweep pays), end to end, at the fastest block size of 3.
5. CPU: the fast kernel as sweep workers run it (Evaluator.evaluate: signals, inputs and
   kernel per combo) on a sample, in ``--workers`` threads.
6. Check: the metrics of ``--check`` combos (``--check 100000``: all of them) from the whole
   machine's run and from the last device run alone against the CPU, to 1e-9 relative (NaN and
   inf where the CPU has them), and how many cells differ bit for bit; exit status 1 on a
   mismatch.
Without a usable GPU the script stops with exit status 2 and says why.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
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


def _numbers(what: str, example: str, fits: Any, rule: str) -> Any:
    """An argparse type for a comma-separated list of whole numbers, each of which ``fits``."""
    def parse(text: str) -> list[int]:
        try:
            numbers = [int(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} are whole numbers such as {example}, not {text!r}") from None
        if not all(fits(n) for n in numbers):
            raise argparse.ArgumentTypeError(f"each of the {what} is {rule}, not {text!r}")
        return numbers
    return parse


# --threads-per-block (a multiple of the warp size) and --max-registers (0: no cap)
_sizes = _numbers("block sizes", "128 or 64,128,256", lambda n: 32 <= n <= 1024 and n % 32 == 0,
                  "a multiple of 32 from 32 to 1024")
_caps = _numbers("register caps", "128 or 0,128,96", lambda n: n == 0 or 16 <= n <= 255, "0 (none) or 16 to 255")


def upload_ways(device: Any, plan: Any) -> list[tuple[str, float, bool]]:
    """(way, best seconds of 3, whether it is a copy) of copying ``plan``'s one-launch host arrays to ``device``:
    from pageable memory (what ``DeviceRunner`` does), staged through pinned buffers (the copy
    into them timed, their allocation apart), from pinned buffers already holding them, and
    page-locked in place for the copy (``cuda.pinned``)."""
    from numba import cuda

    from threadx.gpu.kernel import launch_inputs

    host = launch_inputs(plan, plan.by_signal())

    def best(copy: Any) -> float:
        times = []
        for _ in range(3):
            cuda.synchronize()
            started = time.perf_counter()
            copy()
            cuda.synchronize()
            times.append(time.perf_counter() - started)
        return min(times)

    def staged() -> None:
        for buffer, array in zip(pinned, host):
            np.copyto(buffer, array)
            cuda.to_device(buffer)

    def locked() -> None:
        with contextlib.ExitStack() as stack:
            for array in host:
                stack.enter_context(cuda.pinned(array))
            for array in host:
                cuda.to_device(array)

    with cuda.gpus[int(device.index)]:
        ways = [("pageable", best(lambda: [cuda.to_device(a) for a in host]), True)]
        started = time.perf_counter()
        pinned = [cuda.pinned_array(a.shape, dtype=a.dtype) for a in host]
        ways.append(("pinned buffers allocated (once)", time.perf_counter() - started, False))
        ways.append(("staged through pinned buffers", best(staged), True))
        ways.append(("from pinned buffers", best(lambda: [cuda.to_device(b) for b in pinned]), True))
        ways.append(("page-locked in place", best(locked), True))
    return ways


def _differences(got: np.ndarray, want: np.ndarray) -> str:
    """How far ``got`` is from ``want``: 'equal', else the cells that differ and the largest
    relative difference."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    if same.all():
        return "equal"
    finite = ~same & np.isfinite(got) & np.isfinite(want)
    rel = np.abs(got[finite] - want[finite]) / np.maximum(np.abs(want[finite]), 1e-300)
    return f"{int((~same).sum())} cells differ (max relative {rel.max() if rel.size else np.inf:.2e})"


def _time_parts(executor: Any) -> dict[str, list]:
    """Seconds of each batch's plan and device run in ``executor`` (its methods wrapped), and
    the batches' sizes."""
    spent: dict[str, list] = {"plan": [], "execute": [], "sizes": []}

    def timed(part: str, method: Any) -> Any:
        def call(arg: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(arg)
            finally:
                spent[part].append(time.perf_counter() - started)
                if part == "plan":
                    spent["sizes"].append(len(arg))
        return call

    executor.planner.plan = timed("plan", executor.planner.plan)
    executor.execute = timed("execute", executor.execute)
    return spent


def by_signal_and_exits(plan: Any) -> np.ndarray:
    """The plan's combos that run, ordered by signal row, then level lines, then parameter row
    (an experiment beside ``Plan.by_signal``: neighbouring threads that also share their exits
    may diverge less)."""
    ok = plan.ok
    keys = [plan.rows[ok, j] for j in reversed(range(plan.rows.shape[1]))]
    keys += [plan.lines[ok, j] for j in reversed(range(plan.lines.shape[1]))]
    return ok[np.lexsort([*keys, plan.sig[ok]])]


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
    parser.add_argument("--max-registers", type=_caps, default=None,
                        help="register cap of the kernel, or several to compare: 0,168,128,96 (0: none; "
                             "default: THREADX_GPU_MAX_REGISTERS, else none)")
    parser.add_argument("--uploads", action="store_true",
                        help="also time the first device's upload from pageable memory, pinned buffers and page-locked")
    parser.add_argument("--orders", action="store_true",
                        help="also time each device with its combos ordered by signal, then levels and exit params")
    args = parser.parse_args(argv)

    status = detect()
    if not status.available:
        print(f"error: no usable GPU, nothing to benchmark: {status.reason or 'no CUDA device found'}",
              file=sys.stderr)
        return 2

    from threadx.gpu.balance import active_weights
    from threadx.gpu.executor import GpuExecutor
    from threadx.gpu.kernel import DeviceRunner, register_cap

    if args.max_registers is None:
        args.max_registers = [register_cap()]

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

    # 3. each device alone, at each register cap and block size
    rows, fastest = [], {}
    for device in status.devices:
        for cap, size in itertools.product(args.max_registers, args.threads_per_block):
            runner = DeviceRunner(device, bars, evaluator.funding, evaluator.block_end, max_registers=cap,
                                  **({"threads_per_block": size} if size else {}))
            started = time.perf_counter()
            runner.run(plan.subset(plan.ok[:1024]))  # compiles and loads the kernel: not timed
            compiled_s = time.perf_counter() - started
            best, parts = np.inf, {}
            for _ in range(3):  # the best of 3 (one run is at the mercy of the host)
                runner.timings = dict.fromkeys(runner.timings, 0.0)
                started = time.perf_counter()
                base = runner.run(plan)[0]
                if time.perf_counter() - started < best:
                    best, parts = time.perf_counter() - started, dict(runner.timings)
            rate = len(plan.ok) / best
            alone = base  # the metrics of the last device run, by plan position (checked in 6)
            extra = ""
            if args.orders:
                order = by_signal_and_exits(plan)
                started = time.perf_counter()
                runner.run(plan, positions=order)
                extra += f"; ordered by signal, levels and exit params: {len(order) / (time.perf_counter() - started):,.0f} combos/s"
            runner.close()
            label = (f"GPU {device.index} {device.name}" + (f", {size} threads/block" if size else "")
                     + (f", {cap} registers cap" if cap else ""))
            rows.append((label, rate))
            fastest[(size, cap)] = fastest.get((size, cap), 0.0) + rate
            used = runner.registers()
            print(f"{label}: {rate:,.0f} combos/s; host inputs {parts['inputs']:.3f} s, upload {parts['upload']:.3f} s, "
                  f"kernel {parts['kernel']:.3f} s ({len(plan.ok) / parts['kernel']:,.0f} combos/s), download "
                  f"{parts['download']:.3f} s"
                  + (f"; {used[0]} registers, {used[1]} B local a thread" if used else "")
                  + f"; first launch {compiled_s:.1f} s" + extra, flush=True)
    if args.uploads:
        size_mb = sum(a.nbytes for a in launch_host_once(plan)[0]) / 1e6
        for way, seconds, copy in upload_ways(status.devices[0], plan):
            speed = f" ({size_mb / 1e3 / seconds:,.1f} GB/s)" if copy else ""
            print(f"upload of {size_mb:,.0f} MB, {way}: {seconds:.3f} s{speed}", flush=True)
    size, cap = max(fastest, key=fastest.get)
    block = {"threads_per_block": size} if size else {}
    block["max_registers"] = cap

    # 4. the whole machine, planning included
    executor = GpuExecutor(task, bars, indicators, devices=status.devices, weights=weights,
                           runner_factory=lambda *a: DeviceRunner(*a, **block))
    spent = _time_parts(executor)
    started = time.perf_counter()
    results = list(executor.run(iter(np.array_split(ids, max(1, len(ids) // 8192)))))
    machine_s = time.perf_counter() - started
    print(f"whole machine: {machine_s:.2f} s; batches of {spent['sizes']} combos; "
          f"plan {sum(spent['plan']):.2f} s ({', '.join(f'{t:.2f}' for t in spent['plan'])}), "
          f"devices {sum(spent['execute']):.2f} s ({', '.join(f'{t:.2f}' for t in spent['execute'])})", flush=True)
    executor.close()
    got_ids = np.concatenate([r.ids for r in results])
    got = np.concatenate([r.metrics for r in results])
    rows.append(("whole machine (plan + all GPUs)" + (f", {size} threads/block, cap {cap}" if len(fastest) > 1 else ""),
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
    sorter = np.argsort(plan.ids)
    alone = alone[sorter[np.searchsorted(plan.ids, check, sorter=sorter)]]
    print(f"\nthe last device run alone: {len(_compare(alone, cpu))} of {len(check):,} combos differ from the CPU "
          f"beyond {RTOL:g} relative; bit for bit: {_differences(alone, cpu)}")
    problems = _compare(gpu, cpu) + _compare(alone, cpu)
    if problems:
        print(f"\nMISMATCH on {len(problems)} of {len(check)} combos (first: {problems[:3]})")
        return 1
    finite = np.isfinite(cpu)
    rel = np.abs(gpu[finite] - cpu[finite]) / np.maximum(np.abs(cpu[finite]), 1e-300)
    print(f"\ncheck: {len(check):,} combos, GPU == CPU to {RTOL:g} relative (max {rel.max() if rel.size else 0:.2e})")
    return 0


def _compare(gpu: np.ndarray, cpu: np.ndarray) -> list[tuple[int, str]]:
    """(combo, first metric) of each combo whose GPU metrics are not the CPU's: within ``RTOL``
    relative where the CPU's is finite, the same NaN or infinity where not."""
    finite = np.isfinite(cpu)
    with np.errstate(invalid="ignore"):
        near = np.abs(gpu - cpu) <= RTOL * np.maximum(np.abs(cpu), 1e-300)
    ok = np.where(finite, near, (np.isnan(gpu) & np.isnan(cpu)) | (gpu == cpu))
    return [(int(k), METRIC_NAMES[int(np.argmin(ok[k]))]) for k in np.flatnonzero(~ok.all(axis=1))]


if __name__ == "__main__":
    sys.exit(main())
