"""Performance metrics (SPEC §5).

The engine kernel computes every metric from running sums (the numbers a backtest and a
sweep report). :func:`metrics_from_equity` is the plain pandas formulation of the same
definitions, computed from a per-bar equity series and a trade list: the reference the
kernel is tested against, and the way to score an equity curve from elsewhere.

Conventions: per-bar returns start from the initial capital (r_0 = E_0 / E_init - 1, as
vectorbt does), so ``n_bars`` returns; Sharpe uses ddof 1 and is 0 for zero variance;
Sortino's downside deviation is sqrt(mean(min(r, 0)^2)), with Sortino +inf when there
is no downside and a positive mean; drawdowns are measured from the running peak,
starting at the initial capital, and are negative numbers; trade statistics that are
undefined (no trades, no losses) are NaN, counts are 0.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from threadx.engine.layout import METRIC_NAMES

# Which metrics are counts (reported as int) and which sort better when larger.
COUNT_METRICS = ("n_trades", "n_long", "n_short", "n_skipped", "n_ambiguous", "n_bars", "max_drawdown_bars", "n_cycles")
LOWER_IS_BETTER = ("volatility", "max_drawdown_bars", "total_fees", "n_skipped")


def metrics_dict(vector: np.ndarray, timeframe_seconds: int | None = None,
                 drawdown_days: float | None = None) -> dict[str, float]:
    """Kernel metrics vector -> dict; counts as int, liquidated as bool, plus the drawdown time:
    ``drawdown_days`` (see :func:`longest_drawdown_days`) where the bars' times are known, else
    the longest drawdown's bars times the timeframe."""
    out: dict[str, float] = {}
    for name, value in zip(METRIC_NAMES, vector.tolist()):
        if name in COUNT_METRICS:
            out[name] = int(value)
        elif name == "liquidated":
            out[name] = bool(value)
        else:
            out[name] = float(value)
    if drawdown_days is not None:
        out["max_drawdown_days"] = drawdown_days
    elif timeframe_seconds:
        out["max_drawdown_days"] = out["max_drawdown_bars"] * timeframe_seconds / 86400.0
    return out


def longest_drawdown_days(equity: np.ndarray, open_ns: np.ndarray, timeframe_seconds: int,
                          initial_capital: float) -> float:
    """The longest drawdown in calendar days, as the kernel's ``max_drawdown_bars`` counts bars
    (``kernel.track_drawdown``: from the close of its peak bar, the start for the initial capital,
    to the close of the bar that recovers it, or of the last bar), but on the bars' own times, so
    a gap in the data inside a drawdown counts for the time it lasted.

    >>> hour = 3_600 * 10**9
    >>> longest_drawdown_days(np.array([99.0, 98.0, 100.0]), np.array([0, hour, 25 * hour]), 3_600, 100.0)
    1.0833333333333333
    """
    eq = np.asarray(equity, dtype=np.float64)
    if not len(eq):
        return 0.0
    step = int(timeframe_seconds) * 1_000_000_000
    ext = np.concatenate(([initial_capital], eq))
    times = np.concatenate(([int(open_ns[0])], np.asarray(open_ns, dtype=np.int64) + step))  # the closes
    high_before = np.concatenate(([-np.inf], np.fmax.accumulate(ext)[:-1]))  # (a NaN mark is no peak: as the kernel)
    is_peak = ext >= high_before
    peak_at = np.maximum.accumulate(np.where(is_peak, np.arange(len(ext)), 0))
    previous = peak_at[:-1]  # the peak before each bar
    counted = ~is_peak[1:] | (previous < np.arange(len(eq)))  # under water, or recovering a drawdown
    spans = np.where(counted, times[1:] - times[previous], 0)
    return float(spans.max()) / 86_400e9


def per_bar_returns(equity: pd.Series | np.ndarray, initial_capital: float) -> np.ndarray:
    """r_t = E_t / E_{t-1} - 1 with E_{-1} = the initial capital; 0 after equity reached 0."""
    eq = np.asarray(equity, dtype=np.float64)
    prev = np.concatenate(([initial_capital], eq[:-1]))
    return np.where(prev > 0, eq / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)


