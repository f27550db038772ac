"""min_notional: an exchange-like minimum order value by default, the same everywhere.

An entry whose order value (quote currency) would be below ``DEFAULT_MIN_NOTIONAL`` is
skipped and counted in ``n_skipped``: a shrinking account stops instead of trading dust
(the tracker's case: 993 trades of 1e-14 SOL down to 7.9e-14 equity).
"""
from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.cli import build_parser, main
from threadx.cli.common import _engine_options
from threadx.config import DEFAULT_MIN_NOTIONAL
from threadx.engine import layout as L
from threadx.engine.inputs import EngineOptions, effective_rules, options_from, param_vector
from threadx.indicators import IndicatorBank
from threadx.strategy.base import get_strategy

TINY = 4.0  # an initial capital below the default minimum order value: every all-in entry is dust
MA = {"fast_period": 5, "slow_period": 20}


@pytest.fixture(scope="module")
def bank():
    return IndicatorBank(disk=False)


def test_one_default_used_by_the_api_the_options_and_the_cli():
    assert DEFAULT_MIN_NOTIONAL == 5.0
    assert EngineOptions().min_notional == DEFAULT_MIN_NOTIONAL
    assert options_from().min_notional == DEFAULT_MIN_NOTIONAL
    # the API and the CLI leave it unset: the setting engine.min_notional decides (default 5.0)
    assert inspect.signature(threadx.backtest).parameters["min_notional"].default is None
    for command in (["backtest", "--strategy", "bb_atr"], ["sweep", "--strategy", "bb_atr"],
                    ["walkforward", "--strategy", "bb_atr", "--is-days", "90", "--oos-days", "30"]):
        args = build_parser().parse_args(command)
        assert args.min_notional is None, command
        assert options_from(**_engine_options(args)).min_notional == DEFAULT_MIN_NOTIONAL, command


def test_the_kernel_parameter_vector_carries_the_default():
    options = options_from()
    rules = effective_rules(get_strategy("bb_atr").exits(get_strategy("bb_atr").normalize({})), options)
    assert param_vector(rules, options, "1h", False)[L.P_MIN_NOTIONAL] == DEFAULT_MIN_NOTIONAL


def test_dust_entries_are_skipped_and_counted_by_default(synthetic_bars, bank):
    dust = threadx.backtest(synthetic_bars, "ma_crossover", MA, initial_capital=TINY, sizing="all_in", bank=bank)
    assert dust.metrics["n_trades"] == 0 and dust.metrics["n_skipped"] > 0
    assert dust.equity.iloc[-1] == TINY
    off = threadx.backtest(synthetic_bars, "ma_crossover", MA, initial_capital=TINY, sizing="all_in",
                           min_notional=0.0, bank=bank)
    assert off.metrics["n_trades"] > 0 and off.metrics["n_skipped"] == 0


@pytest.mark.parametrize("strategy, params", [("bb_atr", {}), ("ma_crossover", MA),
                                              ("donchian_breakout", {}), ("supertrend", {})])
def test_normal_results_are_bit_identical_to_no_minimum(synthetic_bars, bank, strategy, params):
    a = threadx.backtest(synthetic_bars, strategy, params, bank=bank)
    b = threadx.backtest(synthetic_bars, strategy, params, min_notional=0.0, bank=bank)
    assert a.metrics["n_trades"] > 0
    assert a.metrics == pytest.approx(b.metrics, nan_ok=True, rel=0, abs=0)
    np.testing.assert_array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    pd.testing.assert_frame_equal(a.trades, b.trades)


def test_sweeps_and_walk_forward_get_the_default(synthetic_bars, bank, tmp_path):
    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": [5, 8], "slow_period": [20, 30]},
                        sampler="grid", initial_capital=TINY, sizing="all_in", executor="inline", bank=bank,
                        store=tmp_path, run_id="dust")
    assert run.manifest["engine"]["min_notional"] == DEFAULT_MIN_NOTIONAL
    assert (run.results["n_trades"] == 0).all() and (run.results["n_skipped"] > 0).all()

    wf = threadx.walk_forward(synthetic_bars, "ma_crossover", {"fast_period": [5, 8], "slow_period": [20, 30]},
                              sampler="grid", is_days=90, oos_days=30, workers=1, initial_capital=TINY,
                              sizing="all_in", min_trades=0)
    assert wf.config["engine"]["min_notional"] == DEFAULT_MIN_NOTIONAL
    assert (wf.metric("n_trades", "oos") == 0).all()


def test_gpu_plan_rows_carry_the_default(synthetic_bars):
    from threadx.optimize.plan import run_plan
    from threadx.optimize.plan import Planner
    from threadx.gpu.workload import evaluator_for, random_ids

    evaluator = evaluator_for("ma_crossover", synthetic_bars, {"fast_period": [5, 8], "slow_period": [20, 30]},
                              initial_capital=TINY, sizing="all_in")
    ids = random_ids(evaluator, 4, seed=1)
    plan = Planner(evaluator).plan(ids)
    assert (plan.rows[:, L.P_MIN_NOTIONAL] == DEFAULT_MIN_NOTIONAL).all()
    metrics, _ = run_plan(plan, synthetic_bars, None, None)
    assert (metrics[:, L.M_N_TRADES] == 0).all() and (metrics[:, L.M_N_SKIPPED] > 0).all()


def test_cli_backtest_skips_dust_unless_told_otherwise(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_CACHE_DIR", str(tmp_path / "cache"))
    base = ["backtest", "--strategy", "ma_crossover", "--param", "fast_period=5", "--param", "slow_period=20",
            "--capital", str(TINY), "--sizing", "all_in", "--json"]
    assert main(base) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["n_trades"] == 0 and metrics["n_skipped"] > 0
    assert main(base + ["--min-notional", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["n_trades"] > 0


def test_the_tracker_dust_case_on_real_sol(shared_data, bank):
    """bb_atr, risk 0.2 at 10x on SOL 1h: 993 dust trades down to ~1e-13 without a minimum."""
    df = pd.read_parquet(shared_data / "binance" / "SOL_USDT-1h.parquet").set_index("timestamp")
    params = {"risk_per_trade": 0.2, "leverage": 10}
    dust = threadx.backtest(df, "bb_atr", params, min_notional=0.0, bank=bank)
    assert dust.metrics["n_trades"] == 993 and dust.equity.iloc[-1] < 1e-12
    fixed = threadx.backtest(df, "bb_atr", params, bank=bank)
    notional = fixed.trades.qty * fixed.trades.entry_price
    assert (notional >= DEFAULT_MIN_NOTIONAL * (1 - 1e-9)).all()
    assert fixed.metrics["n_skipped"] > 0 and fixed.metrics["n_trades"] < 993
    assert fixed.equity.iloc[-1] > 0.1
