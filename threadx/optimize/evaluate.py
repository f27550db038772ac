"""Evaluate chunks of combo ids with the fast kernel (the work of one sweep worker).

A :class:`Evaluator` holds what every chunk needs: the strategy, the search space, the
engine options, the bars and an indicator source (the shared block in a worker, the
IndicatorBank in-process). ``evaluate(ids)`` returns small arrays: metrics per combo,
a status code and the error text of the combos that raised.

Failures are of two kinds. A *genuine* one is an error of the strategy or the engine for
that combo (it would fail again). An *infrastructural* one (a worker process that died, a
lost Dask worker, MemoryError, a broken pool) says nothing about the combo: its error text
starts with :data:`INFRA_PREFIX` and a resume runs the combo again.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from threadx.data.bars import Bars
from threadx.engine import kernel
from threadx.engine.backtest import prepare_signals
from threadx.engine.inputs import EngineOptions, KernelInputs, effective_rules, funding_per_bar, kernel_args
from threadx.engine.layout import N_METRICS
from threadx.errors import ThreadXError
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import get_strategy

STATUS_OK = 0
STATUS_FAILED = 1
INFRA_PREFIX = "infrastructure: "  # error text of a failure that a resume retries
# exception types (by name: dask is optional) that mean "the machinery failed", not the combo
_INFRA_TYPES = frozenset({"MemoryError", "BrokenProcessPool", "KilledWorker", "CommClosedError",
                          "StreamClosedError", "FutureCancelledError", "CancelledError"})
_NO_BLOCKS = np.empty(0, dtype=np.int64)  # block_end of a sweep without block moments
_LEGACY_INFRA = ("worker process died", "KilledWorker", "CommClosedError", "BrokenProcessPool")  # older runs


class RunInterrupted(ThreadXError):
    """The sweep's workers are gone (pool restarts exhausted, Dask lost its workers): what
    finished is stored and the same run id resumes."""


def is_infra_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the machinery rather than of the combo."""
    return any(t.__name__ in _INFRA_TYPES for t in type(exc).__mro__)


def failure_text(exc: BaseException, infra: bool | None = None) -> str:
    """The stored error text of a failure (tagged when infrastructural; ``None``: by type)."""
    text = f"{type(exc).__name__}: {exc}"
    return INFRA_PREFIX + text if (is_infra_exception(exc) if infra is None else infra) else text


def is_infra_failure(error: str) -> bool:
    """Whether a stored error text is an infrastructural failure (retried on resume)."""
    return error.startswith(INFRA_PREFIX) or any(marker in error for marker in _LEGACY_INFRA)


@dataclass(frozen=True)
class SweepTask:
    """The picklable description of a sweep that workers rebuild an Evaluator from."""

    strategy: str
    space: Mapping[str, Any]
    options: EngineOptions
    module: str | None = None  # module that registers the strategy (for user strategies)
    n_blocks: int = 0  # > 0: also sum per-bar returns over this many time blocks (for PBO)


@dataclass
class ChunkResult:
    ids: np.ndarray
    metrics: np.ndarray  # (n, N_METRICS) float64, NaN rows for failures
    status: np.ndarray  # int8 per combo
    errors: dict[int, str]  # combo id -> error text
    blocks: np.ndarray | None = None  # (n, n_blocks, 2) sums of returns and squares, or None


