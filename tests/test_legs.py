"""Several positions at once (SPEC §3), hand-computed: adds, partial exits, grid levels.

Each case builds a few bars by hand and checks every leg's fill, fees, PnL and the equity
against numbers worked out here, step by step, from the SPEC's rules: fees per fill, margin
per leg, exits of the whole position from its average entry price, limit levels filled in
price order at the level or at a gapping open, a level filled in a bar tested against the
stop but not the target, funding on each leg's notional, liquidation of the whole position.
"""
from __future__ import annotations

import numpy as np
import pytest

from threadx.engine import layout as L
from threadx.errors import ParamError
from threadx.strategy.base import ExitRules, Levels

from test_engine_kernel import flat_bars, make_bars, run

EL, XL, ES, XS = L.SIG_ENTER_LONG, L.SIG_EXIT_LONG, L.SIG_ENTER_SHORT, L.SIG_EXIT_SHORT
RL = L.SIG_REDUCE_LONG
FEE = 0.001  # 10 bps
CAPITAL = 10_000.0


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-9)


def check_books(m, trades, eq):
    """The invariants every case must keep: leg PnLs add up to the equity change, the last
    equity is the final equity, and each row's fees are one fee per fill."""
    assert trades["pnl"].sum() == approx(m["final_equity"] - CAPITAL)
    assert eq[-1] == approx(m["final_equity"])
    assert trades["fees"].to_numpy() == approx(
        FEE * trades["qty"].to_numpy() * (trades["entry_price"].to_numpy() + trades["exit_price"].to_numpy()))
    assert m["total_fees"] == approx(trades["fees"].sum())


def leg_pnl(qty, entry, exit_, side=1.0, funding=0.0):
    return side * qty * (exit_ - entry) - FEE * qty * entry - FEE * qty * exit_ - funding


# --- pyramiding ---------------------------------------------------------------------------------

def test_two_adds_then_an_exit():
    # enter at bar 1's open (100), add at bar 2's (110) and bar 3's (120), exit at bar 4's (130)
    bars = make_bars([100, 100, 110, 120, 130, 130], [101, 111, 121, 131, 131, 131],
                     [99, 99, 109, 119, 129, 129], [100, 110, 120, 130, 130, 130])
    rules = ExitRules(sizing="fraction", fraction=0.4, max_legs=3, add_scale=0.5)
    m, trades, eq = run(bars, {0: EL, 1: EL, 2: EL, 3: XL}, rules, fee_bps=10)
    first = 0.4 * CAPITAL  # the first leg's notional; each add is half of it
    qty = [first / 100, first / 2 / 110, first / 2 / 120]
    assert trades["qty"].to_numpy() == approx(qty)
    assert list(trades["entry_i"]) == [1, 2, 3] and list(trades["exit_i"]) == [4, 4, 4]
    assert list(trades["entry_price"]) == [100, 110, 120] and list(trades["exit_price"]) == [130] * 3
    assert list(trades["exit_reason"]) == ["signal"] * 3 and list(trades["cycle"]) == [1, 1, 1]
    expected = [leg_pnl(q, px, 130) for q, px in zip(qty, (100, 110, 120))]
    assert trades["pnl"].to_numpy() == approx(expected)
    assert m["final_equity"] == approx(CAPITAL + sum(expected))
    # equity at bar 3's close: cash after three fills + margin of all legs + open PnL at 130
    cash = CAPITAL - (first + FEE * first) - 2 * (first / 2 + FEE * first / 2)
    assert eq[3] == approx(cash + 2 * first + sum(q * (130 - px) for q, px in zip(qty, (100, 110, 120))))
    assert m["n_trades"] == 3 and m["n_cycles"] == 1 and m["cycle_win_rate"] == 1.0
    check_books(m, trades, eq)


@pytest.mark.parametrize("trail, extra, stop", [("band", {"trail_band_pct": 0.5}, 102.5),
                                                 ("pct", {"trail_pct": 0.04}, 108 * 0.96),
                                                 ("atr", {"trail_atr": 2.5}, 108 - 2.5 * 2.0)])
@pytest.mark.parametrize("stop_pct", [0.0, 0.05])
def test_an_add_keeps_the_trailed_stop_when_the_rules_set_none_from_the_entry(trail, extra, stop, stop_pct):
    """The trail moved the stop by bar 3's close (band 100 + 0.5 x (105 - 100), 4 % under 108, 2.5
    ATRs of 2 under 108); an add fills at bar 4's open (108) and bar 5's low (101.8) goes through
    the trailed stop. Without a stop from the entry (stop_pct 0) the add replaced the trailed stop by
    none, and the stop restarted from the add bar's close (band: never hit, the position ran on)."""
    o = [100, 100, 104, 106, 108, 107, 106, 106]
    h = [100.5, 104.5, 106.5, 108.5, 109, 107.5, 106.5, 106.5]
    lo = [99.5, 99.5, 103.5, 105.5, 107, 101.8, 105.5, 105.5]
    c = [100, 104, 106, 108, 107.5, 106, 106, 106]
    levels = Levels(atr=np.full(8, 2.0), band_lo=np.array([100, 100, 100, 100, 98, 98, 98, 98.0]),
                    band_mid=np.full(8, 105.0), band_hi=np.full(8, 110.0))
    rules = ExitRules(trail=trail, stop_pct=stop_pct, max_legs=2, sizing="fraction", fraction=0.3, **extra)
    m, trades, eq = run(make_bars(o, h, lo, c), {0: EL, 3: EL}, rules, levels, fee_bps=10, min_notional=0.0)
    assert list(trades["entry_i"]) == [1, 4] and list(trades["exit_i"]) == [5, 5]
    assert list(trades["exit_reason"]) == ["trailing_stop"] * 2
    assert trades["exit_price"].to_numpy() == approx([stop, stop])
    check_books(m, trades, eq)


