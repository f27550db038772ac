"""A sweep's rows re-run one by one, as ``threadx.backtest`` runs a param set.

A sweep computes each distinct indicator and signal array once and runs every combo that
shares them from the same arrays, grouped by what the params declare they feed. A wrong
declaration (a param said to feed only the exits that also changes the signals, at some of
its values) merges combos that differ, and their rows are wrong. The role check before the
sweep perturbs the params around a few combos only, so a sweep also keeps a seeded sample of
the rows it made (:class:`RowSample`) and, once they are all made, runs each sampled combo on
its own, with its own signals (:func:`spot_check`): a row that differs is said in the run's
warnings, naming the combo, the metric and both values.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from threadx.engine.layout import METRIC_NAMES
from threadx.optimize.evaluate import STATUS_OK, ChunkResult, Evaluator, SweepTask

SAMPLED_ROWS = 24  # rows re-run at the end of a sweep: ~0.1 s on 12,500 bars, whatever the sweep's size
# a row merged by a wrong role differs in its trades, far beyond these; the CPU's rows are its backtests' bit
# for bit, the GPU's to 1e-9 (SPEC §8), near-zero figures (a Sharpe of 1e-7) a little further
_RTOL, _ATOL = 1e-7, 1e-10


class RowSample:
    """A uniform sample of at most ``size`` of the rows a sweep made (reservoir sampling,
    seeded): ids and metric rows, whatever the order the chunks come back in."""

    def __init__(self, size: int = SAMPLED_ROWS, seed: int = 0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.ids: list[int] = []
        self.rows: list[np.ndarray] = []

    def offer(self, result: ChunkResult) -> None:
        """Take the chunk's rows that ran (status ok) into the sample: the row seen n-th replaces a
        kept one with probability size / n (one draw per chunk, not one per row: 10,000 rows took
        15 ms of a 0.5 s sweep)."""
        ok = np.flatnonzero(result.status == STATUS_OK)
        fill = ok[:max(0, self.size - len(self.ids))]
        for k in fill:
            self.ids.append(int(result.ids[k]))
            self.rows.append(result.metrics[k].copy())
        rest = ok[len(fill):]
        self.seen += len(fill)
        if not len(rest):
            return
        slots = self.rng.integers(0, self.seen + 1 + np.arange(len(rest)))  # row n's draw in [0, n)
        self.seen += len(rest)
        for k, slot in zip(rest[slots < self.size].tolist(), slots[slots < self.size].tolist()):
            self.ids[slot] = int(result.ids[k])  # (in order: a later row replaces an earlier one)
            self.rows[slot] = result.metrics[k].copy()


def needs_check(spec: Any) -> bool:
    """Whether a sweep of ``spec`` re-runs its sampled rows: not for a built-in strategy, whose
    every param's role the test suite checks (tests/test_param_roles.py; the re-run would load
    the kernel into a parent process that otherwise never runs it: 0.3 s of a 1.4 s sweep)."""
    from threadx.strategy.base import builtin_names, list_registered

    return not (spec.name in builtin_names() and list_registered().get(spec.name) is spec)


def spot_check(sample: RowSample, search: Any, task: SweepTask, bars: Any, bank: Any,
               budget_s: float = float("inf")) -> str | None:
    """Run each sampled combo on its own (its signals from its own params, ``bank``'s
    indicators) and compare its metrics with its row; the first difference as a warning, or
    None when every row is its own backtest's. Rows are re-run until ``budget_s`` seconds are
    spent (one at least: a strategy whose signals take a second each is not run 24 times). A
    combo that raises here is left to the sweep's own record of it."""
    if not sample.ids:
        return None
    evaluator = Evaluator(task, bars, bank)
    started = time.perf_counter()
    for combo_id, row in zip(sample.ids, sample.rows):
        if time.perf_counter() - started > budget_s:
            break
        params = search.params(combo_id)
        try:
            alone = evaluator.run_one(params)
        except Exception:  # noqa: BLE001 - the strategy's own error: its row says it where it happened
            continue
        metrics = alone[0] if isinstance(alone, tuple) else alone
        differs = ~np.isclose(row, metrics, rtol=_RTOL, atol=_ATOL, equal_nan=True)
        if differs.any():
            k = int(np.flatnonzero(differs)[0])
            shown = ", ".join(f"{name}={value!r}" for name, value in params.items() if name in search.varying)
            return (f"combo {combo_id} ({shown}) has {METRIC_NAMES[k]} {row[k]:.10g} in the sweep but "
                    f"{metrics[k]:.10g} run on its own: the sweep shared signals between combos that differ, so "
                    f"a param's declared role (feeds) is wrong; its rows cannot be trusted. Run `threadx strategy "
                    f"check {search.strategy.name}` (its roles check), fix the declaration, then sweep again")
    return None
