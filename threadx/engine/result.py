"""Kernel output -> :class:`Result`: the one place a full-mode run becomes metrics, trades and equity.

:func:`full_result` runs ``kernel.run_full`` on :class:`~threadx.engine.inputs.KernelInputs`
and wraps what it returns; a backtest, each walk-forward OOS window and the validation
report's sweep winner all go through it, so their numbers agree bit for bit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx import aot
from threadx.data.timeframe import timeframe_seconds
from threadx.engine import kernel
from threadx.engine.inputs import KernelInputs
from threadx.engine.layout import EXIT_REASONS, M_N_TRADES, P_INITIAL_CAPITAL, TRADE_COLUMNS
from threadx.engine.metrics import longest_drawdown_days, metrics_dict
from threadx.shapes import json_number

# price levels of a trade (NaN when the strategy sets none): the stop as set at the fill and
# as last in force (they differ once a trailing rule moved it), the target in force from
# the fill and at the exit (they differ for a target that follows a line, e.g. the mid band)
TRADE_LEVEL_COLUMNS = ("stop_at_entry", "stop_at_exit", "target", "target_at_exit")
TRADE_FRAME_COLUMNS = (
    "entry_time", "exit_time", "side", "qty", "entry_price", "exit_price",
    "fees", "funding", "pnl", "return_pct", "bars_held", "exit_reason", *TRADE_LEVEL_COLUMNS, "cycle",
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

    def liquidation_note(self) -> str | None:
        """What a run that went bust says (None otherwise): when equity reached 0 and, when the
        bar opened past the liquidation price, the loss beyond the equity left that no trade
        books (an exchange's insurance fund takes it), by which the last trades' loss is smaller
        than their prices give."""
        if not self.metrics.get("liquidated") or self.trades.empty:
            return None
        last = self.trades[self.trades["exit_i"] == self.trades["exit_i"].iloc[-1]]
        side = np.where(last["side"] == "long", 1.0, -1.0)
        priced = float(np.sum(side * last["qty"] * (last["exit_price"] - last["entry_price"])
                              - last["fees"] - last["funding"]))
        cut = float(last["pnl"].sum()) - priced
        when = f"{last['exit_time'].iloc[-1]:%Y-%m-%d %H:%M}"
        text = f"Liquidated on {when}: equity reached 0 and the run stopped there"
        if cut > 1e-9 * max(1.0, abs(priced)):
            text += (f"; the bar opened past the liquidation price, so {cut:,.2f} of loss beyond the equity left "
                     "is not booked (an exchange's insurance fund takes it): the last trade's loss is that much "
                     "smaller than its prices give")
        return text

    def no_trades_note(self) -> str | None:
        """Why a run booked no trade (None when it booked one): bars flagged to enter both ways
        (``meta["both_sides"]``), entries skipped for their size, or entry conditions that never
        held, naming the indicators that had no value on any bar (``meta["never_defined"]``: a
        warm-up longer than the data)."""
        if self.metrics.get("n_trades", 0) != 0:
            return None
        skipped = int(self.metrics.get("n_skipped") or 0)
        both = min(int(self.meta.get("both_sides") or 0), skipped)  # (a bar flagged long and short is skipped too)
        smallest = (self.meta.get("options") or {}).get("min_notional")
        # (named as the page's box and the CLI's flag: "below the smallest one (min_notional)" named neither)
        floor = "the minimum order value" + (f" (min_notional {smallest:,.10g})" if smallest is not None else "")
        if both:
            rest = (f"; the other {skipped - both:,} gave an order below {floor} or a quantity of zero"
                    if skipped > both else "")
            return (f"No trades: {both:,} bars were flagged to enter both long and short, and neither side is taken "
                    f"on such a bar{rest}.")
        if skipped:
            return (f"No trades: {skipped:,} entries were skipped: each gave an order below {floor} or a quantity "
                    "of zero (under risk sizing: no stop distance, a level line of NaN or at the price).")
        text = f"No trades: the entry conditions never held with these parameters on these {len(self.equity):,} bars"
        never = self.meta.get("never_defined") or []
        if never:
            return (text + f": {', '.join(never)} had no value on any of them (a warm-up longer than the data); "
                    "load a longer span or shorten the periods.")
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: metrics, params, meta, trades (records) and equity (ISO time -> value)."""
        trades = self.trades.copy()
        for col in ("entry_time", "exit_time"):
            trades[col] = trades[col].map(lambda t: t.isoformat())
        records = [{k: json_number(v) for k, v in row.items()} for row in trades.to_dict(orient="records")]
        return {
            "metrics": {k: json_number(v) for k, v in self.metrics.items()},
            "params": self.params,
            "meta": self.meta,
            "trades": records,  # a level the strategy does not set (NaN) is null
            "equity": {t.isoformat(): float(v) for t, v in self.equity.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=str, **kwargs)


def full_result(inputs: KernelInputs, index: pd.DatetimeIndex, timeframe: str | None,
                params: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> Result:
    """Run the kernel in full mode on ``inputs`` (bars ``index``, of ``timeframe``) and wrap its
    output: metrics (with ``max_drawdown_days`` when the timeframe is known), the trades frame
    (``entry_i`` / ``exit_i`` are positions in ``index``) and the equity Series. ``params`` and
    ``meta`` are stored as given (copied)."""
    return wrap_full(aot.call(kernel.run_full, *inputs), index, timeframe, params, meta,
                     initial_capital=float(inputs.params[P_INITIAL_CAPITAL]))


def wrap_full(output: tuple, index: pd.DatetimeIndex, timeframe: str | None, params: Mapping[str, Any],
              meta: Mapping[str, Any] | None = None, *, initial_capital: float) -> Result:
    """The :class:`Result` of ``kernel.run_full``'s output (see :func:`full_result`)."""
    m, trade_rows, equity = output
    check_rows_complete(m, trade_rows)
    tf_seconds = timeframe_seconds(timeframe) if timeframe else None
    days = longest_drawdown_days(equity, index.as_unit("ns").asi8, tf_seconds, initial_capital) if tf_seconds else None
    return Result(
        metrics=metrics_dict(m, tf_seconds, days),
        trades=trades_frame(trade_rows, index),
        equity=pd.Series(equity, index=index, name="equity"),
        params=dict(params),
        meta=dict(meta or {}),
    )


def check_rows_complete(m: np.ndarray, rows: np.ndarray) -> None:
    """RuntimeError unless the kernel recorded a row for each trade it counted: rows past the
    capacity :func:`kernel.trade_capacity` gave are dropped, and a trade list short of its
    trades (its PnL no longer the equity's change) must not reach a user as a result."""
    if len(rows) != int(m[M_N_TRADES]):
        raise RuntimeError(f"the engine counted {int(m[M_N_TRADES])} trades but recorded {len(rows)}: "
                           "its trade rows were sized too small (an engine bug: please report it)")


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
            "cycle": col["cycle"].astype(np.int64),  # the position (cycle) of the row: one row per leg
        },
        columns=list(TRADE_FRAME_COLUMNS),
    )
    frame["entry_i"] = entry_i
    frame["exit_i"] = exit_i
    return frame
