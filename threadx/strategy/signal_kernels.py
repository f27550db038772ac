"""Numba kernels that turn indicator lines into per-bar signal flags.

Every function reads only bars ``<= t`` to decide bar ``t`` (no look-ahead) and returns
uint8 flags (``SIG_*`` bits of ``threadx.engine.layout``). A cross needs both bars
defined: ``a`` crosses above ``b`` at t when a[t] > b[t] and a[t-1] <= b[t-1].
"""
from __future__ import annotations

import numpy as np
from numba import njit

from threadx.contract import SIG_ENTER_LONG, SIG_ENTER_SHORT, SIG_EXIT_LONG, SIG_EXIT_SHORT

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def cross_signals(fast, slow, allow_short):
    """Long when ``fast`` crosses above ``slow``, exit long when it crosses below;
    with ``allow_short`` the cross below also enters short and the cross above exits it."""
    out = np.zeros(fast.shape[0], np.uint8)
    _cross_row(fast, slow, allow_short, out)
    return out


@njit(**_JIT)
def cross_signals_rows(lines, rows, values, out):
    """:func:`cross_signals` as a ``SignalRule.many``: row j crosses ``lines[rows[j, 0]]`` (fast)
    with ``lines[rows[j, 1]]`` (slow), shorting when ``values[j, 0]`` (allow_short) is not 0."""
    for j in range(rows.shape[0]):  # (rows come zeroed)
        _cross_row(lines[rows[j, 0]], lines[rows[j, 1]], values[j, 0] != 0, out[j])


@njit(**_JIT)
def _cross_row(fast, slow, allow_short, out):
    n = fast.shape[0]
    up_flags = SIG_ENTER_LONG | (SIG_EXIT_SHORT if allow_short else 0)
    down_flags = SIG_EXIT_LONG | (SIG_ENTER_SHORT if allow_short else 0)
    for t in range(1, n):  # branch-free (vectorises); a comparison with NaN is false, so a cross
        a0 = fast[t - 1]  # needs all four values defined, as an explicit check would
        b0 = slow[t - 1]
        a1 = fast[t]
        b1 = slow[t]
        up = (a1 > b1) & (a0 <= b0)
        down = (a1 < b1) & (a0 >= b0) & ~up
        out[t] = (up_flags * up) | (down_flags * down)


@njit(**_JIT)
def _zscore_reversion_row(z, entry_z, close, trend, use_trend, out):
    # Branch-free, so the loop vectorises: a comparison with NaN is false, which drops a bar
    # whose z (now or before) or trend is undefined exactly as an explicit check would.
    lo = -entry_z
    n = z.shape[0]
    if use_trend:
        for t in range(1, n):
            z0 = z[t - 1]
            z1 = z[t]
            tr = trend[t]
            c = close[t]
            long = (z1 < lo) & (z0 >= lo)
            short = (z1 > entry_z) & (z0 <= entry_z) & ~long
            out[t] = (SIG_ENTER_LONG * (long & (c > tr))) | (SIG_ENTER_SHORT * (short & (c < tr)))
    else:
        for t in range(1, n):
            z0 = z[t - 1]
            z1 = z[t]
            long = (z1 < lo) & (z0 >= lo)
            short = (z1 > entry_z) & (z0 <= entry_z) & ~long
            out[t] = (SIG_ENTER_LONG * long) | (SIG_ENTER_SHORT * short)


@njit(**_JIT)
def zscore_reversion_signals(z, entry_z, close, trend, use_trend):
    """Enter long on the bar where z crosses below -entry_z, short where it crosses above
    +entry_z; with a trend filter, longs only above ``trend`` and shorts only below."""
    out = np.zeros(z.shape[0], np.uint8)
    _zscore_reversion_row(z, entry_z, close, trend, use_trend, out)
    return out


@njit(**_JIT)
def zscore_reversion_signals_many(z, entry_z, close, trend, use_trend):
    """:func:`zscore_reversion_signals` for each threshold of the array ``entry_z``: row j is
    the flags of ``entry_z[j]`` (one call for the thresholds that share z and the trend)."""
    out = np.empty((entry_z.shape[0], z.shape[0]), np.uint8)  # every flag is written (no zeroing pass)
    for j in range(entry_z.shape[0]):
        if z.shape[0] > 0:
            out[j, 0] = 0
        _zscore_reversion_row(z, entry_z[j], close, trend, use_trend, out[j])
    return out


