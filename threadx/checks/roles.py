"""Check a strategy's declared param roles by perturbation (``Param.feeds``).

Each param is moved from a starting param set (:func:`bases`: the defaults, every
optimisation range at its middle, and the defaults with each bool or choice switched) to
other valid values (:func:`perturbations`: one step either side, the ends of its
optimisation range, the other bool or choice values; combos a constraint refuses are
skipped), and every stage of the backtest (:class:`Stages`: the
indicator requests, the signal flags, the level lines, the exit rules and the kernel's param
vector, then the metrics and trades) is compared with the start (:func:`changes`). A param
that changes a stage outside its ``feeds`` is a failure (:func:`violations`), naming the
strategy, the param, the value and what changed: a wrong declaration would merge combos that
differ. A param declaring ``indicator_labels`` may change only those indicator requests. A
strategy's ``signal_rule`` must give, row by row, what ``signals`` gives. A display-only
param may change the indicator requests (the lines it draws) but nothing else. Declaring a
role that no perturbation exercises is safe and only noted. A strategy's ``batch_signals``
(the signals of many values of its signal-only params in one call, which sweeps use) must
give, row by row, what ``signals`` gives for each value.

Works on any :class:`StrategySpec` object, registered or not (user strategies are loaded
from files). Used by ``tests/test_param_roles.py`` on every built-in strategy and by the
``roles`` check of :func:`threadx.checks.strategy.check_strategy`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from threadx.contract import (BAR_LABEL, ExitRules, Levels, indicator_needs, prepare_indicators, prepare_signals,
                              rule_signals)
from threadx.data.bars import Bars
from threadx.data.grid import span_bars
from threadx.engine import kernel
from threadx.engine.inputs import EngineOptions, kernel_args, param_vector, strategy_rules
from threadx.engine.layout import METRIC_NAMES
from threadx.errors import ParamError
from threadx.indicators.registry import canonical_params
from threadx.strategy.base import ALL_ROLES, ROLES, Param, StrategySpec

__all__ = ["Stages", "stages", "perturbations", "changes", "violations", "label_violations", "bases", "switched",
           "batch_failures", "rule_failures", "rule_param_sets", "rule_label_failures", "check_roles",
           "check_sweep_roles"]

_OPTIONS = EngineOptions.builtin().validated()  # built-in costs and fills: the roles do not depend on them


@dataclass(frozen=True)
class Stages:
    """What one param set produces at each stage the roles describe."""

    indicators: dict[str, tuple[str, str]]
    signals: np.ndarray
    levels: Levels
    rules: ExitRules
    vector: np.ndarray
    metrics: np.ndarray
    trades: np.ndarray


# an exit field -> (the rule's mode field, the mode value it needs): with another mode it does nothing
DORMANT_UNLESS = {"trail_atr": ("trail", "atr"), "trail_pct": ("trail", "pct"), "trail_band_pct": ("trail", "band"),
                  "risk_per_trade": ("sizing", "risk")}


def stages(spec: StrategySpec, bars: Bars, params: Mapping[str, Any], bank: Any, backtest: bool = True) -> Stages:
    """Every stage of one backtest of ``spec`` (registered or not) with normalised ``params``
    (``bank``: the indicator source, e.g. an :class:`~threadx.indicators.IndicatorBank`);
    ``backtest`` False: the stages a sweep's plan groups combos by, without running the
    kernel (empty metrics and trades)."""
    needs = {label: (name, canonical_params(name, ind)) for label, (name, ind) in indicator_needs(spec, params).items()}
    _, sig, levels = prepare_signals(spec, bars, params, bank)
    rules = strategy_rules(spec, params, _OPTIONS)
    metrics, trades = np.empty(0), np.empty(0)
    if backtest:
        metrics, trades, _ = kernel.run_full(*kernel_args(bars, sig, levels, rules, _OPTIONS))
    vector = param_vector(rules, _OPTIONS, bars.timeframe, False, span_bars(bars.time_ns, bars.timeframe))
    return Stages(needs, np.asarray(sig), levels, rules, vector, metrics, trades)


def perturbations(spec: StrategySpec, param: Param, base: Mapping[str, Any]) -> list[Any]:
    """Other valid values of ``param`` (constraints with the other params at ``base`` hold):
    one step either side, the ends of its optimisation range and its declared bounds."""
    if param.kind == "bool":
        candidates: list[Any] = [not base[param.name]]
    elif param.kind == "choice":
        candidates = list(param.choices)
    else:
        step = param.step or 1
        candidates = [base[param.name] - step, base[param.name] + step]
        if param.opt_range:
            candidates += [param.opt_range[0], param.opt_range[1]]
        # and the declared bounds: a sweep may go anywhere between them (a role that shows only
        # past a threshold outside the optimisation range passed)
        candidates += [bound for bound in (param.min, param.max) if bound is not None and math.isfinite(bound)]
        candidates = [round(v, 10) for v in candidates]
    out = []
    for value in candidates:
        try:
            value = param.coerce(value)
            spec.normalize({**base, param.name: value})
        except ParamError:
            continue
        if value != base[param.name] and value not in out:
            out.append(value)
    return out


def _same_arrays(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def changes(base: Stages, other: Stages) -> dict[str, str]:
    """Stage -> what changed (roles, plus "results" for the backtest's metrics and trades)."""
    out: dict[str, str] = {}
    if other.indicators != base.indicators:
        labels = sorted(k for k in base.indicators.keys() | other.indicators.keys()
                        if base.indicators.get(k) != other.indicators.get(k))
        out["indicators"] = "requests " + ", ".join(
            f"{k}: {base.indicators.get(k)} -> {other.indicators.get(k)}" for k in labels)
    if not _same_arrays(base.signals, other.signals):
        n = int(np.sum(base.signals != other.signals)) if base.signals.shape == other.signals.shape else -1
        out["signals"] = f"flags of {n} bars" if n >= 0 else "signal array shape"
    lines = [f.name for f in fields(Levels) if not _same_arrays(getattr(base.levels, f.name),
                                                                 getattr(other.levels, f.name))]
    if lines:
        out["levels"] = "lines " + ", ".join(lines)
    rules = [f"{f.name} {getattr(base.rules, f.name)!r} -> {getattr(other.rules, f.name)!r}"
             for f in fields(ExitRules) if getattr(base.rules, f.name) != getattr(other.rules, f.name)]
    if rules or not _same_arrays(base.vector, other.vector):
        out["exits"] = "rules " + (", ".join(rules) or "(param vector only)")
    metrics = [name for name, a, b in zip(METRIC_NAMES, base.metrics, other.metrics)
               if not (a == b or (math.isnan(a) and math.isnan(b)))]
    if metrics or not _same_arrays(base.trades, other.trades):
        shown = ", ".join(metrics[:4]) + (f" and {len(metrics) - 4} more" if len(metrics) > 4 else "")
        out["results"] = "metrics " + (shown or "(trades only)")
    return out


def violations(param: Param, changed: Mapping[str, str]) -> list[str]:
    """Why ``changed`` contradicts the declaration of ``param`` (empty when it does not)."""
    out = []
    for role in ROLES:
        if role in changed and role not in param.feeds and not (role == "indicators" and not param.feeds):
            out.append(f"changes the {role} ({changed[role]}) but does not declare {role!r}")
    if "results" in changed and not param.affects_results:
        out.append(f"is declared display-only but changes the backtest ({changed['results']})")
    elif "results" in changed and not changed.keys() & {"signals", "levels", "exits"}:
        out.append(f"changes the backtest ({changed['results']}) with the same signals, levels and exit "
                   "rules: it reaches the engine some way the roles do not describe")
    return out


def label_violations(param: Param, base: Stages, other: Stages) -> list[str]:
    """Why the indicator requests of ``other`` contradict ``param.indicator_labels`` (empty
    when they do not, or it declares none): a sweep looks each label's line up once per value
    of the params declaring it, so an undeclared label would be read from another combo."""
    if param.indicator_labels is None or "indicators" not in param.feeds:
        return []
    changed = sorted(k for k in base.indicators.keys() | other.indicators.keys()
                     if base.indicators.get(k) != other.indicators.get(k) and k not in param.indicator_labels)
    return [f"changes the indicator request {label!r} ({base.indicators.get(label)} -> "
            f"{other.indicators.get(label)}) but declares indicator_labels {param.indicator_labels}"
            for label in changed]


def rule_failures(spec: StrategySpec, bars: Bars, bank: Any, label: str, base: Mapping[str, Any]) -> list[str]:
    """Where ``spec.signal_rule`` disagrees with ``signals`` (empty without one): the rule of
    ``base`` and of each perturbation of each param that feeds indicators or signals, all in
    one call as a sweep makes it, every row compared with that param set's own ``signals``."""
    if spec.signal_rule is None:
        return []
    names = spec.params_feeding("indicators", "signals")
    sets = rule_param_sets(spec, base)
    where = f"{spec.name}.signal_rule ({label}, {len(sets)} param sets)"
    try:
        rows = rule_signals(spec, bars, sets, bank)
    except Exception as exc:  # noqa: BLE001 - a sweep would fall back to signals(), silently slower
        return [f"{where}: raised {exc!r}"]
    return _rows_against_signals(spec, bars, bank, where, "the rule", rows, sets, lambda one: ", ".join(
        f"{name}={one[name]!r}" for name in names if one[name] != base[name]) or "the start")


def rule_param_sets(spec: StrategySpec, base: Mapping[str, Any],
                    names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """``base`` and each perturbation of each of ``names`` (None: the params feeding indicators
    or signals, the param sets :func:`rule_failures` compares; :func:`batch_failures` gives
    its batch params)."""
    names = spec.params_feeding("indicators", "signals") if names is None else names
    return [dict(base)] + [{**base, name: value} for name in names
                           for value in perturbations(spec, spec.param(name), base)]


def rule_label_failures(spec: StrategySpec, param_sets: list[Mapping[str, Any]]) -> list[str]:
    """A label the signal rule reads that ``indicators()`` requests for none of ``param_sets``
    (a misspelt label): a sweep gives the rule an all-NaN line for it, so no signal at all."""
    if spec.signal_rule is None:
        return []
    wanted = [label for label in dict.fromkeys(label for label, _ in spec.signal_rule.lines) if label != BAR_LABEL]
    seen: set[str] = set()
    tried = 0
    # the param sets given, then (while a label is missing) every mix of switches with the numbers
    # at either end of their ranges: a label one switch and one number request together is no typo
    for params in itertools.chain(param_sets, _switch_mixes(spec, param_sets[0]) if param_sets else ()):
        if all(label in seen for label in wanted):
            break
        tried += 1
        try:
            seen |= set(spec.indicators(spec.results_params(params)))
        except Exception:  # noqa: BLE001 - a set whose indicators raise: reported by the other checks
            continue
    return [f"{spec.name}.signal_rule reads the label {label!r}, which indicators() requests for none of the "
            f"{tried} param sets tried (its labels: {', '.join(sorted(seen)) or 'none'}): a sweep would give the "
            "rule an all-NaN line" for label in wanted if label not in seen]


_MAX_SWITCH_MIXES = 256


def _switch_mixes(spec: StrategySpec, base: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """``base`` with every mix of bool and choice values (at most :data:`_MAX_SWITCH_MIXES`), each
    with the numeric params at the low, then the high end of their optimisation ranges (those
    the params' bounds and constraints allow; indicators() only: no backtest)."""
    switches = [p for p in spec.params if p.kind in ("bool", "choice")]
    ranged = [p for p in spec.params if p.kind in ("int", "float") and p.opt_range]
    options = [(False, True) if p.kind == "bool" else p.choices for p in switches]
    for mix in itertools.islice(itertools.product(*options), _MAX_SWITCH_MIXES):
        for end in (0, 1):
            raw = {**base, **{p.name: value for p, value in zip(switches, mix)},
                   **{p.name: p.opt_range[end] for p in ranged}}
            try:
                yield spec.normalize(raw)
            except Exception:  # noqa: BLE001 - a mix the bounds or constraints refuse
                continue


def _rows_against_signals(spec: StrategySpec, bars: Bars, bank: Any, where: str, what: str, rows: np.ndarray,
                          sets: list[dict[str, Any]], shown: Any) -> list[str]:
    """Failures where row j of ``rows`` (made by ``what`` for the param set ``sets[j]``, worded
    ``shown(sets[j])``) is not what ``signals`` gives for that set alone."""
    out = []
    for row, one in zip(rows, sets):
        text = shown(one)
        try:
            expected = np.asarray(prepare_signals(spec, bars, spec.results_params(one), bank)[1]).astype(np.uint8)
        except Exception as exc:  # noqa: BLE001 - a sweep would have used the row instead of this error
            out.append(f"{where}: signals() raised {exc!r} for {text}, {what} gave a row")
            continue
        if not np.array_equal(row, expected):
            out.append(f"{where}: the row of {text} differs from signals() on {int(np.sum(row != expected))} bars")
    return out


def bases(spec: StrategySpec) -> dict[str, dict[str, Any]]:
    """Starting points: the defaults, every optimisation range at its midpoint (so a param
    whose effect hides at the defaults, e.g. a risk fraction without a stop, shows) and the
    defaults with each switch turned (:func:`switched`)."""
    mid = {}
    for p in spec.params:
        if p.opt_range:
            low, high, step = p.opt_range
            mid[p.name] = round(low + step * round((high - low) / 2 / step), 10)
    defaults = spec.normalize()
    out = {"defaults": defaults}
    try:
        out["mid-range"] = spec.normalize(mid)
    except ParamError:
        pass
    return {**out, **switched(spec, defaults)}


def switched(spec: StrategySpec, base: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``base`` with one bool param turned, or one choice param at another of its values, each
    (those the params' constraints allow), labelled ``"name=value"``: a param whose effect a
    switch gates (a cooldown used only with ``use_cooldown``) changes nothing from ``base``,
    so a wrong declaration of it shows only from these."""
    out = {}
    for param in spec.params:
        if param.kind in ("bool", "choice"):
            for value in perturbations(spec, param, base):
                out[f"{param.name}={value!r}"] = spec.normalize({**base, param.name: value})
    return out


def batch_failures(spec: StrategySpec, bars: Bars, bank: Any, label: str, base: Mapping[str, Any]) -> list[str]:
    """Where ``spec.batch_signals`` disagrees with ``signals`` (empty without one): one call
    for ``base`` and each perturbation of each of ``spec.batch_params()`` (a sweep merges these
    into one call), every row compared with that param set's own ``signals``."""
    names = spec.batch_params()
    if not names:
        return []
    sets = rule_param_sets(spec, base, names)
    params = spec.results_params(base)
    where = f"{spec.name}.batch_signals ({label}, {len(sets)} param sets varying {', '.join(names)})"
    try:
        values = prepare_indicators(spec, bars, params, bank)
        table = {name: np.array([s[name] for s in sets]) for name in names}
        rows = np.asarray(spec.batch_signals(bars, values, params, table))
    except Exception as exc:  # noqa: BLE001 - a sweep would fall back to signals(), silently slower
        return [f"{where}: raised {exc!r}"]
    if rows.shape != (len(sets), len(bars)):
        return [f"{where}: returned shape {rows.shape}, not ({len(sets)}, {len(bars)})"]
    return _rows_against_signals(spec, bars, bank, where, "batch_signals", rows.astype(np.uint8), sets,
                                 lambda one: ", ".join(f"{name}={one[name]!r}" for name in names))


def check_roles(spec: StrategySpec, bars: Bars, bank: Any,
                starts: Mapping[str, Mapping[str, Any]] | None = None,
                batches: bool = True, also: Sequence[Mapping[str, Any]] = ()) -> tuple[list[str], list[str]]:
    """(failures, notes) of every param of ``spec``, each perturbed alone from each starting
    param set (``starts``: label -> normalised params; None: :func:`bases`), and of its
    ``batch_signals`` from each start (:func:`batch_failures`; ``batches`` False: not
    here, the caller runs it on its own param sets). A backtest that
    raises on a perturbed value is a failure; one that raises on a start propagates. A param
    moving an exit field whose mode is off on every start and on each param set of ``also``
    (:data:`DORMANT_UNLESS`: a trail_pct without trail="pct") is a note."""
    failures, notes = [], []
    tried: list[dict[str, Any]] = []
    exercised: dict[str, set[str]] = {p.name: set() for p in spec.params}
    dormant: dict[tuple[str, str], bool] = {}  # (param, exit field it moved) -> whether its mode was ever on
    for label, base_params in (bases(spec) if starts is None else starts).items():
        base = stages(spec, bars, base_params, bank)
        for param in spec.params:
            if param.feeds == ALL_ROLES and param.indicator_labels is None:
                continue  # undeclared: every change is allowed
            for value in perturbations(spec, param, base_params):
                where = f"{spec.name}.{param.name}={value!r} (from {base_params[param.name]!r}, {label})"
                try:
                    other = stages(spec, bars, {**base_params, param.name: value}, bank)
                    changed = changes(base, other)
                except Exception as exc:  # noqa: BLE001 - a valid value must backtest
                    failures.append(f"{where}: the backtest raised {exc!r}")
                    continue
                exercised[param.name] |= changed.keys()
                for name, (mode, value) in DORMANT_UNLESS.items():
                    if getattr(base.rules, name) != getattr(other.rules, name):
                        on = value in (getattr(base.rules, mode), getattr(other.rules, mode))
                        dormant[param.name, name] = dormant.get((param.name, name), False) or on
                wrong = violations(param, changed) + label_violations(param, base, other)
                failures += [f"{where} {why}" for why in wrong]
        if batches:
            failures += batch_failures(spec, bars, bank, label, base_params)
            failures += rule_failures(spec, bars, bank, label, base_params)
            tried += rule_param_sets(spec, base_params)
    failures += rule_label_failures(spec, tried) if batches else []
    for param in spec.params:
        unused = sorted(param.feeds - exercised[param.name]) if param.feeds != ALL_ROLES else []
        if unused:
            notes.append(f"{spec.name}.{param.name} declares {', '.join(unused)} but no perturbation changed it")
    modes_on = {(mode, getattr(rules, mode)) for rules in (strategy_rules(spec, params, _OPTIONS) for params in also)
                for mode, _ in DORMANT_UNLESS.values()}
    for (param_name, name), was_on in dormant.items():
        if not was_on and DORMANT_UNLESS[name] not in modes_on:
            mode, value = DORMANT_UNLESS[name]
            notes.append(f"{spec.name}.{param_name} sets the exit rule {name}, which acts only with {mode}={value!r}: "
                         f"no param set checked turns it on (an engine option can), so it changed no result here")
    return failures, notes


SWEEP_ROLE_STARTS = 3  # combos of a sweep its roles are checked from (each param moved near and far)


def check_sweep_roles(space: Any, bars: Bars, combo_ids: Sequence[int], bank: Any) -> None:
    """Refuse a sweep whose strategy's declared roles do not hold where the sweep relies on
    them: from each of the first :data:`SWEEP_ROLE_STARTS` combos of ``combo_ids`` (spread over
    the sweep's plan, in ``space``, a :class:`~threadx.optimize.space.SearchSpace`) whose stages
    compute, each varied param moved one value along its axis and to the far end of it must
    change only the stages it declares (a param declared for the exits that changes the signals
    would have the sweep reuse one signal array for combos that differ: rows silently wrong;
    several starts and far moves, as a wrong role may show only with a switch turned on or past
    a threshold); a display-only param at another value than its default (fixed or varied: the
    sweep computes it as the default) must give the default's stages; and ``batch_signals``
    must give what ``signals`` gives (:func:`batch_failures`).
    A few ``signals`` calls per varied param, no backtest: the whole check is ``threadx strategy
    check``. ParamError naming the param."""
    spec = space.strategy
    advice = f"(`threadx strategy check {spec.name}` lists every such case)"
    varied = [axis.name for axis in space.axes if len(axis) > 1]
    checked = 0
    for combo_id in dict.fromkeys(int(c) for c in combo_ids):
        if checked == SWEEP_ROLE_STARTS:
            break
        start = space.params(combo_id)
        try:
            base = stages(spec, bars, start, bank, backtest=False)
        except Exception:  # noqa: BLE001 - a combo that fails: the sweep records why, row by row
            continue
        checked += 1
        idx = space.value_indices(np.array([combo_id], dtype=np.int64))[0]
        for axis in space.axes:  # a display-only value is computed as its default (results_params)
            param = spec.param(axis.name)
            if not param.affects_results and start[param.name] != param.default:
                _refuse_moved(spec, bars, bank, param, start, base, {**start, param.name: param.default}, advice,
                              varied)
        for k, axis in enumerate(space.axes):
            param = spec.param(axis.name)
            if len(axis) < 2 or (param.feeds == ALL_ROLES and param.indicator_labels is None):
                continue  # not varied, or undeclared (its combos are never merged)
            near = idx[k] + 1 if idx[k] + 1 < len(axis) else idx[k] - 1
            far = 0 if idx[k] > (len(axis) - 1) / 2 else len(axis) - 1
            for target in [t for t in dict.fromkeys((near, far)) if t != idx[k]]:
                moved = idx.copy()
                moved[k] = target
                other_id = space.ids_from_indices(moved[None, :])
                if not space.valid_mask(other_id)[0]:
                    continue
                _refuse_moved(spec, bars, bank, param, start, base, space.params(int(other_id[0])), advice, varied)
        if checked == 1:
            failures = batch_failures(spec, bars, bank, "this sweep's first combo", start)
            if failures:
                raise ParamError(f"strategy {spec.name}: {failures[0]}: this sweep would store the batch's rows; "
                                 f"fix batch_signals (`threadx strategy check {spec.name}`)")


def _refuse_moved(spec: StrategySpec, bars: Bars, bank: Any, param: Param, start: Mapping[str, Any], base: Stages,
                  other_params: Mapping[str, Any], advice: str, varied: Sequence[str]) -> None:
    """ParamError when moving ``param`` from ``start`` (whose stages are ``base``) to its value
    in ``other_params`` changes a stage it does not declare (naming the ``varied`` params' values)."""
    try:
        other = stages(spec, bars, other_params, bank, backtest=False)
    except Exception:  # noqa: BLE001 - that combo fails in the sweep, with its error
        return
    wrong, fix = violations(param, changes(base, other)), "feeds="
    if not wrong:  # the roles hold: the labels it declares may not
        wrong, fix = label_violations(param, base, other), "indicator_labels="
    if wrong:
        others = ", ".join(f"{name}={start[name]!r}" for name in varied if name != param.name)
        with_others = f", with {others}" if others else ""
        raise ParamError(f"strategy {spec.name}: {param.name}={other_params[param.name]!r} (from "
                         f"{start[param.name]!r}{with_others}) {wrong[0]}: this sweep would merge combos that differ "
                         f"and store wrong rows; fix its {fix} {advice}")
