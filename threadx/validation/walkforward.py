"""Walk-forward optimisation (SPEC §7): optimise on each in-sample window, trade the
winner on the next out-of-sample window, stitch the OOS windows into one record.

Indicators and signals are computed once per combo on the whole history and the kernel
runs on slices of those arrays. A signal at bar ``i`` uses data up to ``i`` only (the
indicators are causal), so the bars before a window serve as warm-up and no bar after
it is ever read. Every window's backtest starts flat with the initial capital; the
stitched OOS record chains the OOS backtests of the winners, each starting with the
equity the previous one ended with.

Every sampled combo is evaluated in every window, IS and OOS (fast kernel), and once on
the whole period with its per-block returns, which feed the IS-vs-OOS scatter, the
full-period optimum shown beside the stitched equity, and PBO.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from threadx import aot
from threadx.config import DEFAULT_MIN_TRADES, DEFAULT_SEED, DEFAULT_WF_SAMPLES
from threadx.data.bars import Bars, as_bars
from threadx.data.grid import span_bars
from threadx.requests import DatasetRef
from threadx.data.timeframe import bars_per_year, timeframe_seconds
from threadx.engine import kernel
from threadx.engine.inputs import KernelInputs, frozen, options_from
from threadx.engine.layout import METRIC_NAMES, N_TRADE_COLS, P_INITIAL_CAPITAL, P_SPAN_BARS
from threadx.engine.metrics import metrics_from_equity, per_bar_returns
from threadx.engine.result import Result, full_result, trades_frame
from threadx.errors import ParamError, whole
from threadx.optimize.budget import Budget, advice, estimate_memory, fits
from threadx.optimize.evaluate import Evaluator, SweepTask
from threadx.optimize.outcome import failure_text
from threadx.optimize.runner import Progress, _cancel_check, default_workers
from threadx.optimize.samplers import SAMPLERS, grid_ids, monte_carlo_ids
from threadx.optimize.shared import PreparedIndicators, indicator_requests, prepare_requests
from threadx.optimize.space import SearchSpace, declared_space
from threadx.strategy.base import get_strategy
from threadx.timings import Stopwatch
from threadx.units import format_duration
from threadx.validation.common import json_safe, to_python

_METRIC = {name: k for k, name in enumerate(METRIC_NAMES)}
DEFAULT_WF_GRID_LIMIT = 200_000  # every combo runs in every window: keep grids moderate


@dataclass(frozen=True)
class Window:
    """Bar positions of one walk-forward window (ends exclusive).

    The IS window is ``[is_start, is_end)`` without the embargoed stretches ``is_gaps``
    (``(start, stop)`` pairs inside it); it ends ``purge`` bars before ``oos_start``
    (``is_end == oos_start`` without a purge)."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int
    is_gaps: tuple = ()  # embargoed (start, stop) stretches left out of the IS window

    @property
    def is_bar_count(self) -> int:
        """Bars of the IS window that are used (embargoed stretches left out)."""
        return self.is_end - self.is_start - sum(hi - lo for lo, hi in self.is_gaps)

    def is_segments(self) -> list[tuple[int, int]]:
        """The IS window's used stretches ``(start, stop)``, in order (one without embargo)."""
        segments, lo = [], self.is_start
        for gap_lo, gap_hi in self.is_gaps:
            if gap_lo > lo:
                segments.append((lo, gap_lo))
            lo = gap_hi
        if self.is_end > lo:
            segments.append((lo, self.is_end))
        return segments