_TREND_MASKS = 64  # trend filters (close, trend line pairs) one zscore_reversion_rows call keeps


@njit(**_JIT)
def zscore_reversion_rows(lines, rows, values, out):
    """:func:`zscore_reversion_signals` as a ``SignalRule.many``: row j reads z, close and the
    trend at ``rows[j]`` (0, 1, 2) and entry_z, the trend period at ``values[j]`` (0, 1); a
    trend period of 0 is no trend filter.

    Work is shared between rows, with the same flags as row-by-row: the z crossings are
    computed once for consecutive rows on the same z line and threshold (a sweep's planner
    hands them over grouped, the trend varying fastest), and each trend filter once per call
    (up to ``_TREND_MASKS`` of them); a row is then those bytes ANDed, no float work per bar."""
    k = rows.shape[0]
    n = out.shape[1]
    crossings = np.zeros(n, np.uint8)  # SIG_ENTER_LONG / SIG_ENTER_SHORT of (z line, entry_z), unfiltered
    masks = np.empty((min(k, _TREND_MASKS), n), np.uint8)  # bits that the trend lets through, per bar
    mask_lines = np.full((masks.shape[0], 2), -1, np.int64)  # (close, trend) rows of each mask
    n_masks = 0
    z_row, entry_z = -1, np.nan
    for j in range(k):
        row = out[j]
        if rows[j, 0] != z_row or not values[j, 0] == entry_z:  # (a NaN threshold is never shared: no harm)
            if not (j + 1 < k and rows[j + 1, 0] == rows[j, 0] and values[j + 1, 0] == values[j, 0]):
                _zscore_reversion_row(lines[rows[j, 0]], values[j, 0], lines[rows[j, 1]], lines[rows[j, 2]],
                                      values[j, 1] > 0, row)  # a row of its own: computed in place
                continue
            z_row, entry_z = rows[j, 0], values[j, 0]
            _zscore_reversion_row(lines[z_row], entry_z, lines[z_row], lines[z_row], False, crossings)
        if not values[j, 1] > 0:
            for t in range(n):
                row[t] = crossings[t]
            continue
        m = -1
        for s in range(n_masks):
            if mask_lines[s, 0] == rows[j, 1] and mask_lines[s, 1] == rows[j, 2]:
                m = s
                break
        if m < 0 and n_masks < masks.shape[0]:
            m = n_masks
            n_masks += 1
            mask_lines[m, 0], mask_lines[m, 1] = rows[j, 1], rows[j, 2]
            _trend_mask(lines[rows[j, 1]], lines[rows[j, 2]], masks[m])
        if m >= 0:
            mask = masks[m]
            for t in range(n):
                row[t] = crossings[t] & mask[t]
        else:  # more trend filters than kept: this row's filter on the fly
            close, trend = lines[rows[j, 1]], lines[rows[j, 2]]
            for t in range(n):
                row[t] = crossings[t] & ((SIG_ENTER_LONG * (close[t] > trend[t])) |
                                         (SIG_ENTER_SHORT * (close[t] < trend[t])))


@njit(**_JIT)
def _trend_mask(close, trend, out):
    """Per bar, the entries a trend filter lets through: longs above ``trend``, shorts below
    (neither where either is NaN)."""
    for t in range(out.shape[0]):
        out[t] = (SIG_ENTER_LONG * (close[t] > trend[t])) | (SIG_ENTER_SHORT * (close[t] < trend[t]))


@njit(**_JIT)
def band_ma_signals(close, lower, upper, ma, allow_short, setup_lookback):
    """Long when close < lower band and close crosses above the MA; short when close >
    upper band and close crosses below the MA. With ``setup_lookback`` = k > 0 the band
    excursion may have happened on any of the last k bars before the cross as well."""
    out = np.zeros(close.shape[0], np.uint8)
    _band_ma_row(close, lower, upper, ma, allow_short, setup_lookback, out)
    return out


