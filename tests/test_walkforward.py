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

    def cancel():  # asked before each chunk of combos and each combo: a stop lands between two combos
        checks.append(1)
        return len(checks) > 3

    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30, workers=1,
                      progress=lambda p: seen.append(p.done), cancel=cancel)
    done = wf.meta["combos_done"]
    assert wf.meta["cancelled"] and 0 < done < 8 < wf.meta["combos_planned"] == 30  # within the first chunk of 8
    assert len(wf.combos) == done and wf.is_metrics.shape[1] == done and np.isfinite(wf.is_metrics).any()
    assert seen[0] == 0 and seen[-1] == done


def test_bad_arguments_are_refused(synthetic_bars):
    with pytest.raises(ParamError, match="objective"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=90, oos_days=30, objective="nope")
    with pytest.raises(ParamError, match="sampler"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=90, oos_days=30, sampler="adaptive")
    with pytest.raises(ParamError, match="no walk-forward window fits"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=300, oos_days=90)


def test_changing_prices_after_the_in_sample_window_leaves_its_metrics_alone(wf, synthetic_bars):
    """Any use of later bars in a window's IS backtest (or signals) would show here."""
    from threadx.data.bars import Bars

    w = wf.windows[4]
    factor = np.ones(len(synthetic_bars))
    factor[w.is_end:] = 1.0 + 0.05 * np.sin(np.arange(len(synthetic_bars) - w.is_end) / 7.0)
    moved = Bars(open=synthetic_bars.open * factor, high=synthetic_bars.high * factor,
                 low=synthetic_bars.low * factor, close=synthetic_bars.close * factor,
                 volume=synthetic_bars.volume, time_ns=synthetic_bars.time_ns, timeframe="1h", name="moved")
    other = walk_forward(moved, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                         objective="total_return", workers=1)
    for k in range(5):  # every window whose IS ends before the change: IS untouched
        np.testing.assert_array_equal(other.is_metrics[k], wf.is_metrics[k])
    np.testing.assert_array_equal(other.oos_metrics[:4], wf.oos_metrics[:4])
    assert not np.array_equal(other.oos_metrics[4], wf.oos_metrics[4])  # the OOS of window 4 did see it
    assert not np.array_equal(other.is_metrics[5], wf.is_metrics[5])


def test_windows_without_a_winner_count_as_not_positive(synthetic_bars):
    loose = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30, workers=1)
    trades = loose.metric("n_trades", "is")
    cut = int(np.median(trades.max(axis=1)))  # about half the windows have a combo with that many IS trades
    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30, workers=1,
                      min_trades=cut)
    empty = wf.table["combo_id"].isna()
    assert empty.any() and (~empty).any()
    assert wf.consistency == pytest.approx((wf.table["oos_total_return"] > 0).sum() / len(wf.windows))
    for win, row in zip(wf.windows, wf.table.itertuples()):
        if empty[win.index]:  # flat: the equity does not move through that window
            seg = wf.oos_equity.iloc[win.oos_start - wf.windows[0].oos_start:][: win.oos_end - win.oos_start]
            assert seg.nunique() == 1


def test_liquidation_in_one_window_leaves_the_rest_flat_at_zero(synthetic_bars):
    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=60, oos_days=30, workers=1,
                      sizing="fraction", fraction=1.0, leverage=50.0)
    assert wf.oos_equity.iloc[-1] == 0.0 and (wf.oos_equity >= 0).all()
    assert wf.table["liquidated_before"].any()
    first_dead = int(wf.table.index[wf.table["liquidated_before"]][0])
    assert wf.table["combo_id"].iloc[first_dead:].isna().all()
    assert wf.oos_summary["total_return"] == -1.0


def test_infinite_objective_ranks_first_like_the_sweep():
    from threadx.validation.walkforward import _select

    values = np.array([1.0, np.inf, np.nan, 3.0])
    assert _select(values, np.ones(4), True, 0) == 1
    assert _select(values, np.ones(4), False, 0) == 0
    assert _select(np.array([np.nan, -np.inf]), np.ones(2), True, 0) is None