def plan_windows(n_bars: int, is_bars: int, oos_bars: int, step_bars: int | None = None,
                 anchored: bool = False, purge: int = 0, embargo: int = 0) -> list[Window]:
    """Windows over ``n_bars``: the first OOS window starts after ``is_bars``, each next one
    ``step_bars`` later (default: ``oos_bars``, so the OOS windows tile without overlap);
    rolling IS windows keep ``is_bars``, anchored ones start at bar 0. Only complete OOS
    windows are used; the tail after the last one is left out.

    Purge and embargo (López de Prado) leave the OOS windows where they are and take bars
    out of the IS windows: ``purge`` bars at the end of each IS window (the gap
    ``[is_end, oos_start)``), so no IS bar sits right before its OOS window; ``embargo`` bars
    right after each OOS window are left out of every later IS window that covers them
    (anchored windows, or rolling ones longer than the step). 0 and 0 plan today's windows."""
    whole(is_bars, "in-sample length", 2, unit="bars")
    whole(oos_bars, "out-of-sample length", 2, unit="bars")
    purge = whole(purge, "purge", 0, unit="bars")
    embargo = whole(embargo, "embargo", 0, unit="bars")
    if is_bars - purge < 2:
        raise ParamError(f"purge {purge} leaves fewer than 2 of the {is_bars} IS bars; "
                         f"use a purge below {is_bars - 1} bars or longer IS windows")
    step = oos_bars if step_bars is None else step_bars
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < oos_bars:
        raise ParamError(f"step must be a whole number of bars >= the OOS length ({oos_bars}), got {step!r}: "
                         "a shorter step makes OOS windows overlap and the stitched record ambiguous")
    windows: list[Window] = []
    oos_start = int(is_bars)
    while oos_start + oos_bars <= n_bars:
        is_start = 0 if anchored else oos_start - int(is_bars)
        is_end = oos_start - purge
        gaps = _embargoed(windows, is_start, is_end, embargo)
        win = Window(len(windows), is_start, is_end, oos_start, oos_start + int(oos_bars), gaps)
        if win.is_bar_count < 2:
            raise ParamError(f"embargo {embargo} leaves {win.is_bar_count} IS bars in window {win.index}; "
                             "use a shorter embargo")
        windows.append(win)
        oos_start += int(step)
    if not windows:
        raise ParamError(f"no walk-forward window fits in {n_bars} bars: IS {is_bars} + OOS {oos_bars} bars "
                         "are needed; shorten the windows or load more data")
    return windows


def _embargoed(earlier: list[Window], is_start: int, is_end: int, embargo: int) -> tuple:
    """The stretches ``[oos_end, oos_end + embargo)`` of the ``earlier`` windows inside
    ``[is_start, is_end)``, merged and in order."""
    if not embargo:
        return ()
    gaps: list[list[int]] = []
    for win in earlier:
        lo, hi = max(win.oos_end, is_start), min(win.oos_end + embargo, is_end)
        if lo >= hi:
            continue
        if gaps and lo <= gaps[-1][1]:
            gaps[-1][1] = max(gaps[-1][1], hi)
        else:
            gaps.append([lo, hi])
    return tuple((lo, hi) for lo, hi in gaps)


_MAX_WINDOW_DAYS = 36_500


def window_lengths(timeframe: str | None, *, is_bars: int | None = None, is_days: float | None = None,
                   oos_bars: int | None = None, oos_days: float | None = None, step_bars: int | None = None,
                   step_days: float | None = None) -> tuple[int, int, int | None]:
    """(IS, OOS, step) in bars from bars or days (one of each pair; step optional)."""
    def pick(bars: Any, days: Any, name: str, required: bool) -> int | None:
        if bars is not None and days is not None:
            raise ParamError(f"give {name} in bars or in days, not both")
        if days is not None:
            if not timeframe:
                raise ParamError(f"{name} in days needs a known timeframe; give it in bars")
            try:
                days = float(days)
            except (TypeError, ValueError):
                raise ParamError(f"{name}_days must be a number, got {days!r}") from None
            if not math.isfinite(days) or days <= 0 or days > _MAX_WINDOW_DAYS:
                raise ParamError(f"{name}_days must be > 0 and at most {_MAX_WINDOW_DAYS:,} (a century), got {days!r}")
            bars = int(round(days * 86400 / timeframe_seconds(timeframe)))
            if bars < 2 and name != "step":  # (it read "must be a whole number of bars >= 2, got 0": 3 days of 1w bars)
                raise ParamError(f"{name}_days {days:g} is {bars} {timeframe} bar(s): a window needs at least 2; give "
                                 f"at least two bars' time ({format_duration(2 * timeframe_seconds(timeframe))})")
            return bars
        if bars is None and required:
            raise ParamError(f"give the {name} window length ({name}_bars or {name}_days)")
        return bars

    return (pick(is_bars, is_days, "is", True), pick(oos_bars, oos_days, "oos", True),
            pick(step_bars, step_days, "step", False))


