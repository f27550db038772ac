"""Evaluate chunks of combo ids with the fast kernel (the work of one sweep worker).

An :class:`Evaluator` holds what every chunk needs: the strategy, the search space, the
engine options, the bars and an indicator source (the shared block in a worker, the
IndicatorBank in-process). ``evaluate(ids)`` plans the chunk (:mod:`threadx.optimize.plan`:
each distinct signal array, level line and param vector once) and runs it in one kernel
call; it returns small arrays: metrics per combo, a status code and the error text of the
combos that raised (see :mod:`threadx.optimize.outcome`).
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import threadx
from threadx import aot
from threadx.codehash import source_hash
from threadx.contract import prepare_signals
from threadx.data.bars import Bars
from threadx.engine import kernel
from threadx.engine.inputs import EngineOptions, KernelInputs, funding_per_bar, kernel_args, strategy_rules
from threadx.optimize.outcome import (INFRA_PREFIX, STATUS_FAILED, STATUS_OK, ChunkResult,  # noqa: F401 (re-exported)
                                      RunInterrupted, failure_text, is_infra_exception, is_infra_failure,
                                      signal_key_names)
from threadx.optimize.plan import Planner, kernel_calls, run_plan
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import StrategyOrigin, StrategySpec, get_strategy
from threadx.strategy.user import from_origin

# signal arrays a CPU evaluator keeps across its chunks: the sweep hands them out in signal-group
# order (runner.by_signal_group), so only a group cut by a chunk's edge comes back; arrays kept
# beyond that would only make each new one fresh memory (page faults) instead of a reused one
_PLAN_CACHE_BYTES = 4 * 2**20


# the code a sweep row comes from besides its strategy's own: the engine, the contract, the
# indicators, the param machinery, the authoring API's helpers (a user strategy's own hash is of
# its file only), the space's decoding, the samplers and the sweep plan (whole
# files, as loaded by this process: a comment edit counts too, never a stale row)
_ROWS_FILES = ("contract.py", "engine/kernel.py", "engine/inputs.py", "engine/layout.py", "engine/metrics.py",
               "data/timeframe.py", "data/grid.py", "indicators/kernels.py", "indicators/registry.py",
               "strategy/base.py", "strategy/__init__.py", "strategy/signal_kernels.py", "strategy/percent_exits.py",
               "optimize/plan.py", "optimize/evaluate.py", "optimize/space.py",
               "optimize/samplers.py", "optimize/shared.py", "optimize/outcome.py")
ROWS_CODE = source_hash(*(Path(threadx.__file__).parent / name for name in _ROWS_FILES))  # in run manifests


@dataclass(frozen=True)
class SweepTask:
    """The picklable description of a sweep that workers rebuild an Evaluator from."""

    strategy: str
    space: Mapping[str, Any]
    options: EngineOptions
    module: str | None = None  # module that registers the strategy on import (not a built-in)
    n_blocks: int = 0  # > 0: also sum per-bar returns over this many time blocks (for PBO)
    origin: StrategyOrigin | None = None  # a strategies-folder strategy: the code the sweep runs

    @classmethod
    def of(cls, spec: StrategySpec, space: Mapping[str, Any], options: EngineOptions,
           n_blocks: int = 0) -> "SweepTask":
        """The task of a sweep of ``spec``: a strategy of the strategies folder travels as its
        code (every worker runs what the sweep started with), one registered by a module as
        that module's name, a built-in as its name."""
        if spec.origin is not None:
            return cls(spec.name, space, options, None, n_blocks, spec.origin)
        module = getattr(spec.signals, "__module__", None)
        if module in (None, "__main__") or module.startswith("threadx.strategy."):
            module = None
        return cls(spec.name, space, options, module, n_blocks)


def task_strategy(task: SweepTask) -> StrategySpec:
    """The strategy of a task: rebuilt from its code for a strategies-folder strategy, imported
    for one registered by a module, else looked up by name."""
    if task.origin is not None:
        return from_origin(task.strategy, task.origin)
    if task.module:
        importlib.import_module(task.module)  # registers the strategy on import
    return get_strategy(task.strategy)


class Evaluator:
    """Runs combos of one sweep; cheap to call per chunk."""

    def __init__(self, task: SweepTask, bars: Bars, indicators: Any):
        self.task = task
        self.spec = task_strategy(task)
        self.space = SearchSpace(self.spec, task.space)
        self.bars = bars
        self.indicators = indicators
        self.funding = funding_per_bar(task.options.funding, bars)
        self.block_end = kernel.block_bounds(len(bars), task.n_blocks) if task.n_blocks > 0 else None
        self._planners = threading.local()

    @property
    def planner(self) -> Planner:
        """The sweep plan of this evaluator's chunks in this thread (made on first use): each thread
        of an inline sweep plans its chunks with a planner of its own (a shared one behind a lock
        had the second thread wait for the first one's signals before its first chunk)."""
        planner = getattr(self._planners, "planner", None)
        if planner is None:
            planner = self._planners.planner = Planner(self, threads=1, cache_bytes=_PLAN_CACHE_BYTES)
        return planner

    def kernel_inputs(self, params: Mapping[str, Any]) -> KernelInputs:
        """Kernel arguments of one param set over the whole history."""
        options = self.task.options
        rules = strategy_rules(self.spec, params, options)
        _, sig, levels = prepare_signals(self.spec, self.bars, params, self.indicators)
        return kernel_args(self.bars, sig, levels, rules, options, self.funding)

    def run_one(self, params: Mapping[str, Any]) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fast-mode metrics of one param set (with its block moments when the task asks)."""
        args = self.kernel_inputs(params)
        if self.block_end is not None:
            return aot.call(kernel.run_fast_blocks, *args, self.block_end)
        return aot.call(kernel.run_fast, *args)

    def evaluate(self, ids: np.ndarray) -> ChunkResult:
        """Metrics of every combo id; a combo that raises is recorded, the rest go on.

        The chunk is planned (:class:`~threadx.optimize.plan.Planner`: combos equal on the
        params feeding signals share one signal array, those equal on the params feeding
        exits one param vector) and run in one kernel call, bit for bit what one run per
        combo gives (:meth:`run_one`)."""
        ids = np.asarray(ids, dtype=np.int64)
        start = time.perf_counter()
        plan = self.planner.plan(ids)
        calls = kernel_calls(plan, self.bars, self.funding, self.block_end)  # (see kernel_calls)
        planned = time.perf_counter()
        metrics, blocks = run_plan(plan, self.bars, self.funding, self.block_end, calls=calls)
        stages = {"signals": planned - start, "kernel": time.perf_counter() - planned}  # per chunk, not per combo
        return ChunkResult(ids, metrics, plan.status, dict(plan.errors), blocks, stages, plan.warnings)
