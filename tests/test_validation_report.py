"""Validation reports of sweeps and walk-forwards, stability, the public API and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.cli import main
from threadx.data.io import write_ohlcv
from threadx.data.synthetic import generate_synthetic
from threadx.errors import ParamError
from threadx.optimize.space import SearchSpace
from threadx.strategy.base import get_strategy
from threadx.validation.report import sweep_evaluator, validate_walk_forward
from threadx.validation.stability import neighbour_ids, parameter_stability, stability_grid

SPACE = {"fast_period": "5:30:5", "slow_period": "40:120:20"}


@pytest.fixture(scope="module")
def run(synthetic_bars, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=store, run_id="vr", executor="inline",
                         workers=1, objective="total_return")


def test_neighbours_move_one_param_one_step_and_flag_edges():
    space = SearchSpace(get_strategy("ma_crossover"), SPACE)
    centre = int(space.ids_from_indices(np.array([[2, 0] + [0] * (len(space.axes) - 2)]))[0])
    items, edge = neighbour_ids(space, centre)
    moved = {(p, s): space.params(i) for p, s, i in items}
    assert set(moved) == {("fast_period", -1), ("fast_period", 1), ("slow_period", 1)}
    assert moved[("fast_period", -1)]["fast_period"] == 10 and moved[("slow_period", 1)]["slow_period"] == 60
    assert edge == ("slow_period",)


def test_stability_evaluates_the_neighbours_like_a_backtest(run, synthetic_bars):
    evaluator = sweep_evaluator(run, synthetic_bars)
    best = run.top(1).iloc[0]
    stab = parameter_stability(evaluator, int(best["combo_id"]), "total_return")
    assert stab.winner_value == pytest.approx(best["total_return"], rel=1e-12)
    stored = run.results.set_index("combo_id")["total_return"]
    for row in stab.neighbours.itertuples():
        assert row.objective == pytest.approx(stored[row.combo_id], rel=1e-12)
    if stab.winner_value > 0:
        assert stab.ratio == pytest.approx(stab.neighbours["objective"].mean() / stab.winner_value)
    grid = stability_grid(evaluator, int(best["combo_id"]), "fast_period", "slow_period", "total_return", radius=1)
    assert grid["winner"].sum() == 1 and 4 <= len(grid) <= 9
    with pytest.raises(ParamError):
        stability_grid(evaluator, int(best["combo_id"]), "fast_period", "fast_period")


def test_validate_sweep_report_is_consistent_and_json_safe(run, synthetic_bars):
    report = threadx.validate(run, synthetic_bars, n=200, S=8)
    g = report.grade
    assert g.score == pytest.approx(sum(c.points for c in g.components))
    assert {c.name for c in g.components} == {"oos_is_ratio", "p_value", "consistency", "dsr", "stability", "pbo"}
    assert report.pbo is not None and report.pbo.S == 8 and report.pbo.n_combos == len(run.ok())
    assert report.dsr.n_trials == len(run.ok())
    assert len(report.periods) == 8 and set(report.periods["regime"]) <= {"crash", "bull", "bear", "range"}
    assert report.consistency == pytest.approx((report.periods["return"] > 0).mean())
    best = run.top(1).iloc[0]
    assert report.n_trades == int(best["n_trades"])
    assert report.robustness.bootstrap.observed["sharpe"] == pytest.approx(best["sharpe"], rel=1e-9)
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.parametrize("S", [8, 16, 6])
def test_a_sweep_reports_periods_are_the_blocks_its_pbo_splits(run, synthetic_bars, S):
    """The consistency and the regimes cut the bars in S near-equal parts, the PBO joined the
    stored blocks into S groups: edges a few bars apart, a block's return of another sign."""
    from threadx.validation.pbo import block_groups

    report = threadx.validate(run, synthetic_bars, n=100, S=S)
    block_end = np.asarray(run.manifest["block_end"])
    ends = [int(block_end[group[-1]]) for group in block_groups(len(block_end), S)]
    starts = [0, *ends[:-1]]
    assert list(report.periods["start"]) == [synthetic_bars.index[k] for k in starts]
    assert list(report.periods["end"]) == [synthetic_bars.index[k - 1] for k in ends]
    split = np.cumsum([len(part) for part in np.array_split(np.arange(len(synthetic_bars)), S)])
    assert ends[-1] == len(synthetic_bars) and (S == 8 or ends != split.tolist())  # (the edges the test tells apart)


