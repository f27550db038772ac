"""Dask executor: the same chunks on a Dask distributed cluster (SPEC §6.5).

The bars and the indicator arrays are scattered once to every worker (``broadcast``);
each task then carries only a key to that data and a chunk of combo ids, and each
worker process builds its Evaluator once per sweep. ``address`` names a running
scheduler; without one a ``LocalCluster`` of ``workers`` single-threaded processes is
started for the sweep and closed after it.

A chunk lost with its worker (KilledWorker, CommClosedError, ...) is stored as an
infrastructural failure that a resume retries. A chunk that killed its workers is not split
here to find the combo that crashes (each halving would kill allowed-failures + 1 workers
more, the cluster's other work held up): its error says so, and a resume with executor
local does it (:mod:`threadx.optimize.pool`). When every worker died, the scattered data
went with them: it is sent again, and the chunks that lost it with it (up to
``_MAX_RESENDS`` times each). When the cluster keeps losing chunks
(``2 x workers`` in a row, at least 4) or has had no running worker (none, or all paused
for memory) for ``no_workers_s``, the run stops with :class:`RunInterrupted` (resumable)
instead of marking every combo failed. Before the data is sent, it is checked against the
workers' memory limits (:func:`check_worker_memory`).
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator

import numpy as np

from threadx.data.bars import Bars
from threadx.errors import ParamError, ThreadXError
from threadx.optimize.budget import WORKER_BYTES
from threadx.optimize.evaluate import (ChunkResult, Evaluator, RunInterrupted, SweepTask, failure_text,
                                       is_infra_exception, task_strategy)
from threadx.optimize.outcome import exception_named
from threadx.optimize.pool import failed_chunk
from threadx.optimize.shared import PreparedIndicators
from threadx.units import format_bytes

_EVALUATORS: dict[str, Evaluator] = {}
_MAX_RESENDS = 3  # a chunk whose data went with its workers is sent again this often (then stored as failed)
_MIN_LOST_STREAK = 4  # infrastructural chunk failures in a row (at least 2 per worker) that interrupt a run


_CANCELLED = frozenset({"FutureCancelledError", "CancelledError"})
_KILLED = frozenset({"KilledWorker"})  # the chunk ran on allowed-failures + 1 workers that all died


class WorkerSetupError(ThreadXError):
    """A worker could not set up the sweep (the strategy's module not importable there, ...):
    every chunk would fail alike, so the run stops rather than store it as each combo's failure."""


class WorkerCodeError(WorkerSetupError):
    """A worker runs other ThreadX or strategy code than the sweep (another install, or one
    started before an update): its rows would come from that code, stored under the sweep's."""


def sweep_code(spec: Any) -> tuple[str, str]:
    """(the code rows come from besides the strategy, the strategy's code): what every worker
    of a sweep must run alike (:data:`threadx.optimize.evaluate.ROWS_CODE`, the spec's hash)."""
    from threadx.optimize.evaluate import ROWS_CODE

    return ROWS_CODE, spec.code_hash


def _dask_chunk(payload: dict, ids: np.ndarray) -> ChunkResult:
    evaluator = _EVALUATORS.get(payload["token"])
    if evaluator is None:
        _EVALUATORS.clear()  # one sweep's data at a time per worker
        try:
            bars = Bars(**payload["bars"])
            evaluator = Evaluator(payload["task"], bars, PreparedIndicators(payload["arrays"].get))
        except Exception as exc:  # noqa: BLE001 - reported as the worker's, not the combos'
            if is_infra_exception(exc):  # (out of memory, ...: the machinery's, as on any chunk)
                raise
            raise WorkerSetupError(failure_text(exc, infra=False)) from None
        here, sweep = sweep_code(evaluator.spec), tuple(payload["code"])
        if here != sweep:  # (rows of another version were stored under the sweep's code without a word)
            raise WorkerCodeError(f"a worker runs other code than the sweep (engine and sweep code {here[0][:12]}, "
                                  f"strategy {here[1][:12]} there; {sweep[0][:12]} and {sweep[1][:12]} here): "
                                  "install the same ThreadX (and strategy) on every worker and restart them")
        _EVALUATORS[payload["token"]] = evaluator
    return evaluator.evaluate(ids)


CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer in this long is reported, not waited on


def check_scheduler(address: str | None, executor: str = "dask") -> None:
    """ParamError unless ``address`` is None or a Dask scheduler address (``tcp://host:port``):
    checked before any work (a malformed one raised a traceback after the indicators were made).
    A scheduler given to another ``executor`` than dask is refused too (it was ignored: the work
    ran on this machine)."""
    if address is None:
        return
    if executor != "dask":
        raise ParamError(f"a scheduler is used by executor dask only, not {executor!r}: add --executor dask (executor="
                         "'dask'), or leave the scheduler out")
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
    error = None if thread.is_alive() else made["error"]
    if error is not None and not isinstance(error, (OSError, TimeoutError)):
        # (a service that is no scheduler answered at once; it read "no answer within 10 s (MemoryError: Unable
        # to allocate 2.82 EiB)", or a worker's port "(TypeError: Worker.identity() got an unexpected keyword)")
        raise ThreadXError(f"something at {address} answered but is not a Dask scheduler (a worker's port, or "
                           f"another service?): {type(error).__name__}: {str(error)[:120]}; give the scheduler's "
                           "address (`dask scheduler` prints it), or leave scheduler unset for a local cluster")
    why = "no answer" if error is None else f"{type(error).__name__}: {str(error)[:120]}"
    raise ThreadXError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT_S} s ({why}): start one "
                       "(`dask scheduler`), or leave scheduler unset for a local cluster")


