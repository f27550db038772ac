"""Combos that share their signal-key params share one signal array and one kernel call
(Evaluator groups): the metrics and block moments are bit for bit those of one call per combo."""
from __future__ import annotations

import numpy as np
import pytest

from threadx.data.bars import Bars
from threadx.data.synthetic import generate_synthetic
from threadx.engine.inputs import EngineOptions
from threadx.indicators import IndicatorBank
from threadx.optimize.evaluate import Evaluator, SweepTask

CASES = [
    ("bb_atr", {"bb_period": [20, 30], "entry_z": [1.0, 1.5], "atr_multiplier": "1:3:0.5",
                "max_hold_bars": [24, 72], "trailing_stop": [True, False]}, 0, 4),
    ("bb_atr", {"bb_period": [20, 30], "atr_multiplier": "1:3:0.5", "trailing_stop": [True, False]}, 8, 2),
    ("ma_crossover", {"fast_period": [5, 10], "slow_period": [30, 50], "stop_loss_pct": [0, 0.02, 0.05]}, 0, 4),
]


@pytest.fixture(scope="module")
def bars() -> Bars:
    return Bars.from_frame(generate_synthetic("BTC_USDT", days=200, seed=3), timeframe="1h")


@pytest.mark.parametrize("strategy, space, n_blocks, n_groups", CASES)
def test_grouped_combos_equal_one_call_per_combo(bars, strategy, space, n_blocks, n_groups):
    ev = Evaluator(SweepTask(strategy, space, EngineOptions(), n_blocks=n_blocks), bars, IndicatorBank(disk=False))
    ids = np.arange(ev.space.size)
    cols = ev.space.columns(ids)
    combos = [dict(zip(ev.space.names, row)) for row in zip(*(cols[n].tolist() for n in ev.space.names))]
    result = ev.evaluate(ids)
    assert ev.planner.stats["signal_arrays"] == n_groups  # the grouping is real: one signal array per group
    assert ev.planner.stats["rule_signals"] == n_groups  # one rule call made them all
    # one request per label and value of the params feeding it (2 + 2 MAs; 2 bands and 1 trend, the close
    # needs none), then one call per level group (bb_atr's 2 bb_period, ma_crossover's one without levels)
    assert ev.planner.stats["signal_calls"] == (3 + 2 if strategy == "bb_atr" else 4 + 1)
    assert not result.errors
    for k, params in enumerate(combos):
        alone = ev.run_one(params)
        metrics = alone if n_blocks == 0 else alone[0]
        assert np.array_equal(metrics, result.metrics[k], equal_nan=True), (k, params)
        if n_blocks:
            assert np.array_equal(alone[1], result.blocks[k], equal_nan=True)


def test_a_failing_combo_of_a_group_fails_alone(bars, monkeypatch):
    ev = Evaluator(SweepTask("ma_crossover", {"fast_period": [5], "slow_period": [30], "stop_loss_pct": [0, 0.02]},
                             EngineOptions()), bars, IndicatorBank(disk=False))
    real_exits = ev.spec.exits

    def exits(params):
        if params["stop_loss_pct"] > 0:
            raise ValueError("boom")
        return real_exits(params)

    monkeypatch.setattr(ev, "spec", type(ev.spec)(**{**ev.spec.__dict__, "exits": exits}))
    result = ev.evaluate(np.arange(2))
    assert list(result.status) == [0, 1] and "boom" in result.errors[1]
    assert np.isfinite(result.metrics[0]).any()


@pytest.mark.parametrize("strategy, space", [
    ("bb_atr", {"bb_period": [20, 30], "entry_z": [1.0, 2.0], "atr_multiplier": "1:3:0.5", "max_hold_bars": [24, 72],
                "trailing_stop": [True, False], "bb_std": [1.5, 2.5]}),
    ("donchian_breakout", {"channel_period": [20, 40], "stop_atr": [1.0, 2.0, 3.0], "target_atr": [0.0, 3.0]}),
])
def test_declared_roles_group_combos_and_change_no_number(bars, strategy, space):
    ev = Evaluator(SweepTask(strategy, space, EngineOptions(), n_blocks=4), bars, IndicatorBank(disk=False))
    ids = np.arange(ev.space.size)
    cols = ev.space.columns(ids)
    combos = [dict(zip(ev.space.names, row)) for row in zip(*(cols[n].tolist() for n in ev.space.names))]
    result = ev.evaluate(ids)
    assert ev.planner.stats["signal_arrays"] <= len(combos) // 4  # exit-only params share their group's signals
    for k, params in enumerate(combos):
        metrics, blocks = ev.run_one(params)
        assert np.array_equal(metrics, result.metrics[k], equal_nan=True), (k, params)
        assert np.array_equal(blocks, result.blocks[k], equal_nan=True)