def planned_windows(bars: Bars, *, is_bars: int | None = None, is_days: float | None = None,
                    oos_bars: int | None = None, oos_days: float | None = None, step_bars: int | None = None,
                    step_days: float | None = None, anchored: bool = False, purge: int = 0,
                    embargo: int = 0) -> tuple[list[Window], tuple[int, int, int | None]]:
    """(windows, (IS, OOS, step) lengths in bars) that :func:`walk_forward` runs over ``bars``
    (lengths in bars or days, see :func:`window_lengths` and :func:`plan_windows`); ParamError as it
    words it (windows given in days say how days become bars)."""
    is_len, oos_len, step_len = window_lengths(bars.timeframe, is_bars=is_bars, is_days=is_days, oos_bars=oos_bars,
                                               oos_days=oos_days, step_bars=step_bars, step_days=step_days)
    try:
        windows = plan_windows(len(bars), is_len, oos_len, step_len, anchored, purge, embargo)
    except ParamError as exc:
        if is_days is None and oos_days is None:
            raise
        per_day = 86400 / timeframe_seconds(bars.timeframe)  # (days are counted round the clock)
        raise ParamError(f"{exc} (days become bars at {per_day:g} {bars.timeframe} bars a day, round the clock: "
                         "data in sessions holds fewer)") from None
    return windows, (is_len, oos_len, step_len)


