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
    state, left = space_state(spec, stored["axes"], "wf")
    assert left == []
    assert SearchSpace(spec, _editor_space(spec, state)).to_dict() == stored


def test_values_the_editor_cannot_hold_are_named() -> None:
    spec = threadx.get_strategy("ma_crossover")
    axes = [{"name": "fast_period", "values": [5, 6, 9]}, {"name": "gone", "values": [1]}]
    state, left = space_state(spec, axes, "wf")
    assert left == ["the values of fast_period (not an even range: the editor holds one value or a range)",
                    "gone (no longer a param of ma_crossover)"]
    assert not any(k.startswith("wf:ma_crossover:fast_period") for k in state)
