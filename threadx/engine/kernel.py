"""The one engine kernel: a numba bar loop for every strategy.

Strategies hand the kernel precomputed arrays (a uint8 signal per bar, and the ATR and
band lines their exits use) plus a float64 parameter vector (see ``layout``). The loop
does fills, costs, sizing, stops and bookkeeping, and keeps the metrics as running sums,
so fast mode needs no per-bar arrays.

Timeline of one bar ``i`` (see SPEC §3):

1. funding is settled at the open for a position held into the bar (each leg on its notional);
2. orders pending from the previous close (``next_open`` mode) fill at the open:
   an exit first, then a reduce, then an entry or an added leg;
3. an open position is tested with the bar's open, high and low against its stop or
   liquidation price (the nearer), its partial target (a level from the average entry, or
   the far band of the previous close) and its target, in the order the price meets them
   (gap fills at the open; the stop and a target both inside one bar: stop first unless
   optimistic; the partial before a farther target); then, unless a position closed in
   this bar, a grid's limit levels fill in price order and the legs just filled are tested
   against the stop (not the target);
4. at the close: end of data closes the position on the last bar; otherwise exit
   signals (once the close has armed them, when the rules ask for arming) and the holding
   limit are acted on (at this close in ``close`` mode, at the
   next open in ``next_open`` mode), then reduce signals, then entry and add signals,
   then the trailing stop is moved for the next bar;
5. equity is marked at the close and the running metrics are updated.

A position holds up to ``MAX_LEGS`` legs (SPEC §3, several positions at once): the state
vector keeps the position's aggregates (total quantity, average entry, margin, fees and
funding) and one row per leg; exits of the whole position read the aggregates, each leg
closes as its own trade row with the cycle it belongs to. A position of one leg takes the
same arithmetic as before legs existed, bit for bit.

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
    P_SPAN_BARS,
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
    P_ADD_SCALE,
    P_ALLOCATION,
    P_GRID_ATR,
    P_GRID_K,
    P_GRID_PCT,
    P_GRID_SIDES,
    P_MAX_LEGS,
    P_PTP_ATR,
    P_PTP_PCT,
    P_REDUCE_FRACTION,
    P_ARM_BAND,
    P_ARM_R,
    P_PTP_BAND,
    P_STOP_BAND,
    P_STOP_BAND_PCT,
    S_EXITS_ARMED,
    S_RISK_DIST,
    S_STOP_LINE,
    S_ROOM_GUARD,
    S_ROOM_CAP,
    S_BLOCKED,
    S_SKIP_GUARD,
    S_SKIP_CAP,
    S_SKIP_KILL,
    GRID_BOTH,
    GRID_LONG,
    LEG_FEE,
    LEG_FUNDING,
    LEG_I,
    LEG_MARGIN,
    LEG_PX,
    LEG_QTY,
    N_LEG_FIELDS,
    M_CYCLE_WIN_RATE,
    M_N_CYCLES,
    S_CYCLE_EQ,
    S_CYCLE_ID,
    S_CYCLE_PNL,
    S_PTP_ATR_DIST,
    S_CYCLE_WINS,
    S_FIRST_NOTIONAL,
    S_LEGS,
    S_LEVELS_DONE,
    S_N_CYCLES,
    S_N_LEGS,
    S_PEND_REDUCE,
    S_PTP,
    S_PTP_DONE,
    S_STOP_ATR_DIST,
    S_TP_ATR_DIST,
    T_CYCLE,
    MAX_LEGS,
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
    SIG_ENTRIES,
    SIG_EXIT_LONG,
    SIG_EXIT_SHORT,
    SIG_REDUCE_LONG,
    SIG_REDUCE_SHORT,
    SIG_ADD_LONG,
    SIG_ADD_SHORT,
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
# So does the work only positions of several legs do (adds, reduces, grid fills, funding per
# leg): inlined at each call site it made the bar loop six times slower to compile.
_TRADE_JIT = dict(cache=True, nogil=True, _nrt=False)
DUST = 1e-9  # an added leg's notional at most this share of the first leg's is rounding's cash, not an order
_NO_SIGNAL_BAR = -1.0e18


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
    st[S_STOP_LINE] = np.nan
    st[S_LAST_ENTRY_SIG] = _NO_SIGNAL_BAR
    st[S_LARGEST_WIN] = -np.inf
    st[S_LARGEST_LOSS] = np.inf
    st[S_ROOM_GUARD] = np.inf
    st[S_ROOM_CAP] = np.inf


@njit(**_STEP_JIT)
def level_distance(pct, atr_mult, px, a):
    """Price distance of a stop or target: pct x fill price + atr_mult x ``a`` (the ATR of the
    signal bar). 0 when both are off, -1 when it needs an ATR the signal bar does not have."""
    dist = 0.0
    if pct > 0.0:
        dist += pct * px
    if atr_mult > 0.0:
        if not (a > 0.0):  # NaN or non-positive ATR
            return -1.0
        dist += atr_mult * a
    return dist


@njit(**_STEP_JIT)
def margin_refused(st, margin):
    """True (and the refusal counted by reason) when the portfolio's gates refuse a new leg of
    ``margin``: the kill switch holds entries, or the account's margin with the leg would pass
    the global guard's room or the runner's cap. Always False in a single backtest."""
    if st[S_BLOCKED] > 0.0:
        st[S_SKIP_KILL] += 1.0
        return True
    used = st[S_MARGIN] + margin
    if used > st[S_ROOM_GUARD]:
        st[S_SKIP_GUARD] += 1.0
        return True
    if used > st[S_ROOM_CAP]:
        st[S_SKIP_CAP] += 1.0
        return True
    return False


@njit(**_STEP_JIT)
def band_stop(d, p, lo, mid, hi):
    """The band stop of a ``d`` entry whose signal bar closed with bands ``lo`` / ``mid`` /
    ``hi``: ``P_STOP_BAND_PCT`` of the way from the band edge on the losing side (``lo`` for a
    long) to the middle band; NaN when undefined there."""
    edge = lo if d > 0.0 else hi
    return edge + (mid - edge) * p[P_STOP_BAND_PCT]


@njit(**_STEP_JIT)
def line_at(line, k):
    """``line[k]``, or NaN for a placeholder line shorter than that (a line the rules do not read)."""
    if k < line.shape[0]:
        return line[k]
    return np.nan


@njit(**_STEP_JIT)
def open_position(i, sig_i, raw_price, direction, p, st, a, lo, mid, hi, notional_req):
    """Open ``direction`` (+1/-1) at ``raw_price`` on bar ``i`` for the signal of bar ``sig_i``:
    the first leg of a cycle when flat, else a leg added to the position (same direction).

    ``notional_req`` > 0 asks that notional (a grid level's share, an added leg's), capped by
    what the cash can margin; 0 sizes the first leg by the sizing rule. Returns True when a
    leg was opened, False when it was skipped (no stop distance for risk sizing, zero
    quantity, below min notional: counted in ``n_skipped``; refused by a portfolio's gates:
    counted by :func:`margin_refused`).
    """
    if st[S_DIR] != 0.0:
        return add_leg(i, sig_i, raw_price, p, st, notional_req)
    slip = p[P_SLIP_RATE]
    px = raw_price * (1.0 + slip) if direction > 0 else raw_price * (1.0 - slip)
    stop_dist = level_distance(p[P_STOP_PCT], p[P_STOP_ATR], px, a)
    tp_dist = level_distance(p[P_TP_PCT], p[P_TP_ATR], px, a)
    ptp_dist = level_distance(p[P_PTP_PCT], p[P_PTP_ATR], px, a)
    if stop_dist < 0.0 or tp_dist < 0.0 or ptp_dist < 0.0:  # an ATR level on a bar without a defined ATR
        st[S_SKIPPED] += 1.0
        return False
    line = np.nan
    if p[P_STOP_BAND] > 0.0:
        line = band_stop(direction, p, lo, mid, hi)
        gap = direction * (px - line)
        if not (gap > 0.0):  # no band there, or the fill is at or beyond it: no room for a stop
            st[S_SKIPPED] += 1.0
            return False
        if stop_dist == 0.0 or gap < stop_dist:  # the nearer of the band stop and the distance stop
            stop_dist = gap
    has_stop = stop_dist > 0.0
    has_tp = tp_dist > 0.0

    equity = st[S_CASH]
    lev = p[P_LEVERAGE]
    fee_rate = p[P_FEE_RATE]
    max_notional = equity / (1.0 / lev + fee_rate)  # margin + entry fee == equity
    sizing = p[P_SIZING]
    notional = 0.0
    if notional_req > 0.0:
        notional = notional_req
    elif sizing == SIZING_ALL_IN:
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
    if not (qty > 0.0):  # a notional so small (cash all but gone) that its quantity underflows to zero
        st[S_SKIPPED] += 1.0
        return False
    fee = notional * fee_rate
    margin = notional / lev
    if margin_refused(st, margin):
        return False
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
    st[S_EXITS_ARMED] = 0.0
    st[S_RISK_DIST] = stop_dist
    st[S_STOP_LINE] = line
    st[S_LAST_ENTRY_SIG] = float(sig_i)
    st[S_FEES] += fee
    if direction > 0:
        st[S_N_LONG] += 1.0
    else:
        st[S_N_SHORT] += 1.0
    st[S_LIQ] = liquidation_price(p, st)
    # the cycle this first leg starts, and its leg row
    st[S_N_LEGS] = 1.0
    set_leg(st, 0, qty, px, float(i), fee, margin)
    st[S_CYCLE_ID] += 1.0
    st[S_CYCLE_PNL] = 0.0
    st[S_CYCLE_EQ] = equity
    st[S_FIRST_NOTIONAL] = notional
    st[S_LEVELS_DONE] = 0.0
    st[S_PTP_DONE] = 0.0
    st[S_STOP_ATR_DIST] = atr_part(p[P_STOP_ATR], a)
    st[S_TP_ATR_DIST] = atr_part(p[P_TP_ATR], a)
    st[S_PTP_ATR_DIST] = atr_part(p[P_PTP_ATR], a)
    st[S_PTP] = px + direction * ptp_dist if ptp_dist > 0.0 else np.nan
    return True


@njit(**_STEP_JIT)
def atr_part(atr_mult, a):
    """The ATR part of a level distance (atr_mult x ``a``, the ATR of the signal bar; 0 when off)."""
    if atr_mult > 0.0:
        return atr_mult * a
    return 0.0


@njit(**_STEP_JIT)
def set_leg(st, k, qty, px, entry_i, fee, margin):
    """Write leg ``k``'s row of the state vector (no funding paid yet)."""
    base = S_LEGS + k * N_LEG_FIELDS
    st[base + LEG_QTY] = qty
    st[base + LEG_PX] = px
    st[base + LEG_I] = entry_i
    st[base + LEG_FEE] = fee
    st[base + LEG_FUNDING] = 0.0
    st[base + LEG_MARGIN] = margin


