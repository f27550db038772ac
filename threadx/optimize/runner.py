"""``threadx.sweep``: grid and Monte Carlo optimisation with progress, cancel and resume.

The parent samples combo ids, computes every distinct indicator of the space once
(IndicatorBank batch path), packs OHLCV and indicators into shared memory, and streams
chunks of ids to the executor; one writer appends the small result arrays to the
results store in batches. Re-running a run id skips the combos already stored.
"""
from __future__ import annotations

import os
import platform
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

import threadx
from threadx.data.bars import Bars, as_bars
from threadx.engine.inputs import EngineOptions, options_from
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ParamError
from threadx.optimize.evaluate import STATUS_OK, ChunkResult, Evaluator, SweepTask
from threadx.optimize.samplers import SAMPLERS, grid_ids, monte_carlo_ids, refine
from threadx.optimize.shared import SharedPack, indicator_requests
from threadx.optimize.space import DEFAULT_GRID_LIMIT, SearchSpace
from threadx.optimize.store import ResultStore, SweepRun, check_run_id
from threadx.strategy.base import get_strategy

EXECUTORS = ("auto", "local", "inline", "dask")
_SECONDS_PER_COMBO_GUESS = 3e-4
_INLINE_BELOW_SECONDS = 1.5  # smaller sweeps run in-process: a pool would cost more to start


@dataclass(frozen=True)
class Progress:
    """A progress report: combos done (this run, including resumed ones), rate, ETA."""

    done: int
    total: int
    failed: int
    rate: float  # combos per second in this session
    eta_s: float
    elapsed_s: float