def test_every_kernel_call_of_a_walk_forward_hands_read_only_arrays(synthetic_bars, monkeypatch):
    """An OOS window's param vector (its capital set) was handed over writable: numba compiles
    the bar loop once per combination of argument types, so the first walk-forward of a
    process compiled run_full again (70 s in its report stage on a 2-core machine; a browser
    review's first walk-forward took 78.6 s)."""
    from threadx.engine import kernel

    seen = []
    original = kernel.run_full

    def spy(*args):
        seen.append([a.flags.writeable for a in args])
        return original(*args)

    monkeypatch.setattr(kernel, "run_full", spy)
    walk_forward(synthetic_bars, "ma_crossover", {"fast_period": [5, 10], "slow_period": [30]}, sampler="grid",
                 is_days=60, oos_days=30, workers=1)
    assert seen and not any(any(flags) for flags in seen)


def test_a_walk_forward_whose_every_combo_fails_says_why(synthetic_bars):
    """A strategy whose indicators() names an unknown indicator failed every combo: the job then
    said 'need the Sharpe ratio of at least one trial' (the validation's complaint)."""
    import sweep_helpers  # noqa: F401 - registers test_faulty (mode 1 raises in signals)

    with pytest.raises(ParamError, match=r"every combo of the walk-forward failed \(3\); the most frequent error "
                                         r"\(1 combos\): .*deliberate failure for fast_period="):
        walk_forward(synthetic_bars, "test_faulty", {"fast_period": [5, 10, 15], "mode": [1]}, sampler="grid",
                     is_days=60, oos_days=30, workers=1)


def test_windows_without_a_winner_are_said(wf, synthetic_bars):
    """A walk-forward where no window had a winner read as a flat 0.00 % result graded F, without a
    word (1-day windows: 24 in-sample bars, no combo with the 10 trades asked)."""
    assert wf.idle_note() is None  # every window had a winner
    small = {"fast_period": [5], "slow_period": [40]}
    none = walk_forward(synthetic_bars.slice(0, 24 * 40), "ma_crossover", small, sampler="grid", is_days=5,
                        oos_days=5, min_trades=50, workers=1)
    assert none.table["combo_id"].isna().all()
    assert none.idle_note().startswith("No window had a winner (no combo had at least 50 in-sample trades")
    trades = walk_forward(synthetic_bars.slice(0, 24 * 90), "ma_crossover", small, sampler="grid", is_days=10,
                          oos_days=5, min_trades=0, workers=1).metric("n_trades", "is")[:, 0]
    assert trades.min() < trades.max(), trades
    some = walk_forward(synthetic_bars.slice(0, 24 * 90), "ma_crossover", small, sampler="grid", is_days=10,
                        oos_days=5, min_trades=int(trades.max()), workers=1)
    idle = int((trades < trades.max()).sum())
    assert int(some.table["combo_id"].isna().sum()) == idle > 0
    assert some.idle_note() == (f"{idle:,} of {len(trades):,} windows had no winner (no combo had at least "
                                f"{int(trades.max()):,} in-sample trades and a finite objective): the record is flat "
                                "through their OOS part")


def test_windows_given_in_days_say_how_days_became_bars(synthetic_bars):
    """3 OOS days of weekly bars read "out-of-sample length must be a whole number of bars >= 2,
    got 0"; days counted round the clock on session data asked for bars the user never gave."""
    with pytest.raises(ParamError, match=r"oos_days 0.04 is 1 1h bar\(s\): a window needs at least 2; give at least "
                                         r"two bars' time \(2 h\)"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=30, oos_days=0.04)
    with pytest.raises(ParamError, match=r"no walk-forward window fits .* \(days become bars at 24 1h bars a day, "
                                         "round the clock"):
        walk_forward(synthetic_bars, "ma_crossover", SPACE, is_days=700, oos_days=100)