def test_sweep_validation_refuses_other_data(run, synthetic_bars):
    with pytest.raises(ParamError, match="differs"):
        threadx.validate(run, synthetic_bars.slice(0, 5000), n=100)


def test_api_bootstrap_dsr_and_pbo(run, synthetic_bars):
    result = threadx.backtest(synthetic_bars, "ma_crossover", {"fast_period": 10, "slow_period": 60})
    robust = threadx.bootstrap(result, n=200, seed=3)
    assert robust.bootstrap.observed["sharpe"] == pytest.approx(result.metrics["sharpe"], rel=1e-9)
    assert robust.bootstrap.observed["max_drawdown"] == pytest.approx(result.metrics["max_drawdown"], rel=1e-9)
    assert len(robust.trade_drawdowns) == 200 and (robust.trade_drawdowns <= 0).all()
    dsr = threadx.deflated_sharpe(run, synthetic_bars)
    assert 0.0 <= dsr.dsr <= 1.0 and dsr.n_trials == len(run.ok())
    assert threadx.pbo(run, S=4).n_splits == 6
    with pytest.raises(ParamError):
        threadx.bootstrap("not a result")


def test_validate_walk_forward(synthetic_bars):
    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                              workers=1)
    report = validate_walk_forward(wf, n=200, S=8)
    assert report.oos_is_ratio == wf.efficiency or (np.isnan(report.oos_is_ratio) and np.isnan(wf.efficiency))
    assert report.consistency == wf.consistency and report.n_trades == len(wf.oos_trades)
    assert len(report.periods) == len(wf.windows)
    assert report.regimes["n_windows"].sum() == len(wf.windows)
    json.dumps(report.to_dict(), allow_nan=False)
    json.dumps(wf.to_dict(), allow_nan=False)