@njit(**_STEP_JIT)
def avg_level(d, pct, atr_dist, avg):
    """A position level at ``pct`` of the average entry plus an ATR distance, towards ``d``
    (+1: above for a long's target, -1 below for its stop); NaN when both are off."""
    dist = 0.0
    if pct > 0.0:
        dist += pct * avg
    if atr_dist > 0.0:
        dist += atr_dist
    if dist > 0.0:
        return avg + d * dist
    return np.nan


@njit(**_TRADE_JIT)
def add_leg(i, sig_i, raw_price, p, st, notional_req):
    """Add a leg to the open position at ``raw_price`` on bar ``i`` (see :func:`open_position`):
    ``notional_req`` or, without one, ``add_scale`` x the cycle's first leg's notional, capped by
    what the cash can margin. The stop, target and partial target move to the new average
    entry (once a trail has moved the stop in the cycle, the stop in force is kept when it is the
    tighter, or when the rules set none from the entry); an add of no more than rounding's cash
    (:data:`DUST` of the first leg's notional) is skipped."""
    d = st[S_DIR]
    k = int(st[S_N_LEGS])
    slip = p[P_SLIP_RATE]
    px = raw_price * (1.0 + slip) if d > 0 else raw_price * (1.0 - slip)
    lev = p[P_LEVERAGE]
    fee_rate = p[P_FEE_RATE]
    cash = st[S_CASH]
    max_notional = cash / (1.0 / lev + fee_rate)
    notional = notional_req if notional_req > 0.0 else st[S_FIRST_NOTIONAL] * p[P_ADD_SCALE]
    if notional > max_notional:
        notional = max_notional
    # (no cash left but rounding's: with min_notional 0 a leg of 1e-15 units took a leg slot and booked rows)
    if k >= MAX_LEGS or not (notional > DUST * st[S_FIRST_NOTIONAL]) or notional < p[P_MIN_NOTIONAL] or not (
            px > 0.0):
        st[S_SKIPPED] += 1.0
        return False
    qty = notional / px
    if not (qty > 0.0):
        st[S_SKIPPED] += 1.0
        return False
    fee = notional * fee_rate
    margin = notional / lev
    if margin_refused(st, margin):
        return False
    st[S_CASH] = cash - margin - fee
    total = st[S_QTY] + qty
    st[S_ENTRY_PX] = (st[S_QTY] * st[S_ENTRY_PX] + qty * px) / total
    st[S_QTY] = total
    st[S_MARGIN] += margin
    st[S_ENTRY_FEE] += fee
    st[S_FEES] += fee
    st[S_LAST_ENTRY_SIG] = float(sig_i)
    if d > 0:
        st[S_N_LONG] += 1.0
    else:
        st[S_N_SHORT] += 1.0
    set_leg(st, k, qty, px, float(i), fee, margin)
    st[S_N_LEGS] = float(k + 1)
    avg = st[S_ENTRY_PX]
    stop = avg_level(-d, p[P_STOP_PCT], st[S_STOP_ATR_DIST], avg)
    line = st[S_STOP_LINE]
    if line == line and (stop != stop or d * (line - stop) > 0.0):
        stop = line  # the band stop set at the first fill, when nearer
    old = st[S_STOP]
    # once a trail has moved the stop in this cycle it never loosens: the tighter of the two (the trailed
    # stop is kept when the rules set no stop from the entry: it was replaced by none)
    if not (st[S_TRAILED] > 0.0 and old == old and (stop != stop or d * (old - stop) > 0.0)):
        st[S_STOP] = stop
    st[S_TP] = avg_level(d, p[P_TP_PCT], st[S_TP_ATR_DIST], avg)
    if st[S_PTP_DONE] == 0.0 and st[S_PTP] == st[S_PTP]:
        st[S_PTP] = avg_level(d, p[P_PTP_PCT], st[S_PTP_ATR_DIST], avg)
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
def book_trade(i, d, qty, entry_px, px, entry_fee, fee, funding, pnl, entry_i, reason, p, st, trades, bmid,
               tested_i):
    """Count one closed trade (a leg, or the part of a leg a reduce closed) in the running
    metrics, and in full mode write its row (:func:`record_trade`)."""
    bars = i - entry_i
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
    st[S_CYCLE_PNL] += pnl
    if st[S_TRADE_ROWS] < trades.shape[0]:  # full mode
        record_trade(i, d, qty, entry_px, px, entry_fee, fee, funding, pnl, entry_i, reason, p, st, trades, bmid,
                     tested_i)


@njit(**_RECORD_JIT)
def record_trade(i, d, qty, entry_px, px, entry_fee, fee, funding, pnl, entry_i, reason, p, st, trades, bmid,
                 tested_i):
    """Write the row of a closed trade (full mode only, out of line: see _RECORD_JIT)."""
    row = int(st[S_TRADE_ROWS])
    if row < trades.shape[0]:
        bars = i - entry_i
        trades[row, T_ENTRY_I] = entry_i
        trades[row, T_EXIT_I] = float(i)
        trades[row, T_SIDE] = d
        trades[row, T_QTY] = qty
        trades[row, T_ENTRY_PX] = entry_px
        trades[row, T_EXIT_PX] = px
        trades[row, T_FEES] = entry_fee + fee
        trades[row, T_FUNDING] = funding
        trades[row, T_PNL] = pnl
        notional = qty * entry_px
        trades[row, T_RETURN_PCT] = 100.0 * pnl / notional if notional > 0.0 else np.nan
        trades[row, T_BARS_HELD] = bars
        trades[row, T_REASON] = float(reason)
        trades[row, T_CYCLE] = st[S_CYCLE_ID]
        record_levels(row, tested_i, p, st, trades, bmid)
        st[S_TRADE_ROWS] = row + 1.0


