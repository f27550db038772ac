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

from threadx.contract import ExitRules, prepare_signals
from threadx.data.bars import Bars
from threadx.engine import kernel
from threadx.engine.inputs import (EngineOptions, KernelInputs, effective_rules, funding_per_bar, kernel_args,
                                   level_arrays, line_needs, param_vector, UNUSED_LINE)
from threadx.engine.layout import N_METRICS
from threadx.errors import DataError, ParamError, ThreadXError
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import get_strategy

STATUS_OK = 0
STATUS_FAILED = 1
INFRA_PREFIX = "infrastructure: "  # error text of a failure that a resume retries
# exception types (by name: dask is optional) that mean "the machinery failed", not the combo
_INFRA_TYPES = frozenset({"MemoryError", "BrokenProcessPool", "KilledWorker", "CommClosedError",
                          "StreamClosedError", "FutureCancelledError", "CancelledError"})
_NO_BLOCKS = np.empty(0, dtype=np.int64)  # block_end of a sweep without block moments
_MAX_EXIT_ROWS = 16_384  # param vectors an evaluator keeps (by exit key, ~0.8 KB each) before it starts over
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
        self._names = self.space.names
        self._signal_names = signal_key_names(self.spec)
        self._exit_names = exit_key_names(self.spec)
        self._rows: dict[tuple, tuple[ExitRules, np.ndarray | Exception] | Exception] = {}  # exit key -> rules and vector

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
        param vectors run in one kernel call (bit for bit what one call per combo gives).
        Combos that agree on the params feeding exits share one param vector
        (:func:`exit_key_names`), built once per evaluator."""
        ids = np.asarray(ids, dtype=np.int64)
        metrics = np.full((len(ids), N_METRICS), np.nan)
        status = np.zeros(len(ids), dtype=np.int8)
        errors: dict[int, str] = {}
        blocks = None if self.block_end is None else np.full((len(ids), len(self.block_end), 2), np.nan)
        values = self._values(ids)
        exit_keys = _keys(values, self._exit_names, len(ids))
        indicators = _RequestMemo(self.indicators)
        for members in self._groups(values, len(ids)):
            first = self.spec.results_params({name: values[name][members[0]] for name in self._names})
            self._evaluate_group(ids, first, values, exit_keys, members, indicators, metrics, status, errors, blocks)
        return ChunkResult(ids, metrics, status, errors, blocks)

    def signal_groups(self, ids: np.ndarray) -> list[list[int]]:
        """Positions in ``ids`` grouped by their signal key (the groups :meth:`evaluate` runs)."""
        return self._groups(self._values(ids), len(ids))

    def _values(self, ids: np.ndarray) -> dict[str, list]:
        cols = self.space.columns(ids)
        return {name: cols[name].tolist() for name in self._names}

    def _groups(self, values: dict[str, list], n: int) -> list[list[int]]:
        groups: dict[tuple, list[int]] = {}
        for k, key in enumerate(_keys(values, self._signal_names, n)):
            groups.setdefault(key, []).append(k)
        return list(groups.values())

    def _exit_row(self, key: tuple, params: Mapping[str, Any]) -> tuple[ExitRules, np.ndarray | Exception] | Exception:
        """(rules, param vector) of the combos with exit key ``key`` (``params``: one of them);
        the error in place of what raised. Kept per evaluator."""
        found = self._rows.get(key)
        if found is None:
            if len(self._rows) >= _MAX_EXIT_ROWS:
                self._rows.clear()
            try:
                rules = effective_rules(self.spec.exits(params), self.task.options)
            except Exception as exc:  # recorded per combo; the sweep goes on
                found = exc
            else:
                try:
                    vector = param_vector(rules, self.task.options, self.bars.timeframe, self.funding is not None)
                except Exception as exc:  # raised after the line and signal checks, as kernel_args does
                    vector = exc
                found = (rules, vector)
            self._rows[key] = found
        return found

    def _evaluate_group(self, ids: np.ndarray, first: dict[str, Any], values: dict[str, list], exit_keys: list[tuple],
                        members: list[int], indicators: Any, metrics: np.ndarray, status: np.ndarray,
                        errors: dict[int, str], blocks: np.ndarray | None) -> None:
        n = len(self.bars)
        try:
            if n < 2:
                raise DataError(f"need at least 2 bars to backtest, got {n}")
            _, sig, levels = prepare_signals(self.spec, self.bars, first, indicators)
            sig = np.ascontiguousarray(sig, dtype=np.uint8)  # one array object for the whole group
        except Exception as exc:  # every combo of the group would raise the same
            for k in members:
                status[k] = STATUS_FAILED
                errors[int(ids[k])] = failure_text(exc)
            return
        bars = self.bars
        fund = UNUSED_LINE if self.funding is None else self.funding
        calls: dict[tuple, tuple[tuple, list[int], list[np.ndarray]]] = {}  # line needs -> (arrays, rows, vectors)
        lines: dict[tuple, tuple | Exception] = {}
        names = self._names
        for k in members:
            key = exit_keys[k]
            row = self._rows.get(key)
            if row is None:
                row = self._exit_row(key, {name: values[name][k] for name in names})
            try:
                if isinstance(row, Exception):
                    raise row
                rules, vector = row
                needs = line_needs(rules)
                arrays = lines.get(needs)
                if arrays is None:
                    try:
                        found = level_arrays(levels, rules, n)
                        if sig.shape != (n,):
                            raise ParamError(f"signal array has shape {sig.shape}, expected ({n},)")
                        arrays = (bars.open, bars.high, bars.low, bars.close, sig, *found, fund)
                    except Exception as exc:
                        arrays = exc
                    lines[needs] = arrays
                if isinstance(arrays, Exception):
                    raise arrays
                if isinstance(vector, Exception):
                    raise vector
            except Exception as exc:  # recorded per combo; the sweep goes on
                status[k] = STATUS_FAILED
                errors[int(ids[k])] = failure_text(exc)
                continue
            call = calls.get(needs)
            if call is None:
                call = calls[needs] = (arrays, [], [])
            call[1].append(k)
            call[2].append(vector)
        for arrays, rows, vectors in calls.values():
            self._run_rows(arrays, rows, vectors, metrics, blocks)

    def _run_rows(self, arrays: tuple, rows: list[int], vectors: list[np.ndarray], metrics: np.ndarray,
                  blocks: np.ndarray | None) -> None:
        """One kernel call for the param vectors of ``rows`` over the same arrays."""
        params = np.stack(vectors)
        block_end = _NO_BLOCKS if blocks is None else self.block_end
        metrics[rows], moments = kernel.run_fast_many(*arrays, params, block_end)
        if blocks is not None:
            blocks[rows] = moments


def exit_key_names(spec: Any) -> tuple[str, ...]:
    """The params whose values decide a combo's exit and sizing rules (its param vector):
    combos equal on these share one. A strategy that does not declare its params' roles
    gets all of them."""
    declared = getattr(spec, "params_feeding", None)
    return tuple(declared("exits")) if callable(declared) else tuple(p.name for p in spec.params)


def _keys(values: dict[str, list], names: tuple[str, ...], n: int) -> list[tuple]:
    """Per combo, the tuple of its values of ``names``."""
    return list(zip(*(values[name] for name in names))) if names else [()] * n


class _RequestMemo:
    """An indicator source that hands the same request (name and raw params) the arrays it
    got the first time, without the source's key normalisation; cleared per chunk, so it
    holds no more than one chunk's indicators beyond the source's own limits."""

    def __init__(self, source: Any):
        self.source = source
        self.memo: dict[tuple, Any] = {}

    def ensure(self, data: Any, name: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            key = (name, tuple(sorted((params or {}).items())))
            found = self.memo.get(key)
        except TypeError:  # an unhashable param value: ask the source every time
            return self.source.ensure(data, name, params)
        if found is None:
            found = self.memo[key] = self.source.ensure(data, name, params)
        return found


def signal_key_names(spec: Any) -> tuple[str, ...]:
    """The params whose values decide a combo's indicators, signals and level lines: combos
    equal on these share one signal array. A strategy that does not declare its params'
    roles gets all of them (no combos are merged)."""
    declared = getattr(spec, "signal_key_params", None)
    return tuple(declared()) if callable(declared) else tuple(p.name for p in spec.params)
