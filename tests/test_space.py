"""Search spaces and samplers: lazy grid order and count, constraints, reproducible sampling."""
from __future__ import annotations

import itertools
import time
import tracemalloc

import numpy as np
import pytest

from threadx.errors import ParamError
from threadx.optimize.samplers import grid_ids, monte_carlo_ids, refine
from threadx.optimize.space import SearchSpace, size_band
from threadx.strategy import get_strategy

MA = get_strategy("ma_crossover")
BB = get_strategy("bb_atr")


def test_axis_forms_and_types():
    space = SearchSpace(MA, {"fast_period": "5:9:2", "slow_period": {"min": 20, "max": 30, "step": 5},
                             "ma_type": ["sma", "ema"], "stop_loss_pct": 1.5})
    axes = {a.name: a for a in space.axes}
    assert axes["fast_period"].values == (5, 7, 9) and axes["fast_period"].kind == "range"
    assert axes["slow_period"].values == (20, 25, 30)
    assert axes["ma_type"].values == ("sma", "ema") and axes["ma_type"].kind == "list"
    assert axes["stop_loss_pct"].values == (1.5,) and axes["allow_short"].values == (False,)
    assert space.size == 3 * 3 * 2
    floats = SearchSpace(BB, {"entry_z": "0.5:1.0:0.1"})
    assert {a.name: a for a in floats.axes}["entry_z"].values == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_grid_order_is_cartesian_last_axis_fastest():
    space = SearchSpace(MA, {"fast_period": [5, 6, 7], "slow_period": [20, 30], "ma_type": ["sma", "ema"]})
    got = [tuple(space.params(i)[k] for k in ("fast_period", "slow_period", "ma_type")) for i in range(space.size)]
    assert got == list(itertools.product([5, 6, 7], [20, 30], ["sma", "ema"]))
    cols = space.columns(np.arange(space.size))
    assert list(cols["fast_period"]) == [g[0] for g in got]
    ids = np.arange(space.size)
    np.testing.assert_array_equal(space.ids_from_indices(space.value_indices(ids)), ids)


def test_constraints_are_counted():
    space = SearchSpace(MA, {"fast_period": "5:54:1", "slow_period": "20:215:5"})
    assert space.size == 50 * 40
    valid = sum(1 for f in range(5, 55) for s in range(20, 216, 5) if f < s)
    assert space.count_valid() == valid
    chunks = list(grid_ids(space, chunk_size=333))
    assert sum(len(ids) for ids, _ in chunks) == valid
    assert sum(skipped for _, skipped in chunks) == space.size - valid
    for ids, _ in chunks:
        p = space.columns(ids)
        assert np.all(p["fast_period"] < p["slow_period"])


def test_a_constraint_that_raises_for_a_combo_makes_it_invalid_in_a_sweep_and_in_a_backtest():
    """slow / (fast - 10) > 2: on arrays 40 / 0 is inf and inf > 2 held, so the sweep ran (and
    ranked) the combo a backtest refused with a ZeroDivisionError traceback."""
    from dataclasses import replace

    from threadx.strategy.base import Constraint

    rule = Constraint("slow_period / (fast_period - 10) > 2",
                      lambda v: v["slow_period"] / (v["fast_period"] - 10) > 2)
    spec = replace(MA, constraints=(rule,), signal_rule=None)
    space = SearchSpace(spec, {"fast_period": "9:11:1", "slow_period": [40]})
    assert space.columns(next(grid_ids(space))[0])["fast_period"].tolist() == [11]  # 9 breaks it, 10 raises
    with pytest.raises(ParamError, match=r"constraint 'slow_period / \(fast_period - 10\) > 2' raised "
                                         r"ZeroDivisionError"):
        spec.normalize({"fast_period": 10, "slow_period": 40})
    # a rule raising where a param is 0 ("off") on a slow axis filled a whole grid chunk: the sweep was refused
    # though other chunks hold valid combos (found by a code review)
    wide = SearchSpace(spec, {"fast_period": [10, 11], "slow_period": "40:1000:1"})
    first_chunk = next(wide.grid_chunks(chunk_size=961))  # every combo of fast_period=10: each raises
    assert not wide.valid_mask(first_chunk).any() and wide.count_valid() == 961
    assert "slow_period / (fast_period - 10) > 2" in wide.rule_errors
    from threadx.optimize.runner import _no_valid_combo

    broken = SearchSpace(replace(MA, constraints=(Constraint("always raises", lambda v: 1 / 0),), signal_rule=None),
                         {"fast_period": "9:11:1", "slow_period": [40]})
    assert broken.count_valid() == 0
    assert "constraint 'always raises' raised ZeroDivisionError" in _no_valid_combo(broken, "3 combos")