def test_an_add_of_rounding_cash_is_skipped_not_booked_as_a_dust_leg():
    """All in, the cash left is 0 up to rounding; with min_notional 0 the add of bar 1 filled a leg of
    1.6e-15 units that took the second leg slot (4 trade rows), so the add after the reduce was refused."""
    bars = flat_bars(7)
    rules = ExitRules(sizing="all_in", max_legs=2, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL, 1: L.SIG_ADD_LONG, 2: RL, 3: L.SIG_ADD_LONG}, rules, fee_bps=4,
                        min_notional=0.0)
    assert m["n_skipped"] == 1 and m["n_trades"] == 3
    assert list(trades["entry_i"]) == [1, 1, 4] and trades["qty"].min() > 1.0


def test_adds_stop_at_max_legs_and_the_stop_follows_the_average():
    bars = make_bars([100, 100, 110, 120, 120, 120], [101, 111, 121, 121, 121, 121],
                     [99, 99, 109, 119, 99, 119], [100, 110, 120, 120, 115, 120])
    rules = ExitRules(sizing="fraction", fraction=0.4, max_legs=2, stop_pct=0.05)
    m, trades, eq = run(bars, {0: EL, 1: EL, 2: EL}, rules, fee_bps=10)
    assert len(trades) == 2  # the third entry signal found the position full
    q1, q2 = 4000 / 100, 4000 / 110
    avg = (q1 * 100 + q2 * 110) / (q1 + q2)
    stop = avg - 0.05 * avg  # from the average entry once the add filled (bar 2)
    assert list(trades["exit_reason"]) == ["stop_loss"] * 2 and list(trades["exit_i"]) == [4, 4]
    assert trades["exit_price"].to_numpy() == approx([stop, stop])
    assert trades["stop_at_exit"].to_numpy() == approx([stop, stop])
    check_books(m, trades, eq)


# --- partial exits ------------------------------------------------------------------------------

def test_a_partial_exit_at_a_level_then_a_stop():
    # long 50 at 100 (half the equity); the partial target 5 % above the entry takes half of it at
    # 105 on bar 2, the stop 3 % below takes the rest at 97 on bar 3
    bars = make_bars([100, 100, 102, 100, 97], [101, 101, 106, 101, 98], [99, 99, 101, 96, 96],
                     [100, 100, 104, 97, 97])
    rules = ExitRules(sizing="fraction", fraction=0.5, stop_pct=0.03, partial_tp_pct=0.05, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL}, rules, fee_bps=10)
    assert list(trades["exit_reason"]) == ["take_profit", "stop_loss"] and list(trades["exit_i"]) == [2, 3]
    assert list(trades["qty"]) == [25.0, 25.0] and list(trades["exit_price"]) == [105.0, 97.0]
    first = 25 * 5 - 2.5 - 25 * 105 * FEE  # gross - half the entry fee (5.0) - the exit fee
    second = 25 * -3 - 2.5 - 25 * 97 * FEE
    assert trades["pnl"].to_numpy() == approx([first, second])
    cash_after_partial = CAPITAL - 5000 - 5 + 2500 + 25 * 5 - 25 * 105 * FEE
    assert eq[2] == approx(cash_after_partial + 2500 + 25 * (104 - 100))
    assert m["final_equity"] == approx(CAPITAL + first + second)
    assert m["n_trades"] == 2 and m["n_cycles"] == 1 and m["cycle_win_rate"] == 1.0  # 39.95 over the cycle
    check_books(m, trades, eq)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_partial_target_and_the_target_in_one_bar_take_the_partial_first(side):
    # 30 at 100 (fraction 0.3); bar 3 reaches the partial target (+1 %) and the target (+3 %):
    # the price passes the partial first, so half goes at 101 and the rest at 103 (the whole
    # position went at 103, +30 booked on a 10k account; found by an independent simulator)
    up = [100, 100.5, 99.5, 100]
    wide = [100, 104, 99.8, 103] if side > 0 else [100, 100.2, 96, 97]
    o, h, l_, c = zip(up, up, up, wide, up)
    bars = make_bars(o, h, l_, c)
    rules = ExitRules(sizing="fraction", fraction=0.3, tp_pct=0.03, partial_tp_pct=0.01, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL if side > 0 else ES}, rules, fee_bps=10)
    assert list(trades["exit_i"]) == [3, 3] and list(trades["exit_reason"]) == ["take_profit"] * 2
    assert list(trades["qty"]) == [15.0, 15.0]
    assert trades["exit_price"].to_numpy() == approx([100 + side, 100 + 3 * side])
    assert trades["pnl"].to_numpy() == approx([leg_pnl(15, 100, 100 + side, side),
                                               leg_pnl(15, 100, 100 + 3 * side, side)])
    assert m["n_ambiguous"] == 0
    check_books(m, trades, eq)


def test_a_partial_target_beyond_the_target_is_never_taken_first():
    bars = make_bars([100, 100, 100, 100], [101, 101, 106, 101], [99, 99, 99.5, 99], [100, 100, 104, 100])
    rules = ExitRules(sizing="fraction", fraction=0.3, tp_pct=0.03, partial_tp_pct=0.05, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL}, rules, fee_bps=10)
    assert list(trades["qty"]) == [30.0] and list(trades["exit_price"]) == [103.0]  # the target, all of it
    check_books(m, trades, eq)