@njit(**_STEP_JIT)
def close_position(i, raw_price, reason, p, st, trades, bmid, tested_i):
    """Exit every leg of the open position at ``raw_price`` on bar ``i``: one trade each.

    ``tested_i``: the last bar on which the position was tested against its stop and
    target (``i``, or ``i - 1`` for an exit at the open); full mode records the levels in
    force then, and those in force from the fill (fast mode records nothing)."""
    d = st[S_DIR]
    slip = p[P_SLIP_RATE]
    fee_rate = p[P_FEE_RATE]
    px = raw_price * (1.0 - slip) if d > 0 else raw_price * (1.0 + slip)
    n_legs = int(st[S_N_LEGS])
    if n_legs == 1:  # one leg (every single-position strategy): one pass over the aggregates
        qty = st[S_QTY]
        entry_px = st[S_ENTRY_PX]
        gross = d * qty * (px - entry_px)
        fee = qty * px * fee_rate
        cash = st[S_CASH] + st[S_MARGIN] + gross - fee
        if cash <= 0.0 or reason == EXIT_LIQUIDATION:  # bust: see close_legs
            gross -= cash
            cash = 0.0
            st[S_LIQUIDATED] = 1.0
        st[S_CASH] = cash
        st[S_FEES] += fee
        pnl = gross - st[S_ENTRY_FEE] - fee - st[S_FUNDING]
        book_trade(i, d, qty, entry_px, px, st[S_ENTRY_FEE], fee, st[S_FUNDING], pnl, st[S_ENTRY_I], reason, p, st,
                   trades, bmid, tested_i)
        end_cycle(st)
        return
    close_legs(i, px, reason, p, st, trades, bmid, tested_i)


@njit(**_TRADE_JIT)
def close_legs(i, px, reason, p, st, trades, bmid, tested_i):
    """:func:`close_position` of a position of several legs at fill price ``px`` (out of line:
    only positions of several legs take it)."""
    d = st[S_DIR]
    fee_rate = p[P_FEE_RATE]
    n_legs = int(st[S_N_LEGS])
    # first the cash after every leg: a loss beyond the equity left is cut there (below); and
    # the legs' losses, which share the cut
    cash = st[S_CASH]
    losses = 0.0
    last_loss = n_legs - 1
    for k in range(n_legs):
        base = S_LEGS + k * N_LEG_FIELDS
        qty = st[base + LEG_QTY]
        gross = d * qty * (px - st[base + LEG_PX])
        fee = qty * px * fee_rate
        cash = cash + st[base + LEG_MARGIN] + gross - fee
        pnl = gross - st[base + LEG_FEE] - fee - st[base + LEG_FUNDING]
        if pnl < 0.0:
            losses -= pnl
            last_loss = k
    shortfall = 0.0
    if cash <= 0.0 or reason == EXIT_LIQUIDATION:
        # the account is bust (liquidation, or a gap through the stop): the loss stops at
        # the equity left, as an exchange's insurance fund takes the rest, and trading ends;
        # a fill at the liquidation price leaves zero up to rounding (+2e-11 left the run
        # trading on nothing, each later entry skipped, and no liquidation said)
        shortfall = cash
        cash = 0.0
        st[S_LIQUIDATED] = 1.0
    st[S_CASH] = cash
    given = 0.0  # of the cut, -shortfall: shared by the losing legs in proportion to their losses, the
    for k in range(n_legs):  # last of them taking the rest (all on one leg turned a losing leg into a gain)
        base = S_LEGS + k * N_LEG_FIELDS
        qty = st[base + LEG_QTY]
        entry_px = st[base + LEG_PX]
        gross = d * qty * (px - entry_px)
        fee = qty * px * fee_rate
        st[S_FEES] += fee
        pnl = gross - st[base + LEG_FEE] - fee - st[base + LEG_FUNDING]
        if shortfall != 0.0:
            if k == last_loss:
                pnl -= shortfall + given
            elif pnl < 0.0 and losses > 0.0:
                cut = -shortfall * (-pnl / losses)
                given += cut
                pnl += cut
        book_trade(i, d, qty, entry_px, px, st[base + LEG_FEE], fee, st[base + LEG_FUNDING], pnl,
                   st[base + LEG_I], reason, p, st, trades, bmid, tested_i)
    end_cycle(st)


@njit(**_STEP_JIT)
def end_cycle(st):
    """Count the cycle that just closed and reset the position to flat."""
    st[S_N_CYCLES] += 1.0
    if st[S_CYCLE_PNL] > 0.0:
        st[S_CYCLE_WINS] += 1.0
    st[S_DIR] = 0.0
    st[S_QTY] = 0.0
    st[S_MARGIN] = 0.0
    st[S_ENTRY_FEE] = 0.0
    st[S_FUNDING] = 0.0
    st[S_STOP] = np.nan
    st[S_STOP_ENTRY] = np.nan
    st[S_TP] = np.nan
    st[S_PTP] = np.nan
    st[S_TRAILED] = 0.0
    st[S_ARMED] = 0.0
    st[S_EXITS_ARMED] = 0.0
    st[S_STOP_LINE] = np.nan
    st[S_N_LEGS] = 0.0
    st[S_PEND_REDUCE] = 0.0


@njit(**_TRADE_JIT)
def reduce_position(i, raw_price, reason, p, st, trades, bmid, tested_i):
    """Close ``reduce_fraction`` of every leg of the open position at ``raw_price`` on bar
    ``i`` (one trade per leg for the part closed; its entry fee and funding in proportion);
    the whole position when the fraction is 1, when what it would leave is dust (:data:`DUST`
    of the cycle's first leg or less: reduces of every bar halved a leg down to 0 units, and a
    dust position kept the account from entering again), or when what it would leave of a leg
    rounds to 0 units. A leg whose part to close rounds to 0 units (a fraction of 5e-324) is
    left as it is."""
    f = p[P_REDUCE_FRACTION]
    whole = f >= 1.0 or not (st[S_QTY] * (1.0 - f) * st[S_ENTRY_PX] > DUST * st[S_FIRST_NOTIONAL])
    for k in range(int(st[S_N_LEGS])):
        if not (st[S_LEGS + k * N_LEG_FIELDS + LEG_QTY] * (1.0 - f) > 0.0):
            whole = True
    if whole:
        close_position(i, raw_price, reason, p, st, trades, bmid, tested_i)
        return
    d = st[S_DIR]
    slip = p[P_SLIP_RATE]
    fee_rate = p[P_FEE_RATE]
    px = raw_price * (1.0 - slip) if d > 0 else raw_price * (1.0 + slip)
    for k in range(int(st[S_N_LEGS])):
        base = S_LEGS + k * N_LEG_FIELDS
        qty = st[base + LEG_QTY] * f
        if not (qty > 0.0):
            continue
        entry_px = st[base + LEG_PX]
        entry_fee = st[base + LEG_FEE] * f
        funding = st[base + LEG_FUNDING] * f
        margin = st[base + LEG_MARGIN] * f
        gross = d * qty * (px - entry_px)
        fee = qty * px * fee_rate
        st[S_CASH] += margin + gross - fee
        st[S_FEES] += fee
        pnl = gross - entry_fee - fee - funding
        book_trade(i, d, qty, entry_px, px, entry_fee, fee, funding, pnl, st[base + LEG_I], reason, p, st, trades,
                   bmid, tested_i)
        st[base + LEG_QTY] -= qty
        st[base + LEG_FEE] -= entry_fee
        st[base + LEG_FUNDING] -= funding
        st[base + LEG_MARGIN] -= margin
        st[S_QTY] -= qty
        st[S_MARGIN] -= margin
        st[S_ENTRY_FEE] -= entry_fee
        st[S_FUNDING] -= funding
    st[S_LIQ] = liquidation_price(p, st)


