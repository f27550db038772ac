"""An engine option (sizing, leverage, fraction) never silently replaces what a strategy's params set."""
from __future__ import annotations

import pytest

import threadx
from threadx.errors import ParamError


def test_a_backtest_refuses_an_engine_leverage_that_erases_the_params(synthetic_bars):
    """It showed leverage=5 beside leverage 1's figures."""
    with pytest.raises(ParamError, match=r"leverage is set twice: the engine option leverage 1.0 would replace "
                                         r"the strategy's param leverage=5.0"):
        threadx.backtest(synthetic_bars, "bb_atr", {"leverage": 5.0}, leverage=1.0)
    same = threadx.backtest(synthetic_bars, "bb_atr", {"leverage": 5.0}, leverage=5.0)  # no conflict: one value
    assert same.meta["rules"]["leverage"] == 5.0
    engine = threadx.backtest(synthetic_bars, "bb_atr", leverage=3.0)  # the params at their default: the engine's
    assert engine.meta["rules"]["leverage"] == 3.0


def test_a_sweep_of_an_erased_param_is_refused_before_anything_is_stored(synthetic_bars, tmp_path):
    """A sweep of leverage 1:5:2 under the engine's leverage 1 stored three identical rows labelled 1, 3, 5."""
    with pytest.raises(ParamError, match=r"leverage is set twice.*leverage=3\.0.*\(one of this sweep's values of "
                                         r"leverage\)"):
        threadx.sweep(synthetic_bars, "bb_atr", {"leverage": "1:5:2"}, leverage=1.0, store=tmp_path, run_id="x",
                      executor="inline")
    assert not (tmp_path / "x").exists()
    # each value of the space is checked, not the combos drawn: seed 0 draws one combo with leverage 1 and ran,
    # seed 1 one with leverage 4 and was refused (the answer depended on the draw)
    for seed in (0, 1):
        with pytest.raises(ParamError, match=r"leverage=4\.0.*\(one of this sweep's values of leverage\)"):
            threadx.sweep(synthetic_bars, "bb_atr", {"leverage": [1.0, 4.0], "bb_period": "10:49:1"},
                          sampler="random", n=1, seed=seed, leverage=1.0, store=tmp_path, run_id="z", executor="inline")
    run = threadx.sweep(synthetic_bars, "bb_atr", {"bb_period": [20, 30]}, leverage=2.0, store=tmp_path,
                        run_id="y", executor="inline")
    assert len(run.results) == 2


def test_a_sizing_the_strategy_derives_is_replaced_as_asked(synthetic_bars):
    """ma_crossover sizes by risk when a stop is set: no param says so, and --sizing fraction with a
    stop is what the user asked for (the first version of the check refused it)."""
    result = threadx.backtest(synthetic_bars, "ma_crossover", {"stop_loss_pct": 2.0}, sizing="fraction", fraction=0.5)
    assert result.meta["rules"]["sizing"] == "fraction"