def test_a_gap_beyond_the_partial_target_then_the_stop_in_the_bar():
    # bar 2 opens at 106, beyond the partial target (105): half fills at that open, then the bar
    # falls through the stop (97) and the rest goes there; a partial target and a stop both inside
    # a bar are ambiguous: the stop first (counted), optimistic takes the partial then the stop
    bars = make_bars([100, 100, 106, 100, 100], [101, 101, 106, 101, 101], [99, 99, 96, 99, 99],
                     [100, 100, 98, 100, 100])
    rules = ExitRules(sizing="fraction", fraction=0.5, stop_pct=0.03, partial_tp_pct=0.05, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL}, rules, fee_bps=10)
    assert list(trades["exit_reason"]) == ["take_profit", "stop_loss"] and list(trades["exit_i"]) == [2, 2]
    assert list(trades["exit_price"]) == [106.0, 97.0] and m["n_ambiguous"] == 0  # (the open is no ambiguity)
    check_books(m, trades, eq)
    inside = make_bars([100, 100, 100, 100], [101, 101, 106, 101], [99, 99, 96, 99], [100, 100, 100, 100])
    m, trades, eq = run(inside, {0: EL}, rules, fee_bps=10)
    assert list(trades["exit_reason"]) == ["stop_loss"] and list(trades["qty"]) == [50.0]
    assert m["n_ambiguous"] == 1
    m, trades, eq = run(inside, {0: EL}, rules, fee_bps=10, ambiguity="optimistic")
    assert list(trades["exit_reason"]) == ["take_profit", "stop_loss"] and list(trades["exit_price"]) == [105.0, 97.0]
    assert m["n_ambiguous"] == 1
    check_books(m, trades, eq)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_optimistic_partial_then_the_rest_stays_open_when_its_new_liquidation_price_is_not_reached(side):
    # 10x all in at 100, no stop: liquidation near 90 (long). Bar 2 spans 90 .. 106: the liquidation
    # price and the partial target (105) are both inside; optimistic takes the partial first, after
    # which the smaller position's liquidation price is far below 90: the rest stays open (it was
    # liquidated at 75.18, a price the bar never reached, and a run in profit booked as bust)
    wide = [100, 106, 90, 100] if side > 0 else [100, 110, 94, 100]
    o, h, l_, c = zip([100, 101, 99, 100], [100, 101, 99, 100], wide, [100, 101, 99, 100])
    rules = ExitRules(sizing="all_in", leverage=10.0, partial_tp_pct=0.05, reduce_fraction=0.5)
    m, trades, eq = run(make_bars(o, h, l_, c), {0: EL if side > 0 else ES}, rules, fee_bps=10,
                        ambiguity="optimistic")
    assert list(trades["exit_reason"]) == ["take_profit", "end_of_data"], trades
    assert trades["exit_price"].iloc[0] == approx(100 + 5 * side) and m["liquidated"] == 0.0
    assert m["n_ambiguous"] == 1
    check_books(m, trades, eq)


def test_a_reduce_signal_closes_a_fraction_of_every_leg_at_the_next_open():
    bars = make_bars([100, 100, 110, 120, 125, 125], [101, 111, 121, 126, 126, 126],
                     [99, 99, 109, 119, 124, 124], [100, 110, 120, 125, 125, 125])
    rules = ExitRules(sizing="fraction", fraction=0.4, max_legs=2, reduce_fraction=0.25)
    m, trades, eq = run(bars, {0: EL, 1: EL, 2: RL}, rules, fee_bps=10)
    q1, q2 = 40.0, 4000 / 110
    # bar 3's open (120): a quarter of each leg; the rest at the end of data (bar 5's close, 125)
    assert list(trades["exit_i"]) == [3, 3, 5, 5] and list(trades["exit_reason"]) == [
        "signal", "signal", "end_of_data", "end_of_data"]
    assert trades["qty"].to_numpy() == approx([q1 / 4, q2 / 4, q1 * 0.75, q2 * 0.75])
    assert trades["pnl"].to_numpy() == approx([leg_pnl(q1 / 4, 100, 120), leg_pnl(q2 / 4, 110, 120),
                                               leg_pnl(q1 * 0.75, 100, 125), leg_pnl(q2 * 0.75, 110, 125)])
    assert list(trades["cycle"]) == [1] * 4 and m["n_cycles"] == 1
    check_books(m, trades, eq)


# --- grid levels ------------------------------------------------------------------------------

GRID = ExitRules(grid_levels=3, grid_pct=(0.05, 0.07, 0.09), allocation=0.6, target_mid=True, stop_pct=0.5)
def mid(n):
    """The reference line, flat at 100: GRID's levels at 95, 93 and 91."""
    return Levels(band_mid=np.full(n, 100.0))


def test_a_grid_cycle_two_levels_in_one_bar_one_the_next_then_the_target():
    bars = make_bars([100, 99, 93, 95, 100, 100], [100, 99, 94, 101, 100, 100], [99, 92.5, 90.5, 94, 99, 99],
                     [100, 94, 92, 100, 100, 100])
    m, trades, eq = run(bars, {}, GRID, mid(len(bars)), fee_bps=10)
    per_level = CAPITAL * 0.6 / 3  # the cycle's starting equity x allocation / K
    qty = [per_level / 95, per_level / 93, per_level / 91]
    assert list(trades["entry_i"]) == [1, 1, 2] and list(trades["entry_price"]) == [95, 93, 91]
    assert trades["qty"].to_numpy() == approx(qty)
    # bar 3: the high reaches the middle band of bar 2's close (100): every leg closes there
    assert list(trades["exit_i"]) == [3, 3, 3] and list(trades["exit_price"]) == [100, 100, 100]
    assert list(trades["exit_reason"]) == ["take_profit"] * 3 and list(trades["cycle"]) == [1, 1, 1]
    assert trades["pnl"].to_numpy() == approx([leg_pnl(q, px, 100) for q, px in zip(qty, (95, 93, 91))])
    # bar 1's close: the two legs, the cash they left and their open PnL at 94
    cash = CAPITAL - 2 * per_level * (1 + FEE)
    assert eq[1] == approx(cash + 2 * per_level + qty[0] * (94 - 95) + qty[1] * (94 - 93))
    assert m["n_cycles"] == 1 and m["cycle_win_rate"] == 1.0 and m["n_trades"] == 3
    check_books(m, trades, eq)


