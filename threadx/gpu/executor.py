"""``threadx.sweep(..., executor="gpu")``: sweep chunks run on the GPUs (SPEC §6.4, §8).

The sweep runner streams chunks of combo ids as for the CPU pool; this executor gathers
them into batches sized for the GPUs, plans each batch on the host (:mod:`threadx.optimize.plan`, the plan every executor uses:
the distinct signal arrays, lines and parameter rows), splits its combos across the
devices by the active weights (:mod:`threadx.gpu.balance`) and yields one
:class:`ChunkResult` per batch, so the results store, progress, cancel and resume are the
runner's as for every executor. The next batch is planned while the devices run the
current one. A device that raises is dropped for the rest of the sweep; its combos go to
the remaining devices, or to the CPU kernel when none is left, and the sweep completes.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from threadx.data.bars import Bars
from threadx.engine.layout import N_METRICS, N_PARAMS
from threadx.gpu.balance import Weights, active_weights, split_counts
from threadx.gpu.devices import GpuDevice, require_gpu
from threadx.gpu.kernel import DeviceRunner, register_cap
from threadx.optimize.evaluate import ChunkResult, Evaluator, SweepTask
from threadx.optimize.plan import Plan, Planner, run_plan

log = logging.getLogger(__name__)

_SIGNAL_BYTES_PER_BATCH = 512 * 2**20  # host memory for the distinct signal arrays of one batch
_RESULT_BYTES_PER_BATCH = 256 * 2**20  # host memory for the params and results of one batch
_MIN_BATCH, _MAX_BATCH = 4_096, 1_048_576


@dataclass
class DeviceFailure:
    """A device dropped during a sweep, and where its combos went."""

    device: GpuDevice
    error: str
    handed_to: str


@dataclass
class GpuExecutor:
    """Runs sweep chunks on ``devices`` (default: every usable CUDA device) split by ``weights``
    (default: the stored profile, else 75/25 / uniform). ``runner_factory(device, bars,
    funding, block_end)`` makes the per-device runner (tests pass fakes), whose ``run(plan,
    positions=None)`` is :meth:`DeviceRunner.run`'s."""

    task: SweepTask
    bars: Bars
    indicators: Any
    devices: Sequence[GpuDevice] | None = None
    weights: Sequence[float] | Weights | None = None
    runner_factory: Callable[..., Any] | None = None
    cpu_threads: int = 1
    batch_size: int | None = None  # combos per batch; None: sized from the bars and the signals met
    failures: list[DeviceFailure] = field(default_factory=list)

    def __post_init__(self) -> None:
        register_cap()  # a bad THREADX_GPU_MAX_REGISTERS: this error now, not each device "failing" later
        if self.runner_factory is None:
            self.runner_factory = DeviceRunner
        if self.devices is None:
            self.devices = require_gpu().devices
        self.devices = list(self.devices)
        if not self.devices:
            raise ValueError("GpuExecutor needs at least one device")
        if self.weights is None:
            self.weights = active_weights(self.devices)
        if not isinstance(self.weights, Weights):
            self.weights = Weights(tuple(float(w) for w in self.weights), "given")
        if len(self.weights.values) != len(self.devices):
            raise ValueError(f"{len(self.weights.values)} weights for {len(self.devices)} devices")
        self.evaluator = Evaluator(self.task, self.bars, self.indicators)
        self.planner = Planner(self.evaluator)
        self._runners: dict[int, Any] = {}
        self._dead: set[int] = set()
        self._pool = ThreadPoolExecutor(max_workers=len(self.devices), thread_name_prefix="threadx-gpu")
        self._next_batch = self.batch_size or int(np.clip(_SIGNAL_BYTES_PER_BATCH // max(len(self.bars), 1),
                                                          _MIN_BATCH, 262_144))

    # --- the sweep -----------------------------------------------------------------------------

    def run(self, chunks: Iterator[np.ndarray], should_stop: Callable[[], bool] = lambda: False
            ) -> Iterator[ChunkResult]:
        """One ChunkResult per batch; stops taking chunks once ``should_stop()`` is true."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadx-gpu-dispatch") as dispatch:
            pending = None
            for ids in self._batches(chunks, should_stop):
                plan = self.planner.plan(ids)
                self._resize(plan)
                running = dispatch.submit(self.execute, plan)  # the devices run while the next batch is planned
                if pending is not None:
                    yield pending.result()
                pending = running
            if pending is not None:
                yield pending.result()

    def _batches(self, chunks: Iterator[np.ndarray], should_stop: Callable[[], bool]) -> Iterator[np.ndarray]:
        parts: list[np.ndarray] = []
        size = 0
        for ids in chunks:
            if should_stop():
                return
            parts.append(np.asarray(ids, dtype=np.int64))
            size += len(ids)
            while size >= self._next_batch:
                merged = np.concatenate(parts)
                take = self._next_batch
                yield merged[:take]
                parts, size = [merged[take:]], len(merged) - take
                if should_stop():
                    return
        if size and not should_stop():
            yield np.concatenate(parts)

    def _resize(self, plan: Plan) -> None:
        """The next batch: as many combos as keep its distinct signals within the memory budget."""
        if self.batch_size or not len(plan):
            return
        share = max(len(plan.signals) / len(plan), 1 / 64)
        n_blocks = 0 if self.evaluator.block_end is None else len(self.evaluator.block_end)
        per_combo = 8 * (N_PARAMS + N_METRICS + 2 * n_blocks)  # the row in, the metrics and blocks out
        largest = min(_MAX_BATCH, _RESULT_BYTES_PER_BATCH // per_combo)
        self._next_batch = int(np.clip(_SIGNAL_BYTES_PER_BATCH / (len(self.bars) * share), _MIN_BATCH, largest))

    # --- one batch --------------------------------------------------------------------------------

    def execute(self, plan: Plan) -> ChunkResult:
        """Metrics of a planned batch, its combos split across the live devices."""
        metrics = np.full((len(plan), N_METRICS), np.nan)
        n_blocks = 0 if self.evaluator.block_end is None else len(self.evaluator.block_end)
        blocks = np.full((len(plan), n_blocks, 2), np.nan) if n_blocks else None
        todo = [plan.by_signal()]  # devices get contiguous signal sets
        while todo:
            positions = todo.pop()
            alive = [k for k in range(len(self.devices)) if k not in self._dead]
            if not alive:
                m, b = run_plan(plan.subset(positions), self.bars, self.evaluator.funding, self.evaluator.block_end,
                               threads=self.cpu_threads)
                self._store(metrics, blocks, positions, m, b)
                continue
            weights = [self.weights.values[k] for k in alive]
            counts = split_counts(len(positions), weights if sum(weights) > 0 else [1.0] * len(alive))
            parts = np.split(positions, np.cumsum(counts)[:-1])
            # one device reads the plan as it is (its rows are not copied into signal order); several
            # get the signals and lines of their own part only
            futures = [(k, part, self._pool.submit(self._run_on, k, plan, part) if len(alive) == 1 else
                        self._pool.submit(self._run_on, k, plan.subset(part)))
                       for k, part in zip(alive, parts) if len(part)]
            for k, part, future in futures:
                try:
                    m, b = future.result()
                except Exception as exc:  # noqa: BLE001 - any device error: drop it, rerun its combos
                    self._fail(k, exc)
                    todo.append(part)
                    continue
                self._store(metrics, blocks, part, m, b)
        return ChunkResult(plan.ids, metrics, plan.status.copy(), dict(plan.errors), blocks, warnings=plan.warnings)

    def _run_on(self, k: int, plan: Plan, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Metrics and block moments of the combos at ``positions`` (row for row), else of every
        combo of ``plan``, on device ``k``."""
        runner = self._runners.get(k)
        if runner is None:
            runner = self._runners[k] = self.runner_factory(self.devices[k], self.bars, self.evaluator.funding,
                                                            self.evaluator.block_end)
        return runner.run(plan) if positions is None else runner.run(plan, positions)

    @staticmethod
    def _store(metrics: np.ndarray, blocks: np.ndarray | None, positions: np.ndarray, m: np.ndarray,
               b: np.ndarray | None) -> None:
        metrics[positions] = m
        if blocks is not None and b is not None:
            blocks[positions] = b

    def _fail(self, k: int, exc: BaseException) -> None:
        self._dead.add(k)
        device = self.devices[k]
        alive = [self.devices[j] for j in range(len(self.devices)) if j not in self._dead]
        handed = ", ".join(f"GPU {d.index}" for d in alive) if alive else "the CPU"
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        self.failures.append(DeviceFailure(device, text, handed))
        log.warning("GPU %d (%s) failed, its combos go to %s: %s", device.index, device.name, handed, text,
                    exc_info=exc)
        runner = self._runners.pop(k, None)
        close = getattr(runner, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - a broken device may not even free its arrays
                pass

    def describe(self) -> dict[str, Any]:
        """Devices, weights and failures (for logs and the manifest)."""
        return {"devices": [d.to_dict() for d in self.devices], "weights": list(self.weights.values),
                "weights_source": self.weights.source, "weights_note": self.weights.note,
                "failures": [{"device": f.device.index, "error": f.error, "handed_to": f.handed_to}
                             for f in self.failures]}

    def close(self) -> None:
        """Stop the device threads and free the device arrays."""
        self._pool.shutdown(wait=True)
        for runner in self._runners.values():
            close = getattr(runner, "close", None)
            if close is not None:
                close()
        self._runners.clear()