class Evaluator:
    """Runs combos of one sweep; cheap to call per chunk."""

    def __init__(self, task: SweepTask, bars: Bars, indicators: Any):
        if task.module:
            importlib.import_module(task.module)  # a user strategy registers itself on import
        self.task = task
        self.spec = get_strategy(task.strategy)
        self.space = SearchSpace(self.spec, task.space)
        self.bars = bars
        self.indicators = indicators
        self.funding = funding_per_bar(task.options.funding, bars)
        self.block_end = kernel.block_bounds(len(bars), task.n_blocks) if task.n_blocks > 0 else None

    def kernel_inputs(self, params: Mapping[str, Any]) -> KernelInputs:
        """Kernel arguments of one param set over the whole history."""
        options = self.task.options
        rules = effective_rules(self.spec.exits(params), options)
        _, sig, levels = prepare_signals(self.spec, self.bars, params, self.indicators)
        return kernel_args(self.bars, sig, levels, rules, options, self.funding)

    def run_one(self, params: Mapping[str, Any]) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fast-mode metrics of one param set (with its block moments when the task asks)."""
        args = self.kernel_inputs(params)
        if self.block_end is not None:
            return kernel.run_fast_blocks(*args, self.block_end)
        return kernel.run_fast(*args)

    def evaluate(self, ids: np.ndarray) -> ChunkResult:
        """Metrics of every combo id; a combo that raises is recorded, the rest go on.

        Combos that agree on every param feeding indicators, signals or levels
        (:func:`signal_key_names`) share one signal array: it is built once, and the group's
        param vectors run in one kernel call (bit for bit what one call per combo gives)."""
        ids = np.asarray(ids, dtype=np.int64)
        metrics = np.full((len(ids), N_METRICS), np.nan)
        status = np.zeros(len(ids), dtype=np.int8)
        errors: dict[int, str] = {}
        blocks = None if self.block_end is None else np.full((len(ids), len(self.block_end), 2), np.nan)
        cols = self.space.columns(ids)
        names = self.space.names
        combos = [dict(zip(names, row)) for row in zip(*(cols[n].tolist() for n in names))]
        for members in self._groups(combos):
            self._evaluate_group(ids, combos, members, metrics, status, errors, blocks)
        return ChunkResult(ids, metrics, status, errors, blocks)

    def _groups(self, combos: list[dict[str, Any]]) -> list[list[int]]:
        """Positions of the combos, grouped by their values of the signal-key params."""
        keys = signal_key_names(self.spec)
        groups: dict[tuple, list[int]] = {}
        for k, params in enumerate(combos):
            groups.setdefault(tuple(params[name] for name in keys), []).append(k)
        return list(groups.values())

    def _evaluate_group(self, ids: np.ndarray, combos: list[dict[str, Any]], members: list[int],
                        metrics: np.ndarray, status: np.ndarray, errors: dict[int, str],
                        blocks: np.ndarray | None) -> None:
        options = self.task.options
        try:
            _, sig, levels = prepare_signals(self.spec, self.bars, combos[members[0]], self.indicators)
            sig = np.ascontiguousarray(sig, dtype=np.uint8)  # one array object for the whole group
        except Exception as exc:  # every combo of the group would raise the same
            for k in members:
                status[k] = STATUS_FAILED
                errors[int(ids[k])] = failure_text(exc)
            return
        arrays, rows, vectors = None, [], []
        for k in members:
            try:
                inputs = kernel_args(self.bars, sig, levels, effective_rules(self.spec.exits(combos[k]), options),
                                     options, self.funding)
            except Exception as exc:  # recorded per combo; the sweep goes on
                status[k] = STATUS_FAILED
                errors[int(ids[k])] = failure_text(exc)
                continue
            if arrays is None:
                arrays = inputs.arrays
            elif any(a is not b for a, b in zip(arrays, inputs.arrays)):  # other level lines: a call of its own
                self._run_rows(inputs.arrays, [k], [inputs.params], metrics, blocks)
                continue
            rows.append(k)
            vectors.append(inputs.params)
        if rows:
            self._run_rows(arrays, rows, vectors, metrics, blocks)

    def _run_rows(self, arrays: tuple, rows: list[int], vectors: list[np.ndarray], metrics: np.ndarray,
                  blocks: np.ndarray | None) -> None:
        """One kernel call for the param vectors of ``rows`` over the same arrays."""
        params = np.ascontiguousarray(np.stack(vectors))
        block_end = _NO_BLOCKS if blocks is None else self.block_end
        metrics[rows], moments = kernel.run_fast_many(*arrays, params, block_end)
        if blocks is not None:
            blocks[rows] = moments


def signal_key_names(spec: Any) -> tuple[str, ...]:
    """The params whose values decide a combo's indicators, signals and level lines: combos
    equal on these share one signal array. A strategy that does not declare its params'
    roles gets all of them (no combos are merged)."""
    declared = getattr(spec, "signal_key_params", None)
    return tuple(declared()) if callable(declared) else tuple(p.name for p in spec.params)