def test_a_gap_through_levels_fills_at_the_open():
    bars = make_bars([100, 92, 95, 100], [100, 92.5, 101, 100], [99, 90, 94, 99], [100, 91, 100, 100])
    m, trades, eq = run(bars, {}, GRID, mid(len(bars)), fee_bps=10)
    # bar 1 opens at 92: below 95 and 93 (filled at the open), then trades down through 91
    assert list(trades["entry_price"]) == [92, 92, 91] and list(trades["entry_i"]) == [1, 1, 1]
    per_level = CAPITAL * 0.6 / 3
    assert trades["qty"].to_numpy() == approx([per_level / 92, per_level / 92, per_level / 91])
    check_books(m, trades, eq)


def test_levels_filled_and_the_stop_hit_in_the_same_bar():
    rules = ExitRules(grid_levels=3, grid_pct=(0.05, 0.07, 0.09), allocation=0.6, target_mid=True, stop_pct=0.02)
    bars = make_bars([100, 99, 97, 97], [100, 101, 98, 98], [99, 90, 96, 96], [100, 95, 97, 97])
    m, trades, eq = run(bars, {}, rules, mid(len(bars)), fee_bps=10)
    per_level = CAPITAL * 0.6 / 3
    qty = np.array([per_level / 95, per_level / 93, per_level / 91])
    avg = (qty[0] * 95 + qty[1] * 93) / (qty[0] + qty[1])  # after the second fill ...
    avg = ((qty[0] + qty[1]) * avg + qty[2] * 91) / qty.sum()  # ... and the third, as the engine averages
    stop = avg - 0.02 * avg
    # the three levels fill on bar 1 (low 90), then the stop from their average (91.1...) is hit on the
    # same bar: the high of 101 above the target (100) is never tested for legs filled in the bar
    assert list(trades["entry_i"]) == [1, 1, 1] and list(trades["exit_i"]) == [1, 1, 1]
    assert list(trades["exit_reason"]) == ["stop_loss"] * 3
    assert trades["exit_price"].to_numpy() == approx([stop] * 3)
    assert m["n_cycles"] == 1 and m["cycle_win_rate"] == 0.0
    check_books(m, trades, eq)


def test_stop_and_target_in_one_bar_take_the_stop_and_count_it():
    # two legs from bar 1; bar 2 reaches both the target (mid 100) and the stop (50 % of 94 ~ 47)
    bars = make_bars([100, 99, 95, 95], [100, 99, 101, 96], [99, 92.5, 40, 94], [100, 94, 95, 95])
    m, trades, eq = run(bars, {}, GRID, mid(len(bars)), fee_bps=10)
    assert list(trades["exit_reason"]) == ["stop_loss"] * 2 and m["n_ambiguous"] == 1
    m2, trades2, _ = run(bars, {}, GRID, mid(len(bars)), fee_bps=10, ambiguity="optimistic")
    assert list(trades2["exit_reason"]) == ["take_profit"] * 2 and list(trades2["exit_price"]) == [100, 100]
    check_books(m, trades, eq)


def test_a_short_grid_mirrors_the_long_one():
    rules = ExitRules(grid_levels=2, grid_pct=(0.05, 0.07), allocation=0.5, target_mid=True, stop_pct=0.5,
                      grid_sides="short")
    bars = make_bars([100, 101, 106, 100, 100], [100, 107.5, 107, 101, 100], [99, 100, 104, 99, 99],
                     [100, 106, 105, 100, 100])
    m, trades, eq = run(bars, {}, rules, Levels(band_mid=np.full(5, 100.0)), fee_bps=10)
    per_level = CAPITAL * 0.5 / 2
    assert list(trades["side"]) == ["short", "short"] and list(trades["entry_price"]) == [105, 107]
    assert list(trades["exit_i"]) == [3, 3] and list(trades["exit_reason"]) == ["take_profit"] * 2
    qty = [per_level / 105, per_level / 107]
    assert trades["pnl"].to_numpy() == approx([leg_pnl(q, px, 100, side=-1.0) for q, px in zip(qty, (105, 107))])
    check_books(m, trades, eq)


def test_both_sides_a_cycle_blocks_the_other_side():
    rules = ExitRules(grid_levels=1, grid_pct=(0.05,), allocation=0.5, target_mid=True, stop_pct=0.5,
                      grid_sides="both")
    # bar 1 reaches the long level (95); bar 2 reaches the short level (105) while the long cycle is open
    bars = make_bars([100, 99, 100, 104, 100], [100, 99, 106, 104, 100], [99, 94, 96, 99, 99],
                     [100, 96, 104, 100, 100])
    m, trades, eq = run(bars, {}, rules, Levels(band_mid=np.full(5, 100.0)), fee_bps=10)
    # the high of bar 2 (106) passes the target (100): the long cycle closes there, and no short
    # level fills in the bar that closed it; bar 3 (high 104) reaches neither level
    assert list(trades["side"]) == ["long"] and list(trades["exit_i"]) == [2]
    check_books(m, trades, eq)