PAUSE_FRACTION = 0.8  # Dask's default distributed.worker.memory.pause: a worker over it runs nothing


def payload_bytes(bars: Bars, arrays: dict) -> int:
    """What every worker receives and keeps for a sweep: the bars and the indicator arrays."""
    columns = (bars.open, bars.high, bars.low, bars.close, bars.volume, bars.time_ns)
    return sum(int(getattr(a, "nbytes", 0)) for a in (*columns, *arrays.values()))


def check_worker_memory(workers: dict[str, dict], needed: int) -> None:
    """ParamError when ``needed`` bytes (the sweep's data, plus a worker's own use) pass the
    point at which Dask pauses the smallest worker (:data:`PAUSE_FRACTION` of its
    ``memory_limit``; 0 = no limit): such a worker never ran a chunk and the sweep waited."""
    limits = {address: int(info.get("memory_limit") or 0) for address, info in workers.items()}
    limited = {address: limit for address, limit in limits.items() if limit > 0}
    if not limited:
        return
    address, smallest = min(limited.items(), key=lambda item: item[1])
    if needed + WORKER_BYTES > PAUSE_FRACTION * smallest:
        raise ParamError(
            f"each Dask worker would hold this sweep's bars and indicators ({format_bytes(needed)}) beside its own "
            f"use (about {format_bytes(WORKER_BYTES)}): more than the {PAUSE_FRACTION:.0%} of its memory limit at "
            f"which Dask pauses it ({address}: limit {format_bytes(smallest)}). Give the workers more memory "
            "(dask worker --memory-limit), narrow the indicator params, use a shorter period or a coarser "
            "timeframe, or run on executor local")


