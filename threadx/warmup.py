"""Compile the numba kernels ahead of the first backtest: ``python -m threadx.warmup``.

``make app`` runs it before starting the server. Kernels are cached on disk
(``@njit(cache=True)``), so only the first start after an install compiles (1-3 minutes:
2.5 on a 2-core machine); later starts load the cache in about a second. Without it the user's first
backtest would wait for the compiler with nothing on screen to say why.

Example::

    $ python -m threadx.warmup
    Compiling kernels, first start only (about 1-3 min) ...
    Kernels ready in 148.2 s (7 strategies).
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from threadx import aot


def _cache_is_warm() -> bool:
    """True when every kernel module already has a numba cache index in this version's cache
    folder (:func:`threadx.jit_cache.cache_dir`, in the sub-folder numba's locator names)."""
    from numba.core.caching import _CacheLocator

    from threadx.jit_cache import cache_dir

    root, folder = Path(__file__).resolve().parent, cache_dir()
    modules = [root / "engine" / "kernel.py", root / "engine" / "portfolio_loop.py",
               root / "indicators" / "kernels.py", root / "strategy" / "signal_kernels.py"]
    for module in modules:
        cache = folder / _CacheLocator.get_suitable_cache_subpath(str(module))
        if not any(cache.glob(f"{module.stem}.*.nbi")):
            return False
    return True


def warm_kernels(progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Run one backtest, one sweep combo and one walk-forward combo (the whole period with its
    block moments, then a window: ``run_fast_blocks`` and ``run_fast`` on the bank's read-only
    lines) of every built-in strategy, and a portfolio of one runner, on a small synthetic
    series, which compiles (or loads from the disk cache) every kernel they use.

    Returns the names of the strategies warmed; a strategy that fails is skipped (its
    error surfaces when the user runs it). ``progress(name, k, n)`` before each one (a cold
    start compiles for minutes: one line said nothing for four of them)."""
    import numpy as np

    import threadx
    from threadx import logs
    from threadx.data.bars import Bars
    from threadx.data.synthetic import generate_synthetic
    from threadx.engine.inputs import EngineOptions
    from threadx.indicators import IndicatorBank
    from threadx.optimize.evaluate import Evaluator, SweepTask
    from threadx.strategy.base import builtin_names

    frame = generate_synthetic("WARM_UP", days=10, seed=1)
    bars = Bars.from_frame(frame, timeframe="1h")
    warmed = []
    # the built-ins only: the strategies folder is not read here (a file crashing as it loads ended
    # `make app` before the server, which tries such a file in a process of its own, started)
    builtins = {name: threadx.get_strategy(name) for name in builtin_names()}
    for k, (name, spec) in enumerate(builtins.items()):
        if progress is not None:
            progress(name, k, len(builtins))
        try:
            with logs.muted():  # not a run of the user's: kept out of the log
                threadx.backtest(frame, name)
            Evaluator(SweepTask(name, {}, EngineOptions.builtin()), bars, IndicatorBank(disk=False)).evaluate(
                np.zeros(1, dtype=np.int64))
            for n_blocks in (4, 0):  # a walk-forward's combo: whole period with blocks, then a window
                ev = Evaluator(SweepTask(name, {}, EngineOptions.builtin(), n_blocks=n_blocks), bars,
                               IndicatorBank(disk=False))
                ev.run_one(spec.defaults())
        except Exception:  # noqa: BLE001 - warming is an optimisation; real errors surface on use
            continue
        warmed.append(name)
    try:
        from threadx.portfolio import Runner, portfolio_backtest
        from threadx.requests import DatasetRef

        runner = Runner("ma_crossover", DatasetRef(source="WARM_UP", name="WARM_UP"))
        with logs.muted():
            portfolio_backtest([runner], frames={runner.label: frame}, save=False)  # the portfolio loop
    except Exception:  # noqa: BLE001 - as above
        pass
    return warmed


_background: dict[str, Any] = {"thread": None, "cold": False}
_background_lock = threading.Lock()


def warm_in_background() -> None:
    """Load (or, on a cold cache, compile) the kernels in a daemon thread of this process,
    once: the workstation's server calls it at start so the first backtest finds them ready."""
    with _background_lock:
        if _background["thread"] is not None:
            return
        _background["cold"] = not _cache_is_warm()
        thread = threading.Thread(target=warm_kernels, name="threadx-warmup", daemon=True)
        _background["thread"] = thread
        thread.start()


COMPILING = "Compiling kernels, first start only (about 1-3 min)"  # the first warm-up: 2.5 min on 2 cores
AOT_COMPILING = "Compiling the sweep kernels ahead of time, once (about 10-30 s)"  # threadx.aot: 9-12 s on 2 cores


def warming_note() -> str | None:
    """What the background warm-up is doing, for the UI (None once it is done or not started)."""
    thread = _background["thread"]
    if thread is None or not thread.is_alive():
        return None
    return f"{COMPILING}…" if _background["cold"] else "Loading kernels…"


def main() -> int:
    from threadx.jit_cache import prune

    prune()  # the compiled kernels of other versions of their sources
    aot.prune()  # ahead-of-time builds for another numba, numpy, Python or CPU
    warm = _cache_is_warm()
    print("Loading kernels ..." if warm else f"{COMPILING} ...", flush=True)
    started = time.perf_counter()

    def progress(name: str, k: int, n: int) -> None:
        if not warm:
            print(f"  {k + 1}/{n} {name} ({time.perf_counter() - started:.0f} s)", flush=True)

    wanted = aot.enabled() and not aot.is_built()
    with aot.recording() if wanted else contextlib.nullcontext({}) as recorded:
        warmed = warm_kernels(progress)
    print(f"Kernels ready in {time.perf_counter() - started:.1f} s ({len(warmed)} strategies).", flush=True)
    if wanted:
        build_ahead_of_time(recorded)
    return 0


def build_ahead_of_time(recorded: dict) -> None:
    """Build the kernels the warm-up recorded as an extension module (:mod:`threadx.aot`), saying
    so; a failure (no C compiler) is said and leaves numba's kernels in use."""
    print(f"{AOT_COMPILING} ...", flush=True)
    started = time.perf_counter()
    try:
        aot.build(recorded)
    except Exception as exc:  # noqa: BLE001 - an optimisation: everything runs without it
        print(f"  Not built ({type(exc).__name__}: {str(exc).strip()[:300]}); sweeps load numba's kernels instead "
              "(about 0.4 s more for a process's first sweep).", flush=True)
        return
    print(f"Sweep kernels ready in {time.perf_counter() - started:.1f} s.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