@njit(**_TRADE_JIT)
def liquidate_at_close(i, price, p, st, trades, bmid):
    """Liquidate a position just filled at the close ``price`` of bar ``i`` at or beyond its
    own liquidation price (a margin no larger than the slippage paid plus the exit's fee and
    slippage: leverage 1,000): bust at once, as an entry at the open is in its bar (the close
    marked such an account, with 20 bps of slippage, at -9,960 of 10,000). Out of line: a
    second copy of the exit code in the bar loop costs the hot path."""
    close_position(i, price, EXIT_LIQUIDATION, p, st, trades, bmid, i)


@njit(**_STEP_JIT)
def liquidation_price(p, st):
    """Raw price at which closing the open position leaves zero equity after the exit fee
    and slippage: solves cash + margin + d*qty*(fill - entry) - qty*fill*fee = 0."""
    d = st[S_DIR]
    qty = st[S_QTY]
    per_unit = qty * (d - p[P_FEE_RATE])
    if per_unit == 0.0:  # a quantity so small (a fee near 100 %) that this underflows: nothing to liquidate
        return np.nan
    fill = (d * qty * st[S_ENTRY_PX] - st[S_CASH] - st[S_MARGIN]) / per_unit
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
def partial_target(i, d, p, st, blo, bhi):
    """The partial target of a ``d`` position on bar ``i`` (NaN: none, or taken this cycle):
    its fixed level, or with ``P_PTP_BAND`` the far band of the previous close."""
    if st[S_PTP_DONE] != 0.0:
        return np.nan
    if p[P_PTP_BAND] > 0.0:
        if i < 1:
            return np.nan
        return bhi[i - 1] if d > 0.0 else blo[i - 1]
    return st[S_PTP]


@njit(**_STEP_JIT)
def check_intrabar_exits(i, o, h, l, blo, bmid, bhi, p, st, trades):
    """Stop or liquidation, partial target and target of the open position on bar i, in the
    order the price can reach them: at the open first (a gap fills there: beyond the stop,
    everything; beyond the partial target, that part, then beyond the target the rest), then
    inside the bar, the stop first when it and a target are both inside (counted; favourable
    first when optimistic) and the partial target before a target farther from the open."""
    d = st[S_DIR]
    tgt = target_level(d, st[S_TP], p, bmid, i - 1)  # a mid band known at the previous close
    has_tgt = tgt == tgt
    op = o[i]
    # with d = +1/-1 one test serves both sides: d * (price - level) <= 0 means "at or
    # beyond the stop", >= 0 "at or beyond the target" (sign flips are exact in floats)
    adverse = l[i] if d > 0.0 else h[i]
    favourable = h[i] if d > 0.0 else l[i]
    stop = adverse_level(d, st[S_STOP], st[S_LIQ])
    if d * (op - stop) <= 0.0:
        close_position(i, op, stop_reason(d, st), p, st, trades, bmid, i)
        return
    ptp = partial_target(i, d, p, st, blo, bhi)
    if ptp == ptp and has_tgt and d * (ptp - tgt) >= 0.0:
        ptp = np.nan  # at or beyond the target: the target closes everything first
    if ptp == ptp and d * (op - ptp) >= 0.0:
        if take_partial(i, op, p, st, trades, bmid):
            return
        ptp = np.nan
        stop = adverse_level(d, st[S_STOP], st[S_LIQ])  # the smaller position's liquidation price
    if has_tgt and d * (op - tgt) >= 0.0:
        close_position(i, op, EXIT_TAKE_PROFIT, p, st, trades, bmid, i)
        return
    hit_stop = d * (adverse - stop) <= 0.0
    hit_ptp = ptp == ptp and d * (favourable - ptp) >= 0.0
    hit_tgt = has_tgt and d * (favourable - tgt) >= 0.0
    if hit_stop and (hit_ptp or hit_tgt):
        st[S_AMBIGUOUS] += 1.0
        if p[P_OPTIMISTIC] == 0.0:
            hit_ptp = False
            hit_tgt = False
    if hit_stop and not (hit_ptp or hit_tgt):
        close_position(i, stop, stop_reason(d, st), p, st, trades, bmid, i)
        return
    if hit_ptp:
        if take_partial(i, ptp, p, st, trades, bmid):
            return
    if hit_tgt:
        close_position(i, tgt, EXIT_TAKE_PROFIT, p, st, trades, bmid, i)
    elif hit_stop:  # optimistic: the partial target, then the stop for the rest when the bar reaches it
        stop = adverse_level(d, st[S_STOP], st[S_LIQ])  # (the smaller position's liquidation price moved)
        if d * (adverse - stop) <= 0.0:
            close_position(i, stop, stop_reason(d, st), p, st, trades, bmid, i)


@njit(**_STEP_JIT)
def stop_reason(d, st):
    """Why the adverse level :func:`adverse_level` gives closes a ``d`` position: its
    liquidation price when nearer (or no stop), else its stop, trailed or not."""
    if adverse_level(d, st[S_STOP], st[S_LIQ]) != st[S_STOP]:
        return EXIT_LIQUIDATION
    return EXIT_TRAILING_STOP if st[S_TRAILED] > 0.0 else EXIT_STOP_LOSS


@njit(**_STEP_JIT)
def take_partial(i, px, p, st, trades, bmid):
    """The cycle's partial target at ``px`` on bar ``i``; True when it closed the whole
    position (a reduce fraction of 1, or dust left: see :func:`reduce_position`)."""
    st[S_PTP_DONE] = 1.0
    reduce_position(i, px, EXIT_TAKE_PROFIT, p, st, trades, bmid, i)
    return st[S_DIR] == 0.0


@njit(**_STEP_JIT)
def grid_level(side, k, ref, a, p):
    """Price of grid level ``k`` on a bar whose previous close had reference ``ref`` and ATR
    ``a``: below the reference for longs (``side`` +1), above for shorts; NaN when it cannot be
    placed (warm-up NaN, an ATR offset without a positive ATR, a level <= 0)."""
    pct = p[P_GRID_PCT + k]
    atr_mult = p[P_GRID_ATR + k]
    lvl = ref * (1.0 - side * pct)
    if atr_mult > 0.0:
        if not (a > 0.0):
            return np.nan
        lvl = lvl - side * atr_mult * a
    if not (lvl > 0.0):
        return np.nan
    return lvl


@njit(**_STEP_JIT)
def grid_side_hit(op, hi, lo, ref, a, p):
    """The side (+1 long / -1 short / 0 none) whose nearest grid level a bar with open ``op``,
    high ``hi`` and low ``lo`` reaches when flat (``ref``, ``a``: the reference line and ATR of
    the previous close); with both sides reached, the one nearer the open."""
    sides = p[P_GRID_SIDES]
    long_gap = np.inf
    short_gap = np.inf
    if sides == GRID_LONG or sides == GRID_BOTH:
        lvl = grid_level(1.0, 0, ref, a, p)
        if lvl == lvl and lo <= lvl:
            long_gap = op - lvl
    if sides != GRID_LONG:
        lvl = grid_level(-1.0, 0, ref, a, p)
        if lvl == lvl and hi >= lvl:
            short_gap = lvl - op
    if long_gap == np.inf and short_gap == np.inf:
        return 0
    return 1 if long_gap <= short_gap else -1


@njit(**_STEP_JIT)
def next_grid_bar(j, n, sig, h, l, atr, bmid, p):
    """The first bar from ``j`` on which a flat grid acts: an entry flag, or a bar reaching the
    nearest level of a side (:func:`grid_side_hit`'s test, with the level's factors read once);
    ``n - 1`` when none before it."""
    if j == 0:
        if (sig[0] & SIG_ENTRIES) != 0:
            return 0
        j = 1  # bar 0 has no previous close to place levels from
    sides = p[P_GRID_SIDES]
    longs = sides == GRID_LONG or sides == GRID_BOTH
    shorts = sides != GRID_LONG
    pct = p[P_GRID_PCT]
    down = 1.0 - pct  # grid_level's 1 - side x pct, side +1 and -1 (the same floats)
    up = 1.0 + pct
    atr_mult = p[P_GRID_ATR]
    use_atr = atr_mult > 0.0
    while j < n - 1:
        if (sig[j] & SIG_ENTRIES) != 0:
            return j
        ref = bmid[j - 1]
        a = 0.0
        if use_atr:
            a = line_at(atr, j - 1)
        if not use_atr or a > 0.0:
            if longs:
                lvl = ref * down
                if use_atr:
                    lvl = lvl - atr_mult * a
                if lvl > 0.0 and l[j] <= lvl:
                    return j
            if shorts:
                lvl = ref * up
                if use_atr:
                    lvl = lvl + atr_mult * a
                if lvl > 0.0 and h[j] >= lvl:
                    return j
        j += 1
    return j


