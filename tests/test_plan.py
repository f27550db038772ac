"""The GPU planner: per combo, the same kernel inputs (and errors) as the CPU path, with each
distinct signal array and parameter row computed once, by the params' declared roles. No
CUDA needed."""
from __future__ import annotations

from dataclasses import replace as dataclasses_replace

import numpy as np
import pandas as pd
import pytest

from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.engine import layout as L
from threadx.engine.layout import N_METRICS
from threadx.errors import ParamError
from threadx.optimize.outcome import ChunkResult, failure_text
from threadx.optimize.plan import Planner, kernel_calls, run_plan
from threadx.gpu.workload import declared_space, evaluator_for, random_ids
from numba import njit

from threadx.strategy import bb_atr, cross_signals, ma_crossover, zscore_reversion_signals_many
from threadx.strategy.base import ExitRules, Param, StrategySpec, list_strategies, register

STRATEGIES = ("ma_crossover", "bb_atr", "bollinger_dual", "donchian_breakout", "supertrend", "envelope_dca",
              "envelope_dca_short", "grid_atr", "amplitude_hunter")


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


def one_by_one(evaluator, ids: np.ndarray) -> ChunkResult:
    """The chunk result of ``ids`` built one combo at a time through the single-backtest path
    (``Evaluator.kernel_inputs`` / ``run_one``), independent of the plan."""
    metrics = np.full((len(ids), N_METRICS), np.nan)
    status = np.zeros(len(ids), dtype=np.int8)
    errors = {}
    cols = evaluator.space.columns(ids)
    for k, row in enumerate(zip(*(cols[n].tolist() for n in evaluator.space.names))):
        try:
            metrics[k] = evaluator.run_one(dict(zip(evaluator.space.names, row)))
        except Exception as exc:  # noqa: BLE001 - the text a sweep stores
            status[k] = 1
            errors[int(ids[k])] = failure_text(exc)
    return ChunkResult(ids, metrics, status, errors)


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
    metrics, blocks = run_plan(plan, bars, evaluator.funding, evaluator.block_end, threads=2)
    cpu = [evaluator.run_one(p) for p in (evaluator.space.params(int(i)) for i in ids)]
    np.testing.assert_array_equal(metrics, np.stack([m for m, _ in cpu]))
    np.testing.assert_array_equal(blocks, np.stack([b for _, b in cpu]))


def test_run_plan_matches_one_run_per_combo(bars):
    evaluator = evaluator_for("donchian_breakout", bars)
    ids = random_ids(evaluator, 40, seed=2)
    plan = Planner(evaluator).plan(ids)
    metrics, blocks = run_plan(plan, bars, evaluator.funding, None)
    assert blocks is None
    np.testing.assert_array_equal(metrics, one_by_one(evaluator, ids).metrics)


def test_kernel_calls_made_beforehand_run_the_same(bars):
    evaluator = evaluator_for("bb_atr", bars, n_blocks=4)
    ids = random_ids(evaluator, 30, seed=4)
    plan = Planner(evaluator).plan(ids)
    calls = kernel_calls(plan, bars, evaluator.funding, evaluator.block_end, threads=2)
    assert len(calls) == 2 and sorted(np.concatenate([p for p, _ in calls]).tolist()) == plan.ok.tolist()
    assert all(not a.flags.writeable for _, args in calls for a in args[:-1])  # one compiled kernel version
    metrics, blocks = run_plan(plan, bars, evaluator.funding, evaluator.block_end, calls=calls)
    expected = run_plan(plan, bars, evaluator.funding, evaluator.block_end)
    np.testing.assert_array_equal(metrics, expected[0])
    np.testing.assert_array_equal(blocks, expected[1])


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


def _bad_atr_indicators(p):
    return {**bb_atr.SPEC.indicators(p), "atr": ("atr", {"period": p["atr_period"] - 9, "method": "wilder"})}


BAD_LEVEL_INDICATOR = _register(StrategySpec(
    name="test_gpu_bad_level_indicator",
    description="bb_atr with an ATR of atr_period - 9: invalid up to 9 (tests only)",
    params=bb_atr.SPEC.params,
    indicators=_bad_atr_indicators,
    signals=bb_atr.SPEC.signals,
    levels=bb_atr.SPEC.levels,
    exits=bb_atr.SPEC.exits,
))


def _short_signals(bars, ind, p):
    sig = ma_crossover.SPEC.signals(bars, ind, p)
    return sig[:-1] if p["fast_period"] == 7 else sig


SHORT_SIGNALS = _register(StrategySpec(
    name="test_gpu_short_signals",
    description="ma_crossover whose signal array misses a bar for fast_period 7 (tests only)",
    params=ma_crossover.SPEC.params,
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=_short_signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
))


