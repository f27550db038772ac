"""Portfolio backtest: several runners share one capital on a common UTC timeline.

The capital is split by the runners' weights (equal by default): each runner trades its own
bars in its own sub-account with its strategy's sizing, through the engine's own step
(:mod:`threadx.engine.portfolio_loop`), so a portfolio of one runner is exactly that runner's
:func:`threadx.backtest`. The runners share three gates, all off by default:

- ``margin_guard``: the margin of all runners together may not pass this fraction of the
  portfolio equity (marked at the previous tick); a new leg that would pass it is skipped and
  counted (``skipped["margin_guard"]``);
- ``runner_cap``: the same for one runner's own margin (``skipped["runner_cap"]``);
- ``kill_switch``: when the portfolio equity falls this fraction below its highest mark within
  ``kill_window`` (at least one bar), no new leg is taken for ``cooldown`` from the close it fired
  at (open positions run on); each firing is listed in ``events``, refusals in
  ``skipped["kill_switch"]``. Marks from before a
  cooldown's end never fire it again.

Example::

    >>> from threadx.portfolio import portfolio_backtest
    >>> result = portfolio_backtest(["bb_atr:binance/BTC_USDT-1h", "bb_atr:binance/ETH_USDT-1h"],
    ...                             capital=10_000, margin_guard=0.7)  # doctest: +SKIP
    >>> result.metrics["total_return"], result.skipped  # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from threadx import logs
from threadx.config import STORED
from threadx.contract import SIG_ENTRIES, prepare_signals
from threadx.data.bars import as_bars, common_candles
from threadx.data.funding import funding_fingerprint, stored_funding
from threadx.data.grid import span_bars, timeframe_ns
from threadx.data.timeframe import timeframe_seconds
from threadx.engine import kernel
from threadx.engine.inputs import (EngineOptions, funding_per_bar, kernel_args, largest_first_order, options_from,
                                  stored_file_of, strategy_rules)
from threadx.engine.layout import (
    P_MIN_NOTIONAL,
    S_SKIP_CAP,
    S_SKIP_GUARD,
    S_SKIP_KILL,
    S_SKIPPED,
    S_TRADE_ROWS,
)
from threadx.engine.metrics import longest_drawdown_days, metrics_dict
from threadx.engine.portfolio_loop import EVENT_COLUMNS, TICK_COLUMNS, run_portfolio
from threadx.engine.result import check_rows_complete, trades_frame
from threadx.errors import Cancelled, ParamError, ThreadXError, first_line
from threadx.names import check_name, new_run_id
from threadx.portfolio.result import PortfolioResult, portfolio_root, save_portfolio
from threadx.portfolio.runners import Runner, parse_runner, runner_labels
from threadx.requests import DatasetRef
from threadx.strategy.base import get_strategy
from threadx.strategy.user import strategy_code_errors
from threadx.units import beside

Progress = Callable[[int, int, str], None]
DEFAULT_KILL_WINDOW = "24h"
DEFAULT_COOLDOWN = "24h"


def portfolio_backtest(runners: Sequence[Runner | str | Mapping[str, Any]], *, capital: float | None = None,
                       weights: Sequence[float] | None = None, margin_guard: float | None = None,
                       runner_cap: float | None = None, kill_switch: float | None = None,
                       kill_window: str = DEFAULT_KILL_WINDOW, cooldown: str = DEFAULT_COOLDOWN,
                       funding: str | Mapping[str, Any] | None = STORED, frames: Mapping[str, Any] | None = None,
                       portfolio_id: str | None = None, results_dir: str | os.PathLike | None = None,
                       save: bool = True, bank: Any = None, progress: Progress | None = None,
                       cancel: Any = None, memory_budget: Any = None, origin: str | None = None,
                       **engine: Any) -> PortfolioResult:
    """Backtest ``runners`` together on ``capital`` (default: the engine's initial capital).

    ``runners``: :class:`Runner` objects, ``STRATEGY:DATASET[:param=value,...]`` texts or runner
    dicts. ``weights``: one per runner (default: each runner's own weight, 1). The three gates
    (module docstring) are fractions: ``margin_guard=0.7`` is 70 % of the equity,
    ``kill_switch=0.3`` a 30 % drawdown; ``kill_window`` / ``cooldown``: pandas durations
    ("24h", "3D"). ``funding``: ``"stored"`` (the default, as in a research and on the command
    line: each dataset's funding file, when there is one: ``threadx data fetch --funding``), None
    (none) or a mapping from runner label to a funding Series. ``frames``: already loaded
    frames by runner label (tests, the pages).
    ``engine``: engine options for every runner (fee_bps, leverage, fill, ...; not
    initial_capital: see ``capital``). Saved under ``<results>/portfolios/<id>`` unless
    ``save`` is False. Errors name the runner. ``progress(done, total, phase)`` is called as
    each runner's signals are ready, then for the run and the report; ``cancel`` (an Event or
    a callable) is read between runners, after the run and before the save: a stop raises
    :class:`~threadx.errors.Cancelled`, nothing saved.
    ``memory_budget`` (bytes or text such as "4GiB"; default: the sweep setting, else half the
    available RAM): the run's arrays are estimated before they are made, ParamError when over.
    """
    watch_start = time.perf_counter()
    runner_list = _runners(runners, weights)
    labels = runner_labels(runner_list)
    if isinstance(funding, Mapping):
        unknown = sorted(set(funding) - set(labels) - {r.label for r in runner_list})
        if unknown:
            raise ParamError(f"funding given for {', '.join(unknown)}, which is no runner of this portfolio "
                             f"(runners: {', '.join(labels)})")
    if "initial_capital" in engine:
        raise ParamError("set the portfolio's capital with capital=, not initial_capital")
    base = options_from(**engine)
    try:
        total = float(base.initial_capital if capital is None else capital)
    except (TypeError, ValueError):
        total = float("nan")
    if not (np.isfinite(total) and total > 0):
        raise ParamError(f"capital must be a positive number, got {capital!r}")
    guard = gate_fraction(margin_guard, "margin_guard", upper=None)
    cap = gate_fraction(runner_cap, "runner_cap", upper=None)
    kill = gate_fraction(kill_switch, "kill_switch", upper=1.0)
    window_ns, cooldown_ns = gate_duration(kill_window, "kill_window"), gate_duration(cooldown, "cooldown")
    portfolio_id = check_name(new_run_id("portfolio") if portfolio_id is None else portfolio_id,
                              "portfolio id")
    if save and (portfolio_root(results_dir) / portfolio_id / "portfolio.json").is_file():
        raise ThreadXError(f"portfolio {portfolio_id!r} is already stored under {portfolio_root(results_dir)}: choose "
                           "another id, or delete that folder to replace it")
    if bank is None:
        from threadx.indicators import default_bank

        bank = default_bank()
    from threadx.optimize.runner import _cancel_check

    should_stop = _cancel_check(cancel)
    steps = len(runner_list) + 2
    report = progress or (lambda done, total_steps, phase: None)
    weights = [r.weight for r in runner_list]
    top = max(weights)
    if not (np.isfinite(sum(weights)) and np.isfinite(total * top)):  # huge weights: only their ratios matter
        weights = [w / top for w in weights]
    weight_sum = sum(weights)
    prepared = []
    for k, (runner, label, weight) in enumerate(zip(runner_list, labels, weights)):
        report(k, steps, f"signals of {label}")
        if should_stop():
            raise Cancelled(f"portfolio {portfolio_id} stopped before it ran ({k} of {len(runner_list)} runners ready)")
        prepared.append(_prepare(runner, label, total * weight / weight_sum, base, funding, frames, bank))
    report(len(runner_list), steps, "running the runners together")

    _check_timeframes(prepared, labels)
    _check_repeats(runner_list, prepared, labels)
    _check_grid(prepared, labels)
    _check_overlap(prepared, labels)
    bar_ns = _bar_ns(prepared[0]["bars"])  # (one timeframe for all: _check_timeframes)
    if kill and window_ns < bar_ns:
        raise ParamError(f"kill_window {kill_window!r} is shorter than one {prepared[0]['bars'].timeframe} bar: it "
                         "holds one mark only, so the kill switch could never fire; give at least one bar")
    times = np.unique(np.concatenate([p["bars"].time_ns for p in prepared]))
    _check_memory(prepared, len(times), memory_budget)
    arrays = _concatenated(prepared, times)
    out = run_portfolio(*arrays, guard, cap, kill, window_ns, cooldown_ns, bar_ns,
                        span_bars(times, prepared[0]["bars"].timeframe))  # (the timeline's, gaps included)
    if should_stop():  # (the loop itself is one numba call: a stop during it lands here)
        raise Cancelled(f"portfolio {portfolio_id} stopped after its run, before its report: nothing saved")
    m, states, runner_metrics, trade_rows, _, ticks, events, runner_eq, runner_margin = out
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    tf_seconds = min(timeframe_seconds(p["bars"].timeframe) for p in prepared if p["bars"].timeframe) \
        if any(p["bars"].timeframe for p in prepared) else None
    timeline = _timeline(index, ticks, runner_eq, runner_margin, labels)
    report(len(runner_list) + 1, steps, "report")
    trades, rows = [], []
    trade_start = arrays[14]
    for k, (runner, label, prep) in enumerate(zip(runner_list, labels, prepared)):
        st = states[k]
        used = trade_rows[trade_start[k]:trade_start[k] + int(st[S_TRADE_ROWS])]
        check_rows_complete(runner_metrics[k], used)
        frame = trades_frame(used, prep["bars"].index)
        frame.insert(0, "runner", label)
        trades.append(frame)
        rows.append(_runner_row(runner, label, prep, st, runner_metrics[k], timeline, times))
    trades_all = pd.concat(trades, ignore_index=True) if trades else pd.DataFrame()
    skipped = {"margin_guard": int(states[:, S_SKIP_GUARD].sum()), "runner_cap": int(states[:, S_SKIP_CAP].sum()),
               "kill_switch": int(states[:, S_SKIP_KILL].sum()), "engine": int(states[:, S_SKIPPED].sum())}
    event_rows = [_event(e, index, bar_ns) for e in events]
    config = {"runners": [r.to_dict() for r in runner_list], "capital": total, "margin_guard": guard or None,
              "runner_cap": cap or None, "kill_switch": kill or None, "kill_window": kill_window,
              "cooldown": cooldown, "funding": funding if isinstance(funding, str) or funding is None else "given",
              "engine_options": {k: v for k, v in base.to_dict().items() if k != "initial_capital"},
              "origin": None if origin is None else str(origin)}
    meta = {"created": pd.Timestamp.now(tz="UTC").isoformat(), "ticks": len(times),
            "start": index[0].isoformat(), "end": index[-1].isoformat(),
            "elapsed_s": time.perf_counter() - watch_start,
            "notes": part_time_notes([(label, int(p["bars"].time_ns[0]),
                                       int(p["bars"].time_ns[-1]) + _bar_ns(p["bars"]))  # (to its last close)
                                      for label, p in zip(labels, prepared)])}
    days = longest_drawdown_days(timeline["equity"].to_numpy(), times, tf_seconds, total) if tf_seconds else None
    result = PortfolioResult(portfolio_id, config, metrics_dict(m, tf_seconds, days), rows, timeline, trades_all,
                             skipped, event_rows, meta)
    if should_stop():  # before the log line: a stopped portfolio is not logged as one that ran
        raise Cancelled(f"portfolio {portfolio_id} stopped before it was saved: nothing saved")
    logs.logger().info("portfolio %s: %d runners, %d ticks, return %.4g, %d trades, %d entries skipped, "
                       "%d kill-switch events", portfolio_id, len(runner_list), len(times),
                       result.metrics["total_return"], result.metrics["n_trades"],
                       sum(v for k, v in skipped.items() if k != "engine"), len(event_rows))
    if save:
        save_portfolio(result, results_dir)
    report(steps, steps, "done")
    return result


# --- inputs --------------------------------------------------------------------------------------

def _runners(runners: Sequence[Any], weights: Sequence[float] | None) -> list[Runner]:
    if isinstance(runners, (str, Runner)) or not runners:
        runners = [runners] if runners else []
    out = []
    for item in runners:
        if isinstance(item, Runner):
            out.append(item)
        elif isinstance(item, str):
            out.append(parse_runner(item))
        elif isinstance(item, Mapping):
            out.append(Runner.from_dict(item))
        else:
            raise ParamError(f"a runner is a Runner, a dict or 'STRATEGY:DATASET[:param=value,...]', got {item!r}")
    if not out:
        raise ParamError("a portfolio needs at least one runner")
    if weights is not None:
        weights = list(weights)
        if len(weights) != len(out):
            raise ParamError(f"{len(weights)} weights for {len(out)} runners: give one weight per runner")
        weighted = []
        for k, (r, w) in enumerate(zip(out, weights)):
            try:
                weighted.append(Runner(r.strategy, r.data, r.params, w))
            except ParamError:  # (the runner's own message blamed the runner, not the weights given)
                raise ParamError(f"weight {k + 1} of {len(weights)} (runner {r.label}) must be a positive number, "
                                 f"got {w!r}") from None
        out = weighted
    return out


def gate_fraction(value: float | None, what: str, upper: float | None) -> float:
    """A gate's fraction, 0.0 when off (None or 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):  # (float(True) is 1.0: a guard of 100 % that nobody asked for)
        raise ParamError(f"{what} must be a fraction such as 0.7, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParamError(f"{what} must be a fraction such as 0.7, got {value!r}") from None
    if not np.isfinite(number) or number < 0 or (upper is not None and number >= upper):
        bound = f"between 0 and {upper:g} (excluded)" if upper is not None else "a positive number"
        raise ParamError(f"{what} must be {bound}, got {value!r}")
    return number


MAX_GATE_DAYS = 36_500  # a window or cooldown longer than a century would overflow the loop's ns arithmetic


def gate_duration(text: str, what: str) -> int:
    """A gate's duration (a pandas duration such as "24h" or "3D") in ns; ParamError naming ``what``,
    also for a number without a unit (pandas reads ``24`` as 24 ns: a kill switch that never fires)."""
    if isinstance(text, (bool, int, float, np.number)) or (isinstance(text, str)
                                                          and not any(ch.isalpha() for ch in text)):
        raise ParamError(f"{what} needs a unit, such as 24h or 3D (a bare number would be read as nanoseconds), "
                         f"got {text!r}")
    try:
        ns = pd.Timedelta(text).value
    except (TypeError, ValueError, OverflowError):
        raise ParamError(f"{what} must be a duration such as 24h or 3D, got {text!r}") from None
    if not 0 < ns <= pd.Timedelta(days=MAX_GATE_DAYS).value:
        raise ParamError(f"{what} must be positive and at most {MAX_GATE_DAYS:,} days, got {text!r}")
    return int(ns)


def _prepare(runner: Runner, label: str, capital: float, base: EngineOptions, funding: Any,
             frames: Mapping[str, Any] | None, bank: Any) -> dict[str, Any]:
    """The runner's bars, kernel inputs (its sub-account's capital), dataset and funding records
    (``frames`` and a ``funding`` mapping are looked up by ``label``, else by the dataset's label)."""
    try:
        spec = get_strategy(runner.strategy)
        values = spec.normalize(runner.params)
        frame = (frames or {}).get(label, (frames or {}).get(runner.label))
        if frame is None:
            frame = runner.data.load()
        bars = as_bars(frame)
        rates = _funding(runner, label, funding)
        options = options_from(base.to_dict(), initial_capital=capital, funding=rates)
        with strategy_code_errors(spec):
            rules = strategy_rules(spec, values, options)
            _, sig, levels = prepare_signals(spec, bars, values, bank)
        inputs = kernel_args(bars, sig, levels, rules, options, funding_per_bar(rates, bars))
        signal_entries = bool(np.any(np.asarray(sig) & SIG_ENTRIES))
        largest = largest_first_order(inputs.params, signal_entries)
        smallest = float(inputs.params[P_MIN_NOTIONAL])
        if not largest >= smallest:
            raise ParamError(f"its share of the capital, {capital:.6g}, can never place an order: the largest first "
                             f"order it allows is {largest:.6g} (leverage {rules.leverage:g}; a grid level's share, "
                             f"or its sizing's), below min_notional {smallest:g}; raise its weight or the "
                             "portfolio's capital, or lower min_notional")
    except ThreadXError as exc:
        text = first_line(exc)
        raise type(exc)(f"runner {label}: {text}") from None
    dataset = DatasetRef.of(frame, bars=bars) if runner.data.source else runner.data
    # (a series passed from Python, or a cut of a stored one, names no file)
    record = {"source": stored_file_of(rates), "fingerprint": funding_fingerprint(rates),
              "rates": len(rates)} if isinstance(rates, pd.Series) else None
    return {"bars": bars, "inputs": inputs, "values": values, "spec": spec, "capital": capital,
            "dataset": {**runner.data.to_dict(), "fingerprint": bars.fingerprint, "bars": len(bars),
                        "timeframe": bars.timeframe, "loaded": dataset.to_dict()},
            "funding": record}


def _funding(runner: Runner, label: str, funding: Any) -> Any:
    if funding is None:
        return None
    if funding == STORED:
        return stored_funding(runner.data.source)
    if isinstance(funding, Mapping):
        return funding.get(label, funding.get(runner.label))
    raise ParamError(f"funding must be None, 'stored' or a mapping of runner label to rates, got {funding!r}")


def _check_timeframes(prepared: list[dict[str, Any]], labels: list[str]) -> None:
    """ParamError unless every runner has bars of one timeframe (:func:`timeframe_problem`)."""
    problem = timeframe_problem({label: p["bars"].timeframe for label, p in zip(labels, prepared)})
    if problem:
        raise ParamError(problem)


def timeframe_problem(frames: Mapping[str, str | None]) -> str | None:
    """Why runners of these timeframes (label -> timeframe) cannot share a portfolio, None when they
    can: a bar is stepped whole at its open's tick, so a coarser runner's mark (its close, hours
    later) would enter the shared equity, and the gates read it, before that close happened.

    >>> timeframe_problem({"a": "1h", "b": "1h"}) is None, timeframe_problem({"a": "1h", "b": "4h"})[:46]
    (True, 'the runners of a portfolio share one timeframe')
    """
    if len(set(frames.values())) <= 1:
        return None
    listed = ", ".join(f"{label} {tf or 'of no regular timeframe'}" for label, tf in frames.items())
    return (f"the runners of a portfolio share one timeframe; got {listed}: resample them to one "
            f"(threadx data resample, or load_ohlcv(..., timeframe=))")


def _check_repeats(runners: Sequence[Runner], prepared: list[dict[str, Any]], labels: list[str]) -> None:
    """ParamError when two runners run one strategy with the same params on one market's candles
    under two names: a file and its catalog name, or one a cut of the other (a later start, a
    month left out: the same candles on every bar time they share, :func:`common_candles`). One
    runner twice, as by name (:func:`threadx.portfolio.runners.runner_labels`): over their
    common bars they trade as one with double the weight."""
    seen: dict[tuple, list[int]] = {}
    for k, (runner, prep) in enumerate(zip(runners, prepared)):
        seen.setdefault((runner.strategy, repr(sorted(prep["values"].items()))), []).append(k)
    for group in seen.values():
        for i, j in itertools.combinations(group, 2):
            a, b = prepared[i]["bars"], prepared[j]["bars"]
            shared = len(a) if a.fingerprint == b.fingerprint else common_candles(a, b)
            if shared:
                whole = "" if a.fingerprint == b.fingerprint else f" on the {shared:,} bar times they share"
                raise ParamError(f"runners {labels[i]} and {labels[j]} run {runners[i].strategy} with the same params "
                                 f"on the same candles{whole} (one market under two names, or one a cut of the "
                                 "other): give one runner a larger weight instead")


def _check_grid(prepared: list[dict[str, Any]], labels: list[str]) -> None:
    """ParamError when a runner's tick falls inside another runner's bar (1h bars at :00 beside
    1h bars at :30): a bar is stepped whole at its open's tick, so its close would enter the
    shared equity, which the gates read, before the other runner's tick. Runners on the same
    bar times, or one runner alone, never do; a bar ends at the runner's next bar when that
    opens sooner (a file's own off-grid bar, 03:28 before 04:00: two runners on it were refused)."""
    timeframe = prepared[0]["bars"].timeframe
    if not timeframe or len(prepared) < 2:
        return
    step = timeframe_ns(timeframe)
    opens = [np.asarray(p["bars"].time_ns, dtype=np.int64) for p in prepared]
    for k, own in enumerate(opens):
        others = np.unique(np.concatenate([t for j, t in enumerate(opens) if j != k]))
        after = np.searchsorted(others, own, side="right")  # each bar's next tick of another runner
        ends = np.minimum(own + step, np.append(own[1:], own[-1] + step))  # (its own next bar ends it)
        inside = after < len(others)
        inside[inside] = others[after[inside]] < ends[inside]
        if inside.any():
            first = int(np.flatnonzero(inside)[0])
            tick = int(others[after[first]])
            who = next(labels[j] for j, t in enumerate(opens) if j != k and np.isin(tick, t))
            raise ParamError(f"the runners' bars must open on one grid of {timeframe}: {who}'s bar of {_clock(tick)} "
                             f"opens inside {labels[k]}'s bar of {_clock(int(own[first]))}; resample the odd ones "
                             "(threadx data resample) or pick data of one grid")


def _check_overlap(prepared: list[dict[str, Any]], labels: list[str]) -> None:
    """ParamError when the runners' spans leave a stretch of time with none of them (BTC 2017
    beside BTC 2024): their metrics would be annualised as if the ticks were consecutive."""
    step = _bar_ns(prepared[0]["bars"])
    problem = overlap_problem([(label, int(p["bars"].time_ns[0]), int(p["bars"].time_ns[-1]) + step)
                               for label, p in zip(labels, prepared)])
    if problem:
        raise ParamError(problem)


def overlap_problem(spans: Sequence[tuple[str, int, int]]) -> str | None:
    """Why runners (label, first bar's open, last bar's close, ns) cannot share a portfolio: a
    stretch of time with none of them; None when there is none (the run refuses the same, and
    the Portfolio form before Launch).

    >>> day = 86_400 * 10**9
    >>> overlap_problem([("a", 0, 10 * day), ("b", 5 * day, 20 * day)]) is None
    True
    >>> overlap_problem([("a", 0, 10 * day), ("b", 30 * day, 40 * day)])[:42]
    'runners a and b never run at the same time'
    """
    ordered = sorted(spans, key=lambda span: (span[1], span[2]))
    last_label, _, last = ordered[0]
    for label, start, end in ordered[1:]:
        if start > last:
            return (f"runners {last_label} and {label} never run at the same time: {last_label} ends "
                    f"{_clock(last)}, {label} starts {_clock(start)}; a portfolio runs its runners "
                    "together: pick data that overlaps, or backtest them apart")
        if end > last:
            last, last_label = end, label
    return None


PART_TIME_SHARE = 0.9  # a runner whose candles cover less of the portfolio's span than this is noted


def part_time_notes(spans: Sequence[tuple[str, int, int]]) -> list[str]:
    """One sentence per runner (label, first bar's open and last bar's close, ns) whose candles cover less
    than :data:`PART_TIME_SHARE` of the portfolio's span: outside them its capital is idle
    cash, which dilutes the combined metrics (runners that overlap only briefly ran without a word).

    >>> day = 86_400 * 10**9
    >>> print(part_time_notes([("a", 0, 100 * day), ("b", 80 * day, 400 * day)])[0][:44])
    a trades over 25 % of the portfolio's span (
    """
    start, end = min(s for _, s, _ in spans), max(e for _, _, e in spans)
    if end <= start:
        return []
    notes = []
    for label, first, last in spans:
        share = (last - first) / (end - start)
        if share < PART_TIME_SHARE:
            notes.append(f"{label} trades over {beside(100 * share, (100 * PART_TIME_SHARE,), 0)} % of the "
                         f"portfolio's span (from its first bar's open, {_clock(first)}, to its last bar's close, "
                         f"{_clock(last)}, of {_clock(start)} to {_clock(end)}): "
                         "its capital is idle cash the rest of the time, which dilutes the combined return and Sharpe")
    return notes


def _bar_ns(bars: Any) -> int:
    """One bar's length in ns (0 without a timeframe): a span ends at its last bar's close."""
    return timeframe_ns(bars.timeframe) if bars.timeframe else 0


def _clock(time_ns: int) -> str:
    stamp = pd.Timestamp(time_ns, tz="UTC")
    return stamp.strftime("%Y-%m-%d %H:%M:%S" if stamp.second or stamp.microsecond else "%Y-%m-%d %H:%M")


def _check_memory(prepared: list[dict[str, Any]], n_ticks: int, memory_budget: Any) -> None:
    """ParamError when the run's arrays would pass the memory budget: the inputs end to end,
    every runner's trade rows at their capacity (the most legs a run can book) and the
    per-tick series; estimated before any is made."""
    from threadx.engine.layout import N_TRADE_COLS
    from threadx.optimize.budget import Budget
    from threadx.units import format_bytes

    bars = sum(len(p["bars"]) for p in prepared)
    rows = sum(kernel.trade_capacity(len(p["bars"]), p["inputs"].params) for p in prepared)
    need = 8 * (12 * bars + N_TRADE_COLS * rows + n_ticks * (len(TICK_COLUMNS) + 2 * len(prepared)))
    budget = Budget.resolve(memory_budget)
    if need > budget.memory:
        raise ParamError(f"this portfolio needs about {format_bytes(need)} for its bars, trade rows and timeline, "
                         f"over the memory budget of {budget.describe()}: use fewer runners or a shorter span, "
                         f"or a larger memory budget")


def _concatenated(prepared: list[dict[str, Any]], times: np.ndarray) -> tuple:
    """The loop's arrays: every runner's inputs end to end (unused lines as NaN at full length),
    bar starts, param rows, each bar's tick, the tick times and the trade row starts."""
    def column(k: int, dtype: Any) -> np.ndarray:
        parts = []
        for p in prepared:
            arr = p["inputs"][k]
            n = len(p["bars"])
            parts.append(arr if arr.shape[0] == n else np.full(n, np.nan))
        return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)

    lines = [column(k, np.float64) for k in range(4)]
    sig = column(4, np.uint8)
    levels = [column(k, np.float64) for k in range(5, 10)]
    lengths = [len(p["bars"]) for p in prepared]
    bar_start = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    params = np.ascontiguousarray(np.stack([p["inputs"].params for p in prepared]))
    bar_tick = np.concatenate([np.searchsorted(times, p["bars"].time_ns) for p in prepared]).astype(np.int64)
    capacity = [kernel.trade_capacity(n, p["inputs"].params) for n, p in zip(lengths, prepared)]
    trade_start = np.concatenate(([0], np.cumsum(capacity))).astype(np.int64)
    return (*lines, sig, *levels, bar_start, params, bar_tick, times.astype(np.int64), trade_start)


# --- outputs -------------------------------------------------------------------------------------

def _timeline(index: pd.DatetimeIndex, ticks: np.ndarray, runner_eq: np.ndarray, runner_margin: np.ndarray,
              labels: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(ticks, index=index, columns=list(TICK_COLUMNS))
    frame.index.name = "time"
    equity = frame["equity"]
    frame.insert(1, "drawdown", equity / equity.cummax() - 1.0)
    frame.insert(3, "margin_share", np.where(equity > 0, frame["margin"] / equity.where(equity > 0, 1.0), np.nan))
    for col in ("positions", "legs"):
        frame[col] = frame[col].astype(np.int64)
    frame["blocked"] = frame["blocked"] > 0
    per_runner = pd.DataFrame(np.hstack([runner_eq, runner_margin]), index=index,
                              columns=[f"eq:{label}" for label in labels] + [f"margin:{label}" for label in labels])
    return pd.concat([frame, per_runner], axis=1)


def _runner_row(runner: Runner, label: str, prep: dict[str, Any], st: np.ndarray, m: np.ndarray,
                timeline: pd.DataFrame, times: np.ndarray) -> dict[str, Any]:
    """One runner's breakdown: what it ran on, its own metrics (on its own bars), PnL, skips
    by reason and its peak margin (as a share of the portfolio equity at that tick)."""
    tf = prep["bars"].timeframe
    final = float(timeline[f"eq:{label}"].iloc[-1])
    own_ns = prep["bars"].time_ns
    own_equity = timeline[f"eq:{label}"].to_numpy()[np.searchsorted(times, own_ns)]  # at its own bars' ticks
    days = longest_drawdown_days(own_equity, own_ns, timeframe_seconds(tf), prep["capital"]) if tf else None
    margin_share = timeline[f"margin:{label}"] / timeline["equity"].where(timeline["equity"] > 0)
    return {"label": label, "strategy": runner.strategy, "strategy_code": prep["spec"].code_hash,
            "params": prep["values"], "weight": runner.weight, "capital": prep["capital"],
            "dataset": prep["dataset"], "funding": prep["funding"],
            "start": prep["bars"].index[0].isoformat(), "end": prep["bars"].index[-1].isoformat(),
            "final_equity": final, "pnl": final - prep["capital"],
            "metrics": metrics_dict(m, timeframe_seconds(tf) if tf else None, days),
            "skipped": {"margin_guard": int(st[S_SKIP_GUARD]), "runner_cap": int(st[S_SKIP_CAP]),
                        "kill_switch": int(st[S_SKIP_KILL]), "engine": int(st[S_SKIPPED])},
            "peak_margin_share": float(margin_share.max()) if margin_share.notna().any() else 0.0}


def _event(row: np.ndarray, index: pd.DatetimeIndex, bar_ns: int) -> dict[str, Any]:
    """A kill-switch firing: ``time`` the close it fired at (its tick's time and one bar), ``resumes``
    the first tick whose legs may open again."""
    values = dict(zip(EVENT_COLUMNS, row.tolist()))
    resume = int(values["resume_tick"])
    fired = index[int(values["tick"])] + pd.Timedelta(bar_ns, unit="ns")
    return {"time": fired.isoformat(), "drawdown": values["drawdown"],
            "window_peak": values["window_peak"], "equity": values["equity"],
            "resumes": index[resume].isoformat() if resume < len(index) else None}


__all__ = ["portfolio_backtest"]