def test_ten_million_grid_starts_fast_with_bounded_memory():
    space = SearchSpace(BB, {"bb_period": "10:49:1", "entry_z": "0.5:2.4:0.1", "atr_period": "7:21:1",
                             "atr_multiplier": "1.0:3.0:0.5", "max_hold_bars": "10:200:10",
                             "spacing_bars": [0, 3, 6, 9], "trend_period": [0, 100]})
    assert 9_000_000 < space.size <= 10_000_000
    tracemalloc.start()
    start = time.perf_counter()
    first = next(grid_ids(space))[0]
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == 65_536 and elapsed < 1.0
    assert peak < 100 * 2**20


def test_grid_over_limit_is_refused_with_advice():
    space = SearchSpace(BB, {"bb_period": "10:50:1", "entry_z": "0.5:2.5:0.05", "atr_period": "7:21:1",
                             "atr_multiplier": "1.0:3.0:0.1", "max_hold_bars": "10:500:10"})
    with pytest.raises(ParamError, match="Monte Carlo"):
        next(grid_ids(space))
    assert size_band(space.size) == "refused"
    assert size_band(1_000) == "fast" and size_band(1_000_000) == "minutes" and size_band(9_000_000) == "minutes"


@pytest.mark.parametrize("bad", [
    {"fast_period": "10:5:1"},            # empty range
    {"fast_period": "5:10:0"},            # zero step
    {"fast_period": "5.5:10:1"},          # not whole
    {"fast_period": "1:10:1"},            # below the declared minimum
    {"fast_period": []},                  # empty list
    {"nope": [1, 2]},                     # unknown param
    {"ma_type": ["sma", "wma"]},          # unknown choice
])
def test_impossible_ranges_are_refused(bad):
    with pytest.raises(ParamError):
        SearchSpace(MA, bad)


@pytest.mark.parametrize("step", ["1e-320", "1e-300", "1e-6"])
def test_a_range_of_too_many_values_is_one_clear_error(step):
    """A step so small that the count is no float (1e-320: an OverflowError traceback) or a
    300-digit one: the same one line."""
    with pytest.raises(ParamError, match=r"stop_loss_pct: more than 10,000,000 values in one range \(0:50:"):
        SearchSpace(MA, {"stop_loss_pct": f"0:50:{step}"})


@pytest.mark.parametrize("kind", ["random", "lhs", "sobol"])
def test_monte_carlo_reproducible_snapped_distinct_valid(kind):
    space = SearchSpace(BB, {"bb_period": "10:50:1", "entry_z": "0.5:2.5:0.1", "atr_multiplier": "1.0:3.0:0.1",
                             "max_hold_bars": "10:500:10"})
    a = monte_carlo_ids(space, kind, 2_000, seed=7)
    b = monte_carlo_ids(space, kind, 2_000, seed=7)
    c = monte_carlo_ids(space, kind, 2_000, seed=8)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.array_equal(a.ids, c.ids)
    assert len(a.ids) == 2_000 == len(np.unique(a.ids))
    cols = space.columns(a.ids)
    assert set(np.round(cols["entry_z"], 6)) <= set(np.round(np.arange(5, 26) / 10, 6))
    # spread over the whole range, not clumped
    assert cols["bb_period"].min() <= 12 and cols["bb_period"].max() >= 48


def test_monte_carlo_on_a_small_space_returns_the_valid_grid():
    space = SearchSpace(MA, {"fast_period": "5:9:1", "slow_period": "6:10:1"})
    out = monte_carlo_ids(space, "random", 1_000)
    assert len(out.ids) == space.count_valid() == 15 and out.invalid == 10


