"""Where a run's time went: named stages timed with ``time.perf_counter``.

A :class:`Stopwatch` times the stages of one run (``with watch.stage("kernel"):``; a stage
entered again adds up) and :meth:`Stopwatch.record` gives what a result stores (a
backtest's ``meta["timings"]``, a sweep's ``manifest["timings"]``, a walk-forward's
``meta["timings"]``)::

    {"wall_s": 1.93, "stages": {"load": 0.02, "validation": 0.01, "indicators": 1.51, ...},
     "workers": {"signals": 3.1, "kernel": 9.8}}

``stages`` are wall-clock seconds of the process that ran the run, one after the other,
so they add up to about ``wall_s``. ``workers`` (sweeps and walk-forwards only) are the
seconds the worker processes or threads spent per stage, summed over all of them: busy
CPU-seconds, not wall time (4 busy workers count 4 s per second). They are part of the
parent's ``run`` stage. :func:`hint` names a stage that dominates and what to do about it.
Stages are timed around batches of work, never inside the kernel.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

DOMINANT_SHARE = 0.6  # a stage with at least this share of the total gets a hint

STAGE_LABELS = {
    "load": "Load data",
    "validation": "Data validation",
    "plan": "Plan (combos, windows)",
    "startup": "Start workers",
    "indicators": "Indicators",
    "shared": "Shared memory copy",
    "signals": "Signal planning",
    "run": "Run combos (workers)",
    "kernel": "Kernel",
    "store": "Store results",
    "check": "Rows re-run alone (spot check)",
    "report": "Result and report",
    "robustness": "Validation report",
}

ADVICE = {
    "load": "store the data as Parquet, or load a shorter date range",
    "validation": "import the file once (threadx data import) and load the dataset by name",
    "plan": "use a Monte Carlo sampler with a smaller n, or narrow the ranges",
    "startup": "run small sweeps inline (executor='inline') or keep fewer workers",
    "indicators": "narrow the indicator params (e.g. bb_period) or reuse the cache (same data, same params)",
    "shared": "fewer distinct indicator params mean less to copy into shared memory",
    "signals": "speed up the strategy's signal code (numba helpers, numpy), or in a sweep use fewer distinct "
               "values of the params feeding signals (combos sharing them run together)",
    "run": "fewer combos, a coarser timeframe or more workers",
    "kernel": "fewer combos or windows, a coarser timeframe or more workers",
    "store": "fewer combos per run, or a faster disk for the results folder",
    "check": "a slow strategy's signals: 24 combos re-run one by one (threadx.optimize.spot_check)",
    "report": "shorter data for the full result (trades and equity); in a walk-forward, fewer windows",
    "robustness": "fewer bootstrap resamples (--bootstrap) or PBO blocks (--S)",
}


def label(stage: str) -> str:
    """The readable name of a stage (the key itself when unknown)."""
    return STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize())


class Stopwatch:
    """Times the stages of one run; its clock starts when it is made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}
        self.workers: dict[str, float] = {}
        self._open: list[list[float]] = []  # per open stage: [seconds of the stages nested in it]
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (added to what the stage already has). A stage
        opened inside another counts for itself only: the outer one gets the rest, so the
        stages never count a second twice. One thread opens stages; workers use
        :meth:`add_workers`."""
        start = time.perf_counter()
        self._open.append([0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            nested = self._open.pop()[0]
            self.add(name, elapsed - nested)
            if self._open:
                self._open[-1][0] += elapsed

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name`` (a stage first added goes last in the order)."""
        self.stages[name] = self.stages.get(name, 0.0) + float(seconds)

    def add_workers(self, stages: Mapping[str, float] | None) -> None:
        """Add worker-side seconds per stage (summed over workers; see the module doc)."""
        with self._lock:  # threads of an in-process run add theirs as they finish
            for name, seconds in (stages or {}).items():
                self.workers[name] = self.workers.get(name, 0.0) + float(seconds)

    def wall(self) -> float:
        """Seconds since the stopwatch started."""
        return time.perf_counter() - self.started

    def record(self) -> dict[str, Any]:
        """``{"wall_s", "stages"}`` (and ``"workers"`` when any), JSON-ready."""
        out: dict[str, Any] = {"wall_s": self.wall(), "stages": dict(self.stages)}
        if self.workers:
            out["workers"] = dict(self.workers)
        return out


def shares(stages: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(stage, seconds, share of the stages' sum) in the stages' order."""
    total = sum(stages.values())
    return [(name, float(sec), float(sec) / total if total > 0 else 0.0) for name, sec in stages.items()]


def _dominant(stages: Mapping[str, float]) -> tuple[str, float] | None:
    ranked = sorted(shares(stages), key=lambda row: row[2], reverse=True)
    if ranked and ranked[0][2] >= DOMINANT_SHARE:
        return ranked[0][0], ranked[0][2]
    return None


def hint(timings: Mapping[str, Any] | None) -> str | None:
    """One line when one stage took >= 60 % of the time, e.g. "indicators took 80 %: narrow
    the indicator params (e.g. bb_period) or reuse the cache (...)"; None otherwise.

    ``timings``: a :meth:`Stopwatch.record` (or a bare ``{stage: seconds}``). When the
    workers' stage ``run`` dominates, the hint names the workers' dominant stage."""
    if not timings:
        return None
    stages = timings.get("stages", timings) if isinstance(timings.get("stages"), Mapping) else timings
    top = _dominant({k: v for k, v in stages.items() if isinstance(v, (int, float))})
    if top is None:
        return None
    name, share = top
    workers = timings.get("workers") if isinstance(timings.get("workers"), Mapping) else None
    if name == "run" and workers:
        inner = _dominant(workers)
        if inner is not None:
            return (f"{label(inner[0]).lower()} took {_pct(inner[1])} of the workers' time "
                    f"(running combos: {_pct(share)} of the run): {ADVICE.get(inner[0], '')}")
    return f"{label(name).lower()} took {_pct(share)}: {ADVICE.get(name, 'no advice for this stage')}"


def _pct(share: float) -> str:
    return f"{share * 100:.0f} %"


def text_lines(timings: Mapping[str, Any] | None, width: int = 30) -> list[str]:
    """The stages as text: one line per stage (seconds, share, a bar), the workers' stages,
    the wall time and the hint. For ``threadx runs show --timings`` and ``backtest --timings``."""
    if not timings or not timings.get("stages"):
        return ["no timings recorded (run made before they were)"]
    lines = []
    rows = shares(timings["stages"])
    name_width = max(len(label(name)) for name, _, _ in rows)
    for name, sec, share in rows:
        lines.append(f"  {label(name):<{name_width}}  {sec:9.3f} s  {share * 100:5.1f} %  "
                     f"{'#' * int(round(share * width))}")
    total = sum(sec for _, sec, _ in rows)
    lines.append(f"  {'stages':<{name_width}}  {total:9.3f} s  of {timings.get('wall_s', total):.3f} s wall")
    if timings.get("workers"):
        lines.append("  workers (seconds summed over workers):")
        for name, sec, share in shares(timings["workers"]):
            lines.append(f"    {label(name):<{name_width - 2}}  {sec:9.3f} s  {share * 100:5.1f} %")
    text = hint(timings)
    if text:
        lines.append(f"hint: {text}")
    return lines