@njit(**_STEP_JIT)
def next_grid_level(st, p):
    """The grid level the open cycle fills next (the nearest not filled yet), -1 for none."""
    done = int(st[S_LEVELS_DONE])  # bit k: level k filled (integer bit tests: no pow, no fmod per level)
    for k in range(int(p[P_GRID_K])):
        if (done >> k) & 1 == 0:
            return k
    return -1


@njit(**_STEP_JIT)
def fill_grid_levels(i, op, hi, lo, ref, a, band_lo, band_hi, p, st, trades, bmid):
    """Fill the grid levels bar ``i`` (open ``op``, high ``hi``, low ``lo``) reaches (SPEC §3),
    in price order, each once per cycle: at the level, or at the open when the bar opens beyond
    it; each leg's notional is the cycle's starting equity x allocation / K x leverage. Then the
    position, with the legs just filled, is tested against its stop (and liquidation) on this
    bar, not its target. ``ref``, ``a``, ``band_lo``, ``band_hi``: the lines at the previous
    close (scalars: this out-of-line call passes two arrays of state, not eleven)."""
    d = st[S_DIR]
    if d == 0.0:
        d = float(grid_side_hit(op, hi, lo, ref, a, p))
        if d == 0.0:
            return
    k_levels = int(p[P_GRID_K])
    reach = lo if d > 0.0 else hi
    filled = False
    for k in range(k_levels):
        if st[S_DIR] != 0.0 and (int(st[S_LEVELS_DONE]) >> k) & 1 == 1:
            continue
        lvl = grid_level(d, k, ref, a, p)
        if not (lvl == lvl and d * (reach - lvl) <= 0.0):
            break  # levels are in price order: the next ones are further
        px = op if d * (op - lvl) <= 0.0 else lvl
        flat = st[S_DIR] == 0.0
        equity = st[S_CASH] if flat else st[S_CYCLE_EQ]
        notional = equity * p[P_ALLOCATION] / k_levels * p[P_LEVERAGE]
        if open_position(i, i - 1, px, d, p, st, a, band_lo, ref, band_hi, notional):
            st[S_LEVELS_DONE] = float(int(st[S_LEVELS_DONE]) | (1 << k))  # (reset by a cycle's first leg)
            filled = True
        elif flat:
            return  # the cycle could not start (too small an order)
    if filled:
        stop = adverse_level(d, st[S_STOP], st[S_LIQ])
        if d * (reach - stop) <= 0.0:
            reason = EXIT_STOP_LOSS if stop == st[S_STOP] else EXIT_LIQUIDATION
            close_position(i, stop, reason, p, st, trades, bmid, i)


@njit(**_STEP_JIT)
def arms_at(j, c, blo, bhi, p, st):
    """True when the close of bar ``j`` arms the open position's exit signals: a gain of
    ``P_ARM_R`` times the first leg's stop distance from the average entry, or (``P_ARM_BAND``)
    a close beyond the far band (above band_hi for a long, below band_lo for a short)."""
    d = st[S_DIR]
    arm_r = p[P_ARM_R]
    if arm_r > 0.0 and st[S_RISK_DIST] > 0.0 and d * (c[j] - st[S_ENTRY_PX]) >= arm_r * st[S_RISK_DIST]:
        return True
    if p[P_ARM_BAND] > 0.0:
        if d > 0.0:
            return c[j] > bhi[j]
        return c[j] < blo[j]
    return False


@njit(**_STEP_JIT)
def exits_armed(p, st):
    """Whether exit signals count for the open position: always, unless the rules arm exits
    (``P_ARM_R`` / ``P_ARM_BAND``); then once a close after its first fill armed them
    (:func:`arms_at`, this bar's close included)."""
    return (p[P_ARM_R] == 0.0 and p[P_ARM_BAND] == 0.0) or st[S_EXITS_ARMED] > 0.0


@njit(**_STEP_JIT)
def price_trail_level(mode, d, close, a, trail_atr, trail_pct):
    """The stop an ATR or percent trail (``mode``) offers a ``d`` position after a ``close``
    with ATR ``a``; NaN for any other mode (a band trail has state: update_trailing_stop)."""
    if mode == TRAIL_ATR:
        return close - d * trail_atr * a
    if mode == TRAIL_PCT:
        return close * (1.0 - d * trail_pct)
    return np.nan


@njit(**_STEP_JIT)
def trails_past(d, cand, stop):
    """Whether a trail level ``cand`` replaces a ``d`` position's ``stop`` (NaN: none): it
    is defined and tighter (a trail only moves towards the price)."""
    return cand == cand and (stop != stop or (d > 0.0 and cand > stop) or (d < 0.0 and cand < stop))


@njit(**_STEP_JIT)
def update_trailing_stop(i, h, l, c, atr, blo, bmid, bhi, p, st):
    """Move the stop of the open position with this close; it applies from the next bar."""
    mode = p[P_TRAIL_MODE]
    d = st[S_DIR]
    cand = np.nan
    if mode == TRAIL_ATR or mode == TRAIL_PCT:
        cand = price_trail_level(mode, d, c[i], line_at(atr, i), p[P_TRAIL_ATR], p[P_TRAIL_PCT])
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
    if trails_past(d, cand, st[S_STOP]):
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
    """Equity at the close of bar i, and the running return / drawdown statistics. Returns
    (whether the bar added a return, that return): the block moments add the same one."""
    d = st[S_DIR]
    eq = st[S_CASH]
    if d != 0.0:
        eq += st[S_MARGIN] + d * st[S_QTY] * (c[i] - st[S_ENTRY_PX])
        st[S_EXPOSED_BARS] += 1.0
    if equity.shape[0] > 0:
        equity[i] = eq
    prev = st[S_EQ_PREV]
    st[S_RET_N] += 1.0
    counted = eq != prev and prev > 0.0
    r = 0.0
    if counted:  # flat bars add a zero return: no division needed
        r = eq / prev - 1.0
        st[S_RET_SUM] += r
        st[S_RET_SUMSQ] += r * r
        loss = r if r < 0.0 else 0.0  # adding 0.0 leaves the sum unchanged
        st[S_DOWN_SQ] += loss * loss
    st[S_PEAK], st[S_PEAK_I], st[S_MAX_DD], st[S_MAX_DD_BARS] = track_drawdown(
        i, eq, st[S_PEAK], st[S_PEAK_I], st[S_MAX_DD], st[S_MAX_DD_BARS])
    st[S_EQ_PREV] = eq
    return counted, r


@njit(**_TRADE_JIT)
def pay_funding(i, funding, p, st):
    """Funding settled at the open of bar ``i`` by the open position: each leg pays
    rate x its notional at entry x direction (none on the placeholder line: see line_at)."""
    rate = line_at(funding, i)
    if rate == rate and rate != 0.0:
        d = st[S_DIR]
        for k in range(int(st[S_N_LEGS])):
            base = S_LEGS + k * N_LEG_FIELDS
            pay = rate * st[base + LEG_QTY] * st[base + LEG_PX] * d
            st[base + LEG_FUNDING] += pay
            st[S_CASH] -= pay
            st[S_FUNDING] += pay
            st[S_FUNDING_TOTAL] += pay
        st[S_LIQ] = liquidation_price(p, st)  # less (or more) cash behind the position


