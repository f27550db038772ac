"""A-F grade of a validated strategy from a 100-point score (SPEC §7).

| Component    | Max | Scoring                                                              |
|--------------|-----|----------------------------------------------------------------------|
| OOS/IS ratio | 20  | < 0.5 -> 0; 0.5..1 linear 0..20; >= 1 -> 20                          |
| p-value      | 20  | < 0.05 -> 20; < 0.10 -> 10; else 0 (bootstrap Sharpe p-value)        |
| consistency  | 20  | share of positive OOS windows: < 0.5 -> 0; 0.5..1 linear 0..20       |
| DSR          | 15  | < 0.5 -> 0; 0.5..1 linear 0..15                                      |
| stability    | 10  | neighbours' mean / winner's objective: < 0.5 -> 0; 0.5..0.9 linear   |
|              |     | 0..10; >= 0.9 -> 10; a winner on a grid edge gets at most 5          |
| PBO          | 15  | <= 0.1 -> 15; 0.1..0.5 linear 15..0; >= 0.5 -> 0                     |

PBO and stability measure how robustly a combo was selected, which is worth points only
when the selection makes money: both score 0 unless the selected combo is profitable out
of sample, i.e. the OOS/IS ratio is positive (mean OOS Sharpe of the selected combo above
0), the out-of-sample return, when given (a walk-forward's stitched OOS record), is
positive and, when the count is given, at least one combo made money over the whole
period. The explanation of both components then says why, and says plainly when no combo
is profitable.

Every band boundary belongs to the better side as written (a ratio of exactly 0.5 is on
the linear part and scores 0, exactly 1.0 scores full marks). A component whose input is
None or NaN scores 0 and says "not available". Bands: A >= 85, B >= 70, C >= 55, D >= 40,
else F. Caps: fewer than 30 trades -> at most C; fewer than 50 -> at most B; an unknown
trade count is treated as too few (at most C).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from threadx.shapes import read_json_number
from threadx.units import beside
from threadx.validation.common import json_safe

BANDS = (("A", 85.0), ("B", 70.0), ("C", 55.0), ("D", 40.0), ("F", -math.inf))
LETTERS = tuple(letter for letter, _ in BANDS)
MAX_SCORE = 100.0


@dataclass(frozen=True)
class Component:
    """One scored criterion, with the inputs it used and a one-sentence explanation."""

    name: str
    points: float
    max_points: float
    value: float | None
    inputs: dict[str, Any]
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "points": float(self.points), "max_points": float(self.max_points),
                "value": json_safe(self.value), "inputs": json_safe(self.inputs),
                "explanation": self.explanation}


@dataclass(frozen=True)
class Grade:
    """Letter, score out of 100, the scored components and the trade-count cap if one applied."""

    letter: str
    score: float
    components: list[Component]
    cap: str | None
    uncapped_letter: str
    max_score: float = MAX_SCORE
    n_trades: float | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain values; NaN stays a float."""
        return {"letter": self.letter, "score": float(self.score), "max_score": float(self.max_score),
                "uncapped_letter": self.uncapped_letter, "cap": self.cap, "n_trades": json_safe(self.n_trades),
                "components": [c.to_dict() for c in self.components]}


def grade(
    *,
    oos_is_ratio: float | None,
    p_value: float | None,
    consistency: float | None,
    dsr: float | None,
    stability: float | None,
    on_edge: bool | None,
    pbo: float | None,
    n_trades: int | None,
    details: Mapping[str, Mapping[str, Any]] | None = None,
    consistency_of: str = "out-of-sample windows",
    profitable_combos: tuple[int, int] | None = None,
    oos_return: float | None = None,
) -> Grade:
    """Score the six SPEC §7 criteria and grade A-F (see the module docstring for the rules).

    ``oos_is_ratio``: OOS Sharpe / IS Sharpe; ``p_value``: bootstrap Sharpe p-value;
    ``consistency``: share of OOS windows with a positive return (0..1); ``dsr``: deflated
    Sharpe ratio (a probability); ``stability``: neighbours' mean objective / winner's
    objective; ``on_edge``: the winner sits on an edge of the grid; ``pbo``: probability of
    backtest overfitting; ``n_trades``: trades behind the result (caps the grade);
    ``details``: per component name, the further inputs behind its value (e.g. the mean IS
    and OOS Sharpe behind the ratio), added to that component's ``inputs``;
    ``consistency_of``: what the consistency counts (for a sweep: "time blocks");
    ``profitable_combos``: (combos with a positive whole-period return, combos evaluated);
    ``oos_return``: total return of the selection traded out of sample (a walk-forward's
    stitched record; None when there is none, as for a sweep). PBO and stability points
    need a selection that is profitable out of sample (see :func:`withheld_because`).
    """
    gate = withheld_because(oos_is_ratio, profitable_combos, oos_return)
    details = {k: dict(v) for k, v in (details or {}).items()}
    components = [
        _ratio_component(oos_is_ratio),
        _p_value_component(p_value),
        _consistency_component(consistency, consistency_of, details.get("consistency", {})),
        _dsr_component(dsr),
        _stability_component(stability, on_edge, gate, details.get("stability", {})),
        _pbo_component(pbo, gate),
    ]
    gate_inputs = {"oos_is_ratio": read_json_number(oos_is_ratio), "oos_return": read_json_number(oos_return)}
    if profitable_combos is not None:
        gate_inputs.update(profitable_combos=int(profitable_combos[0]), combos_evaluated=int(profitable_combos[1]))
    for name in ("stability", "pbo"):
        details[name] = {**details.get(name, {}), **gate_inputs}
    components = [replace(c, inputs={**c.inputs, **details.get(c.name, {})}) for c in components]
    # Rounded so that a sum like 84.99999999999999 of exact 85 does not fall a band.
    score = round(sum(c.points for c in components), 9)
    uncapped = letter_for(score)
    letter, cap = uncapped, None
    trades = read_json_number(n_trades)
    if trades is None:
        limit, reason = "C", "trade count not available, treated as fewer than 30"
    elif trades < 30:
        limit, reason = "C", f"{trades:g} trades (fewer than 30)"
    elif trades < 50:
        limit, reason = "B", f"{trades:g} trades (fewer than 50)"
    else:
        limit, reason = None, ""
    if limit is not None and LETTERS.index(uncapped) < LETTERS.index(limit):
        letter = limit
        cap = f"capped at {limit} (score alone gives {uncapped}): {reason}"
    return Grade(letter=letter, score=score, components=components, cap=cap, uncapped_letter=uncapped,
                 n_trades=trades)


