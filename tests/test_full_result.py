"""One function turns kernel output into a Result: a backtest, the walk-forward's OOS windows
and the validation report's sweep winner all agree with :func:`threadx.engine.result.full_result`."""
from __future__ import annotations

import pandas as pd
import pytest

import threadx
from threadx.engine.inputs import options_from
from threadx.engine.result import Result, full_result
from threadx.validation.common import to_python
from threadx.validation.report import _winner, _winner_run, sweep_evaluator
from threadx.validation.walkforward import _slice_args, walk_forward

SPACE = {"fast_period": "5:30:5", "slow_period": "40:120:20"}
ENGINE = {"fee_bps": 7.5, "slippage_bps": 2.0}


def assert_same_result(a: Result, b: Result, meta: bool = True) -> None:
    """Bit-identical metrics, trades, equity and params (and meta but the run time and its timings)."""
    assert a.metrics.keys() == b.metrics.keys()
    pd.testing.assert_series_equal(pd.Series(a.metrics), pd.Series(b.metrics), check_exact=True)
    pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
    pd.testing.assert_series_equal(a.equity, b.equity, check_exact=True)
    assert a.params == b.params
    if meta:
        run_time = ("elapsed_s", "timings")
        assert {k: v for k, v in a.meta.items() if k not in run_time} == \
            {k: v for k, v in b.meta.items() if k not in run_time}


def test_walk_forward_oos_windows_are_full_results_of_the_sliced_inputs(synthetic_bars):
    wf = walk_forward(synthetic_bars, "ma_crossover", SPACE, sampler="grid", is_days=90, oos_days=60,
                      objective="total_return", workers=1, **ENGINE)
    index, capital, checked = synthetic_bars.index, wf.config["initial_capital"], 0
    for win, row in zip(wf.windows, wf.table.to_dict(orient="records")):
        assert not pd.isna(row["combo_id"])  # every window has a winner here: capital chains through all
        combo = wf.combos[wf.combos["combo_id"] == row["combo_id"]].iloc[0]
        params = {name: to_python(combo[name]) for name in wf.combos.columns if name != "combo_id"}
        args = _slice_args(wf.evaluator.kernel_inputs(params), win.oos_start, win.oos_end, synthetic_bars, capital)
        expected = full_result(args, index[win.oos_start:win.oos_end], synthetic_bars.timeframe, params)
        trades = wf.oos_trades[wf.oos_trades["window"] == win.index].drop(columns="window").reset_index(drop=True)
        trades["entry_i"] -= win.oos_start
        trades["exit_i"] -= win.oos_start
        pd.testing.assert_frame_equal(trades, expected.trades, check_exact=True)
        equity = wf.oos_equity.loc[expected.equity.index]
        pd.testing.assert_series_equal(equity, expected.equity, check_exact=True)
        for name in ("sharpe", "total_return", "max_drawdown", "n_trades"):
            assert row[f"oos_{name}"] == expected.metrics[name]
        capital = float(expected.equity.iloc[-1])
        checked += len(expected.trades)
    assert checked > 0 and wf.oos_equity.iloc[-1] == capital


def test_the_reports_winner_is_the_backtest_of_its_params(synthetic_bars, tmp_path):
    run = threadx.sweep(synthetic_bars, "ma_crossover", SPACE, store=tmp_path, run_id="fr", executor="inline",
                        workers=1, objective="total_return", **ENGINE)
    winner = _winner_run(run, _winner(run), sweep_evaluator(run, synthetic_bars))
    assert isinstance(winner, Result) and len(winner.trades)
    backtest = threadx.backtest(synthetic_bars, "ma_crossover", winner.params, **ENGINE)
    assert_same_result(winner, backtest)
    assert backtest.meta["options"] == options_from(**ENGINE).to_dict()
    report = threadx.validate(run, synthetic_bars, n=100, S=4)
    pd.testing.assert_series_equal(report.equity, backtest.equity, check_exact=True)
    assert report.n_trades == len(backtest.trades) and report.source["params"] == backtest.params