@njit(**_STEP_JIT)
def step(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, trades, equity):
    """Advance the backtest by bar ``i`` (0 <= i < n); returns :func:`mark_to_market`'s
    (whether the close added a return, the return)."""
    close_fill = p[P_FILL] == FILL_CLOSE

    # 1. funding settled at the open for a position held into this bar
    if st[S_DIR] != 0.0 and p[P_USE_FUNDING] > 0.0:
        pay_funding(i, funding, p, st)

    # 2. orders pending from the previous close fill at this open: exit, reduce, entry or add
    cycles = st[S_N_CYCLES]
    if st[S_PEND_EXIT] > 0.0:
        if st[S_DIR] != 0.0:
            close_position(i, o[i], int(st[S_PEND_EXIT]) - 1, p, st, trades, bmid, i - 1)
        st[S_PEND_EXIT] = 0.0
    if st[S_PEND_REDUCE] > 0.0:
        if st[S_DIR] != 0.0:
            reduce_position(i, o[i], EXIT_SIGNAL, p, st, trades, bmid, i - 1)
        st[S_PEND_REDUCE] = 0.0
    if st[S_PEND_ENTRY] != 0.0:
        k = int(st[S_PEND_SIG_I])
        # flat at this open (its reduce closed the position): only an entry signal a flat account takes
        # enters; an add signal has nothing to add to
        if st[S_LIQUIDATED] == 0.0 and (st[S_DIR] == st[S_PEND_ENTRY] or (st[S_DIR] == 0.0 and (
                sig[k] & SIG_ENTRIES) == (SIG_ENTER_LONG if st[S_PEND_ENTRY] > 0.0 else SIG_ENTER_SHORT))):
            open_position(i, k, o[i], int(st[S_PEND_ENTRY]), p, st, line_at(atr, k), line_at(blo, k), line_at(bmid, k),
                          line_at(bhi, k), 0.0)
        st[S_PEND_ENTRY] = 0.0

    # 3. intrabar: stop / target / liquidation / partial target of the position held, then
    #    the grid's limit levels (not in a bar that closed a position)
    if st[S_DIR] != 0.0:
        check_intrabar_exits(i, o, h, l, blo, bmid, bhi, p, st, trades)
    if p[P_GRID_K] > 0.0 and i > 0 and i < n - 1 and st[S_LIQUIDATED] == 0.0 and st[S_N_CYCLES] == cycles:
        fill_grid_levels(i, o[i], h[i], l[i], bmid[i - 1], line_at(atr, i - 1), line_at(blo, i - 1),
                         line_at(bhi, i - 1), p, st, trades, bmid)

    # 4. decisions at the close (the last bar only closes what is open: end of data)
    last = i == n - 1
    s = sig[i] if not last else 0
    d = st[S_DIR]
    if d != 0.0 and st[S_EXITS_ARMED] == 0.0 and (p[P_ARM_R] > 0.0 or p[P_ARM_BAND] > 0.0):
        if arms_at(i, c, blo, bhi, p, st):
            st[S_EXITS_ARMED] = 1.0
    reason = -1
    if d != 0.0:
        if last:
            reason = EXIT_END_OF_DATA
        elif ((d > 0.0 and (s & SIG_EXIT_LONG) != 0) or (d < 0.0 and (s & SIG_EXIT_SHORT) != 0)) and (
                exits_armed(p, st)):
            reason = EXIT_SIGNAL
        elif p[P_MAX_HOLD] > 0.0:
            held = i - st[S_ENTRY_I] + (0.0 if close_fill else 1.0)
            if held >= p[P_MAX_HOLD]:
                reason = EXIT_MAX_HOLD
    if reason >= 0:
        if close_fill or last:  # (one call site: each is a copy of the exit code in the loop)
            close_position(i, c[i], reason, p, st, trades, bmid, i)
        else:
            st[S_PEND_EXIT] = reason + 1.0
    elif d != 0.0 and p[P_REDUCE_FRACTION] > 0.0 and (
            (d > 0.0 and (s & SIG_REDUCE_LONG) != 0) or (d < 0.0 and (s & SIG_REDUCE_SHORT) != 0)):
        if close_fill:
            reduce_position(i, c[i], EXIT_SIGNAL, p, st, trades, bmid, i)
        else:
            st[S_PEND_REDUCE] = 1.0
    if not last:
        flat_next = st[S_DIR] == 0.0 or st[S_PEND_EXIT] > 0.0
        adding = not flat_next and st[S_N_LEGS] < p[P_MAX_LEGS]
        if (flat_next or adding) and st[S_LIQUIDATED] == 0.0:
            want = 0
            enter_long = (s & SIG_ENTER_LONG) != 0
            enter_short = (s & SIG_ENTER_SHORT) != 0
            if enter_long and enter_short:
                st[S_SKIPPED] += 1.0  # contradictory signal: neither side is taken
            elif enter_long:
                want = 1
            elif enter_short:
                want = -1
            if adding:  # an entry or add signal in the position's direction adds a leg
                want = int(st[S_DIR]) if (want == int(st[S_DIR]) or (
                    s & (SIG_ADD_LONG if st[S_DIR] > 0.0 else SIG_ADD_SHORT)) != 0) else 0
            if want != 0 and i - st[S_LAST_ENTRY_SIG] >= p[P_SPACING]:
                if close_fill:
                    if open_position(i, i, c[i], want, p, st, line_at(atr, i), line_at(blo, i), line_at(bmid, i),
                                     line_at(bhi, i), 0.0) and st[S_DIR] * (c[i] - st[S_LIQ]) <= 0.0:
                        liquidate_at_close(i, c[i], p, st, trades, bmid)
                else:
                    st[S_PEND_ENTRY] = float(want)
                    st[S_PEND_SIG_I] = float(i)
        if st[S_DIR] != 0.0 and st[S_PEND_EXIT] == 0.0 and p[P_TRAIL_MODE] > 0.0:
            update_trailing_stop(i, h, l, c, atr, blo, bmid, bhi, p, st)

    # 5. equity at the close
    return mark_to_market(i, c, st, equity)


@njit(**_STEP_JIT)
def finalize_metrics(st, p, n, m):
    """Fill the metrics vector ``m`` from the running sums after the last bar."""
    init = p[P_INITIAL_CAPITAL]
    final = st[S_EQ_PREV]
    bpy = p[P_BARS_PER_YEAR]
    m[M_FINAL_EQUITY] = final
    m[M_TOTAL_RETURN] = final / init - 1.0
    span = p[P_SPAN_BARS]  # (data with gaps spans more bars than it holds: the years are the time it covers)
    m[M_CAGR] = (final / init) ** (bpy / (span if span > n else n)) - 1.0 if final > 0.0 else -1.0
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
    cycles = st[S_N_CYCLES]
    m[M_N_CYCLES] = cycles
    m[M_CYCLE_WIN_RATE] = st[S_CYCLE_WINS] / cycles if cycles > 0.0 else np.nan


@njit(**_STEP_JIT)
def entries_contradict(sig):
    """Whether a bar of ``sig`` flags both entries (one pass without an early exit, which the
    compiler vectorises: a fraction of a microsecond on 12.5k bars)."""
    both = 0
    for t in range(sig.shape[0]):
        s = sig[t]  # (read once: sig[t] & (sig[t] >> 2) compiled to a loop 5 times slower)
        both |= s & (s >> 2)  # SIG_ENTER_SHORT is SIG_ENTER_LONG << 2
    return (both & SIG_ENTER_LONG) != 0