GATE_RULE = ("PBO and stability points are given only when the selected combo makes money out of sample "
             "(a positive OOS/IS ratio and OOS return): they measure how robustly something worth selecting was "
             "selected.")


def withheld_because(oos_is_ratio: float | None, profitable_combos: tuple[int, int] | None = None,
                     oos_return: float | None = None) -> str | None:
    """Why PBO and stability score nothing, or None when the selected combo is profitable out of
    sample: a positive OOS/IS ratio, a positive out-of-sample return when given and, when
    counted, at least one combo with a positive whole-period return."""
    ratio, made = read_json_number(oos_is_ratio), read_json_number(oos_return)
    if profitable_combos is not None and profitable_combos[0] == 0:
        return (f"no combo is profitable (none of the {profitable_combos[1]:,} combos made money over the whole "
                f"period). {GATE_RULE}")
    if ratio is None:
        return ("the selected combo is not shown to make money out of sample (OOS/IS ratio not available). "
                + GATE_RULE)
    if ratio <= 0:
        return f"the selected combo loses out of sample (OOS/IS ratio {ratio:.2f}). {GATE_RULE}"
    if made is not None and made <= 0:
        return (f"the selected combos lost money out of sample (stitched OOS return {100 * made:.2f} %). "
                + GATE_RULE)
    return None


def letter_for(score: float) -> str:
    """Band of a 0-100 score: A >= 85, B >= 70, C >= 55, D >= 40, else F."""
    for letter, floor in BANDS:
        if score >= floor:
            return letter
    return "F"


def _linear(x: float, lo: float, hi: float, max_points: float) -> float:
    """0 at lo, max_points at hi, clipped; rounded to 1e-9 so that exact inputs give exact points."""
    return round(max_points * min(1.0, max(0.0, (x - lo) / (hi - lo))), 9)


def _ratio_component(x: float | None) -> Component:
    name, top = "oos_is_ratio", 20.0
    v = read_json_number(x)
    if v is None:
        return _missing(name, top, x, "Out-of-sample/in-sample Sharpe ratio")
    pts = 0.0 if v < 0.5 else _linear(v, 0.5, 1.0, top)
    return Component(name, pts, top, v, {"oos_is_ratio": v},
                     f"Out-of-sample Sharpe is {beside(v, (0.5, 1.0), 2)} of in-sample: {_pts(pts)} of {top:g} "
                     "points (none below 0.5, full marks at 1.0 or more).")


def _p_value_component(x: float | None) -> Component:
    name, top = "p_value", 20.0
    v = read_json_number(x)
    if v is None:
        return _missing(name, top, x, "Bootstrap Sharpe p-value")
    pts = 20.0 if v < 0.05 else (10.0 if v < 0.10 else 0.0)
    return Component(name, pts, top, v, {"p_value": v},
                     f"Bootstrap p-value of the Sharpe against zero-mean returns is {beside(v, (0.05, 0.10), 3)}: "
                     f"{_pts(pts)} of {top:g} points (20 below 0.05, 10 below 0.10).")


def _consistency_component(x: float | None, periods: str = "out-of-sample windows",
                           counts: Mapping[str, Any] | None = None) -> Component:
    """``counts``: {"positive", "periods"} behind the share, named when given (a share of 3 of 8
    read "38 %" beside the card's 37.50 %)."""
    name, top = "consistency", 20.0
    v = read_json_number(x)
    if v is None:
        return _missing(name, top, x, "Share of positive out-of-sample windows")
    pts = 0.0 if v < 0.5 else _linear(v, 0.5, 1.0, top)
    positive, total = (counts or {}).get("positive"), (counts or {}).get("periods")
    if isinstance(positive, int) and isinstance(total, int) and total > 0:
        share = f"{positive:,} of {total:,} {periods} ({beside(100 * v, (50, 100), 1)} %) were positive"
    else:
        share = f"{beside(100 * v, (50, 100), 0)} % of {periods} were positive"
    return Component(name, pts, top, v, {"consistency": v},
                     f"{share}: {_pts(pts)} of {top:g} points (none below 50 %, full marks at 100 %).")


