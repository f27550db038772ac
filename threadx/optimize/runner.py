"""``threadx.sweep``: grid and Monte Carlo optimisation with progress, cancel and resume.

The parent samples combo ids, computes the distinct indicators of the planned combos
once (IndicatorBank batch path), packs OHLCV and indicators into shared memory, and
streams chunks of ids to an executor; one writer appends the small result arrays to
the results store in batches. Re-running a run id skips the combos already stored.
"""
from __future__ import annotations

import errno
import os
import platform
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

import threadx
from threadx import logs
from threadx.config import DEFAULT_MIN_TRADES, DEFAULT_SEED
from threadx.data.bars import Bars, as_bars
from threadx.engine import kernel
from threadx.engine.inputs import ENGINE_OVERRIDES, EngineOptions, check_bar_count, options_from, override_conflict
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ParamError, ThreadXError, first_line, whole
from threadx.names import new_run_id
from threadx.optimize.adaptive_log import AdaptiveRound, AdaptiveSettings, load_rounds, save_rounds
from threadx.optimize.budget import (Budget, Estimate, advice, estimate_memory, fits, lines_of, plan_batches,
                                     request_widths)
from threadx.optimize.evaluate import (ROWS_CODE, STATUS_OK, ChunkResult, Evaluator, RunInterrupted, SweepTask,
                                       signal_key_names)
from threadx.optimize.samplers import SAMPLERS, check_grid_size, grid_ids, monte_carlo_ids, refine
from threadx.optimize.spot_check import RowSample, needs_check, spot_check
from threadx.optimize.shared import (PreparedIndicators, SharedPack, group_codes, group_requests, indicator_axes,
                                     indicator_requests, prepare_requests)
from threadx.optimize.space import DEFAULT_GRID_LIMIT, SearchSpace
from threadx.optimize.store import (BLOCK_SQ_PREFIX, BLOCK_SUM_PREFIX, ResultStore, RunWriter, SweepRun,
                                    check_run_id)
from threadx.strategy.base import get_strategy
from threadx.timings import Stopwatch
from threadx.units import format_bytes

EXECUTORS = ("auto", "local", "inline", "dask", "gpu")
# a combo's kernel time per bar, above every built-in's measured on its declared space (0.6 ns
# amplitude_hunter .. 8.3 ns grid_atr; bb_atr 1.9 ns, 5.6 ns on the benchmark's space: `threadx bench`'s
# kernel_us_per_combo, BTC 1h, 2026-12-05): one combo on 12.5k bars takes at most about 0.13 ms
_SECONDS_PER_BAR_GUESS = 1e-8
_INLINE_BELOW_SECONDS = 1.5  # smaller sweeps run in-process: a pool would cost more to start
# a chunk's work by that guess: signals included, a combo costs up to 2.5 times it (amplitude_hunter,
# 25 ns a bar), so a chunk takes 0.2 s (bb_atr) to about 0.9 s, and a stop waits about that long
_CHUNK_SECONDS = 0.35
_CHECK_LEAST_S = 0.5  # the rows' spot check may take this long, or this share of the sweep's time if more
_CHECK_SHARE = 0.05
_EXACT_COUNT_LIMIT = 1_000_000  # larger constrained grids show an estimated total first
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}  # full disk, quota, file size limit


@dataclass(frozen=True)
class Progress:
    """A progress report: combos done (this run, including resumed ones), rate, ETA."""

    done: int
    total: int
    failed: int
    rate: float  # combos per second in this session
    eta_s: float
    elapsed_s: float

    @classmethod
    def measure(cls, done: int, total: int, failed: int, new: int, elapsed: float) -> "Progress":
        """Rate from the ``new`` combos of this session over ``elapsed`` s; ETA of what is left."""
        rate = new / elapsed if elapsed > 0 else 0.0
        left = total - done
        return cls(done, total, failed, rate, left / rate if rate > 0 else (0.0 if left == 0 else float("inf")),
                   elapsed)


