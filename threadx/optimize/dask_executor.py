"""Dask executor: the same chunks on a Dask distributed cluster (SPEC §6.5).

The bars and the indicator arrays are scattered once to every worker (``broadcast``);
each task then carries only a key to that data and a chunk of combo ids, and each
worker process builds its Evaluator once per sweep. ``address`` names a running
scheduler; without one a ``LocalCluster`` of ``workers`` single-threaded processes is
started for the sweep and closed after it.

A chunk lost with its worker (KilledWorker, CommClosedError, ...) is stored as an
infrastructural failure that a resume retries. When the cluster keeps losing chunks
(``2 x workers`` in a row, at least 4) or has had no worker for ``no_workers_s``, the run
stops with :class:`RunInterrupted` (resumable) instead of marking every combo failed.
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np

from threadx.data.bars import Bars
from threadx.errors import ParamError, ThreadXError
from threadx.optimize.evaluate import ChunkResult, Evaluator, RunInterrupted, SweepTask, failure_text, is_infra_exception
from threadx.optimize.pool import failed_chunk
from threadx.optimize.shared import PreparedIndicators

_EVALUATORS: dict[str, Evaluator] = {}
_MIN_LOST_STREAK = 4  # infrastructural chunk failures in a row (at least 2 per worker) that interrupt a run


def _dask_chunk(payload: dict, ids: np.ndarray) -> ChunkResult:
    evaluator = _EVALUATORS.get(payload["token"])
    if evaluator is None:
        _EVALUATORS.clear()  # one sweep's data at a time per worker
        bars = Bars(**payload["bars"])
        evaluator = Evaluator(payload["task"], bars, PreparedIndicators(payload["arrays"].get))
        _EVALUATORS[payload["token"]] = evaluator
    return evaluator.evaluate(ids)


CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer in this long is reported, not waited on


def check_scheduler(address: str | None) -> None:
    """ParamError unless ``address`` is None or a Dask scheduler address (``tcp://host:port``):
    checked before any work (a malformed one raised a traceback after the indicators were made)."""
    if address is None:
        return
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(str(address))
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"unknown scheme {scheme!r}")
        parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise ParamError(f"scheduler must be a Dask scheduler address such as tcp://10.0.0.5:8786, got {address!r} "
                         f"({exc})") from None


def connect(address: str) -> Any:
    """A Dask client of the scheduler at ``address``; ThreadXError saying so when none answers
    there within ``CONNECT_TIMEOUT_S`` (refused, not a Dask scheduler, unreachable)."""
    from dask.distributed import Client

    made: dict[str, Any] = {}

    def attempt() -> None:
        try:
            made["client"] = Client(address, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - reported below
            made["error"] = exc

    # in a thread with a deadline: Client's own timeout does not cover a listener that accepts and
    # never answers the handshake (an HTTP server: the sweep waited for ever)
    thread = threading.Thread(target=attempt, name="threadx-dask-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S + 2)
    if "client" in made:
        return made["client"]
    why = "no answer" if thread.is_alive() else f"{type(made['error']).__name__}: {str(made['error'])[:120]}"
    raise ThreadXError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT_S} s ({why}): start one "
                       "(`dask scheduler`), or leave scheduler unset for a local cluster")


class DaskExecutor:
    """Streams chunks to a Dask cluster; results come back as they finish."""

    no_workers_s = 30.0  # a cluster without any worker for this long interrupts the run

    def __init__(self, bars: Bars, arrays: dict, task: SweepTask, workers: int, address: str | None = None):
        check_scheduler(address)
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("executor='dask' needs dask[distributed]: pip install 'threadx[cluster]'") from exc
        self._cluster = None
        if address:
            self.client = connect(address)
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
        lost = 0  # infrastructural chunk failures in a row
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
                future = self._next_done(pending)
                ids = ids_of.pop(future.key)
                try:
                    result = future.result()
                except Exception as exc:  # a worker lost (retried on resume) or a chunk-level error
                    lost = lost + 1 if is_infra_exception(exc) else 0
                    if lost >= max(_MIN_LOST_STREAK, 2 * self.workers):
                        raise RunInterrupted(f"the Dask cluster lost {lost} chunks in a row ({type(exc).__name__}); "
                                             "finished combos are stored, the same run id resumes") from exc
                    result = failed_chunk(ids, failure_text(exc))
                else:
                    lost = 0
                yield result
        finally:
            for future in list(getattr(pending, "futures", ())):
                future.cancel()

    def _next_done(self, pending):
        """The next finished future; RunInterrupted once the cluster has had no worker for
        ``no_workers_s`` (its futures would wait forever)."""
        alone_since, checked = None, 0.0
        while not pending.has_ready():
            now = time.monotonic()
            if now - checked >= 0.5:
                checked = now
                alone_since = None if self._worker_count() else (alone_since or now)
                if alone_since is not None and now - alone_since >= self.no_workers_s:
                    raise RunInterrupted(f"the Dask cluster has had no worker for {self.no_workers_s:.0f} s; "
                                         "finished combos are stored, the same run id resumes")
            time.sleep(0.002)
        return next(pending)

    def _worker_count(self) -> int:
        try:
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - a scheduler gone: no worker either
            return 0

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