def _dsr_component(x: float | None) -> Component:
    name, top = "dsr", 15.0
    v = read_json_number(x)
    if v is None:
        return _missing(name, top, x, "Deflated Sharpe ratio")
    pts = 0.0 if v < 0.5 else _linear(v, 0.5, 1.0, top)
    return Component(name, pts, top, v, {"dsr": v},
                     f"Deflated Sharpe ratio is {beside(v, (0.5, 1.0), 3)} (the probability that the true Sharpe "
                     f"exceeds what the best of the trials would show by luck): {_pts(pts)} of {top:g} points (none "
                     "below 0.5, full marks at 1.0).")


def _stability_component(x: float | None, on_edge: bool | None, withheld: str | None = None,
                         values: Mapping[str, Any] | None = None) -> Component:
    """``values``: {"objective", "maximize", "winner_value", "neighbour_mean"} behind the ratio, named
    when given; below zero (for a maximised objective) the ratio is the winner's over the
    neighbours' (:mod:`threadx.validation.stability`), which "keep 67 % of the winner's
    objective" misread (neighbours at -0.77 against a winner's -0.52)."""
    name, top = "stability", 10.0
    v = read_json_number(x)
    edge = bool(on_edge) if on_edge is not None else None
    if v is None:
        return _missing(name, top, x, "Parameter stability (neighbours' objective / winner's)",
                        {"stability": read_json_number(x), "on_edge": edge})
    pts = 0.0 if v < 0.5 else _linear(v, 0.5, 0.9, top)
    lead = f"Grid neighbours keep {beside(100 * v, (50, 90), 0)} % of the winner's objective"
    values = values or {}
    winner, mean = read_json_number(values.get("winner_value")), read_json_number(values.get("neighbour_mean"))
    if winner is not None and mean is not None and winner != 0 and v < 1:
        objective, maximize = values.get("objective", "objective"), values.get("maximize", True) is not False
        if (winner > 0) == maximize:
            lead += f" ({objective} {mean:.4g} on average against the winner's {winner:.4g})"
        else:
            why = "both are below zero" if winner < 0 else "lower is better"
            lead = (f"Grid neighbours do worse than the winner ({objective} {mean:.4g} on average against "
                    f"{winner:.4g}): a ratio of {beside(100 * v, (50, 90), 0)} %, taken winner over neighbours as "
                    f"{why}")
    if edge:
        pts = min(pts, 5.0)
        lead += " and the winner sits on a grid edge, so the optimum may lie outside the range"
        rule = "(at most 5 on an edge; none below 50 %)."
    else:
        rule = "(none below 50 %, full marks at 90 %)."
    return _scored(name, pts, top, v, {"stability": v, "on_edge": edge}, lead, rule, withheld)


def _pbo_component(x: float | None, withheld: str | None = None) -> Component:
    name, top = "pbo", 15.0
    v = read_json_number(x)
    if v is None:
        return _missing(name, top, x, "Probability of backtest overfitting")
    pts = top if v <= 0.1 else (0.0 if v >= 0.5 else round(top * (0.5 - v) / 0.4, 9))
    return _scored(name, pts, top, v, {"pbo": v},
                   f"Probability of backtest overfitting is {beside(v, (0.1, 0.5), 2)}",
                   "(full marks at 0.10 or less, none at 0.50 or more).", withheld)


def _scored(name: str, pts: float, top: float, v: float, inputs: dict[str, Any], lead: str, rule: str,
            withheld: str | None) -> Component:
    """A component of ``pts`` points, or of none with the reason when ``withheld`` says why."""
    inputs = {**inputs, "profitable_out_of_sample": withheld is None}
    if withheld is not None:
        return Component(name, 0.0, top, v, inputs, f"{lead}, but 0 of {top:g} points: {withheld}")
    return Component(name, pts, top, v, inputs, f"{lead}: {_pts(pts)} of {top:g} points {rule}")


def score_text(score: float) -> str:
    """A grade's score out of 100 with one decimal (more where one would cross a letter's floor).

    >>> score_text(17.94), score_text(54.96)
    ('17.9', '54.96')
    """
    return beside(score, tuple(floor for _, floor in BANDS), 1)


def _pts(points: float) -> str:
    """Points for a sentence: at most 2 decimals, no trailing zeros (4.8, 11.25, 20)."""
    return f"{points:.2f}".rstrip("0").rstrip(".")


def _missing(name: str, top: float, raw: Any, label: str, inputs: dict[str, Any] | None = None) -> Component:
    return Component(name, 0.0, top, None, inputs if inputs is not None else {name: read_json_number(raw)},
                     f"{label} not available: 0 of {top:g} points.")
