"""Each trade records its stop and target levels, and nothing else the engine reports moves.

Hand-computed cases (fixed %, ATR, trailing, mid-band targets, both fill modes, NaN when a
strategy sets no level), the levels of real runs checked against the fills they caused,
and the figures recorded before the levels existed (``tests/data/engine_figures.json``,
see ``tests/engine_figures.py``) compared with ``==``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.config import DEFAULT_INITIAL_CAPITAL
from threadx.data.bars import Bars, as_bars
from threadx.engine import kernel
from threadx.engine import layout as L
from threadx.engine.result import TRADE_FRAME_COLUMNS, TRADE_LEVEL_COLUMNS, trades_frame
from threadx.engine.inputs import EngineOptions, kernel_args
from threadx.strategy.base import ExitRules, Levels

from engine_figures import cases, figures, sample_frame

HOUR_NS = 3_600_000_000_000
EL, XL, ES, XS = L.SIG_ENTER_LONG, L.SIG_EXIT_LONG, L.SIG_ENTER_SHORT, L.SIG_EXIT_SHORT
FIGURES = Path(__file__).parent / "data" / "engine_figures.json"


def make_bars(o, h, l, c):
    o, h, l, c = (np.asarray(x, dtype=float) for x in (o, h, l, c))
    return Bars(o, h, l, c, np.ones(len(c)), np.arange(len(c)) * HOUR_NS, "1h")


def run(bars, signals, rules=ExitRules(), levels=Levels(), **options):
    sig = np.zeros(len(bars), np.uint8)
    for i, flag in signals.items():
        sig[i] = flag
    opts = EngineOptions(**{"fee_bps": 0.0, **options}).validated()
    m, rows, eq = kernel.run_full(*kernel_args(bars, sig, levels, rules, opts))
    return dict(zip(L.METRIC_NAMES, m)), trades_frame(rows, bars.index), eq


def levels_of(row) -> tuple[float, float, float, float]:
    return tuple(float(row[c]) for c in TRADE_LEVEL_COLUMNS)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


# --- hand-computed levels ---------------------------------------------------------------

def test_fixed_percent_stop_and_target_from_the_entry_fill():
    o = [100, 100, 101, 102, 103, 104]
    h = [101, 101, 102, 103, 105.5, 105]
    l = [99, 99, 100, 101, 102, 103]
    c = [100, 100, 101.5, 102.5, 104, 104]
    _, t, _ = run(make_bars(o, h, l, c), {1: EL}, ExitRules(stop_pct=0.02, tp_pct=0.04))
    row = t.iloc[0]
    assert row.entry_i == 2 and row.entry_price == 101.0  # next_open: the open of bar 2
    assert row.stop_at_entry == pytest.approx(98.98, abs=1e-12)  # 101 x (1 - 2 %)
    assert row.target == pytest.approx(105.04, abs=1e-12)  # 101 x (1 + 4 %)
    assert row.stop_at_exit == row.stop_at_entry and row.target_at_exit == row.target  # nothing moves them
    assert row.exit_reason == "take_profit" and row.exit_i == 4 and row.exit_price == row.target


def test_levels_follow_the_slipped_fill_price():
    o = [100, 100, 101, 102, 103, 104]
    h = [101, 101, 102, 103, 104, 105]
    l = [99, 99, 100, 101, 102, 103]
    _, t, _ = run(make_bars(o, h, l, o), {1: EL}, ExitRules(stop_pct=0.02, tp_pct=0.04), slippage_bps=10)
    row = t.iloc[0]
    fill = 101 * 1.001
    assert row.entry_price == pytest.approx(fill, rel=1e-15)
    assert row.stop_at_entry == pytest.approx(fill * 0.98, rel=1e-14)
    assert row.target == pytest.approx(fill * 1.04, rel=1e-14)


def test_short_atr_stop_and_target_from_the_signal_bar_atr():
    o = [100, 100, 100, 100, 100]
    h = [101, 101, 101, 103.5, 101]
    l = [99, 99, 99, 99, 99]
    atr = np.array([9.0, 1.5, 9.0, 9.0, 9.0])
    rules = ExitRules(stop_atr=2.0, tp_atr=3.0)
    _, t, _ = run(make_bars(o, h, l, o), {1: ES}, rules, Levels(atr=atr), fill="close")
    row = t.iloc[0]
    assert row.side == "short" and row.entry_i == 1 and row.entry_price == 100.0
    assert levels_of(row) == (103.0, 103.0, 95.5, 95.5)  # 100 + 2 x 1.5, 100 - 3 x 1.5
    assert row.exit_reason == "stop_loss" and row.exit_i == 3 and row.exit_price == 103.0


def test_a_trailing_stop_records_the_initial_and_the_last_stop():
    o = [100, 100, 100, 104, 106, 105]
    c = [100, 100, 104, 106, 105, 103]
    h = [101, 101, 104.5, 106.5, 106.2, 105.5]
    l = [99, 99, 99.5, 103.5, 104.6, 102.5]
    rules = ExitRules(stop_pct=0.05, trail="pct", trail_pct=0.02)
    _, t, _ = run(make_bars(o, h, l, c), {1: EL}, rules, fill="close")
    row = t.iloc[0]
    # set at the fill: 100 x 0.95; trailed with the closes: 98, 101.92, 103.88 (close 106), kept at 105
    assert row.stop_at_entry == 95.0
    assert row.stop_at_exit == 106 * (1 - 0.02)
    assert row.exit_reason == "trailing_stop" and row.exit_i == 5 and row.exit_price == row.stop_at_exit
    assert math.isnan(row.target) and math.isnan(row.target_at_exit)


def test_an_atr_trailing_stop_in_next_open_mode():
    o = [100, 100, 100, 102, 104, 103]
    c = [100, 100, 102, 104, 103, 101]
    h = [101, 101, 102.5, 104.5, 104.2, 103.5]
    l = [99, 99, 99.5, 101.5, 102.6, 100.5]
    atr = np.full(6, 1.0)
    rules = ExitRules(stop_atr=2.0, trail="atr", trail_atr=1.5)
    _, t, _ = run(make_bars(o, h, l, c), {1: EL}, rules, Levels(atr=atr))
    row = t.iloc[0]
    # filled at the open of bar 2 (100): stop 100 - 2 x 1.0 = 98; closes 102, 104 trail it to
    # 100.5, 102.5; close 103 (101.5) does not loosen it; bar 5 low 100.5 hits 102.5
    assert row.entry_i == 2 and row.stop_at_entry == 98.0 and row.stop_at_exit == 102.5
    assert row.exit_reason == "trailing_stop" and row.exit_i == 5 and row.exit_price == 102.5


def test_band_trailing_stop_moves_only_once_armed():
    o = [100, 100, 100, 102, 103, 103]
    h = [101, 101, 102.2, 103, 104, 103.5]
    l = [99, 99, 99.5, 101.5, 102, 99.8]
    c = [100, 100, 102, 102.5, 103, 101]
    lo = np.array([95, 95, 96, 97, 96, 96.0])
    mid = np.array([102, 102, 102, 103, 103, 103.0])
    hi = np.array([109, 109, 108, 109, 110, 110.0])
    rules = ExitRules(stop_pct=0.05, trail="band", trail_band_pct=0.5)
    _, t, _ = run(make_bars(o, h, l, c), {1: EL}, rules, Levels(band_lo=lo, band_mid=mid, band_hi=hi), fill="close")
    row = t.iloc[0]
    assert row.stop_at_entry == 95.0 and row.stop_at_exit == 100.0  # armed at bar 2, 97 + (103 - 97) x 0.5 at bar 3
    assert row.exit_reason == "trailing_stop" and row.exit_price == 100.0


def test_mid_band_target_from_the_signal_bar_and_at_the_exit():
    bars = make_bars([100, 100, 100, 101], [101, 101, 101.5, 103], [99, 99, 99, 100], [100, 100, 100, 102])
    mid = np.array([110, 110, 102.0, 50.0])
    _, t, _ = run(bars, {1: EL}, ExitRules(target_mid=True), Levels(band_mid=mid), fill="close")
    row = t.iloc[0]
    # bar 2 is tested against mid[1] = 110, bar 3 against mid[2] = 102, where it exits
    assert row.target == 110.0 and row.target_at_exit == 102.0
    assert row.exit_reason == "take_profit" and row.exit_i == 3 and row.exit_price == 102.0
    assert math.isnan(row.stop_at_entry) and math.isnan(row.stop_at_exit)
    # with a fixed target as well, the nearer of the two is in force
    _, t, _ = run(bars, {1: EL}, ExitRules(target_mid=True, tp_pct=0.05), Levels(band_mid=mid), fill="close")
    assert (t.iloc[0].target, t.iloc[0].target_at_exit) == (105.0, 102.0)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_mid_band_target_when_a_signal_or_the_end_of_data_closes_the_trade(fill):
    flat = [100.0] * 7
    bars = make_bars(flat, [101.0] * 7, [99.0] * 7, flat)
    mid = np.array([120, 121, 122, 123, 124, 125, 126.0])  # never reached
    rules = ExitRules(target_mid=True, stop_pct=0.1)
    _, t, _ = run(bars, {1: EL, 3: XL}, rules, Levels(band_mid=mid), fill=fill)
    row = t.iloc[0]
    # the signal bar is 1 in both modes; the last bar tested is 3 (next_open exits at the open of 4)
    assert row.exit_reason == "signal" and row.exit_i == (4 if fill == "next_open" else 3)
    assert (row.target, row.target_at_exit) == (121.0, 122.0)
    assert row.stop_at_entry == row.stop_at_exit == pytest.approx(90.0)
    _, t, _ = run(bars, {1: EL}, rules, Levels(band_mid=mid), fill=fill)
    row = t.iloc[0]
    assert row.exit_reason == "end_of_data" and row.exit_i == 6
    assert (row.target, row.target_at_exit) == (121.0, 125.0)  # bar 6 is tested against mid[5]


def test_no_stop_no_target_records_nan():
    bars = make_bars([100, 100, 101, 102, 103], [101, 101, 102, 103, 104], [99, 99, 100, 101, 102],
                     [100, 100, 101, 102, 103])
    _, t, _ = run(bars, {1: EL, 3: XL})
    assert len(t) == 1 and all(math.isnan(v) for v in levels_of(t.iloc[0]))
    _, t, _ = run(bars, {1: EL, 3: XL}, ExitRules(stop_pct=0.02))  # a stop only
    row = t.iloc[0]
    assert row.stop_at_entry == pytest.approx(101 * 0.98) and math.isnan(row.target)


def test_a_liquidation_keeps_the_strategy_levels_not_the_liquidation_price():
    bars = make_bars([100, 100, 100, 60], [101, 101, 100.5, 61], [99, 99, 99.5, 59], [100, 100, 100, 60])
    _, t, _ = run(bars, {1: EL}, ExitRules(sizing="fraction", leverage=5.0), fill="close")
    row = t.iloc[0]
    assert row.exit_reason == "liquidation"
    assert all(math.isnan(v) for v in levels_of(row))


def test_trades_frame_columns_and_an_empty_run():
    _, t, _ = run(make_bars([100] * 4, [101] * 4, [99] * 4, [100] * 4), {})
    assert list(t.columns[:len(TRADE_FRAME_COLUMNS)]) == list(TRADE_FRAME_COLUMNS)
    assert t.empty and all(t[c].dtype == np.float64 for c in TRADE_LEVEL_COLUMNS)


def test_result_json_writes_a_missing_level_as_null():
    df = sample_frame().iloc[:2000]
    out = threadx.backtest(df, "supertrend").to_dict()
    text = json.dumps(out, allow_nan=False, default=str)  # strict JSON: no NaN tokens
    first = json.loads(text)["trades"][0]
    assert first["stop_at_entry"] is None and first["target"] is None
    out = threadx.backtest(df, "supertrend", {"stop_loss_pct": 2.0}).to_dict()
    assert out["trades"][0]["stop_at_entry"] == pytest.approx(out["trades"][0]["entry_price"] * (1 - 0.02 * (
        1 if out["trades"][0]["side"] == "long" else -1)))


# --- levels of real runs against the fills they caused -----------------------------------

def check_levels_against_fills(res, df: pd.DataFrame, options: dict) -> int:
    """Every stop / target exit filled at its recorded level (or at the open on a gap); trailing
    only tightens the stop. Returns how many exits were checked."""
    t = res.trades
    opens = df["open"].to_numpy()
    slip = options.get("slippage_bps", 0.0) / 10_000.0
    checked = 0
    for row in t.itertuples():
        d = 1.0 if row.side == "long" else -1.0
        if not (math.isnan(row.stop_at_entry) or math.isnan(row.stop_at_exit)):
            assert d * (row.stop_at_exit - row.stop_at_entry) >= 0.0, row  # never loosened
        if row.exit_reason in ("stop_loss", "trailing_stop", "take_profit"):
            level = row.target_at_exit if row.exit_reason == "take_profit" else row.stop_at_exit
            raw = [level, opens[row.exit_i]]
            fills = [x * (1.0 - d * slip) for x in raw]
            assert any(row.exit_price == f for f in fills), row
            checked += 1
        if row.exit_reason == "stop_loss":
            assert row.stop_at_exit == row.stop_at_entry, row  # "trailing_stop" once it moved
    return checked


@pytest.mark.parametrize("name,params,options", [
    ("bb_atr", {}, {}),
    ("bb_atr", {}, {"fill": "close", "slippage_bps": 5.0}),
    ("bollinger_dual", {"setup_lookback": 5}, {}),
    ("donchian_breakout", {}, {"fill": "close"}),
    ("ma_crossover", {"stop_loss_pct": 2.0, "take_profit_pct": 4.0}, {"slippage_bps": 5.0}),
    ("supertrend", {"stop_loss_pct": 3.0, "take_profit_pct": 6.0}, {}),
])
def test_recorded_levels_are_the_ones_the_exits_filled_at(name, params, options):
    df = sample_frame().iloc[:6000]
    res = threadx.backtest(df, name, params, **options)
    assert len(res.trades) > 20
    assert check_levels_against_fills(res, df, options) > 5
    levels = res.trades[list(TRADE_LEVEL_COLUMNS)]
    uses_stop = name != "supertrend" or params
    assert levels["stop_at_entry"].notna().all() == bool(uses_stop)


# --- nothing else moved ------------------------------------------------------------------

def _as_recorded(recorded: dict, now: dict) -> dict:
    """``now`` cut to what was recorded: metrics added to the engine since (appended to the
    metric vector, e.g. n_cycles) are new numbers, not changed ones."""
    out = dict(now)
    out["metrics"] = {k: v for k, v in now.get("metrics", {}).items() if k in recorded.get("metrics", {})}
    out["fast_metrics"] = now.get("fast_metrics", [])[: len(recorded.get("fast_metrics", []))]
    return out


def _compare(recorded: dict, now: dict) -> list[str]:
    bad = []
    for case, fig in recorded.items():
        got = _as_recorded(fig, now.get(case, {}))
        if got != fig:
            diff = {k for k in fig if got.get(k) != fig[k]}
            bad.append(f"{case}: {sorted(diff)}")
    return bad


def _pnl_sums_add_up(figs: dict) -> None:
    for case, fig in figs.items():
        final = float.fromhex(fig["final_equity"])
        pnl = float.fromhex(fig["pnl_sum"])
        assert pnl == pytest.approx(final - DEFAULT_INITIAL_CAPITAL, rel=1e-9, abs=1e-6), case
        assert fig["fast_metrics"][L.M_FINAL_EQUITY] == fig["final_equity"], case  # fast == full mode


def _close(a: Any, b: Any) -> bool:
    """Recorded and current figures equal, float hex texts to 1e-9 relative; digests left out."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(k.endswith("sha256") or _close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        x, y = float.fromhex(a), float.fromhex(b)
        return x == pytest.approx(y, rel=1e-9, abs=1e-9, nan_ok=True)
    return a == b