def open_cluster(workers: int, address: str | None = None) -> tuple[Any, Any]:
    """(client, cluster): a client of the scheduler at ``address`` (:func:`connect`), else of a
    LocalCluster of ``workers`` single-threaded processes started here (``cluster``; None for a
    scheduler's). Close the client, then the cluster."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("executor='dask' needs dask[distributed]: pip install 'threadx[cluster]'") from exc
    if address:
        return connect(address), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


def lost_chunk_text(exc: BaseException, combos: int) -> str:
    """The stored error of a chunk of ``combos`` that failed with ``exc``; one that killed the
    workers it ran on says how to find the combo that crashes and run the others."""
    text = failure_text(exc)
    if exception_named(exc, _KILLED) and combos > 1:
        text += (f" (one of this chunk's {combos} combos may crash the worker running it: a resume with executor "
                 "local runs them again, finds it and stores the others)")
    return text


class DaskExecutor:
    """Streams chunks to a Dask cluster; results come back as they finish."""

    no_workers_s = 30.0  # a cluster without a running worker for this long interrupts the run
    _stopped_since: float | None = None  # when a stop was first seen while chunks were running
    stop_grace_s = 5.0  # after a stop, chunks still running after this long are cancelled (resume reruns them)

    def __init__(self, bars: Bars, arrays: dict, task: SweepTask, workers: int, address: str | None = None):
        check_scheduler(address)
        self.client, self._cluster = open_cluster(workers, address)
        try:
            payload = {
                "token": uuid.uuid4().hex,
                "code": sweep_code(task_strategy(task)),
                "task": task,
                "bars": {"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                         "volume": bars.volume, "time_ns": bars.time_ns, "timeframe": bars.timeframe},
                "arrays": arrays,
            }
            known, size = self.client.scheduler_info().get("workers", {}), payload_bytes(bars, arrays)
            check_worker_memory(known, size)
            self.workers = max(1, len(known) or workers)
            self._payload = payload
            try:
                self.data = self._scatter()
            except Exception as exc:  # noqa: BLE001 - Dask's own text ("Stream is closed") says little
                raise ThreadXError(f"sending the sweep's data ({format_bytes(size)}) to the "
                                   f"Dask workers failed ({type(exc).__name__}: {str(exc)[:160]}): a worker may have "
                                   "run out of memory (dask worker --memory-limit) or left the cluster") from None
        except BaseException:
            self.close()  # (a client left open printed reconnect tracebacks when its scheduler stopped)
            raise

    def _scatter(self) -> Any:
        """The sweep's data on every worker, as a list with hash=False: a unique key, never shared
        with another sweep."""
        return self.client.scatter([self._payload], broadcast=True, hash=False)[0]

    def _restore_data(self, given: Any) -> None:
        """The scattered data sent again when the copy ``given`` to a failed chunk went with its
        workers (all of them died, say) and is still the one in use (its status may not say so
        yet): the chunks that held it failed as cancelled, and so would every later one."""
        if given is not self.data and self.data.status == "finished":
            return
        try:
            self._wait_for_a_worker()
            self.data = self._scatter()
        except Exception as exc:  # noqa: BLE001 - no worker to take it: the run cannot go on
            raise RunInterrupted(f"the Dask cluster lost the sweep's data and cannot take it again "
                                 f"({type(exc).__name__}: {str(exc)[:120]}); finished combos are stored, the same run "
                                 "id resumes") from exc

    def _wait_for_a_worker(self) -> None:
        """Returns once the cluster has a worker, within ``no_workers_s`` (else TimeoutError): the
        nannies restart dead workers in a moment, and a scatter before one is back fails with "No
        valid workers found" (seen in CI)."""
        deadline = time.monotonic() + self.no_workers_s
        while True:
            try:
                self.client.wait_for_workers(1, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
                self._revive_lost_workers()

    def _revive_lost_workers(self) -> None:
        """The LocalCluster of this run starts again the workers whose nanny gave up: a nanny whose
        new worker died as it connected (a crashing combo sent to it at once) closes for good, and
        the run waited for a worker that never came (seen in CI). Dask forgets such a worker after
        ``distributed.deploy.lost-worker-timeout`` (15 s); a scale to the same size then starts it."""
        if self._cluster is not None:
            try:
                self._cluster.scale(len(self._cluster.worker_spec))
            except Exception:  # noqa: BLE001 - a cluster gone or closing: the wait for a worker decides
                pass

    def run(self, chunks: Iterator[np.ndarray], should_stop: Callable[[], bool]) -> Iterator[ChunkResult]:
        from dask.distributed import as_completed

        pending = as_completed()
        self._stopped_since = None
        # by future key: the chunk's combo ids, the copy of the data it was given, and how often it was sent
        # again after losing that data
        ids_of, data_of, resent = {}, {}, {}
        source_done = False
        lost = 0  # infrastructural chunk failures in a row

        def submit(ids: np.ndarray, sent_again: int = 0) -> Any:
            future = self.client.submit(_dask_chunk, self.data, ids, pure=False)
            ids_of[future.key], data_of[future.key], resent[future.key] = ids, self.data, sent_again
            pending.add(future)
            return future

        try:
            while True:
                while not source_done and not should_stop() and pending.count() < 2 * self.workers:
                    ids = next(chunks, None)
                    if ids is None:
                        source_done = True
                        break
                    submit(ids)
                if pending.is_empty():
                    return
                future = self._next_done(pending, should_stop)
                if future is None:  # stopped, and the chunks still running did not finish in stop_grace_s
                    return
                ids, given, sent_again = ids_of.pop(future.key), data_of.pop(future.key), resent.pop(future.key)
                try:
                    result = future.result()
                except WorkerCodeError as exc:
                    raise RunInterrupted(f"{exc}; finished combos are stored (from the workers that run this code), "
                                         "the same run id resumes (also on executor local)") from exc
                except (WorkerSetupError, ImportError) as exc:  # (ImportError: the task's data unpickled there)
                    detail = str(exc) if isinstance(exc, WorkerSetupError) else failure_text(exc, infra=False)
                    raise RunInterrupted(
                        f"a Dask worker cannot set up this sweep ({detail}): the workers need "
                        "the strategy's module importable (its folder on their path, or a strategy of the strategies "
                        "folder); finished combos are stored, the same run id resumes (also on executor local)"
                    ) from exc
                except Exception as exc:  # a worker lost (retried on resume) or a chunk-level error
                    # cancelled (nothing is cancelled before the end), or on a copy of the data that is gone: the
                    # data went with the workers (whom another chunk may have killed, even as this one's result
                    # waited to be fetched): sent again, and the chunk with it
                    if (exception_named(exc, _CANCELLED) or given.status != "finished") and not should_stop() \
                            and sent_again < _MAX_RESENDS:
                        self._restore_data(given)
                        submit(ids, sent_again + 1)
                        continue
                    lost = lost + 1 if is_infra_exception(exc) else 0
                    if lost >= max(_MIN_LOST_STREAK, 2 * self.workers):
                        raise RunInterrupted(f"the Dask cluster lost {lost} chunks in a row ({type(exc).__name__}); "
                                             "finished combos are stored, the same run id resumes") from exc
                    result = failed_chunk(ids, lost_chunk_text(exc, len(ids)))
                else:
                    lost = 0
                yield result
        finally:
            for future in list(getattr(pending, "futures", ())):
                future.cancel()

    def _next_done(self, pending, should_stop: Callable[[], bool]):
        """The next finished future; None once a stop has waited ``stop_grace_s`` for the
        chunks still running; RunInterrupted once the cluster has had no running worker (none,
        or all paused for memory) for ``no_workers_s`` (its futures would wait forever)."""
        alone_since, checked = None, 0.0
        while not pending.has_ready():
            now = time.monotonic()
            if now - checked >= 0.5:
                checked = now
                running, paused = self._worker_states()
                alone_since = None if running else (alone_since or now)
                if alone_since is not None and not paused:
                    self._revive_lost_workers()
                if alone_since is not None and now - alone_since >= self.no_workers_s:
                    why = (f"has had all {paused} of its workers paused for memory (over "
                           f"{PAUSE_FRACTION:.0%} of their limit: dask worker --memory-limit)" if paused
                           else "has had no worker")
                    raise RunInterrupted(f"the Dask cluster {why} for {self.no_workers_s:.0f} s; finished combos "
                                         "are stored, the same run id resumes")
                # (kept across calls: each chunk that came back restarted the wait, 2 x workers x 5 s)
                self._stopped_since = (self._stopped_since or now) if should_stop() else None
                if self._stopped_since is not None and now - self._stopped_since >= self.stop_grace_s:
                    return None
            time.sleep(0.002)
        return next(pending)

    def _worker_states(self) -> tuple[int, int]:
        """(running, paused) workers of the cluster."""
        try:
            states = [w.get("status") for w in self.client.scheduler_info().get("workers", {}).values()]
        except Exception:  # noqa: BLE001 - a scheduler gone: no worker either
            return 0, 0
        return (sum(1 for status in states if status in ("running", None)),  # (None: a Dask without statuses)
                sum(1 for status in states if status == "paused"))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