def test_a_monte_carlo_plan_is_ordered_by_signal_group():
    from threadx.optimize.runner import by_signal_group
    from threadx.optimize.samplers import monte_carlo_ids
    from threadx.optimize.space import SearchSpace
    from threadx.strategy.base import get_strategy

    search = SearchSpace(get_strategy("bb_atr"), {"bb_period": [20, 30], "entry_z": [1.0, 2.0],
                                                  "atr_multiplier": "1:3:0.1", "max_hold_bars": "10:200:10"})
    drawn = monte_carlo_ids(search, "random", 300, 7).ids
    ordered = by_signal_group(search, drawn)
    assert sorted(ordered) == sorted(drawn)  # the same combos
    cols = search.columns(ordered)
    keys = list(zip(cols["bb_period"], cols["entry_z"]))
    assert sum(a != b for a, b in zip(keys, keys[1:])) == 3  # 4 groups, each in one run of ids
    only_signals = SearchSpace(get_strategy("ma_crossover"), {"fast_period": "5:20:1", "slow_period": "30:60:5"})
    ids = monte_carlo_ids(only_signals, "random", 50, 1).ids
    assert (by_signal_group(only_signals, ids) == ids).all()  # nothing to share: the plan as drawn


def test_a_grid_is_run_in_signal_group_order(monkeypatch, tmp_path):
    """bb_atr's trend_period (a signal param) is enumerated faster than its exit params: the
    chunks still hold whole signal groups, so each signal array is made about once however
    small the chunks and the planner's cache (not once per exit value)."""
    import threadx.optimize.evaluate as evaluate_module
    from threadx.optimize.plan import Planner
    from threadx.optimize.runner import sweep

    made = []  # signal arrays made by each plan
    plan = Planner.plan

    def counted(self, ids):
        out = plan(self, ids)
        made.append(self.stats["signal_arrays"])
        return out

    monkeypatch.setattr(Planner, "plan", counted)
    monkeypatch.setattr(evaluate_module, "_PLAN_CACHE_BYTES", 0)  # nothing kept between chunks
    space = {"bb_period": [20, 30], "atr_multiplier": "1:3.5:0.5", "trend_period": [0, 50, 100]}
    frame = generate_synthetic("BTC_USDT", days=200, seed=3)
    run = sweep(frame, "bb_atr", space, store=tmp_path, run_id="grid", executor="inline", chunk_size=6,
                bank=IndicatorBank(disk=False))
    assert len(run.results) == 36 and (run.results["status"] == "ok").all()
    assert sum(made) <= 6 + 36 // 6  # 6 signal groups; one cut by each chunk edge at most


def test_each_distinct_exit_key_builds_its_param_vector_once(bars, monkeypatch):
    """Combos of a chunk equal on the params feeding exits share one rules object and param
    vector; the metrics still equal one run per combo."""
    space = {"bb_period": [20, 30], "entry_z": [1.0, 1.5], "atr_multiplier": [1.0, 2.0], "max_hold_bars": [24, 72]}
    ev = Evaluator(SweepTask("bb_atr", space, EngineOptions()), bars, IndicatorBank(disk=False))
    calls = []
    real_exits = ev.spec.exits

    def exits(params):
        calls.append((params["atr_multiplier"], params["max_hold_bars"]))
        return real_exits(params)

    monkeypatch.setattr(ev, "spec", type(ev.spec)(**{**ev.spec.__dict__, "exits": exits}))
    ids = np.arange(ev.space.size)
    first, second = ev.evaluate(ids[:7]), ev.evaluate(ids[7:])
    assert len(calls) == 8 and len(set(calls[:4])) == len(set(calls[4:])) == 4  # 2 x 2 exit keys, once a chunk
    cols = ev.space.columns(ids)
    for k, params in enumerate(dict(zip(ev.space.names, row)) for row in zip(*(cols[n].tolist() for n in ev.space.names))):
        got = first.metrics[k] if k < 7 else second.metrics[k - 7]
        assert np.array_equal(ev.run_one(params), got, equal_nan=True), (k, params)