def test_figures_on_the_synthetic_sample_are_bit_identical_to_before():
    """Bit for bit where the sample's candles are those it was recorded on; numpy's exp and sin
    differ in the last bit between machines (SIMD builds), and so do the generated candles:
    there, every figure to 1e-9 and every count exactly (the real BTC file's test below stays
    bit for bit everywhere)."""
    data = json.loads(FIGURES.read_text())
    recorded = data["synthetic"]
    assert set(recorded) <= {case for _, _, case, _ in cases()}  # strategies added since are new figures
    frame = sample_frame()
    now = figures(frame)
    if data.get("synthetic_fingerprint") == as_bars(frame).fingerprint:
        assert not _compare(recorded, now)
    else:
        assert not [case for case, fig in recorded.items() if not _close(fig, _as_recorded(fig, now.get(case, {})))]
    _pnl_sums_add_up(now)


def test_figures_on_real_btc_are_bit_identical_to_before(btc_1h):
    recorded = json.loads(FIGURES.read_text())["btc"]
    if recorded["fingerprint"] != as_bars(btc_1h).fingerprint:
        pytest.skip("the BTC file differs from the one the figures were recorded on")
    now = figures(btc_1h)
    assert not _compare(recorded["figures"], now)
    _pnl_sums_add_up(now)
