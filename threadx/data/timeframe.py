"""Timeframe strings ("1m", "15m", "1h", "4h", "1d", "1w") to durations and bars per year."""
from __future__ import annotations

import re
from functools import lru_cache

import pandas as pd

from threadx.errors import DataError

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"(\d+)([smhdw])")
SECONDS_PER_YEAR = 365 * 86400  # crypto trades every day
MAX_TIMEFRAME_SECONDS = 366 * 86400  # a bar of a year at most (999999d overflowed the nanosecond clock)


def timeframe_seconds(timeframe: str) -> int:
    """Length of one bar in seconds; raises DataError for an unknown timeframe."""
    seconds = _seconds(str(timeframe).strip())
    if seconds is None:
        raise DataError(f"unknown timeframe {timeframe!r}: use a number and one of s, m, h, d, w (e.g. 1h, 15m), "
                        "a year (366d) at most")
    return seconds


@lru_cache(maxsize=64)
def _seconds(text: str) -> int | None:
    """Seconds of a timeframe text, None when it is none (parsed once per text: every param
    vector of a sweep asks)."""
    match = _PATTERN.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        return None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds if seconds <= MAX_TIMEFRAME_SECONDS else None


def canonical_timeframe(timeframe: str) -> str:
    """The one spelling of a timeframe, its largest whole unit (DataError for an unknown one),
    so that 60m and 1h name the same datasets and bars.

    >>> canonical_timeframe("60m"), canonical_timeframe("24h"), canonical_timeframe("90m")
    ('1h', '1d', '90m')
    """
    return spacing_timeframe(timeframe_seconds(timeframe) * 1_000_000_000)  # type: ignore[return-value]


def bars_per_year(timeframe: str) -> float:
    """Number of bars in a 365-day year."""
    return SECONDS_PER_YEAR / timeframe_seconds(timeframe)


def bar_spacing_ns(index: pd.DatetimeIndex) -> int | None:
    """Most common positive step between consecutive times in ns, or None without one."""
    if len(index) < 2:
        return None
    ns = index.as_unit("ns").asi8
    diffs = pd.Series(ns[1:] - ns[:-1])
    return int(diffs[diffs > 0].mode().iloc[0]) if (diffs > 0).any() else None


def infer_timeframe(index: pd.DatetimeIndex) -> str | None:
    """Most common spacing of an index as a timeframe string, or None if it has fewer than 2 bars."""
    return spacing_timeframe(bar_spacing_ns(index) or 0)


def spacing_disagreement(step_ns: int | None, timeframe: str) -> str | None:
    """Why bars mostly ``step_ns`` apart are not ``timeframe`` bars; None when they are, or when
    the spacing is no timeframe or ``timeframe`` is unknown (other checks report those).

    >>> spacing_disagreement(86_400 * 10**9, "1h"), spacing_disagreement(400 * 86_400 * 10**9, "1d")
    ('the bars are mostly 1d apart, not 1h', 'the bars are mostly 400 days apart, not 1d')
    """
    seconds = _seconds(str(timeframe).strip())
    if not step_ns or step_ns < 0 or step_ns % 10**9 or seconds is None or seconds * 10**9 == step_ns:
        return None
    inferred = spacing_timeframe(step_ns) or f"{step_ns / 86_400e9:,.6g} days"  # (over a year: no timeframe)
    return f"the bars are mostly {inferred} apart, not {timeframe}"


def spacing_timeframe(step_ns: int) -> str | None:
    """A step in ns as a timeframe string (whole seconds, rounded down), or None under a second or
    over a year (:data:`MAX_TIMEFRAME_SECONDS`: bars 400 days apart are no timeframe ThreadX reads).

    >>> spacing_timeframe(3_600 * 10**9), spacing_timeframe(400 * 86_400 * 10**9)
    ('1h', None)
    """
    seconds = step_ns // 1_000_000_000
    if seconds <= 0 or seconds > MAX_TIMEFRAME_SECONDS:
        return None
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return None


def resample_problem(native: str, target: str) -> str | None:
    """Why bars of ``native`` cannot be resampled to ``target`` (None when they can): the target
    must be coarser (the same is a copy; finer bars are not in the data) and a whole multiple
    (3h bars in 4h bins: a bar ends past the bin it is counted in).

    >>> resample_problem("1h", "4h"), resample_problem("3h", "4h")
    (None, '4h is not a whole multiple of 3h: a bar would end past its bin')
    """
    have, want = timeframe_seconds(native), timeframe_seconds(target)
    if want == have:
        return f"holds {native} bars already: resample it to a coarser timeframe than {native}"
    if want < have:
        return f"holds {native} bars: {target} is finer; resampling makes coarser bars only"
    if want % have:
        return f"{target} is not a whole multiple of {native}: a bar would end past its bin"
    return None
