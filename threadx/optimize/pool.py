"""Local executor: a process pool whose workers attach the shared block read-only.

Each worker process attaches the :class:`SharedPack` once, builds its Evaluator and
warms numba up with one combo before taking chunks. A worker that dies (segfault, OOM
kill) breaks the pool: the pool is rebuilt and the chunks that were in flight are tried
again one at a time, alone in the pool. A chunk that kills its worker alone is split in
halves, each tried alone, until the combos that crash are found: each of those is marked
failed, as an infrastructural failure that a resume retries, and the rest of its chunk
runs. Workers dying over and over with no chunk finishing interrupt the run
(:class:`RunInterrupted`, resumable).
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
from multiprocessing import resource_tracker
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from threadx.engine.layout import N_METRICS
from threadx.optimize.evaluate import (INFRA_PREFIX, STATUS_FAILED, ChunkResult, Evaluator, RunInterrupted,
                                       SweepTask, failure_text)
from threadx.optimize.shared import PackLayout, SharedPack

_WORKER: dict = {}
_MAX_RESTARTS = 10  # consecutive worker deaths with no chunk finishing in between (besides bisection's)
DIED_ALONE = "worker process died running this combo alone (a crash in the strategy's code, or out of memory)"


def _exit_with_parent() -> None:
    """Leave when the parent dies (kill -9 included): an orphaned worker would hold the
    shared block and the resource tracker open forever."""
    parent = mp.parent_process()
    if parent is not None:
        mp.connection.wait([parent.sentinel])
        os._exit(1)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """A Ctrl-C while the workers fork is noted, then acted on at the end (a KeyboardInterrupt
    raised inside a fork hook, filelock's among them, was "Exception ignored": the sweep ran to
    its end). A handler, not a signal mask: numpy's and pyarrow's threads would take a masked one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)  # Python's default handler: KeyboardInterrupt, here
        elif caught and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def _init_worker(task: SweepTask, warm: bool) -> None:
    """Start-up of a worker: Ctrl-C left to the parent, parent watch, numba warm-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited by a fork
    threading.Thread(target=_exit_with_parent, name="threadx-parent-watch", daemon=True).start()
    if warm:
        warm_up(task)


def warm_up(task: SweepTask) -> None:
    """Load the engine's numba kernels (and a built-in strategy's signal kernels) by
    running one combo on a small synthetic series before the first real chunk.

    A user strategy is not run here: a combo that crashes its process must only fail its
    own chunk, not every worker at start-up. It falls back to ``ma_crossover``'s defaults,
    which load the shared engine kernel."""
    from threadx.data.bars import Bars
    from threadx.data.synthetic import generate_synthetic
    from threadx.indicators import IndicatorBank

    builtin = task.origin is None and (task.module is None or task.module.startswith("threadx."))
    if not builtin:
        task = SweepTask("ma_crossover", {}, task.options)
    try:
        warm = Bars.from_frame(generate_synthetic("WARM_UP", days=10, seed=1), timeframe="1h")
        Evaluator(task, warm, IndicatorBank(disk=False)).evaluate(np.zeros(1, dtype=np.int64))
    except Exception:  # warm-up is an optimisation; real errors surface per combo
        pass


_WARMED: set[str] = set()  # tasks this process has warmed up (its kernels stay loaded)


def warm_once(task: SweepTask) -> None:
    """:func:`warm_up` of ``task`` unless this process already ran it for the same task (a
    sweep run again in one process: its numba kernels are loaded already)."""
    key = repr(task)
    if key not in _WARMED:
        warm_up(task)
        _WARMED.add(key)


def default_start_method() -> str:
    """``fork`` on Linux when this process runs a single thread (workers then start at
    once, with numba's compiled kernels inherited); ``spawn`` otherwise, since forking a
    multi-threaded process (a Streamlit server, a Dask client) can deadlock."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _ready() -> bool:
    return True


def _run_chunk(layout: PackLayout, task: SweepTask, ids: np.ndarray) -> ChunkResult:
    """Evaluate ids against the shared block of ``layout`` (attached once per block)."""
    if _WORKER.get("shm_name") != layout.shm_name:
        old = _WORKER.get("pack")
        if old is not None:
            old.close()
        pack = SharedPack.attach(layout)
        _WORKER.update(shm_name=layout.shm_name, pack=pack,
                       evaluator=Evaluator(task, pack.bars(), pack.indicator_source()))
    return _WORKER["evaluator"].evaluate(ids)


def failed_chunk(ids: np.ndarray, message: str) -> ChunkResult:
    """A chunk whose combos could not be evaluated at all."""
    return ChunkResult(ids, np.full((len(ids), N_METRICS), np.nan), np.full(len(ids), STATUS_FAILED, np.int8),
                       {int(i): message for i in ids})


@dataclass
class _Flight:
    ids: np.ndarray
    tries: int = 0  # deaths of the pool while this chunk (or the chunk it was split from) ran


def _bisection_deaths(chunk: int) -> int:
    """The worker deaths in a row that finding one crashing combo in a chunk of ``chunk`` combos
    can add (one per halving): allowed on top of :data:`_MAX_RESTARTS`, so that a long chunk
    is searched to the end."""
    return max(0, int(chunk - 1).bit_length())


def _after_death(flights: list[_Flight]) -> tuple[list[_Flight], list[ChunkResult]]:
    """What to run again after the pool broke with ``flights`` in flight: (suspects, failed).

    A chunk that died in company is tried again alone. One that died alone (a suspect) holds
    a crashing combo: it is split in halves, each tried alone, and a single combo that died
    alone is failed (its error says so; a resume tries it again)."""
    suspects: list[_Flight] = []
    failed: list[ChunkResult] = []
    alone = len(flights) == 1
    for flight in flights:
        if not (alone and flight.tries):
            suspects.append(_Flight(flight.ids, flight.tries + 1))
        elif len(flight.ids) == 1:
            failed.append(failed_chunk(flight.ids, INFRA_PREFIX + DIED_ALONE))
        else:
            half = len(flight.ids) // 2
            suspects += [_Flight(flight.ids[:half], flight.tries + 1), _Flight(flight.ids[half:], flight.tries + 1)]
    return suspects, failed


@dataclass
class LocalPool:
    """Runs chunks on ``workers`` processes; results come back as they finish.

    :meth:`start` spawns and warms the workers at once, so that their start-up overlaps
    the parent's indicator computation; :meth:`run` then streams chunks.
    """

    task: SweepTask
    workers: int
    context: str | None = None  # None: fork when it is safe, else spawn (kept for restarts)
    _pool: ProcessPoolExecutor | None = field(default=None, init=False)
    _stopping: threading.Thread | None = field(default=None, init=False)  # see begin_close

    def start(self) -> "LocalPool":
        if self.context is None:
            self.context = default_start_method()
        # Workers must share the parent's resource tracker (one registration of the block,
        # unlinked by the parent, or by the tracker if the parent is killed): start it
        # before forking, or each forked worker would start a tracker of its own.
        resource_tracker.ensure_running()
        forking = self.context == "fork"
        if forking and self._pool is None:
            warm_once(self.task)  # compiled kernels are inherited by the forked workers
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context(self.context),
                                         initializer=_init_worker, initargs=(self.task, not forking))
        with _ctrl_c_held():
            for _ in range(self.workers):  # processes are spawned on submit
                self._pool.submit(_ready)
        return self

    def _restart(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return self.start()._pool  # type: ignore[return-value]

    def run(self, layout: PackLayout, chunks: Iterator[np.ndarray],
            should_stop: Callable[[], bool]) -> Iterator[ChunkResult]:
        """Yield a ChunkResult per chunk (order of completion); stop taking new chunks
        once ``should_stop()`` is true and return after the ones in flight. The pool
        stays up for further calls (adaptive rounds) until :meth:`close`."""
        pool = self._pool or self.start()._pool
        in_flight: dict[Future, _Flight] = {}
        suspects: list[_Flight] = []  # chunks in flight when a worker died: each runs alone in the pool
        unsent: list[_Flight] = []  # chunks a broken pool refused before running them
        source_done = False
        restarts = 0  # consecutive restarts without a chunk coming back
        longest = 1  # the longest chunk taken: how far a bisection may go (_bisection_deaths)
        while True:
            stopping = should_stop()
            broken = False
            while not stopping and len(in_flight) < self.workers * 2:
                if any(flight.tries for flight in in_flight.values()):
                    break  # a suspect runs alone: a death then is its own
                if suspects:
                    if in_flight:
                        break
                    flight = suspects.pop(0)
                elif unsent:
                    flight = unsent.pop(0)
                elif not source_done:
                    ids = next(chunks, None)
                    if ids is None:
                        source_done = True
                        continue
                    flight = _Flight(ids)
                    longest = max(longest, len(ids))
                else:
                    break
                try:
                    in_flight[pool.submit(_run_chunk, layout, self.task, flight.ids)] = flight
                except BrokenProcessPool:
                    (suspects if flight.tries else unsent).insert(0, flight)
                    broken = True
                    break
            if not in_flight and not broken:
                return
            if in_flight:
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED, timeout=0.5)
                for future in done:
                    flight = in_flight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken = True
                        in_flight[future] = flight  # handled below with the others in flight
                        continue
                    except Exception as exc:  # a chunk-level failure outside any combo
                        result = failed_chunk(flight.ids, failure_text(exc))
                    restarts = 0
                    yield result
            if broken:
                again, failed = _after_death(list(in_flight.values()))
                suspects[:0] = again  # a split chunk's halves first: the search ends before other chunks wait
                in_flight.clear()
                yield from failed
                if should_stop():  # the chunks left are not run: a resume runs them (no pool started for nothing)
                    return
                restarts += 1
                if restarts > _MAX_RESTARTS + _bisection_deaths(longest):
                    raise RunInterrupted(f"sweep workers died {restarts} times in a row; finished combos are "
                                       "stored, the same run id resumes (check memory, or lower workers)")
                pool = self._restart()

    def begin_close(self) -> None:
        """Tell the workers to stop without waiting for them to exit (:meth:`close` waits),
        so that the caller can finish its own work meanwhile."""
        if self._pool is not None:
            manager = getattr(self._pool, "_executor_manager_thread", None)  # joins the workers
            self._pool.shutdown(wait=manager is None, cancel_futures=True)
            self._pool, self._stopping = None, manager

    def close(self) -> None:
        """Stop the workers and wait until they have exited (idempotent)."""
        self.begin_close()
        manager, self._stopping = self._stopping, None
        if manager is not None:
            manager.join()
