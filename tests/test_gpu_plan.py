"""The GPU planner: per combo, the same kernel inputs (and errors) as the CPU path, with each
distinct signal array computed once. No CUDA needed."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.gpu.kernel import run_cpu
from threadx.gpu.plan import Planner
from threadx.gpu.workload import evaluator_for, random_ids
from threadx.strategy import ma_crossover
from threadx.strategy.base import ExitRules, Param, StrategySpec, list_strategies, register

STRATEGIES = ("ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend")


@pytest.fixture(scope="module")
def bars():
    return as_bars(generate_synthetic(days=60, seed=21))


def assert_same_inputs(evaluator, plan) -> None:
    """Row, signal and every line the kernel reads, combo by combo, against Evaluator.kernel_inputs."""
    n = len(evaluator.bars)
    for k, combo in enumerate(plan.ids):
        params = evaluator.space.params(int(combo))
        try:
            args = evaluator.kernel_inputs(params)
        except Exception as exc:  # noqa: BLE001 - the plan must carry the same error
            assert plan.errors.get(int(combo)) == f"{type(exc).__name__}: {exc}", params
            assert plan.status[k] != 0
            continue
        assert plan.status[k] == 0 and int(combo) not in plan.errors, (params, plan.errors.get(int(combo)))
        np.testing.assert_array_equal(plan.rows[k], args[10], err_msg=str(params))
        np.testing.assert_array_equal(plan.signals[plan.sig[k]], args[4], err_msg=str(params))
        for j in range(4):
            cpu_line, gpu_line = args[5 + j], plan.line_values[plan.lines[k, j]]
            if cpu_line.shape == (n,):
                np.testing.assert_array_equal(gpu_line, cpu_line, err_msg=f"line {j} of {params}")
            else:  # a line the rules never read: the CPU passes a placeholder, the plan a NaN line
                assert np.isnan(gpu_line).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_plan_inputs_equal_the_cpu_inputs(bars, strategy):
    evaluator = evaluator_for(strategy, bars, fee_bps=4.0, slippage_bps=1.0)
    ids = random_ids(evaluator, 150, seed=5)
    plan = Planner(evaluator).plan(ids)
    assert (plan.status == 0).all()
    assert_same_inputs(evaluator, plan)


def test_engine_overrides_and_block_returns_flow_into_the_rows(bars):
    evaluator = evaluator_for("bb_atr", bars, sizing="fraction", fraction=0.3, leverage=2.0, n_blocks=8,
                              initial_capital=5_000.0)
    ids = random_ids(evaluator, 60, seed=9)
    plan = Planner(evaluator).plan(ids)
    assert_same_inputs(evaluator, plan)
    metrics, blocks = run_cpu(plan, bars, evaluator.funding, evaluator.block_end, threads=2)
    cpu = evaluator.evaluate(ids)
    np.testing.assert_array_equal(metrics, cpu.metrics)
    np.testing.assert_array_equal(blocks, cpu.blocks)


def test_each_distinct_signal_is_computed_once(bars):
    """bb_atr's signal depends on bb_period (through the z-score, whatever bb_std), entry_z and
    trend_period: one signal computation per distinct triple, not per combo."""
    evaluator = evaluator_for("bb_atr", bars)
    ids = random_ids(evaluator, 2_000, seed=3)
    planner = Planner(evaluator)
    plan = planner.plan(ids)
    cols = evaluator.space.columns(ids)
    triples = set(zip(cols["bb_period"].tolist(), cols["entry_z"].tolist(), cols["trend_period"].tolist()))
    assert len(planner.signals.leaves) == len(triples) == len(plan.signals)
    assert len(planner.levels.leaves) <= len(set(zip(cols["bb_period"].tolist(), cols["atr_period"].tolist())))
    # the row depends on the sizing checks' params only through keys; the rest is copied per combo
    assert len(planner.rows.leaves) <= 2 * 21 * 10
    assert len(planner.needs.leaves) <= 21
    again = planner.plan(ids)  # a later batch reuses every trace
    assert len(planner.signals.leaves) == len(triples)
    np.testing.assert_array_equal(again.rows, plan.rows)


def test_run_cpu_on_a_plan_matches_the_evaluator(bars):
    evaluator = evaluator_for("donchian_breakout", bars)
    ids = random_ids(evaluator, 40, seed=2)
    plan = Planner(evaluator).plan(ids)
    metrics, blocks = run_cpu(plan, bars, evaluator.funding, None)
    assert blocks is None
    np.testing.assert_array_equal(metrics, evaluator.evaluate(ids).metrics)


def test_subset_keeps_only_the_rows_its_combos_use(bars):
    evaluator = evaluator_for("ma_crossover", bars)
    plan = Planner(evaluator).plan(random_ids(evaluator, 50, seed=1))
    sub = plan.subset(np.array([3, 7, 7, 20]))
    assert list(sub.ids) == [plan.ids[3], plan.ids[7], plan.ids[7], plan.ids[20]]
    assert len(sub.signals) == len(set(plan.sig[[3, 7, 20]].tolist()))
    for k, pos in enumerate([3, 7, 7, 20]):
        np.testing.assert_array_equal(sub.signals[sub.sig[k]], plan.signals[plan.sig[pos]])
        np.testing.assert_array_equal(sub.rows[k], plan.rows[pos])
    assert np.isnan(sub.line_values[0]).all()


# --- errors, as the CPU path reports them ------------------------------------------------------------

def _register(spec: StrategySpec) -> StrategySpec:
    if spec.name not in list_strategies():
        register(spec)
    return spec


def _bad_period_indicators(p):
    return {"fast": ("sma", {"period": p["fast_period"] - 6}), "slow": ("sma", {"period": p["slow_period"]})}


BAD_INDICATOR = _register(StrategySpec(
    name="test_gpu_bad_indicator",
    description="sma of fast_period - 6: invalid below 8 (tests only)",
    params=ma_crossover.SPEC.params,
    constraints=ma_crossover.SPEC.constraints,
    indicators=_bad_period_indicators,
    signals=ma_crossover.SPEC.signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
))


def _raising_signals(bars, ind, p):
    if p["fast_period"] % 3 == 0:
        raise ValueError(f"deliberate failure for fast_period={p['fast_period']}")
    return ma_crossover.SPEC.signals(bars, ind, p)


RAISING = _register(StrategySpec(
    name="test_gpu_raising",
    description="ma_crossover whose signals raise for fast_period divisible by 3 (tests only)",
    params=ma_crossover.SPEC.params,
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=_raising_signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
))


@pytest.mark.parametrize("strategy, space, options", [
    ("test_gpu_bad_indicator", {"fast_period": "5:12:1", "slow_period": [20, 40]}, {}),
    ("test_gpu_raising", {"fast_period": "5:12:1", "slow_period": [20, 40]}, {}),
    # sizing risk without a stop: effective_rules refuses the combos with stop_loss_pct 0
    ("ma_crossover", {"fast_period": [5, 9], "stop_loss_pct": [0.0, 1.0, 2.0]}, {"sizing": "risk"}),
    # the exit rules read a line the strategy does not provide (level_arrays)
    ("ma_crossover", {"fast_period": [5, 9]}, {"timeframe_note": None}),
])
def test_plan_reports_the_errors_of_the_cpu_path(bars, strategy, space, options):
    options = {k: v for k, v in options.items() if k != "timeframe_note"}
    evaluator = evaluator_for(strategy, bars, space, **options)
    ids = np.arange(evaluator.space.size)
    ids = ids[evaluator.space.valid_mask(ids)]
    plan = Planner(evaluator).plan(ids)
    cpu = evaluator.evaluate(ids)
    assert plan.errors == cpu.errors
    np.testing.assert_array_equal(plan.status, cpu.status)
    assert_same_inputs(evaluator, plan)
    if strategy != "ma_crossover" or options:
        assert cpu.errors, "the case should make some combos fail"


def _missing_line_exits(p):
    return ExitRules(stop_atr=2.0, sizing="risk", risk_per_trade=0.01)  # an ATR stop, no ATR line


MISSING_LINE = _register(StrategySpec(
    name="test_gpu_missing_line",
    description="ATR stop without an ATR line (tests only)",
    params=ma_crossover.SPEC.params,
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=ma_crossover.SPEC.signals,
    levels=ma_crossover.SPEC.levels,
    exits=_missing_line_exits,
))


def test_a_line_the_rules_need_but_the_strategy_lacks_fails_like_the_cpu(bars):
    evaluator = evaluator_for("test_gpu_missing_line", bars, {"fast_period": [5, 9]})
    ids = np.arange(2)
    plan = Planner(evaluator).plan(ids)
    assert plan.errors == evaluator.evaluate(ids).errors
    assert "ATR line" in plan.errors[0]


# --- a strategy the tagging cannot follow ---------------------------------------------------------

def _sneaky_exits(p):
    # max_hold_bars is a plain copy of hold, but hold also steers stop_pct through numpy, which
    # reads the number without any Python operation the planner could see
    wide = bool(np.greater(p["hold"], 25))
    return ExitRules(stop_pct=0.03 if wide else 0.01, max_hold_bars=p["hold"], sizing="all_in")


SNEAKY = _register(StrategySpec(
    name="test_gpu_sneaky",
    description="exits that use a param through numpy (tests only)",
    params=ma_crossover.SPEC.params + (Param("hold", "int", 10, 1, 100, 1),),
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=ma_crossover.SPEC.signals,
    levels=ma_crossover.SPEC.levels,
    exits=_sneaky_exits,
))


def test_a_param_steering_through_numpy_falls_back_to_exact_keys(bars, caplog):
    evaluator = evaluator_for("test_gpu_sneaky", bars, {"hold": "1:50:1", "fast_period": [5, 8]})
    ids = np.arange(evaluator.space.size)
    planner = Planner(evaluator)
    with caplog.at_level(logging.WARNING, logger="threadx.gpu.plan"):
        plan = planner.plan(ids)
    assert_same_inputs(evaluator, plan)
    assert any("not a plain copy" in r.getMessage() for r in caplog.records)
    assert planner.rows.tag is False


def _branchy_exits(p):
    # the stop is a plain copy, but float() hides the read of the same param that picks the target:
    # the probe values may never cross the branch, so only later batches meet the other side
    stop = float(p["stop_pct"])
    return ExitRules(stop_pct=stop, tp_pct=0.0 if stop > 0.1 else 0.05, sizing="all_in")


BRANCHY = _register(StrategySpec(
    name="test_gpu_branchy",
    description="exits that branch on a float() copy of a param (tests only)",
    params=ma_crossover.SPEC.params + (Param("stop_pct", "float", 0.05, 0.001, 0.5, 0.001),),
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=ma_crossover.SPEC.signals,
    levels=ma_crossover.SPEC.levels,
    exits=_branchy_exits,
))


def test_every_batch_checks_the_substituted_values_it_has_not_seen(bars, caplog):
    evaluator = evaluator_for("test_gpu_branchy", bars, {"stop_pct": [0.005, 0.05, 0.15, 0.2],
                                                          "fast_period": [5, 8, 10]})
    ids = np.arange(evaluator.space.size)
    stop = evaluator.space.columns(ids)["stop_pct"]
    planner = Planner(evaluator)
    with caplog.at_level(logging.WARNING, logger="threadx.gpu.plan"):
        first = planner.plan(ids[stop < 0.1])  # one side of the branch only
        assert_same_inputs(evaluator, first)
        assert (first.status == 0).all()
        later = planner.plan(ids[stop > 0.1])  # the other side, in a later batch
    assert_same_inputs(evaluator, later)
    assert any("not a plain copy" in r.getMessage() for r in caplog.records)