def default_workers() -> int:
    """The ``sweep.workers`` setting; when it is ``auto``: physical cores (logical when unknown)."""
    from threadx.config import sweep_defaults

    configured = sweep_defaults().workers
    if configured is not None:
        return int(configured)
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def sweep(
    df: pd.DataFrame | Bars,
    strategy: str,
    space: Mapping[str, Any] | None = None,
    *,
    sampler: str = "grid",
    n: int | None = None,
    seed: int = DEFAULT_SEED,
    objective: str = "sharpe",
    maximize: bool = True,
    min_trades: int = DEFAULT_MIN_TRADES,
    workers: int | None = None,
    executor: str | None = None,
    run_id: str | None = None,
    store: str | os.PathLike | ResultStore | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Any = None,
    chunk_size: int | None = None,
    grid_limit: int | None = None,
    adaptive_rounds: int = 5,
    patience: int = 2,
    bank=None,
    flush_seconds: float = 2.0,
    scheduler: str | None = None,
    block_returns: int = 32,
    memory_budget: int | str | None = None,
    on_phase: Callable[[str], None] | None = None,
    stopwatch: Stopwatch | None = None,
    **engine_options: Any,
) -> SweepRun:
    """Evaluate combos of ``space`` (see :class:`SearchSpace`) for ``strategy`` on ``df``.

    ``sampler``: grid | random | lhs | sobol | adaptive (``n`` combos for the Monte Carlo
    ones; adaptive draws ``n`` by LHS, then refines around the top 20 %). Engine options
    (fee_bps, fill, sizing, ...) are those of :func:`threadx.backtest`. Progress is
    reported through ``progress(Progress)``; ``cancel`` (an Event or a callable) stops the
    sweep once the chunks the workers hold (two per worker at most) finish, keeping what finished. The same ``run_id`` resumes.
    ``executor``: ``local`` (shared-memory process pool of ``workers``), ``inline`` (threads
    in this process), ``auto`` (inline when the sweep is too small to repay starting a pool)
    or ``dask`` (a Dask cluster at ``scheduler``, or a LocalCluster of ``workers``) or ``gpu``
    (the CUDA devices, split by the ``threadx gpu profile`` weights; ParamError without a GPU).
    ``block_returns``: per combo, the per-bar returns are also summed over this many time
    blocks and stored (float32) so that :func:`threadx.pbo` can run on the sweep; 0 = off.
    ``memory_budget``: bytes (or text such as ``"4GiB"``) the sweep may use; None = half the
    available RAM (:mod:`threadx.optimize.budget`). Over it, indicators are prepared in
    batches that fit, or the sweep is refused (ParamError) before any work starts.
    ``on_phase(text)`` is told each stage as it starts ("planning the combos", "starting 4
    workers", "computing 120 indicators", "running", "finishing"), so a caller can say what
    the sweep is doing before the first combo is done.
    ``manifest["timings"]`` records where the time went (:mod:`threadx.timings`): the
    stages of this process (validation, plan, startup, indicators, shared, run, store) and,
    under ``workers``, the seconds the workers spent planning signals and in the kernel,
    summed over workers; a ``stopwatch`` started by the caller (who timed the ``load``) is
    carried on. A resumed run records the timings of its last session.
    ``workers``, ``executor``, ``chunk_size``, ``grid_limit`` and ``memory_budget`` left at None
    take the ``[sweep]`` settings (threadx.toml, ``THREADX_SWEEP_*``; ``threadx config show``).
    The returned run reads its rows from the store when first used.
    """
    from threadx.config import sweep_defaults
    from threadx.requests import DatasetRef, SweepRequest

    defaults = sweep_defaults()
    executor = defaults.executor if executor is None else executor
    chunk_size = defaults.chunk_size if chunk_size is None else chunk_size
    grid_limit = defaults.grid_limit if grid_limit is None else grid_limit

    watch = stopwatch or Stopwatch()
    with watch.stage("validation"):
        bars = as_bars(df)
        check_bar_count(bars)  # (each combo would fail alike)
        request = SweepRequest(  # checks every argument (ParamError with the fix)
            data=DatasetRef.of(df, bars=bars), strategy=strategy, space=space if space is not None else {},
            sampler=sampler, n=n, seed=seed, objective=objective, maximize=bool(maximize), min_trades=min_trades,
            workers=workers, executor=executor, run_id=run_id, scheduler=scheduler, chunk_size=chunk_size,
            adaptive_rounds=adaptive_rounds, patience=patience, grid_limit=grid_limit,
            engine_options=engine_options)
        search = SearchSpace(get_strategy(strategy), space)
        from threadx.optimize.dask_executor import check_scheduler, connect

        check_scheduler(scheduler, executor)  # before any work
        if executor == "dask" and scheduler:  # one that does not answer: said now, not after the plan and indicators
            connect(scheduler).close()
        budget = Budget.resolve(memory_budget)
        store = store if isinstance(store, ResultStore) else ResultStore(store)
    session = _Session(
        search=search, bars=bars, options=options_from(**engine_options), sampler=sampler,
        n=None if n is None else int(n),  # (a numpy int stored as text would make the run's n another one)
        seed=int(seed), objective=objective, maximize=bool(maximize), min_trades=int(min_trades),
        workers=int(workers or default_workers()), executor=executor, progress=progress,
        should_stop=_cancel_check(cancel), chunk_size=chunk_size, grid_limit=grid_limit, bank=bank,
        scheduler=scheduler, space_spec=dict(space or {}), n_blocks=_blocks_argument(block_returns),
        store=store, run_id=check_run_id(new_run_id(strategy) if run_id is None else run_id), budget=budget,
        request=request, on_phase=on_phase, watch=watch,
    )
    log = logs.logger()  # one record at the start, one at the end: never per combo
    log.info("sweep run %s started: %s on %s, sampler %s, executor %s, %d workers, store %s", session.run_id,
             strategy, bars.name or "unnamed data", sampler, executor, session.workers, store.root)
    try:
        run = session.run(flush_seconds, adaptive_rounds, patience)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            log.error("sweep run %s failed: %s", session.run_id, exc, extra=logs.FILE_ONLY)
            raise
        stored = len(store.done_ids(session.run_id))
        log.error("sweep run %s failed: disk full, %d combos stored", session.run_id, stored, extra=logs.FILE_ONLY)
        why = "file size limit reached" if exc.errno == errno.EFBIG else "disk full"
        raise ThreadXError(f"{why} while storing results of run {session.run_id} in {store.root}: "
                           f"{stored:,} combos stored; free space (or raise the limit) and resume with the same run "
                           "id") from exc
    except BaseException as exc:
        log.error("sweep run %s %s: %s", session.run_id,
                  "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", exc or type(exc).__name__,
                  extra=logs.FILE_ONLY)  # the caller reports it (the CLI's one error line)
        raise
    m = run.manifest
    log.info("sweep run %s %s: %s/%s combos, %s failed, %.1f s", session.run_id, m.get("status"), m.get("done"),
             m.get("total"), m.get("failed"), float(m.get("elapsed_s") or 0.0))
    return run


def _blocks_argument(value: Any) -> int:
    return whole(value, "block_returns", 0, 256)


def _check_arguments(search: SearchSpace, sampler: str, n: Any, seed: Any, objective: str, executor: str,
                     workers: Any, chunk_size: Any, min_trades: Any, grid_limit: int = DEFAULT_GRID_LIMIT) -> None:
    if sampler not in SAMPLERS:
        raise ParamError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if sampler != "grid":
        if n is None:
            raise ParamError(f"sampler {sampler!r} needs n, the number of combos to draw")
        whole(n, "n", 1)
        check_grid_size(search, sampler, grid_limit, n)
    whole(seed, "seed", 0)
    whole(min_trades, "min_trades", 0)
    for value, name in ((workers, "workers"), (chunk_size, "chunk_size")):
        if value is not None:
            whole(value, name, 1)
    if objective not in METRIC_NAMES:
        raise ParamError(f"unknown objective {objective!r}; metrics: {', '.join(METRIC_NAMES)}")
    if executor not in EXECUTORS:
        raise ParamError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "gpu":
        from threadx.gpu.devices import require_gpu

        require_gpu()


