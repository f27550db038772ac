"""One backtest by strategy name: strategy + params + data -> :class:`Result` (metrics,
trades, equity). This is where a strategy name meets the engine: the engine itself
(``threadx.engine``) never imports the strategies (see :mod:`threadx.contract`)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx import aot, logs
from threadx.data.bars import Bars, as_bars
from threadx.engine.inputs import (EngineOptions, check_bar_count, funding_file_record, funding_per_bar, kernel_args,
                                   options_from, override_conflict, strategy_rules)
from threadx.engine import kernel
from threadx.engine.layout import P_INITIAL_CAPITAL
from threadx.engine.result import Result, wrap_full
from threadx.contract import SIG_ENTRIES, ExitRules, prepare_signals
from threadx.strategy.base import StrategySpec, get_strategy
from threadx.strategy.user import strategy_code_errors
from threadx.errors import ParamError
from threadx.timings import Stopwatch

__all__ = ["backtest", "run_meta", "Result"]


def backtest(
    df: pd.DataFrame | Bars,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    initial_capital: float | None = None,
    fee_bps: float | None = None,
    slippage_bps: float | None = None,
    fill: str | None = None,
    sizing: str | None = None,
    leverage: float | None = None,
    fraction: float | None = None,
    min_notional: float | None = None,
    ambiguity: str = "conservative",
    funding: Any = None,
    bank=None,
    stopwatch: Stopwatch | None = None,
) -> Result:
    """Backtest ``strategy`` with ``params`` (defaults filled in) on a canonical OHLCV frame.

    Capital, costs, fill and min_notional left at None take the ``[engine]`` settings
    (threadx.toml, ``THREADX_ENGINE_*``, else the built-in defaults: 10,000 capital, 10 bps
    fee, no slippage, next_open, 5.0; see ``threadx config show``).
    Costs: ``fee_bps`` on the notional of every fill, ``slippage_bps`` moves fills against
    the trader. ``fill``: ``next_open`` (default) or ``close``. ``sizing`` / ``leverage`` /
    ``fraction`` override the strategy's rule. ``min_notional``: an entry whose order value
    (quote currency) would be below it is skipped and counted in ``n_skipped`` (default 5.0,
    ``config.DEFAULT_MIN_NOTIONAL``; 0 turns it off). Raises ParamError / DataError on bad input.
    ``meta["timings"]``: where the time went (validation, indicators, signals, kernel, report;
    :mod:`threadx.timings`); a ``stopwatch`` started by the caller (which timed the ``load``,
    say) is carried on, so its stages and wall time are recorded too.
    """
    watch = stopwatch or Stopwatch()
    with watch.stage("validation"):
        spec = get_strategy(strategy)
        values = spec.normalize(params)
        options: EngineOptions = options_from(
            initial_capital=initial_capital, fee_bps=fee_bps, slippage_bps=slippage_bps, fill=fill, sizing=sizing,
            leverage=leverage, fraction=fraction, min_notional=min_notional, ambiguity=ambiguity, funding=funding,
        )
        bars = as_bars(df)
        check_bar_count(bars)
        conflict = override_conflict(spec, values, options)
        if conflict:
            raise ParamError(conflict)
        with strategy_code_errors(spec):
            rules = strategy_rules(spec, values, options)
    with strategy_code_errors(spec):
        indicators, sig, levels = prepare_signals(spec, bars, values, bank, stage=watch.stage)
    with watch.stage("kernel"):
        args = kernel_args(bars, sig, levels, rules, options, funding_per_bar(options.funding, bars))
        output = aot.call(kernel.run_full, *args)
    with watch.stage("report"):
        result = wrap_full(output, bars.index, bars.timeframe, values, run_meta(spec, bars, options, rules),
                           initial_capital=float(args.params[P_INITIAL_CAPITAL]))
        logs.logger().info("backtest %s on %s (%s bars, data %s): return %.4g, %d trades, %.2f s", spec.name,
                           bars.name or "unnamed data", len(bars), bars.fingerprint[:12],
                           result.metrics.get("total_return", float("nan")), int(result.metrics.get("n_trades", 0)),
                           watch.wall() - watch.stages.get("load", 0.0))
    if result.metrics.get("n_trades", 0) == 0:
        result.meta["never_defined"] = never_defined(indicators)
        result.meta["both_sides"] = int(np.count_nonzero((sig & SIG_ENTRIES) == SIG_ENTRIES))
    result.meta["timings"] = watch.record()
    result.meta["elapsed_s"] = watch.wall() - watch.stages.get("load", 0.0)  # the backtest, as before
    return result


def never_defined(indicators: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    """The labels of the indicators none of whose lines has a finite value (a warm-up longer than
    the data), e.g. ``["bb"]``."""
    return [label for label, lines in indicators.items()
            if lines and not any(np.isfinite(np.asarray(line, dtype=float)).any() for line in lines.values())]


def run_meta(spec: StrategySpec, bars: Bars, options: EngineOptions, rules: ExitRules) -> dict[str, Any]:
    """The ``meta`` of a backtest's :class:`Result` (all but ``elapsed_s``): strategy and the
    hash of its code, data, span, engine options and the effective exit rules."""
    index = bars.index
    return {
        "strategy": spec.name,
        "strategy_code": spec.code_hash,
        "dataset": bars.name,
        "timeframe": bars.timeframe,
        "fingerprint": bars.fingerprint,
        "bars": len(bars),
        "start": index[0].isoformat(),
        "end": index[-1].isoformat(),
        "options": options.to_dict(),
        "rules": rules.__dict__.copy(),
        **({"funding": paid} if (paid := funding_file_record(options.funding)) else {}),
    }
