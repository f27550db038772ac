"""Parameter stability (SPEC §7): the objective over the grid neighbours of the winner.

A neighbour moves one param by one step (the next value of its axis) and keeps the
others; a robust winner sits on a plateau, so its neighbours score close to it. The values
of a choice or a bool have no order: each other value of such an axis is a neighbour. A
winner whose value is the first or last of a varied numeric axis is flagged: the optimum may
lie outside the range that was searched (a choice or a bool has no outside). Display-only
params (``feeds=()``, so ``affects_results`` is False) are not moved (such a neighbour is
the same combo) and never flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ParamError
from threadx.optimize.evaluate import STATUS_OK, Evaluator
from threadx.optimize.space import SearchSpace

_METRIC = {name: k for k, name in enumerate(METRIC_NAMES)}


@dataclass(frozen=True)
class StabilityResult:
    """The winner, its one-step neighbours and the neighbour/winner ratio."""

    objective: str
    maximize: bool
    combo_id: int
    params: dict[str, Any]
    winner_value: float
    neighbours: pd.DataFrame  # param, step (-1/+1; a choice's: the other value's offset), value, objective, combo_id
    ratio: float  # mean neighbour objective / winner objective (inverted when minimising); NaN if meaningless
    on_edge: tuple[str, ...]  # varied params whose winning value is the first or last of its axis
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective, "maximize": self.maximize, "combo_id": self.combo_id,
            "params": self.params, "winner_value": _num(self.winner_value), "ratio": _num(self.ratio),
            "on_edge": list(self.on_edge), "note": self.note,
            "neighbours": [{k: _num(v) if isinstance(v, float) else v for k, v in row.items()}
                           for row in self.neighbours.to_dict(orient="records")],
        }


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def unavailable_stability(objective: str, maximize: bool, note: str) -> StabilityResult:
    """A stability result that could not be computed, saying why (scores 0 in the grade)."""
    frame = pd.DataFrame(columns=["param", "step", "value", "objective", "combo_id"])
    return StabilityResult(objective, bool(maximize), -1, {}, float("nan"), frame, float("nan"), (), note)


def _searched_axes(space: SearchSpace) -> list[int]:
    """Positions of the varied axes whose param affects results (a move along another one
    gives the same combo in all but drawing)."""
    return [k for k, axis in enumerate(space.axes)
            if len(axis) > 1 and space.strategy.param(axis.name).affects_results]


def _ordered(space: SearchSpace, k: int) -> bool:
    """Whether the values of axis ``k`` have an order (an int or float param's)."""
    return space.strategy.param(space.axes[k].name).kind in ("int", "float")


def edge_params(space: SearchSpace, combo_id: int) -> tuple[str, ...]:
    """Varied numeric params (affecting results) whose value in the combo is the first or last
    of its axis: the optimum may lie outside the searched range (a choice or a bool has none)."""
    idx = space.value_indices(np.array([combo_id]))[0]
    return tuple(space.axes[k].name for k in _searched_axes(space)
                 if _ordered(space, k) and idx[k] in (0, len(space.axes[k]) - 1))


def run_edges(manifest: Mapping[str, Any], combo_id: int) -> list[str]:
    """:func:`edge_params` of a stored sweep's combo (its manifest's strategy and space); [] when
    the strategy is gone or changed its params (the page and ``runs show`` say what is on an edge)."""
    from threadx.errors import ThreadXError
    from threadx.optimize.space import stored_axes
    from threadx.strategy.base import find_strategy

    spec = find_strategy(manifest["strategy"])
    if spec is None:
        return []
    try:
        return list(edge_params(SearchSpace(spec, stored_axes(manifest["space"])), int(combo_id)))
    except ThreadXError:
        return []


def neighbour_ids(space: SearchSpace, combo_id: int) -> tuple[list[tuple[str, int, int]], tuple[str, ...]]:
    """([(param, step, neighbour id)] of valid neighbours, params on an edge) of a combo."""
    idx = space.value_indices(np.array([combo_id]))[0]
    found = []
    for k in _searched_axes(space):
        axis = space.axes[k]
        # one step each way along an ordered axis; every other value of a choice or a bool
        positions = (idx[k] - 1, idx[k] + 1) if _ordered(space, k) else [j for j in range(len(axis)) if j != idx[k]]
        for pos in positions:
            if 0 <= pos < len(axis):
                moved = idx.copy()
                moved[k] = pos
                found.append((axis.name, int(pos - idx[k]), int(space.ids_from_indices(moved[None, :])[0])))
    valid = space.valid_mask(np.array([nid for _, _, nid in found], dtype=np.int64)) if found else np.empty(0, bool)
    return [item for item, ok in zip(found, valid) if ok], edge_params(space, combo_id)


def parameter_stability(evaluator: Evaluator, combo_id: int, objective: str = "sharpe",
                        maximize: bool = True) -> StabilityResult:
    """Evaluate the winner ``combo_id`` and its valid one-step neighbours (fast kernel)."""
    if objective not in _METRIC:
        raise ParamError(f"unknown objective {objective!r}")
    space = evaluator.space
    items, edge = neighbour_ids(space, int(combo_id))
    ids = np.array([int(combo_id)] + [nid for _, _, nid in items], dtype=np.int64)
    chunk = evaluator.evaluate(ids)
    values = np.where(chunk.status == STATUS_OK, chunk.metrics[:, _METRIC[objective]], np.nan)
    winner = float(values[0])
    frame = pd.DataFrame({
        "param": [p for p, _, _ in items],
        "step": [s for _, s, _ in items],
        "value": [space.params(nid)[p] for p, _, nid in items],
        "objective": values[1:],
        "combo_id": [nid for _, _, nid in items],
    })
    ratio, note = _ratio(winner, frame["objective"].to_numpy(dtype=float), maximize)
    return StabilityResult(objective, bool(maximize), int(combo_id), space.params(int(combo_id)), winner, frame,
                           ratio, edge, note)


def _ratio(winner: float, neighbours: np.ndarray, maximize: bool) -> tuple[float, str]:
    """How much of the winner's objective its neighbours keep: 1 = a plateau, lower = a peak.

    Mean neighbour over winner for positive values of a maximised objective; for negative
    ones (e.g. max drawdown) the inverse, so neighbours that are worse still give < 1;
    the other way round for a minimised objective. Neighbours better on average give 1.
    """
    finite = neighbours[np.isfinite(neighbours)]
    if not len(finite):
        return float("nan"), "no neighbour to compare with (no varied param, or every neighbour failed)"
    if not math.isfinite(winner) or winner == 0.0:
        return float("nan"), "the winner's objective is zero or not finite, so a neighbour/winner ratio means nothing"
    mean = float(finite.mean())
    text = f"neighbours average {mean:.4g} against the winner's {winner:.4g}"
    better = mean >= winner if maximize else mean <= winner
    if better:
        return 1.0, text + " (no worse on average)"
    if (winner > 0) == maximize:  # maximise a positive value, or minimise a negative one
        return mean / winner, text
    return winner / mean, text  # the neighbours' mean has the winner's sign here


def stability_grid(evaluator: Evaluator, combo_id: int, x: str, y: str, objective: str = "sharpe",
                   radius: int = 3) -> pd.DataFrame:
    """The objective over +-``radius`` steps of params ``x`` and ``y`` around the winner,
    the other params at the winner's values (for the stability heatmap)."""
    space = evaluator.space
    names = list(space.names)
    for name in (x, y):
        if name not in names:
            raise ParamError(f"no param {name!r} in the space")
    if x == y:
        raise ParamError("pick two different params for the stability grid")
    kx, ky = names.index(x), names.index(y)
    centre = space.value_indices(np.array([int(combo_id)]))[0]
    rows = []
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            px, py = centre[kx] + dx, centre[ky] + dy
            if 0 <= px < space.sizes[kx] and 0 <= py < space.sizes[ky]:
                moved = centre.copy()
                moved[kx], moved[ky] = px, py
                rows.append(moved)
    ids = space.ids_from_indices(np.array(rows))
    ids = ids[space.valid_mask(ids)]
    chunk = evaluator.evaluate(ids)
    cols = space.columns(ids)
    return pd.DataFrame({
        x: cols[x], y: cols[y], "combo_id": ids,
        objective: np.where(chunk.status == STATUS_OK, chunk.metrics[:, _METRIC[objective]], np.nan),
        "winner": ids == int(combo_id),
    })