@pytest.mark.parametrize("strategy, space, options", [
    ("test_gpu_bad_indicator", {"fast_period": "5:12:1", "slow_period": [20, 40]}, {}),
    ("test_gpu_raising", {"fast_period": "5:12:1", "slow_period": [20, 40]}, {}),
    # a level param fails the indicators of some combos of a signal group, maybe its first one
    ("test_gpu_bad_level_indicator", {"atr_period": "7:12:1", "entry_z": [1.0, 1.5], "bb_period": [15, 20],
                                      "atr_multiplier": [1.0, 2.0]}, {}),
    # a signal array of the wrong shape fails after the lines, as kernel_args checks it
    ("test_gpu_short_signals", {"fast_period": "5:9:1", "stop_loss_pct": [1.0, 2.0]}, {}),
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
    cpu = one_by_one(evaluator, ids)
    assert plan.errors == cpu.errors
    np.testing.assert_array_equal(plan.status, cpu.status)
    np.testing.assert_array_equal(evaluator.evaluate(ids).metrics, cpu.metrics)
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
    assert plan.errors == one_by_one(evaluator, ids).errors
    assert "ATR line" in plan.errors[0]


@pytest.mark.parametrize("bars_of", [
    lambda df: df.iloc[:1],  # kernel_args: need at least 2 bars
    lambda df: df.iloc[:40].set_axis(pd.date_range("2024-01-01", periods=40, freq="100ms", tz="UTC")),  # no timeframe
])
def test_data_the_engine_refuses_fails_every_combo_like_the_cpu(bars_of):
    frame = bars_of(generate_synthetic(days=2, seed=21)).copy()
    frame.attrs = {}
    evaluator = evaluator_for("ma_crossover", as_bars(frame), {"fast_period": [2, 3], "slow_period": [3, 4]})
    ids = np.arange(evaluator.space.size)
    ids = ids[evaluator.space.valid_mask(ids)]
    plan = Planner(evaluator).plan(ids)
    assert (plan.status != 0).all() and plan.errors == one_by_one(evaluator, ids).errors


# --- each distinct input computed once ----------------------------------------------------------------

CALLS = {"signals": 0, "exits": 0}


def _counted_signals(bars, ind, p):
    CALLS["signals"] += 1
    return bb_atr.SPEC.signals(bars, ind, p)


def _counted_exits(p):
    CALLS["exits"] += 1
    return bb_atr.SPEC.exits(p)


COUNTED = _register(StrategySpec(
    name="test_gpu_counted",
    description="bb_atr counting its signal and exit calls (tests only)",
    params=bb_atr.SPEC.params,
    indicators=bb_atr.SPEC.indicators,
    signals=_counted_signals,
    levels=bb_atr.SPEC.levels,
    exits=_counted_exits,
))


def _distinct(cols: dict, names: tuple[str, ...]) -> int:
    return len(set(zip(*(cols[name].tolist() for name in names))))


def test_each_distinct_signal_and_row_is_computed_once(bars):
    """bb_atr's signal array depends on the params feeding "signals" (bb_period, entry_z,
    trend_period), its row on those feeding "exits": one call per distinct value of each,
    not per combo, and a later batch reuses the signal arrays."""
    space = {**declared_space(bb_atr.SPEC), "atr_period": 14, "max_hold_bars": "10:100:10",
             "spacing_bars": [0, 6], "leverage": [1.0, 2.0]}
    evaluator = evaluator_for("test_gpu_counted", bars, space)
    ids = random_ids(evaluator, 1_500, seed=3)
    cols = evaluator.space.columns(ids)
    signal_keys = _distinct(cols, ("bb_period", "entry_z", "trend_period"))
    exit_keys = _distinct(cols, COUNTED.params_feeding("exits"))
    assert signal_keys < len(ids) and exit_keys < len(ids), "the sample should repeat keys"
    planner = Planner(evaluator, threads=1)
    CALLS.update(signals=0, exits=0)
    plan = planner.plan(ids)
    # exits only copies its numbers: two calls (a probe and one check) per value of trailing_stop
    assert CALLS == {"signals": signal_keys, "exits": 2 * len(set(cols["trailing_stop"].tolist()))}
    assert len(plan.signals) == signal_keys
    # the level lines: one ATR (atr_period is fixed) and one middle band per bb_period, and the NaN line
    assert len(plan.line_values) == 1 + 1 + len(set(cols["bb_period"].tolist()))
    assert_same_inputs(evaluator, plan)

    CALLS.update(signals=0, exits=0)
    later = planner.plan(ids[::-1])  # a later batch with the same signal keys: none recomputed
    assert CALLS["signals"] == 0
    np.testing.assert_array_equal(later.rows, plan.rows[::-1])

    small = Planner(evaluator, threads=1, cache_bytes=len(bars))  # keeps at most one batch's arrays
    small.plan(ids)
    CALLS.update(signals=0)
    again = small.plan(ids)
    assert CALLS["signals"] == signal_keys
    assert_same_inputs(evaluator, again)


def test_level_groups_that_no_signal_call_covers_get_one_call_each(bars):
    """With atr_period varying too, a level group (bb_period, atr_period) whose combos were not
    the first of their signal group costs one call more; never more than one per group."""
    evaluator = evaluator_for("test_gpu_counted", bars)
    ids = random_ids(evaluator, 800, seed=8)
    cols = evaluator.space.columns(ids)
    planner = Planner(evaluator, threads=1)
    CALLS.update(signals=0, exits=0)
    plan = planner.plan(ids)
    signal_keys = _distinct(cols, ("bb_period", "entry_z", "trend_period"))
    assert signal_keys <= CALLS["signals"] <= signal_keys + _distinct(cols, ("bb_period", "atr_period"))
    assert_same_inputs(evaluator, plan)


def test_threads_give_the_same_plan(bars):
    evaluator = evaluator_for("bb_atr", bars)
    ids = random_ids(evaluator, 400, seed=4)
    one, three = Planner(evaluator, threads=1).plan(ids), Planner(evaluator, threads=3).plan(ids)
    np.testing.assert_array_equal(one.rows, three.rows)
    for k in range(len(ids)):
        np.testing.assert_array_equal(one.signals[one.sig[k]], three.signals[three.sig[k]])
        for j in range(4):
            np.testing.assert_array_equal(one.line_values[one.lines[k, j]], three.line_values[three.lines[k, j]])


class _Undeclared:
    """A strategy object without role declarations (no ``signal_key_params``): every param is a key."""

    def __init__(self, spec: StrategySpec, name: str):
        self._spec = spec
        self.name = name

    def __getattr__(self, attr: str):
        if attr in ("signal_key_params", "params_feeding"):
            raise AttributeError(attr)
        return getattr(self._spec, attr)


def _counted_ma_signals(bars, ind, p):
    CALLS["signals"] += 1
    return ma_crossover.SPEC.signals(bars, ind, p)


UNDECLARED = _register(_Undeclared(StrategySpec(
    name="test_gpu_undeclared",
    description="ma_crossover without role declarations (tests only)",
    params=ma_crossover.SPEC.params,
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=_counted_ma_signals,
    levels=ma_crossover.SPEC.levels,
    exits=ma_crossover.SPEC.exits,
), "test_gpu_undeclared"))


def test_a_strategy_without_declared_roles_is_planned_exactly(bars):
    space = {"fast_period": [5, 8], "slow_period": [20, 30], "stop_loss_pct": [0.0, 1.0, 2.0]}
    evaluator = evaluator_for("test_gpu_undeclared", bars, space)
    ids = np.arange(evaluator.space.size)
    CALLS.update(signals=0)
    plan = Planner(evaluator, threads=1).plan(ids)
    assert CALLS["signals"] == len(ids) == 12  # no role declared: every param is a key
    assert (plan.status == 0).all()
    assert_same_inputs(evaluator, plan)
    np.testing.assert_array_equal(run_plan(plan, bars, None, None)[0], one_by_one(evaluator, ids).metrics)


# --- exits that use their params in any way ------------------------------------------------------------

def _numpy_exits(p):
    # hold steers stop_pct through numpy and is copied into max_hold_bars
    wide = bool(np.greater(p["hold"], 25))
    return ExitRules(stop_pct=0.03 if wide else 0.01, max_hold_bars=p["hold"], sizing="all_in")


NUMPY_EXITS = _register(StrategySpec(
    name="test_gpu_numpy_exits",
    description="exits that use a param through numpy (tests only)",
    params=ma_crossover.SPEC.params + (Param("hold", "int", 10, 1, 100, 1, feeds="exits"),),
    constraints=ma_crossover.SPEC.constraints,
    indicators=ma_crossover.SPEC.indicators,
    signals=ma_crossover.SPEC.signals,
    levels=ma_crossover.SPEC.levels,
    exits=_numpy_exits,
))


def _branchy_exits(p):
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


@pytest.mark.parametrize("strategy, space", [
    ("test_gpu_numpy_exits", {"hold": "1:50:1", "fast_period": [5, 8]}),
    # stop_pct declares no roles (every one): it is in every key
    ("test_gpu_branchy", {"stop_pct": [0.005, 0.05, 0.15, 0.2], "fast_period": [5, 8, 10]}),
])
def test_exits_of_any_shape_are_planned_exactly(bars, strategy, space):
    evaluator = evaluator_for(strategy, bars, space)
    ids = np.arange(evaluator.space.size)
    planner = Planner(evaluator)
    for batch in np.array_split(ids, 3):  # batches meet values the earlier ones did not
        plan = planner.plan(batch)
        assert (plan.status == 0).all()
        assert_same_inputs(evaluator, plan)


# --- the vectorised rows against one param_vector per combo ------------------------------------------

def reference_rows(evaluator, ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """(row per combo, error per combo id): ``param_vector`` of each combo's checked rules."""
    from threadx.data.grid import span_bars
    from threadx.engine.inputs import effective_rules, param_vector

    rows, errors = np.full((len(ids), L.N_PARAMS), np.nan), {}
    spec, options = evaluator.spec, evaluator.task.options
    for k, combo in enumerate(ids.tolist()):
        try:
            rules = effective_rules(spec.exits(evaluator.space.params(combo)), options)
        except Exception as exc:  # noqa: BLE001 - the plan carries the same text
            errors[combo] = failure_text(exc)
            continue
        rows[k] = param_vector(rules, options, evaluator.bars.timeframe, evaluator.funding is not None,
                               span_bars(evaluator.bars.time_ns, evaluator.bars.timeframe))
    return rows, errors


@pytest.mark.parametrize("strategy", ["bb_atr", "grid_atr", "amplitude_hunter", "test_gpu_branchy"])
def test_planned_rows_equal_one_param_vector_per_combo(bars, strategy):
    evaluator = evaluator_for(strategy, bars)
    ids = random_ids(evaluator, 3_000, seed=12)
    planner = Planner(evaluator)
    rows, errors = planner._rows(evaluator.space.value_indices(ids))[0::4]
    want_rows, want_errors = reference_rows(evaluator, ids)
    assert rows.tobytes() == want_rows.tobytes()  # bit for bit, NaN rows of failed rules included
    assert {int(c): e for c, e in zip(ids.tolist(), errors) if e is not None} == want_errors


def test_bb_atr_rows_take_the_vectorised_path(bars):
    """bb_atr's exits copies its numbers: a probe and a check per value of trailing_stop, no call per combo."""
    evaluator = evaluator_for("test_gpu_counted", bars)
    ids = random_ids(evaluator, 2_000, seed=2)
    CALLS.update(exits=0)
    Planner(evaluator).plan(ids)
    assert CALLS["exits"] <= 4


def test_rule_column_writes_what_param_vector_writes():
    from threadx.engine.inputs import RULE_COLUMNS, options_from, param_vector, rule_column

    options = options_from()
    samples = {"sizing": ["all_in", "risk"], "trail": ["none", "atr", "band"], "grid_sides": ["long", "both"],
               "target_mid": [False, True], "partial_tp_band": [False, True], "arm_exits_band": [True, False],
               "max_hold_bars": [0, 7, 2**53 + 1], "spacing_bars": [np.int64(3), 0],
               "leverage": [1.0, 1.5, np.float64(3.0), 2, 1000], "fraction": [0.1, 1.0, np.float64(0.3), 1, 0.5],
               "max_legs": [0, 1, np.int64(3), 4.0], "stop_pct": [0.0, 0.1, np.float64(0.3), 0.999],
               "trail_pct": [0.0, 0.1, np.float64(0.3), 0.999], "risk_per_trade": [0.0, 0.01, np.float64(0.3), 1],
               "trail_band_pct": [0.0, 0.1, np.float64(0.3), 1]}
    for name in RULE_COLUMNS:
        values = samples.get(name, [0.0, 0.1, 1.5, np.float64(0.3), 2])
        col, entries = rule_column(name, values)
        for value, entry in zip(values, entries):
            row = param_vector(ExitRules(**{name: value}), options, "1h", False)
            assert row[col].tobytes() == entry.tobytes(), (name, value)
    for name, bad in (("leverage", 0.5), ("fraction", 1.5), ("max_hold_bars", 2.7), ("stop_pct", 1.0),
                      ("risk_per_trade", 1.5), ("trail_band_pct", 1.5)):  # both refuse what the engine cannot hold
        with pytest.raises(ParamError, match=f"the exit rules' {name} must be"):
            rule_column(name, [bad])
        with pytest.raises(ParamError, match=f"the exit rules' {name} must be"):
            param_vector(ExitRules(**{name: bad}), options, "1h", False)


# --- batch_signals: one call per group of combos sharing their indicators -------------------------

def _plans_equal(a, b) -> None:
    """The same kernel inputs combo by combo (the distinct arrays may come in another order)."""
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.status, b.status)
    assert a.errors == b.errors
    ok = a.status == 0
    assert len(a.signals) == len(b.signals) and len(a.line_values) == len(b.line_values)
    np.testing.assert_array_equal(np.asarray(a.signals)[a.sig[ok]], np.asarray(b.signals)[b.sig[ok]])
    np.testing.assert_array_equal(np.asarray(a.line_values)[a.lines[ok]], np.asarray(b.line_values)[b.lines[ok]])
    np.testing.assert_array_equal(a.sig < 0, b.sig < 0)


def _unbatched(planner: Planner) -> Planner:
    planner._batch_axes = []  # the planner as without batch_signals or a signal rule: one prepare_signals
    planner._rule = None  # per signal key
    return planner


def _batch(bars, ind, p, table):
    """bb_atr's signals of many entry_z at once (bb_atr itself has a signal_rule instead)."""
    use_trend = p["trend_period"] > 0
    trend = ind["trend"]["value"] if use_trend else bars.close[:0]
    return zscore_reversion_signals_many(ind["bb"]["z"], np.asarray(table["entry_z"], dtype=np.float64), bars.close,
                                         trend, use_trend)


BATCHED = _register(dataclasses_replace(bb_atr.SPEC, name="test_gpu_batched", signal_rule=None, batch_signals=_batch,
                                        description="bb_atr with batch_signals, no signal rule (tests only)"))


def _batch_without_trend(bars, ind, p, table):
    """_batch written before a trend filter was added to signals(): right only where trend_period is 0."""
    return zscore_reversion_signals_many(ind["bb"]["z"], np.asarray(table["entry_z"], dtype=np.float64), bars.close,
                                         bars.close[:0], False)


BATCH_WITHOUT_TREND = _register(dataclasses_replace(
    bb_atr.SPEC, name="test_batch_without_trend", signal_rule=None, batch_signals=_batch_without_trend,
    description="bb_atr whose batch_signals drops the trend filter (tests only)"))


def test_a_sweep_checks_its_batch_signals_against_signals_and_falls_back_when_they_differ(tmp_path, caplog):
    """batch_signals was trusted for every combo once the sweep's first combo agreed (trend_period 0
    there, where the stale batch is right): 6 of 9 stored rows held the batch's signals, with no word.
    The planner samples its rows against signals() as it does a signal rule's, and falls back."""
    import threadx
    from threadx.indicators import IndicatorBank

    space = {"bb_period": [20], "entry_z": [1.0, 1.5, 2.0], "trend_period": [0, 50, 100]}
    frame = generate_synthetic("BTC_USDT", days=120, seed=4)
    run = threadx.sweep(frame, "test_batch_without_trend", space, executor="inline", workers=1, store=tmp_path,
                        bank=IndicatorBank(disk=False))
    assert len(run.results) == 9
    for _, row in run.results.iterrows():
        params = {name: row[name] for name in space}
        expected = threadx.backtest(frame, "test_batch_without_trend", params).metrics
        assert (row["total_return"], row["n_trades"]) == (expected["total_return"], expected["n_trades"]), params
    assert len(set(run.results["n_trades"])) > 3  # (the trend filter changes the rows: a test that can fail)
    assert len(run.warnings) == 1 and "its batch_signals gives other signals than signals()" in run.warnings[0]
    assert any("fix batch_signals (`threadx strategy check" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_signals_give_the_plan_of_one_call_per_signal_key(btc_1h, threads):
    """batch_signals (one call per bb_period and trend_period, every entry_z at once) plans
    what one prepare_signals per signal key plans, on real BTC 1h."""
    evaluator = evaluator_for("test_gpu_batched", as_bars(btc_1h))
    ids = random_ids(evaluator, 3_000, seed=12)
    batched = Planner(evaluator, threads=threads)
    plan = batched.plan(ids)
    cols = evaluator.space.columns(ids)
    groups = _distinct(cols, ("bb_period", "trend_period"))
    assert batched.stats["batched_signals"] == len(plan.signals) == _distinct(cols, ("bb_period", "entry_z",
                                                                                      "trend_period"))
    assert batched.stats["signal_calls"] <= groups + _distinct(cols, ("bb_period", "atr_period"))
    _plans_equal(plan, _unbatched(Planner(evaluator, threads=threads)).plan(ids))


@pytest.mark.parametrize("strategy", ["ma_crossover", "bb_atr"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_signal_rule_gives_the_plan_of_one_call_per_signal_key(btc_1h, strategy, threads):
    """A SignalRule (one numba call for every signal array of the plan, each line looked up
    once per value of the params feeding it) plans what one prepare_signals per signal key
    plans, on real BTC 1h; a second plan reuses the lines (none copied again)."""
    evaluator = evaluator_for(strategy, as_bars(btc_1h))
    ids = random_ids(evaluator, 3_000, seed=13)
    planner = Planner(evaluator, threads=threads)
    plan = planner.plan(ids)
    assert planner.stats["rule_signals"] == len(plan.signals)
    assert isinstance(plan.signals, np.ndarray)  # one matrix, launched as it is
    ordered = plan.subset(plan.by_signal())
    assert isinstance(ordered.signals, np.ndarray) and np.shares_memory(ordered.signals, plan.signals)  # a view
    names, cols = planner.space.names, evaluator.space.columns(ids)
    lookups = sum(_distinct(cols, tuple(names[k] for k in axes)) if axes else 1  # one per label and value of its
                  for label, (axes, _) in planner._rule_labels.items() if label != "bars")  # params (bars: none)
    level_groups = _distinct(evaluator.space.columns(ids), tuple(evaluator.spec.params_feeding("levels"))) or 1
    assert planner.stats["signal_calls"] <= lookups + level_groups
    _plans_equal(plan, _unbatched(Planner(evaluator, threads=threads)).plan(ids))
    assert_same_inputs(evaluator, plan.subset(np.arange(0, len(plan), 37)))
    copied = planner._rule_lines._count
    later = random_ids(evaluator, 500, seed=14)
    _plans_equal(planner.plan(later), _unbatched(Planner(evaluator, threads=threads)).plan(later))
    assert planner._rule_lines._count >= copied


def test_a_signal_rule_reads_a_shared_block_in_place(bars):
    """In a worker, the rule's lines are the rows of the sweep's shared block: nothing is
    copied, and the plan is the one of the copies."""
    from threadx.optimize.evaluate import Evaluator
    from threadx.optimize.shared import SharedPack, indicator_requests, prepare_requests
    from threadx.indicators import IndicatorBank

    evaluator = evaluator_for("ma_crossover", bars)
    arrays = prepare_requests(indicator_requests(evaluator.space), bars, IndicatorBank(disk=False))
    pack = SharedPack.create(bars, arrays, run_id="test-rule-pack")
    try:
        worker = Evaluator(evaluator.task, pack.bars(), pack.indicator_source())
        ids = random_ids(worker, 800, seed=3)
        planner = Planner(worker, threads=1)
        plan = planner.plan(ids)
        assert planner._rule_lines._count == 1  # only its NaN line: every line read in the block
        assert isinstance(plan.signals, np.ndarray)  # one matrix, handed to the kernel as it is
        _plans_equal(plan, _unbatched(Planner(evaluator, threads=1)).plan(ids))
    finally:
        pack.close()


def test_a_shared_block_missing_a_line_falls_back_to_copies_counting_each_lookup_once(bars):
    """A worker whose block lacks a line (computed there: ``row_of`` finds no row) plans from
    copies, and the lookups made in the block before the miss are not counted again."""
    from threadx.optimize.evaluate import Evaluator
    from threadx.optimize.shared import SharedPack, indicator_requests, prepare_requests
    from threadx.indicators import IndicatorBank

    evaluator = evaluator_for("ma_crossover", bars)
    arrays = prepare_requests(indicator_requests(evaluator.space), bars, IndicatorBank(disk=False))
    del arrays[max(arrays)]  # one line the block will not hold
    pack = SharedPack.create(bars, arrays, run_id="test-rule-pack-miss")
    try:
        worker = Evaluator(evaluator.task, pack.bars(), pack.indicator_source())
        ids = random_ids(worker, 800, seed=5)
        planner = Planner(worker, threads=1)
        plan = planner.plan(ids)
        assert planner._rule_lines._count > 1  # copies made
        copies = Planner(evaluator, threads=1)
        _plans_equal(plan, copies.plan(ids))
        assert planner.stats["signal_calls"] == copies.stats["signal_calls"]
    finally:
        pack.close()


def _rule_failing_above_40(bars, ind, p):
    if p["slow_period"] > 40:
        raise ValueError(f"deliberate failure for slow_period={p['slow_period']}")
    return ma_crossover.SPEC.indicators(p)


def _raising_rule(lines, rows, values, out):
    raise RuntimeError("no rule today")


FAILING_LINES = _register(dataclasses_replace(
    ma_crossover.SPEC, name="test_gpu_failing_lines", indicators=lambda p: _rule_failing_above_40(None, None, p),
    description="ma_crossover whose indicators raise above slow_period 40 (tests only)"))
RAISING_RULE = _register(dataclasses_replace(
    ma_crossover.SPEC, name="test_gpu_raising_rule", description="ma_crossover whose signal rule raises (tests only)",
    signal_rule=dataclasses_replace(ma_crossover.SPEC.signal_rule, many=_raising_rule)))


def _flaky_batch(bars, ind, p, table):
    if p["trend_period"] >= 150:
        raise RuntimeError("deliberate batch failure")
    rows = _batch(bars, ind, p, table)
    return rows[:, :-1] if p["bb_period"] % 2 else rows  # odd bb_period: a bar short


FLAKY_BATCH = _register(dataclasses_replace(BATCHED, name="test_gpu_flaky_batch",
                                            description="bb_atr whose batch_signals raises or is short (tests only)",
                                            batch_signals=_flaky_batch))


def _raising_z_signals(bars, ind, p):
    if p["entry_z"] > 2.0:
        raise ValueError(f"deliberate failure for entry_z={p['entry_z']}")
    return bb_atr.SPEC.signals(bars, ind, p)


def _raising_z_batch(bars, ind, p, table):
    if (np.asarray(table["entry_z"]) > 2.0).any():  # as signals(): the whole batch raises
        raise ValueError("deliberate failure for entry_z > 2")
    return _batch(bars, ind, p, table)


RAISING_Z = _register(dataclasses_replace(BATCHED, name="test_gpu_raising_z",
                                          description="bb_atr whose signals raise above entry_z 2 (tests only)",
                                          signals=_raising_z_signals, batch_signals=_raising_z_batch))


@pytest.mark.parametrize("strategy, error", [
    ("test_gpu_flaky_batch", None), ("test_gpu_raising_z", "deliberate failure for entry_z="),
    ("test_gpu_raising_rule", None), ("test_gpu_failing_lines", "deliberate failure for slow_period="),
])
def test_a_batch_or_rule_that_fails_is_redone_combo_by_combo(bars, strategy, error):
    """A batch that raises or returns another shape, a signal rule that raises or a line
    lookup that fails fall back to signals() per combo: the plan, its failed combos and their
    error texts are those of one prepare_signals per signal key."""
    evaluator = evaluator_for(strategy, bars)
    ids = random_ids(evaluator, 1_200, seed=6)
    plan = Planner(evaluator, threads=2).plan(ids)
    _plans_equal(plan, _unbatched(Planner(evaluator, threads=2)).plan(ids))
    assert (plan.status == 0).any()
    if error is not None:
        assert plan.errors and all(error in e for e in plan.errors.values())
    else:
        assert not plan.errors
    assert_same_inputs(evaluator, plan)


@njit(cache=True)
def _sparse_cross_rows(lines, rows, values, out):  # sets only the flagged bars: the rows must come zeroed
    for j in range(rows.shape[0]):
        row = cross_signals(lines[rows[j, 0]], lines[rows[j, 1]], values[j, 0] != 0)
        for t in range(row.shape[0]):
            if row[t]:
                out[j, t] = row[t]


SPARSE_RULE = _register(dataclasses_replace(
    ma_crossover.SPEC, name="test_gpu_sparse_rule", description="ma_crossover whose rule sets only flagged bars",
    signal_rule=dataclasses_replace(ma_crossover.SPEC.signal_rule, many=_sparse_cross_rows)))


def test_a_rule_that_sets_only_flagged_bars_gets_zeroed_rows(bars):
    """A rule in the usual numba style (flags written where they are, nothing elsewhere) gives
    the signals of one prepare_signals per key, whatever the memory held before (a plan of
    the same size just freed), in the sweep and in the check."""
    from threadx.contract import rule_signals

    dense, sparse = evaluator_for("ma_crossover", bars), evaluator_for("test_gpu_sparse_rule", bars)
    ids = random_ids(sparse, 400, seed=4)
    for _ in range(3):
        Planner(dense, threads=1).plan(ids)  # leaves flags in the memory the next plan may get
        _plans_equal(Planner(sparse, threads=1).plan(ids), _unbatched(Planner(sparse, threads=1)).plan(ids))
    sets = [sparse.space.params(int(i)) for i in ids[:20]]
    rows = rule_signals(SPARSE_RULE, sparse.bars, sets, sparse.indicators)
    for row, params in zip(rows, sets):
        np.testing.assert_array_equal(row, sparse.kernel_inputs(params)[4])


@pytest.mark.parametrize("grouped", [True, False])
def test_bb_atr_rule_shares_work_between_rows_with_the_flags_of_each_row_alone(grouped):
    """zscore_reversion_rows computes the z crossings once per run of rows on one z line and
    threshold and each trend filter once per call (up to _TREND_MASKS, then row by row): every
    row equals zscore_reversion_signals of its own, in a planner's grouped order or any other,
    with NaN lines and thresholds, thresholds of 0 and below, and more trend lines than kept."""
    from threadx.strategy import zscore_reversion_rows, zscore_reversion_signals
    from threadx.strategy.signal_kernels import _TREND_MASKS

    rng = np.random.default_rng(7)
    n, n_lines, k = 300, _TREND_MASKS + 30, 900
    lines = rng.standard_normal((n_lines, n)) * 2.0
    lines[rng.random(lines.shape) < 0.05] = np.nan
    lines[0] = np.nan
    lines.flags.writeable = False
    rows = rng.integers(0, n_lines, (k, 3))
    rows[: k // 2, 0] = rng.integers(0, 3, k // 2)  # long runs on a few z lines
    values = np.c_[rng.choice([-0.5, 0.0, 0.5, 1.0, 2.0, np.nan], k), rng.choice([0.0, 10.0, np.nan], k)]
    if grouped:
        order = np.lexsort((rows[:, 2], values[:, 0], rows[:, 0]))
        rows, values = rows[order], values[order]
    out = np.full((k, n), 0, dtype=np.uint8)
    zscore_reversion_rows(lines, rows, values, out)
    for j in range(k):
        use_trend = bool(values[j, 1] > 0)
        want = zscore_reversion_signals(lines[rows[j, 0]], values[j, 0], lines[rows[j, 1]],
                                        lines[rows[j, 2]] if use_trend else lines[0, :0], use_trend)
        np.testing.assert_array_equal(out[j], want, err_msg=f"row {j}")
    assert out.any(axis=1).sum() > k // 4  # (flags to compare, not rows of zeros)


@njit(cache=True)
def _cross_wrong_for_long_slow(lines, rows, values, out):
    """ma_crossover's rule, but long only when slow_period is above 150 (its line's value at bar
    0 is NaN either way, so the row tells nothing): the check's perturbations (one step either
    side of the defaults, the ends of each range) never reach such a combo with shorts on."""
    for j in range(rows.shape[0]):
        out[j] = cross_signals(lines[rows[j, 0]], lines[rows[j, 1]], values[j, 0] != 0 and values[j, 1] < 150)


def _with_slow(spec):
    return dataclasses_replace(spec.signal_rule, params=("allow_short", "slow_period"), many=_cross_wrong_for_long_slow)


WRONG_FAR_RULE = _register(dataclasses_replace(
    ma_crossover.SPEC, name="test_rule_wrong_far", description="ma_crossover whose rule drops shorts when "
    "slow_period > 150 (tests only)", signal_rule=_with_slow(ma_crossover.SPEC)))


def test_a_sweep_checks_its_rule_against_signals_and_falls_back_when_they_differ(bars, tmp_path, caplog):
    """A rule that the roles check's perturbations do not catch was trusted for every combo:
    sweep rows differed from backtests. Each plan now compares one row with signals()."""
    import threadx
    from threadx.indicators import IndicatorBank

    space = {"fast_period": [10, 20], "slow_period": [160, 180], "allow_short": [True]}
    frame = generate_synthetic("BTC_USDT", days=120, seed=4)
    run = threadx.sweep(frame, "test_rule_wrong_far", space, executor="inline", workers=1, store=tmp_path,
                        bank=IndicatorBank(disk=False))
    for _, row in run.results.iterrows():
        params = {"fast_period": int(row["fast_period"]), "slow_period": int(row["slow_period"]), "allow_short": True}
        assert row["total_return"] == threadx.backtest(frame, "test_rule_wrong_far", params).metrics["total_return"]
    assert any("its signal rule gives other signals than signals()" in r.getMessage() for r in caplog.records)


def test_a_run_whose_rule_disagreed_records_it_and_shows_it(tmp_path, capsys):
    """The rule's difference was only logged: rows stored before it was found may hold the
    rule's signals, and nothing in the run said so. The run records the warning in its
    manifest (kept when it resumes), ``runs show`` prints it; a run whose rule agrees has none."""
    import threadx
    from threadx import cli
    from threadx.indicators import IndicatorBank
    from threadx.optimize.store import ResultStore

    frame = generate_synthetic("BTC_USDT", days=120, seed=4)
    space = {"fast_period": [10, 20], "slow_period": [160, 180], "allow_short": [True]}
    kw = dict(executor="inline", workers=1, store=tmp_path, bank=IndicatorBank(disk=False))
    run = threadx.sweep(frame, "test_rule_wrong_far", space, run_id="wrong", **kw)
    assert len(run.warnings) == 1 and "its signal rule gives other signals than signals()" in run.warnings[0]
    stored = ResultStore(tmp_path).load("wrong")
    assert stored.warnings == run.warnings
    resumed = threadx.sweep(frame, "test_rule_wrong_far", space, run_id="wrong", **kw)  # nothing left to run
    assert resumed.warnings == run.warnings
    assert cli.main(["runs", "show", "wrong", "--store", str(tmp_path)]) == 0
    assert "warning: strategy test_rule_wrong_far: its signal rule gives other signals" in capsys.readouterr().out
    (tmp_path / "wrong" / "manifest.json").unlink()  # a lost manifest: rebuilt from the plan, the rows kept
    ResultStore(tmp_path).repair("wrong")
    assert ResultStore(tmp_path).load("wrong").warnings == run.warnings
    fine = threadx.sweep(frame, "ma_crossover", {"fast_period": [10, 20], "slow_period": [160, 180]}, run_id="fine",
                         **kw)
    assert fine.warnings == [] and "warnings" not in fine.manifest


def test_a_plan_whose_signals_are_all_known_checks_no_rule_row(bars):
    """The second plan of the same combos makes no signal (all kept): nothing to compare."""
    evaluator = evaluator_for("ma_crossover", bars)
    planner = Planner(evaluator, threads=1)
    ids = random_ids(evaluator, 300, seed=21)
    first = planner.plan(ids)
    _plans_equal(planner.plan(ids), first)
    assert planner.stats.get("rule_checks", 0) == 0 and planner._rule is not None


def test_a_planner_makes_a_signal_matrix_again_once_no_plan_holds_it(bars):
    """A rule's signal matrix is kept by its planner and reused (zeroed) for a later plan once
    nothing references it (a GPU sweep plans a batch while the previous one runs): never while
    a plan or a view of it holds it, and the plans are those of a fresh planner."""
    evaluator = evaluator_for("test_gpu_sparse_rule", bars)  # (a rule that writes flagged bars only)
    planner = Planner(evaluator, threads=1, cache_bytes=0)  # (cached rows would hold the matrix)
    ids, other = random_ids(evaluator, 300, seed=9), random_ids(evaluator, 280, seed=10)

    def address(a: np.ndarray) -> int:
        return a.__array_interface__["data"][0]

    first = planner.plan(ids)
    second = planner.plan(other)  # the first plan is alive: new memory
    assert not np.shares_memory(first.signals, second.signals)
    view = first.subset(first.by_signal()).signals
    del first
    third = planner.plan(ids)  # a view of the first is alive, and the second: new memory
    assert not np.shares_memory(third.signals, view) and not np.shares_memory(third.signals, second.signals)
    second_at = address(second.signals)
    del view, second
    fourth = planner.plan(other[100:])  # the third is alive, the second free: its memory again, other flags there
    assert address(fourth.signals) == second_at
    _plans_equal(fourth, Planner(evaluator, threads=1).plan(other[100:]))
    _plans_equal(third, Planner(evaluator, threads=1).plan(ids))
