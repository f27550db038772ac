"""Resample canonical OHLCV bars to a coarser timeframe, emitting complete bins only.

Bins are UTC-aligned on the grid of :mod:`threadx.data.grid` (epoch origin; whole weeks
start on Monday): ``open`` first, ``high`` max, ``low`` min, ``close`` last, ``volume`` sum.
A bin is emitted only when every source slot in it holds a bar (source bars counted by the
source-grid slot they open in), so a bin with a gap inside is skipped and the last, still
partial bin is dropped: no output bar uses data that a complete bar would not have had; so is a
bin holding a bar off the source grid that closes after the bin's end.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from threadx.data.bars import OHLCV_COLUMNS
from threadx.data.grid import grid_slots, slot_start_ns
from threadx.data.timeframe import infer_timeframe, timeframe_seconds
from threadx.errors import DataError



def resample_ohlcv(df: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Bars of ``df`` (native timeframe from ``attrs["timeframe"]`` or inferred) grouped into ``timeframe`` bins.

    The target must be a whole multiple of the native timeframe (DataError otherwise).
    Returns a canonical frame with ``attrs`` copied and ``attrs["timeframe"] = timeframe``.
    """
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataError("resample_ohlcv needs a frame indexed by a DatetimeIndex; load it with load_ohlcv")
    native = df.attrs.get("timeframe") or infer_timeframe(df.index)
    target_s = timeframe_seconds(timeframe)
    attrs = dict(df.attrs)
    attrs["timeframe"] = timeframe
    if native is None:
        raise DataError("cannot resample: the native timeframe is unknown (fewer than 2 bars and no attrs['timeframe'])")
    native_s = timeframe_seconds(native)
    if target_s < native_s or target_s % native_s:
        raise DataError(f"cannot resample {native} bars to {timeframe}: the target must be a whole multiple of {native}")
    if target_s == native_s or len(df) == 0:
        out = df.loc[:, list(OHLCV_COLUMNS)].copy()
        out.attrs = attrs
        return out

    index = df.index if df.index.tz is not None else df.index.tz_localize("UTC")
    t = index.as_unit("ns").asi8
    cols = {c: df[c].to_numpy(dtype=np.float64) for c in OHLCV_COLUMNS}
    if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
        order = np.argsort(t, kind="stable")
        t = t[order]
        cols = {c: a[order] for c, a in cols.items()}

    bins = grid_slots(t, timeframe)
    src_slots = grid_slots(t, native)
    new_slot = np.ones(len(t), dtype=np.int64)
    new_slot[1:] = src_slots[1:] != src_slots[:-1]
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], len(t)]
    filled = np.add.reduceat(new_slot, starts)
    complete = filled == target_s // native_s
    # a bar off the source grid (opening at :30 of 1h bars) may close after the end of the bin it opens in:
    # such a bin would hold prices from after its own close (hh:30 bars resampled to 4h came out green,
    # each 4h bar ending 30 minutes later than labelled); it is not made
    bin_end = slot_start_ns(bins, timeframe) + target_s * 10**9
    late = (t + native_s * 10**9) > bin_end
    if late.any():
        complete &= ~np.logical_or.reduceat(late, starts)
        if not complete.any():
            first = pd.Timestamp(int(t[np.argmax(late)]), tz="UTC")
            raise DataError(f"cannot resample to {timeframe}: the {native} bars open off the {native} grid (e.g. "
                            f"{first:%Y-%m-%d %H:%M}), so every {timeframe} bin on the grid would hold prices from "
                            "after its close; align the bars to the grid first")
    s, e = starts[complete], ends[complete]
    data = {
        "open": cols["open"][s],
        "high": np.maximum.reduceat(cols["high"], starts)[complete],
        "low": np.minimum.reduceat(cols["low"], starts)[complete],
        "close": cols["close"][e - 1],
        "volume": _summed(cols["volume"], starts)[complete],
    }
    out_index = pd.DatetimeIndex(pd.to_datetime(slot_start_ns(bins[s], timeframe), unit="ns", utc=True), name="timestamp")
    out = pd.DataFrame(data, index=out_index)
    out.attrs = attrs
    return out


def _summed(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The sums of ``values`` from each start to the next; a sum past float64's range is inf
    without numpy's warning (validation names the bar: the one word the user gets)."""
    with np.errstate(over="ignore"):
        return np.add.reduceat(values, starts)