def test_funding_on_each_leg_and_liquidation_of_the_whole_position():
    rules = ExitRules(grid_levels=2, grid_pct=(0.05, 0.07), allocation=0.9, leverage=5.0, target_mid=True)
    bars = make_bars([100, 99, 94, 93, 60, 60], [100, 99, 94, 93, 60, 60], [99, 94, 92, 70, 50, 50],
                     [100, 95, 93, 72, 55, 55])
    rate = 0.001
    funding = np.array([0, 0, rate, rate, 0, 0], dtype=float)
    m, trades, eq = run(bars, {}, rules, Levels(band_mid=np.full(6, 100.0)), funding=funding, fee_bps=10)
    per_level = CAPITAL * 0.9 / 2 * 5  # 22,500 notional (4,500 margin) per level
    q1, q2 = per_level / 95, per_level / 93
    # leg 1 (bar 1) pays funding at bars 2 and 3's opens; leg 2 (bar 2, filled after the open) at bar 3's
    f1, f2 = 2 * rate * q1 * 95, rate * q2 * 93
    assert trades["funding"].to_numpy() == approx([f1, f2])
    assert m["total_funding"] == approx(f1 + f2)
    # liquidation: the whole position (both legs, their margin, the cash left) at the price where equity,
    # net of the exit fee, reaches zero (73.4); bar 3's low (70) is beyond it
    cash = CAPITAL - 2 * (per_level / 5 + FEE * per_level) - f1 - f2
    qty, avg = q1 + q2, (q1 * 95 + q2 * 93) / (q1 + q2)
    liq = (qty * avg - cash - 2 * per_level / 5) / (qty * (1 - FEE))
    assert list(trades["exit_reason"]) == ["liquidation"] * 2 and list(trades["exit_i"]) == [3, 3]
    assert trades["exit_price"].to_numpy() == approx([liq, liq])
    assert m["final_equity"] == pytest.approx(0.0, abs=1e-6) and m["n_trades"] == 2
    assert trades["pnl"].sum() == pytest.approx(-CAPITAL, abs=1e-6)


def test_a_gap_through_the_liquidation_price_shares_the_cut_loss_among_the_legs():
    """A bar opening past the liquidation price closes every leg at that open, the loss beyond the
    equity left cut (an insurance fund takes it). The whole cut went on the last leg, which a larger
    cut turned into a gain (a leg bought above the exit booked +80.23, counted a win): each losing
    leg now takes a share in proportion to its loss, so each books its loss scaled by equity / loss."""
    rules = ExitRules(grid_levels=2, grid_pct=(0.05, 0.07), allocation=0.9, leverage=5.0, target_mid=True)
    bars = make_bars([100, 99, 94, 60, 60], [100, 99, 94, 60, 60], [99, 94, 92, 50, 50], [100, 95, 93, 55, 55])
    m, trades, eq = run(bars, {}, rules, Levels(band_mid=np.full(5, 100.0)), fee_bps=10)
    assert list(trades["exit_i"]) == [3, 3] and list(trades["exit_price"]) == [60, 60] and m["liquidated"] == 1.0
    priced = trades["qty"] * (trades["exit_price"] - trades["entry_price"]) - trades["fees"]  # each a loss
    loss = -priced.sum()
    assert loss > CAPITAL  # more than the equity: cut
    assert trades["pnl"].to_numpy() == approx((priced * CAPITAL / loss).to_numpy())
    assert (trades["pnl"] < 0).all() and m["win_rate"] == 0.0
    assert trades["pnl"].sum() == pytest.approx(-CAPITAL, abs=1e-9) and m["final_equity"] == 0.0


def test_end_of_data_closes_every_open_leg():
    bars = make_bars([100, 99, 93, 94], [100, 99, 94, 95], [99, 92.5, 92, 93], [100, 94, 93, 94])
    m, trades, eq = run(bars, {}, GRID, Levels(band_mid=np.full(4, 100.0)), fee_bps=10)
    assert list(trades["exit_reason"]) == ["end_of_data"] * 2 and list(trades["exit_i"]) == [3, 3]
    assert list(trades["exit_price"]) == [94, 94] and m["n_cycles"] == 1
    check_books(m, trades, eq)


def test_a_warm_up_bar_places_no_level_but_exits_still_run():
    mid = np.array([np.nan, 100.0, np.nan, 100.0, 100.0])
    bars = make_bars([100, 99, 93, 95, 100], [100, 99, 94, 101, 100], [99, 92.5, 80, 94, 99], [100, 94, 92, 100, 100])
    m, trades, eq = run(bars, {}, GRID, Levels(band_mid=mid), fee_bps=10)
    # bar 1 (mid of bar 0 NaN): no level; bar 2 (mid[1] = 100): 95, 93 and 91 fill (low 80); bar 3
    # (mid[2] NaN): no target, no level; bar 4 (mid[3] = 100): the target at the open
    assert list(trades["entry_i"]) == [2, 2, 2] and list(trades["exit_i"]) == [4, 4, 4]
    check_books(m, trades, eq)


# --- rules refused ------------------------------------------------------------------------------