@dataclass
class WalkForwardResult:
    """Everything a walk-forward produced; arrays are indexed [window, combo, metric]."""

    config: dict[str, Any]
    windows: list[Window]
    table: pd.DataFrame  # one row per window: times, winner, its IS/OOS metrics, regime
    combos: pd.DataFrame  # combo_id and params of every evaluated combo (row k = combo k)
    full_metrics: np.ndarray  # (N, M) whole period
    is_metrics: np.ndarray  # (W, N, M)
    oos_metrics: np.ndarray  # (W, N, M)
    blocks: np.ndarray  # (N, B, 2) whole-period per-block return sums and squares
    block_end: np.ndarray
    oos_equity: pd.Series  # stitched OOS equity
    oos_trades: pd.DataFrame  # stitched OOS trades (column "window")
    oos_summary: dict[str, Any]  # SPEC §5 metrics of the stitched record
    benchmark_equity: pd.Series  # the full-period optimum traded over the OOS span
    benchmark_params: dict[str, Any]
    efficiency: float  # mean OOS Sharpe / mean IS Sharpe of the window winners
    consistency: float  # share of all OOS windows with a positive return (flat windows count as not positive)
    drift: pd.DataFrame  # per param: values across windows and their spread
    errors: dict[int, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    evaluator: Any = field(default=None, repr=False)  # runs more combos on the same data (stability)

    def failure_note(self) -> str | None:
        """The combos that failed and were left out (the winners, DSR and PBO are over the others),
        with the most frequent error; None when none failed."""
        if not self.errors:
            return None
        common = pd.Series(list(self.errors.values())).value_counts()
        return (f"{len(self.errors):,} of {len(self.combos):,} combos failed and were left out of "
                f"the windows, the deflated Sharpe and the PBO; the most frequent error ({int(common.iloc[0]):,}): "
                f"{common.index[0]}")

    def idle_note(self) -> str | None:
        """The windows whose in-sample part no combo qualified in (fewer than ``min_trades``
        trades), so that their OOS stayed flat; None when every window had a winner. All of
        them: the stitched record is flat, its return 0 and its grade F from no trade at all."""
        if "combo_id" not in self.table or self.table.empty:
            return None
        idle = self.table["combo_id"].isna()
        if "liquidated_before" in self.table:
            idle &= ~self.table["liquidated_before"]
        n, total = int(idle.sum()), len(self.table)
        if not n:
            return None
        why = (f"no combo had at least {self.config['min_trades']:,} in-sample trades and a finite objective"
               if self.config.get("min_trades") else "no combo had a finite in-sample objective")
        if n == total:
            return (f"No window had a winner ({why}): the out-of-sample record is flat and its figures (0 return, "
                    "grade F) measure nothing; use longer windows or a lower min trades")
        return f"{n:,} of {total:,} windows had no winner ({why}): the record is flat through their OOS part"

    @property
    def objective(self) -> str:
        return self.config["objective"]

    def metric(self, name: str, sample: str = "oos") -> np.ndarray:
        """(windows, combos) values of one metric, ``sample`` = "is" or "oos"."""
        if name not in _METRIC:
            raise ParamError(f"unknown metric {name!r}")
        cube = {"is": self.is_metrics, "oos": self.oos_metrics}[sample]
        return cube[:, :, _METRIC[name]]

    def oos_returns(self) -> np.ndarray:
        """Per-bar returns of the stitched OOS record."""
        return per_bar_returns(self.oos_equity, self.config["initial_capital"])

    def is_oos_points(self, metric: str | None = None) -> pd.DataFrame:
        """One row per (window, combo) with IS and OOS values of ``metric`` (scatter data)."""
        metric = metric or self.objective
        is_v, oos_v = self.metric(metric, "is"), self.metric(metric, "oos")
        w, n = is_v.shape
        winners = self.table["combo_id"].to_numpy()
        combo_ids = self.combos["combo_id"].to_numpy()
        return pd.DataFrame({
            "window": np.repeat(np.arange(w), n),
            "combo_id": np.tile(combo_ids, w),
            "is": is_v.ravel(),
            "oos": oos_v.ravel(),
            "selected": (np.tile(combo_ids, w) == np.repeat(winners, n)),
        })

    def combo_summary(self) -> pd.DataFrame:
        """Per combo across windows: mean IS/OOS objective and Sharpe, OOS consistency,
        windows won, and its whole-period objective."""
        obj = self.objective
        with np.errstate(all="ignore"):
            frame = self.combos.copy()
            frame[f"is_{obj}"] = np.nanmean(self.metric(obj, "is"), axis=0)
            frame[f"oos_{obj}"] = np.nanmean(self.metric(obj, "oos"), axis=0)
            frame["is_sharpe"] = np.nanmean(self.metric("sharpe", "is"), axis=0)
            frame["oos_sharpe"] = np.nanmean(self.metric("sharpe", "oos"), axis=0)
            frame["oos_consistency"] = np.mean(self.metric("total_return", "oos") > 0, axis=0)
        wins = pd.Series(self.table["combo_id"]).value_counts()
        frame["windows_won"] = frame["combo_id"].map(wins).fillna(0).astype(int)
        frame[f"full_{obj}"] = self.full_metrics[:, _METRIC[obj]]
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no per-combo arrays)."""
        return json_safe({
            "config": self.config,
            "windows": self.table.to_dict(orient="records"),
            "efficiency": self.efficiency,
            "consistency": self.consistency,
            "oos_summary": self.oos_summary,
            "benchmark_params": self.benchmark_params,
            "drift": self.drift.to_dict(orient="records"),
            "meta": self.meta,
            "failed_combos": len(self.errors),
        })


def walk_forward(
    df: pd.DataFrame | Bars,
    strategy: str,
    space: Mapping[str, Any] | None = None,
    *,
    is_bars: int | None = None,
    is_days: float | None = None,
    oos_bars: int | None = None,
    oos_days: float | None = None,
    step_bars: int | None = None,
    step_days: float | None = None,
    anchored: bool = False,
    purge: int = 0,
    embargo: int = 0,
    sampler: str = "random",
    n: int = DEFAULT_WF_SAMPLES,
    seed: int = DEFAULT_SEED,
    objective: str = "sharpe",
    maximize: bool = True,
    min_trades: int = DEFAULT_MIN_TRADES,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Any = None,
    bank: Any = None,
    grid_limit: int = DEFAULT_WF_GRID_LIMIT,
    n_blocks: int = 32,
    memory_budget: int | str | None = None,
    stopwatch: Stopwatch | None = None,
    **engine_options: Any,
) -> WalkForwardResult:
    """Walk-forward optimisation of ``strategy`` over ``space`` on ``df``.

    Window lengths in bars or days (``is_*``, ``oos_*``, optional ``step_*`` >= OOS;
    ``anchored`` IS windows start at the first bar). ``purge`` bars at the end of each IS
    window and ``embargo`` bars after each OOS window are left out of the IS windows (see
    :func:`plan_windows`; 0 and 0 keep every IS bar). ``sampler`` grid | random | lhs |
    sobol draws the combos (``n`` for Monte Carlo) once; all of them run in every window.
    Without ``space``, the ranges the strategy declares for optimisation are used.
    The IS winner of a window is the best ``objective`` (``maximize``) among combos with at
    least ``min_trades`` IS trades. ``cancel`` (Event or callable) stops between two
    combos: the result then covers the combos finished so far (``meta["cancelled"]``).
    Engine options are those of :func:`threadx.backtest`. Every indicator of the combos is
    prepared at once: a plan over ``memory_budget`` (see :func:`threadx.sweep`) is refused.
    ``meta["timings"]``: where the time went (validation, plan, indicators, run, report, and
    the workers' signal and kernel seconds; :mod:`threadx.timings`); a ``stopwatch`` started
    by the caller (who timed the ``load``) is carried on.
    """
    watch = stopwatch or Stopwatch()
    started = watch.started
    with watch.stage("validation"):
        bars = as_bars(df)
        spec = get_strategy(strategy)
        space = declared_space(spec) if space is None else space
        search = SearchSpace(spec, space)
        if objective not in _METRIC:
            raise ParamError(f"unknown objective {objective!r}; metrics: {', '.join(METRIC_NAMES)}")
        if sampler not in SAMPLERS or sampler == "adaptive":
            raise ParamError(f"walk-forward sampler must be grid, random, lhs or sobol, got {sampler!r}")
        whole(min_trades, "min_trades")
        whole(n_blocks, "n_blocks", 1)  # the windows' figures are summed from the time blocks
        if workers is not None:
            whole(workers, "workers", 1)
        options = options_from(**engine_options)
    with watch.stage("plan"):
        windows, (is_len, oos_len, step_len) = planned_windows(
            bars, is_bars=is_bars, is_days=is_days, oos_bars=oos_bars, oos_days=oos_days, step_bars=step_bars,
            step_days=step_days, anchored=anchored, purge=purge, embargo=embargo)
        if sampler == "grid":
            ids = np.concatenate([chunk for chunk, _ in grid_ids(search, limit=grid_limit)]
                                 or [np.empty(0, np.int64)])
        else:
            ids = monte_carlo_ids(search, sampler, whole(n, "n", 1), whole(seed, "seed")).ids
        if len(ids) == 0:
            raise ParamError("no valid combo in the space (every combo breaks a constraint)")

    with watch.stage("indicators"):
        if bank is None:
            from threadx.indicators import default_bank

            bank = default_bank()
        arrays = prepare_requests(_within_budget(search, bars, ids, bank, memory_budget), bars, bank)
        task = SweepTask.of(spec, dict(space or {}), options, n_blocks)
        evaluator = Evaluator(task, bars, PreparedIndicators(arrays.get))
    with watch.stage("run"):
        evaluated = _evaluate_all(evaluator, search, ids, windows, int(workers or default_workers()),
                                  _cancel_check(cancel), progress, started, watch)
    done, full, blocks, is_m, oos_m, errors = evaluated
    if not len(done):
        raise ParamError("walk-forward cancelled before any combo finished")
    if len(errors) == len(done):  # nothing to select or validate: say why rather than what is missing
        common = pd.Series(list(errors.values())).value_counts()
        raise ParamError(f"every combo of the walk-forward failed ({len(done):,}); the most frequent error "
                         f"({int(common.iloc[0]):,} combos): {common.index[0]}")
    with watch.stage("report"):
        combos = pd.DataFrame({"combo_id": done, **search.columns(done)})
        config = {
            "strategy": spec.name, "strategy_code": spec.code_hash, "space": search.to_dict(), "is_bars": is_len,
            "oos_bars": oos_len,
            "step_bars": step_len or oos_len, "anchored": bool(anchored), "purge": int(purge), "embargo": int(embargo),
            "sampler": sampler,
            "n": int(n) if sampler != "grid" else None, "seed": int(seed), "objective": objective,
            "maximize": bool(maximize), "min_trades": int(min_trades), "engine": options.to_dict(),
            "initial_capital": options.initial_capital, "bars_per_year": bars_per_year(bars.timeframe),
        }
        result = _assemble(evaluator, bars, windows, combos, full, blocks, is_m, oos_m, config, errors)
        result.meta.update({
            "dataset": bars.name, "fingerprint": bars.fingerprint, "timeframe": bars.timeframe, "bars": len(bars),
            "data": DatasetRef.of(df, bars=bars).to_dict(),
            "combos_planned": int(len(ids)), "combos_done": int(len(done)),
            "cancelled": bool(len(done) < len(ids)),
        })
    result.meta.update({"elapsed_s": watch.wall() - watch.stages.get("load", 0.0), "timings": watch.record()})
    return result


def _within_budget(search: SearchSpace, bars: Bars, ids: np.ndarray, bank: Any, memory_budget: Any) -> dict:
    """The indicator requests of ``ids``; ParamError when preparing them all would not fit the
    memory budget (estimated before any is computed, see :mod:`threadx.optimize.budget`)."""
    requests = indicator_requests(search, [ids])
    budget = Budget.resolve(memory_budget)
    est = estimate_memory(requests, len(bars), 0, bank, len(ids), shared=False)  # threads in this process
    if not fits(est, budget):
        raise ParamError(advice(est, budget, search, "and a walk-forward prepares every indicator at once",
                                what="walk-forward"))
    return requests


def _params_of(args: KernelInputs, span: float, capital: float | None = None) -> np.ndarray:
    """``args``' param vector for a part of the history spanning ``span`` bars (its CAGR's years)."""
    p = args.params.copy()
    p[P_SPAN_BARS] = span
    if capital is not None:
        p[P_INITIAL_CAPITAL] = capital
    return frozen(p)  # read-only like every kernel input (a writable one compiled the bar loop again: 70 s)


def _slice_args(args: KernelInputs, start: int, stop: int, bars: Bars, capital: float | None = None) -> KernelInputs:
    """Kernel arguments restricted to bars [start, stop) of ``bars``; placeholders (length 1) kept."""
    n = args.close.shape[0]
    out = [a[start:stop] if a.shape[0] == n else a for a in args.arrays]
    return KernelInputs(*out, _params_of(args, span_bars(bars.time_ns[start:stop], bars.timeframe), capital))


def _is_args(args: KernelInputs, win: Window, bars: Bars) -> KernelInputs:
    """Kernel arguments of the IS window of ``win``: a slice, or, with embargoed stretches,
    its used stretches joined (the kernel sees the cut like a gap in the data; the years of its
    CAGR are those of the stretches)."""
    if not win.is_gaps:
        return _slice_args(args, win.is_start, win.is_end, bars)
    n = args.close.shape[0]
    segments = win.is_segments()
    keep = np.concatenate([np.arange(lo, hi) for lo, hi in segments])
    span = sum(span_bars(bars.time_ns[lo:hi], bars.timeframe) for lo, hi in segments)
    # read-only like every kernel input: a writable copy would compile the bar loop once more
    return KernelInputs(*[frozen(a[keep]) if a.shape[0] == n else a for a in args.arrays], _params_of(args, span))


def oos_result(evaluator: Evaluator, params: Mapping[str, Any], win: Window, capital: float) -> Result:
    """The full backtest of ``params`` on the OOS bars of ``win``, starting with ``capital``.
    Trade positions (``entry_i`` / ``exit_i``) count from the window start, ``meta["offset"]``."""
    bars = evaluator.bars
    args = _slice_args(evaluator.kernel_inputs(params), win.oos_start, win.oos_end, bars, capital)
    meta = {"strategy": evaluator.spec.name, "timeframe": bars.timeframe, "window": win.index,
            "offset": win.oos_start, "options": {"initial_capital": capital}}
    return full_result(args, bars.index[win.oos_start:win.oos_end], bars.timeframe, params, meta)


def _evaluate_all(evaluator: Evaluator, search: SearchSpace, ids: np.ndarray, windows: list[Window], workers: int,
                  should_stop: Callable[[], bool], progress: Callable[[Progress], None] | None, started: float,
                  watch: Stopwatch | None = None):
    """Run every combo on the whole period and on every IS and OOS window (threads; the
    kernel releases the GIL). Returns the finished combos only when cancelled. ``watch``
    gets each chunk's seconds of signals and kernel (summed over the threads)."""
    n, w, m = len(ids), len(windows), len(METRIC_NAMES)
    n_blocks = len(evaluator.block_end)
    full = np.full((n, m), np.nan)
    blocks = np.full((n, n_blocks, 2), np.nan)
    is_m = np.full((w, n, m), np.nan)
    oos_m = np.full((w, n, m), np.nan)
    finished = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    names = search.names
    cols = search.columns(ids)

    def run(lo: int, hi: int) -> None:
        signals = 0.0  # each combo's signals are made, then its 2W+1 backtests run: two clock reads per combo
        chunk_start = time.perf_counter()
        for k in range(lo, hi):
            if should_stop():  # (per combo, not per chunk: a chunk of 14-window combos ran for seconds)
                break
            params = {name: to_python(cols[name][k]) for name in names}
            try:
                before = time.perf_counter()
                args = evaluator.kernel_inputs(params)
                signals += time.perf_counter() - before
                full[k], blocks[k] = aot.call(kernel.run_fast_blocks, *args, evaluator.block_end)
                for j, win in enumerate(windows):
                    is_m[j, k] = aot.call(kernel.run_fast, *_is_args(args, win, evaluator.bars))
                    oos_args = _slice_args(args, win.oos_start, win.oos_end, evaluator.bars)
                    oos_m[j, k] = aot.call(kernel.run_fast, *oos_args)
            except Exception as exc:  # recorded per combo; the walk-forward goes on
                errors[int(ids[k])] = failure_text(exc)  # (with a strategy file's line, as a sweep's rows)
                full[k] = np.nan
                is_m[:, k] = np.nan
                oos_m[:, k] = np.nan
            finished[k] = True
        if watch is not None:
            chunk = time.perf_counter() - chunk_start
            watch.add_workers({"signals": signals, "kernel": chunk - signals})

    size = int(max(8, min(256, n // max(1, 8 * workers))))
    bounds = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    last = [0.0]

    def report(force: bool = False) -> None:
        now = time.perf_counter()
        if progress is None or (not force and now - last[0] < 0.2):
            return
        last[0] = now
        done = int(finished.sum())
        progress(Progress.measure(done, n, len(errors), done, now - started))

    report(force=True)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="threadx-wf") as pool:
        pending = []
        for lo, hi in bounds:
            if should_stop():
                break
            pending.append(pool.submit(run, lo, hi))
            while len(pending) >= 2 * workers:
                pending.pop(0).result()
                report()
        for job in pending:
            job.result()
            report()
    report(force=True)
    keep = finished
    return ids[keep], full[keep], blocks[keep], is_m[:, keep], oos_m[:, keep], errors


def _select(values: np.ndarray, trades: np.ndarray, maximize: bool, min_trades: int) -> int | None:
    """Index of the best value among rows with enough trades, or None. An infinite best
    (e.g. profit factor without a loss) ranks first, as in ``SweepRun.top``."""
    ok = ~np.isnan(values) & (values != (-np.inf if maximize else np.inf)) & (trades >= min_trades)
    if not ok.any():
        return None
    masked = np.where(ok, values, -np.inf if maximize else np.inf)
    return int(np.argmax(masked) if maximize else np.argmin(masked))


def _assemble(evaluator: Evaluator, bars: Bars, windows: list[Window], combos: pd.DataFrame, full: np.ndarray,
              blocks: np.ndarray, is_m: np.ndarray, oos_m: np.ndarray, config: dict[str, Any],
              errors: dict[int, str]) -> WalkForwardResult:
    from threadx.validation.regimes import classify_regime

    obj, maximize, min_trades = _METRIC[config["objective"]], config["maximize"], config["min_trades"]
    trades_k = _METRIC["n_trades"]
    names = [c for c in combos.columns if c != "combo_id"]
    index = bars.index
    capital = float(config["initial_capital"])
    rows, equities, trade_frames = [], [], []
    for win in windows:
        pick = _select(is_m[win.index, :, obj], is_m[win.index, :, trades_k], maximize, min_trades)
        regime = classify_regime(bars.close[win.oos_start:win.oos_end], bars.time_ns[win.oos_start:win.oos_end])
        row: dict[str, Any] = {
            "window": win.index, "is_start": index[win.is_start], "is_end": index[win.is_end - 1],
            "oos_start": index[win.oos_start], "oos_end": index[win.oos_end - 1],
            "is_bars": win.is_bar_count, "oos_bars": win.oos_end - win.oos_start,
            "regime": regime.regime, "regime_return": regime.return_pct / 100.0,
            "regime_max_drawdown": regime.max_drawdown,
            "combo_id": None,
        }
        oos_index = index[win.oos_start:win.oos_end]
        if capital <= 0.0:  # liquidated in an earlier window: nothing left to trade
            row["liquidated_before"] = True
            equities.append(pd.Series(0.0, index=oos_index))
        elif pick is None:  # no combo qualifies: stay flat through this OOS window
            equities.append(pd.Series(capital, index=oos_index))
        else:
            params = params_at(combos, pick, names)
            oos_run = oos_result(evaluator, params, win, capital)
            trades = oos_run.trades
            trades["entry_i"] += win.oos_start
            trades["exit_i"] += win.oos_start
            trades.insert(0, "window", win.index)
            trade_frames.append(trades)
            equities.append(oos_run.equity)
            capital = float(oos_run.equity.iloc[-1])
            row.update({"combo_id": int(combos.iloc[pick]["combo_id"]), **params})
            oos = oos_run.metrics
            for name in ("sharpe", "total_return", "max_drawdown", "n_trades", config["objective"]):
                value = float(is_m[win.index, pick, _METRIC[name]])
                row[f"is_{name}"] = int(value) if name == "n_trades" else value
                row[f"oos_{name}"] = oos[name]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["combo_id"] = table["combo_id"].astype("Int64")
    if "liquidated_before" in table:
        table["liquidated_before"] = table["liquidated_before"].fillna(False).astype(bool)
    oos_equity = pd.concat(equities).rename("equity")
    oos_trades = (pd.concat(trade_frames, ignore_index=True) if trade_frames
                  else trades_frame(np.empty((0, N_TRADE_COLS)), index).assign(window=0))
    # the years of its CAGR: those of its windows (a step longer than the OOS windows leaves time between
    # them that the record never traded: counted, -65.9 % a year read -35.0 %)
    spanned = sum(span_bars(bars.time_ns[w.oos_start:w.oos_end], bars.timeframe) for w in windows)
    summary = metrics_from_equity(oos_equity.to_numpy(), oos_trades, float(config["initial_capital"]),
                                  float(config["bars_per_year"]), span_bars=spanned)
    chosen = table.dropna(subset=["combo_id"])
    if len(chosen):
        mean_is, mean_oos = float(chosen["is_sharpe"].mean()), float(chosen["oos_sharpe"].mean())
        efficiency = mean_oos / mean_is if mean_is > 0 else float("nan")
    else:
        efficiency = float("nan")
    # every window counts: one without a qualifying combo stayed flat, so it is not positive
    consistency = float((table.get("oos_total_return", pd.Series(dtype=float)) > 0).sum() / len(table))

    best = _select(full[:, obj], full[:, trades_k], maximize, min_trades)
    span = slice(windows[0].oos_start, windows[-1].oos_end)
    if best is None:
        benchmark_params: dict[str, Any] = {}
        benchmark = pd.Series(float(config["initial_capital"]), index=index[span], name="equity")
    else:
        benchmark_params = params_at(combos, best, names)
        args = _slice_args(evaluator.kernel_inputs(benchmark_params), span.start, span.stop, bars)
        benchmark = full_result(args, index[span], bars.timeframe, benchmark_params).equity
    return WalkForwardResult(
        config=config, windows=windows, table=table, combos=combos, full_metrics=full, is_metrics=is_m,
        oos_metrics=oos_m, blocks=blocks, block_end=evaluator.block_end, oos_equity=oos_equity,
        oos_trades=oos_trades, oos_summary=summary, benchmark_equity=benchmark, benchmark_params=benchmark_params,
        efficiency=efficiency, consistency=consistency, drift=_drift(table, evaluator.space), errors=errors,
        evaluator=evaluator,
    )


def _drift(table: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """Per varying param: the winners' values across windows, distinct count, and the
    spread (std) relative to the param's range in the space (0 = never moved)."""
    rows = []
    chosen = table.dropna(subset=["combo_id"])
    for axis in space.axes:
        if len(axis) < 2 or axis.name not in chosen:
            continue
        values = chosen[axis.name].tolist()
        row = {"param": axis.name, "values": values, "distinct": len(set(values)), "relative_spread": float("nan")}
        if isinstance(axis.values[0], (int, float)) and not isinstance(axis.values[0], bool) and len(values) > 1:
            span = float(max(axis.values) - min(axis.values))
            row["relative_spread"] = float(np.std(np.asarray(values, dtype=float), ddof=1) / span) if span else 0.0
        rows.append(row)
    return pd.DataFrame(rows, columns=["param", "values", "distinct", "relative_spread"])


def params_at(combos: pd.DataFrame, position: int, names: list[str]) -> dict[str, Any]:
    """The params of the combo at ``position``, each of its column's own type (a row of a frame
    of int and float columns is all floats: an int param would reach the strategy as 20.0)."""
    return {k: to_python(combos[k].iloc[position]) for k in names}
