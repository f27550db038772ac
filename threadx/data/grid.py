"""The UTC bar grid of a timeframe: where bars of that timeframe may open.

Bars open at ``origin + k * timeframe`` (k an integer). The origin is the Unix
epoch (1970-01-01 00:00 UTC) except for timeframes that are whole weeks, whose
bars open on Mondays (1970-01-05), as exchanges and ccxt do. Validation (off-grid
check, gap slots) and resampling (bin edges) share these rules.
"""
from __future__ import annotations

import numpy as np

from threadx.data.timeframe import timeframe_seconds

NS_PER_SECOND = 1_000_000_000
_WEEK_SECONDS = 7 * 86400
_MONDAY_ORIGIN_NS = 4 * 86400 * NS_PER_SECOND  # 1970-01-05 00:00 UTC


def timeframe_ns(timeframe: str) -> int:
    """Bar length in nanoseconds."""
    return timeframe_seconds(timeframe) * NS_PER_SECOND


def span_bars(time_ns: np.ndarray, timeframe: str | None) -> float:
    """The bars of ``timeframe`` from the first bar's open to the last one's close, the gaps
    between them included (0.0 without a timeframe or a bar): the time the data covers, in bars.

    >>> span_bars(np.array([0, 3_600, 7 * 3_600]) * 10**9, "1h")  # a 5-hour gap
    8.0
    """
    if timeframe is None or len(time_ns) == 0:
        return 0.0
    return (int(time_ns[-1]) - int(time_ns[0])) / timeframe_ns(timeframe) + 1.0


def grid_origin_ns(timeframe: str) -> int:
    """Epoch-ns origin of the grid: Monday 1970-01-05 for whole weeks, else the epoch."""
    return _MONDAY_ORIGIN_NS if timeframe_seconds(timeframe) % _WEEK_SECONDS == 0 else 0


def grid_slots(time_ns: np.ndarray, timeframe: str) -> np.ndarray:
    """Index of the grid slot holding each time (floor: a bar belongs to the slot it opens in)."""
    return (np.asarray(time_ns, dtype=np.int64) - grid_origin_ns(timeframe)) // timeframe_ns(timeframe)


def slot_start_ns(slots: np.ndarray, timeframe: str) -> np.ndarray:
    """Open time (epoch ns) of grid slots."""
    return np.asarray(slots, dtype=np.int64) * timeframe_ns(timeframe) + grid_origin_ns(timeframe)
