"""Issue 11, honest numbers: no PBO or stability points for a selection that loses out of
sample, params that change nothing are not searched or counted as trials."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.optimize.space import SearchSpace, declared_space, distinct_effective
from threadx.strategy.base import get_strategy, list_strategies
from threadx.validation.grading import GATE_RULE
from threadx.validation.report import validate_sweep, validate_walk_forward


def _component(report, name: str):
    return next(c for c in report.grade.components if c.name == name)


# --- the grade does not reward a losing strategy -------------------------------------------

def test_an_all_losing_sweep_gets_no_pbo_or_stability_points(synthetic_bars, tmp_path):
    run = threadx.sweep(synthetic_bars, "ma_crossover", {"fast_period": "2:10:2", "slow_period": "50:300:50"},
                        store=tmp_path, run_id="lose", executor="inline", workers=1, fee_bps=300, min_trades=0)
    assert (run.ok()["total_return"] < 0).all()
    report = validate_sweep(run, synthetic_bars, n=100, S=4)
    assert report.pbo.prob_oos_loss == 1.0
    # what the points would have been: PBO 0.17 -> 12.5 of 15, stability 0.90 -> 10 of 10
    assert report.pbo.pbo < 0.5 and report.stability.ratio >= 0.5
    for name in ("pbo", "stability"):
        comp = _component(report, name)
        assert comp.points == 0.0
        assert "no combo is profitable (none of the 30 combos made money" in comp.explanation
        assert GATE_RULE in comp.explanation
        assert comp.inputs["profitable_combos"] == 0 and comp.inputs["combos_evaluated"] == 30


def test_a_walk_forward_with_negative_efficiency_gets_no_pbo_or_stability_points():
    bars = as_bars(generate_synthetic(days=240, seed=3))
    wf = threadx.walk_forward(bars, "ma_crossover", {"fast_period": "5:30:5", "slow_period": "40:120:20"},
                              sampler="grid", workers=1, is_days=45, oos_days=30, min_trades=0)
    assert wf.efficiency == pytest.approx(-0.874, abs=1e-3)
    report = validate_walk_forward(wf, n=100, S=4)
    for name in ("pbo", "stability"):
        comp = _component(report, name)
        assert comp.points == 0.0 and comp.inputs["profitable_out_of_sample"] is False
        assert "the selected combo loses out of sample (OOS/IS ratio -0.87)" in comp.explanation
        assert comp.inputs["oos_return"] == pytest.approx(wf.oos_summary["total_return"])


# --- params that change nothing ------------------------------------------------------------

def test_bb_std_only_draws_the_bands(synthetic_bars):
    base = {"bb_period": 20, "entry_z": 1.2}
    narrow = threadx.backtest(synthetic_bars, "bb_atr", {**base, "bb_std": 1.0})
    wide = threadx.backtest(synthetic_bars, "bb_atr", {**base, "bb_std": 3.0})
    assert len(narrow.trades) > 10
    pd.testing.assert_frame_equal(narrow.trades, wide.trades)
    assert narrow.metrics == wide.metrics


@pytest.mark.parametrize("name", sorted(list_strategies()))
def test_declared_inert_params_change_nothing(name, synthetic_bars):
    spec = get_strategy(name)
    for p in spec.params:
        if p.affects_results:
            continue
        lo, hi = (p.opt_range[0], p.opt_range[1]) if p.opt_range else (p.min, p.max)
        a = threadx.backtest(synthetic_bars, name, {p.name: lo})
        b = threadx.backtest(synthetic_bars, name, {p.name: hi})
        pd.testing.assert_frame_equal(a.trades, b.trades)


def test_only_bb_atr_declares_an_inert_param():
    builtin = [s for s in list_strategies().values()  # not the strategies that tests register
               if getattr(sys.modules.get(f"threadx.strategy.{s.name}"), "SPEC", None) is s]
    inert = {(s.name, p.name) for s in builtin for p in s.params if not p.affects_results}
    assert inert == {("bb_atr", "bb_std")}
    assert get_strategy("bb_atr").param("bb_std").to_dict()["affects_results"] is False


def test_the_default_space_leaves_bb_std_out():
    spec = get_strategy("bb_atr")
    space = declared_space(spec)
    assert "bb_std" not in space and "bb_period" in space and "entry_z" in space
    # bb_period over its declared range with bb_std as well was 41 x 7 = 287 combos, 41 effective
    old = SearchSpace(spec, {"bb_period": "10:50:1", "bb_std": "1.5:3.0:0.25"})
    cols = pd.DataFrame(old.columns(np.arange(old.size)))
    assert old.size == 287 and distinct_effective(spec, cols).sum() == 41
    assert SearchSpace(spec, {"bb_period": "10:50:1"}).size == 41
    assert SearchSpace(spec, {"bb_std": [1.5, 2.5]}).size == 2  # still searchable when asked for


def test_distinct_effective_keeps_the_preferred_row():
    spec = get_strategy("bb_atr")
    frame = pd.DataFrame({"bb_period": [10, 10, 11, 11], "bb_std": [1.5, 2.0, 1.5, 2.0]})
    assert distinct_effective(spec, frame).tolist() == [True, False, True, False]
    assert distinct_effective(spec, frame, prefer=3).tolist() == [True, False, False, True]
    ma = get_strategy("ma_crossover")
    assert distinct_effective(ma, pd.DataFrame({"fast_period": [5, 5]})).all()


def test_dsr_and_pbo_count_distinct_effective_combos(synthetic_bars, tmp_path):
    space = {"bb_period": "14:22:2", "entry_z": [1.0, 1.5]}
    runs = {}
    for label, extra in (("plain", {}), ("std", {"bb_std": [1.5, 2.0, 2.5]})):
        runs[label] = threadx.sweep(synthetic_bars, "bb_atr", {**space, **extra}, store=tmp_path, run_id=label,
                                    executor="inline", workers=1, min_trades=0)
    assert len(runs["std"].ok()) == 30 and len(runs["plain"].ok()) == 10
    plain = validate_sweep(runs["plain"], synthetic_bars, n=100, S=4)
    inert = validate_sweep(runs["std"], synthetic_bars, n=100, S=4)
    assert plain.dsr.n_trials == inert.dsr.n_trials == 10
    assert inert.dsr.dsr == pytest.approx(plain.dsr.dsr) and inert.dsr.var_sharpe == pytest.approx(plain.dsr.var_sharpe)
    assert inert.pbo.n_combos == 10 and inert.pbo.pbo == pytest.approx(plain.pbo.pbo)
    assert "10 distinct effective combos of 30" in inert.pbo.note
    assert threadx.deflated_sharpe(runs["std"], synthetic_bars).n_trials == 10


def test_walk_forward_dsr_counts_distinct_effective_combos(synthetic_bars):
    wf = threadx.walk_forward(synthetic_bars, "bb_atr", {"bb_period": "14:22:4", "bb_std": [1.5, 2.5]},
                              sampler="grid", workers=1, is_days=90, oos_days=60, min_trades=0)
    assert len(wf.combos) == 6
    report = validate_walk_forward(wf, n=100, S=4)
    assert report.dsr.n_trials == 3 and report.pbo.n_combos == 3
    kept = wf.combos[wf.combos["bb_std"] == wf.combos["bb_std"].iloc[0]]["combo_id"]  # one row of each pair
    assert sorted(report.pbo.combo_indices.tolist()) == sorted(kept.tolist())  # combo ids, not rows
    assert set(report.pbo.best_index.tolist()) <= set(kept.tolist())


# --- min_trades: one default everywhere -----------------------------------------------------

def test_min_trades_has_one_default_used_everywhere():
    import inspect

    from threadx.cli import build_parser
    from threadx.config import DEFAULT_MIN_TRADES
    from threadx.requests import SweepRequest, WalkForwardRequest

    assert DEFAULT_MIN_TRADES >= 3  # never a winner of 0-2 trades by default
    for func in (threadx.sweep, threadx.walk_forward):
        assert inspect.signature(func).parameters["min_trades"].default == DEFAULT_MIN_TRADES
    for request in (SweepRequest, WalkForwardRequest):  # what jobs and pages build
        assert inspect.signature(request).parameters["min_trades"].default == DEFAULT_MIN_TRADES
    parser = build_parser()
    sweep = parser.parse_args(["sweep", "--strategy", "bb_atr"])
    wf = parser.parse_args(["walkforward", "--strategy", "bb_atr", "--is-days", "90", "--oos-days", "30"])
    assert sweep.min_trades == wf.min_trades == DEFAULT_MIN_TRADES


def test_walk_forward_winners_need_the_default_trade_count(synthetic_bars):
    from threadx.config import DEFAULT_MIN_TRADES

    space = {"entry_z": [1.0, 2.0, 3.0, 3.5, 4.0], "bb_period": [20, 40]}
    kw = dict(sampler="grid", workers=1, is_days=60, oos_days=30)
    loose = threadx.walk_forward(synthetic_bars, "bb_atr", space, min_trades=0, **kw)
    assert (loose.table["is_n_trades"] < 3).any()  # what a default of 0 picked: winners of 0-2 trades
    wf = threadx.walk_forward(synthetic_bars, "bb_atr", space, **kw)
    assert wf.config["min_trades"] == DEFAULT_MIN_TRADES
    assert (wf.table["is_n_trades"] >= DEFAULT_MIN_TRADES).all()


def test_sweep_ranks_winners_with_the_default_trade_count(synthetic_bars, tmp_path):
    from threadx.config import DEFAULT_MIN_TRADES

    run = threadx.sweep(synthetic_bars, "bb_atr", {"entry_z": [1.0, 3.0, 4.0, 4.5]}, store=tmp_path, run_id="mt",
                        executor="inline", workers=1)
    assert run.manifest["min_trades"] == DEFAULT_MIN_TRADES
    best = run.top(1, min_trades=run.manifest["min_trades"])
    assert best.iloc[0]["n_trades"] >= DEFAULT_MIN_TRADES
    assert run.best_params()["entry_z"] == best.iloc[0]["entry_z"]


def test_stability_neither_moves_nor_flags_a_param_that_changes_nothing():
    from threadx.validation.stability import edge_params, neighbour_ids

    space = SearchSpace(get_strategy("bb_atr"), {"bb_period": "10:50:1", "bb_std": "1.5:3.0:0.25"})
    winner = int(space.ids_from_indices(np.array([[40, 0] + [0] * (len(space.axes) - 2)]))[0])
    assert space.params(winner)["bb_period"] == 50 and space.params(winner)["bb_std"] == 1.5
    items, edge = neighbour_ids(space, winner)
    assert edge == edge_params(space, winner) == ("bb_period",)
    assert [(p, s) for p, s, _ in items] == [("bb_period", -1)]