def test_cli_walkforward_and_validate(run, data_root, tmp_path, capsys):
    code = main(["walkforward", "--data", "sample:BTC_USDT-1h", "--strategy", "ma_crossover",
                 "--param", "fast_period=5,10", "--param", "slow_period=40,80", "--sampler", "grid",
                 "--is-days", "120", "--oos-days", "60", "--bootstrap", "100", "--S", "4", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["validation"]["grade"]["letter"] in "ABCDF" and len(data["walk_forward"]["windows"]) == 10
    store = str(run._parts[0].parent.parent)
    assert main(["validate", "vr", "--store", store, "--data", "sample:BTC_USDT-1h", "--bootstrap", "100"]) == 2
    assert "differs" in capsys.readouterr().err  # the run was swept on other candles
    path = tmp_path / "same.parquet"
    write_ohlcv(generate_synthetic(days=365, seed=7), path)  # the candles of the synthetic_bars fixture
    assert main(["validate", "vr", "--store", store, "--data", str(path), "--bootstrap", "100", "--S", "4"]) == 0
    out = capsys.readouterr().out
    assert "grade " in out and "PBO:" in out and "deflated Sharpe" in out


def test_cli_validate_refuses_a_block_leaving_fewer_than_10_blocks(run, synthetic_bars, data_root, tmp_path, capsys):
    """--block as long as the series gave a zero-width Sharpe CI and p = 0.001 (a better grade)."""
    store = str(run._parts[0].parent.parent)
    path = tmp_path / "same.parquet"
    write_ohlcv(generate_synthetic(days=365, seed=7), path)  # the candles of the synthetic_bars fixture
    t = len(synthetic_bars)  # the winner's per-bar returns: one per bar
    argv = ["validate", "vr", "--store", store, "--data", str(path), "--bootstrap", "100", "--S", "4"]
    assert main([*argv, "--block", str(t)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --block must be at most {t // 10:,} bars for {t:,} returns (at least 10 blocks per "
                   f"resample), got {t}: longer blocks only rotate the series, which narrows the Sharpe interval to "
                   "a point and makes any p-value look significant")
    assert main([*argv, "--block", str(t // 10)]) == 0
    assert f"block {t // 10:,} bars" in capsys.readouterr().out


def test_cli_walkforward_refuses_a_block_too_long_for_its_data_before_running(data_root, tmp_path, capsys,
                                                                              monkeypatch):
    """The block is checked against the stitched out-of-sample record (its windows' bars: fewer than
    the data's) before the windows run: a block that passed a check against all the bars failed after
    every window had run, and nothing was stored."""
    monkeypatch.setenv("THREADX_RESULTS_DIR", str(tmp_path / "results"))
    path = tmp_path / "d.parquet"
    write_ohlcv(generate_synthetic(days=60, seed=7), path)
    oos = 4 * 10 * 24  # IS 20 days, OOS 10 days: 4 windows in 60 days
    argv = ["walkforward", "--strategy", "ma_crossover", "--data", str(path), "--is-days", "20", "--oos-days", "10",
            "--run-id", "wf-long-block", "-q", "--block"]
    assert oos // 10 + 1 < 60 * 24 // 10  # (passed a check against the data's bars)
    run = threadx.walk_forward
    with monkeypatch.context() as patched:
        patched.setattr(threadx, "walk_forward", lambda *a, **k: pytest.fail("the windows ran"))
        assert main([*argv, str(oos // 10 + 1)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: --block must be at most {oos // 10:,} bars for {oos:,} returns")
    assert threadx.walk_forward is run
    assert main([*argv, str(oos // 10), "--n", "4", "--bootstrap", "100"]) == 0


def test_cli_validate_errors(data_root, tmp_path, capsys):
    assert main(["validate", "missing", "--store", str(tmp_path)]) == 2
    assert "no run" in capsys.readouterr().err
    assert main(["validate", "missing", "--store", str(tmp_path), "--timeframe", "banana"]) == 2  # (it was ignored)
    assert "--timeframe goes with --data" in capsys.readouterr().err
    assert main(["walkforward", "--strategy", "ma_crossover", "--is-days", "5000", "--oos-days", "30"]) == 2
    assert "no walk-forward window fits" in capsys.readouterr().err


def test_pbo_of_a_large_sweep_reads_a_subset_that_keeps_the_winner(run):
    full = threadx.pbo(run, S=4)
    part = threadx.pbo(run, S=4, max_combos=10)
    assert full.n_combos == full.n_combos_total == len(run.ok())
    assert part.n_combos == 10 and part.n_combos_total == len(run.ok()) and "subset" in part.note
    np.testing.assert_array_equal(run.ok_ids(), np.sort(run.ok()["combo_id"].to_numpy()))


def test_pbo_of_a_sweep_names_the_combos_it_used_and_each_splits_winner_by_combo_id(run):
    """Not by row of its internal moments (0..n-1), which nothing outside can map back."""
    from threadx.validation.pbo import pbo_from_moments

    winner = int(run.top(1).iloc[0]["combo_id"])
    for part in (threadx.pbo(run, S=4), threadx.pbo(run, S=4, max_combos=10)):
        assert set(part.combo_indices.tolist()) <= set(run.ok_ids().tolist()) and winner in part.combo_indices
        ids, sums, sqs, counts = run.block_moments(np.sort(part.combo_indices))
        direct = pbo_from_moments(sums, sqs, counts, S=4)  # the same combos, rows 0..n-1
        np.testing.assert_array_equal(part.best_index, ids[direct.best_index])
        np.testing.assert_array_equal(part.logits, direct.logits)
    assert not np.array_equal(np.sort(part.combo_indices), np.arange(10))  # the subset's ids, not its positions


@pytest.mark.parametrize("winner, neighbours, maximize, expected", [
    (2.0, [1.0, 1.5], True, 0.625),        # positive, maximised: neighbours keep 62.5 %
    (-0.2, [-0.4, -0.4], True, 0.5),       # negative (e.g. max drawdown), maximised: worse neighbours < 1
    (-0.2, [-0.1, -0.3], True, 1.0),       # neighbours no worse on average
    (10.0, [20.0, 20.0], False, 0.5),      # positive, minimised
    (-10.0, [-5.0, -5.0], False, 0.5),     # negative, minimised
    (1.0, [-1.0, -1.0], True, -1.0),       # a peak above a valley: scores nothing
    (0.0, [1.0], True, float("nan")),
])
def test_stability_ratio_handles_signs_and_directions(winner, neighbours, maximize, expected):
    from threadx.validation.stability import _ratio

    ratio, _ = _ratio(winner, np.array(neighbours), maximize)
    assert ratio == pytest.approx(expected, nan_ok=True)


def test_walk_forward_report_without_a_full_period_winner_still_grades(synthetic_bars):
    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                              workers=1, min_trades=10_000)
    report = validate_walk_forward(wf, n=100, S=4)
    stability = next(c for c in report.grade.components if c.name == "stability")
    assert stability.points == 0 and "not available" in stability.explanation
    assert "minimum trade count" in report.stability.note
    assert report.consistency == 0.0 and report.grade.letter == "F"


def test_trade_shuffles_compare_with_the_actual_order(synthetic_bars):
    result = threadx.backtest(synthetic_bars, "ma_crossover", {"fast_period": 10, "slow_period": 60})
    robust = threadx.bootstrap(result, n=300, seed=1)
    capital = result.meta["options"]["initial_capital"]
    # with one position at a time, compounding the trades' equity returns rebuilds the final equity
    path = np.cumprod(np.concatenate([[1.0], 1.0 + _trade_fractions(result, capital)]))
    assert path[-1] * capital == pytest.approx(result.equity.iloc[-1], rel=1e-9)
    assert robust.observed_drawdown == pytest.approx(float(np.min(path / np.maximum.accumulate(path) - 1.0)))
    assert robust.trade_drawdowns.min() <= robust.observed_drawdown <= robust.trade_drawdowns.max() + 1e-12


def _trade_fractions(result, capital):
    from threadx.validation.report import _trade_returns

    return _trade_returns(result.trades, result.equity, capital)


def test_a_reloaded_walk_forward_rebuilds_its_evaluator(synthetic_bars, data_root, tmp_path):
    from threadx.validation.report import walk_forward_evaluator
    from threadx.validation.storage import load_walk_forward, save_walk_forward

    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=30,
                              workers=1)
    report = validate_walk_forward(wf, n=100, S=4)
    save_walk_forward("wf1", wf, report, tmp_path)
    loaded, stored_report = load_walk_forward("wf1", tmp_path)
    assert loaded.evaluator is None and stored_report.grade.score == report.grade.score
    evaluator = walk_forward_evaluator(loaded, synthetic_bars)  # the same candles, passed in
    again = parameter_stability(evaluator, report.stability.combo_id, wf.objective)
    pd.testing.assert_frame_equal(again.neighbours, report.stability.neighbours)
    with pytest.raises(ParamError, match="differs"):
        walk_forward_evaluator(loaded, synthetic_bars.slice(0, 4000))
    # its dataset name is not in this (empty) data root: stability says why instead of failing
    rerun = validate_walk_forward(loaded, n=100, S=4)
    assert np.isnan(rerun.stability.ratio) and "no data to evaluate neighbours" in rerun.stability.note


def test_a_choice_or_bool_is_never_an_edge_and_every_other_value_of_it_is_a_neighbour():
    """A winner at ma_type=sma (the first of [sma, ema]) or allow_short=False was flagged 'on the
    grid edge', which capped the stability score at half for every winner of such a space: a
    choice has no outside to widen. Along a choice every other value is a neighbour (its
    values have no order: one step from 'sma' in [sma, ema, ...] is not the only other one)."""
    space = SearchSpace(get_strategy("ma_crossover"), {**SPACE, "ma_type": ["sma", "ema"],
                                                         "allow_short": [False, True]})
    names = [a.name for a in space.axes]
    at = {"fast_period": 2, "slow_period": 2, "ma_type": 0, "allow_short": 0}  # interior on both numbers
    centre = int(space.ids_from_indices(np.array([[at.get(n, 0) for n in names]]))[0])
    items, edge = neighbour_ids(space, centre)
    assert edge == ()
    moved = {(p, s): space.params(i) for p, s, i in items}
    assert moved[("ma_type", 1)]["ma_type"] == "ema" and moved[("allow_short", 1)]["allow_short"] is True
    assert {p for p, _ in moved} == {"fast_period", "slow_period", "ma_type", "allow_short"} and len(moved) == 6


def test_a_report_of_a_run_not_finished_says_it_covers_part_of_it(run, synthetic_bars, tmp_path, capsys):
    """`threadx validate` graded a run still running (2,912 of 4,305 combos) or interrupted (832)
    like a finished one: the winner, the deflated Sharpe's N and the PBO depend on what is stored."""
    asked = []

    def stop() -> bool:  # after a few chunks
        asked.append(1)
        return len(asked) > 3

    part = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "5:30:1", "slow_period": "40:120:20"},
                         store=tmp_path, run_id="half", executor="inline", workers=1, chunk_size=4, cancel=stop)
    assert part.manifest["status"] == "cancelled"
    stored, total = len(part.results), part.manifest["total"]
    report = threadx.validate("half", synthetic_bars, store=tmp_path, n=100, S=4)
    assert report.source["partial"] == (
        f"run half was stopped: {stored:,} of {total:,} combos stored; this report covers these only (its "
        "winner, the deflated Sharpe's N and the PBO can change once the rest runs)")
    path = tmp_path / "same.parquet"
    write_ohlcv(generate_synthetic(days=365, seed=7), path)  # the candles of the synthetic_bars fixture
    assert main(["validate", "half", "--store", str(tmp_path), "--data", str(path), "--bootstrap", "100",
                 "--S", "4"]) == 0
    assert f"warning: run half was stopped: {stored:,} of {total:,} combos stored" in capsys.readouterr().err
    assert threadx.validate(run, synthetic_bars, n=100, S=4).source["partial"] is None  # a finished run


def test_a_backtest_result_handed_for_a_sweep_is_one_short_error():
    """threadx.deflated_sharpe(result) read 'invalid run id "Result(metrics={...' with the whole
    result pasted into the line (about 3 KB)."""
    import threadx
    from threadx.data.synthetic import generate_synthetic
    from threadx.errors import ParamError

    result = threadx.backtest(generate_synthetic(days=30, seed=1), "ma_crossover")
    for call in (threadx.deflated_sharpe, threadx.pbo):
        with pytest.raises(ParamError, match=r"expected a stored sweep \(a SweepRun or its run id\), got a Result") as info:
            call(result)
        assert len(str(info.value)) < 200


@pytest.mark.parametrize("n_bars", [16, 25, 31])
def test_a_sweep_on_fewer_bars_than_two_per_block_still_reports(n_bars, tmp_path):
    """16 to 31 bars cut into 16 blocks leave blocks of one bar: the report failed with "need at
    least 2 close prices in a one-dimensional array" (15 and 32 bars reported)."""
    bars = generate_synthetic(days=2, seed=5).iloc[:n_bars]
    swept = threadx.sweep(bars, "ma_crossover", {"fast_period": [2, 3], "slow_period": [4, 5]}, min_trades=0,
                          executor="inline", workers=1, store=tmp_path)
    report = threadx.validate(swept, bars, n=100, S=16)
    assert len(report.periods) == 16 and set(report.periods["regime"]) <= {"crash", "bull", "bear", "range"}
    json.dumps(report.to_dict(), allow_nan=False)