def test_a_random_draw_of_most_of_a_space_is_distinct_valid_and_reproducible():
    """380,000 of 397,204 valid combos took 8.7 s of rounds that mostly drew repeats (the
    Optimisation page's planning, which a Stop could not interrupt): such a draw picks from the
    valid ids at once."""
    space = SearchSpace(MA, {"fast_period": "2:120:1", "slow_period": "3:300:1", "ma_type": ["sma", "ema"]})
    valid = space.count_valid()
    n = int(valid * 0.9)
    a, b, c = (monte_carlo_ids(space, "random", n, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.array_equal(a.ids, c.ids)
    assert len(a.ids) == n == len(np.unique(a.ids)) and space.valid_mask(a.ids).all()
    assert a.invalid == space.size - valid and a.duplicates == 0
    assert not np.array_equal(a.ids, np.sort(a.ids))  # in draw order, not the grid's


def test_lhs_stratifies_each_axis():
    space = SearchSpace(BB, {"bb_period": "10:49:1", "entry_z": "0.5:2.4:0.1"})  # 40 x 20
    out = monte_carlo_ids(space, "lhs", 40, seed=1)
    assert sorted(space.columns(out.ids)["bb_period"]) == list(range(10, 50))  # one point per stratum


def test_refine_stays_near_the_best_and_skips_known():
    space = SearchSpace(BB, {"bb_period": "10:50:1", "entry_z": "0.5:2.5:0.1"})
    best = np.array([space.ids_from_indices(np.array([[20, 0, 10] + [0] * (len(space.axes) - 3)]))[0]])
    best = space.ids_from_indices(np.array([[20 if a.name == "bb_period" else 10 if a.name == "entry_z" else 0
                                             for a in space.axes]]))
    new = refine(space, best, n=30, radius=0.1, seed=3, exclude={int(best[0])})
    assert 0 < len(new) <= 30 and int(best[0]) not in set(new.tolist())
    cols = space.columns(new)
    assert np.all(np.abs(cols["bb_period"] - 30) <= 4) and np.all(np.abs(cols["entry_z"] - 1.5) <= 0.2 + 1e-9)


def test_a_constraint_written_for_one_param_set_holds_in_sweeps_too():
    """``lambda v: v["a"] < 45 and v["b"] >= 1`` (the contract: a callable of one param mapping)
    ran in backtests but crashed sweeps and walk-forwards with 'The truth value of an array ...
    is ambiguous' (they ask a whole column at once)."""
    import dataclasses

    from threadx.strategy.base import Constraint

    base = get_strategy("ma_crossover")
    scalar = Constraint("fast below 20 and slow above 40", lambda v: v["fast_period"] < 20 and v["slow_period"] > 40)
    spec = dataclasses.replace(base, constraints=(*base.constraints, scalar))
    space = SearchSpace(spec, {"fast_period": "5:30:5", "slow_period": [30, 40, 50, 60]})
    ids = np.arange(space.size)
    expected = [p["fast_period"] < 20 and p["slow_period"] > 40 and p["fast_period"] < p["slow_period"]
                for p in (space.params(int(i)) for i in ids)]
    assert space.valid_mask(ids).tolist() == expected and space.count_valid() == sum(expected)
    broken = dataclasses.replace(base, constraints=(Constraint("needs x", lambda v: v["x"] > 1),))
    space = SearchSpace(broken, {"fast_period": [5, 10]})
    assert not space.valid_mask(np.arange(2)).any()  # a rule that raises: no valid combo, and it says why
    assert space.rule_errors == {"needs x": "KeyError: 'x'"}


def test_a_constraint_that_returns_no_bool_is_named_not_taken_as_false():
    """``lambda v: None if v["x"] != 0.5 else True`` (a missing return): the sweep ran 1 of 11
    combos and said nothing of the 10 it dropped; a backtest said "needs ..." as if it were False."""
    import dataclasses

    from threadx.errors import ParamError
    from threadx.strategy.base import Constraint

    base = get_strategy("ma_crossover")
    forgetful = Constraint("slow above 40", lambda v: None if v["slow_period"] <= 40 else True)
    spec = dataclasses.replace(base, constraints=(forgetful,))
    space = SearchSpace(spec, {"fast_period": [10], "slow_period": [30, 40, 50, 60]})
    assert space.valid_mask(np.arange(space.size)).tolist() == [False, False, True, True]
    assert space.rule_errors == {"slow above 40": "TypeError: returned None, not True or False"}
    assert "constraint 'slow above 40' raised TypeError: returned None, not True or False" in space.rule_warnings()[0]
    with pytest.raises(ParamError, match="constraint 'slow above 40' raised .*returned None, not True or False"):
        spec.normalize({"fast_period": 10, "slow_period": 30})
    assert spec.normalize({"fast_period": 10, "slow_period": 50})["slow_period"] == 50
    numbers = dataclasses.replace(base, constraints=(Constraint("a count", lambda v: v["slow_period"] - 40),))
    with pytest.raises(ParamError, match="returned 10, not True or False"):
        numbers.normalize({"fast_period": 10, "slow_period": 50})
    arrays = SearchSpace(numbers, {"fast_period": [10], "slow_period": [30, 50]})  # (whole columns: ints, not bools)
    assert not arrays.valid_mask(np.arange(2)).any() and "returned -10" in arrays.rule_errors["a count"]
    ints = dataclasses.replace(base, constraints=(Constraint("0 or 1", lambda v: v["slow_period"] > 40 and 1 or 0),))
    assert ints.normalize({"fast_period": 10, "slow_period": 50})["slow_period"] == 50  # (p["n"] and ...: 0 / 1)
    assert SearchSpace(ints, {"fast_period": [10], "slow_period": [30, 50]}).valid_mask(np.arange(2)).tolist() == [
        False, True]
