"""The Validation page's walk-forward form set from a stored walk-forward: what "Load these
settings" puts into the form's widgets (a report opened from a research cell or the history
ran with other settings than the form shows; the page says what differs, and this loads them).

Pure functions (no Session State): a stored walk-forward's ``config`` and ``meta`` in, widget keys
and values out.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from threadx.config import MAX_COST_BOX_BPS
from threadx.data.timeframe import timeframe_seconds
from threadx.errors import ThreadXError
from threadx.requests import funding_words
from threadx.strategy.base import StrategySpec
from threadx.ui.widgets import space_widget_state
from threadx.validation.bootstrap import MIN_RESAMPLES
from threadx.validation.pbo import MAX_S

__all__ = ["BOUNDS", "form_state", "space_state"]

# the walk-forward form's number boxes: (least, most or None) by the key after its prefix; the
# page's boxes take them, and a stored value outside them is not loaded (Streamlit would put the
# box's default there without a word)
BOUNDS: dict[str, tuple[float, float | None]] = {
    "is_days": (1.0, None), "oos_days": (1.0, None), "step_days": (0.0, None), "purge": (0, None),
    "embargo": (0, None), "n": (1, None), "seed": (0, None), "min_trades": (0, None), "boot": (MIN_RESAMPLES, 20_000),
    "S": (2, MAX_S), "fee": (0.0, MAX_COST_BOX_BPS),
}
_LABELS = {"is_days": "the in-sample window", "oos_days": "the out-of-sample window", "step_days": "the step",
           "boot": "bootstrap resamples", "S": "PBO blocks", "n": "combos (n)", "min_trades": "min trades (IS)"}


def _days(bars: int, timeframe: str) -> float:
    """``bars`` in days (what the form's day boxes hold; the page turns them back into the same bars)."""
    return round(bars * timeframe_seconds(timeframe) / 86_400, 9)


def form_state(cfg: Mapping[str, Any], meta: Mapping[str, Any], spec: StrategySpec, bootstrap: int | None,
               blocks: int | None, prefix: str = "wf", datasets: Sequence[str] | None = None
               ) -> tuple[dict[str, Any], list[str]]:
    """(widget key -> value, what could not be loaded) for the walk-forward form of ``prefix``
    from a stored walk-forward (its ``config`` and ``meta``; ``bootstrap`` resamples and PBO
    ``blocks`` of its report): a value outside the form's :data:`BOUNDS`, a dataset not among
    ``datasets`` (when given) and values the space editor cannot hold are named, not set. The
    strategy and dataset are the session's keys ``strategy`` and ``dataset``.

    >>> from threadx.strategy import get_strategy
    >>> cfg = {"strategy": "ma_crossover", "is_bars": 2160, "oos_bars": 720, "step_bars": 720, "anchored": False,
    ...        "purge": 0, "embargo": 0, "sampler": "grid", "n": None, "seed": 42, "objective": "sharpe",
    ...        "maximize": True, "min_trades": 5, "engine": {"fee_bps": 10.0, "fill": "close"},
    ...        "space": {"axes": [{"name": "fast_period", "kind": "int", "values": [5, 10, 15]}]}}
    >>> state, left = form_state(cfg, {"dataset": "binance/BTC_USDT-1h", "timeframe": "1h"},
    ...                          get_strategy("ma_crossover"), 1000, 16)
    >>> state["wf_is_days"], state["wf_step_days"], state["wf:ma_crossover:fast_period:max"], left
    (90.0, 0.0, 15, [])
    """
    timeframe = meta.get("timeframe")
    state: dict[str, Any] = {"strategy": cfg["strategy"], f"{prefix}_strategy": cfg["strategy"]}
    if meta.get("dataset"):
        state["dataset"] = meta["dataset"]
    left: list[str] = []
    if timeframe:
        step = cfg.get("step_bars") or cfg["oos_bars"]
        state.update({f"{prefix}_is_days": _days(cfg["is_bars"], timeframe),
                      f"{prefix}_oos_days": _days(cfg["oos_bars"], timeframe),
                      f"{prefix}_step_days": 0.0 if step == cfg["oos_bars"] else _days(step, timeframe)})
    else:
        left.append("the windows (the data's timeframe is not recorded)")
    state.update({f"{prefix}_purge": int(cfg.get("purge") or 0), f"{prefix}_embargo": int(cfg.get("embargo") or 0),
                  f"{prefix}_anchored": bool(cfg.get("anchored")), f"{prefix}_sampler": cfg["sampler"],
                  f"{prefix}_seed": int(cfg["seed"]), f"{prefix}_objective": cfg["objective"],
                  f"{prefix}_direction": "maximise" if cfg.get("maximize", True) else "minimise",
                  f"{prefix}_min_trades": int(cfg.get("min_trades") or 0)})
    if cfg.get("n") is not None:
        state[f"{prefix}_n"] = int(cfg["n"])
    engine = cfg.get("engine") or {}
    if engine.get("fee_bps") is not None:
        state[f"{prefix}_fee"] = float(engine["fee_bps"])
    if engine.get("fill") is not None:
        state[f"{prefix}_fill"] = engine["fill"]
    funding = engine.get("funding")
    state[f"{prefix}_funding"] = funding is not None  # (the dataset's funding file: a research cell's, a CLI run's)
    if funding is not None and funding_words(funding, detail=False) != "the stored file":
        left.append(f"the funding it ran with ({funding_words(funding)}): the form applies the dataset's funding "
                    "file or none")
    if bootstrap is not None:
        state[f"{prefix}_boot"] = int(bootstrap)
    if blocks is not None:
        state[f"{prefix}_S"] = int(blocks)
    for name, (least, most) in BOUNDS.items():
        key = f"{prefix}_{name}"
        if key in state and not (state[key] >= least and (most is None or state[key] <= most)):
            value = state.pop(key)
            bounds = f"{least:,g} or more" if most is None else f"{least:,g} to {most:,g}"
            left.append(f"{_LABELS.get(name, name)} {value:g}{' days' if name.endswith('_days') else ''} (the form "
                        f"takes {bounds})")
    space, unloaded = space_state(spec, (cfg.get("space") or {}).get("axes", []))
    state.update(space_widget_state(spec, prefix, space))
    left += unloaded
    if datasets is not None and state.get("dataset") not in datasets:
        left.append(f"the dataset {state.pop('dataset', None) or '(not recorded)'} (no longer in the data folder)")
    return state, left


def space_state(spec: StrategySpec, axes: list[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """(the saved space the search-space editor can hold, what it cannot, in words) for the stored
    ``axes`` (``{"name", "values"}``): one value is fixed, evenly spaced numbers a range
    ({"min", "max", "step"}), both booleans the list of both, a choice's values its picks;
    :func:`threadx.ui.widgets.space_widget_state` turns it into the editor's widget keys.

    >>> from threadx.strategy import get_strategy
    >>> space_state(get_strategy("ma_crossover"), [{"name": "fast_period", "values": [5, 10, 15]},
    ...                                            {"name": "ma_type", "values": ["sma", "wma"]}])
    ({'fast_period': {'min': 5, 'max': 15, 'step': 5}, 'ma_type': ['sma']}, ["ma_type='wma' (no longer one of its choices)"])
    """
    saved: dict[str, Any] = {}
    unloaded = []
    for axis in axes:
        try:
            param = spec.param(axis["name"])
        except ThreadXError:  # a param the strategy no longer declares
            unloaded.append(f"{axis.get('name')} (no longer a param of {spec.name})")
            continue
        values = list(axis.get("values", []))
        if not values:
            continue
        if param.kind in ("int", "float"):
            if len(values) == 1:
                saved[param.name] = values[0]
                continue
            steps = np.diff(np.asarray(values, dtype=float))
            if not (steps > 0).all() or not np.allclose(steps, steps[0], rtol=1e-9, atol=0.0):
                unloaded.append(f"the values of {param.name} (not an even range: the editor holds one value "
                                "or a range)")
                continue
            cast = int if param.kind == "int" else float
            step = cast(round(float(steps[0]), 12)) if cast is float else cast(steps[0])
            saved[param.name] = {"min": cast(values[0]), "max": cast(values[-1]), "step": step}
        elif param.kind == "bool":
            both = len(set(map(bool, values))) == 2
            saved[param.name] = [False, True] if both else bool(values[0])
        else:
            saved[param.name] = [v for v in values if v in param.choices]
            unloaded += [f"{param.name}={v!r} (no longer one of its choices)" for v in values if v not in param.choices]
    return saved, unloaded
