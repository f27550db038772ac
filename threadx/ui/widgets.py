"""Widgets generated from strategy declarations (Backtest and Optimisation pages)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from threadx.optimize.space import searched_by_default
from threadx.strategy.base import Param, StrategySpec


def _number_format(p: Param) -> str | None:
    if p.kind != "float":
        return None
    step = p.step or 0.01
    decimals = max(0, min(6, len(f"{step:g}".split(".")[-1]) if "." in f"{step:g}" else 0))
    return f"%.{max(decimals, 1)}f"


def param_input(p: Param, value: Any, key: str) -> Any:
    """One widget for a param, starting at ``value`` (the declared default unless handed over)."""
    help_text = p.description or None
    if p.kind == "bool":
        return st.checkbox(p.name, value=bool(value), key=key, help=help_text)
    if p.kind == "choice":
        options = list(p.choices)
        return st.selectbox(p.name, options, index=options.index(value) if value in options else 0, key=key,
                            help=help_text)
    if p.kind == "int":
        return int(st.number_input(p.name, min_value=int(p.min) if p.min is not None else None,
                                   max_value=int(p.max) if p.max is not None else None, value=int(value),
                                   step=int(p.step or 1), key=key, help=help_text))
    return float(st.number_input(p.name, min_value=float(p.min) if p.min is not None else None,
                                 max_value=float(p.max) if p.max is not None else None, value=float(value),
                                 step=float(p.step or 0.01), format=_number_format(p), key=key, help=help_text))


def param_form(spec: StrategySpec, values: dict[str, Any], key_prefix: str, columns: int = 3) -> dict[str, Any]:
    """Widgets for every param of a strategy, laid out in columns."""
    cols = st.columns(columns)
    out = {}
    for k, p in enumerate(spec.params):
        with cols[k % columns]:
            out[p.name] = param_input(p, values.get(p.name, p.default), key=f"{key_prefix}:{spec.name}:{p.name}")
    return out


def space_editor(spec: StrategySpec, key_prefix: str) -> dict[str, Any]:
    """Per param: fixed value or range (min, max, step); returns a space dict for sweeps.

    The first two declared params start as ranges when they are searched by default (a
    declared range, affecting results); a param that does not affect results starts fixed
    and says so."""
    space: dict[str, Any] = {}
    ranged = [p.name for p in spec.params[:2] if searched_by_default(p)]
    header = st.columns([2, 2, 2, 2, 2])
    for label, col in zip(("param", "mode", "min / value", "max", "step"), header):
        col.caption(label)
    for p in spec.params:
        row = st.columns([2, 2, 2, 2, 2])
        row[0].markdown(f"`{p.name}`" + ("" if p.affects_results else " (display only)"),
                        help=None if p.affects_results else "Does not change any result: left out of the "
                        "default search, every value gives the same backtest.")
        key = f"{key_prefix}:{spec.name}:{p.name}"
        if p.kind in ("int", "float"):
            default_mode = "range" if p.name in ranged else "fixed"
            mode = row[1].selectbox("mode", ["fixed", "range"], index=["fixed", "range"].index(default_mode),
                                    key=f"{key}:mode", label_visibility="collapsed")
            lo, hi, step = p.opt_range or (p.default, p.default, p.step or 1)
            cast = int if p.kind == "int" else float
            if mode == "fixed":
                with row[2]:
                    space[p.name] = param_input(p, p.default, key=f"{key}:value")
            else:
                low = row[2].number_input("min", value=cast(lo), step=cast(step), key=f"{key}:min",
                                          label_visibility="collapsed")
                high = row[3].number_input("max", value=cast(hi), step=cast(step), key=f"{key}:max",
                                           label_visibility="collapsed")
                stp = row[4].number_input("step", value=cast(step), step=cast(step), key=f"{key}:step",
                                          label_visibility="collapsed")
                space[p.name] = {"min": low, "max": high, "step": stp}
        elif p.kind == "bool":
            mode = row[1].selectbox("mode", ["fixed", "both"], key=f"{key}:mode", label_visibility="collapsed")
            if mode == "both":
                space[p.name] = [False, True]
                row[2].caption("false, true")
            else:
                with row[2]:
                    space[p.name] = param_input(p, p.default, key=f"{key}:value")
        else:
            chosen = row[1].multiselect("values", list(p.choices), default=[p.default], key=f"{key}:values",
                                        label_visibility="collapsed")
            space[p.name] = chosen if len(chosen) != 1 else chosen[0]
            if not chosen:
                space[p.name] = []
    return space
