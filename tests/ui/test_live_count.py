"""state.valid_combos: a page's live count of a constrained grid, counted once per space."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _count_page() -> None:
    import dataclasses

    import streamlit as st

    from threadx.optimize.space import SearchSpace
    from threadx.strategy import Constraint, get_strategy
    from threadx.ui.state import valid_combos

    calls = st.session_state.setdefault("calls", [0])

    def rule(v):  # raises for fast_period 7: asked combo by combo, as a rule for one param set
        calls[0] += 1
        return 1 / (v["fast_period"] - 7) != 0

    spec = dataclasses.replace(get_strategy("ma_crossover"), constraints=(Constraint("fast_period != 7", rule),),
                               signal_rule=None)
    slow = st.session_state.get("slow_max", 60)
    search = SearchSpace(spec, {"fast_period": [5, 6, 7, 8], "slow_period": {"min": 20, "max": slow, "step": 1}})
    st.markdown(f"valid {valid_combos(search, 1_000_000)} of {search.size}")


def test_a_constrained_grid_is_counted_once_per_space_not_on_every_rerun():
    """A constraint that raised on arrays was called once per combo on every rerun of the
    Optimisation and Validation pages, whatever widget changed (a million calls: seconds)."""
    at = AppTest.from_function(_count_page, default_timeout=60)
    at.run()
    assert at.markdown[0].value == "valid 123 of 164"
    first = at.session_state["calls"][0]
    assert first >= 164  # one call per combo (after the one on the arrays)
    at.run()
    at.run()
    assert at.session_state["calls"][0] == first and at.markdown[0].value == "valid 123 of 164"
    at.session_state["slow_max"] = 30  # another space: counted again
    at.run()
    assert at.markdown[0].value == "valid 33 of 44" and at.session_state["calls"][0] > first