def _no_valid_combo(search: SearchSpace, count: str) -> str:
    """Why no combo of ``search`` is valid: the constraints that reject every combo."""
    size = min(search.size, 100_000)
    if size == search.size:
        probe = np.arange(size, dtype=np.int64)
    else:
        probe = np.random.default_rng(0).integers(0, search.size, size)
    cols = search.columns(probe)
    rules = search.strategy.constraints
    broken = [r.description for r in rules if not search.holds(r, cols, len(probe)).any()]
    together = "the constraints together (" + "; ".join(r.description for r in rules) + ")"
    what = " and ".join(broken) or together
    raised = "".join(f"; constraint {rule!r} raised {error}" for rule, error in search.rule_errors.items())
    return f"every one of the {count} breaks {what}{raised}: change the ranges so that some combos satisfy it"


def _default_bank():
    from threadx.indicators import default_bank

    return default_bank()


def _cancel_check(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ParamError("cancel must be a threading/multiprocessing Event or a callable returning bool")


class _StoppedEarly(Exception):
    """A stop that came before the workers started (while the combos were planned)."""


@dataclass
class _Session:
    """One call of :func:`sweep`: plan, prepare, run chunks, store, clean up."""

    search: SearchSpace
    bars: Bars
    options: EngineOptions
    sampler: str
    n: int | None
    seed: int
    objective: str
    maximize: bool
    min_trades: int
    workers: int
    executor: str
    progress: Callable[[Progress], None] | None
    should_stop: Callable[[], bool]
    chunk_size: int | None
    grid_limit: int
    bank: Any
    scheduler: str | None
    space_spec: dict
    store: ResultStore
    run_id: str
    n_blocks: int = 0
    budget: Budget | None = None
    line_capacity: int | None = None  # set by _plan when indicators must be prepared in batches
    batches: int = 0  # batches of indicators run so far (see _run_batches)
    estimate: Estimate | None = None  # memory of the plan, set by _plan
    request: Any = None  # the SweepRequest this session runs (recorded in the manifest)
    on_phase: Callable[[str], None] | None = None  # told each stage as it starts (see sweep)
    requests: dict = field(default_factory=dict)  # the plan's indicator requests, set by _check_memory
    early_pool: Any = None  # a LocalPool started before the plan (see _start_pool_early)
    closing_pools: list = field(default_factory=list)  # pools told to stop, waited for by _join_pools
    watch: Stopwatch = field(default_factory=Stopwatch)  # where the time goes (manifest["timings"])
    ran: str = ""  # the executor this session runs on ("auto" resolved), set by _executor
    recorded: bool = False  # whether the manifest names it yet (on the session's first rows)

    def _phase(self, text: str) -> None:
        if self.on_phase is not None:
            self.on_phase(text)

    def run(self, flush_seconds: float, adaptive_rounds: int, patience: int) -> SweepRun:
        self.started = time.perf_counter()
        begun = time.perf_counter()
        self.early_pool = self._start_pool_early()
        if self.early_pool is not None:
            self.watch.add("startup", time.perf_counter() - begun)
        try:
            return self._run(flush_seconds, adaptive_rounds, patience)
        finally:
            if self.early_pool is not None:  # not taken by _executor (refused plan, inline after all, ...)
                self.early_pool.close()

    def _start_pool_early(self) -> Any:
        """A worker pool started before the plan, when the sweep will surely use one: forked
        from the lean process (the plan's arrays would be counted again in every worker) and
        starting up while the combos are planned and the indicators computed. None otherwise."""
        if self.executor not in ("auto", "local") or self.workers < 2 or not self._importable():
            return None
        from threadx.optimize.pool import LocalPool, default_start_method

        if default_start_method() != "fork":
            return None
        size = self.search.size if self.sampler == "grid" else int(self.n or 0)
        if self.executor == "auto" and size * _SECONDS_PER_BAR_GUESS * len(self.bars) < 2 * _INLINE_BELOW_SECONDS:
            return None  # could still be small enough to run inline: decided after the plan
        self._phase(f"starting {self.workers} workers")
        return LocalPool(self._task(), self.workers).start()

    def _importable(self) -> bool:
        """Whether worker processes can rebuild the strategy (not one defined in __main__)."""
        spec = self.search.strategy
        return spec.origin is not None or getattr(spec.signals, "__module__", None) not in (None, "__main__")

    def _task(self) -> SweepTask:
        return SweepTask.of(self.search.strategy, self.space_spec, self.options, self.n_blocks)

    def _run(self, flush_seconds: float, adaptive_rounds: int, patience: int) -> SweepRun:
        self._rounds_asked = AdaptiveSettings(int(adaptive_rounds), int(patience))
        self._failure: str | None = None  # why the run failed, recorded in its manifest
        # a strategy the suite does not check (not a built-in): its roles checked before, its rows after
        self.checks_rows = needs_check(self.search.strategy)
        self._phase("planning the combos")
        with self.watch.stage("plan"):
            self.planned, self.total, invalid = self._plan()
            self._check_roles()
        with self.watch.stage("store"):
            # stored combo ids outside this plan refuse the resume before the manifest is touched
            writer = self.store.open_run(self.run_id, self._manifest(invalid), check_ids=self._check_stored)
            writer.flush_seconds = flush_seconds
            self.writer = writer
            writer.add_warnings(self.search.rule_warnings())
            try:
                stored = self.store.stored(self.run_id)
            except BaseException:
                writer.release()
                raise
        self.done_ids = stored.settled_ids  # infrastructural failures run again
        self.counts = {"done": len(self.done_ids), "failed": 0, "new": 0}
        self.row_sample = RowSample(seed=self.seed)  # rows re-run alone once all are made (spot_check)
        self._last_report = 0.0
        # a completed run asked again has nothing to run (an adaptive one replays its recorded rounds,
        # every combo of which is stored): killed while its workers started, it read "interrupted
        # 51,714/51,714", and an adaptive one "running" while it replayed
        completed = str(writer.manifest.get("status", "")).startswith("completed")
        self._nothing_left = completed and not len(stored.retry_ids) and (
            self.sampler == "adaptive" or self.counts["done"] >= self.total)
        status = "completed"
        with _sigterm_interrupts() as sigterm:
            try:
                if not self._nothing_left:
                    writer.update_manifest(status="running", done=self.counts["done"])
                self._report(force=True)  # done (resumed) and total are known before workers and indicators
                with ExitStack() as cleanup:  # every resource released, whatever happens
                    if self.should_stop():  # stopped while it planned: no workers, no indicators
                        raise _StoppedEarly
                    closing: list[float | None] = [None]  # stopping the workers counts as "startup"
                    cleanup.callback(lambda: closing[0] is not None and "startup" in self.watch.stages
                                     and self.watch.add("startup", time.perf_counter() - closing[0]))
                    run_chunks = self._executor(cleanup)
                    cleanup.callback(lambda: closing.__setitem__(0, time.perf_counter()))  # runs first
                    self._phase("running")
                    self._report(force=True)
                    self._consume(run_chunks(self._pending(self._first_round())))
                    if self.sampler == "adaptive" and not self.should_stop():
                        with self.watch.stage("plan"):  # refinement; the rounds' combos count as run/store
                            self._adaptive(run_chunks, adaptive_rounds, patience)
                if self.should_stop():
                    status = "cancelled"
                else:
                    self._check_rows()
            except _StoppedEarly:
                status = "cancelled"
            except (SweepTerminated, RunInterrupted):
                status = "interrupted"  # SIGTERM, or workers gone: what finished is stored, the run id resumes
                raise
            except KeyboardInterrupt:
                status = "cancelled"  # Ctrl-C: what finished is stored, the same run id resumes
                raise
            except BaseException as exc:
                status = "failed"
                self._failure = f"{type(exc).__name__}: {first_line(exc, 300)}"  # (a run "failed" said no reason)
                raise
            finally:
                sigterm.defer = True  # a SIGTERM now waits until the run's end is written
                try:
                    self._finish(status)
                finally:
                    self._join_pools()  # (done by _finish unless it failed first)
            if sigterm.pending:  # it came while the end was written: stop as it asked
                raise SweepTerminated()
        return self.store.load(self.run_id)

    def _stored_rounds(self, settings: AdaptiveSettings) -> list[AdaptiveRound]:
        """The adaptive rounds an earlier session of this run recorded; ThreadXError when their
        record cannot be read or was made with other ``settings``."""
        stored_settings, log = load_rounds(self.store.folder(self.run_id), self.run_id)
        if stored_settings is not None and stored_settings != settings:
            raise ThreadXError(f"run {self.run_id} refines in up to {stored_settings.rounds} adaptive rounds with "
                               f"patience {stored_settings.patience}; resume it with those, or pick another run id")
        return log

    def _check_stored(self, ids: np.ndarray) -> None:
        """Refuse a resume whose stored combo ids are not all in this sweep's plan, or (adaptive)
        whose recorded rounds cannot be replayed: before its manifest is touched (refused after,
        a completed run was left "failed" with no reason)."""
        if self.sampler == "adaptive":
            self._stored_rounds(self._rounds_asked)
        if not len(ids):
            return
        search = self.search
        if self.planned is not None and self.sampler != "adaptive":
            outside = ids[~np.isin(ids, self.planned)]
        else:  # a grid, or adaptive refinements: any valid combo of the space
            outside = ids[(ids < 0) | (ids >= search.size)]
            if not len(outside) and search.strategy.constraints:
                outside = ids[~search.valid_mask(ids)]
        if len(outside):
            raise ThreadXError(f"run {self.run_id} stores {len(outside):,} combo ids outside this sweep's plan "
                               f"(e.g. {int(outside[0])}); pick another run id")

    # --- planning -----------------------------------------------------------------------

    def _check_roles(self) -> None:
        """Refuse (before anything is stored) a strategy whose declared param roles do not hold
        around combos spread over this sweep's plan: the plan merges combos by them
        (checks.roles.check_sweep_roles)."""
        from threadx.checks.roles import check_sweep_roles

        for axis in self.search.axes:  # each value (before the roles: such combos are all one to the engine)
            if axis.name not in ENGINE_OVERRIDES or getattr(self.options, axis.name) is None:
                continue  # (an axis of 5 million values took 5.7 s to find nothing to check)
            for value in axis.values:  # (at most three: the default, the engine's, then a conflict)
                conflict = override_conflict(self.search.strategy, {axis.name: value}, self.options)
                if conflict:
                    raise ParamError(f"{conflict} (one of this sweep's values of {axis.name})")
        if not self.checks_rows:  # a built-in: the suite checks its roles (tests/test_param_roles.py); 22 ms
            return
        if self.planned is not None:
            planned = self.planned
        else:  # a streamed grid: its first valid combo, then its last, middle and a few others
            first = next((ids[:1] for ids, _ in grid_ids(self.search, limit=self.grid_limit) if len(ids)), None)
            if first is None:
                return
            size = self.search.size
            others = np.array([size - 1, size // 2, *np.random.default_rng(0).integers(0, size, 5)], dtype=np.int64)
            planned = np.concatenate([first, others[self.search.valid_mask(others)]])
        if len(planned):  # (the first combo, then the last, the middle and others spread between)
            spread = planned[np.unique(np.linspace(0, len(planned) - 1, 8).round().astype(np.int64))]
            starts = [int(planned[0]), int(planned[-1]), int(planned[len(planned) // 2]), *spread.tolist()]
            check_sweep_roles(self.search, self.bars, starts, self.bank if self.bank is not None else _default_bank())

    def _plan(self) -> tuple[np.ndarray | None, int, int]:
        """(ids, or None for a streamed grid; total to run; invalid combos dropped); refuses a
        plan without a valid combo, or one over the memory budget (before any indicator)."""
        search = self.search
        if self.sampler == "grid":
            check_grid_size(search, "grid", self.grid_limit)
            if search.strategy.constraints and search.size > _EXACT_COUNT_LIMIT:
                probe = np.random.default_rng(0).integers(0, search.size, 100_000)
                total = int(round(search.valid_mask(probe).mean() * search.size))  # exact at the end
            else:
                total = search.count_valid()
                if total == 0:
                    raise ParamError(_no_valid_combo(search, f"{search.size:,} combos"))
            self._check_memory(None)
            return None, total, search.size - total
        drawn = monte_carlo_ids(search, "lhs" if self.sampler == "adaptive" else self.sampler, self.n, self.seed)
        if len(drawn.ids) == 0:
            raise ParamError(_no_valid_combo(search, f"{drawn.invalid:,} drawn combos"))
        self._check_memory(drawn.ids)
        return by_signal_group(search, drawn.ids), len(drawn.ids), drawn.invalid

    def _check_memory(self, ids: np.ndarray | None) -> None:
        """Estimate the sweep's memory from its plan; over the budget, plan batches
        (``line_capacity``) or refuse with advice. See :mod:`threadx.optimize.budget`."""
        budget = self.budget = self.budget or Budget.resolve()
        requests = self.requests = indicator_requests(self.search, None if ids is None else [ids])
        bank = self.bank if self.bank is not None else _default_bank()
        combos = self.search.size if ids is None else len(ids)
        inline = self._inline_for(combos)  # (threads of this process: no worker process, no shared copy)
        est = self.estimate = estimate_memory(requests, len(self.bars), 0 if inline else self.workers, bank, combos,
                                              shared=not inline, in_shm=self.executor not in ("dask", "gpu"))
        if fits(est, budget):
            return
        first = np.zeros(1, dtype=np.int64) if ids is None or not len(ids) else ids[:1]
        one_combo = sum(lines_of(group_requests(self.search, first)[1]).values())
        capacity = budget.line_capacity(est)
        batchable = self.executor in ("auto", "local", "inline")
        if batchable and capacity >= max(1, one_combo):
            self.line_capacity = capacity
            return
        smallest = est.fixed + one_combo * est.per_line
        why = (f"too small even for one batch of indicators (about {format_bytes(smallest)})" if batchable else
               f"and the {self.executor} executor cannot prepare indicators in batches (local and inline can)")
        raise ParamError(advice(est, budget, self.search, why))

    def _memory_info(self) -> dict[str, Any]:
        """What the manifest records of the memory plan."""
        est = self.estimate
        if est is None or self.budget is None:
            return {}
        return {"estimate": est.total, "budget": self.budget.memory, "indicator_lines": est.total_lines,
                "batched": self.line_capacity is not None, "line_capacity": self.line_capacity}

    def _manifest(self, invalid: int) -> dict[str, Any]:
        bars = self.bars
        return {
            "run_id": self.run_id,
            "strategy": self.search.strategy.name,
            "strategy_code": self.search.strategy.code_hash,
            "rows_code": ROWS_CODE,
            "strategy_file": self.search.strategy.origin.path if self.search.strategy.origin else None,
            "dataset": bars.name,
            "fingerprint": bars.fingerprint,
            "data": self.request.data.to_dict() if self.request is not None else None,
            "request": (self.request.with_run_id(self.run_id).to_dict() if self.request is not None else None),
            "timeframe": bars.timeframe,
            "bars": len(bars),
            "space": self.search.to_dict(),
            "param_names": list(self.search.names),
            "sampler": self.sampler,
            "n": self.n,
            "seed": self.seed,
            "objective": self.objective,
            "maximize": self.maximize,
            "min_trades": self.min_trades,
            "engine": self.options.to_dict(),
            "invalid": invalid,
            "block_end": (kernel.block_bounds(len(bars), self.n_blocks).tolist() if self.n_blocks else []),
            "total": self.total,
            "memory": self._memory_info(),
            "versions": {"threadx": threadx.__version__, "python": sys.version.split()[0],
                         "numpy": np.__version__, "pandas": pd.__version__, "numba": _numba_version()},
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "workers": self.workers,
                        "executor": self.executor},
            "started_at": datetime.now(timezone.utc).isoformat(),
        }

    def _record_executor(self, ran: str) -> None:
        """On this session's first rows, the manifest's ``machine.executor``: what runs them
        (``auto`` resolved; the request's in ``requested_executor``), and ``executors``: every one
        that has produced rows of the run (a run stopped on dask and resumed on threads said only
        the last; one that failed to start is not named)."""
        manifest = self.writer.manifest
        machine = {**(manifest.get("machine") or {}), "executor": ran, "requested_executor": self.executor}
        if ran == "dask":
            machine["scheduler"] = self.scheduler or "a LocalCluster"
        used = [e for e in manifest.get("executors") or [] if isinstance(e, str)]
        self.writer.update_manifest(machine=machine, executors=list(dict.fromkeys([*used, ran])))

    def _first_round(self) -> Iterator[np.ndarray]:
        if self.planned is None:  # a grid's blocks, each in signal-group order as a drawn plan
            return (by_signal_group(self.search, ids) for ids, _ in grid_ids(self.search, limit=self.grid_limit))
        return iter([self.planned])

    def _chunk(self) -> int:
        """About :data:`_CHUNK_SECONDS` of work per chunk (from the bar count), at least 4 chunks per worker."""
        if self.chunk_size:
            return self.chunk_size
        per_combo = _SECONDS_PER_BAR_GUESS * max(len(self.bars), 1)
        remaining = max(0, self.total - self.counts["done"])
        per_worker = max(1, remaining // (4 * self.workers))
        return int(max(1, min(_CHUNK_SECONDS / per_combo, per_worker)))

    def _pending(self, sources: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Chunks of ids not stored yet, ``_chunk()`` at a time."""
        size = self._chunk()
        carry = np.empty(0, dtype=np.int64)
        for ids in sources:
            if len(self.done_ids):
                ids = ids[~np.isin(ids, self.done_ids)]
            if len(carry):
                ids = np.concatenate([carry, ids])
            stop = len(ids) - len(ids) % size
            for lo in range(0, stop, size):
                yield ids[lo:lo + size]
            carry = ids[stop:].copy()
        if len(carry):
            yield carry

    # --- execution ----------------------------------------------------------------------

    def _inline_for(self, combos: int) -> bool:
        """Whether ``combos`` combos run on threads of this process: executor "inline", or "auto"
        with one worker or a sweep too small to pay for a pool (the memory estimate asks before
        the run: a 2-combo "auto" sweep was estimated with 4 worker processes and refused)."""
        return self.executor == "inline" or (self.executor == "auto" and (
            self.workers == 1 or combos * _SECONDS_PER_BAR_GUESS * len(self.bars) < _INLINE_BELOW_SECONDS))

    def _executor(self, cleanup: ExitStack) -> Callable[[Iterator[np.ndarray]], Iterator[ChunkResult]]:
        importable = self._importable()
        task = self._task()
        remaining = max(0, self.total - self.counts["done"])
        from threadx.optimize.pool import LocalPool, default_start_method
        from threadx.optimize.shm import reclaim

        reclaim()  # segments of sweeps killed with their whole process group (their tracker too)

        inline = self._inline_for(remaining) or (self.executor == "auto" and (
            # a strategy defined in __main__ or a notebook exists only in this process
            not importable and default_start_method() != "fork"))
        in_process = inline or self.executor == "gpu"
        self.ran = "inline" if inline else self.executor if self.executor in ("gpu", "dask") else "local"
        if not importable and not in_process and (self.executor == "dask" or default_start_method() != "fork"):
            raise ParamError(f"strategy {task.strategy!r} is defined in __main__, which worker processes cannot "
                             "import: move it to a module, or use executor='inline'")
        pool, self.early_pool = self.early_pool, None
        if pool is not None:
            cleanup.callback(self._close_later, pool)
            if in_process or self.executor == "dask" or not remaining:
                pool.close()
                pool = None
        elif not in_process and self.executor != "dask" and remaining:
            self._phase(f"starting {self.workers} workers")
            with self.watch.stage("startup"):
                pool = LocalPool(task, self.workers).start()  # workers start up while indicators are computed
            cleanup.callback(self._close_later, pool)
        bank = self.bank if self.bank is not None else _default_bank()
        if self.line_capacity is not None:  # over the memory budget: indicators batch by batch
            return lambda chunks: self._run_batches(chunks, task, bank, pool)
        with self.watch.stage("indicators"):
            arrays = self._indicators(bank)
        if self.executor in ("gpu", "dask"):
            self._phase(f"starting the {'GPU' if self.executor == 'gpu' else 'Dask'} executor")
        if inline:
            evaluator = Evaluator(task, self.bars, PreparedIndicators(arrays.get))
            return lambda chunks: _run_in_threads(evaluator, chunks, self.workers, self.should_stop)
        if self.executor == "gpu":
            from threadx.gpu.executor import GpuExecutor

            with self.watch.stage("startup"):
                gpu = GpuExecutor(task, self.bars, PreparedIndicators(arrays.get), cpu_threads=self.workers)
            cleanup.callback(gpu.close)
            cleanup.callback(lambda: self.writer.update_manifest(gpu=gpu.describe()))  # devices, failures
            return lambda chunks: gpu.run(chunks, self.should_stop)
        if self.executor == "dask":
            from threadx.optimize.dask_executor import DaskExecutor

            with self.watch.stage("startup"):
                cluster = DaskExecutor(self.bars, arrays, task, self.workers, address=self.scheduler)
            cleanup.callback(cluster.close)
            return lambda chunks: cluster.run(chunks, self.should_stop)
        with self.watch.stage("shared"):
            pack = SharedPack.create(self.bars, arrays, self.run_id)
            cleanup.callback(pack.close)  # at once: a Ctrl-C as the stage ends would leave the block behind
        arrays.clear()  # workers read the shared copy; the bank keeps its own
        if pool is None:
            with self.watch.stage("startup"):
                pool = LocalPool(task, self.workers).start()
            cleanup.callback(self._close_later, pool)
        return lambda chunks: pool.run(pack.layout, chunks, self.should_stop)

    def _close_later(self, pool: Any) -> None:
        """Stop ``pool``'s workers; they exit while ``_finish`` writes and counts the last
        parts, and it waits for them before the manifest's last write (:meth:`_join_pools`)."""
        pool.begin_close()
        self.closing_pools.append(pool)

    def _join_pools(self) -> None:
        """Wait for the workers of the pools :meth:`_close_later` stopped (counted as "startup")."""
        if not self.closing_pools:
            return
        started = time.perf_counter()
        while self.closing_pools:
            self.closing_pools.pop().close()
        self.watch.add("startup", time.perf_counter() - started)

    def _run_batches(self, chunks: Iterator[np.ndarray], task: SweepTask, bank: Any,
                     pool: Any) -> Iterator[ChunkResult]:
        """Run ``chunks`` with indicators prepared batch by batch within the memory budget:
        combos grouped by their indicator params, groups packed into batches whose lines fit
        ``line_capacity`` (one shared block each, closed before the next is made)."""
        ids = np.concatenate([np.empty(0, np.int64), *chunks])
        if not len(ids):
            return
        axes = indicator_axes(self.search)
        step = 1 << 16
        codes = np.concatenate([group_codes(self.search, ids[lo:lo + step], axes) for lo in range(0, len(ids), step)])
        unique, first = np.unique(codes, return_index=True)
        needs, requests = group_requests(self.search, ids[first])  # in the order of ``unique``
        batches = plan_batches(needs, int(self.line_capacity or 0), request_widths(requests))
        size = self._chunk()
        for members in batches:
            if self.should_stop():
                break
            self.batches += 1
            batch_ids = ids[np.isin(codes, unique[members])]
            wanted = {key: requests[key] for k in members for key in needs[k]}
            self._phase(f"computing {len(wanted):,} indicators (batch {self.batches} of {len(batches)})")
            with self.watch.stage("indicators"):
                arrays = prepare_requests(wanted, self.bars, bank)
            pieces = (batch_ids[lo:lo + size] for lo in range(0, len(batch_ids), size))
            if pool is None:  # inline (threads in this process)
                evaluator = Evaluator(task, self.bars, PreparedIndicators(arrays.get))
                yield from _run_in_threads(evaluator, pieces, self.workers, self.should_stop)
                continue
            pack = None
            try:
                with self.watch.stage("shared"):
                    pack = SharedPack.create(self.bars, arrays, self.run_id)
                arrays.clear()  # workers read the shared copy: the parent never holds both for long
                yield from pool.run(pack.layout, pieces, self.should_stop)
            finally:
                if pack is not None:
                    pack.close()
        self.writer.update_manifest(memory={**self.writer.manifest.get("memory", {}), "batches": self.batches})

    def _indicators(self, bank) -> dict:
        requests = self.requests  # found by _check_memory for the same plan
        self._phase(f"computing {len(requests):,} indicators")
        return prepare_requests(requests, self.bars, bank)

    def _consume(self, results: Iterator[ChunkResult]) -> None:
        results = iter(results)
        while True:
            with self.watch.stage("run"):  # waiting for the workers (a batch's indicators count for themselves)
                result = next(results, None)
            if result is None:
                return
            self.watch.add_workers(result.stages)
            with self.watch.stage("store"):
                if not self.recorded:  # (once it has made rows: one that failed to start made none)
                    self.recorded = True
                    self._record_executor(self.ran)
                self.writer.append(_columns(self.search, result, len(self.writer.manifest.get("block_end") or [])))
                self.writer.add_warnings([*result.warnings, *self.search.rule_warnings()])  # (a streamed grid's too)
            if self.checks_rows:  # (15 ms of a 0.5 s sweep spent sampling rows no check would read)
                self.row_sample.offer(result)
            self.counts["done"] += len(result.ids)
            self.counts["new"] += len(result.ids)
            self.counts["failed"] += int((result.status != STATUS_OK).sum())
            self._report()

    def _check_rows(self) -> None:
        """Re-run a sample of this session's rows one by one (threadx.optimize.spot_check); a row
        that differs from its own backtest is a warning of the run (a param's role declared wrong)."""
        if not self.checks_rows:
            return
        self._phase("checking a sample of rows against their own backtests")
        budget = max(_CHECK_LEAST_S, _CHECK_SHARE * (time.perf_counter() - self.started))
        with self.watch.stage("check"):
            warning = spot_check(self.row_sample, self.search, self._task(), self.bars,
                                 self.bank if self.bank is not None else _default_bank(), budget)
        if warning:
            logs.logger().warning("sweep %s: %s", self.run_id, warning)
            self.writer.add_warnings([warning])

    def _report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.progress is None or (not force and now - self._last_report < 0.2):
            return
        self._last_report = now
        c = self.counts
        total = max(self.total, c["done"])
        self.progress(Progress.measure(c["done"], total, c["failed"], c["new"], now - self.started))

    def _adaptive(self, run_chunks, rounds: int, patience: int) -> None:
        """Refine around the top 20 % (enough trades) with a shrinking neighbourhood until
        ``patience`` rounds bring no improvement of the best objective. Each round is recorded
        as it is planned (:mod:`threadx.optimize.adaptive_log`): a resume replays the recorded
        ones (their stored rows include part of a round, so a new draw would differ) and draws
        only past them."""
        self.writer.flush()
        settings = AdaptiveSettings(int(rounds), int(patience))
        log = self._stored_rounds(settings)
        seen = set(self.store.done_ids(self.run_id).tolist())
        if self.planned is not None:
            seen.update(self.planned.tolist())
        for done in log:
            seen.update(done.ids.tolist())
        best = self._best_value()
        stale = 0
        radius = 0.25
        for round_no in range(rounds):
            if self.should_stop():
                return
            self.writer.flush()
            if round_no < len(log):  # planned by an earlier session of this run: its ids, its state
                done = log[round_no]
                new_ids, radius, stale, best = done.ids, done.radius, done.stale, done.best
            else:
                ranked = self._ranked()
                if ranked.empty:
                    return
                top = ranked.head(max(1, len(ranked) // 5))["combo_id"].to_numpy()
                new_ids = refine(self.search, top, max(16, (self.n or 0) // 2), radius, self.seed + round_no + 1, seen)
                if len(new_ids) == 0:
                    return
                seen.update(new_ids.tolist())
                log.append(AdaptiveRound(radius, stale, best, new_ids))
                save_rounds(self.writer.folder, settings, log)
            self.total += len(new_ids)
            # (a kill leaves the planned count, not the first round's; never below what is stored: a completed
            # run asked again, killed while it replayed its rounds, read 210,000/180,000)
            self.writer.update_manifest(total=max(self.total, self.counts["done"]))
            self._consume(run_chunks(self._pending(iter([new_ids]))))
            self.writer.flush()
            value = self._best_value()
            improved = value is not None and (best is None or (value > best if self.maximize else value < best))
            best = value if improved else best
            stale = 0 if improved else stale + 1
            if stale >= patience:
                return
            radius *= 0.5

    def _ranked(self) -> pd.DataFrame:
        """The best stored rows, as many as the first round drew (a fixed number: the manifest's
        total, which a round or an earlier session's end changes, made a resume rank otherwise)."""
        run = self.store.load(self.run_id)
        limit = len(self.planned) if self.planned is not None else int(self.writer.manifest.get("total", 0))
        return run.top(max(1, limit), self.objective, self.maximize, self.min_trades).dropna(subset=[self.objective])

    def _best_value(self) -> float | None:
        ranked = self._ranked()
        return None if ranked.empty else float(ranked.iloc[0][self.objective])

    # --- the end ------------------------------------------------------------------------

    def _finish(self, status: str) -> None:
        """Flush, record the final counts (from the parts) and status, release the run."""
        writer: RunWriter = self.writer
        self._phase("finishing")
        flushed = False
        try:
            with self.watch.stage("store"):
                writer.flush()
            flushed = True
        finally:
            if not flushed and status == "completed":
                status = "failed"  # the last results are not stored (a full disk): resumable, not complete
            try:
                counted = time.perf_counter()
                stored = self.store.stored(self.run_id)
                done, failed = len(stored.ids), stored.failed
                nothing_left = self._nothing_left or (self.sampler != "adaptive"
                                                      and len(stored.settled_ids) >= self.total)
                if status in ("cancelled", "interrupted", "failed") and flushed and nothing_left:
                    # stopped, or its executor failed to start, with nothing left to run (a completed run asked
                    # again: it read "interrupted", or "failed" after a MemoryError starting its workers)
                    status = "completed"
                total = done if status == "completed" else max(self.total, done)
                if status == "completed" and failed:
                    status = f"completed with {failed:,} failed"  # a resume retries infrastructural ones
                self.watch.add("store", time.perf_counter() - counted)
                self._join_pools()  # the workers exited while the parts were written and counted
                if status == "failed" and self._failure:
                    writer.manifest["error"] = self._failure
                else:
                    writer.manifest.pop("error", None)  # (a resume that completes clears an earlier one)
                writer.update_manifest(status=status, done=done, failed=failed, total=total,
                                       finished_at=datetime.now(timezone.utc).isoformat(),
                                       elapsed_s=time.perf_counter() - self.started, timings=self.watch.record(),
                                       session_done=int(self.counts["new"]))  # (what elapsed_s ran: a rate's)
            finally:
                writer.close()
            self.total = total
            self.counts["done"] = done
            self._report(force=True)


class SweepTerminated(KeyboardInterrupt):
    """SIGTERM during a sweep: handled like Ctrl-C (parts flushed, the run id resumes)."""


@dataclass
class _Sigterm:
    """What the SIGTERM handler of a sweep does: raise, or (``defer``) only note it."""

    defer: bool = False
    pending: bool = False

    def __call__(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.defer:
            self.pending = True
            return
        self.defer = True  # a second SIGTERM must not cut short the flush the first one started
        raise SweepTerminated()


@contextmanager
def _sigterm_interrupts() -> Iterator[_Sigterm]:
    """Turn SIGTERM into :class:`SweepTerminated` while the sweep runs, when this is the main
    thread and nobody else handles SIGTERM (a job runner installs its own cancel); one that
    comes while the run's end is written is deferred until it is."""
    handler = _Sigterm()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield handler
        return
    signal.signal(signal.SIGTERM, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def by_signal_group(search: SearchSpace, ids: np.ndarray) -> np.ndarray:
    """``ids`` ordered by their signal-key values (stable), so that a chunk holds whole groups
    of combos sharing one signal array (:meth:`Evaluator.evaluate`); unchanged when every
    varying param is in the key (nothing to share)."""
    names = set(signal_key_names(search.strategy))
    axes = [k for k, axis in enumerate(search.axes) if axis.name in names]
    varying_exits = [k for k, axis in enumerate(search.axes) if axis.name not in names and len(axis.values) > 1]
    product = float(np.prod([float(search.sizes[k]) for k in axes])) if axes else 1.0
    if not varying_exits or not len(ids) or product >= 2.0 ** 62:
        return ids
    return ids[np.argsort(group_codes(search, ids, axes), kind="stable")]


def _run_in_threads(evaluator: Evaluator, chunks: Iterator[np.ndarray], workers: int,
                    should_stop: Callable[[], bool]) -> Iterator[ChunkResult]:
    """In-process executor: the numba kernels release the GIL, only the per-combo glue holds it."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="threadx-sweep") as threads:
        queue: deque = deque()
        for ids in chunks:
            if should_stop():
                break
            queue.append(threads.submit(evaluator.evaluate, ids))
            while len(queue) >= 2 * workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def _rows(space: SearchSpace, result: ChunkResult, n_blocks: int = 0) -> pd.DataFrame:
    """The stored rows of a chunk as a DataFrame (the store takes :func:`_columns`, cheaper)."""
    return pd.DataFrame(_columns(space, result, n_blocks))


def _columns(space: SearchSpace, result: ChunkResult, n_blocks: int = 0) -> dict[str, Any]:
    """The stored rows of a chunk, column by column: combo id, params, metrics, block
    moments, status and error (a scalar "" when no combo failed)."""
    columns: dict[str, Any] = {"combo_id": result.ids, **space.columns(result.ids)}
    columns.update({name: result.metrics[:, k] for k, name in enumerate(METRIC_NAMES)})
    if n_blocks:
        moments = result.blocks
        if moments is None:  # a chunk that failed as a whole
            moments = np.full((len(result.ids), n_blocks, 2), np.nan)
        moments = moments.astype(np.float32)
        for b in range(moments.shape[1]):
            columns[f"{BLOCK_SUM_PREFIX}{b:03d}"] = moments[:, b, 0]
            columns[f"{BLOCK_SQ_PREFIX}{b:03d}"] = moments[:, b, 1]
    columns["status"] = np.where(result.status == STATUS_OK, "ok", "failed")
    columns["error"] = [result.errors.get(int(i), "") for i in result.ids] if result.errors else ""
    return columns


def _numba_version() -> str:
    import numba

    return numba.__version__