@njit(**_JIT)
def band_ma_rows(lines, rows, values, out):
    """:func:`band_ma_signals` as a ``SignalRule.many``: row j reads close, lower, upper and
    the MA at ``rows[j]`` (0-3), allow_short and setup_lookback at ``values[j]`` (0, 1)."""
    for j in range(rows.shape[0]):  # (rows come zeroed)
        _band_ma_row(lines[rows[j, 0]], lines[rows[j, 1]], lines[rows[j, 2]], lines[rows[j, 3]], values[j, 0] != 0,
                     int(values[j, 1]), out[j])


@njit(**_JIT)
def _band_ma_row(close, lower, upper, ma, allow_short, setup_lookback, out):
    n = close.shape[0]
    last_below = -1  # last bar whose close was below the lower band
    last_above = -1
    for t in range(n):
        lo = lower[t]
        hi = upper[t]
        if lo == lo and close[t] < lo:
            last_below = t
        if hi == hi and close[t] > hi:
            last_above = t
        if t == 0:
            continue
        m0 = ma[t - 1]
        m1 = ma[t]
        if not (m0 == m0 and m1 == m1):
            continue
        c0 = close[t - 1]
        c1 = close[t]
        if last_below >= 0 and t - last_below <= setup_lookback and c1 > m1 and c0 <= m0:
            out[t] = SIG_ENTER_LONG
        elif allow_short and last_above >= 0 and t - last_above <= setup_lookback and c1 < m1 and c0 >= m0:
            out[t] = SIG_ENTER_SHORT


@njit(**_JIT)
def breakout_signals(close, upper, lower, allow_short):
    """Long on the bar whose close breaks above ``upper`` (a channel of previous bars),
    short on a break below ``lower``; the opposite break exits an open position."""
    out = np.zeros(close.shape[0], np.uint8)
    _breakout_row(close, upper, lower, allow_short, out)
    return out


@njit(**_JIT)
def breakout_rows(lines, rows, values, out):
    """:func:`breakout_signals` as a ``SignalRule.many``: row j reads close, upper and lower at
    ``rows[j]`` (0-2), allow_short at ``values[j, 0]``."""
    for j in range(rows.shape[0]):  # (rows come zeroed)
        _breakout_row(lines[rows[j, 0]], lines[rows[j, 1]], lines[rows[j, 2]], values[j, 0] != 0, out[j])


@njit(**_JIT)
def _breakout_row(close, upper, lower, allow_short, out):
    n = close.shape[0]
    for t in range(1, n):
        u0 = upper[t - 1]
        u1 = upper[t]
        l0 = lower[t - 1]
        l1 = lower[t]
        if not (u0 == u0 and u1 == u1 and l0 == l0 and l1 == l1):
            continue
        c0 = close[t - 1]
        c1 = close[t]
        if c1 > u1 and c0 <= u0:
            out[t] = SIG_ENTER_LONG | SIG_EXIT_SHORT
        elif c1 < l1 and c0 >= l0:
            out[t] = SIG_EXIT_LONG | (SIG_ENTER_SHORT if allow_short else 0)


@njit(**_JIT)
def flip_signals(direction, allow_short):
    """Long when a +1/-1 direction flips up, exit (or reverse short) when it flips down."""
    out = np.zeros(direction.shape[0], np.uint8)
    _flip_row(direction, allow_short, out)
    return out


@njit(**_JIT)
def flip_rows(lines, rows, values, out):
    """:func:`flip_signals` as a ``SignalRule.many``: row j reads the direction at ``rows[j, 0]``,
    allow_short at ``values[j, 0]``."""
    for j in range(rows.shape[0]):  # (rows come zeroed)
        _flip_row(lines[rows[j, 0]], values[j, 0] != 0, out[j])


@njit(**_JIT)
def _flip_row(direction, allow_short, out):
    n = direction.shape[0]
    for t in range(1, n):
        d0 = direction[t - 1]
        d1 = direction[t]
        if not (d0 == d0 and d1 == d1):
            continue
        if d1 > 0 and d0 < 0:
            out[t] = SIG_ENTER_LONG | (SIG_EXIT_SHORT if allow_short else 0)
        elif d1 < 0 and d0 > 0:
            out[t] = SIG_EXIT_LONG | (SIG_ENTER_SHORT if allow_short else 0)
