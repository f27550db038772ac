"""One backtest: strategy + params + data -> :class:`Result` (metrics, trades, equity)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx.config import DEFAULT_FEE_BPS, DEFAULT_INITIAL_CAPITAL, DEFAULT_MIN_NOTIONAL
from threadx.data.bars import Bars, as_bars
from threadx.data.timeframe import timeframe_seconds
from threadx.engine import kernel
from threadx.engine.inputs import EngineOptions, effective_rules, funding_per_bar, kernel_args, options_from
from threadx.engine.layout import EXIT_REASONS, TRADE_COLUMNS
from threadx.engine.metrics import metrics_dict
from threadx.strategy.base import StrategySpec, get_strategy

# price levels of a trade (NaN when the strategy sets none): the stop as set at the fill and
# as last in force (they differ once a trailing rule moved it), the target in force from
# the fill and at the exit (they differ for a target that follows a line, e.g. the mid band)
TRADE_LEVEL_COLUMNS = ("stop_at_entry", "stop_at_exit", "target", "target_at_exit")
TRADE_FRAME_COLUMNS = (
    "entry_time", "exit_time", "side", "qty", "entry_price", "exit_price",
    "fees", "funding", "pnl", "return_pct", "bars_held", "exit_reason", *TRADE_LEVEL_COLUMNS,
)


@dataclass
class Result:
    """A finished backtest: ``metrics`` dict, ``trades`` frame, per-bar ``equity`` Series."""

    metrics: dict[str, Any]
    trades: pd.DataFrame
    equity: pd.Series
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def drawdown(self) -> pd.Series:
        """Underwater curve: equity / running peak - 1 (peak starts at the initial capital)."""
        init = self.meta.get("options", {}).get("initial_capital", self.equity.iloc[0])
        peak = np.maximum.accumulate(np.concatenate(([init], self.equity.to_numpy())))[1:]
        return pd.Series(self.equity.to_numpy() / peak - 1.0, index=self.equity.index, name="drawdown")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: metrics, params, meta, trades (records) and equity (ISO time -> value)."""
        trades = self.trades.copy()
        for col in ("entry_time", "exit_time"):
            trades[col] = trades[col].map(lambda t: t.isoformat())
        records = [{k: _json_number(v) for k, v in row.items()} for row in trades.to_dict(orient="records")]
        return {
            "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "params": self.params,
            "meta": self.meta,
            "trades": records,  # a level the strategy does not set (NaN) is null
            "equity": {t.isoformat(): float(v) for t, v in self.equity.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kwargs)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def prepare_signals(spec: StrategySpec, bars: Bars, params: Mapping[str, Any], bank=None):
    """Indicator values, signal flags and level lines of one normalised param set."""
    if bank is None:
        from threadx.indicators import default_bank

        bank = default_bank()
    needs = spec.indicators(params)
    values = {label: bank.ensure(bars, name, ind_params) for label, (name, ind_params) in needs.items()}
    sig = spec.signals(bars, values, params)
    return values, sig, spec.levels(values, params)


def backtest(
    df: pd.DataFrame | Bars,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    *,
    initial_capital: float = DEFAULT_INITIAL_CAPITAL,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = 0.0,
    fill: str = "next_open",
    sizing: str | None = None,
    leverage: float | None = None,
    fraction: float | None = None,
    min_notional: float = DEFAULT_MIN_NOTIONAL,
    ambiguity: str = "conservative",
    funding: Any = None,
    bank=None,
) -> Result:
    """Backtest ``strategy`` with ``params`` (defaults filled in) on a canonical OHLCV frame.

    Costs: ``fee_bps`` on the notional of every fill, ``slippage_bps`` moves fills against
    the trader. ``fill``: ``next_open`` (default) or ``close``. ``sizing`` / ``leverage`` /
    ``fraction`` override the strategy's rule. ``min_notional``: an entry whose order value
    (quote currency) would be below it is skipped and counted in ``n_skipped`` (default 5.0,
    ``config.DEFAULT_MIN_NOTIONAL``; 0 turns it off). Raises ParamError / DataError on bad input.
    """
    started = time.perf_counter()
    spec = get_strategy(strategy)
    values = spec.normalize(params)
    options: EngineOptions = options_from(
        initial_capital=float(initial_capital), fee_bps=float(fee_bps), slippage_bps=float(slippage_bps),
        fill=fill, sizing=sizing, leverage=None if leverage is None else float(leverage),
        fraction=None if fraction is None else float(fraction), min_notional=float(min_notional),
        ambiguity=ambiguity, funding=funding,
    )
    bars = as_bars(df)
    rules = effective_rules(spec.exits(values), options)
    _, sig, levels = prepare_signals(spec, bars, values, bank)
    args = kernel_args(bars, sig, levels, rules, options, funding_per_bar(funding, bars))
    m, trade_rows, equity = kernel.run_full(*args)

    index = bars.index
    tf_seconds = timeframe_seconds(bars.timeframe) if bars.timeframe else None
    return Result(
        metrics=metrics_dict(m, tf_seconds),
        trades=trades_frame(trade_rows, index),
        equity=pd.Series(equity, index=index, name="equity"),
        params=values,
        meta={
            "strategy": spec.name,
            "dataset": bars.name,
            "timeframe": bars.timeframe,
            "fingerprint": bars.fingerprint,
            "bars": len(bars),
            "start": index[0].isoformat(),
            "end": index[-1].isoformat(),
            "options": options.to_dict(),
            "rules": rules.__dict__.copy(),
            "elapsed_s": time.perf_counter() - started,
        },
    )


def trades_frame(rows: np.ndarray, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Kernel trade records -> the SPEC §3 trades DataFrame."""
    col = {name: rows[:, k] for k, name in enumerate(TRADE_COLUMNS)}
    entry_i = col["entry_i"].astype(np.int64)
    exit_i = col["exit_i"].astype(np.int64)
    reasons = np.asarray(EXIT_REASONS, dtype=object)
    frame = pd.DataFrame(
        {
            "entry_time": index[entry_i],
            "exit_time": index[exit_i],
            "side": np.where(col["side"] > 0, "long", "short"),
            "qty": col["qty"],
            "entry_price": col["entry_price"],
            "exit_price": col["exit_price"],
            "fees": col["fees"],
            "funding": col["funding"],
            "pnl": col["pnl"],
            "return_pct": col["return_pct"],
            "bars_held": col["bars_held"].astype(np.int64),
            "exit_reason": reasons[col["exit_reason"].astype(np.int64)] if len(rows) else np.empty(0, object),
            **{name: col[name] for name in TRADE_LEVEL_COLUMNS},
        },
        columns=list(TRADE_FRAME_COLUMNS),
    )
    frame["entry_i"] = entry_i
    frame["exit_i"] = exit_i
    return frame