@pytest.mark.parametrize("rules, message", [
    (ExitRules(max_legs=9), "max_legs must be a whole number from 1 to 8"),
    (ExitRules(grid_levels=7, grid_pct=(0.01,) * 7), "grid_levels must be a whole number from 0 to 6"),
    (ExitRules(grid_levels=2, grid_pct=(0.01,)), "grid_levels=2 needs 2 offsets"),
    (ExitRules(grid_levels=2, grid_pct=(0.03, 0.01)), "in increasing order"),
    (ExitRules(grid_levels=1, grid_pct=(0.01,), grid_sides="up"), "grid_sides must be one of long, short, both"),
    (ExitRules(partial_tp_pct=0.05), "a partial target needs reduce_fraction > 0"),
    (ExitRules(reduce_fraction=1.5), "reduce_fraction must be in [0, 1]"),
    (ExitRules(partial_tp_band=True), "a partial target needs reduce_fraction > 0"),
    (ExitRules(partial_tp_band=True, partial_tp_pct=0.05, reduce_fraction=0.5), "either at the far band"),
    (ExitRules(stop_band=1.5), "stop_band must be in [0, 1]"),
    (ExitRules(grid_levels=1, grid_pct=(0.01,), stop_band=0.5), "stop_band needs entry signals"),
    (ExitRules(arm_exits_r=1.0), "arm_exits_r counts gains in stop distances: it needs a stop"),
    (ExitRules(arm_exits_r=-1.0, stop_pct=0.05), "arm_exits_r must be >= 0"),
])
def test_impossible_leg_rules_are_refused(rules, message):
    bars = make_bars([100] * 4, [101] * 4, [99] * 4, [100] * 4)
    with pytest.raises(ParamError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(bars, {}, rules, mid(4) if rules.grid_levels else Levels())


# --- levels from the band lines, armed exit signals ----------------------------------------------

def bands(n, lo=90.0, mid_=100.0, hi=110.0):
    """Band lines (flat unless given per bar) and a flat ATR of 5."""
    line = lambda x: np.full(n, x, dtype=float) if np.isscalar(x) else np.asarray(x, dtype=float)  # noqa: E731
    return Levels(atr=np.full(n, 5.0), band_lo=line(lo), band_mid=line(mid_), band_hi=line(hi))


@pytest.mark.parametrize("side", [1, -1])
def test_the_band_stop_is_taken_when_nearer_than_the_atr_stop_and_sizes_the_risk(side):
    # signal at bar 0's close, fill at bar 1's open (100); the ATR stop is 2 x 5 = 10 away, the band
    # stop half way from the losing band to the mid: 95 for a long, 105 for a short (5 away)
    up = [100, 100, 100, 100]
    hi = [101, 101, 106 if side < 0 else 101, 101]
    lo = [99, 99, 94 if side > 0 else 99, 99]
    bars = make_bars(up, hi, lo, up)
    rules = ExitRules(stop_atr=2.0, stop_band=0.5, sizing="risk", risk_per_trade=0.01)
    m, trades, eq = run(bars, {0: EL if side > 0 else ES}, rules, bands(4), fee_bps=10)
    stop = 100 - side * 5
    qty = CAPITAL * 0.01 / 5  # the risk over the nearer stop's distance
    assert list(trades["exit_reason"]) == ["stop_loss"] and list(trades["exit_i"]) == [2]
    assert trades["stop_at_entry"].to_numpy() == approx([stop]) and trades["exit_price"].to_numpy() == approx([stop])
    assert trades["qty"].to_numpy() == approx([qty])
    assert trades["pnl"].to_numpy() == approx([leg_pnl(qty, 100, stop, side)])
    check_books(m, trades, eq)


def test_an_atr_stop_nearer_than_the_band_stop_is_kept():
    bars = make_bars([100] * 4, [101] * 4, [99, 99, 96, 99], [100] * 4)
    rules = ExitRules(stop_atr=0.6, stop_band=0.5, sizing="risk", risk_per_trade=0.01)  # 3 away, band 5 away
    m, trades, eq = run(bars, {0: EL}, rules, bands(4), fee_bps=10)
    assert trades["stop_at_entry"].to_numpy() == approx([97.0]) and list(trades["exit_i"]) == [2]
    assert trades["qty"].to_numpy() == approx([CAPITAL * 0.01 / 3])


def test_a_fill_at_or_beyond_the_band_stop_is_skipped_and_counted():
    bars = make_bars([100, 94, 94, 94], [101, 95, 95, 95], [99, 93, 93, 93], [100, 94, 94, 94])
    rules = ExitRules(stop_band=0.5, sizing="risk", risk_per_trade=0.01)  # the stop would be 95, above the fill
    m, trades, eq = run(bars, {0: EL}, rules, bands(4), fee_bps=10)
    assert len(trades) == 0 and m["n_skipped"] == 1 and m["final_equity"] == CAPITAL


def test_an_add_keeps_the_band_stop_when_it_is_nearer_than_the_average_entrys():
    # entry at 100 with the band stop at 95; an add at 104: the ATR stop from the new average
    # (about 102 - 10) is further than 95, so the band stop stays
    bars = make_bars([100, 100, 104, 104, 104], [101, 105, 105, 105, 105], [99, 99, 103, 94, 103],
                     [100, 104, 104, 104, 104])
    rules = ExitRules(stop_atr=2.0, stop_band=0.5, sizing="risk", risk_per_trade=0.01, max_legs=2)
    m, trades, eq = run(bars, {0: EL, 1: EL}, rules, bands(5), fee_bps=10)
    assert list(trades["exit_i"]) == [3, 3] and list(trades["exit_reason"]) == ["stop_loss"] * 2
    assert trades["exit_price"].to_numpy() == approx([95.0, 95.0])
    check_books(m, trades, eq)


def test_a_partial_target_at_the_far_band_of_the_previous_close_once_per_cycle():
    # long 50 at 100; bar 2 reaches bar 1's upper band (108): half closes there; bar 3 passes bar
    # 2's band again but the partial target is taken once per cycle; the rest ends with the data
    bars = make_bars([100, 100, 101, 109, 111], [101, 101, 109, 113, 112], [99, 99, 100, 108, 110],
                     [100, 100, 108, 111, 111])
    hi = [110, 108, 109, 109, 109]
    rules = ExitRules(sizing="fraction", fraction=0.5, partial_tp_band=True, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: EL}, rules, bands(5, hi=hi), fee_bps=10)
    assert list(trades["exit_reason"]) == ["take_profit", "end_of_data"] and list(trades["exit_i"]) == [2, 4]
    assert list(trades["qty"]) == [25.0, 25.0] and trades["exit_price"].to_numpy() == approx([108.0, 111.0])
    assert trades["pnl"].to_numpy() == approx([leg_pnl(25, 100, 108), leg_pnl(25, 100, 111)])
    check_books(m, trades, eq)


