"""Walk-forward: window planning, stitching, no look-ahead, cancel."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadx.errors import ParamError
from threadx.validation.walkforward import plan_windows, walk_forward, window_lengths


@settings(max_examples=300, deadline=None)
@given(n=st.integers(4, 5000), is_bars=st.integers(2, 800), oos=st.integers(2, 400), extra=st.integers(0, 300),
       anchored=st.booleans())
def test_windows_tile_the_data_as_configured(n, is_bars, oos, extra, anchored):
    step = oos + extra
    if is_bars + oos > n:
        with pytest.raises(ParamError, match="no walk-forward window fits"):
            plan_windows(n, is_bars, oos, step, anchored)
        return
    windows = plan_windows(n, is_bars, oos, step, anchored)
    assert windows[0].oos_start == is_bars
    for k, w in enumerate(windows):
        assert w.index == k
        assert w.is_end == w.oos_start and w.oos_end - w.oos_start == oos and w.oos_end <= n
        assert w.is_start == (0 if anchored else w.oos_start - is_bars)
        if k:
            assert w.oos_start - windows[k - 1].oos_start == step
    assert windows[-1].oos_start + step + oos > n  # no further complete window fits
    if extra == 0:  # OOS windows tile one contiguous stretch
        covered = np.concatenate([np.arange(w.oos_start, w.oos_end) for w in windows])
        np.testing.assert_array_equal(covered, np.arange(is_bars, is_bars + len(windows) * oos))


def test_window_arguments_are_checked():
    with pytest.raises(ParamError, match="overlap"):
        plan_windows(1000, 100, 50, 20)
    with pytest.raises(ParamError, match="whole number"):
        plan_windows(1000, 1.5, 50)
    with pytest.raises(ParamError, match="not both"):
        window_lengths("1h", is_bars=10, is_days=1, oos_bars=5)
    with pytest.raises(ParamError, match="oos window length"):
        window_lengths("1h", is_bars=10)
    assert window_lengths("1h", is_days=10, oos_days=2.5, step_days=3) == (240, 60, 72)
    assert window_lengths("4h", is_bars=100, oos_days=1) == (100, 6, None)


SPACE = {"fast_period": "5:30:5", "slow_period": "40:120:20"}


@pytest.fixture(scope="module")
def wf(synthetic_bars):
    return walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                        objective="total_return", workers=2)


def test_stitched_oos_equity_chains_the_oos_backtests(wf, synthetic_bars):
    capital = wf.config["initial_capital"]
    assert len(wf.windows) == (365 - 90) // 30
    expected_index = synthetic_bars.index[wf.windows[0].oos_start:wf.windows[-1].oos_end]
    assert wf.oos_equity.index.equals(expected_index)
    combo_pos = {cid: k for k, cid in enumerate(wf.combos["combo_id"])}
    start = capital
    for win, row in zip(wf.windows, wf.table.itertuples()):
        segment = wf.oos_equity.iloc[win.oos_start - wf.windows[0].oos_start:][: win.oos_end - win.oos_start]
        # the window's fast-kernel OOS run from the initial capital: same return (percent sizing scales)
        fast = wf.metric("total_return", "oos")[win.index, combo_pos[row.combo_id]]
        assert segment.iloc[-1] / start - 1.0 == pytest.approx(fast, rel=1e-9, abs=1e-12)
        assert row.oos_total_return == pytest.approx(fast, rel=1e-9, abs=1e-12)
        start = segment.iloc[-1]
    assert wf.oos_trades["pnl"].sum() == pytest.approx(wf.oos_equity.iloc[-1] - capital, rel=1e-9)
    assert wf.oos_summary["total_return"] == pytest.approx(wf.oos_equity.iloc[-1] / capital - 1.0)
    assert set(wf.oos_trades["window"]) <= set(range(len(wf.windows)))
    assert (wf.oos_trades["entry_i"] >= wf.windows[0].oos_start).all()


def test_each_window_winner_is_the_in_sample_best(wf):
    values = wf.metric("total_return", "is")
    for win, row in zip(wf.windows, wf.table.itertuples()):
        best = wf.combos["combo_id"].iloc[int(np.nanargmax(values[win.index]))]
        assert row.combo_id == best
    assert wf.consistency == pytest.approx((wf.table["oos_total_return"] > 0).mean())
    mean_is, mean_oos = wf.table["is_sharpe"].mean(), wf.table["oos_sharpe"].mean()
    if mean_is > 0:
        assert wf.efficiency == pytest.approx(mean_oos / mean_is)


def test_no_look_ahead_truncated_history_gives_the_same_windows(wf, synthetic_bars):
    cut = wf.windows[3].oos_end
    short = walk_forward(synthetic_bars.slice(0, cut), "ma_crossover", SPACE, sampler="grid", is_days=90,
                         oos_days=30, objective="total_return", workers=1)
    assert len(short.windows) == 4
    np.testing.assert_array_equal(short.is_metrics, wf.is_metrics[:4])
    np.testing.assert_array_equal(short.oos_metrics, wf.oos_metrics[:4])
    assert short.table["combo_id"].tolist() == wf.table["combo_id"].tolist()[:4]
    np.testing.assert_array_equal(short.oos_equity.to_numpy(), wf.oos_equity.to_numpy()[: len(short.oos_equity)])


def test_cancel_keeps_the_finished_combos_and_reports_progress(synthetic_bars):
    checks = []
    seen = []

    def cancel():  # asked before each chunk of combos: stop after the first one
        checks.append(1)
        return len(checks) > 1

    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30, workers=1,
                      progress=lambda p: seen.append(p.done), cancel=cancel)
    assert wf.meta["cancelled"] and wf.meta["combos_done"] == 8 < wf.meta["combos_planned"] == 30
    assert len(wf.combos) == 8 and wf.is_metrics.shape[1] == 8 and np.isfinite(wf.is_metrics).any()
    assert seen[0] == 0 and seen[-1] == 8


def test_bad_arguments_are_refused(synthetic_bars):
    with pytest.raises(ParamError, match="objective"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=90, oos_days=30, objective="nope")
    with pytest.raises(ParamError, match="sampler"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=90, oos_days=30, sampler="adaptive")
    with pytest.raises(ParamError, match="no walk-forward window fits"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=300, oos_days=90)
