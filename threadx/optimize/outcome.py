"""What a sweep's evaluation of a chunk yields (:class:`ChunkResult`), how failures are
told apart, and which params group combos (shared by the evaluator, the plan and executors).

Failures are of two kinds. A *genuine* one is an error of the strategy or the engine for
that combo (it would fail again). An *infrastructural* one (a worker process that died, a
lost Dask worker, MemoryError, a broken pool) says nothing about the combo: its error text
starts with :data:`INFRA_PREFIX` and a resume runs the combo again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from threadx.errors import ThreadXError

STATUS_OK = 0
STATUS_FAILED = 1
INFRA_PREFIX = "infrastructure: "  # error text of a failure that a resume retries
# exception types (by name: dask is optional) that mean "the machinery failed", not the combo
_INFRA_TYPES = frozenset({"MemoryError", "BrokenProcessPool", "KilledWorker", "CommClosedError",
                          "StreamClosedError", "FutureCancelledError", "CancelledError"})
_LEGACY_INFRA = ("worker process died", "KilledWorker", "CommClosedError", "BrokenProcessPool")  # older runs


class RunInterrupted(ThreadXError):
    """The sweep's workers are gone (pool restarts exhausted, Dask lost its workers): what
    finished is stored and the same run id resumes."""


def exception_named(exc: BaseException, names: frozenset[str]) -> bool:
    """Whether ``exc`` is of a class (or subclass of one) named in ``names``: by name, for the
    classes of libraries that may not be installed (distributed's, ...)."""
    return any(t.__name__ in names for t in type(exc).__mro__)


def is_infra_exception(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the machinery rather than of the combo."""
    return exception_named(exc, _INFRA_TYPES)


def failure_text(exc: BaseException, infra: bool | None = None) -> str:
    """The stored error text of a failure (tagged when infrastructural; ``None``: by type);
    an exception raised in a user's strategy file names its file and line."""
    from threadx.strategy.user import describe_error

    text = describe_error(exc)
    return INFRA_PREFIX + text if (is_infra_exception(exc) if infra is None else infra) else text


def is_infra_failure(error: str) -> bool:
    """Whether a stored error text is an infrastructural failure (retried on resume)."""
    return error.startswith(INFRA_PREFIX) or any(marker in error for marker in _LEGACY_INFRA)


@dataclass
class ChunkResult:
    ids: np.ndarray
    metrics: np.ndarray  # (n, N_METRICS) float64, NaN rows for failures
    status: np.ndarray  # int8 per combo
    errors: dict[int, str]  # combo id -> error text
    blocks: np.ndarray | None = None  # (n, n_blocks, 2) sums of returns and squares, or None
    stages: dict[str, float] | None = None  # seconds the worker spent per stage on this chunk (threadx.timings)
    warnings: tuple[str, ...] = ()  # what the run records in its manifest (threadx.optimize.plan.Plan.warnings)


def signal_key_names(spec: Any) -> tuple[str, ...]:
    """The params whose values decide a combo's indicators, signals and level lines: combos
    equal on these share one signal array. A strategy that does not declare its params'
    roles gets all of them (no combos are merged)."""
    declared = getattr(spec, "signal_key_params", None)
    return tuple(declared()) if callable(declared) else tuple(p.name for p in spec.params)