def metrics_from_equity(
    equity: pd.Series | np.ndarray,
    trades: pd.DataFrame,
    initial_capital: float,
    bars_per_year: float,
    in_position: np.ndarray | None = None,
    span_bars: float = 0.0,
) -> dict[str, float]:
    """Reference computation of the SPEC §5 metrics from per-bar equity and trades.

    ``trades`` needs columns pnl, fees, bars_held (and funding if any);
    ``in_position`` (bool per bar, position held at the close) gives the exposure;
    ``span_bars``: the bars the data spans, its gaps included (:func:`threadx.data.grid.span_bars`),
    over which CAGR annualises when it is longer than the bars held.
    """
    eq = np.asarray(equity, dtype=np.float64)
    n = len(eq)
    r = per_bar_returns(eq, initial_capital)
    ann = math.sqrt(bars_per_year)
    std = float(np.std(r, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(r))
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    final = float(eq[-1])
    with np.errstate(over="ignore"):  # a short, strong run annualises to inf, as in the kernel
        years_n = span_bars if span_bars > n else n
        cagr = float(np.power(final / initial_capital, bars_per_year / years_n)) - 1.0 if final > 0 else -1.0
    peak = np.maximum.accumulate(np.concatenate(([initial_capital], eq)))[1:]
    dd = eq / peak - 1.0
    max_dd = float(min(dd.min(), 0.0))
    max_dd_bars = _max_drawdown_bars(eq, initial_capital)

    pnl = trades["pnl"].to_numpy(dtype=np.float64) if len(trades) else np.empty(0)
    wins = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    gp = float(wins.sum())
    gl = float(-losses.sum())
    nt = len(pnl)
    pnl_std = float(np.std(pnl, ddof=1)) if nt > 1 else 0.0
    return {
        "total_return": final / initial_capital - 1.0,
        "cagr": cagr,
        "volatility": std * ann,
        "sharpe": mean / std * ann if std > 0 else 0.0,
        "sortino": mean / downside * ann if downside > 0 else (math.inf if mean > 0 else 0.0),
        "max_drawdown": max_dd,
        "max_drawdown_bars": max_dd_bars,
        "calmar": cagr / -max_dd if max_dd < 0 else (math.inf if cagr > 0 else 0.0),
        "n_trades": nt,
        "win_rate": len(wins) / nt if nt else math.nan,
        "profit_factor": gp / gl if gl > 0 else (math.inf if gp > 0 else math.nan),
        "expectancy": float(pnl.mean()) if nt else math.nan,
        "avg_win": float(wins.mean()) if len(wins) else math.nan,
        "avg_loss": float(losses.mean()) if len(losses) else math.nan,
        "largest_win": float(pnl.max()) if len(wins) else math.nan,
        "largest_loss": float(pnl.min()) if len(losses) else math.nan,
        "avg_bars_held": float(trades["bars_held"].mean()) if nt else math.nan,
        "exposure": float(np.mean(in_position)) if in_position is not None else math.nan,
        "total_fees": float(trades["fees"].sum()) if nt else 0.0,
        "total_funding": float(trades["funding"].sum()) if nt and "funding" in trades else 0.0,
        "sqn": math.sqrt(nt) * float(pnl.mean()) / pnl_std if pnl_std > 0 else math.nan,
        "final_equity": final,
    }


def _max_drawdown_bars(eq: np.ndarray, initial_capital: float) -> int:
    """Longest peak-to-recovery span in bars (peak to the last bar if never recovered)."""
    peak = initial_capital
    peak_i = -1
    longest = 0
    for i, value in enumerate(eq):
        if value >= peak:
            if peak_i < i - 1:
                longest = max(longest, i - peak_i)
            peak, peak_i = value, i
        else:
            longest = max(longest, i - peak_i)
    return longest
