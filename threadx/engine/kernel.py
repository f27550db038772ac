"""The one engine kernel: a numba bar loop for every strategy.

Strategies hand the kernel precomputed arrays (a uint8 signal per bar, and the ATR and
band lines their exits use) plus a float64 parameter vector (see ``layout``). The loop
does fills, costs, sizing, stops and bookkeeping, and keeps the metrics as running sums,
so fast mode needs no per-bar arrays.

Timeline of one bar ``i`` (see SPEC §3):

1. funding is settled at the open for a position held into the bar;
2. orders pending from the previous close (``next_open`` mode) fill at the open:
   an exit first, then an entry;
3. an open position is tested against its stop and target with the bar's open, high and
   low (gap fills at the open; both inside one bar: stop first unless optimistic),
   then against liquidation;
4. at the close: end of data closes the position on the last bar; otherwise exit
   signals and the holding limit are acted on (at this close in ``close`` mode, at the
   next open in ``next_open`` mode), then entry signals, then the trailing stop is
   moved for the next bar;
5. equity is marked at the close and the running metrics are updated.

Full mode books one row per trade (``layout.TRADE_COLUMNS``), including its stop as set at
the fill and as last in force (a trailing rule moves it) and its target in force from the
fill and on the last bar tested (a mid-band target follows the band); fast mode passes a
trades array without rows and writes none of it.

Every helper is a plain ``@njit`` function over scalars and arrays without allocation,
which numba can also compile as CUDA device functions for the GPU batch kernel.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from threadx.engine.layout import (
    EXIT_END_OF_DATA,
    EXIT_LIQUIDATION,
    EXIT_MAX_HOLD,
    EXIT_SIGNAL,
    EXIT_STOP_LOSS,
    EXIT_TAKE_PROFIT,
    EXIT_TRAILING_STOP,
    FILL_CLOSE,
    M_AVG_BARS_HELD,
    M_AVG_LOSS,
    M_AVG_WIN,
    M_CAGR,
    M_CALMAR,
    M_EXPECTANCY,
    M_EXPOSURE,
    M_FINAL_EQUITY,
    M_LARGEST_LOSS,
    M_LARGEST_WIN,
    M_LIQUIDATED,
    M_MAX_DD,
    M_MAX_DD_BARS,
    M_N_AMBIGUOUS,
    M_N_BARS,
    M_N_LONG,
    M_N_SHORT,
    M_N_SKIPPED,
    M_N_TRADES,
    M_PROFIT_FACTOR,
    M_SHARPE,
    M_SORTINO,
    M_SQN,
    M_TOTAL_FEES,
    M_TOTAL_FUNDING,
    M_TOTAL_RETURN,
    M_VOLATILITY,
    M_WIN_RATE,
    N_METRICS,
    N_STATE,
    N_TRADE_COLS,
    P_BARS_PER_YEAR,
    P_FEE_RATE,
    P_FILL,
    P_FRACTION,
    P_INITIAL_CAPITAL,
    P_LEVERAGE,
    P_MAX_HOLD,
    P_MIN_NOTIONAL,
    P_OPTIMISTIC,
    P_RISK,
    P_SIZING,
    P_SLIP_RATE,
    P_SPACING,
    P_STOP_ATR,
    P_STOP_PCT,
    P_TARGET_MID,
    P_TP_ATR,
    P_TP_PCT,
    P_TRAIL_ATR,
    P_TRAIL_BAND_PCT,
    P_TRAIL_MODE,
    P_TRAIL_PCT,
    P_USE_FUNDING,
    S_AMBIGUOUS,
    S_ARMED,
    S_BARS_HELD,
    S_CASH,
    S_DIR,
    S_DOWN_SQ,
    S_ENTRY_FEE,
    S_ENTRY_I,
    S_ENTRY_PX,
    S_EQ_PREV,
    S_EXPOSED_BARS,
    S_FEES,
    S_FUNDING,
    S_FUNDING_TOTAL,
    S_GROSS_LOSS,
    S_GROSS_PROFIT,
    S_LARGEST_LOSS,
    S_LARGEST_WIN,
    S_LAST_ENTRY_SIG,
    S_LIQ,
    S_LIQUIDATED,
    S_MARGIN,
    S_MAX_DD,
    S_MAX_DD_BARS,
    S_N_LONG,
    S_N_LOSSES,
    S_N_SHORT,
    S_N_TRADES,
    S_N_WINS,
    S_PEAK,
    S_PEAK_I,
    S_PEND_ENTRY,
    S_PEND_EXIT,
    S_PEND_SIG_I,
    S_PNL_M2,
    S_PNL_MEAN,
    S_QTY,
    S_RET_SUM,
    S_RET_SUMSQ,
    S_RET_N,
    S_SKIPPED,
    S_STOP,
    S_STOP_ENTRY,
    S_TP,
    S_TRADE_ROWS,
    S_TRAILED,
    SIG_ENTER_LONG,
    SIG_ENTER_SHORT,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    SIZING_ALL_IN,
    SIZING_FRACTION,
    SIZING_RISK,
    T_BARS_HELD,
    T_ENTRY_I,
    T_ENTRY_PX,
    T_EXIT_I,
    T_EXIT_PX,
    T_FEES,
    T_FUNDING,
    T_PNL,
    T_QTY,
    T_REASON,
    T_RETURN_PCT,
    T_SIDE,
    T_STOP_ENTRY,
    T_STOP_EXIT,
    T_TARGET,
    T_TARGET_EXIT,
    TRAIL_ATR,
    TRAIL_BAND,
    TRAIL_PCT,
)

_JIT = dict(cache=True, nogil=True)
# The bar loop and its helpers allocate nothing, so they are compiled without numba's
# reference counting (_nrt=False) and inlined at IR level: otherwise every helper call
# per bar pays atomic increfs/decrefs on each array argument, several times the cost
# of the work itself (measured: 0.84 ms -> 0.10 ms for 12.5k bars without trades).
_STEP_JIT = dict(cache=True, nogil=True, _nrt=False, inline="always")
_LOOP_JIT = dict(cache=True, nogil=True, _nrt=False)
# Full-mode-only work called once per trade stays out of line, so the inlined bar loop
# that sweeps run (fast mode) does not grow with it.
_RECORD_JIT = dict(cache=True, nogil=True, _nrt=False)
_NO_SIGNAL_BAR = -1.0e18
_ENTRY_FLAGS = SIG_ENTER_LONG | SIG_ENTER_SHORT


@njit(**_STEP_JIT)
def init_state(st, p):
    """Reset the state vector for a new run."""
    for k in range(st.shape[0]):
        st[k] = 0.0
    st[S_CASH] = p[P_INITIAL_CAPITAL]
    st[S_EQ_PREV] = p[P_INITIAL_CAPITAL]
    st[S_PEAK] = p[P_INITIAL_CAPITAL]
    st[S_PEAK_I] = -1.0
    st[S_STOP] = np.nan
    st[S_STOP_ENTRY] = np.nan
    st[S_TP] = np.nan
    st[S_LAST_ENTRY_SIG] = _NO_SIGNAL_BAR
    st[S_LARGEST_WIN] = -np.inf
    st[S_LARGEST_LOSS] = np.inf


@njit(**_STEP_JIT)
def level_distance(pct, atr_mult, px, atr, sig_i):
    """Price distance of a stop or target: pct x fill price + atr_mult x ATR of the signal
    bar. 0 when both are off, -1 when it needs an ATR the signal bar does not have."""
    dist = 0.0
    if pct > 0.0:
        dist += pct * px
    if atr_mult > 0.0:
        a = atr[sig_i]
        if not (a > 0.0):  # NaN or non-positive ATR
            return -1.0
        dist += atr_mult * a
    return dist


@njit(**_STEP_JIT)
def open_position(i, sig_i, raw_price, direction, p, st, atr):
    """Enter ``direction`` (+1/-1) at ``raw_price`` on bar ``i`` for the signal of bar ``sig_i``.

    Returns True when a position was opened, False when the signal was skipped
    (no stop distance for risk sizing, zero quantity, below min notional).
    """
    slip = p[P_SLIP_RATE]
    px = raw_price * (1.0 + slip) if direction > 0 else raw_price * (1.0 - slip)
    stop_dist = level_distance(p[P_STOP_PCT], p[P_STOP_ATR], px, atr, sig_i)
    tp_dist = level_distance(p[P_TP_PCT], p[P_TP_ATR], px, atr, sig_i)
    if stop_dist < 0.0 or tp_dist < 0.0:  # an ATR level on a bar without a defined ATR
        st[S_SKIPPED] += 1.0
        return False
    has_stop = stop_dist > 0.0
    has_tp = tp_dist > 0.0

    equity = st[S_CASH]
    lev = p[P_LEVERAGE]
    fee_rate = p[P_FEE_RATE]
    max_notional = equity / (1.0 / lev + fee_rate)  # margin + entry fee == equity
    sizing = p[P_SIZING]
    notional = 0.0
    if sizing == SIZING_ALL_IN:
        notional = max_notional
    elif sizing == SIZING_FRACTION:
        notional = equity * p[P_FRACTION] * lev
    elif sizing == SIZING_RISK:
        if not has_stop:
            st[S_SKIPPED] += 1.0
            return False
        notional = equity * p[P_RISK] / stop_dist * px
    if notional > max_notional:
        notional = max_notional
    if not (notional > 0.0) or notional < p[P_MIN_NOTIONAL] or not (px > 0.0):
        st[S_SKIPPED] += 1.0
        return False

    qty = notional / px
    fee = notional * fee_rate
    margin = notional / lev
    st[S_CASH] = equity - margin - fee
    st[S_DIR] = float(direction)
    st[S_QTY] = qty
    st[S_ENTRY_PX] = px
    st[S_ENTRY_I] = float(i)
    st[S_MARGIN] = margin
    st[S_ENTRY_FEE] = fee
    st[S_FUNDING] = 0.0
    st[S_STOP] = px - direction * stop_dist if has_stop else np.nan
    st[S_STOP_ENTRY] = st[S_STOP]
    st[S_TP] = px + direction * tp_dist if has_tp else np.nan
    st[S_TRAILED] = 0.0
    st[S_ARMED] = 0.0
    st[S_LAST_ENTRY_SIG] = float(sig_i)
    st[S_FEES] += fee
    if direction > 0:
        st[S_N_LONG] += 1.0
    else:
        st[S_N_SHORT] += 1.0
    st[S_LIQ] = liquidation_price(p, st)
    return True


@njit(**_STEP_JIT)
def target_level(d, tgt, p, bmid, j):
    """The target of a ``d`` position on the bar after bar ``j``: the fixed target ``tgt``
    (NaN = none) or, with a mid-band target, the nearer of it and ``bmid[j]`` (known at
    the close of bar j)."""
    return target_at(d, tgt, p[P_TARGET_MID] > 0.0, bmid, j)


@njit(**_STEP_JIT)
def target_at(d, tgt, target_mid, bmid, j):
    """:func:`target_level` with the mid-band switch read once (hot loops)."""
    if target_mid and j >= 0:
        m = bmid[j]
        if m == m:
            # the nearer of the two levels (comparisons, not min/max: numba's built-in CUDA
            # target cannot compile the builtin min/max; both values are non-NaN here)
            if tgt != tgt or (d > 0.0 and m < tgt) or (d < 0.0 and m > tgt):
                tgt = m
    return tgt


@njit(**_RECORD_JIT)
def record_levels(row, tested_i, p, st, trades, bmid):
    """Write the stop and target levels of the trade being closed into ``trades[row]``:
    the stop as set at the fill and as last in force, the target in force from the fill
    (the first bar tested is the one after the signal bar, in both fill modes) and on
    ``tested_i``, the last bar tested. Full mode only, once per trade."""
    d = st[S_DIR]
    trades[row, T_STOP_ENTRY] = st[S_STOP_ENTRY]
    trades[row, T_STOP_EXIT] = st[S_STOP]
    trades[row, T_TARGET] = target_level(d, st[S_TP], p, bmid, int(st[S_LAST_ENTRY_SIG]))
    trades[row, T_TARGET_EXIT] = target_level(d, st[S_TP], p, bmid, tested_i - 1)


@njit(**_STEP_JIT)
def close_position(i, raw_price, reason, p, st, trades, bmid, tested_i):
    """Exit the open position at ``raw_price`` on bar ``i`` and book the trade.

    ``tested_i``: the last bar on which the position was tested against its stop and
    target (``i``, or ``i - 1`` for an exit at the open); full mode records the levels in
    force then, and those in force from the fill (fast mode records nothing)."""
    d = st[S_DIR]
    qty = st[S_QTY]
    entry_px = st[S_ENTRY_PX]
    slip = p[P_SLIP_RATE]
    px = raw_price * (1.0 - slip) if d > 0 else raw_price * (1.0 + slip)
    gross = d * qty * (px - entry_px)
    fee = qty * px * p[P_FEE_RATE]
    cash = st[S_CASH] + st[S_MARGIN] + gross - fee
    if cash <= 0.0:
        # the account is bust (liquidation, or a gap through the stop): the loss stops at
        # the equity left, as an exchange's insurance fund takes the rest, and trading ends
        gross -= cash
        cash = 0.0
        st[S_LIQUIDATED] = 1.0
    st[S_CASH] = cash
    st[S_FEES] += fee
    pnl = gross - st[S_ENTRY_FEE] - fee - st[S_FUNDING]
    bars = i - st[S_ENTRY_I]

    n = st[S_N_TRADES] + 1.0
    st[S_N_TRADES] = n
    delta = pnl - st[S_PNL_MEAN]
    st[S_PNL_MEAN] += delta / n
    st[S_PNL_M2] += delta * (pnl - st[S_PNL_MEAN])
    st[S_BARS_HELD] += bars
    if pnl > 0.0:
        st[S_N_WINS] += 1.0
        st[S_GROSS_PROFIT] += pnl
    elif pnl < 0.0:
        st[S_N_LOSSES] += 1.0
        st[S_GROSS_LOSS] -= pnl
    if pnl > st[S_LARGEST_WIN]:
        st[S_LARGEST_WIN] = pnl
    if pnl < st[S_LARGEST_LOSS]:
        st[S_LARGEST_LOSS] = pnl

    row = int(st[S_TRADE_ROWS])
    if row < trades.shape[0]:
        trades[row, T_ENTRY_I] = st[S_ENTRY_I]
        trades[row, T_EXIT_I] = float(i)
        trades[row, T_SIDE] = d
        trades[row, T_QTY] = qty
        trades[row, T_ENTRY_PX] = entry_px
        trades[row, T_EXIT_PX] = px
        trades[row, T_FEES] = st[S_ENTRY_FEE] + fee
        trades[row, T_FUNDING] = st[S_FUNDING]
        trades[row, T_PNL] = pnl
        trades[row, T_RETURN_PCT] = 100.0 * pnl / (qty * entry_px)
        trades[row, T_BARS_HELD] = bars
        trades[row, T_REASON] = float(reason)
        record_levels(row, tested_i, p, st, trades, bmid)
        st[S_TRADE_ROWS] = row + 1.0

    st[S_DIR] = 0.0
    st[S_QTY] = 0.0
    st[S_MARGIN] = 0.0
    st[S_ENTRY_FEE] = 0.0
    st[S_FUNDING] = 0.0
    st[S_STOP] = np.nan
    st[S_STOP_ENTRY] = np.nan
    st[S_TP] = np.nan
    st[S_TRAILED] = 0.0
    st[S_ARMED] = 0.0


@njit(**_STEP_JIT)
def liquidation_price(p, st):
    """Raw price at which closing the open position leaves zero equity after the exit fee
    and slippage: solves cash + margin + d*qty*(fill - entry) - qty*fill*fee = 0."""
    d = st[S_DIR]
    qty = st[S_QTY]
    fill = (d * qty * st[S_ENTRY_PX] - st[S_CASH] - st[S_MARGIN]) / (qty * (d - p[P_FEE_RATE]))
    return fill / (1.0 - d * p[P_SLIP_RATE])


@njit(**_STEP_JIT)
def adverse_level(d, stop, liq):
    """The adverse level a ``d`` position is tested against: its stop, or the liquidation
    price (equity net of the exit fee and slippage reaches zero) when there is no stop or
    the liquidation price is nearer the entry (it is then hit first)."""
    if stop != stop or d * (stop - liq) < 0.0:
        return liq
    return stop


@njit(**_STEP_JIT)
def check_intrabar_exits(i, o, h, l, bmid, p, st, trades):
    """Stop or liquidation, and target, of the open position on bar i (gap fills at the open)."""
    d = st[S_DIR]
    stop = st[S_STOP]
    tgt = target_level(d, st[S_TP], p, bmid, i - 1)  # a mid band known at the previous close
    stop_reason = EXIT_TRAILING_STOP if st[S_TRAILED] > 0.0 else EXIT_STOP_LOSS
    level = adverse_level(d, stop, st[S_LIQ])
    if level != stop:  # no stop, or the liquidation price is nearer
        stop = level
        stop_reason = EXIT_LIQUIDATION
    has_stop = True
    has_tgt = tgt == tgt
    op = o[i]
    # with d = +1/-1 one test serves both sides: d * (price - level) <= 0 means "at or
    # beyond the stop", >= 0 "at or beyond the target" (sign flips are exact in floats)
    adverse = l[i] if d > 0.0 else h[i]
    favourable = h[i] if d > 0.0 else l[i]
    reason = -1
    px = 0.0
    if has_stop and d * (op - stop) <= 0.0:
        reason = stop_reason
        px = op
    elif has_tgt and d * (op - tgt) >= 0.0:
        reason = EXIT_TAKE_PROFIT
        px = op
    else:
        hit_stop = has_stop and d * (adverse - stop) <= 0.0
        hit_tgt = has_tgt and d * (favourable - tgt) >= 0.0
        if hit_stop and hit_tgt:
            st[S_AMBIGUOUS] += 1.0
            hit_stop = p[P_OPTIMISTIC] == 0.0
            hit_tgt = not hit_stop
        if hit_stop:
            reason = stop_reason
            px = stop
        elif hit_tgt:
            reason = EXIT_TAKE_PROFIT
            px = tgt
    if reason >= 0:
        close_position(i, px, reason, p, st, trades, bmid, i)


@njit(**_STEP_JIT)
def update_trailing_stop(i, h, l, c, atr, blo, bmid, bhi, p, st):
    """Move the stop of the open position with this close; it applies from the next bar."""
    mode = p[P_TRAIL_MODE]
    d = st[S_DIR]
    cand = np.nan
    if mode == TRAIL_ATR:
        cand = c[i] - d * p[P_TRAIL_ATR] * atr[i]
    elif mode == TRAIL_PCT:
        cand = c[i] * (1.0 - d * p[P_TRAIL_PCT])
    elif mode == TRAIL_BAND:
        if st[S_ARMED] == 0.0:
            m = bmid[i]
            # on a close-fill entry bar only the close came after the fill
            entry_bar = p[P_FILL] == FILL_CLOSE and i == st[S_ENTRY_I]
            reach = c[i] if entry_bar else (h[i] if d > 0.0 else l[i])
            if d * (reach - m) >= 0.0:
                st[S_ARMED] = 1.0
        if st[S_ARMED] > 0.0:
            f = p[P_TRAIL_BAND_PCT]
            if d > 0.0:
                cand = blo[i] + (bmid[i] - blo[i]) * f
            else:
                cand = bhi[i] - (bhi[i] - bmid[i]) * f
    if cand == cand:
        stop = st[S_STOP]
        if stop != stop or (d > 0.0 and cand > stop) or (d < 0.0 and cand < stop):
            st[S_STOP] = cand
            st[S_TRAILED] = 1.0


@njit(**_STEP_JIT)
def track_drawdown(i, eq, peak, peak_i, max_dd, max_dd_bars):
    """(peak, its bar, max drawdown, longest drawdown in bars) after equity ``eq`` at the
    close of bar i. A drawdown's length runs from its peak bar to the bar that recovers it,
    or to bar i while it lasts."""
    if eq >= peak:
        if peak_i < i - 1 and max_dd_bars < i - peak_i:
            max_dd_bars = i - peak_i  # recovered: peak to recovery
        peak = eq
        peak_i = float(i)
    else:
        if eq < peak * (1.0 + max_dd):  # a deeper drawdown: divide only then
            max_dd = eq / peak - 1.0
        if i - peak_i > max_dd_bars:
            max_dd_bars = i - peak_i
    return peak, peak_i, max_dd, max_dd_bars


@njit(**_STEP_JIT)
def mark_to_market(i, c, st, equity):
    """Equity at the close of bar i, and the running return / drawdown statistics."""
    d = st[S_DIR]
    eq = st[S_CASH]
    if d != 0.0:
        eq += st[S_MARGIN] + d * st[S_QTY] * (c[i] - st[S_ENTRY_PX])
        st[S_EXPOSED_BARS] += 1.0
    if equity.shape[0] > 0:
        equity[i] = eq
    prev = st[S_EQ_PREV]
    st[S_RET_N] += 1.0
    if eq != prev and prev > 0.0:  # flat bars add a zero return: no division needed
        r = eq / prev - 1.0
        st[S_RET_SUM] += r
        st[S_RET_SUMSQ] += r * r
        loss = r if r < 0.0 else 0.0  # adding 0.0 leaves the sum unchanged
        st[S_DOWN_SQ] += loss * loss
    st[S_PEAK], st[S_PEAK_I], st[S_MAX_DD], st[S_MAX_DD_BARS] = track_drawdown(
        i, eq, st[S_PEAK], st[S_PEAK_I], st[S_MAX_DD], st[S_MAX_DD_BARS])
    st[S_EQ_PREV] = eq


@njit(**_STEP_JIT)
def step(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, trades, equity):
    """Advance the backtest by bar ``i`` (0 <= i < n)."""
    close_fill = p[P_FILL] == FILL_CLOSE

    # 1. funding settled at the open for a position held into this bar
    if st[S_DIR] != 0.0 and p[P_USE_FUNDING] > 0.0:
        rate = funding[i]
        if rate == rate and rate != 0.0:
            pay = rate * st[S_QTY] * st[S_ENTRY_PX] * st[S_DIR]
            st[S_CASH] -= pay
            st[S_FUNDING] += pay
            st[S_FUNDING_TOTAL] += pay
            st[S_LIQ] = liquidation_price(p, st)  # less (or more) cash behind the position

    # 2. orders pending from the previous close fill at this open
    if st[S_PEND_EXIT] > 0.0:
        if st[S_DIR] != 0.0:
            close_position(i, o[i], int(st[S_PEND_EXIT]) - 1, p, st, trades, bmid, i - 1)
        st[S_PEND_EXIT] = 0.0
    if st[S_PEND_ENTRY] != 0.0:
        if st[S_DIR] == 0.0 and st[S_LIQUIDATED] == 0.0:
            open_position(i, int(st[S_PEND_SIG_I]), o[i], int(st[S_PEND_ENTRY]), p, st, atr)
        st[S_PEND_ENTRY] = 0.0

    # 3. intrabar stop / target / liquidation
    if st[S_DIR] != 0.0:
        check_intrabar_exits(i, o, h, l, bmid, p, st, trades)

    # 4. decisions at the close
    if i == n - 1:
        if st[S_DIR] != 0.0:
            close_position(i, c[i], EXIT_END_OF_DATA, p, st, trades, bmid, i)
    else:
        s = sig[i]
        d = st[S_DIR]
        if d != 0.0:
            reason = -1
            if (d > 0.0 and (s & SIG_EXIT_LONG) != 0) or (d < 0.0 and (s & SIG_EXIT_SHORT) != 0):
                reason = EXIT_SIGNAL
            elif p[P_MAX_HOLD] > 0.0:
                held = i - st[S_ENTRY_I] + (0.0 if close_fill else 1.0)
                if held >= p[P_MAX_HOLD]:
                    reason = EXIT_MAX_HOLD
            if reason >= 0:
                if close_fill:
                    close_position(i, c[i], reason, p, st, trades, bmid, i)
                else:
                    st[S_PEND_EXIT] = reason + 1.0
        if (st[S_DIR] == 0.0 or st[S_PEND_EXIT] > 0.0) and st[S_LIQUIDATED] == 0.0:
            want = 0
            enter_long = (s & SIG_ENTER_LONG) != 0
            enter_short = (s & SIG_ENTER_SHORT) != 0
            if enter_long and enter_short:
                st[S_SKIPPED] += 1.0  # contradictory signal: neither side is taken
            elif enter_long:
                want = 1
            elif enter_short:
                want = -1
            if want != 0 and i - st[S_LAST_ENTRY_SIG] >= p[P_SPACING]:
                if close_fill:
                    open_position(i, i, c[i], want, p, st, atr)
                else:
                    st[S_PEND_ENTRY] = float(want)
                    st[S_PEND_SIG_I] = float(i)
        if st[S_DIR] != 0.0 and st[S_PEND_EXIT] == 0.0 and p[P_TRAIL_MODE] > 0.0:
            update_trailing_stop(i, h, l, c, atr, blo, bmid, bhi, p, st)

    # 5. equity at the close
    mark_to_market(i, c, st, equity)


@njit(**_STEP_JIT)
def finalize_metrics(st, p, n, m):
    """Fill the metrics vector ``m`` from the running sums after the last bar."""
    init = p[P_INITIAL_CAPITAL]
    final = st[S_EQ_PREV]
    bpy = p[P_BARS_PER_YEAR]
    m[M_FINAL_EQUITY] = final
    m[M_TOTAL_RETURN] = final / init - 1.0
    m[M_CAGR] = (final / init) ** (bpy / n) - 1.0 if final > 0.0 else -1.0
    rn = st[S_RET_N]
    mean = st[S_RET_SUM] / rn if rn > 0.0 else 0.0
    var = (st[S_RET_SUMSQ] - st[S_RET_SUM] * mean) / (rn - 1.0) if rn > 1.0 else 0.0
    if var <= 1e-12 * st[S_RET_SUMSQ] / rn:  # rounding residue of a (near) constant series
        var = 0.0
    std = math.sqrt(var)
    ann = math.sqrt(bpy)
    m[M_VOLATILITY] = std * ann
    m[M_SHARPE] = mean / std * ann if std > 0.0 else 0.0
    down = math.sqrt(st[S_DOWN_SQ] / rn) if rn > 0.0 else 0.0
    if down > 0.0:
        m[M_SORTINO] = mean / down * ann
    else:
        m[M_SORTINO] = np.inf if mean > 0.0 else 0.0
    mdd = st[S_MAX_DD]
    m[M_MAX_DD] = mdd
    m[M_MAX_DD_BARS] = st[S_MAX_DD_BARS]
    if mdd < 0.0:
        m[M_CALMAR] = m[M_CAGR] / -mdd
    else:
        m[M_CALMAR] = np.inf if m[M_CAGR] > 0.0 else 0.0

    nt = st[S_N_TRADES]
    wins = st[S_N_WINS]
    losses = st[S_N_LOSSES]
    gp = st[S_GROSS_PROFIT]
    gl = st[S_GROSS_LOSS]
    m[M_N_TRADES] = nt
    m[M_WIN_RATE] = wins / nt if nt > 0.0 else np.nan
    if gl > 0.0:
        m[M_PROFIT_FACTOR] = gp / gl
    else:
        m[M_PROFIT_FACTOR] = np.inf if gp > 0.0 else np.nan
    m[M_EXPECTANCY] = st[S_PNL_MEAN] if nt > 0.0 else np.nan
    m[M_AVG_WIN] = gp / wins if wins > 0.0 else np.nan
    m[M_AVG_LOSS] = -gl / losses if losses > 0.0 else np.nan
    m[M_LARGEST_WIN] = st[S_LARGEST_WIN] if wins > 0.0 else np.nan
    m[M_LARGEST_LOSS] = st[S_LARGEST_LOSS] if losses > 0.0 else np.nan
    m[M_AVG_BARS_HELD] = st[S_BARS_HELD] / nt if nt > 0.0 else np.nan
    m[M_EXPOSURE] = st[S_EXPOSED_BARS] / n
    m[M_TOTAL_FEES] = st[S_FEES]
    m[M_TOTAL_FUNDING] = st[S_FUNDING_TOTAL]
    pnl_std = math.sqrt(st[S_PNL_M2] / (nt - 1.0)) if nt > 1.0 else 0.0
    m[M_SQN] = math.sqrt(nt) * st[S_PNL_MEAN] / pnl_std if pnl_std > 0.0 else np.nan
    m[M_N_LONG] = st[S_N_LONG]
    m[M_N_SHORT] = st[S_N_SHORT]
    m[M_N_SKIPPED] = st[S_SKIPPED]
    m[M_N_AMBIGUOUS] = st[S_AMBIGUOUS]
    m[M_LIQUIDATED] = st[S_LIQUIDATED]
    m[M_N_BARS] = float(n)


@njit(**_STEP_JIT)
def skip_flat_bars(i, n, sig, st, equity):
    """Book the bars from ``i`` on which a flat account with nothing pending does nothing but
    mark its cash (no entry flag, or trading ended by liquidation; the last bar never acts
    when flat); return the first bar that needs :func:`step`.

    The caller checks that the previous close left equity at the cash (``EQ_PREV == CASH``),
    so these bars add zero returns and the running figures change as one ``step`` per bar
    would change them: the bar count, the peak bar, the drawdown length."""
    j = i
    if st[S_LIQUIDATED] > 0.0:
        j = n
    else:
        while j < n - 1 and (sig[j] & _ENTRY_FLAGS) == 0:
            j += 1
        if j == n - 1:
            j = n
    if j == i:
        return i
    eq = st[S_CASH]
    if equity.shape[0] > 0:
        for k in range(i, j):
            equity[k] = eq
    st[S_RET_N] += float(j - i)
    last = float(j - 1)
    if eq >= st[S_PEAK]:
        st[S_PEAK] = eq  # the previous bar was at this peak already: no drawdown ended here
        st[S_PEAK_I] = last
    else:
        if eq < st[S_PEAK] * (1.0 + st[S_MAX_DD]):
            st[S_MAX_DD] = eq / st[S_PEAK] - 1.0
        if last - st[S_PEAK_I] > st[S_MAX_DD_BARS]:
            st[S_MAX_DD_BARS] = last - st[S_PEAK_I]
    return j


@njit(**_STEP_JIT)
def block_of(i, block_end, b):
    """The time block of bar ``i`` (see :func:`run`), searched from block ``b`` (that of an
    earlier bar) on."""
    while b < block_end.shape[0] - 1 and i >= block_end[b]:
        b += 1
    return b


@njit(**_STEP_JIT)
def hold_quiet_bars(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, equity, block_end, blocks, b):
    """Run the bars from ``i`` on which the open position (nothing pending) is only held: no
    funding payment, no stop, target or liquidation touched, no exit signal, the holding limit
    not reached, not the last bar (``b``: the block of an earlier bar). Such a bar only moves a
    trailing stop and marks equity, so the running figures live in local variables here
    instead of the state vector; the
    arithmetic is :func:`mark_to_market`'s, in the same order, so the results are the same
    bit for bit. Returns the first bar that needs :func:`step` (``i`` when bar ``i`` does)."""
    d = st[S_DIR]
    exit_flag = SIG_EXIT_LONG if d > 0.0 else SIG_EXIT_SHORT
    use_funding = p[P_USE_FUNDING] > 0.0
    max_hold = p[P_MAX_HOLD]
    held_extra = 0.0 if p[P_FILL] == FILL_CLOSE else 1.0
    entry_i = st[S_ENTRY_I]
    trail = p[P_TRAIL_MODE] > 0.0
    liq = st[S_LIQ]  # cash, margin and size do not change on a quiet bar
    stop = adverse_level(d, st[S_STOP], liq)
    tp = st[S_TP]
    target_mid = p[P_TARGET_MID] > 0.0
    cash = st[S_CASH]
    margin = st[S_MARGIN]
    dq = d * st[S_QTY]
    entry_px = st[S_ENTRY_PX]
    full = equity.shape[0] > 0
    nb = block_end.shape[0]
    # the current block's sums are carried in locals too (loaded and stored back whole, so
    # the additions are those of one += per bar into the array, in the same order)
    block_stop = 0
    bsum = 0.0
    bsq = 0.0
    if nb > 0:
        b = block_of(i, block_end, b)
        block_stop = block_end[b] if b < nb - 1 else c.shape[0]
        bsum = blocks[b, 0]
        bsq = blocks[b, 1]
    prev = st[S_EQ_PREV]
    exposed = st[S_EXPOSED_BARS]
    ret_n = st[S_RET_N]
    ret_sum = st[S_RET_SUM]
    ret_sumsq = st[S_RET_SUMSQ]
    down_sq = st[S_DOWN_SQ]
    peak = st[S_PEAK]
    peak_i = st[S_PEAK_I]
    max_dd = st[S_MAX_DD]
    max_dd_bars = st[S_MAX_DD_BARS]
    j = i
    while j < n - 1:
        if use_funding:
            rate = funding[j]
            if rate == rate and rate != 0.0:
                break
        op = o[j]
        if d * (op - stop) <= 0.0:
            break
        tgt = target_at(d, tp, target_mid, bmid, j - 1)
        has_tgt = tgt == tgt
        if has_tgt and d * (op - tgt) >= 0.0:
            break
        if d > 0.0:
            adverse = l[j]
            favourable = h[j]
        else:
            adverse = h[j]
            favourable = l[j]
        if d * (adverse - stop) <= 0.0 or (has_tgt and d * (favourable - tgt) >= 0.0):
            break
        if (sig[j] & exit_flag) != 0:
            break
        if max_hold > 0.0 and j - entry_i + held_extra >= max_hold:
            break
        if trail:
            update_trailing_stop(j, h, l, c, atr, blo, bmid, bhi, p, st)
            stop = adverse_level(d, st[S_STOP], liq)
        eq = cash + (margin + dq * (c[j] - entry_px))
        exposed += 1.0
        if full:
            equity[j] = eq
        ret_n += 1.0
        if eq != prev and prev > 0.0:
            r = eq / prev - 1.0
            ret_sum += r
            ret_sumsq += r * r
            loss = r if r < 0.0 else 0.0  # a select, not a branch: the sign of r is a coin toss
            down_sq += loss * loss
            if nb > 0:
                if j >= block_stop:  # into a later block: store this one, load that one
                    blocks[b, 0] = bsum
                    blocks[b, 1] = bsq
                    b = block_of(j, block_end, b)
                    block_stop = block_end[b] if b < nb - 1 else c.shape[0]
                    bsum = blocks[b, 0]
                    bsq = blocks[b, 1]
                bsum += r
                bsq += r * r
        peak, peak_i, max_dd, max_dd_bars = track_drawdown(j, eq, peak, peak_i, max_dd, max_dd_bars)
        prev = eq
        j += 1
    if nb > 0:
        blocks[b, 0] = bsum
        blocks[b, 1] = bsq
    st[S_EQ_PREV] = prev
    st[S_EXPOSED_BARS] = exposed
    st[S_RET_N] = ret_n
    st[S_RET_SUM] = ret_sum
    st[S_RET_SUMSQ] = ret_sumsq
    st[S_DOWN_SQ] = down_sq
    st[S_PEAK] = peak
    st[S_PEAK_I] = peak_i
    st[S_MAX_DD] = max_dd
    st[S_MAX_DD_BARS] = max_dd_bars
    return j


@njit(**_LOOP_JIT)
def run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, block_end, blocks):
    """Run the whole backtest. Full mode: ``trades`` has rows and ``equity`` has n slots;
    fast mode: pass a (0, N_TRADE_COLS) trades array and an empty equity array.

    ``block_end`` (empty: off) asks for the per-bar returns and their squares summed by time
    block into ``blocks``: block ``b`` covers bars ``block_end[b-1] <= i < block_end[b]``;
    ``blocks[b, 0]`` gets the sum of the returns, ``blocks[b, 1]`` the sum of their squares
    (the Sharpe's returns, so any union of blocks yields its exact per-bar Sharpe; for PBO).

    Bars on which nothing can happen are run in bulk (:func:`skip_flat_bars`,
    :func:`hold_quiet_bars`); every other bar goes through :func:`step`."""
    n = c.shape[0]
    init_state(st, p)
    nb = block_end.shape[0]
    for b in range(nb):
        blocks[b, 0] = 0.0
        blocks[b, 1] = 0.0
    b = 0  # the block of the last return added on the step path
    i = 0
    while i < n:
        if st[S_PEND_ENTRY] == 0.0 and st[S_PEND_EXIT] == 0.0:
            if st[S_DIR] == 0.0:
                if st[S_EQ_PREV] == st[S_CASH]:
                    j = skip_flat_bars(i, n, sig, st, equity)
                    if j > i:
                        i = j
                        continue
            else:
                j = hold_quiet_bars(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, equity,
                                    block_end, blocks, b)
                if j > i:
                    i = j
                    continue
        prev = st[S_EQ_PREV]
        step(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, trades, equity)
        if nb > 0:
            eq = st[S_EQ_PREV]
            if eq != prev and prev > 0.0:
                r = eq / prev - 1.0
                b = block_of(i, block_end, b)  # bars only move forward: no search from the start
                blocks[b, 0] += r
                blocks[b, 1] += r * r
        i += 1
    finalize_metrics(st, p, n, m)



@njit(**_JIT)
def run_fast(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p):
    """Fast mode: metrics only, no per-bar arrays."""
    st = np.empty(N_STATE)
    m = np.empty(N_METRICS)
    run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, np.empty((0, N_TRADE_COLS)), np.empty(0),
        np.empty(0, dtype=np.int64), np.empty((0, 2)))
    return m


@njit(**_JIT)
def run_fast_blocks(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, block_end):
    """Fast-mode metrics and the per-block return moments (see :func:`run`)."""
    st = np.empty(N_STATE)
    m = np.empty(N_METRICS)
    blocks = np.empty((block_end.shape[0], 2))
    run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, np.empty((0, N_TRADE_COLS)), np.empty(0),
        block_end, blocks)
    return m, blocks


@njit(**_JIT)
def run_plan(o, h, l, c, funding, signals, lines, sig_row, line_rows, params, block_end):
    """Fast mode for the combos of a sweep plan in one call: combo ``k`` runs the signal row
    ``signals[sig_row[k]]``, the lines ``lines[line_rows[k, 0..3]]`` (ATR, band low / mid /
    high) and the param vector ``params[k]``; row ``k`` of the result is ``run_fast`` of
    those inputs bit for bit, with its block moments (``(k_rows, 0, 2)`` when ``block_end``
    is empty). The same layout as the CUDA batch kernel's."""
    k_rows = params.shape[0]
    nb = block_end.shape[0]
    out = np.empty((k_rows, N_METRICS))
    moments = np.empty((k_rows, nb, 2))
    st = np.empty(N_STATE)
    m = np.empty(N_METRICS)
    blocks = np.empty((nb, 2))
    no_trades = np.empty((0, N_TRADE_COLS))
    no_equity = np.empty(0)
    for k in range(k_rows):
        r = line_rows[k]
        run(o, h, l, c, signals[sig_row[k]], lines[r[0]], lines[r[1]], lines[r[2]], lines[r[3]], funding, params[k],
            st, m, no_trades, no_equity, block_end, blocks)
        out[k, :] = m
        moments[k, :, :] = blocks
    return out, moments


def block_bounds(n_bars: int, n_blocks: int) -> np.ndarray:
    """End index (exclusive) of each of ``n_blocks`` near-equal time blocks of ``n_bars``."""
    k = max(1, min(int(n_blocks), int(n_bars)))
    return np.round(np.arange(1, k + 1) * (n_bars / k)).astype(np.int64)


@njit(**_JIT)
def run_full(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p):
    """Full mode: metrics, the trade records (rows used) and the per-bar equity."""
    n = c.shape[0]
    st = np.empty(N_STATE)
    m = np.empty(N_METRICS)
    trades = np.empty((n + 1, N_TRADE_COLS))  # at most one entry per bar
    equity = np.empty(n)
    run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, np.empty(0, dtype=np.int64),
        np.empty((0, 2)))
    return m, trades[: int(st[S_TRADE_ROWS])].copy(), equity