def _cancel_check(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ParamError("cancel must be a threading/multiprocessing Event or a callable returning bool")


def default_workers() -> int:
    """Physical cores (logical when unknown)."""
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _planned_ids(space: SearchSpace, sampler: str, n: int | None, seed: int, grid_limit: int) -> tuple[np.ndarray | None, int, int]:
    """(ids or None for a streamed grid, total to run, invalid count)."""
    if sampler == "grid":
        total = space.count_valid() if space.size <= grid_limit else space.size
        if space.size > grid_limit:
            next(grid_ids(space, limit=grid_limit))  # raises with advice
        return None, total, space.size - total
    if sampler in ("random", "lhs", "sobol"):
        drawn = monte_carlo_ids(space, sampler, n, seed)
        return drawn.ids, len(drawn.ids), drawn.invalid
    raise ParamError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")


def _compute_indicators(space: SearchSpace, bars: Bars, bank) -> dict:
    requests = indicator_requests(space)
    by_name: dict[str, list] = {}
    for (name, key), params in requests.items():
        by_name.setdefault(name, []).append((key, params))
    arrays = {}
    for name, items in by_name.items():
        outputs = bank.ensure_many(bars, name, [params for _, params in items])
        for (key, _), out in zip(items, outputs):
            arrays[(name, key)] = out
    return arrays


def _rows(space: SearchSpace, result: ChunkResult) -> pd.DataFrame:
    columns: dict[str, Any] = {"combo_id": result.ids, **space.columns(result.ids)}
    columns.update({name: result.metrics[:, k] for k, name in enumerate(METRIC_NAMES)})
    columns["status"] = np.where(result.status == STATUS_OK, "ok", "failed")
    columns["error"] = [result.errors.get(int(i), "") for i in result.ids] if result.errors else ""
    return pd.DataFrame(columns)


def sweep(
    df: pd.DataFrame | Bars,
    strategy: str,
    space: Mapping[str, Any] | None = None,
    *,
    sampler: str = "grid",
    n: int | None = None,
    seed: int = 42,
    objective: str = "sharpe",
    maximize: bool = True,
    min_trades: int = 0,
    workers: int | None = None,
    executor: str = "auto",
    run_id: str | None = None,
    store: str | os.PathLike | ResultStore | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Any = None,
    chunk_size: int | None = None,
    grid_limit: int = DEFAULT_GRID_LIMIT,
    adaptive_rounds: int = 5,
    patience: int = 2,
    bank=None,
    flush_seconds: float = 2.0,
    scheduler: str | None = None,
    **engine_options: Any,
) -> SweepRun:
    """Evaluate combos of ``space`` (see :class:`SearchSpace`) for ``strategy`` on ``df``.

    ``sampler``: grid | random | lhs | sobol | adaptive (``n`` combos for the Monte Carlo
    ones; adaptive draws ``n`` by LHS, then refines around the top 20 %). Engine options
    (fee_bps, fill, sizing, ...) are those of :func:`threadx.backtest`. Progress is
    reported through ``progress(Progress)``; ``cancel`` (an Event or a callable) stops the
    sweep within about one chunk, keeping what finished. The same ``run_id`` resumes.
    ``executor``: ``local`` (shared-memory process pool of ``workers``), ``inline`` (threads
    in this process), ``auto`` (inline when the sweep is too small to repay starting a pool)
    or ``dask`` (a Dask cluster at ``scheduler``, or a LocalCluster of ``workers``).
    """
    started = time.perf_counter()
    spec = get_strategy(strategy)
    search = SearchSpace(spec, space)
    options: EngineOptions = options_from(**engine_options)
    if objective not in METRIC_NAMES:
        raise ParamError(f"unknown objective {objective!r}; metrics: {', '.join(METRIC_NAMES)}")
    if executor not in EXECUTORS:
        raise ParamError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if sampler not in SAMPLERS:
        raise ParamError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    clash = set(search.names) & set(METRIC_NAMES + ("combo_id", "status", "error"))
    if clash:
        raise ParamError(f"param names {sorted(clash)} clash with result columns")
    bars = as_bars(df)
    store = store if isinstance(store, ResultStore) else ResultStore(store)
    run_id = check_run_id(run_id or f"{strategy}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{seed}")
    should_stop = _cancel_check(cancel)
    workers = workers or default_workers()

    first_sampler = "lhs" if sampler == "adaptive" else sampler
    planned, total, invalid = _planned_ids(search, first_sampler, n, seed, grid_limit)
    manifest = {
        "run_id": run_id,
        "strategy": strategy,
        "dataset": bars.name,
        "fingerprint": bars.fingerprint,
        "timeframe": bars.timeframe,
        "bars": len(bars),
        "space": search.to_dict(),
        "param_names": list(search.names),
        "sampler": sampler,
        "n": n,
        "seed": seed,
        "objective": objective,
        "maximize": maximize,
        "min_trades": min_trades,
        "engine": options.to_dict(),
        "invalid": invalid,
        "total": total,
        "versions": {"threadx": threadx.__version__, "python": sys.version.split()[0],
                     "numpy": np.__version__, "pandas": pd.__version__, "numba": _numba_version()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "workers": workers,
                    "executor": executor},
        "started_at": datetime.now(timezone.utc).isoformat(),
    }
    writer = store.open_run(run_id, manifest)
    writer.flush_seconds = flush_seconds
    done_ids = store.done_ids(run_id)
    done_set = set(done_ids.tolist())
    counts = {"done": len(done_set), "failed": 0, "new": 0}
    writer.update_manifest(status="running", done=counts["done"])

    module = getattr(spec.signals, "__module__", None)
    task = SweepTask(strategy, dict(space or {}), options, None if module in (None, "__main__") else module)
    remaining = max(0, total - counts["done"])
    use_inline = executor == "inline" or (
        executor == "auto" and (workers == 1 or remaining * _SECONDS_PER_COMBO_GUESS < _INLINE_BELOW_SECONDS)
    )
    pool = None
    if not use_inline and remaining and executor != "dask":
        from threadx.optimize.pool import LocalPool

        pool = LocalPool(task, workers).start()  # workers start up while the indicators are computed
    if bank is None:
        from threadx.indicators import default_bank

        bank = default_bank()
    arrays = _compute_indicators(search, bars, bank)

    def pending_chunks(ids_source: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
        buffer: list[np.ndarray] = []
        held = 0
        for ids in ids_source:
            if done_set:
                ids = ids[~np.isin(ids, done_ids)]
            if len(ids):
                buffer.append(ids)
                held += len(ids)
            while held >= size:
                merged = np.concatenate(buffer)
                yield merged[:size]
                buffer, held = [merged[size:]], held - size
        if held:
            yield np.concatenate(buffer)

    def first_round() -> Iterator[np.ndarray]:
        if planned is None:
            return (ids for ids, _ in grid_ids(search, limit=grid_limit))
        return iter([planned])

    size = chunk_size or _chunk_size(remaining, workers)
    last_report = 0.0
    status = "completed"

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if progress is None or (not force and now - last_report < 0.2):
            return
        last_report = now
        elapsed = now - started
        rate = counts["new"] / elapsed if elapsed > 0 else 0.0
        left = max(0, total - counts["done"])
        progress(Progress(counts["done"], total, counts["failed"], rate, left / rate if rate > 0 else float("inf"),
                          elapsed))

    def consume(results: Iterator[ChunkResult]) -> None:
        for result in results:
            frame = _rows(search, result)
            writer.append(frame)
            counts["done"] += len(result.ids)
            counts["new"] += len(result.ids)
            counts["failed"] += int((result.status != STATUS_OK).sum())
            if sampler == "adaptive":
                done_set.update(result.ids.tolist())
            report()

    pack = None
    cluster = None
    try:
        if use_inline:
            evaluator = Evaluator(task, bars, _ArraysSource(arrays, bank))

            def run_chunks(chunks: Iterator[np.ndarray]) -> Iterator[ChunkResult]:
                # threads: the numba kernels release the GIL, only the per-combo glue holds it
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
        elif executor == "dask":
            from threadx.optimize.dask_executor import DaskExecutor

            cluster = DaskExecutor(bars, arrays, task, workers, address=scheduler)

            def run_chunks(chunks: Iterator[np.ndarray]) -> Iterator[ChunkResult]:
                return cluster.run(chunks, should_stop)
        else:
            from threadx.optimize.pool import LocalPool

            pack = SharedPack.create(bars, arrays)
            arrays.clear()  # workers read the shared copy; the bank keeps its own
            pool = pool or LocalPool(task, workers).start()

            def run_chunks(chunks: Iterator[np.ndarray]) -> Iterator[ChunkResult]:
                return pool.run(pack.layout, chunks, should_stop)

        report(force=True)
        consume(run_chunks(pending_chunks(first_round(), size)))
        if sampler == "adaptive" and not should_stop():
            _adaptive_rounds(search, store, run_id, writer, objective, maximize, n or 0, seed, adaptive_rounds,
                             patience, done_set, lambda ids: consume(run_chunks(pending_chunks(iter([ids]), size))))
            total = counts["done"]
        if should_stop():
            status = "cancelled"
    except KeyboardInterrupt:
        status = "cancelled"  # Ctrl-C: what finished is stored, the same run id resumes
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        writer.flush()
        if pool is not None:
            pool.close()
        if cluster is not None:
            cluster.close()
        if pack is not None:
            pack.close()
        writer.update_manifest(status=status, done=counts["done"], failed_this_session=counts["failed"],
                               total=max(total, counts["done"]), finished_at=datetime.now(timezone.utc).isoformat(),
                               elapsed_s=time.perf_counter() - started)
        report(force=True)
    run = store.load(run_id)
    failed = int((run.results["status"] == "failed").sum()) if len(run.results) else 0
    writer.update_manifest(failed=failed, done=len(run.results))
    run.manifest.update(failed=failed, done=len(run.results))
    return run


class _ArraysSource:
    """In-process indicator source: the precomputed arrays, the bank for anything else."""

    def __init__(self, arrays: dict, bank):
        self.arrays = arrays
        self.bank = bank
        self._memo: dict[tuple, dict] = {}  # keyed by the raw params

    def ensure(self, data: Any, name: str, params: Mapping[str, Any] | None = None):
        raw = (name, tuple(sorted((params or {}).items())))
        found = self._memo.get(raw)
        if found is None:
            from threadx.indicators.registry import canonical_params

            found = self.arrays.get((name, canonical_params(name, params)))
            if found is None:
                found = self.bank.ensure(data, name, params)
            self._memo[raw] = found
        return found


def _chunk_size(remaining: int, workers: int) -> int:
    """About 0.5 s of work per chunk, and at least 4 chunks per worker."""
    target = int(0.5 / _SECONDS_PER_COMBO_GUESS)
    per_worker = max(1, remaining // max(1, 4 * workers))
    return int(max(16, min(target, per_worker)))


def _adaptive_rounds(search: SearchSpace, store: ResultStore, run_id: str, writer, objective: str, maximize: bool,
                     n: int, seed: int, rounds: int, patience: int, done_set: set[int],
                     run_ids: Callable[[np.ndarray], None]) -> None:
    """Refine around the top 20 % with a shrinking neighbourhood until ``patience``
    rounds bring no improvement of the best objective."""
    writer.flush()
    best = _best_value(store, run_id, objective, maximize)
    stale = 0
    radius = 0.25
    for round_no in range(rounds):
        writer.flush()
        results = store.load(run_id).ok().dropna(subset=[objective])
        if results.empty:
            return
        top = results.sort_values(objective, ascending=not maximize).head(max(1, len(results) // 5))
        new_ids = refine(search, top["combo_id"].to_numpy(), max(16, n // 2), radius, seed + round_no + 1, done_set)
        if len(new_ids) == 0:
            return
        run_ids(new_ids)
        writer.flush()
        value = _best_value(store, run_id, objective, maximize)
        improved = value is not None and (best is None or (value > best if maximize else value < best))
        best = value if improved else best
        stale = 0 if improved else stale + 1
        if stale >= patience:
            return
        radius *= 0.5


def _best_value(store: ResultStore, run_id: str, objective: str, maximize: bool) -> float | None:
    results = store.load(run_id).ok()[objective].dropna()
    if results.empty:
        return None
    return float(results.max() if maximize else results.min())


def _numba_version() -> str:
    import numba

    return numba.__version__
