"""Search spaces: per param a fixed value, a list, or a range; combos addressed by index.

Every combo of a space is a point of the Cartesian grid of its axes and has one integer
id: its mixed-radix index (the last axis varies fastest). Samplers return ids, so any
chunk of a 10-million-combo grid is generated from an id range without materialising
the grid, random samples snap to the grid and dedupe exactly, and a resumed run skips
the ids already stored.

Constraint functions of a strategy receive a dict of arrays (one entry per param) and
must work elementwise (e.g. ``p["fast_period"] < p["slow_period"]``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from threadx.config import DEFAULT_GRID_LIMIT  # noqa: F401 - re-exported (the one default: config)
from threadx.engine.layout import RESULT_COLUMNS
from threadx.errors import ParamError
from threadx.strategy.base import Param, StrategySpec

_MAX_SPACE = 2**62
_RANGE_TEXT = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")


@dataclass(frozen=True)
class Axis:
    """The values one param takes in a space (kind: fixed, list or range)."""

    name: str
    kind: str
    values: tuple

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "values": list(self.values)}


_MAX_RANGE_VALUES = 10_000_000  # in one range: a grid over it could not run anyway


def _range_values(param: Param, low: Any, high: Any, step: Any) -> tuple:
    try:
        low, high, step = float(low), float(high), float(step)
    except (TypeError, ValueError):
        raise ParamError(f"{param.name}: range needs numbers min:max:step, got {low}:{high}:{step}") from None
    if not all(math.isfinite(v) for v in (low, high, step)):
        raise ParamError(f"{param.name}: range bounds must be finite")
    if step <= 0:
        raise ParamError(f"{param.name}: step must be > 0, got {step:g}")
    if low > high:
        raise ParamError(f"{param.name}: empty range, min {low:g} > max {high:g}")
    steps = (high - low) / step  # inf for a step too small for a float to count
    if not steps < _MAX_RANGE_VALUES:
        raise ParamError(f"{param.name}: more than {_MAX_RANGE_VALUES:,} values in one range "
                         f"({low:g}:{high:g}:{step:g}); use a larger step")
    count = int(math.floor(steps + 1e-9)) + 1
    decimals = max(0, -int(math.floor(math.log10(step))) + 6) if step < 1 else 6
    values = np.round(low + step * np.arange(count), decimals)
    if param.kind == "int":
        if low != round(low) or step != round(step):
            raise ParamError(f"{param.name} is an integer param: use whole numbers for min and step")
        return tuple(int(v) for v in values)
    return tuple(float(v) for v in values)


def make_axis(param: Param, spec_value: Any) -> Axis:
    """Axis of one param from a user value: scalar (fixed), list/tuple (list),
    ``"min:max:step"`` or ``{"min", "max", "step"}`` (range), or ``{"values": [...]}``."""
    if isinstance(spec_value, str) and _RANGE_TEXT.match(spec_value) and param.kind in ("int", "float"):
        low, high, step = _RANGE_TEXT.match(spec_value).groups()
        raw, kind = _range_values(param, low, high, step), "range"
    elif isinstance(spec_value, Mapping) and "values" in spec_value:
        raw, kind = tuple(spec_value["values"]), "list"
    elif isinstance(spec_value, Mapping):
        missing = {"min", "max"} - set(spec_value)
        if missing:
            raise ParamError(f"{param.name}: a range needs min and max (and step), missing {sorted(missing)}")
        step = spec_value.get("step", param.step or 1)
        raw, kind = _range_values(param, spec_value["min"], spec_value["max"], step), "range"
    elif isinstance(spec_value, (list, tuple, np.ndarray)):
        raw, kind = tuple(spec_value), "list"
    else:
        raw, kind = (spec_value,), "fixed"
    if not raw:
        raise ParamError(f"{param.name}: empty list of values")
    values = tuple(dict.fromkeys(param.coerce(v) for v in raw))  # typed, bounds-checked, de-duplicated
    return Axis(param.name, kind if len(values) > 1 or kind == "fixed" else "fixed", values)


def result_column_clash(strategy: StrategySpec) -> str | None:
    """Why a sweep cannot store ``strategy``'s params beside its results (a param named like a
    result column: ``sharpe``, ``error``, ``combo_id``), or None; ``strategy check`` fails it too."""
    clash = sorted(set(strategy.param_names) & RESULT_COLUMNS)
    return f"param name(s) {', '.join(clash)} are result columns of sweeps: rename them" if clash else None


class SearchSpace:
    """The axes of every param of a strategy (unlisted params fixed at their default)."""

    def __init__(self, strategy: StrategySpec, space: Mapping[str, Any] | None = None):
        self.rule_errors: dict[str, str] = {}  # constraint -> the first error it raised (its combos: invalid)
        if space is not None and not isinstance(space, Mapping):
            raise ParamError(f"the search space must be a mapping of param name to a value, a list or a range "
                             f"(e.g. {{'{strategy.param_names[0]}': '10:50:5'}}), got a {type(space).__name__}")
        space = dict(space or {})
        clash = result_column_clash(strategy)
        if clash:  # (the strategy package imports no engine module: the rule is checked where sweeps start)
            where = f" ({strategy.origin.where})" if strategy.origin is not None else ""
            raise ParamError(f"strategy {strategy.name}{where}: {clash}")
        unknown = sorted(set(space) - set(strategy.param_names))
        if unknown:
            raise ParamError(f"{strategy.name} has no param {', '.join(unknown)}; "
                             f"params: {', '.join(strategy.param_names)}")
        self.strategy = strategy
        self.axes = tuple(make_axis(p, space.get(p.name, p.default)) for p in strategy.params)
        self.sizes = np.array([len(a) for a in self.axes], dtype=np.int64)
        size = math.prod(int(s) for s in self.sizes)
        if size > _MAX_SPACE:
            raise ParamError(f"the space has {size:.3g} combos, more than can be addressed; narrow some ranges")
        self.size = size
        # strides of the mixed-radix index: the last axis varies fastest
        self.strides = np.ones(len(self.axes), dtype=np.int64)
        for k in range(len(self.axes) - 2, -1, -1):
            self.strides[k] = self.strides[k + 1] * self.sizes[k + 1]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def varying(self) -> tuple[str, ...]:
        """Names of the params with more than one value."""
        return tuple(a.name for a in self.axes if len(a) > 1)

    def value_indices(self, ids: np.ndarray) -> np.ndarray:
        """(n, n_axes) value positions of combo ids."""
        ids = np.asarray(ids, dtype=np.int64)
        return (ids[:, None] // self.strides[None, :]) % self.sizes[None, :]

    def ids_from_indices(self, idx: np.ndarray) -> np.ndarray:
        """Combo ids of (n, n_axes) value positions."""
        return (np.asarray(idx, dtype=np.int64) * self.strides[None, :]).sum(axis=1)

    def columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Param values of combo ids, one array per param."""
        idx = self.value_indices(ids)
        out = {}
        for k, axis in enumerate(self.axes):
            values = np.asarray(axis.values, dtype=object if isinstance(axis.values[0], str) else None)
            out[axis.name] = values[idx[:, k]]
        return out

    def params(self, combo_id: int) -> dict[str, Any]:
        """One combo as a params dict (Python scalars)."""
        idx = self.value_indices(np.array([combo_id]))[0]
        return {a.name: a.values[int(i)] for a, i in zip(self.axes, idx)}

    def valid_mask(self, ids: np.ndarray) -> np.ndarray:
        """True where the combo satisfies every constraint of the strategy."""
        ids = np.asarray(ids, dtype=np.int64)
        mask = np.ones(len(ids), dtype=bool)
        if self.strategy.constraints and len(ids):
            cols = self.columns(ids)
            for rule in self.strategy.constraints:
                mask &= self.holds(rule, cols, len(ids))
        return mask

    def holds(self, rule: Any, cols: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Where ``rule`` holds for the ``n`` combos of ``cols``: one call on the columns when the
        rule works on arrays (``v["a"] < v["b"]``), else one call per combo (a rule written for
        one param set, ``v["a"] < 45 and v["b"] >= 1``, is as valid: it raised on arrays)."""
        try:
            with np.errstate(all="raise"):  # (55 / 0 is inf on arrays, and inf > 1 held where Python raises)
                held = np.asarray(rule.check(cols))
            if held.shape == (n,) and held.dtype == bool:  # (else, None among objects say, asked per combo)
                return held
        except Exception:  # noqa: BLE001 - a rule for one param set at a time: asked per combo below
            pass
        rows = {name: np.asarray(values).tolist() for name, values in cols.items()}
        held = np.zeros(n, dtype=bool)
        for i in range(n):  # a combo whose rule raises is no valid combo, as a backtest of it is refused
            try:
                held[i] = rule.verdict({name: rows[name][i] for name in rows})
            except Exception as exc:  # noqa: BLE001 - the author's code: said if no combo is valid
                self.rule_errors.setdefault(rule.description, f"{type(exc).__name__}: {exc}")
        return held

    def rule_warnings(self) -> list[str]:
        """What a sweep records of the constraints that raised (their combos were left out as
        invalid: a sweep that stored the others said nothing of them)."""
        return [f"constraint {rule!r} raised {error} on some combos: they were left out as invalid (a backtest of "
                f"one is refused with that error)" for rule, error in self.rule_errors.items()]

    def grid_chunks(self, chunk_size: int = 65_536, start: int = 0) -> Iterator[np.ndarray]:
        """Combo ids of the whole grid in order, ``chunk_size`` at a time (never materialised)."""
        for lo in range(start, self.size, chunk_size):
            yield np.arange(lo, min(lo + chunk_size, self.size), dtype=np.int64)

    def count_valid(self, chunk_size: int = 1_000_000) -> int:
        """Combos of the grid that satisfy the constraints (exact; streams the grid)."""
        if not self.strategy.constraints:
            return self.size
        return int(sum(int(self.valid_mask(ids).sum()) for ids in self.grid_chunks(chunk_size)))

    def count_valid_upto(self, limit: int) -> int:
        """:meth:`count_valid` for a grid of at most ``limit`` combos, else its size: a page's live
        count, where a bigger grid is refused or too long to count on every rerun."""
        return self.count_valid() if self.size <= limit else self.size

    def to_dict(self) -> dict:
        """JSON-safe description (for the manifest)."""
        return {"strategy": self.strategy.name, "size": self.size, "axes": [a.to_dict() for a in self.axes]}


def declared_space(strategy: StrategySpec) -> dict[str, dict[str, float]]:
    """The optimisation ranges the strategy declares (``Param.opt_range``) as a space; params
    declared display-only (``feeds=()``) are left out (they stay at their defaults)."""
    return {p.name: {"min": p.opt_range[0], "max": p.opt_range[1], "step": p.opt_range[2]}
            for p in strategy.params if searched_by_default(p)}


def searched_space(strategy: StrategySpec, space: Mapping[str, Any] | None = None) -> SearchSpace:
    """The space a walk-forward or a research searches: ``space``, or the strategy's declared
    ranges (:func:`declared_space`) when None."""
    return SearchSpace(strategy, declared_space(strategy) if space is None else space)


def searched_by_default(param: Param) -> bool:
    """True when a default search space ranges over ``param``: a declared range, and it affects results."""
    return bool(param.opt_range) and param.affects_results


def stored_axes(stored: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """A space stored by :meth:`SearchSpace.to_dict` as a space argument (same axes, same combo ids)."""
    return {a["name"]: {"values": a["values"]} for a in stored["axes"]}


def distinct_effective(strategy: StrategySpec, params: pd.DataFrame, prefer: int | None = None) -> np.ndarray:
    """Mask keeping one row per effective combo of ``params`` (one column per param).

    Rows that differ only in display-only params (``feeds=()``) give the same
    results and form one group; its first row is kept, or row ``prefer`` (a position) for
    its own group. Every row is kept when every param affects results.
    """
    names = [n for n in strategy.effective_names if n in params.columns]
    keep = np.ones(len(params), dtype=bool)
    if len(names) == len(params.columns) or not len(params):
        return keep
    order = np.arange(len(params))
    if prefer is not None:
        order = np.concatenate([[prefer], np.delete(order, prefer)])
    ordered = params.iloc[order]
    dup = ordered.duplicated(subset=names).to_numpy() if names else np.arange(len(order)) > 0
    keep[order] = ~dup
    return keep


TYPICAL_RATE = 5_000.0  # backtests a second a size band assumes without a measured rate (2 cores, 1h bars)


def size_band(n_combos: int, rate_per_s: float = TYPICAL_RATE, limit: int = DEFAULT_GRID_LIMIT) -> str:
    """fast (< 1 min), minutes (< 1 h), long, or refused (over the grid limit) at ``rate_per_s``."""
    if n_combos > limit:
        return "refused"
    seconds = n_combos / max(rate_per_s, 1e-9)
    return "fast" if seconds < 60 else "minutes" if seconds < 3600 else "long"


def size_text(n_combos: int, rate_per_s: float | None = None, limit: int = DEFAULT_GRID_LIMIT) -> str:
    """The size band in words with the time it stands for and the rate it assumes: measured
    (``rate_per_s``: this machine's recent runs) or typical.

    >>> size_text(271_215)
    '**fast** (about 54 s at a typical 5,000 backtests/s)'
    >>> size_text(271_215, 2_100.0)[:45]
    '**minutes** (about 2 min 9 s at 2,100 backtes'
    """
    from threadx.units import format_duration

    measured = bool(rate_per_s and rate_per_s > 0)
    rate = rate_per_s if measured else TYPICAL_RATE
    band = size_band(n_combos, rate, limit)
    if band == "refused":
        return f"**{band}**"
    at = f"{rate:,.0f} backtests/s, this machine's recent runs" if measured else f"a typical {rate:,.0f} backtests/s"
    seconds = n_combos / rate
    took = format_duration(seconds) if seconds >= 1 else "a second or less"  # ("about 0 s" for 41 combos)
    return f"**{band}** (about {took} at {at})"