def test_a_short_partial_target_at_the_lower_band_fills_at_a_gapping_open():
    bars = make_bars([100, 100, 90, 90], [101, 101, 91, 91], [99, 99, 89, 89], [100, 100, 90, 90])
    lo = [90, 92, 92, 92]
    rules = ExitRules(sizing="fraction", fraction=0.5, partial_tp_band=True, reduce_fraction=0.5)
    m, trades, eq = run(bars, {0: ES}, rules, bands(4, lo=lo), fee_bps=10)
    # bar 2 opens at 90, beyond bar 1's lower band (92): the partial fills at the open
    assert list(trades["exit_i"]) == [2, 3] and trades["exit_price"].to_numpy() == approx([90.0, 90.0])
    assert trades["pnl"].to_numpy() == approx([leg_pnl(25, 100, 90, -1.0), leg_pnl(25, 100, 90, -1.0)])
    check_books(m, trades, eq)


def test_exit_signals_wait_for_a_close_beyond_the_far_band():
    # long at bar 1's open; the exit signal of bar 2 waits (not armed); bar 3 closes at 111 > 110
    # (armed); the exit signal of bar 4 counts: out at bar 5's open
    close = [100, 100, 102, 111, 105, 104, 104]
    bars = make_bars(close, [c + 1 for c in close], [c - 1 for c in close], close)
    rules = ExitRules(sizing="fraction", fraction=0.5, arm_exits_band=True)
    m, trades, eq = run(bars, {0: EL, 2: XL, 4: XL}, rules, bands(7), fee_bps=10)
    assert list(trades["exit_i"]) == [5] and list(trades["exit_reason"]) == ["signal"]
    # without arming, bar 2's signal closes it at bar 3's open
    m2, trades2, _ = run(bars, {0: EL, 2: XL, 4: XL}, ExitRules(sizing="fraction", fraction=0.5), bands(7),
                         fee_bps=10)
    assert list(trades2["exit_i"]) == [3]
    check_books(m, trades, eq)


def test_exit_signals_wait_for_a_gain_in_stop_distances_and_a_short_mirrors_it():
    # stop 5 % from the fill at 100: R = 5; the close must gain 1.5 R = 7.5 (long >= 107.5)
    for side in (1, -1):
        close = [100, 100, 100 + side * 6, 100 + side * 8, 100 + side * 8, 100 + side * 8]
        bars = make_bars(close, [c + 1 for c in close], [c - 1 for c in close], close)
        rules = ExitRules(sizing="fraction", fraction=0.5, stop_pct=0.05, arm_exits_r=1.5)
        flag = XL if side > 0 else XS
        m, trades, eq = run(bars, {0: EL if side > 0 else ES, 2: flag, 3: flag}, rules, fee_bps=10)
        # bar 2's signal waits (a 6-point gain); bar 3's close gains 8 >= 7.5: its signal counts
        assert list(trades["exit_i"]) == [4] and list(trades["exit_reason"]) == ["signal"], side
        check_books(m, trades, eq)


def test_whole_counts_held_in_floats_are_those_counts():
    """A float param's 2.0 given as max_legs or grid_levels was refused with "must be a whole
    number ..., got 2.0"; 2.5 still is."""
    import dataclasses

    bars = make_bars([100, 99, 93, 95, 100], [100, 99, 94, 101, 100], [99, 92.5, 80, 94, 99], [100, 94, 92, 100, 100])
    _, trades, eq = run(bars, {}, GRID, mid(5))
    _, float_trades, float_eq = run(bars, {}, dataclasses.replace(GRID, grid_levels=np.float64(3.0)), mid(5))
    assert float_trades.equals(trades) and np.array_equal(float_eq, eq)
    legs = ExitRules(max_legs=2.0, stop_pct=0.05)
    assert run(bars, {0: 1, 1: 1}, legs)[1].equals(run(bars, {0: 1, 1: 1}, ExitRules(max_legs=2, stop_pct=0.05))[1])
    with pytest.raises(ParamError, match="max_legs must be a whole number from 1 to 8, got 2.5"):
        run(bars, {}, ExitRules(max_legs=2.5))


@pytest.mark.parametrize("case", ["first leg", "added leg"])
def test_a_leg_whose_quantity_underflows_to_zero_is_skipped(case):
    """Cash all but gone (a blown account, leverage 100): the notional was positive but its quantity
    underflowed to 0, and the liquidation price divided by that zero quantity (ZeroDivisionError)."""
    bars = flat_bars(5, price=1000.0)
    if case == "first leg":  # 1e-321 / 1000 rounds to 0 units
        m, trades, eq = run(bars, {0: EL}, initial_capital=1e-321, min_notional=0.0)
        assert m["n_skipped"] == 1 and m["n_trades"] == 0 and m["final_equity"] == 1e-321
    else:  # a first leg of 4e-319 / 1000 units, then an add of 1/1000 of its notional: 0 units
        rules = ExitRules(sizing="fraction", fraction=0.4, max_legs=2, add_scale=0.001)
        m, trades, eq = run(bars, {0: EL, 1: L.SIG_ADD_LONG}, rules, initial_capital=1e-318, min_notional=0.0)
        assert m["n_skipped"] == 1 and m["n_trades"] == 1 and trades["qty"].iloc[0] > 0.0


def test_reduces_of_every_bar_close_the_position_once_what_is_left_is_dust():
    """reduce_fraction 0.5 on every bar halved the leg down to 0 units: a trade of 0 units booked, then its
    return divided by 0 (ZeroDivisionError); at 0.75 the liquidation price divided by the 0 left."""
    n = 1_200
    bars = flat_bars(n)
    for fraction in (0.5, 0.75):
        rules = ExitRules(sizing="fraction", fraction=0.5, reduce_fraction=fraction)
        m, trades, eq = run(bars, {0: EL, **{i: RL for i in range(1, n - 1)}}, rules, fee_bps=10, min_notional=0.0)
        assert (trades["qty"] > 0).all() and np.isfinite(trades["return_pct"]).all()
        # the reduces stop once a further one would leave a billionth of the first leg: the last one closes it all
        left = trades["qty"].sum() * 100.0
        assert len(trades) == m["n_trades"] < 60 and left == approx(0.5 * CAPITAL)
        assert trades["exit_reason"].eq("signal").all() and trades["exit_i"].max() < 60
        check_books(m, trades, eq)


