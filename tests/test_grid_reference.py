"""Grid fills against a plain-Python loop written from the text of SPEC §3 (and §4's grids).

The loop below knows nothing of the kernel: it reads the rules as the SPEC states them.
Each bar: an exit ordered at the previous close (holding limit) fills at the open; a position
held at the open is tested against its stop (average entry x (1 -/+ sl)) and its target (the
reference line of the previous close), at the open first (gap), then inside the bar (stop
first when both are inside); then, unless a position closed in this bar, the limit levels of
the previous close's reference (and ATR) fill in price order, each once per cycle, at the
level or at the open when the bar opens beyond it, sized from the cycle's starting equity x
allocation / K; legs filled in the bar are tested against the stop, not the target. Fees on
every fill; the last bar closes what is open. On real candles, every trade the kernel books
must be the reference's, field by field.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import threadx
from threadx.data.io import load_ohlcv
from threadx.indicators import IndicatorBank


FEE = 0.001
CAPITAL = 10_000.0


def reference_grid(o, h, l, c, ref, atr, pct, atr_mult, side_setting, allocation, sl, max_hold):
    """Trades (entry_i, exit_i, side, qty, entry_px, exit_px, reason) of a grid, from the SPEC."""
    n, k_levels = len(c), len(pct)
    cash, legs, trades = CAPITAL, [], []
    d, first_i, cycle_equity, done, pending_exit = 0, -1, 0.0, set(), None

    def level(side, k, i):
        r, a = ref[i - 1], atr[i - 1]
        if math.isnan(r):
            return math.nan
        value = r * (1 - side * pct[k])
        if atr_mult[k] > 0:
            if not a > 0:
                return math.nan
            value -= side * atr_mult[k] * a
        return value if value > 0 else math.nan

    def average():
        qty = sum(q for q, _, _ in legs)
        return sum(q * px for q, px, _ in legs) / qty

    def close_all(i, price, reason):
        nonlocal cash, legs, d
        for qty, px, entry_i in legs:
            cash += qty * px + d * qty * (price - px) - FEE * qty * price  # margin back (leverage 1)
            trades.append((entry_i, i, d, qty, px, price, reason))
        legs, d = [], 0

    for i in range(n):
        closed = False
        if pending_exit is not None and legs:
            close_all(i, o[i], pending_exit)
            closed = True
        pending_exit = None
        if legs:  # held at the open
            avg = average()
            stop = avg - d * sl * avg
            target = ref[i - 1]
            adverse, favourable = (l[i], h[i]) if d > 0 else (h[i], l[i])
            if d * (o[i] - stop) <= 0:
                close_all(i, o[i], "stop_loss")
            elif not math.isnan(target) and d * (o[i] - target) >= 0:
                close_all(i, o[i], "take_profit")
            elif d * (adverse - stop) <= 0:
                close_all(i, stop, "stop_loss")
            elif not math.isnan(target) and d * (favourable - target) >= 0:
                close_all(i, target, "take_profit")
            closed = closed or not legs
        if not closed and 0 < i < n - 1:
            sides = [d] if legs else {"long": [1], "short": [-1], "both": [1, -1]}[side_setting]
            reached = []
            for s in sides:
                lvl = level(s, 0, i) if not legs else math.nan
                if legs or (not math.isnan(lvl) and s * ((l[i] if s > 0 else h[i]) - lvl) <= 0):
                    reached.append((abs(o[i] - lvl) if not legs else 0.0, s))
            if reached:
                s = min(reached, key=lambda t: (t[0], -t[1]))[1]  # the nearer level to the open; long on a tie
                reach = l[i] if s > 0 else h[i]
                filled = False
                for k in range(k_levels):
                    if legs and k in done:
                        continue
                    lvl = level(s, k, i)
                    if math.isnan(lvl) or s * (reach - lvl) > 0:
                        break
                    px = o[i] if s * (o[i] - lvl) <= 0 else lvl
                    if not legs:
                        d, first_i, cycle_equity, done = s, i, cash, set()
                    notional = min(cycle_equity * allocation / k_levels, cash / (1 + FEE))
                    cash -= notional + FEE * notional
                    legs.append((notional / px, px, i))
                    done.add(k)
                    filled = True
                if filled:
                    avg = average()
                    stop = avg - d * sl * avg
                    if d * (reach - stop) <= 0:
                        close_all(i, stop, "stop_loss")
        if i == n - 1 and legs:
            close_all(i, c[i], "end_of_data")
        elif legs and max_hold > 0 and i - first_i + 1 >= max_hold:
            pending_exit = "max_hold"
    return trades


CASES = [
    ("envelope_dca", {}),
    ("envelope_dca", {"num_levels": 5, "envelope_start": 0.02, "envelope_step": 0.01, "max_hold_bars": 48}),
    ("envelope_dca_short", {"num_levels": 4, "envelope_start": 0.02, "envelope_step": 0.01, "sl_percent": 0.05}),
    ("grid_atr", {}),
    ("grid_atr", {"sides": "both", "num_levels": 4, "atr_multiplier_start": 1.0, "max_hold_bars": 96}),
    ("grid_atr", {"sides": "short", "sl_percent": 0.03, "allocation": 0.5}),
]


@pytest.fixture
def candles(shared_data):
    return load_ohlcv(str(shared_data / "binance" / "ETH_USDT-1h.parquet"))


@pytest.mark.parametrize("name, params", CASES)
def test_the_kernel_books_the_references_trades(candles, name, params):
    spec = threadx.get_strategy(name)
    p = spec.normalize(params)
    rules = spec.exits(p)
    bank = IndicatorBank(disk=False)
    bars = threadx.backtest(candles, name, p, fee_bps=10, bank=bank)
    ref = bank.ensure(candles, "sma", {"period": p["ma_period"]})["value"]
    atr = (bank.ensure(candles, "atr", {"period": p["atr_period"], "method": "wilder"})["value"]
           if "atr_period" in p else np.full(len(candles), np.nan))
    k = rules.grid_levels
    expected = reference_grid(*(candles[col].to_numpy() for col in ("open", "high", "low", "close")), ref, atr,
                              list(rules.grid_pct) or [0.0] * k, list(rules.grid_atr) or [0.0] * k,
                              rules.grid_sides, rules.allocation, rules.stop_pct, rules.max_hold_bars)
    t = bars.trades
    assert len(t) == len(expected) > 10
    got = list(zip(t["entry_i"], t["exit_i"], np.where(t["side"] == "long", 1, -1), t["qty"], t["entry_price"],
                   t["exit_price"], t["exit_reason"]))
    for mine, theirs in zip(got, expected):
        assert mine[:3] == theirs[:3] and mine[6] == theirs[6], (mine, theirs)
        assert mine[3:6] == pytest.approx(theirs[3:6], rel=1e-9), (mine, theirs)