@njit(**_STEP_JIT)
def skip_flat_bars(i, n, sig, st, equity, o, h, l, atr, bmid, p, jump):
    """Book the bars from ``i`` on which a flat account with nothing pending does nothing but
    mark its cash (no entry flag, or only one that :func:`step` refuses for the spacing from
    the last entry's signal bar, or trading ended by liquidation; the last bar never acts
    when flat); return the first bar that needs :func:`step`. A bar flagged both ways goes
    to step, which counts it as skipped. With next-open fills, the entry flag that ends the run
    is acted on here as step would act on it (its order placed, its bar marked at the cash):
    the bar after it, where the order fills, is the one returned.

    The caller checks that the previous close left equity at the cash (``EQ_PREV == CASH``),
    so these bars add zero returns and the running figures change as one ``step`` per bar
    would change them: the bar count, the peak bar, the drawdown length. ``jump``: no bar of
    ``sig`` flags both entries (:func:`entries_contradict`), so that the spacing window holds no
    bar that step would count, and the run jumps over it instead of reading its bars."""
    j = i
    entry = False
    if st[S_LIQUIDATED] > 0.0:
        j = n
    else:
        if p[P_GRID_K] > 0.0:
            j = next_grid_bar(j, n, sig, h, l, atr, bmid, p)  # (a grid level fills on the bar where this stops)
        else:
            # the run stops at an entry flag that step would take, or at a contradictory signal (it
            # counts it): while the spacing from the last entry's signal bar refuses entries, only
            # the latter; then the first flag (one loop testing both branched on every flagged
            # bar, a branch the CPU often guessed wrong)
            spacing = p[P_SPACING]
            last_entry = st[S_LAST_ENTRY_SIG]
            if jump and last_entry > _NO_SIGNAL_BAR and not (j - last_entry >= spacing):
                # the first bar the spacing allows is ceil(last_entry + spacing) (> j >= 0 here), the
                # truncation at most one bar before it (the loop below walks that bar, by the test itself)
                k = int(last_entry + spacing)
                if k > j:
                    j = k if k < n - 1 else n - 1
            while j < n - 1 and not (j - last_entry >= spacing) and (sig[j] & SIG_ENTRIES) != SIG_ENTRIES:
                j += 1
            if j < n - 1 and j - last_entry >= spacing:
                while j < n - 1 and (sig[j] & SIG_ENTRIES) == 0:
                    j += 1
            entry = j < n - 1 and p[P_FILL] != FILL_CLOSE and (sig[j] & SIG_ENTRIES) != SIG_ENTRIES
        if entry:  # the order step would place at this close, to fill at the next open: placed here
            st[S_PEND_ENTRY] = 1.0 if (sig[j] & SIG_ENTER_LONG) != 0 else -1.0
            st[S_PEND_SIG_I] = float(j)
            j += 1  # (its bar is marked with the flat ones below: a flat account's close is its cash)
        elif j == n - 1:
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
def stop_touched(long, op, adverse, stop):
    """Whether a position held long (else short) reaches ``stop`` at the open ``op`` or at its
    bar's adverse extreme: ``d * (x - stop) <= 0`` without the product (a difference has the
    sign of the comparison)."""
    if long:
        return op <= stop or adverse <= stop
    return op >= stop or adverse >= stop


@njit(**_STEP_JIT)
def held_bar_figures(j, eq, prev, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper):
    """The running figures of :func:`hold_quiet_bars` after held bar ``j`` closed at ``eq``
    (``prev``: the close before): (whether it added a return, the return, its sum, sum of
    squares, downside sum of squares, peak, peak bar, max drawdown, longest drawdown,
    ``deeper``). The arithmetic of :func:`mark_to_market` and :func:`track_drawdown`, in the
    same order; ``deeper`` is ``peak * (1 + max_dd)``, the level below which a drawdown is
    deeper, kept instead of recomputed per bar, and a drawdown's length is taken when it
    ends (it only grows while it lasts: the caller takes a running one's at the end)."""
    counted = eq != prev and prev > 0.0
    r = 0.0
    if counted:
        r = eq / prev - 1.0
        ret_sum += r
        ret_sumsq += r * r
        loss = r if r < 0.0 else 0.0  # a select, not a branch: the sign of r is a coin toss
        down_sq += loss * loss
    if eq >= peak:
        if peak_i < j - 1 and max_dd_bars < j - peak_i:
            max_dd_bars = j - peak_i  # recovered: peak to recovery
        peak = eq
        peak_i = float(j)
        deeper = peak * (1.0 + max_dd)
    elif eq < deeper:
        max_dd = eq / peak - 1.0
        deeper = peak * (1.0 + max_dd)
    return counted, r, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper


@njit(**_STEP_JIT)
def hold_quiet_bars(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, equity, block_end, blocks, b, grid):
    """Run the bars from ``i`` on which the open position (nothing pending) is only held: no
    funding payment, no stop, target or liquidation touched, no exit signal, the holding limit
    not reached, not the last bar (``b``: the block of an earlier bar). Such a bar only moves a
    trailing stop and marks equity, so the running figures live in local variables here
    instead of the state vector; the
    arithmetic is :func:`mark_to_market`'s, in the same order, so the results are the same
    bit for bit. Returns the first bar that needs :func:`step` (``i`` when bar ``i`` does).

    Several legs: a bar where a reduce or add signal, or the grid's next level, can act needs
    :func:`step` too, and so does a bar that reaches a waiting partial target or whose close
    arms the exit signals. ``grid`` says whether the grid's levels are tested (one call site:
    each inlined copy of this loop added seconds to the first compile, and the test is one
    predictable compare per bar).

    A hold with none of these extras and no equity curve runs in a loop of its own that
    tests only the stop and the exit flag (ma_crossover's hold: 3.8 to 3.1 ns a bar), block
    by block when time blocks are asked; the running figures of both loops are
    :func:`held_bar_figures`."""
    d = st[S_DIR]
    long = d > 0.0
    exit_flag = SIG_EXIT_LONG if d > 0.0 else SIG_EXIT_SHORT
    arming = not exits_armed(p, st)
    if arming:
        exit_flag = 0  # exit signals wait: a bar whose close arms them goes to step
    ptp_waits = st[S_PTP_DONE] == 0.0 and (st[S_PTP] == st[S_PTP] or p[P_PTP_BAND] > 0.0)
    use_funding = p[P_USE_FUNDING] > 0.0
    max_hold = p[P_MAX_HOLD]
    held_extra = 0.0 if p[P_FILL] == FILL_CLOSE else 1.0
    entry_i = st[S_ENTRY_I]
    trail_mode = p[P_TRAIL_MODE]
    trail = trail_mode > 0.0
    # an ATR or percent trail moves a local copy of the stop, stored once at the end (as
    # update_trailing_stop moves it; a band trail has state of its own and calls it)
    trail_here = trail_mode == TRAIL_ATR or trail_mode == TRAIL_PCT
    trail_atr = p[P_TRAIL_ATR]
    trail_pct = p[P_TRAIL_PCT]
    raw_stop = st[S_STOP]
    trailed = False
    liq = st[S_LIQ]  # cash, margin and size do not change on a quiet bar
    stop = adverse_level(d, raw_stop, liq)
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
    deeper = peak * (1.0 + max_dd)
    # several legs: a reduce or an add signal acts on a bar too, and so does the grid's nearest
    # level not filled yet (its offsets read once here)
    if p[P_REDUCE_FRACTION] > 0.0:
        exit_flag |= SIG_REDUCE_LONG if d > 0.0 else SIG_REDUCE_SHORT
    if st[S_N_LEGS] < p[P_MAX_LEGS]:
        exit_flag |= (SIG_ENTER_LONG | SIG_ADD_LONG) if d > 0.0 else (SIG_ENTER_SHORT | SIG_ADD_SHORT)
    next_level = next_grid_level(st, p) if grid else -1
    # a plain hold (no funding, target, partial target, arming, grid, holding limit or
    # trailing) tests one flag per bar for all of these: the tests only stop the run (the
    # bar goes to step), so their order does not matter, and the trailing stop moves last
    extras = (use_funding or tp == tp or target_mid or ptp_waits or arming or grid or max_hold > 0.0
              or trail)
    j = i
    if not (extras or full):  # the plainest hold: only the stop and the exit flag end it
        # run block by block (one block: to the last bar when none is asked), so that no bar
        # tests for a block's end; a bar that adds no return has r = 0.0, and adding 0.0 and
        # 0.0 * 0.0 leaves a block's sums (never -0.0) with the same bits as not adding them
        while True:
            last = block_stop if nb > 0 and block_stop < n - 1 else n - 1
            while j < last:
                if stop_touched(long, o[j], l[j] if long else h[j], stop) or (sig[j] & exit_flag) != 0:
                    break
                eq = cash + (margin + dq * (c[j] - entry_px))
                _, r, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper = held_bar_figures(
                    j, eq, prev, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper)
                bsum += r
                bsq += r * r
                prev = eq
                j += 1
            if j < last or j >= n - 1:
                break
            blocks[b, 0] = bsum  # into the next block: store this one, load that one
            blocks[b, 1] = bsq
            b = block_of(j, block_end, b)
            block_stop = block_end[b] if b < nb - 1 else c.shape[0]
            bsum = blocks[b, 0]
            bsq = blocks[b, 1]
    while j < n - 1:  # (not entered after the plain loop: it stops where this one would)
        op = o[j]
        adverse = l[j] if long else h[j]
        favourable = h[j] if long else l[j]
        if stop_touched(long, op, adverse, stop) or (sig[j] & exit_flag) != 0:
            break
        if extras:
            if use_funding:
                rate = line_at(funding, j)
                if rate == rate and rate != 0.0:
                    break
            tgt = target_at(d, tp, target_mid, bmid, j - 1)
            if tgt == tgt and (d * (op - tgt) >= 0.0 or d * (favourable - tgt) >= 0.0):
                break
            if ptp_waits:
                ptp = partial_target(j, d, p, st, blo, bhi)
                if ptp == ptp and (d * (op - ptp) >= 0.0 or d * (favourable - ptp) >= 0.0):
                    break
            if arming and arms_at(j, c, blo, bhi, p, st):
                break
            if grid and next_level >= 0:
                lvl = grid_level(d, next_level, bmid[j - 1], line_at(atr, j - 1), p)
                if lvl == lvl and d * (adverse - lvl) <= 0.0:
                    break
            if max_hold > 0.0 and j - entry_i + held_extra >= max_hold:
                break
            if trail:
                if trail_here:
                    cand = price_trail_level(trail_mode, d, c[j], line_at(atr, j), trail_atr, trail_pct)
                    if trails_past(d, cand, raw_stop):
                        raw_stop = cand
                        trailed = True
                        stop = adverse_level(d, raw_stop, liq)
                else:
                    update_trailing_stop(j, h, l, c, atr, blo, bmid, bhi, p, st)
                    stop = adverse_level(d, st[S_STOP], liq)
        eq = cash + (margin + dq * (c[j] - entry_px))
        if full:
            equity[j] = eq
        counted, r, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper = held_bar_figures(
            j, eq, prev, ret_sum, ret_sumsq, down_sq, peak, peak_i, max_dd, max_dd_bars, deeper)
        if counted and nb > 0:
            if j >= block_stop:  # into a later block: store this one, load that one
                blocks[b, 0] = bsum
                blocks[b, 1] = bsq
                b = block_of(j, block_end, b)
                block_stop = block_end[b] if b < nb - 1 else c.shape[0]
                bsum = blocks[b, 0]
                bsq = blocks[b, 1]
            bsum += r
            bsq += r * r
        prev = eq
        j += 1
    if j > i and j - 1 - peak_i > max_dd_bars:  # a drawdown still running at the last bar held here
        max_dd_bars = j - 1 - peak_i
    if nb > 0:
        blocks[b, 0] = bsum
        blocks[b, 1] = bsq
    if trailed:
        st[S_STOP] = raw_stop
        st[S_TRAILED] = 1.0
    st[S_EQ_PREV] = prev
    st[S_EXPOSED_BARS] = exposed + float(j - i)  # one more of each per bar held here
    st[S_RET_N] = ret_n + float(j - i)
    st[S_RET_SUM] = ret_sum
    st[S_RET_SUMSQ] = ret_sumsq
    st[S_DOWN_SQ] = down_sq
    st[S_PEAK] = peak
    st[S_PEAK_I] = peak_i
    st[S_MAX_DD] = max_dd
    st[S_MAX_DD_BARS] = max_dd_bars
    return j


