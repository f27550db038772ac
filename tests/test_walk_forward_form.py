"""The walk-forward form set from a stored walk-forward ("Load these settings" on the Validation
page): every built-in's declared space goes into the editor's widgets and comes back out as the
same space; what the editor cannot hold is named."""
from __future__ import annotations

from typing import Any

import pytest

import threadx
from threadx.optimize.space import SearchSpace, declared_space
from threadx.strategy import StrategySpec
from threadx.ui.walk_forward_form import space_state
from threadx.ui.widgets import space_widget_state


def _editor_space(spec: StrategySpec, state: dict[str, Any]) -> dict[str, Any]:
    """The space the editor (threadx.ui.widgets.space_editor) returns from these widget values."""
    space: dict[str, Any] = {}
    for p in spec.params:
        key = f"wf:{spec.name}:{p.name}"
        mode = state.get(f"{key}:mode")
        if p.kind in ("int", "float"):
            space[p.name] = ({k: state[f"{key}:{k}"] for k in ("min", "max", "step")} if mode == "range"
                             else state[f"{key}:value"])
        elif p.kind == "bool":
            space[p.name] = [False, True] if mode == "both" else state[f"{key}:value"]
        else:
            chosen = state[f"{key}:values"]
            space[p.name] = chosen if len(chosen) != 1 else chosen[0]
    return space


@pytest.mark.parametrize("name", sorted(threadx.strategies()))
def test_a_declared_space_goes_into_the_editor_and_comes_back_the_same(name: str) -> None:
    spec = threadx.get_strategy(name)
    stored = SearchSpace(spec, declared_space(spec)).to_dict()
    saved, left = space_state(spec, stored["axes"])
    state = space_widget_state(spec, "wf", saved)
    assert left == []
    assert SearchSpace(spec, _editor_space(spec, state)).to_dict() == stored


def test_values_the_editor_cannot_hold_are_named() -> None:
    spec = threadx.get_strategy("ma_crossover")
    axes = [{"name": "fast_period", "values": [5, 6, 9]}, {"name": "gone", "values": [1]}]
    saved, left = space_state(spec, axes)
    state = space_widget_state(spec, "wf", saved)
    assert left == ["the values of fast_period (not an even range: the editor holds one value or a range)",
                    "gone (no longer a param of ma_crossover)"]
    assert not any(k.startswith("wf:ma_crossover:fast_period") for k in state)


def test_values_outside_the_forms_boxes_are_named_not_set() -> None:
    """A walk-forward made from the CLI with a 12-bar OOS window (0.5 days) or 50 resamples was
    "loaded" while Streamlit put the boxes' defaults there without a word."""
    from threadx.ui.walk_forward_form import form_state

    cfg = {"strategy": "ma_crossover", "is_bars": 240, "oos_bars": 12, "step_bars": 12, "anchored": False,
           "purge": 0, "embargo": 0, "sampler": "grid", "n": None, "seed": 42, "objective": "sharpe",
           "maximize": True, "min_trades": 5, "engine": {"fee_bps": 10.0, "fill": "close"},
           "space": {"axes": [{"name": "ma_type", "values": ["sma", "hma"]}]}}
    state, left = form_state(cfg, {"dataset": "gone/X-1h", "timeframe": "1h"}, threadx.get_strategy("ma_crossover"),
                             50, 16, datasets=["synthetic/BTC_USDT-1h"])
    assert left == ["the out-of-sample window 0.5 days (the form takes 1 or more)",
                    "bootstrap resamples 50 (the form takes 100 to 20,000)",
                    "ma_type='hma' (no longer one of its choices)",
                    "the dataset gone/X-1h (no longer in the data folder)"]
    assert "wf_oos_days" not in state and "wf_boot" not in state and "dataset" not in state
    assert state["wf_is_days"] == 10.0 and state["wf:ma_crossover:ma_type:values"] == ["sma"]


def test_the_funding_a_walk_forward_ran_with_sets_the_forms_funding_toggle() -> None:
    """A research cell runs with its dataset's funding file; the page's walk-forward ran without:
    "Load these settings" left it out without a word, and Launch gave another result. The form's
    toggle now takes it; a rate the toggle cannot hold (a constant, a series from Python) is named."""
    from threadx.ui.walk_forward_form import form_state

    cfg = {"strategy": "ma_crossover", "is_bars": 2160, "oos_bars": 720, "step_bars": 720, "anchored": False,
           "purge": 0, "embargo": 0, "sampler": "grid", "n": None, "seed": 42, "objective": "sharpe",
           "maximize": True, "min_trades": 5, "engine": {"fee_bps": 10.0, "fill": "close",
                                                          "funding": f"<Series of 3 rates from /d/X-funding.parquet, "
                                                                     f"sha256 {'ab' * 32}>"},
           "space": {"axes": []}}
    meta, spec = {"dataset": "binance/X-1h", "timeframe": "1h"}, threadx.get_strategy("ma_crossover")
    state, left = form_state(cfg, meta, spec, 1000, 16)
    assert state["wf_funding"] is True and left == []
    cfg["engine"]["funding"] = None
    state, left = form_state(cfg, meta, spec, 1000, 16)
    assert state["wf_funding"] is False and left == []
    cfg["engine"]["funding"] = 0.0001
    state, left = form_state(cfg, meta, spec, 1000, 16)
    assert state["wf_funding"] is True
    assert left == ["the funding it ran with (0.0001 per settlement): the form applies the dataset's funding file "
                    "or none"]
