"""Dask executor: the same chunks on a Dask distributed cluster (SPEC §6.5).

The bars and the indicator arrays are scattered once to every worker (``broadcast``);
each task then carries only a key to that data and a chunk of combo ids, and each
worker process builds its Evaluator once per sweep. ``address`` names a running
scheduler; without one a ``LocalCluster`` of ``workers`` single-threaded processes is
started for the sweep and closed after it.
"""
from __future__ import annotations

import uuid
from typing import Callable, Iterator

import numpy as np

from threadx.data.bars import Bars
from threadx.optimize.evaluate import ChunkResult, Evaluator, SweepTask
from threadx.optimize.pool import failed_chunk
from threadx.optimize.shared import PreparedIndicators

_EVALUATORS: dict[str, Evaluator] = {}


def _dask_chunk(payload: dict, ids: np.ndarray) -> ChunkResult:
    evaluator = _EVALUATORS.get(payload["token"])
    if evaluator is None:
        _EVALUATORS.clear()  # one sweep's data at a time per worker
        bars = Bars(**payload["bars"])
        evaluator = Evaluator(payload["task"], bars, PreparedIndicators(payload["arrays"].get))
        _EVALUATORS[payload["token"]] = evaluator
    return evaluator.evaluate(ids)


class DaskExecutor:
    """Streams chunks to a Dask cluster; results come back as they finish."""

    def __init__(self, bars: Bars, arrays: dict, task: SweepTask, workers: int, address: str | None = None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("executor='dask' needs dask[distributed]: pip install 'threadx[cluster]'") from exc
        self._cluster = None
        if address:
            self.client = Client(address)
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
            self.client = Client(self._cluster)
        payload = {
            "token": uuid.uuid4().hex,
            "task": task,
            "bars": {"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                     "volume": bars.volume, "time_ns": bars.time_ns, "timeframe": bars.timeframe},
            "arrays": arrays,
        }
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})) or workers)
        # scattered as a list with hash=False: a unique key, never shared with another sweep
        self.data = self.client.scatter([payload], broadcast=True, hash=False)[0]

    def run(self, chunks: Iterator[np.ndarray], should_stop: Callable[[], bool]) -> Iterator[ChunkResult]:
        from dask.distributed import as_completed

        pending = as_completed()
        ids_of = {}
        source_done = False
        try:
            while True:
                while not source_done and not should_stop() and pending.count() < 2 * self.workers:
                    ids = next(chunks, None)
                    if ids is None:
                        source_done = True
                        break
                    future = self.client.submit(_dask_chunk, self.data, ids, pure=False)
                    ids_of[future.key] = ids
                    pending.add(future)
                if pending.is_empty():
                    return
                future = next(pending)
                ids = ids_of.pop(future.key)
                try:
                    yield future.result()
                except Exception as exc:  # a worker lost or a chunk-level error: recorded, the run goes on
                    yield failed_chunk(ids, f"{type(exc).__name__}: {exc}")
        finally:
            for future in list(getattr(pending, "futures", ())):
                future.cancel()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