@njit(**_LOOP_JIT)
def run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, block_end, blocks, jump_ok):
    """Run the whole backtest. Full mode: ``trades`` has rows and ``equity`` has n slots;
    fast mode: pass a (0, N_TRADE_COLS) trades array and an empty equity array.

    ``block_end`` (empty: off) asks for the per-bar returns and their squares summed by time
    block into ``blocks``: block ``b`` covers bars ``block_end[b-1] <= i < block_end[b]``;
    ``blocks[b, 0]`` gets the sum of the returns, ``blocks[b, 1]`` the sum of their squares
    (the Sharpe's returns, so any union of blocks yields its exact per-bar Sharpe; for PBO).

    Bars on which nothing can happen are run in bulk (:func:`skip_flat_bars`,
    :func:`hold_quiet_bars`); every other bar goes through :func:`step`. ``jump_ok``: no bar of
    ``sig`` flags both entries (:func:`entries_contradict`: the callers on the CPU find it, once
    per signal row for a plan; the CUDA batch passes False, as a thread's pass over its row
    has not been measured against the walk it saves), so that a flat run may jump the bars
    the spacing refuses."""
    n = c.shape[0]
    init_state(st, p)
    nb = block_end.shape[0]
    for b in range(nb):
        blocks[b, 0] = 0.0
        blocks[b, 1] = 0.0
    b = 0  # the block of the last return added on the step path
    jump = jump_ok and p[P_SPACING] > 0.0  # (see skip_flat_bars)
    i = 0
    while i < n:
        # the bar a bulk run stops at needs step (the same test again would stop there again)
        if st[S_PEND_ENTRY] == 0.0 and st[S_PEND_EXIT] == 0.0 and st[S_PEND_REDUCE] == 0.0:
            if st[S_DIR] == 0.0:
                if st[S_EQ_PREV] == st[S_CASH]:
                    i = skip_flat_bars(i, n, sig, st, equity, o, h, l, atr, bmid, p, jump)
                    if i >= n:
                        break
            else:
                i = hold_quiet_bars(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, equity,
                                    block_end, blocks, b, p[P_GRID_K] > 0.0)
        counted, r = step(i, n, o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, trades, equity)
        if nb > 0 and counted:  # the return the running sums just took (one division per bar)
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
        np.empty(0, dtype=np.int64), np.empty((0, 2)), not entries_contradict(sig))
    return m


@njit(**_JIT)
def run_fast_blocks(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, block_end):
    """Fast-mode metrics and the per-block return moments (see :func:`run`)."""
    st = np.empty(N_STATE)
    m = np.empty(N_METRICS)
    blocks = np.empty((block_end.shape[0], 2))
    run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, np.empty((0, N_TRADE_COLS)), np.empty(0),
        block_end, blocks, not entries_contradict(sig))
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
    jump_ok = np.full(signals.shape[0], -1, np.int8)  # per signal row: entries_contradict, found on first use
    for k in range(k_rows):
        r = line_rows[k]
        s = sig_row[k]
        if jump_ok[s] < 0:
            jump_ok[s] = 0 if entries_contradict(signals[s]) else 1
        run(o, h, l, c, signals[s], lines[r[0]], lines[r[1]], lines[r[2]], lines[r[3]], funding, params[k],
            st, m, no_trades, no_equity, block_end, blocks, jump_ok[s] > 0)
        out[k, :] = m
        moments[k, :, :] = blocks
    return out, moments


@njit(**_STEP_JIT)
def trade_capacity(n, p):
    """Trade rows a run of ``n`` bars can book: one per leg filled (at most the legs a
    position may hold, or a grid's K levels and a signal's leg, per bar), three times with
    partial closes."""
    legs = p[P_MAX_LEGS]
    if legs < 1.0:
        legs = 1.0
    if p[P_GRID_K] > 0.0:  # a grid's K levels, and the leg an entry signal may open beside them
        legs = p[P_GRID_K] + 1.0
    rows = (n + 1) * int(legs)
    if p[P_REDUCE_FRACTION] > 0.0:
        rows *= 3  # a reduce pending at the open, the partial target and the close
    return rows


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
    trades = np.empty((trade_capacity(n, p), N_TRADE_COLS))
    equity = np.empty(n)
    run(o, h, l, c, sig, atr, blo, bmid, bhi, funding, p, st, m, trades, equity, np.empty(0, dtype=np.int64),
        np.empty((0, 2)), not entries_contradict(sig))
    return m, trades[: int(st[S_TRADE_ROWS])].copy(), equity