def test_a_leg_whose_liquidation_price_underflows_is_held_not_a_division_by_zero():
    """A fee of 60 % on a quantity of 5e-324 units: qty x (1 - fee) underflows to 0, the liquidation
    price's divisor."""
    bars = flat_bars(5, price=1000.0)
    m, trades, eq = run(bars, {0: EL, 2: XL}, initial_capital=8e-321, fee_bps=6000, min_notional=0.0)
    assert m["n_trades"] == 1 and trades["qty"].iloc[0] == 5e-324 and trades["exit_i"].iloc[0] == 3


def test_a_grid_with_entry_signals_records_every_trade():
    """A signal's leg beside the K grid legs: the trade rows, sized for K legs a bar, dropped half the
    trades without a word (n_trades 597, 301 rows; the rows' PnL no longer the equity's change)."""
    n = 300
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    bars = make_bars(open_, np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99, close)
    rules = ExitRules(grid_levels=1, grid_pct=(0.0,), allocation=0.5, sizing="fraction", fraction=0.3,
                      max_hold_bars=1)
    m, trades, eq = run(bars, {i: EL for i in range(n)}, rules, Levels(band_mid=close), fill="close", fee_bps=10)
    assert len(trades) == m["n_trades"] > 1.5 * (n + 1)  # both legs of most bars: more than K rows a bar
    assert trades["pnl"].sum() == pytest.approx(m["final_equity"] - CAPITAL, rel=1e-9)


@pytest.mark.parametrize("side", [1, -1])
def test_an_entry_at_the_close_beyond_its_own_liquidation_price_is_bust_at_once(side):
    """Leverage 1,000 all in, slippage 20 bps: the margin (0.1 %) is less than the slippage, so the fill
    is beyond the position's liquidation price. The close marked equity at -9,960 (max drawdown -2);
    an entry at the open is liquidated in its bar: so is this one, at its close, the loss cut at the equity."""
    bars = flat_bars(6)
    m, trades, eq = run(bars, {1: EL if side > 0 else ES}, ExitRules(leverage=1000.0), fill="close",
                        slippage_bps=20.0)
    assert len(trades) == 1 and trades["exit_reason"].iloc[0] == "liquidation"
    assert trades["entry_i"].iloc[0] == trades["exit_i"].iloc[0] == 1
    assert trades["pnl"].iloc[0] == approx(-CAPITAL) and m["liquidated"] == 1.0
    assert eq.min() == 0.0 and m["max_drawdown"] == -1.0 and m["final_equity"] == 0.0


def test_an_add_signal_pending_at_the_open_adds_nothing_once_that_opens_reduce_closed_the_position():
    """next_open: a reduce and an add signal on one bar; the reduce at the next open left dust (closed it
    all), and the add then opened a new cycle sized by the sizing rule (49.95 units, not an add of 5)."""
    bars = flat_bars(40)
    rules = ExitRules(sizing="fraction", fraction=0.5, max_legs=2, add_scale=0.1, reduce_fraction=0.9)
    signals = {0: EL, **{i: RL for i in range(2, 10)}, 10: RL | L.SIG_ADD_LONG, 30: XL}
    m, trades, eq = run(bars, signals, rules, fee_bps=10)
    assert trades["exit_i"].max() == 11 and trades["entry_i"].max() == 1  # closed at bar 11's open; no entry after
    assert m["n_cycles"] == 1
    check_books(m, trades, eq)
    # an entry signal in the position's direction is an entry: the closed position leaves it a new cycle
    m, trades, eq = run(bars, {**signals, 10: RL | EL}, rules, fee_bps=10)
    assert m["n_cycles"] == 2 and trades["entry_i"].max() == 11
    check_books(m, trades, eq)


def test_a_trade_list_short_of_its_trades_is_an_error_not_a_result():
    from threadx.engine.result import check_rows_complete

    m = np.zeros(len(L.METRIC_NAMES))
    m[L.M_N_TRADES] = 3
    check_rows_complete(m, np.zeros((3, L.N_TRADE_COLS)))
    with pytest.raises(RuntimeError, match="counted 3 trades but recorded 2"):
        check_rows_complete(m, np.zeros((2, L.N_TRADE_COLS)))


def test_a_reduce_that_would_round_a_legs_part_to_zero_units_closes_the_position():
    """A second leg of 2e-9 of the first on a capital of 1e-305: the position as a whole stays above dust
    while that leg's halves round to 0 units (rows of 0 units, their return NaN)."""
    n = 60
    bars = flat_bars(n)
    rules = ExitRules(max_legs=2, add_scale=2e-9, reduce_fraction=0.5, sizing="fraction", fraction=0.5)
    m, trades, eq = run(bars, {0: EL, 1: L.SIG_ADD_LONG, **{i: RL for i in range(2, n - 1)}}, rules,
                        initial_capital=1e-305, min_notional=0.0, fill="close")
    assert (trades["qty"] > 0).all() and np.isfinite(trades["return_pct"]).all() and len(trades) == m["n_trades"]


def test_a_reduce_whose_part_rounds_to_zero_units_leaves_the_position_as_it_is():
    """reduce_fraction 5e-324 of 0.1 units: each part to close is 0 units; no row is booked, nothing changes
    (it was a row of 0 units, its return 0 / 0)."""
    bars = flat_bars(8, price=100_000.0)
    plain, _, _ = run(bars, {0: EL}, ExitRules(), fee_bps=10)
    m, trades, eq = run(bars, {0: EL, 2: RL, 3: RL, 4: RL}, ExitRules(reduce_fraction=5e-324), fee_bps=10)
    assert len(trades) == 1 and trades["exit_reason"].iloc[0] == "end_of_data"
    assert m["final_equity"] == plain["final_equity"]
